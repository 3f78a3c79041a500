/*
 * authres.c - Authentication-Results (RFC 8601) for DKIM results.
 */
#include <errno.h>
#include <string.h>

#include "arc.h"
#include "authres.h"
#include "dmarc.h"

/* tspecials of RFC 2045 §5.1 plus SP and CTLs: a value without them is a token. */
static bool is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* put appends s unless an earlier append failed (*rc latches the first error). */
static void put(struct bb *b, int *rc, const void *s, size_t len)
{
	if (*rc == 0) {
		*rc = bb_append(b, s, len);
	}
}

static void put_str(struct bb *b, int *rc, const char *s)
{
	put(b, rc, s, strlen(s));
}

/*
 * put_value writes a pvalue (RFC 8601 §2.2): a token when it is one, a
 * local-part@domain when it has that shape with token parts, else a
 * quoted-string. Control characters are replaced.
 */
static void put_value(struct bb *b, int *rc, const char *v)
{
	size_t n = strlen(v), at = n;
	bool token = n > 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '@' && at == n) {
			at = i;
		} else if (!is_token_char(c)) {
			token = false; /* includes UTF-8, kept inside quotes */
		}
	}
	if (token && (at == n || at + 1 < n)) {
		put(b, rc, v, n); /* token, or [local-part]@domain */
		return;
	}
	put(b, rc, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '"' || c == '\\') {
			put(b, rc, "\\", 1);
		}
		if (c < 0x20 || c == 0x7f) {
			c = '?';
		}
		put(b, rc, &c, 1);
	}
	put(b, rc, "\"", 1);
}

static size_t authres_put_dmarc_arc(struct bb *out, int *rc, const struct authres_in *in, size_t methods);

int authres_write(struct bb *out, const char *authserv_id, const struct dkim_result *dkim, size_t num_dkim)
{
	struct authres_in in = { .dkim = dkim, .num_dkim = num_dkim };

	return authres_write_all(out, authserv_id, &in);
}

static void put_spf(struct bb *out, int *rc, const struct spf_result *r, bool helo)
{
	put_str(out, rc, "\r\n\tspf=");
	put_str(out, rc, auth_res_name(r->res));
	if ((r->res == AUTH_PERMERROR || r->res == AUTH_TEMPERROR) && r->reason != NULL) {
		put_str(out, rc, " reason=");
		put_value(out, rc, r->reason);
	}
	put_str(out, rc, helo ? " smtp.helo=" : " smtp.mailfrom=");
	put_value(out, rc, r->sender);
}

int authres_write_all(struct bb *out, const char *authserv_id, const struct authres_in *in)
{
	const struct dkim_result *dkim = in->dkim;
	size_t mark = out->len, num_dkim = in->num_dkim, methods = 0;
	int rc = 0;

	put_str(out, &rc, "Authentication-Results: ");
	put_value(out, &rc, authserv_id);
	put_str(out, &rc, ";");
	if (num_dkim == 0 && (in->dkim != NULL || (in->spf_mfrom == NULL && in->spf_helo == NULL &&
						       in->dmarc == NULL && in->arc == NULL))) {
		put_str(out, &rc, "\r\n\tdkim=none");
		methods++;
	}
	for (size_t i = 0; i < num_dkim; i++) {
		const struct dkim_result *r = &dkim[i];

		if (methods++ > 0) {
			put_str(out, &rc, ";");
		}
		put_str(out, &rc, "\r\n\tdkim=");
		put_str(out, &rc, auth_res_name(r->res));
		if (r->reason != NULL) {
			put_str(out, &rc, " reason=");
			put_value(out, &rc, r->reason);
		}
		put_str(out, &rc, "\r\n\t ");
		if (r->domain[0] != '\0') {
			put_str(out, &rc, " header.d=");
			put_value(out, &rc, r->domain);
		}
		if (r->identity[0] != '\0') {
			put_str(out, &rc, " header.i=");
			put_value(out, &rc, r->identity);
		}
		if (r->selector[0] != '\0') {
			put_str(out, &rc, " header.s=");
			put_value(out, &rc, r->selector);
		}
		if (r->algorithm[0] != '\0') {
			put_str(out, &rc, " header.a=");
			put_value(out, &rc, r->algorithm);
		}
		if (r->b[0] != '\0') {
			put_str(out, &rc, " header.b=");
			put_value(out, &rc, r->b);
		}
	}
	if (in->spf_mfrom != NULL) {
		if (methods++ > 0) {
			put_str(out, &rc, ";");
		}
		put_spf(out, &rc, in->spf_mfrom, false);
	}
	if (in->spf_helo != NULL) {
		if (methods++ > 0) {
			put_str(out, &rc, ";");
		}
		put_spf(out, &rc, in->spf_helo, true);
	}
	methods += authres_put_dmarc_arc(out, &rc, in, methods);
	put_str(out, &rc, "\r\n");
	if (rc != 0) {
		out->len = mark; /* nothing half-written */
	}
	return rc;
}

/* skip_cfws skips WSP, folding and (nested) comments (RFC 5322 §3.2.2). */
static void skip_cfws(struct span *c)
{
	unsigned depth = 0;

	while (c->len > 0) {
		uint8_t ch = c->p[0];

		if (depth > 0 && ch == '\\' && c->len > 1) {
			span_skip(c, 2);
			continue;
		}
		if (ch == '(') {
			depth++;
		} else if (ch == ')' && depth > 0) {
			depth--;
		} else if (depth == 0 && ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') {
			return;
		}
		span_skip(c, 1);
	}
}

bool authres_is_ours(struct span field, const char *authserv_id)
{
	struct span c = field;
	uint8_t id[256];
	size_t n = 0;

	if (!span_eat_ci(&c, "Authentication-Results")) {
		return false;
	}
	while (c.len > 0 && (c.p[0] == ' ' || c.p[0] == '\t')) {
		span_skip(&c, 1);
	}
	if (c.len == 0 || c.p[0] != ':') {
		return false;
	}
	span_skip(&c, 1);
	skip_cfws(&c);
	if (c.len > 0 && c.p[0] == '"') {
		size_t i = 1;

		for (; i < c.len && c.p[i] != '"'; i++) {
			if (c.p[i] == '\\' && i + 1 < c.len) {
				i++; /* quoted-pair */
			}
			if (n == sizeof(id)) {
				return false;
			}
			id[n++] = c.p[i];
		}
		if (i == c.len) {
			return false; /* unterminated */
		}
	} else {
		for (size_t i = 0; i < c.len && (is_token_char(c.p[i]) || c.p[i] >= 0x80); i++) {
			if (n == sizeof(id)) {
				return false;
			}
			id[n++] = c.p[i]; /* a U-label authserv-id is allowed (RFC 8601 §2.5) */
		}
	}
	return n > 0 && span_eq_ci(span_make(id, n), authserv_id);
}

/* authres_put_dmarc_arc writes the dmarc= and arc= entries; returns how many. */
static size_t authres_put_dmarc_arc(struct bb *out, int *rc, const struct authres_in *in, size_t methods)
{
	size_t n = 0;

	if (in->dmarc != NULL) {
		const struct dmarc_result *d = in->dmarc;

		if (methods + n++ > 0) {
			put_str(out, rc, ";");
		}
		put_str(out, rc, "\r\n\tdmarc=");
		put_str(out, rc, auth_res_name(d->res));
		if (d->res == AUTH_PASS || d->res == AUTH_FAIL) {
			/* RFC 7489 §11.2 leaves the comment free: the policy and what was done */
			put_str(out, rc, " (p=");
			put_str(out, rc, dmarc_policy_name(d->policy));
			put_str(out, rc, " dis=");
			put_str(out, rc, dmarc_policy_name(d->disposition));
			put_str(out, rc, ")");
		} else if (d->reason != NULL) {
			put_str(out, rc, " reason=");
			put_value(out, rc, d->reason);
		}
		if (d->from_domain[0] != '\0') {
			put_str(out, rc, " header.from=");
			put_value(out, rc, d->from_domain);
		}
		if (d->res == AUTH_PASS || d->res == AUTH_FAIL) {
			put_str(out, rc, " policy.dmarc=");
			put_str(out, rc, dmarc_policy_name(d->policy));
		}
	}
	if (in->arc != NULL) {
		const struct arc_result *a = in->arc;

		if (methods + n++ > 0) {
			put_str(out, rc, ";");
		}
		put_str(out, rc, "\r\n\tarc=");
		put_str(out, rc, auth_res_name(a->res));
		if (a->reason != NULL && a->res == AUTH_FAIL) {
			char why[ARC_REASON_MAX];

			put_str(out, rc, " reason=");
			put_value(out, rc, arc_result_describe(why, sizeof(why), a));
		}
	}
	return n;
}
