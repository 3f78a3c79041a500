/*
 * smtp_cmd.c - command line framing, verb table, RFC 5321 path and
 * MAIL/RCPT parameter parsing; see smtp_cmd.h.
 *
 * Framing finds the LF with memchr within the remaining line budget, so a
 * line never costs more than `max` octets of carry; parsing then walks the
 * complete line with a span cursor that never overruns [CBS, nginx].
 */
#include "smtp_cmd.h"

#include <arpa/inet.h>
#include <string.h>

/* ---- framing ---------------------------------------------------------- */

void smtp_line_init(struct smtp_line *l, size_t max)
{
	if (max < 3) {
		max = 3; /* room for one octet + CRLF */
	}
	bb_init(&l->carry, max);
	l->max = max;
	l->skipping = false;
	l->skipped = 0;
	l->carry_out = false;
}

void smtp_line_fini(struct smtp_line *l)
{
	bb_fini(&l->carry);
	l->skipping = false;
	l->skipped = 0;
	l->carry_out = false;
}

void smtp_line_reset(struct smtp_line *l)
{
	bb_reset(&l->carry, 1);
	l->skipping = false;
	l->skipped = 0;
	l->carry_out = false;
}

bool smtp_line_pending(const struct smtp_line *l)
{
	return (l->carry.len != 0 && !l->carry_out) || l->skipping;
}

enum smtp_parse smtp_line_next(struct smtp_line *l, struct span *in, struct span *out_line)
{
	const uint8_t *lf;
	struct span line;
	size_t limit, n, take;

	if (l->carry_out) {
		bb_reset(&l->carry, 1); /* the idle framer holds no memory */
		l->carry_out = false;
	}
	if (l->skipping) {
		lf = in->len ? memchr(in->p, '\n', in->len) : NULL;
		if (lf == NULL) {
			bool was_under = l->skipped <= SMTP_LINE_RUNAWAY_MAX;

			l->skipped += in->len;
			span_skip(in, in->len);
			return was_under && l->skipped > SMTP_LINE_RUNAWAY_MAX ? SMTP_PARSE_RUNAWAY : SMTP_PARSE_MORE;
		}
		span_skip(in, (size_t)(lf - in->p) + 1);
		l->skipping = false;
	}
	/* RFC 5321 §4.5.3.1.4: the LF must come within `max` octets of the line start. */
	limit = l->max - l->carry.len;
	n = in->len < limit ? in->len : limit;
	lf = n ? memchr(in->p, '\n', n) : NULL;
	if (lf == NULL) {
		if (in->len >= limit || bb_append(&l->carry, in->p, in->len) != 0) {
			span_skip(in, n);
			bb_reset(&l->carry, 1);
			l->skipping = true;
			l->skipped = 0;
			return SMTP_PARSE_TOO_LONG;
		}
		span_skip(in, in->len);
		if (l->carry.len == 0) {
			bb_reset(&l->carry, 1);
		}
		return SMTP_PARSE_MORE;
	}
	take = (size_t)(lf - in->p);
	if (l->carry.len != 0) {
		if (bb_append(&l->carry, in->p, take) != 0) {
			span_skip(in, take + 1);
			bb_reset(&l->carry, 1);
			return SMTP_PARSE_TOO_LONG;
		}
		line = bb_span(&l->carry);
		l->carry_out = true;
	} else {
		line = span_make(in->p, take);
	}
	span_skip(in, take + 1);
	if (line.len != 0 && line.p[line.len - 1] == '\r') {
		line.len--;
		*out_line = line;
		return SMTP_PARSE_OK;
	}
	*out_line = line;
	return SMTP_PARSE_BARE_LF; /* RFC 5321 §2.3.8: lines end in CRLF only */
}

const char *smtp_parse_name(enum smtp_parse p)
{
	static const char *const names[SMTP_PARSE_COUNT] = {
		[SMTP_PARSE_MORE] = "more",         [SMTP_PARSE_OK] = "ok",
		[SMTP_PARSE_TOO_LONG] = "too-long", [SMTP_PARSE_RUNAWAY] = "runaway",
		[SMTP_PARSE_BARE_LF] = "bare-lf",
		[SMTP_PARSE_BAD_CHAR] = "bad-char", [SMTP_PARSE_UNKNOWN] = "unknown",
		[SMTP_PARSE_SYNTAX] = "syntax",
	};

	return (unsigned)p < SMTP_PARSE_COUNT ? names[p] : "?";
}

/* ---- verbs -------------------------------------------------------------- */

#define PRE SMTP_CF_PRE_TLS
#define HELO SMTP_CF_NEEDS_HELO
#define LAST SMTP_CF_LAST_IN_GROUP
#define NOARG SMTP_CF_NO_ARG
#define ARG SMTP_CF_NEEDS_ARG
#define UNIMPL SMTP_CF_UNIMPL

/*
 * The verb table, in enum order. BDAT has no NEEDS_HELO/NEEDS_ARG: its chunk
 * must be skipped before any sequence error is answered, so the session
 * checks it after parsing the count. STARTTLS is answered 502 by the
 * session when core offers no TLS (smtp_cfg.tls_offered).
 */
static const struct smtp_verb verbs[SMTP_V_COUNT] = {
	{ "HELO", SMTP_V_HELO, PRE | ARG },
	{ "EHLO", SMTP_V_EHLO, PRE | ARG | LAST },
	{ "MAIL", SMTP_V_MAIL, HELO | ARG },
	{ "RCPT", SMTP_V_RCPT, HELO | ARG },
	{ "DATA", SMTP_V_DATA, HELO | NOARG | LAST },
	{ "BDAT", SMTP_V_BDAT, 0 },
	{ "RSET", SMTP_V_RSET, PRE | NOARG },
	{ "NOOP", SMTP_V_NOOP, PRE | LAST },
	{ "QUIT", SMTP_V_QUIT, PRE | NOARG | LAST },
	{ "VRFY", SMTP_V_VRFY, ARG | LAST },
	{ "EXPN", SMTP_V_EXPN, UNIMPL | LAST },
	{ "HELP", SMTP_V_HELP, PRE | LAST },
	{ "STARTTLS", SMTP_V_STARTTLS, PRE | NOARG | LAST },
	{ "AUTH", SMTP_V_AUTH, UNIMPL | LAST },
	{ "ETRN", SMTP_V_ETRN, UNIMPL | LAST },
	{ "TURN", SMTP_V_TURN, UNIMPL | LAST },
	{ "ATRN", SMTP_V_ATRN, UNIMPL | LAST },
	{ "BURL", SMTP_V_BURL, UNIMPL | LAST },
	{ "SEND", SMTP_V_SEND, UNIMPL | LAST },
	{ "SOML", SMTP_V_SOML, UNIMPL | LAST },
	{ "SAML", SMTP_V_SAML, UNIMPL | LAST },
};

#undef PRE
#undef HELO
#undef LAST
#undef NOARG
#undef ARG
#undef UNIMPL

const struct smtp_verb *smtp_verb_for(enum smtp_verb_id id)
{
	return (unsigned)id < SMTP_V_COUNT ? &verbs[id] : NULL;
}

enum smtp_parse smtp_cmd_parse(struct smtp_cmd *out, struct span line)
{
	struct span c = line, verb;

	out->verb = NULL;
	out->args = span_make(line.p, 0);
	if (line.len != 0 && (memchr(line.p, '\0', line.len) != NULL || memchr(line.p, '\r', line.len) != NULL)) {
		return SMTP_PARSE_BAD_CHAR;
	}
	if (!span_take_until(&c, &verb, ' ')) {
		verb = c;
		span_skip(&c, c.len);
	}
	out->args = span_trim_ws(c);
	for (size_t i = 0; i < SMTP_V_COUNT; i++) {
		if (span_eq_ci(verb, verbs[i].name)) {
			out->verb = &verbs[i];
			break;
		}
	}
	if (out->verb == NULL) {
		return SMTP_PARSE_UNKNOWN;
	}
	if (out->verb->flags & SMTP_CF_UNIMPL) {
		return SMTP_PARSE_OK;
	}
	if ((out->verb->flags & SMTP_CF_NO_ARG) && out->args.len != 0) {
		return SMTP_PARSE_SYNTAX;
	}
	if ((out->verb->flags & SMTP_CF_NEEDS_ARG) && out->args.len == 0) {
		return SMTP_PARSE_SYNTAX;
	}
	return SMTP_PARSE_OK;
}

/* ---- character classes ------------------------------------------------ */

static bool is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5322 §3.2.3 atext. */
static bool is_atext(uint8_t c)
{
	return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/*
 * utf8_len returns the length (2..4) of the well-formed UTF-8 sequence at
 * the front of s (RFC 3629 §4: no overlongs, no surrogates, <= U+10FFFF),
 * or 0.
 */
static size_t utf8_len(struct span s)
{
	uint8_t c0, lo = 0x80, hi = 0xBF;
	size_t n;

	if (s.len == 0) {
		return 0;
	}
	c0 = s.p[0];
	if (c0 >= 0xC2 && c0 <= 0xDF) {
		n = 2;
	} else if (c0 >= 0xE0 && c0 <= 0xEF) {
		n = 3;
		if (c0 == 0xE0) {
			lo = 0xA0;
		} else if (c0 == 0xED) {
			hi = 0x9F;
		}
	} else if (c0 >= 0xF0 && c0 <= 0xF4) {
		n = 4;
		if (c0 == 0xF0) {
			lo = 0x90;
		} else if (c0 == 0xF4) {
			hi = 0x8F;
		}
	} else {
		return 0;
	}
	if (s.len < n || s.p[1] < lo || s.p[1] > hi) {
		return 0;
	}
	for (size_t i = 2; i < n; i++) {
		if (s.p[i] < 0x80 || s.p[i] > 0xBF) {
			return 0;
		}
	}
	return n;
}

/* ---- domains and literals --------------------------------------------- */

/* A letter-digit for RFC 5321 sub-domains; RFC 6531 §3.3 adds U-labels (UTF-8). */
bool smtp_domain_valid(struct span d)
{
	size_t label = 0;
	bool last_hyphen = false;

	if (d.len == 0) {
		return false;
	}
	while (d.len != 0) {
		uint8_t c = d.p[0];
		size_t n = 1;

		if (c == '.') {
			if (label == 0 || last_hyphen) {
				return false;
			}
			label = 0;
			span_skip(&d, 1);
			continue;
		}
		if (c >= 0x80) {
			n = utf8_len(d);
			if (n == 0) {
				return false;
			}
			last_hyphen = false;
		} else if (c == '-') {
			if (label == 0) {
				return false; /* sub-domain = Let-dig [Ldh-str] */
			}
			last_hyphen = true;
		} else if (is_alpha(c) || is_digit(c)) {
			last_hyphen = false;
		} else {
			return false;
		}
		label += n;
		if (label > 63) {
			return false; /* RFC 1035 §2.3.4 */
		}
		span_skip(&d, n);
	}
	return label != 0 && !last_hyphen;
}

/* RFC 5321 §4.1.3 IPv4-address-literal: 4 Snum of 1..3 digits, each <= 255. */
static bool ipv4_literal_valid(struct span s)
{
	for (int i = 0; i < 4; i++) {
		uint64_t v;
		size_t before = s.len;

		if (i != 0 && !span_eat_ci(&s, ".")) {
			return false;
		}
		before = s.len;
		if (!span_get_dec_u64(&s, &v, 255) || before - s.len > 3) {
			return false;
		}
	}
	return s.len == 0;
}

static bool ldh_str_valid(struct span s)
{
	if (s.len == 0 || !(is_alpha(s.p[0]) || is_digit(s.p[0])) ||
	    !(is_alpha(s.p[s.len - 1]) || is_digit(s.p[s.len - 1]))) {
		return false;
	}
	for (size_t i = 0; i < s.len; i++) {
		if (!(is_alpha(s.p[i]) || is_digit(s.p[i]) || s.p[i] == '-')) {
			return false;
		}
	}
	return true;
}

/* address-literal content between "[" and "]" (RFC 5321 §4.1.3). */
static bool addr_literal_valid(struct span s)
{
	struct span tag;

	if (s.len != 0 && is_digit(s.p[0])) {
		return ipv4_literal_valid(s);
	}
	if (span_eat_ci(&s, "IPv6:")) {
		char buf[64];
		uint8_t addr[16];

		if (s.len == 0 || s.len >= sizeof(buf)) {
			return false;
		}
		for (size_t i = 0; i < s.len; i++) {
			if (!(is_digit(s.p[i]) || strchr("abcdefABCDEF:.", s.p[i]) != NULL) || s.p[i] == 0) {
				return false;
			}
		}
		memcpy(buf, s.p, s.len);
		buf[s.len] = '\0';
		return inet_pton(AF_INET6, buf, addr) == 1;
	}
	/* General-address-literal = Standardized-tag ":" 1*dcontent */
	if (!span_take_until(&s, &tag, ':') || !ldh_str_valid(tag)) {
		return false;
	}
	span_skip(&s, 1);
	if (s.len == 0) {
		return false;
	}
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = s.p[i];

		if (!((c >= 33 && c <= 90) || (c >= 94 && c <= 126))) {
			return false;
		}
	}
	return true;
}

/* domain_take moves a run of domain octets from the front of *c into *out. */
static void domain_take(struct span *c, struct span *out)
{
	size_t i = 0;

	while (i < c->len) {
		uint8_t ch = c->p[i];

		if (!(is_alpha(ch) || is_digit(ch) || ch == '-' || ch == '.' || ch >= 0x80)) {
			break;
		}
		i++;
	}
	span_take(c, out, i);
}

/* domain_or_literal parses Domain / address-literal from the front of *c. */
static bool domain_or_literal(struct span *c, struct span *out, bool *has_8bit)
{
	if (span_peek_u8(*c) == '[') {
		struct span s = *c, lit;

		span_skip(&s, 1);
		if (!span_take_until(&s, &lit, ']') || !addr_literal_valid(lit)) {
			return false;
		}
		span_skip(&s, 1);
		out->p = c->p;
		out->len = lit.len + 2;
		*c = s;
		return true;
	}
	domain_take(c, out);
	if (!smtp_domain_valid(*out)) {
		return false;
	}
	for (size_t i = 0; i < out->len; i++) {
		if (out->p[i] >= 0x80) {
			*has_8bit = true;
		}
	}
	return true;
}

/* ---- paths ------------------------------------------------------------ */

/* local_part parses Dot-string / Quoted-string (RFC 5321 §4.1.2, RFC 6531 §3.3). */
static bool local_part(struct span *c, bool *has_8bit)
{
	struct span s = *c;

	if (span_peek_u8(s) == '"') {
		span_skip(&s, 1);
		for (;;) {
			int ch = span_peek_u8(s);

			if (ch < 0) {
				return false;
			}
			if (ch == '"') {
				span_skip(&s, 1);
				break;
			}
			if (ch == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126 */
				if (s.len < 2 || s.p[1] < 32 || s.p[1] > 126) {
					return false;
				}
				span_skip(&s, 2);
			} else if (ch >= 0x80) {
				size_t n = utf8_len(s);

				if (n == 0) {
					return false;
				}
				*has_8bit = true;
				span_skip(&s, n);
			} else if (ch >= 32 && ch <= 126) {
				span_skip(&s, 1); /* qtextSMTP: not '"' or '\\' (handled above) */
			} else {
				return false;
			}
		}
	} else {
		bool atom_empty = true;

		for (;;) {
			int ch = span_peek_u8(s);

			if (ch >= 0 && is_atext((uint8_t)ch)) {
				span_skip(&s, 1);
				atom_empty = false;
			} else if (ch >= 0x80) {
				size_t n = utf8_len(s);

				if (n == 0) {
					return false;
				}
				*has_8bit = true;
				span_skip(&s, n);
				atom_empty = false;
			} else if (ch == '.') {
				if (atom_empty) {
					return false;
				}
				span_skip(&s, 1);
				atom_empty = true;
			} else {
				break;
			}
		}
		if (atom_empty) {
			return false; /* empty, or a trailing dot */
		}
	}
	*c = s;
	return true;
}

/* path_end: the closing ">" of a Path, or the end of a bare address. */
static bool path_end(struct span s, bool bracket)
{
	return bracket ? span_peek_u8(s) == '>' : (s.len == 0 || s.p[0] == ' ');
}

enum smtp_addr_err smtp_path_parse(struct smtp_path *out, struct span *c, unsigned flags)
{
	struct span s = *c, dom;
	const uint8_t *start = s.p, *mb;
	bool has_8bit = false, bracket;

	memset(out, 0, sizeof(*out));
	out->mailbox = span_make(s.p, 0);
	out->local = out->mailbox;
	out->domain = out->mailbox;
	/* Like Postfix (strict_rfc821_envelopes = no) a bare address is
	 * accepted: it is unambiguous, ending at the first space. */
	bracket = span_peek_u8(s) == '<';
	if (!bracket && !(flags & SMTP_PATH_ALLOW_BARE)) {
		return SMTP_ADDR_SYNTAX;
	}
	if (bracket) {
		span_skip(&s, 1);
	}
	if (bracket && span_peek_u8(s) == '>') {
		if (!(flags & SMTP_PATH_ALLOW_NULL)) {
			return SMTP_ADDR_SYNTAX;
		}
		span_skip(&s, 1);
		out->is_null = true;
		*c = s;
		return SMTP_ADDR_OK;
	}
	/* A-d-l: "@" Domain *( "," "@" Domain ) ":" -- accepted and ignored (§4.1.1.3, App. C). */
	if (span_peek_u8(s) == '@') {
		for (;;) {
			span_skip(&s, 1);
			if (!domain_or_literal(&s, &dom, &has_8bit)) {
				return SMTP_ADDR_SYNTAX;
			}
			if (span_peek_u8(s) == ',') {
				span_skip(&s, 1);
				if (span_peek_u8(s) != '@') {
					return SMTP_ADDR_SYNTAX;
				}
				continue;
			}
			if (span_peek_u8(s) != ':') {
				return SMTP_ADDR_SYNTAX;
			}
			span_skip(&s, 1);
			break;
		}
	}
	mb = s.p;
	if (!local_part(&s, &has_8bit)) {
		return SMTP_ADDR_SYNTAX;
	}
	out->local = span_make(mb, (size_t)(s.p - mb));
	if (path_end(s, bracket)) {
		/* RFC 5321 §4.1.1.3: "<Postmaster>" without a domain, RCPT only. */
		if (!(flags & SMTP_PATH_ALLOW_POSTMASTER) || !span_eq_ci(out->local, "postmaster")) {
			return SMTP_ADDR_SYNTAX;
		}
		span_skip(&s, bracket ? 1 : 0);
		out->is_postmaster = true;
		out->mailbox = out->local;
		out->domain = span_make(s.p, 0);
		*c = s;
		return SMTP_ADDR_OK;
	}
	if (span_peek_u8(s) != '@') {
		return SMTP_ADDR_SYNTAX;
	}
	span_skip(&s, 1);
	if (!domain_or_literal(&s, &out->domain, &has_8bit)) {
		return SMTP_ADDR_SYNTAX;
	}
	out->mailbox = span_make(mb, (size_t)(s.p - mb));
	if (!path_end(s, bracket)) {
		return SMTP_ADDR_SYNTAX;
	}
	span_skip(&s, bracket ? 1 : 0);
	/* RFC 5321 §4.5.3.1.1-3 */
	if (out->local.len > SMTP_LOCALPART_MAX || out->domain.len > SMTP_DOMAIN_MAX ||
	    (size_t)(s.p - start) > SMTP_PATH_MAX) {
		return SMTP_ADDR_TOO_LONG;
	}
	out->has_8bit = has_8bit;
	*c = s;
	return SMTP_ADDR_OK;
}

/* ---- MAIL / RCPT parameters ------------------------------------------- */

bool smtp_mail_arg_split(struct span *c, const char *kw)
{
	if (!span_eat_ci(c, kw)) {
		return false;
	}
	while (c->len != 0 && c->p[0] == ' ') {
		span_skip(c, 1);
	}
	return true;
}

/* param_next splits the next esmtp-param into keyword and value (RFC 5321 §4.1.2). */
static enum smtp_param_err param_next(struct span *c, struct span *kw, struct span *val, bool *has_val)
{
	struct span tok;

	while (c->len != 0 && c->p[0] == ' ') {
		span_skip(c, 1);
	}
	if (!span_take_until(c, &tok, ' ')) {
		span_take(c, &tok, c->len);
	}
	*has_val = span_take_until(&tok, kw, '=');
	if (*has_val) {
		span_skip(&tok, 1);
		*val = tok;
	} else {
		*kw = tok;
		*val = span_make(tok.p, 0);
	}
	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	if (kw->len == 0 || !(is_alpha(kw->p[0]) || is_digit(kw->p[0]))) {
		return SMTP_PARAM_SYNTAX;
	}
	for (size_t i = 0; i < kw->len; i++) {
		if (!(is_alpha(kw->p[i]) || is_digit(kw->p[i]) || kw->p[i] == '-')) {
			return SMTP_PARAM_SYNTAX;
		}
	}
	/* esmtp-value = 1*(%d33-60 / %d62-126), RFC 6531 adds UTF-8 */
	if (*has_val) {
		if (val->len == 0) {
			return SMTP_PARAM_SYNTAX;
		}
		for (size_t i = 0; i < val->len; i++) {
			uint8_t ch = val->p[i];

			if (ch == '=' || ch < 33 || ch == 127) {
				return SMTP_PARAM_SYNTAX;
			}
		}
	}
	return SMTP_PARAM_OK;
}

static bool params_empty(struct span c)
{
	while (c.len != 0 && c.p[0] == ' ') {
		span_skip(&c, 1);
	}
	return c.len == 0;
}

enum smtp_param_err smtp_mail_params_parse(struct smtp_mail_params *out, struct span params)
{
	bool seen_size = false, seen_body = false;

	memset(out, 0, sizeof(*out));
	out->body = MSG_BODY_7BIT;
	while (!params_empty(params)) {
		struct span kw, val;
		bool has_val;
		enum smtp_param_err e = param_next(&params, &kw, &val, &has_val);

		if (e != SMTP_PARAM_OK) {
			return e;
		}
		if (span_eq_ci(kw, "SIZE")) {
			/* RFC 1870 §6: size-value = 1*20DIGIT */
			if (seen_size || !has_val || !span_get_dec_u64(&val, &out->size, UINT64_MAX) || val.len != 0) {
				return SMTP_PARAM_SYNTAX;
			}
			seen_size = true;
			out->has_size = true;
		} else if (span_eq_ci(kw, "BODY")) {
			if (seen_body || !has_val) {
				return SMTP_PARAM_SYNTAX;
			}
			if (span_eq_ci(val, "7BIT")) {
				out->body = MSG_BODY_7BIT;
			} else if (span_eq_ci(val, "8BITMIME")) {
				out->body = MSG_BODY_8BITMIME;
			} else if (span_eq_ci(val, "BINARYMIME")) {
				out->body = MSG_BODY_BINARYMIME;
			} else {
				return SMTP_PARAM_SYNTAX;
			}
			seen_body = true;
		} else if (span_eq_ci(kw, "SMTPUTF8")) {
			/* RFC 6531 §3.4: no value */
			if (out->smtputf8 || has_val) {
				return SMTP_PARAM_SYNTAX;
			}
			out->smtputf8 = true;
		} else {
			return SMTP_PARAM_UNKNOWN;
		}
	}
	return SMTP_PARAM_OK;
}

enum smtp_param_err smtp_rcpt_params_parse(struct span params)
{
	struct span kw, val;
	bool has_val;
	enum smtp_param_err e;

	if (params_empty(params)) {
		return SMTP_PARAM_OK;
	}
	e = param_next(&params, &kw, &val, &has_val);
	return e != SMTP_PARAM_OK ? e : SMTP_PARAM_UNKNOWN;
}

/* ---- BDAT / HELO ------------------------------------------------------ */

enum smtp_parse smtp_bdat_parse(struct span args, uint64_t *out_count, bool *out_last, bool *out_count_ok)
{
	struct span c = args;

	*out_count = 0;
	*out_last = false;
	*out_count_ok = false;
	/* RFC 3030 §4: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF */
	if (!span_get_dec_u64(&c, out_count, UINT64_MAX) || (c.len != 0 && c.p[0] != ' ')) {
		return SMTP_PARSE_SYNTAX;
	}
	*out_count_ok = true;
	if (c.len == 0) {
		return SMTP_PARSE_OK;
	}
	span_skip(&c, 1);
	if (!span_eq_ci(c, "LAST")) {
		return SMTP_PARSE_SYNTAX;
	}
	*out_last = true;
	return SMTP_PARSE_OK;
}

bool smtp_helo_valid(struct span arg)
{
	if (arg.len == 0 || arg.len > SMTP_DOMAIN_MAX) {
		return false;
	}
	for (size_t i = 0; i < arg.len; i++) {
		if (arg.p[i] < 0x21 || arg.p[i] > 0x7e) {
			return false;
		}
	}
	return true;
}
