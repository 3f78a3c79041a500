/*
 * test_mime_split.c - regressions for split independence found by
 * fuzz_mime: the JSON document (and the event stream) must not depend on
 * where the input is cut, and no cut may stall the parser.
 *
 * A body line that starts with '-' and is cut between two pushes is kept
 * in carry[] until its end arrives (it may be a delimiter). When the
 * carried line decodes to no bytes (base64 junk such as "- b", or a part
 * skipped past MIME_PARTS_MAX), the parser gave no event for it and the
 * loop in mime_next handed the same carried line out again: decoded twice
 * (37 vs 39 bytes) or, for a line of pure junk, for ever.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bb.h"
#include "proto/message.h"
#include "proto/mime.h"
#include "proto/msgdoc.h"
#include "tests/proto/mime_doc.h"
#include "tests/support/guard.h"

/* tests/fuzz/corpus/fuzz_mime/split-b64-dash-line.eml */
static const char FUZZ_SPLIT_B64[] =
	"From: a@x\r\n"
	"Content-Type: multipart/mixed; boundary=b\r\n"
	"\r\n"
	"pre\r\n"
	"--b\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\rquoiso-885zzted-Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: \n"
	"- b\n"
	"\n"
	"c\n"
	"--x\n"
	"--x\xff\x05#-\n"
	"\n"
	"--b--\r\n"
	"epi\r\n";

/* A base64 line of junk only ("-"): cut after the '-', it stalled the parser. */
static const char JUNK_LINE_B64[] =
	"Content-Type: multipart/mixed; boundary=b\r\n"
	"\r\n"
	"--b\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"QUJD\r\n"
	"-\r\n"
	"-\n"
	"--\r\n"
	"REVG\r\n"
	"--b--\r\n";

/* doc_split: the JSON document of msg fed in two pushes cut at k (k == len: whole). */
static char *doc_split(const char *msg, size_t len, size_t k)
{
	struct message *m = message_new(NULL);
	size_t cuts[3] = { 0, k, len };

	cr_assert_not_null(m);
	for (int i = 0; i < 2; i++) {
		size_t n = cuts[i + 1] - cuts[i];

		if (n > 0) {
			const uint8_t *g = guard_copy(msg + cuts[i], n);

			cr_assert_eq(message_feed(m, g, n), 0);
			guard_release(g, n);
		}
	}
	return doc_end(m);
}

/* body_split: the decoded body bytes of every leaf, fed in two pushes cut at k. */
static char *body_split(const char *msg, size_t len, size_t k, size_t *out_len)
{
	static struct mime p;
	struct mime_event ev;
	struct bb b;
	size_t cuts[3] = { 0, k, len };

	bb_init(&b, 0);
	mime_init(&p);
	for (int i = 0; i < 2; i++) {
		size_t n = cuts[i + 1] - cuts[i];
		const uint8_t *g = guard_copy(msg + cuts[i], n);

		mime_push(&p, span_make(g, n));
		while (mime_next(&p, &ev) != MIME_EV_MORE) {
			if (ev.type == MIME_EV_BODY) {
				cr_assert_eq(bb_append_span(&b, ev.data), 0);
			}
		}
		guard_release(g, n);
	}
	mime_finish(&p);
	while (mime_next(&p, &ev) != MIME_EV_END) {
		if (ev.type == MIME_EV_BODY) {
			cr_assert_eq(bb_append_span(&b, ev.data), 0);
		}
	}
	*out_len = b.len;
	return (char *)b.p;
}

static void every_two_way_split(const char *msg, size_t len)
{
	char *whole = doc_split(msg, len, len);

	for (size_t k = 0; k < len; k++) {
		char *t = doc_split(msg, len, k);

		cr_assert_str_eq(t, whole, "document differs at split %zu (byte %02x)", k, (unsigned char)msg[k]);
		free(t);
	}
	free(whole);
}

Test(mime_split, fuzz_b64_dash_lines_every_two_way_split, .timeout = 20)
{
	alarm(20); /* a stall kills the test even where .timeout is not enforced */
	size_t len = sizeof(FUZZ_SPLIT_B64) - 1;
	size_t n;
	char *body = body_split(FUZZ_SPLIT_B64, len, len, &n);

	/* Fed whole: 37 bytes, as Python's email decodes it (same SHA-256). */
	cr_assert_eq(n, 37);
	free(body);
	every_two_way_split(FUZZ_SPLIT_B64, len);
	/* the lines that were decoded twice: cut inside "- b" and "--x..." */
	for (size_t k = 161; k <= 178; k++) {
		body = body_split(FUZZ_SPLIT_B64, len, k, &n);
		cr_assert_eq(n, 37, "split at %zu: %zu decoded bytes", k, n);
		free(body);
	}
}

Test(mime_split, junk_line_in_base64_does_not_stall, .timeout = 20)
{
	alarm(20);
	size_t len = sizeof(JUNK_LINE_B64) - 1;
	size_t n;
	char *body = body_split(JUNK_LINE_B64, len, len, &n);

	cr_assert_eq(n, 6);
	cr_assert(memcmp(body, "ABCDEF", 6) == 0);
	free(body);
	for (size_t k = 0; k <= len; k++) {
		body = body_split(JUNK_LINE_B64, len, k, &n);
		cr_assert_eq(n, 6, "split at %zu", k);
		cr_assert(memcmp(body, "ABCDEF", 6) == 0, "split at %zu", k);
		free(body);
	}
	every_two_way_split(JUNK_LINE_B64, len);
}

/* Parts past MIME_PARTS_MAX are skipped: their '-' lines give no event either. */
Test(mime_split, dash_line_in_skipped_part_does_not_stall, .timeout = 60)
{
	alarm(60);
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(bb_printf(&b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n"), 0);
	for (int i = 0; i < MIME_PARTS_MAX + 2; i++) {
		cr_assert_eq(bb_printf(&b, "--b\r\n\r\nx\r\n"), 0);
	}
	size_t mark = b.len;

	cr_assert_eq(bb_printf(&b, "-- dash\r\n--b--\r\n"), 0);
	char *whole = doc_split((const char *)b.p, b.len, b.len);

	for (size_t k = mark; k < b.len; k++) {
		char *t = doc_split((const char *)b.p, b.len, k);

		cr_assert_str_eq(t, whole, "split at %zu", k);
		free(t);
	}
	free(whole);
	bb_fini(&b);
}

/*
 * A header line longer than MIME_LINE_MAX was cut (with a defect) only
 * when it came in pieces; whole, it was taken in full. Now it is cut in
 * both cases, and a cut line that is not a field starts the body with all
 * of it. A delimiter line padded past the lookahead is consumed whole.
 */
static void strided_splits(const char *msg, size_t len, size_t stride)
{
	char *whole = doc_split(msg, len, len);

	for (size_t k = 0; k < len; k += stride) {
		char *t = doc_split(msg, len, k);

		cr_assert_str_eq(t, whole, "document differs at split %zu of %zu", k, len);
		free(t);
	}
	/* around the cut */
	for (size_t k = MIME_LINE_MAX - 8; k < MIME_LINE_MAX + 40 && k < len; k++) {
		char *t = doc_split(msg, len, k);

		cr_assert_str_eq(t, whole, "document differs at split %zu of %zu", k, len);
		free(t);
	}
	free(whole);
}

Test(mime_split, long_header_lines_same_at_any_split, .timeout = 120)
{
	static const char *const eols[] = { "\r\n", "\n", "" };
	struct bb b;

	alarm(120);
	bb_init(&b, 0);
	for (int d = -1; d <= 1; d++) {
		for (size_t e = 0; e < 3; e++) {
			size_t el = strlen(eols[e]);
			const char *tail = el ? "Subject: s\r\n\r\nbody\r\n" : "";

			/* a field */
			bb_reset(&b, 0);
			cr_assert_eq(bb_printf(&b, "From: a@x\r\nX-Long: "), 0);
			for (size_t i = 0; i < (size_t)((int)(MIME_LINE_MAX - 8 - el) + d); i++) {
				cr_assert_eq(bb_append(&b, "a", 1), 0);
			}
			cr_assert_eq(bb_printf(&b, "%s%s", eols[e], tail), 0);
			strided_splits((const char *)b.p, b.len, 61);
			/* the same after a UTF-8 BOM */
			bb_reset(&b, 0);
			cr_assert_eq(bb_printf(&b, "\xef\xbb\xbfX-Long: "), 0);
			for (size_t i = 0; i < (size_t)((int)(MIME_LINE_MAX - 8 - el) + d); i++) {
				cr_assert_eq(bb_append(&b, "a", 1), 0);
			}
			cr_assert_eq(bb_printf(&b, "%s%s", eols[e], tail), 0);
			strided_splits((const char *)b.p, b.len, 61);
			/* not a field: the body starts with it */
			bb_reset(&b, 0);
			cr_assert_eq(bb_printf(&b, "From: a@x\r\n"), 0);
			for (size_t i = 0; i < (size_t)((int)(MIME_LINE_MAX - el) + d); i++) {
				cr_assert_eq(bb_append(&b, "b", 1), 0);
			}
			cr_assert_eq(bb_printf(&b, "%s--more\r\nbody\r\n", eols[e]), 0);
			strided_splits((const char *)b.p, b.len, 61);
		}
	}
	/* delimiters padded past the lookahead, in a body and in a header block */
	for (size_t pad = MIME_LOOKAHEAD - 4; pad < MIME_LINE_MAX + 8; pad += MIME_LINE_MAX / 2) {
		for (int where = 0; where < 2; where++) {
			bb_reset(&b, 0);
			cr_assert_eq(bb_printf(&b, "Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n"), 0);
			if (where == 0) {
				cr_assert_eq(bb_printf(&b, "\r\nx\r\n--b"), 0);
			} else {
				cr_assert_eq(bb_printf(&b, "Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nX: 1\r\n--b"), 0);
			}
			for (size_t i = 0; i < pad; i++) {
				cr_assert_eq(bb_append(&b, " ", 1), 0);
			}
			cr_assert_eq(bb_printf(&b, "\r\nA: b\r\n\r\ny\r\n--b--"), 0);
			for (size_t i = 0; i < pad; i++) {
				cr_assert_eq(bb_append(&b, " ", 1), 0);
			}
			cr_assert_eq(bb_printf(&b, "\r\nepi\r\n"), 0);
			strided_splits((const char *)b.p, b.len, 61);
		}
	}
	bb_fini(&b);
}

Test(mime_split, long_header_line_is_cut_when_whole)
{
	struct bb b;
	char *t;

	bb_init(&b, 0);
	cr_assert_eq(bb_printf(&b, "From: a@x\r\nX-Long: "), 0);
	for (int i = 0; i < 20000; i++) {
		cr_assert_eq(bb_append(&b, "a", 1), 0);
	}
	cr_assert_eq(bb_printf(&b, "\r\nSubject: s\r\n\r\nbody\r\n"), 0);
	t = doc_split((const char *)b.p, b.len, b.len);
	cr_assert(strstr(t, "\"header_line_too_long\"") != NULL, "%.300s", t);
	cr_assert(strstr(t, "\"subject\":\"s\"") != NULL);
	free(t);
	bb_fini(&b);
}
