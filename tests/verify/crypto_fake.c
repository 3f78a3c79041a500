/*
 * crypto_fake.c - the dkim_crypto.h seam for unit tests, without BoringSSL
 * (Criterion loads OpenSSL's libcrypto; see dkim_crypto.h).
 *
 * SHA-256 is proto/sha256. The "signature check" accepts a signature equal
 * to the 32-byte header digest itself, for either algorithm, and a key that
 * is the 4 bytes "good"; so tests can build signed messages without keys
 * and still see every header-selection or canonicalisation mistake as a
 * fail. Real crypto is tested through `oceanmx verify` (tests/integ).
 *
 * fuzz_arc.c includes this file and sets crypto_fake_even_signature: then
 * a signature whose first byte is even verifies with the good key, so a
 * fuzzer reaches the passing paths without forging digests.
 */
#include <stdbool.h>
#include <string.h>

#include "../../proto/sha256.h"
#include "../../verify/dkim_crypto.h"

_Static_assert(sizeof(struct sha256) <= sizeof(struct dkim_sha256), "dkim_sha256 too small");

bool crypto_fake_even_signature; /* false: the signature must equal the digest */

void dkim_sha256_init(struct dkim_sha256 *h)
{
	sha256_init((struct sha256 *)(void *)h->opaque);
}

void dkim_sha256_update(struct dkim_sha256 *h, const void *p, size_t len)
{
	sha256_update((struct sha256 *)(void *)h->opaque, p, len);
}

void dkim_sha256_final(struct dkim_sha256 *h, uint8_t out[DKIM_SHA256_LEN])
{
	sha256_final((struct sha256 *)(void *)h->opaque, out);
}

enum auth_res dkim_crypto_verify(enum dkim_alg alg, const uint8_t *key, size_t key_len,
				 const uint8_t digest[DKIM_SHA256_LEN], const uint8_t *sig, size_t sig_len,
				 unsigned *out_key_bits, const char **out_reason)
{
	(void)alg;
	*out_key_bits = 0;
	*out_reason = NULL;
	if (key_len != 4 || memcmp(key, "good", 4) != 0) {
		*out_reason = "fake: unusable key";
		return AUTH_PERMERROR;
	}
	if (crypto_fake_even_signature ? sig_len == 0 || (sig[0] & 1) != 0
				       : sig_len != DKIM_SHA256_LEN || memcmp(sig, digest, DKIM_SHA256_LEN) != 0) {
		*out_reason = "signature did not verify";
		return AUTH_FAIL;
	}
	return AUTH_PASS;
}
