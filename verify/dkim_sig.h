/*
 * dkim_sig.h - the DKIM-Signature header field (RFC 6376 §3.5), parsed
 * strictly, with the algorithm policy of RFC 8301 and RFC 8463.
 *
 * Pure. A parsed struct dkim_sig borrows the field bytes it was parsed
 * from (its spans point into them) and owns copies of the decoded b=, bh=
 * and i= values.
 */
#ifndef OMX_DKIM_SIG_H
#define OMX_DKIM_SIG_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/span.h"
#include "auth.h"

#define DKIM_SIG_B_MAX 512   /* a 4096-bit RSA signature (RFC 8301 §3.2 upper bound here) */
#define DKIM_SIG_BH_MAX 64   /* room for any digest */
#define DKIM_SIG_H_MAX 128   /* names in h=, over-signing included */
#define DKIM_ID_MAX 320      /* i= after dkim-quoted-printable decoding (RFC 5321 path limits) */
#define DKIM_NAME_MAX 253    /* d=, s=, and selector._domainkey.domain (RFC 1035 §2.3.4) */

enum dkim_alg {
	DKIM_ALG_UNKNOWN = 0,    /* not parsed, or not supported */
	DKIM_ALG_RSA_SHA256,     /* RFC 6376 §3.3.1 */
	DKIM_ALG_ED25519_SHA256, /* RFC 8463 §3 */
	DKIM_ALG_RSA_SHA1,       /* recognised only to be refused (RFC 8301 §3.1) */
	DKIM_ALG_COUNT           /* number of values */
};

enum dkim_canon {
	DKIM_CANON_SIMPLE = 0, /* §3.4.1, §3.4.3 */
	DKIM_CANON_RELAXED,    /* §3.4.2, §3.4.4 */
};

/* Which field a tag list is parsed as: the two share syntax and meaning but for a few tags. */
enum dkim_sig_kind {
	DKIM_SIG_DKIM = 0, /* DKIM-Signature (RFC 6376 §3.5) */
	DKIM_SIG_ARC_AMS,  /* ARC-Message-Signature (RFC 8617 §4.1.2) */
	DKIM_SIG_KIND_COUNT /* number of values */
};

struct dkim_sig {
	/* as written in the field (borrowed); empty when absent */
	struct span a, d, s, i, q, b_text;
	enum dkim_alg alg;
	enum dkim_canon hc, bc;
	struct span h[DKIM_SIG_H_MAX]; /* signed header names, in order (borrowed) */
	unsigned num_h;
	struct span b_raw;             /* the bytes of b='s value, FWS included, to delete (§3.7) */
	uint8_t b[DKIM_SIG_B_MAX];
	size_t b_len;
	uint8_t bh[DKIM_SIG_BH_MAX];
	size_t bh_len;
	uint8_t identity[DKIM_ID_MAX]; /* i= decoded, or "@" d= (the default, §3.5) */
	size_t identity_len;
	bool has_i, has_l, has_t, has_x;
	uint64_t l, t, x;
};

/*
 * dkim_sig_parse_kind parses the value of a DKIM-Signature field like
 * dkim_sig_parse, or of an ARC-Message-Signature field (RFC 8617 §4.1.2):
 * then v= is ignored (not defined for the AMS), i= is the instance tag
 * (required, left undecoded in out->i for the ARC code: identity stays
 * empty and has_i false), h= may be empty or hold empty elements (they
 * select nothing, as an absent field does) and need not list From, and
 * h= must not list ARC-Seal (§4.1.2). Everything else is the DKIM rule.
 */
__attribute__((warn_unused_result)) enum auth_res dkim_sig_parse_kind(struct dkim_sig *out, const char **out_reason,
									struct span value, enum dkim_sig_kind kind);

/*
 * dkim_sig_parse parses the value of a DKIM-Signature field (after the
 * colon, folding included) into *out, which borrows `value`.
 * Returns AUTH_NONE when the signature is well formed and verifiable, or
 * AUTH_PERMERROR with a static *out_reason: syntax, duplicate or missing
 * tag, v= not 1, rsa-sha1 (RFC 8301), unsupported algorithm, canonicalisation
 * or query method, h= without From, i= outside d=, x= before t=.
 * The fields parsed before an error (d, s, a, b_text, i) stay filled in,
 * so the result can still name the signature. Time checks (x= against the
 * clock) are the caller's: see dkim_sig_expired.
 */
__attribute__((warn_unused_result)) enum auth_res dkim_sig_parse(struct dkim_sig *out, const char **out_reason,
								   struct span value);

/* dkim_sig_expired: x= is present and lies before `now` (§3.5 "x="). */
bool dkim_sig_expired(const struct dkim_sig *sig, uint64_t now);

/* dkim_alg_from_name maps an a= value (case-sensitive, §3.5) to its algorithm; DKIM_ALG_UNKNOWN if none. */
enum dkim_alg dkim_alg_from_name(struct span a);

/* dkim_alg_name returns "rsa-sha256", "ed25519-sha256", "rsa-sha1" or NULL. */
const char *dkim_alg_name(enum dkim_alg alg);

/* dkim_domain_ok: a non-empty dot-atom-ish name of at most DKIM_NAME_MAX octets. */
bool dkim_domain_ok(struct span d);

/* dkim_domain_within: `sub` equals `dom` or is a subdomain of it, ASCII case-insensitively. */
bool dkim_domain_within(struct span sub, struct span dom);

#endif
