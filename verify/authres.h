/*
 * authres.h - the Authentication-Results header field (RFC 8601): writing
 * ours, and recognising existing ones that claim our authserv-id so they
 * can be removed before ours is added (RFC 8601 §5).
 *
 * Pure; writes into a caller's byte builder.
 */
#ifndef OMX_AUTHRES_H
#define OMX_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/bb.h"
#include "../core/span.h"
#include "dkim.h"
#include "spf.h"

struct dmarc_result;
struct arc_result;

/* Everything one Authentication-Results field reports; NULL/0: not checked. */
struct authres_in {
	const struct dkim_result *dkim;
	size_t num_dkim;
	const struct spf_result *spf_mfrom; /* spf=... smtp.mailfrom= */
	const struct spf_result *spf_helo;  /* spf=... smtp.helo= */
	const struct dmarc_result *dmarc;   /* dmarc=... header.from= policy.dmarc= */
	const struct arc_result *arc;       /* arc=... */
};

/*
 * authres_write appends a complete field "Authentication-Results: ID;
 * dkim=... CRLF", one result per folded line, each with its reason and
 * header.d, header.i (when i= was given), header.s, header.a, header.b
 * (RFC 8601 §2.2, §2.7.1; RFC 6008 §4). With no results it writes
 * "dkim=none". Values that are not tokens are written as quoted strings;
 * control characters never reach the output. 0, -ENOMEM or -E2BIG.
 */
__attribute__((warn_unused_result)) int authres_write(struct bb *out, const char *authserv_id,
							const struct dkim_result *dkim, size_t num_dkim);

/*
 * authres_write_all appends one complete field with every method of `in`
 * in the order dkim, spf (mailfrom, then helo), dmarc, arc, one result per
 * folded line. dkim entries as authres_write; spf=RESULT with
 * smtp.mailfrom=SENDER or smtp.helo=NAME (RFC 8601 §2.7.2) and a reason
 * for errors; dmarc=RESULT with header.from=DOMAIN and policy.dmarc=P
 * (RFC 7489 §11.2; policy.dmarc is the policy applied); arc=RESULT
 * (RFC 8617 §10.2). dkim=none is written when no method has a
 * result or `dkim` is non-NULL (DKIM was checked) without results.
 * 0, -ENOMEM or -E2BIG (then nothing is appended).
 */
__attribute__((warn_unused_result)) int authres_write_all(struct bb *out, const char *authserv_id,
							    const struct authres_in *in);

/*
 * authres_is_ours: `field` (a whole header field as received, without its
 * final CRLF) is an Authentication-Results field (not ARC-Authentication-
 * Results) whose authserv-id equals `authserv_id`, ASCII case-insensitively,
 * CFWS and an optional version allowed (RFC 8601 §2.2, §5).
 */
bool authres_is_ours(struct span field, const char *authserv_id);

#endif
