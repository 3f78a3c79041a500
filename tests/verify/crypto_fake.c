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
#include <stdlib.h>
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

/* The fake key handle: the key bytes, copied (the real one holds a parsed key). */
struct dkim_pubkey {
	enum dkim_alg alg;
	size_t len;
	uint8_t p[];
};

/* crypto_fake_num_pubkeys counts live handles, so tests see them freed. */
int crypto_fake_num_pubkeys;

struct dkim_pubkey *dkim_pubkey_new(enum dkim_alg alg, const uint8_t *key, size_t key_len)
{
	struct dkim_pubkey *pk = malloc(sizeof(*pk) + key_len);

	if (pk == NULL) {
		return NULL;
	}
	pk->alg = alg;
	pk->len = key_len;
	if (key_len > 0) {
		memcpy(pk->p, key, key_len);
	}
	__atomic_add_fetch(&crypto_fake_num_pubkeys, 1, __ATOMIC_RELAXED);
	return pk;
}

void dkim_pubkey_free(struct dkim_pubkey *pk)
{
	if (pk == NULL) {
		return;
	}
	__atomic_sub_fetch(&crypto_fake_num_pubkeys, 1, __ATOMIC_RELAXED);
	free(pk);
}

enum auth_res dkim_pubkey_verify(const struct dkim_pubkey *pk, enum dkim_alg alg, const uint8_t digest[DKIM_SHA256_LEN],
				 const uint8_t *sig, size_t sig_len, unsigned *out_key_bits, const char **out_reason)
{
	*out_key_bits = 0;
	*out_reason = NULL;
	if (alg != pk->alg) {
		*out_reason = "key type does not match the signature algorithm";
		return AUTH_PERMERROR;
	}
	if (pk->len != 4 || memcmp(pk->p, "good", 4) != 0) {
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
