/*
 * spf_record.c - SPF record syntax (RFC 7208 §4.5, §4.6, §5, §6, §12).
 *
 * Pure: spans borrow the record text; nothing is allocated. The whole
 * record is checked before evaluation starts, so a syntax error anywhere
 * is a permerror even after a matching mechanism (§4.6 "detect errors").
 */
#include <arpa/inet.h>
#include <string.h>

#include "spf.h"

static bool is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(uint8_t c)
{
	return is_alpha(c) || is_digit(c);
}

const char *spf_mech_name(enum spf_mech m)
{
	static const char *const names[SPF_M_COUNT] = {
		[SPF_M_ALL] = "all",   [SPF_M_INCLUDE] = "include", [SPF_M_A] = "a",	   [SPF_M_MX] = "mx",
		[SPF_M_PTR] = "ptr",   [SPF_M_IP4] = "ip4",	    [SPF_M_IP6] = "ip6", [SPF_M_EXISTS] = "exists",
	};

	return (unsigned)m < SPF_M_COUNT ? names[m] : "?";
}

bool spf_record_is_spf(struct span txt)
{
	struct span c = txt;

	if (!span_eat_ci(&c, "v=spf1")) {
		return false;
	}
	return c.len == 0 || c.p[0] == ' ';
}

bool spf_domain_ok(struct span d)
{
	size_t label = 0, labels = 1;

	if (d.len > 0 && d.p[d.len - 1] == '.') {
		d.len--; /* a final dot is the root, not an empty label */
	}
	if (d.len == 0 || d.len > SPF_DOMAIN_MAX) {
		return false;
	}
	for (size_t i = 0; i < d.len; i++) {
		if (d.p[i] == '.') {
			if (label == 0) {
				return false;
			}
			label = 0;
			labels++;
		} else if (++label > SPF_LABEL_MAX) {
			return false;
		}
	}
	return label > 0 && labels >= 2;
}

/* toplabel_ok: ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) (§12). */
static bool toplabel_ok(struct span t)
{
	bool alpha = false, dash = false;

	if (t.len == 0) {
		return false;
	}
	for (size_t i = 0; i < t.len; i++) {
		if (is_alpha(t.p[i])) {
			alpha = true;
		} else if (t.p[i] == '-') {
			dash = true;
		} else if (!is_digit(t.p[i])) {
			return false;
		}
	}
	if (dash) {
		return t.p[0] != '-' && t.p[t.len - 1] != '-';
	}
	return alpha;
}

/*
 * domain_spec_ok: macro-string domain-end (§12). The macro syntax is
 * checked by spf_macro_expand without an environment; a spec that ends
 * with a macro-expand needs no literal top label.
 */
static bool domain_spec_ok(struct span d)
{
	size_t pos, len = 0;
	bool ends_macro = false;

	if (d.len == 0 || spf_macro_expand(NULL, 0, &len, &pos, NULL, d, 0) != SPF_MACRO_OK) {
		return false;
	}
	/* ends with a macro-expand: "}" of %{..}, or %% %_ %- (an odd run of '%' before the last byte) */
	if (d.p[d.len - 1] == '}') {
		ends_macro = true; /* the macro syntax check guarantees it closes a %{ */
	} else if (d.len >= 2 && (d.p[d.len - 1] == '%' || d.p[d.len - 1] == '_' || d.p[d.len - 1] == '-')) {
		size_t n = 0;

		for (size_t i = d.len - 1; i > 0 && d.p[i - 1] == '%'; i--) {
			n++;
		}
		ends_macro = n % 2 == 1;
	}
	if (ends_macro) {
		return true;
	}
	if (d.p[d.len - 1] == '.') {
		d.len--;
	}
	for (size_t i = d.len; i > 0; i--) {
		if (d.p[i - 1] == '.') {
			return toplabel_ok(span_make(d.p + i, d.len - i));
		}
	}
	return false; /* "." toplabel is required */
}

/* cidr_len parses "0" / %x31-39 0*nDIGIT up to `max` (no leading zero). */
static bool cidr_len(struct span s, unsigned max, uint8_t *out)
{
	unsigned v = 0;

	if (s.len == 0 || s.len > 3 || (s.p[0] == '0' && s.len > 1)) {
		return false;
	}
	for (size_t i = 0; i < s.len; i++) {
		if (!is_digit(s.p[i])) {
			return false;
		}
		v = v * 10 + (unsigned)(s.p[i] - '0');
	}
	if (v > max) {
		return false;
	}
	*out = (uint8_t)v;
	return true;
}

/* digits_tail: s[from..] is 1*DIGIT. */
static bool digits_tail(struct span s, size_t from)
{
	if (from >= s.len) {
		return false;
	}
	for (size_t i = from; i < s.len; i++) {
		if (!is_digit(s.p[i])) {
			return false;
		}
	}
	return true;
}

/*
 * split_dual_cidr takes [ "/" ip4-cidr ] [ "//" ip6-cidr ] off the end of
 * *arg (§5.3, §5.4). False on a malformed or out-of-range length.
 */
static bool split_dual_cidr(struct span *arg, struct spf_term *t)
{
	struct span s = *arg;
	size_t i;

	/* "//N" at the end */
	for (i = s.len; i >= 2; i--) {
		if (s.p[i - 1] == '/' && s.p[i - 2] == '/') {
			break;
		}
	}
	if (i >= 2 && digits_tail(s, i)) {
		if (!cidr_len(span_make(s.p + i, s.len - i), 128, &t->cidr6)) {
			return false;
		}
		s.len = i - 2;
	}
	/* "/N" at the end */
	for (i = s.len; i > 0 && is_digit(s.p[i - 1]); i--) {
	}
	if (i > 0 && i < s.len && s.p[i - 1] == '/') {
		if (!cidr_len(span_make(s.p + i, s.len - i), 32, &t->cidr4)) {
			return false;
		}
		s.len = i - 1;
	} else if (s.len > 0 && s.p[s.len - 1] == '/') {
		return false;
	}
	*arg = s;
	return true;
}

/* ip4_parse: qnum "." qnum "." qnum "." qnum, no leading zeros (§12). */
static bool ip4_parse(struct span s, uint8_t out[4])
{
	size_t i = 0;

	for (int k = 0; k < 4; k++) {
		unsigned v = 0, n = 0;

		if (k > 0) {
			if (i >= s.len || s.p[i] != '.') {
				return false;
			}
			i++;
		}
		while (i < s.len && is_digit(s.p[i]) && n < 4) {
			v = v * 10 + (unsigned)(s.p[i] - '0');
			i++;
			n++;
		}
		if (n == 0 || n > 3 || v > 255 || (n > 1 && s.p[i - n] == '0')) {
			return false;
		}
		out[k] = (uint8_t)v;
	}
	return i == s.len;
}

static bool ip6_parse(struct span s, uint8_t out[16])
{
	char buf[64];

	if (s.len == 0 || s.len >= sizeof(buf)) {
		return false;
	}
	for (size_t i = 0; i < s.len; i++) {
		if (!is_alnum(s.p[i]) && s.p[i] != ':' && s.p[i] != '.') {
			return false;
		}
	}
	memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	return inet_pton(AF_INET6, buf, out) == 1;
}

/* parse_mech parses one directive (already known not to be a modifier). */
static bool parse_mech(struct span tok, struct spf_term *t)
{
	static const struct {
		const char *name;
		enum spf_mech m;
	} mechs[] = {
		{ "all", SPF_M_ALL }, { "include", SPF_M_INCLUDE }, { "a", SPF_M_A },	 { "mx", SPF_M_MX },
		{ "ptr", SPF_M_PTR }, { "ip4", SPF_M_IP4 },	    { "ip6", SPF_M_IP6 }, { "exists", SPF_M_EXISTS },
	};
	struct span name, rest, arg = { 0 };
	size_t n = 0;
	bool found = false, has_arg = false;

	memset(t, 0, sizeof(*t));
	t->qual = AUTH_PASS;
	t->cidr4 = 32;
	t->cidr6 = 128;
	switch (span_peek_u8(tok)) {
	case '+':
		span_skip(&tok, 1);
		break;
	case '-':
		t->qual = AUTH_FAIL;
		span_skip(&tok, 1);
		break;
	case '~':
		t->qual = AUTH_SOFTFAIL;
		span_skip(&tok, 1);
		break;
	case '?':
		t->qual = AUTH_NEUTRAL;
		span_skip(&tok, 1);
		break;
	default:
		break;
	}
	while (n < tok.len && is_alnum(tok.p[n])) {
		n++;
	}
	name = span_make(tok.p, n);
	rest = span_make(tok.p + n, tok.len - n);
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
		if (span_eq_ci(name, mechs[i].name)) {
			t->mech = mechs[i].m;
			found = true;
			break;
		}
	}
	if (!found) {
		return false;
	}
	if (rest.len > 0 && rest.p[0] == ':') {
		has_arg = true;
		arg = span_make(rest.p + 1, rest.len - 1);
	} else if (rest.len > 0 && rest.p[0] != '/') {
		return false;
	}
	switch (t->mech) {
	case SPF_M_ALL:
		return rest.len == 0;
	case SPF_M_INCLUDE:
	case SPF_M_EXISTS:
		t->domain = arg;
		return has_arg && domain_spec_ok(arg);
	case SPF_M_PTR:
		if (!has_arg) {
			return rest.len == 0;
		}
		t->domain = arg;
		return domain_spec_ok(arg);
	case SPF_M_A:
	case SPF_M_MX:
		if (!has_arg) {
			arg = rest;
		}
		if (!split_dual_cidr(&arg, t)) {
			return false;
		}
		if (!has_arg) {
			return arg.len == 0;
		}
		t->domain = arg;
		return domain_spec_ok(arg);
	case SPF_M_IP4: {
		size_t slash = arg.len;

		for (size_t i = 0; i < arg.len; i++) {
			if (arg.p[i] == '/') {
				slash = i;
				break;
			}
		}
		if (!has_arg ||
		    (slash < arg.len && !cidr_len(span_make(arg.p + slash + 1, arg.len - slash - 1), 32, &t->cidr4))) {
			return false;
		}
		return ip4_parse(span_make(arg.p, slash), t->ip);
	}
	case SPF_M_IP6: {
		size_t slash = arg.len;

		for (size_t i = 0; i < arg.len; i++) {
			if (arg.p[i] == '/') {
				slash = i;
				break;
			}
		}
		if (!has_arg ||
		    (slash < arg.len && !cidr_len(span_make(arg.p + slash + 1, arg.len - slash - 1), 128, &t->cidr6))) {
			return false;
		}
		return ip6_parse(span_make(arg.p, slash), t->ip);
	}
	default:
		return false;
	}
}

/* modifier_name: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ), then "=" (§12). */
static bool modifier_split(struct span tok, struct span *out_name, struct span *out_value)
{
	size_t n = 0;

	if (tok.len == 0 || !is_alpha(tok.p[0])) {
		return false;
	}
	while (n < tok.len && (is_alnum(tok.p[n]) || tok.p[n] == '-' || tok.p[n] == '_' || tok.p[n] == '.')) {
		n++;
	}
	if (n == tok.len || tok.p[n] != '=') {
		return false;
	}
	*out_name = span_make(tok.p, n);
	*out_value = span_make(tok.p + n + 1, tok.len - n - 1);
	return true;
}

/* next_token takes the next SP-delimited token; false at the end. */
static bool next_token(struct span *c, struct span *tok)
{
	size_t n = 0;

	while (c->len > 0 && c->p[0] == ' ') {
		span_skip(c, 1);
	}
	if (c->len == 0) {
		return false;
	}
	while (n < c->len && c->p[n] != ' ') {
		n++;
	}
	*tok = span_make(c->p, n);
	span_skip(c, n);
	return true;
}

enum auth_res spf_record_parse(struct spf_record *out, const char **out_reason, size_t *out_err_pos, struct span txt)
{
	struct span c = txt, tok, name, value;

	memset(out, 0, sizeof(*out));
	*out_err_pos = 0;
	if (!spf_record_is_spf(txt)) {
		*out_reason = "not an SPF record";
		return AUTH_PERMERROR;
	}
	if (txt.len > SPF_RECORD_MAX) {
		*out_reason = "record too long";
		return AUTH_PERMERROR;
	}
	span_skip(&c, 6);
	out->terms = c;
	while (next_token(&c, &tok)) {
		struct spf_term t;

		*out_err_pos = (size_t)(tok.p - txt.p);
		if (modifier_split(tok, &name, &value)) {
			bool redirect = span_eq_ci(name, "redirect"), exp = span_eq_ci(name, "exp");
			size_t len, pos;

			if (redirect || exp) {
				if ((redirect && out->has_redirect) || (exp && out->has_exp)) {
					*out_reason = "redirect= or exp= given twice";
					return AUTH_PERMERROR;
				}
				if (!domain_spec_ok(value)) {
					*out_reason = redirect ? "bad redirect= domain" : "bad exp= domain";
					return AUTH_PERMERROR;
				}
				if (redirect) {
					out->has_redirect = true;
					out->redirect = value;
				} else {
					out->has_exp = true;
					out->exp = value;
				}
			} else if (spf_macro_expand(NULL, 0, &len, &pos, NULL, value, 0) != SPF_MACRO_OK) {
				*out_reason = "bad macro in a modifier";
				return AUTH_PERMERROR;
			}
			continue;
		}
		if (!parse_mech(tok, &t)) {
			*out_reason = "bad mechanism";
			return AUTH_PERMERROR;
		}
		out->num_terms++;
		if (t.mech == SPF_M_INCLUDE || t.mech == SPF_M_A || t.mech == SPF_M_MX || t.mech == SPF_M_PTR ||
		    t.mech == SPF_M_EXISTS) {
			out->num_lookups++;
		}
	}
	*out_err_pos = 0;
	*out_reason = NULL;
	return AUTH_NONE;
}

bool spf_term_next(struct span *cursor, struct spf_term *out)
{
	struct span tok, name, value;

	while (next_token(cursor, &tok)) {
		if (modifier_split(tok, &name, &value)) {
			continue;
		}
		if (parse_mech(tok, out)) {
			return true;
		}
	}
	return false;
}
