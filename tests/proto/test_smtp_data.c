/* test_smtp_data.c - DATA unstuffer and BDAT counter (proto/smtp_data.c). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_cmd.h" /* SMTP_LINE_RUNAWAY_MAX */
#include "proto/smtp_data.h"
#include "tests/support/guard.h"

struct dres {
	struct bb body;
	enum smtp_data_err err;
	bool ended;
	size_t consumed; /* total octets consumed when END was returned */
	int errors;      /* SMTP_DATA_ERROR results */
};

/* run feeds in[0..len) cut every `step` octets (0 = whole). */
static void run(struct dres *r, enum smtp_bare_policy pol, size_t max_line, uint64_t max_size, const char *in,
		size_t len, size_t cut)
{
	struct smtp_data d;
	size_t pos = 0;

	memset(r, 0, sizeof(*r));
	bb_init(&r->body, 0);
	smtp_data_init(&d, pol, max_line, max_size);
	while (!r->ended) {
		size_t seg = (cut == 0 || len - pos < cut) ? len - pos : cut;
		const uint8_t *g = guard_copy(in + pos, seg);
		struct span s = span_make(g, seg), body;

		for (;;) {
			enum smtp_data_rc rc = smtp_data_next(&d, &s, &body);

			if (rc == SMTP_DATA_MORE) {
				cr_assert_eq(s.len, 0);
				break;
			}
			if (rc == SMTP_DATA_BODY) {
				/* zero copy: inside the segment or static */
				bool inside = body.p >= g && body.p + body.len <= g + seg;

				cr_assert(body.len > 0);
				cr_assert(inside || body.len <= 3, "span outside input");
				cr_assert(bb_append_span(&r->body, body) == 0);
				continue;
			}
			if (rc == SMTP_DATA_ERROR) {
				r->errors++;
				continue;
			}
			cr_assert_eq(rc, SMTP_DATA_END);
			r->ended = true;
			r->consumed = pos + (seg - s.len);
			cr_assert_eq(smtp_data_next(&d, &s, &body), SMTP_DATA_END);
			break;
		}
		guard_release(g, seg);
		pos += seg;
		if (pos == len) {
			break;
		}
	}
	r->err = d.err;
	cr_assert_eq(r->errors, d.err != SMTP_DATA_ERR_NONE ? 1 : 0);
	if (d.err == SMTP_DATA_ERR_NONE) {
		cr_assert_eq(d.size, r->body.len);
	}
}

/* check runs every split and compares with the expectation. */
static void check_n(enum smtp_bare_policy pol, size_t max_line, uint64_t max_size, const char *in, size_t len,
		    const char *want_body, size_t want_body_len, enum smtp_data_err want_err, long want_consumed)
{
	for (size_t cut = 0; cut <= len; cut++) {
		struct dres r;

		run(&r, pol, max_line, max_size, in, len, cut);
		cr_assert_eq(r.err, want_err, "cut %zu: err %d want %d", cut, r.err, want_err);
		if (want_consumed < 0) {
			cr_assert_not(r.ended, "cut %zu: ended", cut);
		} else {
			cr_assert(r.ended, "cut %zu: not ended", cut);
			cr_assert_eq(r.consumed, (size_t)want_consumed, "cut %zu: consumed %zu", cut, r.consumed);
		}
		if (want_err == SMTP_DATA_ERR_NONE) {
			cr_assert_eq(r.body.len, want_body_len, "cut %zu: body len %zu want %zu", cut, r.body.len,
				     want_body_len);
			cr_assert(want_body_len == 0 || memcmp(r.body.p, want_body, want_body_len) == 0,
				  "cut %zu: body %.*s", cut, (int)r.body.len, (char *)r.body.p);
		} else {
			/* whatever came before the error is a prefix of the input's text */
			cr_assert(r.body.len <= len);
		}
		bb_fini(&r.body);
	}
}

#define CHECK(pol, in, body, err, consumed)                                                            \
	check_n((pol), 1000, 0, (in), sizeof(in) - 1, (body), sizeof(body) - 1, (err), (consumed))
#define R SMTP_BARE_REJECT
#define N SMTP_BARE_NORMALISE
#define OK SMTP_DATA_ERR_NONE

Test(smtp_data, plain_and_empty)
{
	CHECK(R, ".\r\n", "", OK, 3);
	CHECK(R, "\r\n.\r\n", "\r\n", OK, 5);
	CHECK(R, "a\r\n.\r\n", "a\r\n", OK, 6);
	CHECK(R, "a\r\nb\r\n\r\n.\r\nREST", "a\r\nb\r\n\r\n", OK, 11);
	CHECK(R, "a\r\n", "a\r\n", OK, -1);
}

Test(smtp_data, dot_unstuffing)
{
	CHECK(R, "..\r\n.\r\n", ".\r\n", OK, 7);
	CHECK(R, "..x\r\n.\r\n", ".x\r\n", OK, 8);
	CHECK(R, ".x\r\n.\r\n", "x\r\n", OK, 7);
	CHECK(R, "a\r\n...\r\nb.\r\n.\r\n", "a\r\n..\r\nb.\r\n", OK, 15);
	CHECK(R, "x.\r\n.y\r\n .\r\n.\r\n", "x.\r\ny\r\n .\r\n", OK, 15);
}

Test(smtp_data, only_crlf_dot_crlf_ends)
{
	CHECK(R, "a\r\n. \r\n.\r\n", "a\r\n \r\n", OK, 10);
	CHECK(R, "a\r\n.\r.\r\n", "", SMTP_DATA_ERR_BARE, -1);
	CHECK(N, "a\r\n.\r\r\n.\r\n", "a\r\n.\r\n\r\n", OK, 10);
	CHECK(N, "a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", OK, 10);
	CHECK(N, "a\n.\r\n.\r\n", "a\r\n.\r\n", OK, 8);
	CHECK(N, ".\n.\r\n.\r\n", ".\r\n.\r\n", OK, 8);
	CHECK(N, "a\r.\r\n.\r\n", "a\r\n.\r\n", OK, 8);
	CHECK(N, "a\r\n.\n\r\n.\r\n", "a\r\n.\r\n\r\n", OK, 10);
}

Test(smtp_data, bare_lf_cr_rejected_but_swallowed_to_real_end)
{
	CHECK(R, "a\nb\r\n.\r\nX", "", SMTP_DATA_ERR_BARE, 8);
	CHECK(R, "a\rb\r\n.\r\nX", "", SMTP_DATA_ERR_BARE, 8);
	CHECK(R, "\n.\n.\r\n\r\n.\r\n", "", SMTP_DATA_ERR_BARE, 11);
	CHECK(R, ".\n\r\n.\r\n", "", SMTP_DATA_ERR_BARE, 7);
	CHECK(R, "ab\r\r\n.\r\n", "", SMTP_DATA_ERR_BARE, 8);
}

Test(smtp_data, nul_is_data)
{
	CHECK(R, "a\0b\r\n\0.\r\n.\r\n", "a\0b\r\n\0.\r\n", OK, 12);
}

Test(smtp_data, text_line_limit)
{
	/* max_line 6 = 4 text octets + CRLF; a stuffing dot does not count */
	check_n(R, 6, 0, "abcd\r\n.abcd\r\n.\r\n", 16, "abcd\r\nabcd\r\n", 12, OK, 16);
	check_n(R, 6, 0, "abcde\r\n.\r\n", 10, "", 0, SMTP_DATA_ERR_LINE, 10);
	check_n(R, 6, 0, "abcd\r\nabcdefghij\nx\r\n.\r\n", 23, "", 0, SMTP_DATA_ERR_LINE, 23);
	/* the first error wins */
	check_n(R, 6, 0, "a\nabcdefgh\r\n.\r\n", 15, "", 0, SMTP_DATA_ERR_BARE, 15);
}

Test(smtp_data, size_limit)
{
	check_n(R, 0, 5, "abc\r\n.\r\n", 8, "abc\r\n", 5, OK, 8);
	check_n(R, 0, 5, "abcd\r\n.\r\n", 9, "", 0, SMTP_DATA_ERR_SIZE, 9);
	check_n(R, 0, 5, "ab\r\n\r\n.\r\n", 9, "", 0, SMTP_DATA_ERR_SIZE, 9);
	check_n(N, 0, 4, "ab\n\n.\r\n", 7, "", 0, SMTP_DATA_ERR_SIZE, -1);
}

Test(smtp_data, names)
{
	for (int i = 0; i < SMTP_DATA_ST_COUNT; i++) {
		cr_assert_str_neq(smtp_data_state_name((enum smtp_data_state)i), "?");
	}
	cr_assert_str_eq(smtp_data_state_name(SMTP_DATA_ST_COUNT), "?");
}

Test(smtp_data, large_body_is_few_spans)
{
	static char in[64 * 1024 + 8];
	struct smtp_data d;
	struct span s, body;
	int spans = 0;

	for (size_t i = 0; i < 64 * 1024; i += 64) {
		memset(in + i, 'x', 62);
		memcpy(in + i + 62, "\r\n", 2);
	}
	memcpy(in + 64 * 1024, ".\r\n", 3);
	s = span_make(in, 64 * 1024 + 3);
	smtp_data_init(&d, R, 1000, 0);
	for (;;) {
		enum smtp_data_rc rc = smtp_data_next(&d, &s, &body);

		if (rc != SMTP_DATA_BODY) {
			cr_assert_eq(rc, SMTP_DATA_END);
			break;
		}
		spans++;
	}
	cr_assert_eq(spans, 1, "%d spans", spans);
	cr_assert_eq(d.size, 64 * 1024);
}

Test(smtp_data, bdat_counter)
{
	static const char in[] = "0123456789NEXT";
	struct smtp_bdat b;
	struct span s, body;
	struct bb acc;

	bb_init(&acc, 0);
	for (size_t step = 1; step <= 14; step++) {
		size_t pos = 0;

		smtp_bdat_init(&b, 10, false);
		bb_reset(&acc, 0);
		for (;;) {
			size_t n = 14 - pos < step ? 14 - pos : step;
			struct span seg = span_make(in + pos, n);
			enum smtp_data_rc rc;

			while ((rc = smtp_bdat_next(&b, &seg, &body)) == SMTP_DATA_BODY) {
				cr_assert(bb_append_span(&acc, body) == 0);
			}
			pos += n - seg.len;
			if (rc == SMTP_DATA_END) {
				break;
			}
			cr_assert_eq(seg.len, 0);
		}
		cr_assert_eq(acc.len, 10);
		cr_assert_eq(memcmp(acc.p, in, 10), 0);
		cr_assert_eq(pos, 10, "step %zu pos %zu", step, pos);
	}
	smtp_bdat_init(&b, 0, false);
	s = span_make(in, 14);
	cr_assert_eq(smtp_bdat_next(&b, &s, &body), SMTP_DATA_END);
	cr_assert_eq(s.len, 14);
	smtp_bdat_init(&b, 3, true);
	cr_assert_eq(smtp_bdat_next(&b, &s, &body), SMTP_DATA_END);
	cr_assert_eq(s.len, 11);
	bb_fini(&acc);
}

/* feed_counts feeds `len` x's then `tail` to a DATA unstuffer, cut every `cut` octets. */
static enum smtp_data_err feed_counts(int *out_errors, bool *out_ended, size_t max_line, size_t len, const char *tail,
				      size_t cut)
{
	size_t tlen = strlen(tail), total = len + tlen, pos = 0;
	char *in = malloc(total);
	struct smtp_data d;
	enum smtp_data_err err;

	cr_assert_not_null(in);
	memset(in, 'x', len);
	memcpy(in + len, tail, tlen);
	*out_errors = 0;
	*out_ended = false;
	smtp_data_init(&d, SMTP_BARE_REJECT, max_line, 0);
	while (pos < total && !*out_ended) {
		size_t n = total - pos < cut ? total - pos : cut;
		struct span s = span_make((const uint8_t *)in + pos, n), body;
		enum smtp_data_rc rc;

		while ((rc = smtp_data_next(&d, &s, &body)) != SMTP_DATA_MORE) {
			if (rc == SMTP_DATA_ERROR) {
				(*out_errors)++;
			} else if (rc == SMTP_DATA_END) {
				*out_ended = true;
				break;
			}
		}
		pos += n;
	}
	err = d.err;
	free(in);
	return err;
}

Test(smtp_data, runaway_line_ends_the_reading)
{
	static const size_t cuts[] = { 1000, 4096, 65536, 200000 };

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		int errors;
		bool ended;

		/* refused at the limit, then given up on SMTP_LINE_RUNAWAY_MAX later */
		cr_assert_eq(feed_counts(&errors, &ended, 1000, 998 + SMTP_LINE_RUNAWAY_MAX + 2000, "\r\n.\r\n", cuts[i]),
			     SMTP_DATA_ERR_RUNAWAY, "cut %zu", cuts[i]);
		cr_assert_eq(errors, 2, "cut %zu: %d errors", cuts[i], errors);
		/* an overlong line that ends in time is only refused */
		cr_assert_eq(feed_counts(&errors, &ended, 1000, 998 + SMTP_LINE_RUNAWAY_MAX - 2000, "\r\n.\r\n", cuts[i]),
			     SMTP_DATA_ERR_LINE, "cut %zu", cuts[i]);
		cr_assert_eq(errors, 1, "cut %zu", cuts[i]);
		cr_assert(ended, "cut %zu", cuts[i]);
	}
}
