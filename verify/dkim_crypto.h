/*
 * dkim_crypto.h - the link-time seam between the DKIM verifier (pure) and
 * the crypto libraries.
 *
 * verify/dkim_crypto.c implements it with BoringSSL (SHA-256, RSA) and
 * libsodium (Ed25519) and goes into omx_verify. The unit tests link
 * tests/verify/crypto_fake.c instead (proto/sha256 and a fake signature
 * check), because Criterion drags OpenSSL's libcrypto into the process and
 * its symbols collide with BoringSSL's (DESIGN.md, Dependencies).
 * Every function here is thread-safe and allocation-free except
 * dkim_crypto_verify (which parses the key per call).
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

/*
 * dkim_crypto_verify checks `sig` over the SHA-256 `digest` of the signed
 * header data with the public key bytes `key` (p= decoded). For
 * rsa-sha256: `key` is a SubjectPublicKeyInfo or a bare PKCS#1
 * RSAPublicKey; modulus of 1024..4096 bits (RFC 8301 §3.2), else
 * AUTH_PERMERROR. For ed25519-sha256 (RFC 8463 §3): a 32-byte key, the
 * signature is over the digest. Returns AUTH_PASS, AUTH_FAIL ("signature
 * did not verify") or AUTH_PERMERROR (unusable key), with a static
 * *out_reason except on AUTH_PASS. *out_key_bits gets the key size (0 if
 * unknown). Borrows everything.
 */
__attribute__((warn_unused_result)) enum auth_res dkim_crypto_verify(enum dkim_alg alg, const uint8_t *key,
								       size_t key_len,
								       const uint8_t digest[DKIM_SHA256_LEN],
								       const uint8_t *sig, size_t sig_len,
								       unsigned *out_key_bits,
								       const char **out_reason);

#endif
