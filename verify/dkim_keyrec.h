/*
 * dkim_keyrec.h - the outcome of one DKIM key lookup, parsed once and
 * shared: the key record (dkim_key.h) and its public key made ready for
 * the crypto library (dkim_crypto.h), or why there is no usable key.
 *
 * The verify pool keeps one per key name for the lookup's TTL and hands a
 * reference to every message signed with that key (DKIM and ARC use the
 * same records, RFC 8617 §4.1), so a key is decoded and parsed once per
 * TTL, not once per message. Immutable after dkim_keyrec_new; the
 * reference count is atomic, so any thread may take or drop a reference.
 */
#ifndef OMX_DKIM_KEYREC_H
#define OMX_DKIM_KEYREC_H

#include <stdatomic.h>

#include "auth.h"
#include "dkim_crypto.h"
#include "dkim_key.h"
#include "dns.h"

struct dkim_keyrec {
	atomic_uint refs;
	enum auth_res res;       /* AUTH_NONE: a usable key; else the lookup's result (§6.1.2) */
	const char *reason;      /* static; NULL when usable */
	struct dkim_key key;     /* res == AUTH_NONE */
	struct dkim_pubkey *pk;  /* res == AUTH_NONE: never NULL */
};

/*
 * dkim_keyrec_new parses the answer of a key lookup (dkim_key_from_answer,
 * then dkim_pubkey_new for a usable key). Returns a new reference, or NULL
 * when out of memory. Borrows `a` during the call.
 */
struct dkim_keyrec *dkim_keyrec_new(const struct dns_txt_answer *a);

/* dkim_keyrec_ref returns another reference to kr (kr itself). */
struct dkim_keyrec *dkim_keyrec_ref(struct dkim_keyrec *kr);

/*
 * dkim_keyrec_use reads a lookup outcome for one signature: *out_res and
 * *out_reason get kr's (NULL kr: AUTH_TEMPERROR, "out of memory"), and it
 * returns a new reference when the key is usable, else NULL.
 */
struct dkim_keyrec *dkim_keyrec_use(struct dkim_keyrec *kr, enum auth_res *out_res, const char **out_reason);

/* dkim_keyrec_unref drops one reference; the last frees kr. NULL does nothing. */
void dkim_keyrec_unref(struct dkim_keyrec *kr);

#endif
