/*
 * dkim.c - DKIM keys and signatures for oceanmx-load; see dkim.h.
 * Start-up code only: every message is signed once, before the run.
 */
#include "dkim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sodium.h>

const char *dkim_alg_name(enum dkim_alg alg)
{
	switch (alg) {
	case DKIM_RSA:
		return "rsa-sha256";
	case DKIM_ED25519:
		return "ed25519-sha256";
	default:
		return "none";
	}
}

int lkey_generate(struct lkey *k, enum dkim_alg alg)
{
	memset(k, 0, sizeof(*k));
	k->alg = alg;
	if (alg == DKIM_RSA) {
		BIGNUM *e = BN_new();
		int ok;

		k->rsa = RSA_new();
		if (e == NULL || k->rsa == NULL || !BN_set_word(e, RSA_F4)) {
			BN_free(e);
			lkey_fini(k);
			return -1;
		}
		ok = RSA_generate_key_ex(k->rsa, 2048, e, NULL);
		BN_free(e);
		if (!ok) {
			lkey_fini(k);
			return -1;
		}
		return 0;
	}
	if (alg == DKIM_ED25519) {
		if (sodium_init() < 0) {
			return -1;
		}
		return crypto_sign_keypair(k->ed_pk, k->ed_sk) == 0 ? 0 : -1;
	}
	return -1;
}

int lkey_load(struct lkey *k, enum dkim_alg alg, const char *path, char *err, size_t err_len)
{
	FILE *f;
	EVP_PKEY *pk;
	int rc = -1;

	memset(k, 0, sizeof(*k));
	k->alg = alg;
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -1;
	}
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL) {
		snprintf(err, err_len, "%s: not a PEM private key", path);
		return -1;
	}
	if (alg == DKIM_RSA && EVP_PKEY_id(pk) == EVP_PKEY_RSA) {
		k->rsa = EVP_PKEY_get1_RSA(pk);
		if (k->rsa != NULL && RSA_bits(k->rsa) >= 1024) {
			rc = 0;
		} else {
			snprintf(err, err_len, "%s: RSA key shorter than 1024 bits (RFC 8301)", path);
		}
	} else if (alg == DKIM_ED25519 && EVP_PKEY_id(pk) == EVP_PKEY_ED25519) {
		uint8_t seed[32];
		size_t seed_len = sizeof(seed);

		if (sodium_init() >= 0 && EVP_PKEY_get_raw_private_key(pk, seed, &seed_len) && seed_len == 32 &&
		    crypto_sign_seed_keypair(k->ed_pk, k->ed_sk, seed) == 0) {
			rc = 0;
		} else {
			snprintf(err, err_len, "%s: cannot read the Ed25519 seed", path);
		}
		sodium_memzero(seed, sizeof(seed));
	} else {
		snprintf(err, err_len, "%s: key type does not match --dkim %s", path, alg == DKIM_RSA ? "rsa" : "ed25519");
	}
	EVP_PKEY_free(pk);
	if (rc != 0) {
		lkey_fini(k);
	}
	return rc;
}

int lkey_save(const struct lkey *k, const char *path)
{
	EVP_PKEY *pk = NULL;
	FILE *f;
	int fd, ok = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		return -1;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	if (k->alg == DKIM_RSA) {
		ok = PEM_write_RSAPrivateKey(f, k->rsa, NULL, NULL, 0, NULL, NULL);
	} else if (k->alg == DKIM_ED25519) {
		pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->ed_sk, 32);
		ok = pk != NULL && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
		EVP_PKEY_free(pk);
	}
	if (fclose(f) != 0) {
		ok = 0;
	}
	return ok ? 0 : -1;
}

void lkey_fini(struct lkey *k)
{
	RSA_free(k->rsa);
	k->rsa = NULL;
	sodium_memzero(k->ed_sk, sizeof(k->ed_sk));
}

static int b64_append(struct bb *out, const uint8_t *p, size_t len)
{
	size_t need = 0;
	int rc;

	if (!EVP_EncodedLength(&need, len)) {
		return -1;
	}
	rc = bb_reserve(out, need);
	if (rc != 0) {
		return rc;
	}
	out->len += EVP_EncodeBlock(out->p + out->len, p, len);
	return 0;
}

int lkey_dns_txt(const struct lkey *k, struct bb *out)
{
	int rc;

	if (k->alg == DKIM_RSA) {
		EVP_PKEY *pk = EVP_PKEY_new();
		CBB cbb;
		uint8_t *der = NULL;
		size_t der_len = 0;

		if (pk == NULL || !EVP_PKEY_set1_RSA(pk, k->rsa) || !CBB_init(&cbb, 512)) {
			EVP_PKEY_free(pk);
			return -1;
		}
		if (!EVP_marshal_public_key(&cbb, pk) || !CBB_finish(&cbb, &der, &der_len)) {
			CBB_cleanup(&cbb);
			EVP_PKEY_free(pk);
			return -1;
		}
		EVP_PKEY_free(pk);
		rc = bb_append_str(out, "v=DKIM1; k=rsa; p=");
		if (rc == 0) {
			rc = b64_append(out, der, der_len);
		}
		OPENSSL_free(der);
		return rc;
	}
	if (k->alg == DKIM_ED25519) {
		rc = bb_append_str(out, "v=DKIM1; k=ed25519; p=");
		return rc ? rc : b64_append(out, k->ed_pk, sizeof(k->ed_pk));
	}
	return -1;
}

int dkim_sign(struct bb *out, const struct lkey *k, const char *domain, const char *selector,
	      const char *signed_names, uint64_t t, struct span headers, struct span body)
{
	uint8_t bh[SHA256_DIGEST_LENGTH], hh[SHA256_DIGEST_LENGTH];
	uint8_t sig[512];
	size_t sig_len = 0, start = out->len;
	struct bb canon, sigfield;
	int rc = -1;

	bb_init(&canon, 0);
	bb_init(&sigfield, 0);
	if (dkim_body_relaxed(&canon, body) != 0) {
		goto out;
	}
	SHA256(canon.p, canon.len, bh);
	bb_reset(&canon, 0);

	if (bb_printf(&sigfield, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n\tt=%llu; h=%s;\r\n\tbh=",
		      dkim_alg_name(k->alg), domain, selector, (unsigned long long)t, signed_names) != 0 ||
	    b64_append(&sigfield, bh, sizeof(bh)) != 0 || bb_append_str(&sigfield, ";\r\n\tb=") != 0) {
		goto out;
	}
	/* RFC 6376 §5.4.2: each listed name takes the last unused instance. */
	if (dkim_canon_headers(&canon, headers, signed_names) != 0) {
		goto out;
	}
	/* The signature field itself, b= empty, without the final CRLF (§3.7). */
	if (dkim_header_relaxed(&canon, bb_span(&sigfield)) != 0) {
		goto out;
	}
	canon.len -= 2;
	SHA256(canon.p, canon.len, hh);
	if (k->alg == DKIM_RSA) {
		unsigned int l = 0;

		if (RSA_size(k->rsa) > sizeof(sig) || !RSA_sign(NID_sha256, hh, sizeof(hh), sig, &l, k->rsa)) {
			goto out;
		}
		sig_len = l;
	} else if (k->alg == DKIM_ED25519) {
		unsigned long long l = 0;

		/* RFC 8463 §3: Ed25519 (pure) over the SHA-256 hash. */
		if (crypto_sign_detached(sig, &l, hh, sizeof(hh), k->ed_sk) != 0) {
			goto out;
		}
		sig_len = (size_t)l;
	} else {
		goto out;
	}
	if (bb_append(out, sigfield.p, sigfield.len) != 0 || b64_append(out, sig, sig_len) != 0 ||
	    bb_append(out, "\r\n", 2) != 0) {
		out->len = start;
		goto out;
	}
	rc = 0;
out:
	bb_fini(&canon);
	bb_fini(&sigfield);
	return rc;
}

int dkim_sign_cb(void *arg, struct bb *out, const char *domain, struct span headers, struct span body)
{
	const struct dkim_signer *s = arg;

	return dkim_sign(out, s->key, domain, s->selector ? s->selector : DKIM_SELECTOR, MSG_SIGNED_NAMES, s->t,
			 headers, body);
}
