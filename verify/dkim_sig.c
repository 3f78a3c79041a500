/*
 * dkim_sig.c - parse and check a DKIM-Signature field (RFC 6376 §3.5,
 * §6.1.1; RFC 8301 §3.1; RFC 8463 §3). Pure: caller storage only.
 */
#include "dkim_sig.h"

#include "dkim_tag.h"

const char *dkim_alg_name(enum dkim_alg alg)
{
	switch (alg) {
	case DKIM_ALG_RSA_SHA256:
		return "rsa-sha256";
	case DKIM_ALG_ED25519_SHA256:
		return "ed25519-sha256";
	case DKIM_ALG_RSA_SHA1:
		return "rsa-sha1";
	default:
		return NULL;
	}
}

enum dkim_alg dkim_alg_from_name(struct span a)
{
	if (span_eq(a, SPAN_LIT("rsa-sha256"))) {
		return DKIM_ALG_RSA_SHA256;
	}
	if (span_eq(a, SPAN_LIT("ed25519-sha256"))) {
		return DKIM_ALG_ED25519_SHA256;
	}
	if (span_eq(a, SPAN_LIT("rsa-sha1"))) {
		return DKIM_ALG_RSA_SHA1;
	}
	return DKIM_ALG_UNKNOWN;
}

bool dkim_domain_ok(struct span d)
{
	size_t label = 0;

	if (d.len == 0 || d.len > DKIM_NAME_MAX) {
		return false;
	}
	for (size_t i = 0; i < d.len; i++) {
		uint8_t c = d.p[i];

		if (c == '.') {
			if (label == 0) {
				return false; /* empty label, or leading dot */
			}
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '_' || c >= 0x80)) {
			return false; /* RFC 8616 lets U-labels through as UTF-8 */
		}
		if (++label > 63) {
			return false;
		}
	}
	return label > 0;
}

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

static bool eq_ci(struct span a, struct span b)
{
	if (a.len != b.len) {
		return false;
	}
	for (size_t i = 0; i < a.len; i++) {
		if (lower(a.p[i]) != lower(b.p[i])) {
			return false;
		}
	}
	return true;
}

bool dkim_domain_within(struct span sub, struct span dom)
{
	if (sub.len < dom.len) {
		return false;
	}
	if (!eq_ci(span_make(sub.p + sub.len - dom.len, dom.len), dom)) {
		return false;
	}
	return sub.len == dom.len || sub.p[sub.len - dom.len - 1] == '.';
}

/* parse_canon reads c= ("simple", "relaxed", optionally "/simple|relaxed"). */
static bool parse_canon(struct span v, enum dkim_canon *hc, enum dkim_canon *bc)
{
	struct span head, c = v;

	*hc = *bc = DKIM_CANON_SIMPLE;
	if (!span_take_until(&c, &head, '/')) {
		head = v;
		c = span_make(NULL, 0);
	} else {
		span_skip(&c, 1);
	}
	if (span_eq_ci(head, "relaxed")) {
		*hc = DKIM_CANON_RELAXED;
	} else if (!span_eq_ci(head, "simple")) {
		return false;
	}
	if (c.p == NULL) {
		return true; /* body defaults to simple (§3.5 "c=") */
	}
	if (span_eq_ci(c, "relaxed")) {
		*bc = DKIM_CANON_RELAXED;
	} else if (!span_eq_ci(c, "simple")) {
		return false;
	}
	return true;
}

/* ftext = %d33-57 / %d59-126 (RFC 5322 §3.6.8) */
static bool field_name_ok(struct span n)
{
	if (n.len == 0) {
		return false;
	}
	for (size_t i = 0; i < n.len; i++) {
		if (n.p[i] < 33 || n.p[i] > 126 || n.p[i] == ':') {
			return false;
		}
	}
	return true;
}

static bool parse_dec(struct span v, uint64_t *out)
{
	struct span c = v;

	return span_get_dec_u64(&c, out, UINT64_MAX) && c.len == 0;
}

bool dkim_sig_expired(const struct dkim_sig *sig, uint64_t now)
{
	return sig->has_x && sig->x < now;
}

#define PERM(why)                          \
	do {                               \
		*out_reason = (why);       \
		return AUTH_PERMERROR;     \
	} while (0)

enum auth_res dkim_sig_parse(struct dkim_sig *out, const char **out_reason, struct span value)
{
	return dkim_sig_parse_kind(out, out_reason, value, DKIM_SIG_DKIM);
}

enum auth_res dkim_sig_parse_kind(struct dkim_sig *out, const char **out_reason, struct span value,
				  enum dkim_sig_kind kind)
{
	const bool ams = kind == DKIM_SIG_ARC_AMS;
	struct dkim_tag tags[DKIM_TAGS_MAX];
	const struct dkim_tag *t;
	size_t num = 0, err_pos = 0;
	enum dkim_tag_rc rc;
	struct span list, item;
	bool has_from = false;

	memset(out, 0, sizeof(*out));
	*out_reason = NULL;
	rc = dkim_tags_parse(tags, DKIM_TAGS_MAX, &num, &err_pos, value);
	if (rc != DKIM_TAG_OK) {
		PERM(rc == DKIM_TAG_DUP ? "duplicate tag in signature" : "signature tag-list syntax error");
	}
	/* Names first, so that even a refused signature can be reported. */
	if ((t = dkim_tag_find(tags, num, "d")) != NULL) {
		out->d = t->value;
	}
	if ((t = dkim_tag_find(tags, num, "s")) != NULL) {
		out->s = t->value;
	}
	if ((t = dkim_tag_find(tags, num, "a")) != NULL) {
		out->a = t->value;
	}
	if ((t = dkim_tag_find(tags, num, "i")) != NULL) {
		out->i = t->value;
	}
	if ((t = dkim_tag_find(tags, num, "b")) != NULL) {
		out->b_text = t->value;
		out->b_raw = t->raw;
	}

	/* §6.1.1: v= is required and must be "1"; the AMS has none (RFC 8617 §4.1.2: ignore one). */
	if (!ams) {
		if ((t = dkim_tag_find(tags, num, "v")) == NULL) {
			PERM("signature missing required tag v=");
		}
		if (!(t->value.len == 1 && t->value.p[0] == '1')) {
			PERM("incompatible signature version");
		}
	}
	static const char *const required[] = { "a", "b", "bh", "d", "h", "s", "i" };
	static const char *const missing[] = { "signature missing required tag a=",
					       "signature missing required tag b=",
					       "signature missing required tag bh=",
					       "signature missing required tag d=",
					       "signature missing required tag h=",
					       "signature missing required tag s=",
					       "signature missing required tag i=" };
	for (size_t k = 0; k < sizeof(required) / sizeof(required[0]) - (ams ? 0 : 1); k++) {
		if (dkim_tag_find(tags, num, required[k]) == NULL) {
			PERM(missing[k]);
		}
	}

	out->alg = dkim_alg_from_name(out->a);
	if (out->alg == DKIM_ALG_RSA_SHA1) {
		PERM("rsa-sha1 signatures are not accepted (RFC 8301 section 3.1)");
	}
	if (out->alg == DKIM_ALG_UNKNOWN) {
		PERM("unsupported signature algorithm");
	}

	if (!dkim_domain_ok(out->d)) {
		PERM("invalid d= domain");
	}
	if (!dkim_domain_ok(out->s) || out->s.len + out->d.len + sizeof("._domainkey.") - 1 > DKIM_NAME_MAX) {
		PERM("invalid s= selector");
	}

	if (!dkim_b64_decode(out->b, sizeof(out->b), &out->b_len, out->b_text) || out->b_len == 0) {
		PERM("b= is not valid base64 or is too long");
	}
	t = dkim_tag_find(tags, num, "bh");
	if (!dkim_b64_decode(out->bh, sizeof(out->bh), &out->bh_len, t->value) || out->bh_len == 0) {
		PERM("bh= is not valid base64");
	}

	out->hc = out->bc = DKIM_CANON_SIMPLE;
	if ((t = dkim_tag_find(tags, num, "c")) != NULL && !parse_canon(t->value, &out->hc, &out->bc)) {
		PERM("unsupported canonicalization");
	}

	t = dkim_tag_find(tags, num, "h");
	list = t->value;
	while (dkim_list_next(&list, &item)) {
		if (ams && item.len == 0) {
			continue; /* an empty name selects no field (what ARC signers produce for h=) */
		}
		if (!field_name_ok(item)) {
			PERM("h= syntax error");
		}
		if (out->num_h == DKIM_SIG_H_MAX) {
			PERM("too many header fields in h=");
		}
		if (ams && span_eq_ci(item, "arc-seal")) {
			PERM("h= lists ARC-Seal (RFC 8617 section 4.1.2)");
		}
		out->h[out->num_h++] = item;
		if (span_eq_ci(item, "from")) {
			has_from = true;
		}
	}
	if (!has_from && !ams) {
		PERM("From field not signed"); /* §5.4: From MUST be signed */
	}

	if ((t = dkim_tag_find(tags, num, "q")) != NULL) {
		bool dns_txt = false;

		list = t->value;
		while (dkim_list_next(&list, &item)) {
			if (span_eq_ci(item, "dns/txt")) {
				dns_txt = true;
			}
		}
		if (!dns_txt) {
			PERM("unsupported query method");
		}
	}

	if (ams) {
		/* i= is the ARC instance (RFC 8617 §4.2.1), checked by the ARC code; no AUID. */
	} else if (out->i.p != NULL) {
		size_t at = SIZE_MAX;

		if (!dkim_qp_decode(out->identity, sizeof(out->identity), &out->identity_len, out->i)) {
			PERM("i= syntax error");
		}
		for (size_t k = 0; k < out->identity_len; k++) {
			if (out->identity[k] == '@') {
				at = k;
			}
		}
		if (at == SIZE_MAX) {
			PERM("i= has no @");
		}
		if (!dkim_domain_within(span_make(out->identity + at + 1, out->identity_len - at - 1), out->d)) {
			PERM("i= domain is not d= or a subdomain of it");
		}
		out->has_i = true;
	} else {
		out->identity[0] = '@';
		memcpy(out->identity + 1, out->d.p, out->d.len); /* d.len <= DKIM_NAME_MAX < DKIM_ID_MAX */
		out->identity_len = out->d.len + 1;
	}

	if ((t = dkim_tag_find(tags, num, "l")) != NULL) {
		if (!parse_dec(t->value, &out->l)) {
			PERM("l= syntax error");
		}
		out->has_l = true;
	}
	if ((t = dkim_tag_find(tags, num, "t")) != NULL) {
		if (!parse_dec(t->value, &out->t)) {
			PERM("t= syntax error");
		}
		out->has_t = true;
	}
	if ((t = dkim_tag_find(tags, num, "x")) != NULL) {
		if (!parse_dec(t->value, &out->x)) {
			PERM("x= syntax error");
		}
		out->has_x = true;
	}
	if (out->has_t && out->has_x && out->x < out->t) {
		PERM("x= is before t="); /* §3.5 "x=": MUST be greater than t= */
	}
	return AUTH_NONE;
}
