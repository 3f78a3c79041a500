/*
 * dkim_keyrec.c - a parsed, shared key lookup outcome; see dkim_keyrec.h.
 * Pure apart from the crypto seam (dkim_crypto.h).
 */
#include "dkim_keyrec.h"

#include <stdlib.h>

struct dkim_keyrec *dkim_keyrec_new(const struct dns_txt_answer *a)
{
	struct dkim_keyrec *kr = malloc(sizeof(*kr));

	if (kr == NULL) {
		return NULL;
	}
	atomic_init(&kr->refs, 1);
	kr->pk = NULL;
	kr->res = dkim_key_from_answer(&kr->key, &kr->reason, a);
	if (kr->res == AUTH_NONE) {
		enum dkim_alg alg = kr->key.k == DKIM_KEY_ED25519 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;

		kr->pk = dkim_pubkey_new(alg, kr->key.p, kr->key.p_len);
		if (kr->pk == NULL) {
			free(kr);
			return NULL;
		}
	}
	return kr;
}

struct dkim_keyrec *dkim_keyrec_ref(struct dkim_keyrec *kr)
{
	atomic_fetch_add_explicit(&kr->refs, 1, memory_order_relaxed);
	return kr;
}

struct dkim_keyrec *dkim_keyrec_use(struct dkim_keyrec *kr, enum auth_res *out_res, const char **out_reason)
{
	if (kr == NULL) {
		*out_res = AUTH_TEMPERROR;
		*out_reason = "out of memory";
		return NULL;
	}
	*out_res = kr->res;
	*out_reason = kr->reason;
	return kr->res == AUTH_NONE ? dkim_keyrec_ref(kr) : NULL;
}

void dkim_keyrec_unref(struct dkim_keyrec *kr)
{
	if (kr == NULL) {
		return;
	}
	/* acq_rel: the freeing thread sees every other holder's last use. */
	if (atomic_fetch_sub_explicit(&kr->refs, 1, memory_order_acq_rel) == 1) {
		dkim_pubkey_free(kr->pk); kr->pk = NULL;
		free(kr);
	}
}
