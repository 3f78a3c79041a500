/*
 * dkim.h - DKIM signing for oceanmx-load: keys (generated or loaded as
 * PEM), the DNS TXT record a verifier needs, and signatures (RFC 6376
 * rsa-sha256 with 2048-bit keys, RFC 8463 ed25519-sha256; relaxed/relaxed).
 * BoringSSL (RSA, SHA-256, PEM) and libsodium (Ed25519).
 */
#ifndef OMX_LOAD_DKIM_H
#define OMX_LOAD_DKIM_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/rsa.h>

#include "msggen.h"

enum dkim_alg {
	DKIM_NONE = 0,   /* unsigned messages */
	DKIM_RSA,        /* rsa-sha256, 2048-bit key (RFC 6376, RFC 8301) */
	DKIM_ED25519,    /* ed25519-sha256 (RFC 8463) */
	DKIM_ALG_COUNT   /* sentinel */
};

struct lkey {
	enum dkim_alg alg;
	RSA *rsa;          /* DKIM_RSA: owned */
	uint8_t ed_sk[64]; /* DKIM_ED25519: libsodium secret key (seed || pk) */
	uint8_t ed_pk[32];
};

/* What dkim_sign_cb needs: the key, the selector and t=. */
struct dkim_signer {
	const struct lkey *key;
	const char *selector;
	uint64_t t;
};

const char *dkim_alg_name(enum dkim_alg alg); /* "rsa-sha256" / "ed25519-sha256" */

/* lkey_generate makes a fresh key (RSA 2048, e=65537, or Ed25519); 0 or -1. */
int lkey_generate(struct lkey *k, enum dkim_alg alg);

/*
 * lkey_load reads a PEM private key (PKCS#1 RSA or PKCS#8 RSA/Ed25519, as
 * written by lkey_save or `openssl genpkey`); its type must match `alg`.
 * 0, or -1 with a message in err.
 */
int lkey_load(struct lkey *k, enum dkim_alg alg, const char *path, char *err, size_t err_len);

/* lkey_save writes the key as PEM (mode 0600); 0 or -1. */
int lkey_save(const struct lkey *k, const char *path);
void lkey_fini(struct lkey *k);

/* lkey_dns_txt appends the TXT value "v=DKIM1; k=...; p=..." (unquoted); 0 or -ENOMEM/-1. */
int lkey_dns_txt(const struct lkey *k, struct bb *out);

/*
 * dkim_sign appends a complete "DKIM-Signature: ..." field (ending CRLF)
 * for the header block `headers` (fields, each ending CRLF, no empty line)
 * and `body`, signing the fields named in `signed_names` (colon separated,
 * each taken once, bottom-up). 0, or -1.
 */
int dkim_sign(struct bb *out, const struct lkey *k, const char *domain, const char *selector,
	      const char *signed_names, uint64_t t, struct span headers, struct span body);

/* dkim_sign_cb is a msg_sign_fn; arg is a struct dkim_signer. */
int dkim_sign_cb(void *arg, struct bb *out, const char *domain, struct span headers, struct span body);

#endif
