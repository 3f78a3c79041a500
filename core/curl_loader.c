/* curl_loader.c - libcurl loaded in a scope of its own; see curl_loader.h. */
#include "curl_loader.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CURL_SONAME "libcurl-gnutls.so.4" /* Debian: libcurl3-gnutls */

/* The sanitizer runtimes (ASan and TSan alike) refuse RTLD_DEEPBIND. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define OMX_NO_DEEPBIND 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define OMX_NO_DEEPBIND 1
#endif
#endif

static struct curl_api api;
static const struct curl_api *loaded;
static char load_err[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *sym(void *h, const char *name, bool *ok)
{
	void *p = dlsym(h, name);

	if (p == NULL && *ok) {
		snprintf(load_err, sizeof(load_err), "%s: no symbol %s", CURL_SONAME, name);
		*ok = false;
	}
	return p;
}

#define SYM(field, name)                                                                               \
	do {                                                                                           \
		*(void **)&api.field = sym(h, (name), &ok);                                            \
	} while (0)

static void load_once(void)
{
	int flags = RTLD_NOW | RTLD_LOCAL;
	bool ok = true;

#ifndef OMX_NO_DEEPBIND
	flags |= RTLD_DEEPBIND;
#endif
	void *h = dlopen(CURL_SONAME, flags);

	if (h == NULL) {
		snprintf(load_err, sizeof(load_err), "cannot load %s (Debian package libcurl3-gnutls): %s", CURL_SONAME,
			 dlerror());
		return;
	}
	SYM(multi_init, "curl_multi_init");
	SYM(multi_cleanup, "curl_multi_cleanup");
	SYM(multi_add_handle, "curl_multi_add_handle");
	SYM(multi_remove_handle, "curl_multi_remove_handle");
	SYM(multi_perform, "curl_multi_perform");
	SYM(multi_poll, "curl_multi_poll");
	SYM(multi_wakeup, "curl_multi_wakeup");
	SYM(multi_socket_action, "curl_multi_socket_action");
	SYM(multi_info_read, "curl_multi_info_read");
	SYM(multi_setopt, "curl_multi_setopt");
	SYM(multi_strerror, "curl_multi_strerror");
	SYM(easy_init, "curl_easy_init");
	SYM(easy_cleanup, "curl_easy_cleanup");
	SYM(easy_reset, "curl_easy_reset");
	SYM(easy_setopt, "curl_easy_setopt");
	SYM(easy_getinfo, "curl_easy_getinfo");
	SYM(easy_strerror, "curl_easy_strerror");
	SYM(slist_append, "curl_slist_append");
	SYM(slist_free_all, "curl_slist_free_all");

	CURLcode (*global_init)(long) = NULL;
	curl_version_info_data *(*version_info)(CURLversion) = NULL;

	*(void **)&global_init = sym(h, "curl_global_init", &ok);
	*(void **)&version_info = sym(h, "curl_version_info", &ok);
	if (!ok) {
		return; /* the handle stays open: dlclose of libcurl is not worth its risks */
	}
	const curl_version_info_data *v = version_info(CURLVERSION_NOW);

	if (v == NULL || v->ssl_version == NULL || strstr(v->ssl_version, "GnuTLS") == NULL ||
	    v->version_num < 0x075500) {
		snprintf(load_err, sizeof(load_err), "%s: want libcurl >= 7.85 with GnuTLS, found %s with %s",
			 CURL_SONAME, v ? v->version : "?", v && v->ssl_version ? v->ssl_version : "no TLS");
		return;
	}
	if (global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
		snprintf(load_err, sizeof(load_err), "%s: curl_global_init failed", CURL_SONAME);
		return;
	}
	loaded = &api;
}

const struct curl_api *curl_loader_load(char **out_err)
{
	pthread_once(&once, load_once);
	if (loaded == NULL && (*out_err = strdup(load_err)) == NULL) {
		*out_err = NULL;
	}
	return loaded;
}
