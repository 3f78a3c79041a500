/*
 * auth.h - sender-authentication results as values (RFC 8601 §2.7).
 *
 * Verification outcomes are never errors: every verify function returns an
 * enum auth_res, marked warn_unused_result. The names are the RFC 8601 /
 * RFC 7208 result keywords, auth_res_name() gives them as static strings.
 */
#ifndef OMX_AUTH_H
#define OMX_AUTH_H

enum auth_res {
	AUTH_NONE = 0,   /* nothing to evaluate (no signature, or not yet) */
	AUTH_PASS,       /* verified */
	AUTH_FAIL,       /* evaluated and wrong (bad signature, body hash) */
	AUTH_NEUTRAL,    /* evaluated, no assertion */
	AUTH_SOFTFAIL,   /* SPF only */
	AUTH_TEMPERROR,  /* transient: DNS timeout, SERVFAIL; retry later */
	AUTH_PERMERROR,  /* cannot be evaluated: syntax, unsupported, no key */
	AUTH_POLICY,     /* valid, but rejected by local policy (RFC 8601 §2.7.1) */
	AUTH_RES_COUNT   /* number of values */
};

/* auth_res_name returns the RFC 8601 keyword ("pass", ...), a static string. */
const char *auth_res_name(enum auth_res r);

#endif
