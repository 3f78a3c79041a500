/*
 * test_milter.c - proto/milter.c: packets as libmilter writes them (read
 * whole, byte by byte and at every split, each input ending at a guard
 * page), every reply letter, hostile lengths and fields, the writers'
 * bytes, and the header field a milter's value becomes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../proto/milter.h"
#include "../support/guard.h"

/* pkt builds a packet "len cmd data" in buf; returns its size. */
static size_t pkt(uint8_t *buf, uint8_t cmd, const void *data, size_t len)
{
	uint32_t n = (uint32_t)len + 1;

	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	buf[4] = cmd;
	memcpy(buf + 5, data, len);
	return len + 5;
}

/* parse reads one packet from a guarded copy and parses its reply. */
static enum milter_rc parse(struct milter_reply *r, uint8_t cmd, const void *data, size_t len)
{
	uint8_t buf[4096];
	size_t n = pkt(buf, cmd, data, len), used;
	const uint8_t *g = guard_copy(buf, n);
	struct milter_pkt p;
	enum milter_rc rc = milter_pkt_next(&p, &used, span_make(g, n));

	cr_assert_eq(rc, MILTER_OK);
	cr_assert_eq(used, n);
	rc = milter_reply_parse(r, &p);
	/* the spans point into the guarded copy, which goes away: keep only scalars for callers */
	if (rc == MILTER_OK) {
		static uint8_t keep[4096];

		memcpy(keep, g, n);
		if (r->name.p) {
			r->name.p = keep + (r->name.p - g);
		}
		if (r->value.p) {
			r->value.p = keep + (r->value.p - g);
		}
		if (r->text.p) {
			r->text.p = keep + (r->text.p - g);
		}
	}
	guard_release(g, n);
	return rc;
}

static bool span_is(struct span s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

Test(milter, optneg_reply)
{
	static const uint8_t d[12] = { 0, 0, 0, 6, 0, 0, 0, 0x31, 0, 0x1f, 0xff, 0xff };
	struct milter_reply r;

	cr_assert_eq(parse(&r, SMFIC_OPTNEG, d, sizeof(d)), MILTER_OK);
	cr_assert_eq(r.act, MILTER_A_OPTNEG);
	cr_assert_eq(r.version, 6);
	cr_assert_eq(r.actions, 0x31);
	cr_assert_eq(r.protocol, 0x1fffff);
	cr_assert_eq(parse(&r, SMFIC_OPTNEG, d, 11), MILTER_SYNTAX);
}

Test(milter, simple_replies)
{
	static const struct {
		uint8_t cmd;
		enum milter_act act;
	} t[] = {
		{ SMFIR_CONTINUE, MILTER_A_CONTINUE }, { SMFIR_ACCEPT, MILTER_A_ACCEPT },
		{ SMFIR_REJECT, MILTER_A_REJECT },     { SMFIR_TEMPFAIL, MILTER_A_TEMPFAIL },
		{ SMFIR_DISCARD, MILTER_A_DISCARD },   { SMFIR_PROGRESS, MILTER_A_PROGRESS },
		{ SMFIR_SKIP, MILTER_A_SKIP },         { SMFIR_REPLBODY, MILTER_A_REFUSED },
		{ SMFIR_ADDRCPT, MILTER_A_REFUSED },   { SMFIR_DELRCPT, MILTER_A_REFUSED },
		{ SMFIR_CHGFROM, MILTER_A_REFUSED },   { SMFIR_SETSYMLIST, MILTER_A_SETSYMLIST },
		{ SMFIR_SHUTDOWN, MILTER_A_SHUTDOWN }, { SMFIR_CONN_FAIL, MILTER_A_SHUTDOWN },
	};
	struct milter_reply r;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_assert_eq(parse(&r, t[i].cmd, "", 0), MILTER_OK, "cmd %c", t[i].cmd);
		cr_assert_eq(r.act, t[i].act, "cmd %c", t[i].cmd);
	}
	cr_assert_eq(parse(&r, 'Z', "", 0), MILTER_SYNTAX);
	cr_assert_eq(parse(&r, SMFIR_REJECT, "", 0), MILTER_OK);
	cr_assert_eq(r.code, 550);
	cr_assert_eq(parse(&r, SMFIR_TEMPFAIL, "", 0), MILTER_OK);
	cr_assert_eq(r.code, 451);
}

Test(milter, replycode)
{
	static const char ok1[] = "550 5.7.1 Blocked by SpamAssassin";
	static const char ok2[] = "451-4.7.1 first\r\n451 4.7.1 second";
	static const char ok3[] = "554";
	struct milter_reply r;

	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, ok1, sizeof(ok1)), MILTER_OK);
	cr_assert_eq(r.code, 550);
	cr_assert(span_is(r.text, "Blocked by SpamAssassin"));
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, ok2, sizeof(ok2)), MILTER_OK);
	cr_assert_eq(r.code, 451);
	cr_assert(span_is(r.text, "first\r\n451 4.7.1 second"));
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, ok3, sizeof(ok3)), MILTER_OK);
	cr_assert_eq(r.code, 554);
	cr_assert_eq(r.text.len, 0);
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, "250 ok", 7), MILTER_SYNTAX);   /* not 4xx/5xx */
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, "550 ok", 6), MILTER_SYNTAX);   /* no NUL */
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, "55x ok", 7), MILTER_SYNTAX);
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, "550xok", 7), MILTER_SYNTAX);
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, "55", 3), MILTER_SYNTAX);
	cr_assert_eq(parse(&r, SMFIR_REPLYCODE, "550 5.7 x", 10), MILTER_OK); /* not a status: kept */
	cr_assert(span_is(r.text, "5.7 x"));
}

Test(milter, headers)
{
	static const char add[] = "X-Spam-Status\0No, score=1.0\n\ttests=NONE";
	static const uint8_t chg[] = { 0, 0, 0, 2, 'S', 'u', 'b', 'j', 'e', 'c', 't', 0, 'h', 'i', 0 };
	struct milter_reply r;

	cr_assert_eq(parse(&r, SMFIR_ADDHEADER, add, sizeof(add)), MILTER_OK);
	cr_assert_eq(r.act, MILTER_A_ADDHEADER);
	cr_assert(span_is(r.name, "X-Spam-Status"));
	cr_assert(span_is(r.value, "No, score=1.0\n\ttests=NONE"));
	cr_assert_eq(parse(&r, SMFIR_CHGHEADER, chg, sizeof(chg)), MILTER_OK);
	cr_assert_eq(r.act, MILTER_A_CHGHEADER);
	cr_assert_eq(r.index, 2);
	cr_assert(span_is(r.name, "Subject"));
	cr_assert(span_is(r.value, "hi"));
	cr_assert_eq(parse(&r, SMFIR_INSHEADER, chg, sizeof(chg)), MILTER_OK);
	cr_assert_eq(r.act, MILTER_A_INSHEADER);
	cr_assert_eq(parse(&r, SMFIR_INSHEADER, chg, 3), MILTER_SYNTAX);       /* short index */
	cr_assert_eq(parse(&r, SMFIR_ADDHEADER, "X\0v", 3), MILTER_SYNTAX);    /* value without NUL */
	cr_assert_eq(parse(&r, SMFIR_ADDHEADER, "\0v", 3), MILTER_SYNTAX);     /* empty name */
	cr_assert_eq(parse(&r, SMFIR_ADDHEADER, "A:B\0v", 6), MILTER_SYNTAX);  /* colon in the name */
	cr_assert_eq(parse(&r, SMFIR_ADDHEADER, "A B\0v", 6), MILTER_SYNTAX);  /* space in the name */
	cr_assert_eq(parse(&r, SMFIR_QUARANTINE, "held\0", 5), MILTER_OK);
	cr_assert_eq(r.act, MILTER_A_QUARANTINE);
	cr_assert(span_is(r.text, "held"));
	cr_assert_eq(parse(&r, SMFIR_QUARANTINE, "held", 4), MILTER_SYNTAX);
}

Test(milter, framing_every_split)
{
	uint8_t buf[256];
	size_t n = pkt(buf, SMFIR_ADDHEADER, "A\0b", 4);

	n += pkt(buf + n, SMFIR_CONTINUE, "", 0);
	for (size_t cut = 0; cut <= n; cut++) {
		const uint8_t *g = guard_copy(buf, cut);
		struct milter_pkt p;
		size_t used, off = 0;
		unsigned got = 0;

		while (milter_pkt_next(&p, &used, span_make(g + off, cut - off)) == MILTER_OK) {
			cr_assert(used > 0 && used <= cut - off);
			off += used;
			got++;
		}
		cr_assert_eq(got, cut >= n ? 2u : cut >= 9 ? 1u : 0u, "cut %zu", cut);
		guard_release(g, cut);
	}
}

Test(milter, hostile_lengths)
{
	static const uint8_t zero[5] = { 0, 0, 0, 0, 'c' };
	static const uint8_t huge[5] = { 0xff, 0xff, 0xff, 0xff, 'c' };
	static const uint8_t max1[5] = { 0, 0x10, 0, 1, 'c' };
	struct milter_pkt p;
	size_t used;

	cr_assert_eq(milter_pkt_next(&p, &used, span_make(zero, 5)), MILTER_SYNTAX);
	cr_assert_eq(milter_pkt_next(&p, &used, span_make(huge, 5)), MILTER_TOO_LONG);
	cr_assert_eq(milter_pkt_next(&p, &used, span_make(max1, 5)), MILTER_TOO_LONG);
	cr_assert_eq(milter_pkt_next(&p, &used, span_make(huge, 3)), MILTER_MORE);
}

Test(milter, writers)
{
	struct bb b;
	static const uint8_t optneg[] = { 0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0, 0x31, 0, 0, 0, 0x7f };
	static const uint8_t conn[] = { 0, 0, 0, 0x13, 'C', 'h', 'o', 's', 't', 0, '4', 0x30, 0x39,
					'1', '2', '7', '.', '0', '.', '0', '.', '1', 0 };
	static const uint8_t macro[] = { 0, 0, 0, 10, 'D', 'C', 'j', 0, 'm', 'x', 0, '_', 0, 0 };
	struct span strs[2] = { span_cstr("<a@b>"), span_cstr("SIZE=10") };

	bb_init(&b, 0);
	cr_assert_eq(milter_put_optneg(&b, 6, 0x31, 0x7f), 0);
	cr_assert_eq(b.len, sizeof(optneg));
	cr_assert_eq(memcmp(b.p, optneg, b.len), 0);
	bb_reset(&b, 0);
	cr_assert_eq(milter_put_connect(&b, "host", '4', 12345, "127.0.0.1"), 0);
	cr_assert_eq(b.len, sizeof(conn));
	cr_assert_eq(memcmp(b.p, conn, b.len), 0);
	bb_reset(&b, 0);
	cr_assert_eq(milter_put_macros(&b, 'C', (const char *const[]){ "j", "mx", "_", NULL }, 2), 0);
	cr_assert_eq(b.len, sizeof(macro));
	cr_assert_eq(memcmp(b.p, macro, b.len), 0);
	bb_reset(&b, 0);
	cr_assert_eq(milter_put_strs(&b, SMFIC_MAIL, strs, 2), 0);
	cr_assert_eq(b.len, 5 + 6 + 8);
	cr_assert_eq(memcmp(b.p + 5, "<a@b>\0SIZE=10\0", 14), 0);
	bb_reset(&b, 0);
	cr_assert_eq(milter_put_cmd(&b, SMFIC_EOH), 0);
	cr_assert_eq(b.len, 5);
	cr_assert_eq(b.p[3], 1);
	cr_assert_eq(b.p[4], 'N');
	bb_fini(&b);
}

Test(milter, body_chunk_bound)
{
	static uint8_t big[MILTER_CHUNK_MAX + 1];
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(milter_put_body(&b, span_make(big, sizeof(big))), -E2BIG);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(milter_put_body(&b, span_make(big, MILTER_CHUNK_MAX)), 0);
	cr_assert_eq(b.len, 5 + MILTER_CHUNK_MAX);
	bb_fini(&b);
}

Test(milter, field_write_folds_safely)
{
	static const struct {
		const char *value, *want;
	} t[] = {
		{ "plain", "X: plain\r\n" },
		{ "a\n\tb", "X: a\r\n\tb\r\n" },
		{ "a\r\n b", "X: a\r\n b\r\n" },
		{ "a\nInjected: yes", "X: a\r\n\tInjected: yes\r\n" },
		{ "a\rb", "X: a\r\n\tb\r\n" },
		{ "a\x01z\n\n", "X: a?z\r\n" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bb b;

		bb_init(&b, 0);
		cr_assert_eq(milter_field_write(&b, span_cstr("X"), span_cstr(t[i].value)), 0);
		cr_assert_eq(b.len, strlen(t[i].want), "case %zu", i);
		cr_assert_eq(memcmp(b.p, t[i].want, b.len), 0, "case %zu: %.*s", i, (int)b.len, b.p);
		bb_fini(&b);
	}
}
