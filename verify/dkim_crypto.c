/*
 * dkim_crypto.c - DKIM crypto with BoringSSL (SHA-256, RSA PKCS#1 v1.5)
 * and libsodium (Ed25519). Thread-safe; no global state but libsodium's
 * one-time init. A struct dkim_pubkey is immutable once made, so the
 * verify pool's workers share one per key (BoringSSL sets up an RSA key's
 * Montgomery context on its first use, under the key's own lock).
 */
#include "dkim_crypto.h"

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(struct dkim_sha256), "dkim_sha256 too small for SHA256_CTX");

#define RSA_BITS_MIN 1024 /* RFC 8301 §3.2 */
#define RSA_BITS_MAX 4096 /* RFC 8301 §3.2: verifiers MUST support up to 4096 */

void dkim_sha256_init(struct dkim_sha256 *h)
{
	SHA256_Init((SHA256_CTX *)(void *)h->opaque);
}

void dkim_sha256_update(struct dkim_sha256 *h, const void *p, size_t len)
{
	SHA256_Update((SHA256_CTX *)(void *)h->opaque, p, len);
}

void dkim_sha256_final(struct dkim_sha256 *h, uint8_t out[DKIM_SHA256_LEN])
{
	SHA256_Final(out, (SHA256_CTX *)(void *)h->opaque);
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok = -1;

static void sodium_setup(void)
{
	sodium_ok = sodium_init();
}

/* rsa_from_key parses SubjectPublicKeyInfo, else a bare RSAPublicKey (seen in the wild). */
static RSA *rsa_from_key(const uint8_t *key, size_t key_len)
{
	CBS cbs;
	EVP_PKEY *pk;
	RSA *rsa = NULL;

	CBS_init(&cbs, key, key_len);
	pk = EVP_parse_public_key(&cbs);
	if (pk != NULL) {
		if (CBS_len(&cbs) == 0) {
			rsa = EVP_PKEY_get1_RSA(pk); /* NULL if not an RSA key */
		}
		EVP_PKEY_free(pk);
		return rsa;
	}
	CBS_init(&cbs, key, key_len);
	rsa = RSA_parse_public_key(&cbs);
	if (rsa != NULL && CBS_len(&cbs) != 0) {
		RSA_free(rsa);
		rsa = NULL;
	}
	return rsa;
}

struct dkim_pubkey {
	enum dkim_alg alg;
	const char *bad;    /* non-NULL: not a usable key, the AUTH_PERMERROR reason */
	unsigned bits;
	RSA *rsa;           /* rsa-sha256 and usable */
	uint8_t ed[crypto_sign_PUBLICKEYBYTES]; /* ed25519-sha256 and usable */
};

struct dkim_pubkey *dkim_pubkey_new(enum dkim_alg alg, const uint8_t *key, size_t key_len)
{
	struct dkim_pubkey *pk = calloc(1, sizeof(*pk));

	if (pk == NULL) {
		return NULL;
	}
	pk->alg = alg;
	if (alg == DKIM_ALG_ED25519_SHA256) {
		if (key_len != crypto_sign_PUBLICKEYBYTES) {
			pk->bad = "ed25519 public key is not 32 octets (RFC 8463 section 4)";
		} else {
			memcpy(pk->ed, key, key_len);
			pk->bits = 256;
		}
	} else if (alg == DKIM_ALG_RSA_SHA256) {
		pk->rsa = rsa_from_key(key, key_len);
		if (pk->rsa == NULL) {
			ERR_clear_error(); /* the thread's error queue must not grow with hostile keys */
			pk->bad = "public key is not a valid RSA key";
		} else {
			pk->bits = RSA_bits(pk->rsa);
			if (pk->bits < RSA_BITS_MIN || pk->bits > RSA_BITS_MAX) {
				pk->bad = pk->bits < RSA_BITS_MIN ? "RSA key smaller than 1024 bits (RFC 8301 section 3.2)"
								  : "RSA key larger than 4096 bits";
				RSA_free(pk->rsa);
				pk->rsa = NULL;
			}
		}
	} else {
		pk->bad = "unsupported signature algorithm";
	}
	return pk;
}

void dkim_pubkey_free(struct dkim_pubkey *pk)
{
	if (pk == NULL) {
		return;
	}
	RSA_free(pk->rsa); pk->rsa = NULL;
	free(pk);
}

enum auth_res dkim_pubkey_verify(const struct dkim_pubkey *pk, enum dkim_alg alg, const uint8_t digest[DKIM_SHA256_LEN],
				 const uint8_t *sig, size_t sig_len, unsigned *out_key_bits, const char **out_reason)
{
	*out_key_bits = pk->bits;
	*out_reason = NULL;
	if (alg != pk->alg) {
		*out_key_bits = 0;
		*out_reason = "key type does not match the signature algorithm";
		return AUTH_PERMERROR;
	}
	if (alg == DKIM_ALG_ED25519_SHA256) {
		pthread_once(&sodium_once, sodium_setup);
		if (sodium_ok < 0) {
			*out_reason = "ed25519 unavailable (libsodium init failed)";
			return AUTH_TEMPERROR;
		}
	}
	if (pk->bad != NULL) {
		*out_reason = pk->bad;
		return AUTH_PERMERROR;
	}
	if (alg == DKIM_ALG_ED25519_SHA256) {
		if (sig_len != crypto_sign_BYTES ||
		    crypto_sign_verify_detached(sig, digest, DKIM_SHA256_LEN, pk->ed) != 0) {
			*out_reason = "signature did not verify";
			return AUTH_FAIL;
		}
		return AUTH_PASS;
	}
	if (sig_len != RSA_size(pk->rsa) || RSA_verify(NID_sha256, digest, DKIM_SHA256_LEN, sig, sig_len, pk->rsa) != 1) {
		ERR_clear_error();
		*out_reason = "signature did not verify";
		return AUTH_FAIL;
	}
	return AUTH_PASS;
}
