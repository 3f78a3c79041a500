/*
 * tls.c - STARTTLS server sessions over memory BIOs; see tls.h.
 *
 * Read side: a BoringSSL memory BIO that tls_conn_feed appends to. Write
 * side: a BIO of our own whose write appends to the conn's wire buffer, so
 * a sealed record is copied once, straight to where the send takes it.
 *
 * Policy (README "TLS"): TLS 1.2 and 1.3 only (RFC 8996), ECDHE with AEAD
 * ciphers only for TLS 1.2 (TLS 1.3's suites are BoringSSL's fixed three),
 * no renegotiation (BoringSSL refuses it as a server), session resumption
 * by tickets only (no server-side cache: nothing shared between shards),
 * with BoringSSL's own ticket keys, generated per store and rotated every
 * two days; tickets from before a reload cost one full handshake.
 *
 * Certificate choice (on_select_cert): the client's SNI narrows the pairs to
 * those whose names match (none matching: those of the default, the first
 * pair); among them an ECDSA or Ed25519 pair is taken when the client can
 * verify its signature algorithm, else the first in the order given. So an
 * RSA and an ECDSA certificate for the same names serve every client, and
 * the ECDSA signature (a tenth of RSA-2048's cost here) whenever it can.
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites: forward secrecy and AEAD only, ECDSA before RSA, AES-GCM before ChaCha20. */
#define TLS_CIPHERS_12                                                                                 \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_NAMES_MAX 64 /* names kept per certificate for SNI */

struct tls_cert {
	SSL_CTX *ctx;
	char *names[TLS_NAMES_MAX]; /* lower case; "*.example.org" for a wildcard */
	unsigned num_names;
	uint16_t sigalg;            /* the one signature algorithm the key makes; 0 for RSA (any RSA one) */
	const char *kind;           /* "RSA", "ECDSA P-256", ... for the log */
};

struct tls_store {
	atomic_uint refs;
	struct tls_cert certs[TLS_CERTS_MAX];
	unsigned num_certs;
};

struct tls_holder {
	pthread_mutex_t mu; /* held only to swap or to take a reference */
	struct tls_store *cur;
};

struct tls_conn {
	SSL *ssl;
	struct tls_store *st;
	struct bb *wire;
	bool notified;
};

static BIO_METHOD *g_wire_method;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* ---------------------------------------------------------------- errors */

static void err_printf(char **out_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_printf(char **out_err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(out_err, fmt, ap) < 0) {
		*out_err = NULL;
	}
	va_end(ap);
}

/* lib_reason names the first error on libssl's queue and clears the queue. */
static const char *lib_reason(void)
{
	uint32_t code = ERR_peek_error();
	const char *r = code != 0 ? ERR_reason_error_string(code) : NULL;

	ERR_clear_error();
	return r != NULL ? r : "unknown error";
}

/* conn_error describes why an SSL call returned `ret` and clears the error queue. */
static void conn_error(const struct tls_conn *t, int ret, const char *what, char *err, size_t err_len)
{
	int e = SSL_get_error(t->ssl, ret);
	uint32_t code = ERR_peek_error();

	if (code != 0) {
		const char *r = ERR_reason_error_string(code);

		snprintf(err, err_len, "%s: %s", what, r != NULL ? r : "unknown error");
	} else if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(err, err_len, "%s: the client closed the TLS session", what);
	} else if (e == SSL_ERROR_SYSCALL) {
		snprintf(err, err_len, "%s: unexpected end of the client's data", what);
	} else {
		snprintf(err, err_len, "%s: SSL error %d", what, e);
	}
	ERR_clear_error();
}

/* ---------------------------------------------------------------- wire BIO */

static int wire_write(BIO *bio, const char *p, int len)
{
	struct tls_conn *t = BIO_get_data(bio);

	if (len <= 0) {
		return 0;
	}
	return bb_append(t->wire, p, (size_t)len) == 0 ? len : -1;
}

static long wire_ctrl(BIO *bio, int cmd, long larg, void *parg)
{
	(void)bio;
	(void)larg;
	(void)parg;
	/* libssl flushes after each flight; the bytes are already queued. */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static void global_init(void)
{
	g_wire_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "oceanmx wire");
	if (g_wire_method != NULL &&
	    (!BIO_meth_set_write(g_wire_method, wire_write) || !BIO_meth_set_ctrl(g_wire_method, wire_ctrl))) {
		BIO_meth_free(g_wire_method);
		g_wire_method = NULL;
	}
}

/* ---------------------------------------------------------------- names */

/* name_match: RFC 6125 §6.4.3, a "*." wildcard stands for exactly one left-most label. */
static bool name_match(const char *pattern, const char *host)
{
	if (strncmp(pattern, "*.", 2) == 0) {
		const char *dot = strchr(host, '.');

		return dot != NULL && dot != host && strcasecmp(dot + 1, pattern + 2) == 0;
	}
	return strcasecmp(pattern, host) == 0;
}

static int cert_add_name(struct tls_cert *c, const unsigned char *p, int len)
{
	char *n;

	if (len <= 0 || memchr(p, '\0', (size_t)len) != NULL || c->num_names == TLS_NAMES_MAX) {
		return 0; /* not a usable DNS name: skipped */
	}
	n = strndup((const char *)p, (size_t)len);
	if (n == NULL) {
		return -ENOMEM;
	}
	for (char *q = n; *q != '\0'; q++) {
		*q = (char)(*q >= 'A' && *q <= 'Z' ? *q - 'A' + 'a' : *q);
	}
	c->names[c->num_names++] = n;
	return 0;
}

/* cert_names collects the SAN DNS names of the leaf, or its subject CN when it has none (RFC 6125 §6.4.4). */
static int cert_names(struct tls_cert *c, X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int rc = 0;

	if (gens != NULL) {
		for (size_t i = 0; rc == 0 && i < sk_GENERAL_NAME_num(gens); i++) {
			const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

			if (g->type == GEN_DNS) {
				rc = cert_add_name(c, ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName));
			}
		}
		GENERAL_NAMES_free(gens);
	}
	if (rc == 0 && c->num_names == 0) {
		X509_NAME *subj = X509_get_subject_name(x);
		int i = subj != NULL ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;

		if (i >= 0) {
			ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));

			rc = cert_add_name(c, ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn));
		}
	}
	return rc;
}

/* cert_matches: one of c's names covers host. */
static bool cert_matches(const struct tls_cert *c, const char *host)
{
	for (unsigned k = 0; k < c->num_names; k++) {
		if (name_match(c->names[k], host)) {
			return true;
		}
	}
	return false;
}

/* peer_verifies: the client listed `sigalg` among the signatures it can verify. */
static bool peer_verifies(const SSL *ssl, uint16_t sigalg)
{
	const uint16_t *algs;
	size_t n = SSL_get0_peer_verify_algorithms(ssl, &algs);

	for (size_t i = 0; i < n; i++) {
		if (algs[i] == sigalg) {
			return true;
		}
	}
	return false;
}

/*
 * on_select_cert picks the pair for this handshake (see the file comment).
 * BoringSSL calls it once the ClientHello's extensions are parsed (SNI and
 * signature_algorithms known), before the resumption decision. Shard thread.
 */
static int on_select_cert(SSL *ssl, void *arg)
{
	const struct tls_store *st = arg;
	const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const struct tls_cert *def = &st->certs[0];
	int pick = -1, first = -1;
	bool by_sni = false;

	if (host != NULL) {
		for (unsigned i = 0; i < st->num_certs && !by_sni; i++) {
			by_sni = cert_matches(&st->certs[i], host);
		}
	}
	for (unsigned i = 0; i < st->num_certs && pick < 0; i++) {
		const struct tls_cert *c = &st->certs[i];
		/* RFC 6066 §3: with no name of ours asked for, the default's set */
		bool in = by_sni ? cert_matches(c, host)
				 : i == 0 || (def->num_names > 0 && cert_matches(c, def->names[0]));

		if (!in) {
			continue;
		}
		if (first < 0) {
			first = (int)i;
		}
		if (c->sigalg != 0 && peer_verifies(ssl, c->sigalg)) {
			pick = (int)i;
		}
	}
	if (pick < 0) {
		pick = first >= 0 ? first : 0;
	}
	if (st->certs[pick].ctx != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, st->certs[pick].ctx) == NULL) {
		return 0;
	}
	return 1;
}

/* on_servername only acknowledges the name (RFC 6066 §3); on_select_cert uses it. */
static int on_servername(SSL *ssl, int *out_alert, void *arg)
{
	(void)ssl;
	(void)out_alert;
	(void)arg;
	return SSL_TLSEXT_ERR_OK;
}

/* key_kind fills c->sigalg and c->kind from the pair's private key; -1 for a key we cannot sign with. */
static int key_kind(struct tls_cert *c)
{
	EVP_PKEY *pk = SSL_CTX_get0_privatekey(c->ctx);

	switch (pk != NULL ? EVP_PKEY_id(pk) : EVP_PKEY_NONE) {
	case EVP_PKEY_RSA:
		c->sigalg = 0;
		c->kind = "RSA";
		return 0;
	case EVP_PKEY_ED25519:
		c->sigalg = SSL_SIGN_ED25519;
		c->kind = "Ed25519";
		return 0;
	case EVP_PKEY_EC:
		switch (EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(pk)))) {
		case NID_X9_62_prime256v1:
			c->sigalg = SSL_SIGN_ECDSA_SECP256R1_SHA256;
			c->kind = "ECDSA P-256";
			return 0;
		case NID_secp384r1:
			c->sigalg = SSL_SIGN_ECDSA_SECP384R1_SHA384;
			c->kind = "ECDSA P-384";
			return 0;
		case NID_secp521r1:
			c->sigalg = SSL_SIGN_ECDSA_SECP521R1_SHA512;
			c->kind = "ECDSA P-521";
			return 0;
		default:
			return -1;
		}
	default:
		return -1;
	}
}

/* ---------------------------------------------------------------- store */

static int cert_load(struct tls_cert *c, struct tls_store *st, const char *cert, const char *key, char **out_err)
{
	X509 *leaf;

	c->ctx = SSL_CTX_new(TLS_server_method());
	if (c->ctx == NULL) {
		err_printf(out_err, "tls: cannot set up libssl: %s", lib_reason());
		return -1;
	}
	if (!SSL_CTX_use_certificate_chain_file(c->ctx, cert)) {
		err_printf(out_err, "tls-cert %s: %s", cert, lib_reason());
		return -1;
	}
	if (!SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM)) {
		err_printf(out_err, "tls-key %s: %s", key, lib_reason());
		return -1;
	}
	if (!SSL_CTX_check_private_key(c->ctx)) {
		err_printf(out_err, "tls-key %s: does not match tls-cert %s (%s)", key, cert, lib_reason());
		return -1;
	}
	/* RFC 8996: nothing older than TLS 1.2. */
	if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c->ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_strict_cipher_list(c->ctx, TLS_CIPHERS_12)) {
		err_printf(out_err, "tls: cannot set the protocol policy: %s", lib_reason());
		return -1;
	}
	/* Resumption by tickets only: a server-side cache would be shared
	 * (and locked) across the shards. */
	SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_tlsext_servername_callback(c->ctx, on_servername);
	SSL_CTX_set_cert_cb(c->ctx, on_select_cert, st);
	if (key_kind(c) != 0) {
		err_printf(out_err, "tls-key %s: not an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 key", key);
		return -1;
	}
	leaf = SSL_CTX_get0_certificate(c->ctx);
	if (leaf == NULL || cert_names(c, leaf) != 0) {
		err_printf(out_err, "tls-cert %s: cannot read its names", cert);
		return -1;
	}
	return 0;
}

static void store_free(struct tls_store *st)
{
	for (unsigned i = 0; i < st->num_certs; i++) {
		SSL_CTX_free(st->certs[i].ctx);
		for (unsigned k = 0; k < st->certs[i].num_names; k++) {
			free(st->certs[i].names[k]); st->certs[i].names[k] = NULL;
		}
	}
	free(st);
}

struct tls_store *tls_store_new(const char *const *certs, const char *const *keys, unsigned num, char **out_err)
{
	struct tls_store *st;

	*out_err = NULL;
	pthread_once(&g_once, global_init);
	if (g_wire_method == NULL) {
		err_printf(out_err, "tls: cannot set up libssl");
		return NULL;
	}
	if (num == 0 || num > TLS_CERTS_MAX) {
		err_printf(out_err, "tls: %u certificates (1..%d)", num, TLS_CERTS_MAX);
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		err_printf(out_err, "tls: out of memory");
		return NULL;
	}
	atomic_init(&st->refs, 1);
	for (unsigned i = 0; i < num; i++) {
		st->num_certs++;
		if (cert_load(&st->certs[i], st, certs[i], keys[i], out_err) != 0) {
			store_free(st);
			return NULL;
		}
	}
	return st;
}

struct tls_store *tls_store_ref(struct tls_store *st)
{
	atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
	return st;
}

void tls_store_unref(struct tls_store *st)
{
	if (st != NULL && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1) {
		store_free(st);
	}
}

const char *tls_store_key_kind(const struct tls_store *st, unsigned i)
{
	return i < st->num_certs ? st->certs[i].kind : NULL;
}

bool tls_store_describe(const struct tls_store *st, unsigned i, char *out, size_t out_len)
{
	size_t n = 0;

	if (i >= st->num_certs) {
		return false;
	}
	out[0] = '\0';
	for (unsigned k = 0; k < st->certs[i].num_names && n < out_len; k++) {
		int w = snprintf(out + n, out_len - n, "%s%s", k ? "," : "", st->certs[i].names[k]);

		n += w > 0 ? (size_t)w : 0;
	}
	return true;
}

/* ---------------------------------------------------------------- holder */

struct tls_holder *tls_holder_new(struct tls_store *st)
{
	struct tls_holder *h = calloc(1, sizeof(*h));

	if (h == NULL) {
		return NULL;
	}
	pthread_mutex_init(&h->mu, NULL);
	h->cur = st;
	return h;
}

void tls_holder_free(struct tls_holder *h)
{
	if (h == NULL) {
		return;
	}
	tls_store_unref(h->cur);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

struct tls_store *tls_holder_get(struct tls_holder *h)
{
	struct tls_store *st;

	/* The lock makes "load the pointer, add a reference" one step
	 * against a swap that drops the last reference in between. */
	pthread_mutex_lock(&h->mu);
	st = tls_store_ref(h->cur);
	pthread_mutex_unlock(&h->mu);
	return st;
}

void tls_holder_set(struct tls_holder *h, struct tls_store *st)
{
	struct tls_store *old;

	pthread_mutex_lock(&h->mu);
	old = h->cur;
	h->cur = st;
	pthread_mutex_unlock(&h->mu);
	tls_store_unref(old);
}

/* ---------------------------------------------------------------- sessions */

struct tls_conn *tls_conn_new(struct tls_store *st, struct bb *wire)
{
	struct tls_conn *t = calloc(1, sizeof(*t));
	BIO *rbio = NULL, *wbio = NULL;

	if (t == NULL) {
		return NULL;
	}
	t->wire = wire;
	t->ssl = SSL_new(st->certs[0].ctx);
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(g_wire_method);
	if (t->ssl == NULL || rbio == NULL || wbio == NULL) {
		BIO_free(rbio);
		BIO_free(wbio);
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_data(wbio, t);
	BIO_set_init(wbio, 1);
	SSL_set_bio(t->ssl, rbio, wbio); /* takes both */
	SSL_set_accept_state(t->ssl);
	t->st = tls_store_ref(st);
	return t;
}

void tls_conn_free(struct tls_conn *t)
{
	if (t == NULL) {
		return;
	}
	SSL_free(t->ssl); t->ssl = NULL;
	tls_store_unref(t->st); t->st = NULL;
	free(t);
}

int tls_conn_feed(struct tls_conn *t, struct span in)
{
	if (in.len > INT32_MAX) {
		return -ENOMEM;
	}
	if (in.len == 0) {
		return 0;
	}
	return BIO_write(SSL_get_rbio(t->ssl), in.p, (int)in.len) == (int)in.len ? 0 : -ENOMEM;
}

size_t tls_conn_buffered(const struct tls_conn *t)
{
	return BIO_pending(SSL_get_rbio(t->ssl));
}

enum tls_rc tls_conn_handshake(struct tls_conn *t, char *err, size_t err_len)
{
	int ret = SSL_do_handshake(t->ssl);

	if (ret == 1) {
		return TLS_OK;
	}
	if (SSL_get_error(t->ssl, ret) == SSL_ERROR_WANT_READ) {
		return TLS_WANT;
	}
	conn_error(t, ret, "handshake", err, err_len);
	return TLS_ERROR;
}

enum tls_rc tls_conn_read(struct tls_conn *t, uint8_t *out, size_t cap, size_t *out_len, char *err, size_t err_len)
{
	int ret = SSL_read(t->ssl, out, cap > INT32_MAX ? INT32_MAX : (int)cap);
	int e;

	*out_len = 0;
	if (ret > 0) {
		*out_len = (size_t)ret;
		return TLS_OK;
	}
	e = SSL_get_error(t->ssl, ret);
	if (e == SSL_ERROR_WANT_READ) {
		return TLS_WANT;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		return TLS_CLOSED;
	}
	conn_error(t, ret, "read", err, err_len);
	return TLS_ERROR;
}

int tls_conn_write(struct tls_conn *t, struct span in, char *err, size_t err_len)
{
	while (in.len > 0) {
		/* Our BIO never blocks, so SSL_write seals all it is given or fails. */
		int n = in.len > INT32_MAX / 2 ? INT32_MAX / 2 : (int)in.len;
		int ret = SSL_write(t->ssl, in.p, n);

		if (ret != n) {
			conn_error(t, ret, "write", err, err_len);
			return -1;
		}
		in.p += n;
		in.len -= (size_t)n;
	}
	return 0;
}

void tls_conn_close_notify(struct tls_conn *t)
{
	if (!t->notified && SSL_is_init_finished(t->ssl)) {
		t->notified = true;
		(void)SSL_shutdown(t->ssl);
		ERR_clear_error();
	}
}

void tls_conn_info(const struct tls_conn *t, struct msg_tls *out)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
	const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	out->on = true;
	snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(t->ssl));
	snprintf(out->cipher, sizeof(out->cipher), "%s", c != NULL ? SSL_CIPHER_standard_name(c) : "unknown");
	/* The name goes into logs, the spool head and JSON: keep it to DNS characters. */
	for (; sni != NULL && sni[i] != '\0' && i + 1 < sizeof(out->sni); i++) {
		char ch = sni[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			  ch == '.' || ch == '-' || ch == '_';

		out->sni[i] = ok ? ch : '?';
	}
	out->sni[i] = '\0';
}

bool tls_conn_resumed(const struct tls_conn *t)
{
	return SSL_session_reused(t->ssl) != 0;
}
