/*
 * tls.c - STARTTLS client sessions over memory BIOs; see tls.h.
 *
 * Read side: a BoringSSL memory BIO; ltls_feed appends what recv
 * delivered (replies are small, the copy is cheap). Write side: a BIO of
 * our own whose write appends to t->pend, so a record is copied once
 * after sealing; ltls_take_out swaps pend with the (idle) send buffer, so
 * the buffer lent to the kernel is never written or reallocated while a
 * send is in flight.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* RFC 8446 §5.1: a record carries at most 2^14 octets of plaintext. */
#define LTLS_RECORD_MAX 16384
/* Debian's bundle (ca-certificates); BoringSSL's default is /etc/ssl/cert.pem. */
#define LTLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

struct ltls_ctx {
	SSL_CTX *ctx;
	BIO_METHOD *out_method;
	char *host;   /* SNI when a name; NULL for an IP literal */
	char *verify_host, *verify_ip; /* identity checked with --tls-verify */
	bool verify;
};

struct obuf {
	uint8_t *p;
	size_t len, cap;
};

struct ltls {
	SSL *ssl;
	const struct ltls_ctx *x;
	struct obuf pend; /* sealed records not yet handed out */
	struct obuf out;  /* lent to the send in flight while out_lent */
	bool out_lent;
};

/* The plaintext gather buffer: ltls_write runs to completion on one thread. */
static __thread uint8_t g_stage[LTLS_RECORD_MAX];

static int obuf_reserve(struct obuf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;
	uint8_t *p;

	if (more > SIZE_MAX / 2 - b->len) {
		return -1;
	}
	if (b->len + more <= b->cap) {
		return 0;
	}
	while (cap < b->len + more) {
		cap *= 2;
	}
	p = realloc(b->p, cap);
	if (p == NULL) {
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

/* ---------------------------------------------------------------- write BIO */

static int out_write(BIO *bio, const char *p, int len)
{
	struct ltls *t = BIO_get_data(bio);

	if (len <= 0) {
		return 0;
	}
	if (obuf_reserve(&t->pend, (size_t)len) != 0) {
		return -1;
	}
	memcpy(t->pend.p + t->pend.len, p, (size_t)len);
	t->pend.len += (size_t)len;
	return len;
}

static long out_ctrl(BIO *bio, int cmd, long larg, void *parg)
{
	(void)bio;
	(void)larg;
	(void)parg;
	/* libssl flushes after each flight; the bytes are already queued. */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* ---------------------------------------------------------------- errors */

/* ssl_error describes why an SSL call returned ret, and clears the error queue. */
static void ssl_error(const struct ltls *t, int ret, const char *what, char *err, size_t err_len)
{
	int e = SSL_get_error(t->ssl, ret);
	uint32_t code = ERR_peek_error();

	if (t->x->verify && SSL_get_verify_result(t->ssl) != X509_V_OK) {
		snprintf(err, err_len, "%s: certificate verification failed: %s", what,
			 X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
	} else if (code != 0) {
		const char *reason = ERR_reason_error_string(code);

		snprintf(err, err_len, "%s: %s (%s)", what, reason ? reason : "unknown error",
			 ERR_lib_error_string(code) ? ERR_lib_error_string(code) : "?");
	} else if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(err, err_len, "%s: the server closed the TLS session", what);
	} else {
		snprintf(err, err_len, "%s: SSL error %d", what, e);
	}
	ERR_clear_error();
}

/* accept_any: --tls without --tls-verify checks no chain (benchmarks use self-signed certificates). */
static enum ssl_verify_result_t accept_any(SSL *ssl, uint8_t *out_alert)
{
	(void)ssl;
	(void)out_alert;
	return ssl_verify_ok;
}

/* ---------------------------------------------------------------- context */

struct ltls_ctx *ltls_ctx_new(const struct ltls_opts *o, char *err, size_t err_len)
{
	struct ltls_ctx *x = calloc(1, sizeof(*x));
	struct in6_addr a6;
	bool is_ip;

	if (x == NULL) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	is_ip = o->host != NULL && (inet_pton(AF_INET, o->host, &a6) == 1 || inet_pton(AF_INET6, o->host, &a6) == 1);
	x->verify = o->verify;
	x->ctx = SSL_CTX_new(TLS_client_method());
	x->out_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "oceanmx-load out");
	if (x->ctx == NULL || x->out_method == NULL || !BIO_meth_set_write(x->out_method, out_write) ||
	    !BIO_meth_set_ctrl(x->out_method, out_ctrl)) {
		snprintf(err, err_len, "cannot set up libssl");
		goto fail;
	}
	if (o->host != NULL && o->host[0] != '\0') {
		char **dst = is_ip ? &x->verify_ip : &x->verify_host;

		*dst = strdup(o->host);
		if (*dst == NULL || (!is_ip && (x->host = strdup(o->host)) == NULL)) {
			snprintf(err, err_len, "out of memory");
			goto fail;
		}
	}
	/* RFC 8996: nothing older than TLS 1.2. */
	SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);
	/* Every session is a full handshake (no resumption). */
	SSL_CTX_set_session_cache_mode(x->ctx, SSL_SESS_CACHE_OFF);
	if (o->verify) {
		int ok;

		if (o->ca_file != NULL) {
			ok = SSL_CTX_load_verify_locations(x->ctx, o->ca_file, NULL);
		} else {
			ok = SSL_CTX_set_default_verify_paths(x->ctx);
			if (access(LTLS_SYSTEM_CA, R_OK) == 0) {
				ok = SSL_CTX_load_verify_locations(x->ctx, LTLS_SYSTEM_CA, NULL);
			}
		}
		if (!ok) {
			uint32_t code = ERR_peek_error();

			snprintf(err, err_len, "--tls-ca %s: %s", o->ca_file ? o->ca_file : LTLS_SYSTEM_CA,
				 code ? ERR_reason_error_string(code) : "cannot load");
			ERR_clear_error();
			goto fail;
		}
		SSL_CTX_set_verify(x->ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_custom_verify(x->ctx, SSL_VERIFY_PEER, accept_any);
	}
	return x;
fail:
	ltls_ctx_free(x);
	return NULL;
}

void ltls_ctx_free(struct ltls_ctx *x)
{
	if (x == NULL) {
		return;
	}
	SSL_CTX_free(x->ctx);
	BIO_meth_free(x->out_method);
	free(x->host);
	free(x->verify_host);
	free(x->verify_ip);
	free(x);
}

/* ---------------------------------------------------------------- sessions */

struct ltls *ltls_new(void)
{
	return calloc(1, sizeof(struct ltls));
}

void ltls_free(struct ltls *t)
{
	if (t == NULL) {
		return;
	}
	ltls_end(t);
	free(t->pend.p);
	free(t->out.p);
	free(t);
}

void ltls_end(struct ltls *t)
{
	SSL_free(t->ssl); t->ssl = NULL;
	t->pend.len = 0;
	t->out.len = 0;
	t->out_lent = false;
}

int ltls_begin(struct ltls *t, struct ltls_ctx *x, char *err, size_t err_len)
{
	BIO *rbio = NULL, *wbio = NULL;
	const char *why = "out of memory";

	ltls_end(t);
	t->x = x;
	t->ssl = SSL_new(x->ctx);
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(x->out_method);
	if (t->ssl == NULL || rbio == NULL || wbio == NULL) {
		goto fail;
	}
	BIO_set_data(wbio, t);
	BIO_set_init(wbio, 1);
	SSL_set_bio(t->ssl, rbio, wbio); /* takes both */
	rbio = wbio = NULL;
	SSL_set_connect_state(t->ssl);
	if (x->host != NULL && !SSL_set_tlsext_host_name(t->ssl, x->host)) {
		why = "the host name is not valid for SNI";
		goto fail;
	}
	if (x->verify) {
		X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);

		if ((x->verify_host != NULL &&
		     !X509_VERIFY_PARAM_set1_host(param, x->verify_host, strlen(x->verify_host))) ||
		    (x->verify_ip != NULL && !X509_VERIFY_PARAM_set1_ip_asc(param, x->verify_ip))) {
			why = "cannot set the name to verify";
			goto fail;
		}
	}
	return 0;
fail:
	BIO_free(rbio);
	BIO_free(wbio);
	snprintf(err, err_len, "cannot start a TLS session: %s", why);
	ERR_clear_error();
	ltls_end(t);
	return -1;
}

int ltls_feed(struct ltls *t, const uint8_t *p, size_t len)
{
	if (len > INT32_MAX) {
		return -1;
	}
	return BIO_write(SSL_get_rbio(t->ssl), p, (int)len) == (int)len ? 0 : -1;
}

enum ltls_rc ltls_handshake(struct ltls *t, char *err, size_t err_len)
{
	int ret = SSL_do_handshake(t->ssl);

	if (ret == 1) {
		return LTLS_OK;
	}
	if (SSL_get_error(t->ssl, ret) == SSL_ERROR_WANT_READ) {
		return LTLS_WANT;
	}
	ssl_error(t, ret, "TLS handshake", err, err_len);
	return LTLS_ERROR;
}

enum ltls_rc ltls_read(struct ltls *t, uint8_t *out, size_t cap, size_t *out_len, char *err, size_t err_len)
{
	int ret = SSL_read(t->ssl, out, cap > INT32_MAX ? INT32_MAX : (int)cap);
	int e;

	*out_len = 0;
	if (ret > 0) {
		*out_len = (size_t)ret;
		return LTLS_OK;
	}
	e = SSL_get_error(t->ssl, ret);
	if (e == SSL_ERROR_WANT_READ) {
		return LTLS_WANT;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		return LTLS_CLOSED;
	}
	ssl_error(t, ret, "TLS read", err, err_len);
	return LTLS_ERROR;
}

/* seal encrypts n octets; our BIO never blocks, so SSL_write takes all or fails. */
static int seal(struct ltls *t, const uint8_t *p, size_t n, char *err, size_t err_len)
{
	int ret = SSL_write(t->ssl, p, (int)n);

	if (ret != (int)n) {
		ssl_error(t, ret, "TLS write", err, err_len);
		return -1;
	}
	return 0;
}

int ltls_write(struct ltls *t, struct iovec **iov, size_t *num_iov, size_t max_out, char *err, size_t err_len)
{
	while (*num_iov > 0 && t->pend.len < max_out) {
		size_t used = 0;

		if ((*iov)->iov_len >= sizeof(g_stage)) {
			/* A full record from a long iovec (a body): no gather copy. */
			struct iovec *v = *iov;

			if (seal(t, v->iov_base, sizeof(g_stage), err, err_len) != 0) {
				return -1;
			}
			v->iov_base = (uint8_t *)v->iov_base + sizeof(g_stage);
			v->iov_len -= sizeof(g_stage);
			if (v->iov_len == 0) {
				(*iov)++;
				(*num_iov)--;
			}
			continue;
		}
		/* Gather up to one record's worth of plaintext. */
		while (*num_iov > 0 && used < sizeof(g_stage)) {
			struct iovec *v = *iov;
			size_t n = v->iov_len < sizeof(g_stage) - used ? v->iov_len : sizeof(g_stage) - used;

			memcpy(g_stage + used, v->iov_base, n);
			used += n;
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= n;
			if (v->iov_len == 0) {
				(*iov)++;
				(*num_iov)--;
			}
		}
		if (used > 0 && seal(t, g_stage, used, err, err_len) != 0) {
			return -1;
		}
	}
	return 0;
}

bool ltls_take_out(struct ltls *t, const uint8_t **out_p, size_t *out_len)
{
	struct obuf tmp;

	if (t->out_lent || t->pend.len == 0) {
		return false;
	}
	tmp = t->out;
	t->out = t->pend;
	t->pend = tmp;
	t->pend.len = 0;
	t->out_lent = true;
	*out_p = t->out.p;
	*out_len = t->out.len;
	return true;
}

void ltls_sent(struct ltls *t)
{
	t->out.len = 0;
	t->out_lent = false;
}

bool ltls_pending(const struct ltls *t)
{
	return t->pend.len > 0;
}

void ltls_describe(const struct ltls *t, char *out, size_t out_len)
{
	const SSL_CIPHER *c = t->ssl ? SSL_get_current_cipher(t->ssl) : NULL;

	snprintf(out, out_len, "%s %s", t->ssl ? SSL_get_version(t->ssl) : "-", c ? SSL_CIPHER_standard_name(c) : "-");
}
