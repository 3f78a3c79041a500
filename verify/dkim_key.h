/*
 * dkim_key.h - DKIM key records (RFC 6376 §3.6.1, RFC 8463 §4): the TXT
 * record at selector._domainkey.domain, parsed strictly. Pure.
 */
#ifndef OMX_DKIM_KEY_H
#define OMX_DKIM_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "auth.h"
#include "dkim_sig.h"
#include "dns.h"

/*
 * Largest p= accepted, decoded: a 4096-bit RSA SubjectPublicKeyInfo is
 * 550 octets. Bigger keys are refused before any parsing, which bounds the
 * cost of hostile records (RFC 8301 §3.2; DESIGN.md "key DoS").
 */
#define DKIM_KEY_P_MAX 600

enum dkim_key_type {
	DKIM_KEY_RSA = 0,  /* k=rsa, the default */
	DKIM_KEY_ED25519,  /* k=ed25519 (RFC 8463 §4) */
};

struct dkim_key {
	enum dkim_key_type k;
	bool testing;      /* t=y: the domain is testing DKIM (§3.6.1) */
	bool strict;       /* t=s: i= must be exactly d=, not a subdomain */
	bool sha256_ok;    /* h= absent, or lists sha256 */
	uint8_t p[DKIM_KEY_P_MAX];
	size_t p_len;
};

/*
 * dkim_key_parse parses one key record (TXT strings already concatenated).
 * Returns AUTH_NONE when it is a usable key for email, or AUTH_PERMERROR
 * with a static *out_reason: syntax, duplicate tag, v= not DKIM1 or not
 * first, unknown k=, s= without email or *, missing p=, empty p= (revoked),
 * p= not base64 or larger than DKIM_KEY_P_MAX. Unknown tags are ignored.
 */
__attribute__((warn_unused_result)) enum auth_res dkim_key_parse(struct dkim_key *out, const char **out_reason,
								   struct span record);

/*
 * dkim_key_from_answer turns the answer of a key lookup into *out: the
 * first record that parses as a usable key wins (AUTH_NONE). Otherwise
 * AUTH_PERMERROR (no usable record, no such name, no TXT, too large,
 * malformed; RFC 6376 §6.1.2) or AUTH_TEMPERROR (timeout, SERVFAIL, local
 * failure), with a static *out_reason. Borrows `a` during the call.
 */
__attribute__((warn_unused_result)) enum auth_res dkim_key_from_answer(struct dkim_key *out, const char **out_reason,
									 const struct dns_txt_answer *a);

/*
 * dkim_key_fits_alg checks a parsed key against a signature algorithm: key
 * type, hash algorithm (h=) and ed25519 key length. AUTH_NONE when they
 * fit, else AUTH_PERMERROR with a static *out_reason. (The ARC-Seal has
 * only an algorithm to check; RFC 8617 §4.1.3.)
 */
__attribute__((warn_unused_result)) enum auth_res dkim_key_fits_alg(const struct dkim_key *key, enum dkim_alg alg,
								      const char **out_reason);

/*
 * dkim_key_check checks a parsed key against a signature: key type, hash
 * algorithm, ed25519 key length (dkim_key_fits_alg) and t=s. AUTH_NONE
 * when they fit, else AUTH_PERMERROR.
 */
__attribute__((warn_unused_result)) enum auth_res dkim_key_check(const struct dkim_key *key,
								   const struct dkim_sig *sig,
								   const char **out_reason);

#endif
