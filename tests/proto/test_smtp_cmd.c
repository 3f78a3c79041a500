/* test_smtp_cmd.c - framing, verbs, paths and parameters (proto/smtp_cmd.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_cmd.h"
#include "tests/support/guard.h"

/* ---- framing ---------------------------------------------------------- */

/* frame_all feeds in[0..len) in `step`-octet segments and renders every result. */
static void frame_all(struct bb *res, size_t max, const char *in, size_t len, size_t step)
{
	struct smtp_line l;
	size_t pos = 0;

	smtp_line_init(&l, max);
	while (pos < len) {
		size_t n = (step == 0 || len - pos < step) ? len - pos : step;
		const uint8_t *g = guard_copy(in + pos, n);
		struct span s = span_make(g, n), line;

		for (;;) {
			enum smtp_parse p = smtp_line_next(&l, &s, &line);

			if (p == SMTP_PARSE_MORE) {
				cr_assert_eq(s.len, 0);
				break;
			}
			cr_assert(bb_printf(res, "%s:", smtp_parse_name(p)) == 0);
			if (p != SMTP_PARSE_TOO_LONG) {
				cr_assert(bb_append_span(res, line) == 0);
			}
			cr_assert(bb_append_str(res, "|") == 0);
		}
		guard_release(g, n);
		pos += n;
	}
	cr_assert(bb_printf(res, "pending=%d", smtp_line_pending(&l)) == 0);
	smtp_line_fini(&l);
}

static void check_frames(size_t max, const char *in, const char *want)
{
	size_t len = strlen(in);

	for (size_t step = 0; step <= len; step++) {
		struct bb res;

		bb_init(&res, 0);
		frame_all(&res, max, in, len, step);
		cr_assert(bb_append(&res, "", 1) == 0);
		cr_assert_str_eq((char *)res.p, want, "step %zu", step);
		bb_fini(&res);
	}
}

Test(smtp_line, frames_crlf_lines_in_any_split)
{
	check_frames(512, "EHLO a\r\nNOOP\r\n\r\npart", "ok:EHLO a|ok:NOOP|ok:|pending=1");
}

Test(smtp_line, bare_lf_is_reported)
{
	check_frames(512, "NOOP\nQUIT\r\n\n", "bare-lf:NOOP|ok:QUIT|bare-lf:|pending=0");
}

Test(smtp_line, too_long_skips_to_lf_and_resyncs)
{
	/* max 8: "1234567\n" (8 with LF) fits, "12345678\n" does not */
	check_frames(8, "123456\r\n1234567\n12345678\nOK\r\nabcdefghijklmnop\r\nX\r\n",
		     "ok:123456|bare-lf:1234567|too-long:|ok:OK|too-long:|ok:X|pending=0");
}

Test(smtp_line, carry_released_when_idle)
{
	struct smtp_line l;
	struct span s = SPAN_LIT("NO"), line;

	smtp_line_init(&l, 512);
	cr_assert_eq(smtp_line_next(&l, &s, &line), SMTP_PARSE_MORE);
	cr_assert_not_null(l.carry.p);
	s = SPAN_LIT("OP\r\n");
	cr_assert_eq(smtp_line_next(&l, &s, &line), SMTP_PARSE_OK);
	cr_assert(span_eq(line, SPAN_LIT("NOOP")));
	cr_assert_eq(smtp_line_next(&l, &s, &line), SMTP_PARSE_MORE);
	cr_assert_null(l.carry.p, "the idle framer holds no buffer");
	cr_assert_not(smtp_line_pending(&l));
	smtp_line_fini(&l);
}

/* ---- verbs -------------------------------------------------------------- */

Test(smtp_cmd, parses_verbs_case_insensitively)
{
	struct smtp_cmd c;

	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("ehlo  host.example  ")), SMTP_PARSE_OK);
	cr_assert_eq(c.verb->id, SMTP_V_EHLO);
	cr_assert(span_eq(c.args, SPAN_LIT("host.example")));
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("MAIL FROM:<a@b>")), SMTP_PARSE_OK);
	cr_assert_eq(c.verb->id, SMTP_V_MAIL);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("StartTLS")), SMTP_PARSE_OK);
	cr_assert_eq(c.verb->id, SMTP_V_STARTTLS);
	cr_assert(!(c.verb->flags & SMTP_CF_UNIMPL) && (c.verb->flags & SMTP_CF_LAST_IN_GROUP));
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("STARTTLS now")), SMTP_PARSE_SYNTAX, "RFC 3207: no arguments");
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("DATA")), SMTP_PARSE_OK);
	cr_assert(c.verb->flags & SMTP_CF_LAST_IN_GROUP);
}

Test(smtp_cmd, rejects_bad_lines)
{
	struct smtp_cmd c;

	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("")), SMTP_PARSE_UNKNOWN);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT(" NOOP")), SMTP_PARSE_UNKNOWN);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("NOOPX")), SMTP_PARSE_UNKNOWN);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("GET / HTTP/1.1")), SMTP_PARSE_UNKNOWN);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("NO\0OP")), SMTP_PARSE_BAD_CHAR);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("NOOP\r")), SMTP_PARSE_BAD_CHAR);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("DATA x")), SMTP_PARSE_SYNTAX);
	cr_assert_eq(c.verb->id, SMTP_V_DATA);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("RCPT")), SMTP_PARSE_SYNTAX);
	cr_assert_eq(smtp_cmd_parse(&c, SPAN_LIT("VRFY   ")), SMTP_PARSE_SYNTAX);
}

Test(smtp_cmd, verb_table_is_in_enum_order)
{
	for (int i = 0; i < SMTP_V_COUNT; i++) {
		cr_assert_eq((int)smtp_verb_for((enum smtp_verb_id)i)->id, i);
	}
	cr_assert_null(smtp_verb_for(SMTP_V_COUNT));
	for (int i = 0; i < SMTP_PARSE_COUNT; i++) {
		cr_assert_str_neq(smtp_parse_name((enum smtp_parse)i), "?");
	}
}

/* ---- paths ------------------------------------------------------------ */

struct path_vec {
	const char *in;
	unsigned flags;
	enum smtp_addr_err want;
	const char *mailbox; /* when OK */
	const char *domain;
	size_t rest;         /* octets left after the path */
};

#define NUL_OK SMTP_PATH_ALLOW_NULL
#define PM_OK SMTP_PATH_ALLOW_POSTMASTER

static const struct path_vec paths[] = {
	{ "<a@b.example>", 0, SMTP_ADDR_OK, "a@b.example", "b.example", 0 },
	{ "<a@b.example> SIZE=1", 0, SMTP_ADDR_OK, "a@b.example", "b.example", 7 },
	{ "<>", NUL_OK, SMTP_ADDR_OK, "", "", 0 },
	{ "<>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<Postmaster>", PM_OK, SMTP_ADDR_OK, "Postmaster", "", 0 },
	{ "<postmaster>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<bob>", PM_OK, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<first.last+tag@sub.example.org>", 0, SMTP_ADDR_OK, "first.last+tag@sub.example.org", "sub.example.org", 0 },
	{ "<\"john doe\"@example.org>", 0, SMTP_ADDR_OK, "\"john doe\"@example.org", "example.org", 0 },
	{ "<\"a\\\"b>c\"@example.org>", 0, SMTP_ADDR_OK, "\"a\\\"b>c\"@example.org", "example.org", 0 },
	{ "<\"unterminated@example.org>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@[192.0.2.1]>", 0, SMTP_ADDR_OK, "a@[192.0.2.1]", "[192.0.2.1]", 0 },
	{ "<a@[192.0.2.256]>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@[1.2.3]>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@[IPv6:2001:db8::1]>", 0, SMTP_ADDR_OK, "a@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", 0 },
	{ "<a@[IPv6:2001:db8:::1]>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@[x-tag:foo]>", 0, SMTP_ADDR_OK, "a@[x-tag:foo]", "[x-tag:foo]", 0 },
	{ "<@r1.example,@r2.example:a@b.example>", 0, SMTP_ADDR_OK, "a@b.example", "b.example", 0 },
	{ "<@r1.example:@r2:a@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a.@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<.a@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a..b@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@b..example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@-b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@b-.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@b.example.>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a b@c>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@b", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "a@b", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<a@b_c.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },
	{ "<\xc3\xa9t\xc3\xa9@b\xc3\xbc.example>", 0, SMTP_ADDR_OK, "\xc3\xa9t\xc3\xa9@b\xc3\xbc.example",
	  "b\xc3\xbc.example", 0 },
	{ "<\xc3(@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },       /* bad UTF-8 */
	{ "<\xc0\xaf@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 },   /* overlong */
	{ "<\xed\xa0\x80@b.example>", 0, SMTP_ADDR_SYNTAX, NULL, NULL, 0 }, /* surrogate */
};

Test(smtp_path, vectors)
{
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const struct path_vec *v = &paths[i];
		size_t len = strlen(v->in);
		const uint8_t *g = guard_copy(v->in, len);
		struct span c = span_make(g, len);
		struct smtp_path p;
		enum smtp_addr_err e = smtp_path_parse(&p, &c, v->flags);

		cr_assert_eq(e, v->want, "%s: got %d", v->in, e);
		if (e == SMTP_ADDR_OK) {
			cr_assert(span_eq(p.mailbox, span_cstr(v->mailbox)), "%s: mailbox %.*s", v->in,
				  (int)p.mailbox.len, (const char *)p.mailbox.p);
			cr_assert(span_eq(p.domain, span_cstr(v->domain)), "%s: domain", v->in);
			cr_assert_eq(c.len, v->rest, "%s", v->in);
			cr_assert_eq(p.has_8bit, strchr(v->in, '\xc3') != NULL, "%s", v->in);
		} else {
			cr_assert_eq(c.len, len, "%s: cursor moved on failure", v->in);
		}
		guard_release(g, len);
	}
}

Test(smtp_path, length_limits)
{
	char buf[600];
	struct span c;
	struct smtp_path p;
	char l64[65], lab63[64];

	memset(l64, 'a', 64);
	l64[64] = 0;
	memset(lab63, 'd', 63);
	lab63[63] = 0;
	/* local part 64: ok; 65: too long */
	snprintf(buf, sizeof(buf), "<%s@x.example>", l64);
	c = span_cstr(buf);
	cr_assert_eq(smtp_path_parse(&p, &c, 0), SMTP_ADDR_OK);
	snprintf(buf, sizeof(buf), "<%sa@x.example>", l64);
	c = span_cstr(buf);
	cr_assert_eq(smtp_path_parse(&p, &c, 0), SMTP_ADDR_TOO_LONG);
	/* a 64-octet label is a syntax error (RFC 1035) */
	snprintf(buf, sizeof(buf), "<a@%sd.example>", lab63);
	c = span_cstr(buf);
	cr_assert_eq(smtp_path_parse(&p, &c, 0), SMTP_ADDR_SYNTAX);
	/* domain of 255: ok as a domain, but with a 64-octet local part the path is 322 > 256 */
	snprintf(buf, sizeof(buf), "<%s@%s.%s.%s.%.59s.org>", l64, lab63, lab63, lab63, lab63);
	c = span_cstr(buf);
	cr_assert_eq(smtp_path_parse(&p, &c, 0), SMTP_ADDR_TOO_LONG);
	/* path of exactly 256 */
	snprintf(buf, sizeof(buf), "<%.60s@%s.%s.%s.a>", l64, lab63, lab63, lab63);
	cr_assert_eq(strlen(buf), 256);
	c = span_cstr(buf);
	cr_assert_eq(smtp_path_parse(&p, &c, 0), SMTP_ADDR_OK);
	snprintf(buf, sizeof(buf), "<%.61s@%s.%s.%s.a>", l64, lab63, lab63, lab63);
	c = span_cstr(buf);
	cr_assert_eq(smtp_path_parse(&p, &c, 0), SMTP_ADDR_TOO_LONG);
}

Test(smtp_path, domain_valid)
{
	cr_assert(smtp_domain_valid(SPAN_LIT("a")));
	cr_assert(smtp_domain_valid(SPAN_LIT("a-b.c9")));
	cr_assert(smtp_domain_valid(SPAN_LIT("1.2")));
	cr_assert_not(smtp_domain_valid(SPAN_LIT("")));
	cr_assert_not(smtp_domain_valid(SPAN_LIT(".a")));
	cr_assert_not(smtp_domain_valid(SPAN_LIT("a.")));
	cr_assert_not(smtp_domain_valid(SPAN_LIT("a_b")));
}

/* ---- MAIL / RCPT / BDAT / HELO ---------------------------------------- */

Test(smtp_params, mail_params)
{
	struct smtp_mail_params p;

	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT("")), SMTP_PARAM_OK);
	cr_assert_not(p.has_size);
	cr_assert_eq(p.body, MSG_BODY_7BIT);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" size=42  body=8bitmime SMTPUTF8 ")), SMTP_PARAM_OK);
	cr_assert(p.has_size);
	cr_assert_eq(p.size, 42);
	cr_assert_eq(p.body, MSG_BODY_8BITMIME);
	cr_assert(p.smtputf8);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" BODY=BINARYMIME")), SMTP_PARAM_OK);
	cr_assert_eq(p.body, MSG_BODY_BINARYMIME);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SIZE=18446744073709551615")), SMTP_PARAM_OK);
	cr_assert_eq(p.size, UINT64_MAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SIZE=18446744073709551616")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SIZE=")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SIZE")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SIZE=-1")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SIZE=1x")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" BODY=8BIT")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" BODY=7BIT BODY=7BIT")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SMTPUTF8=yes")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" SMTPUTF8 SMTPUTF8")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" RET=HDRS")), SMTP_PARAM_UNKNOWN);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" AUTH=<>")), SMTP_PARAM_UNKNOWN);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" -X=1")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_mail_params_parse(&p, SPAN_LIT(" X=a=b")), SMTP_PARAM_SYNTAX);
	cr_assert_eq(smtp_rcpt_params_parse(SPAN_LIT("  ")), SMTP_PARAM_OK);
	cr_assert_eq(smtp_rcpt_params_parse(SPAN_LIT(" NOTIFY=NEVER")), SMTP_PARAM_UNKNOWN);
	cr_assert_eq(smtp_rcpt_params_parse(SPAN_LIT(" =x")), SMTP_PARAM_SYNTAX);
}

Test(smtp_params, mail_arg_split)
{
	struct span c = SPAN_LIT("from:   <a@b>");

	cr_assert(smtp_mail_arg_split(&c, "FROM:"));
	cr_assert(span_eq(c, SPAN_LIT("<a@b>")));
	c = SPAN_LIT("FROM <a@b>");
	cr_assert_not(smtp_mail_arg_split(&c, "FROM:"));
}

Test(smtp_params, bdat_args)
{
	uint64_t n;
	bool last, ok;

	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("0"), &n, &last, &ok), SMTP_PARSE_OK);
	cr_assert(n == 0 && !last && ok);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("123 LAST"), &n, &last, &ok), SMTP_PARSE_OK);
	cr_assert(n == 123 && last && ok);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("123 last"), &n, &last, &ok), SMTP_PARSE_OK);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("123 LASTX"), &n, &last, &ok), SMTP_PARSE_SYNTAX);
	cr_assert(ok && n == 123);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("123 LAST X"), &n, &last, &ok), SMTP_PARSE_SYNTAX);
	cr_assert(ok);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT(""), &n, &last, &ok), SMTP_PARSE_SYNTAX);
	cr_assert_not(ok);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("12x"), &n, &last, &ok), SMTP_PARSE_SYNTAX);
	cr_assert_not(ok);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("-1"), &n, &last, &ok), SMTP_PARSE_SYNTAX);
	cr_assert_not(ok);
	cr_assert_eq(smtp_bdat_parse(SPAN_LIT("99999999999999999999"), &n, &last, &ok), SMTP_PARSE_SYNTAX);
	cr_assert_not(ok);
}

Test(smtp_params, helo_valid)
{
	char big[300];

	cr_assert(smtp_helo_valid(SPAN_LIT("client.example")));
	cr_assert(smtp_helo_valid(SPAN_LIT("[192.0.2.1]")));
	cr_assert_not(smtp_helo_valid(SPAN_LIT("")));
	cr_assert_not(smtp_helo_valid(SPAN_LIT("a b")));
	cr_assert_not(smtp_helo_valid(SPAN_LIT("a\x01")));
	memset(big, 'a', sizeof(big));
	cr_assert(smtp_helo_valid(span_make(big, 255)));
	cr_assert_not(smtp_helo_valid(span_make(big, 256)));
}

/* frame_counts feeds `len` octets of `fill` then `tail`, cut every `cut` octets, counting each verdict. */
static void frame_counts(int out_counts[SMTP_PARSE_COUNT], size_t max, size_t len, const char *tail, size_t cut)
{
	struct smtp_line l;
	size_t tlen = strlen(tail), total = len + tlen, pos = 0;
	char *in = malloc(total);

	cr_assert_not_null(in);
	memset(in, 'x', len);
	memcpy(in + len, tail, tlen);
	memset(out_counts, 0, sizeof(int) * SMTP_PARSE_COUNT);
	smtp_line_init(&l, max);
	while (pos < total) {
		size_t n = total - pos < cut ? total - pos : cut;
		struct span s = span_make((const uint8_t *)in + pos, n), line;
		enum smtp_parse p;

		while ((p = smtp_line_next(&l, &s, &line)) != SMTP_PARSE_MORE) {
			out_counts[p]++;
		}
		pos += n;
	}
	smtp_line_fini(&l);
	free(in);
}

Test(smtp_line, runaway_line_is_reported_once)
{
	static const size_t cuts[] = { 1000, 4096, 65536, 200000 };

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		int c[SMTP_PARSE_COUNT];

		/* far past the limit: one 500 (too-long), then one runaway */
		frame_counts(c, 512, 512 + SMTP_LINE_RUNAWAY_MAX + 2000, "", cuts[i]);
		cr_assert_eq(c[SMTP_PARSE_TOO_LONG], 1, "cut %zu", cuts[i]);
		cr_assert_eq(c[SMTP_PARSE_RUNAWAY], 1, "cut %zu", cuts[i]);
		/* long, but its LF comes before the runaway bound: resyncs */
		frame_counts(c, 512, 512 + SMTP_LINE_RUNAWAY_MAX - 2000, "\r\nNOOP\r\n", cuts[i]);
		cr_assert_eq(c[SMTP_PARSE_TOO_LONG], 1, "cut %zu", cuts[i]);
		cr_assert_eq(c[SMTP_PARSE_RUNAWAY], 0, "cut %zu", cuts[i]);
		cr_assert_eq(c[SMTP_PARSE_OK], 1, "cut %zu", cuts[i]);
	}
}
