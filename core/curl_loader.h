/*
 * curl_loader.h - libcurl (GnuTLS flavour) for the webhook sink and the
 * rspamd client of the verify pool (one loader for both), loaded at
 * run time into a symbol scope of its own.
 *
 * Why not link it: on Debian 12, libcurl-gnutls.so.4 needs libssh2, which
 * needs OpenSSL's libcrypto.so.3, whose symbol names are BoringSSL's
 * (DESIGN.md "Dependencies"). Linked into one process, OpenSSL's internal
 * calls bind to BoringSSL (LD_DEBUG=bindings shows thousands). dlopen with
 * RTLD_LOCAL | RTLD_DEEPBIND makes libcurl and everything it loads
 * (libssh2, libcrypto.so.3) resolve among themselves first, and keeps them
 * out of the global scope, so neither library sees the other. The oceanmx
 * binary therefore does not link libcurl (ldd shows neither it nor
 * libcrypto.so.3); a server without an http(s) sink or --rspamd never loads it.
 * AddressSanitizer and ThreadSanitizer refuse RTLD_DEEPBIND, so sanitizer builds load it
 * with RTLD_LOCAL only (tests only; the collision is then possible there).
 *
 * Only the calls oceanmx makes are here; types and constants come from
 * <curl/curl.h>. Thread safety as libcurl's: one multi handle per thread.
 */
#ifndef OMX_CURL_LOADER_H
#define OMX_CURL_LOADER_H

#define CURL_DISABLE_TYPECHECK 1 /* its macros would rename our members */
#include <curl/curl.h>

struct curl_api {
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_cleanup)(CURLM *m);
	CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
	CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
	CURLMcode (*multi_perform)(CURLM *m, int *running);
	CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd fds[], unsigned num_fds, int timeout_ms, int *numfds);
	CURLMcode (*multi_wakeup)(CURLM *m); /* any thread: ends a multi_poll */
	CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev_bitmask, int *running);
	CURLMsg *(*multi_info_read)(CURLM *m, int *msgs_in_queue);
	CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
	const char *(*multi_strerror)(CURLMcode c);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *e);
	void (*easy_reset)(CURL *e);
	CURLcode (*easy_setopt)(CURL *e, CURLoption opt, ...);
	CURLcode (*easy_getinfo)(CURL *e, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode c);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
};

/*
 * curl_loader_load loads libcurl-gnutls.so.4 once per process (thread-safe)
 * and runs curl_global_init. Returns the table, or NULL with *out_err a
 * malloc'd message (library missing, not the GnuTLS flavour, init failed).
 */
const struct curl_api *curl_loader_load(char **out_err);

#endif
