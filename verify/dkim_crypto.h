/*
 * dkim_crypto.h - the link-time seam between the DKIM verifier (pure) and
 * the crypto libraries.
 *
 * verify/dkim_crypto.c implements it with BoringSSL (SHA-256, RSA) and
 * libsodium (Ed25519) and goes into omx_verify. The unit tests link
 * tests/verify/crypto_fake.c instead (proto/sha256 and a fake signature
 * check), because Criterion drags OpenSSL's libcrypto into the process and
 * its symbols collide with BoringSSL's (DESIGN.md, Dependencies).
 * Every function here is thread-safe; only dkim_pubkey_new allocates.
 */
#ifndef OMX_DKIM_CRYPTO_H
#define OMX_DKIM_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "dkim_sig.h"

#define DKIM_SHA256_LEN 32

/* Opaque SHA-256 state, big enough for BoringSSL's SHA256_CTX and proto/sha256. */
struct dkim_sha256 {
	_Alignas(16) uint8_t opaque[192];
};

void dkim_sha256_init(struct dkim_sha256 *h);
void dkim_sha256_update(struct dkim_sha256 *h, const void *p, size_t len);
void dkim_sha256_final(struct dkim_sha256 *h, uint8_t out[DKIM_SHA256_LEN]);

/* A parsed public key: opaque; only dkim_crypto.c (and the tests' fake) see inside. */
struct dkim_pubkey;

/*
 * dkim_pubkey_new parses the public key bytes `key` (p= decoded) for `alg`
 * once, so that every later check with it skips the parsing (and, for RSA,
 * BoringSSL's Montgomery set-up). For rsa-sha256: a SubjectPublicKeyInfo
 * or a bare PKCS#1 RSAPublicKey. For ed25519-sha256 (RFC 8463 §4): 32
 * octets. Bytes that are not a usable key still give a handle, which
 * remembers why: dkim_pubkey_verify reports it. Returns a new handle, or
 * NULL only when out of memory. Borrows `key`.
 */
struct dkim_pubkey *dkim_pubkey_new(enum dkim_alg alg, const uint8_t *key, size_t key_len);

/* dkim_pubkey_free releases pk; NULL does nothing. */
void dkim_pubkey_free(struct dkim_pubkey *pk);

/*
 * dkim_pubkey_verify checks `sig` over the SHA-256 `digest` of the signed
 * header data with key `pk`. RSA: modulus of 1024..4096 bits (RFC 8301
 * §3.2), else AUTH_PERMERROR. Ed25519 (RFC 8463 §3): the signature is over
 * the digest. A key of another algorithm than `alg` is AUTH_PERMERROR.
 * Returns AUTH_PASS, AUTH_FAIL ("signature did not verify") or
 * AUTH_PERMERROR (unusable key), with a static *out_reason except on
 * AUTH_PASS. *out_key_bits gets the key size (0 if unknown). Borrows
 * everything. Thread-safe: any number of threads may verify with one
 * handle at once (BoringSSL: RSA_verify does not mutate the key).
 */
__attribute__((warn_unused_result)) enum auth_res dkim_pubkey_verify(const struct dkim_pubkey *pk, enum dkim_alg alg,
								       const uint8_t digest[DKIM_SHA256_LEN],
								       const uint8_t *sig, size_t sig_len,
								       unsigned *out_key_bits,
								       const char **out_reason);

#endif
