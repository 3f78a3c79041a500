/*
 * test_mime.c - the MIME event parser: event sequences, robustness bounds
 * (depth, parts, header sizes) as defects, and split-everywhere (whole,
 * byte by byte, every two-way split) on a message that exercises headers,
 * nesting, encodings and delimiters.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bb.h"
#include "proto/mime.h"
#include "tests/support/guard.h"

/* trace renders the events as text; consecutive data events of a part are merged. */
static char *trace(const char *msg, size_t len, size_t split_a, size_t split_b)
{
	static struct mime p;
	struct mime_event ev;
	struct bb b;
	size_t cuts[4] = { 0, split_a, split_b, len };
	int last = -1;
	uint32_t last_part = UINT32_MAX;

	bb_init(&b, 0);
	mime_init(&p);
	for (int i = 0; i < 3; i++) {
		size_t from = cuts[i], to = cuts[i + 1];
		const uint8_t *g = guard_copy(msg + from, to - from);

		mime_push(&p, span_make(g, to - from));
		for (;;) {
			enum mime_ev_type t = mime_next(&p, &ev);

			if (t == MIME_EV_MORE) {
				break;
			}
			uint32_t part = ev.part ? ev.part->index : ev.part_index;

			if ((t == MIME_EV_BODY || t == MIME_EV_PREAMBLE || t == MIME_EV_EPILOGUE) && last == (int)t &&
			    last_part == part) {
				cr_assert_eq(bb_append_span(&b, ev.data), 0);
				continue;
			}
			cr_assert_eq(bb_printf(&b, "\n%s %u", mime_ev_name(t), part), 0);
			if (t == MIME_EV_HEADER) {
				cr_assert_eq(bb_printf(&b, " [%.*s]=[%.*s]", (int)ev.name.len, ev.name.p, (int)ev.value.len,
						       ev.value.p), 0);
			} else if (t == MIME_EV_HEADERS_END) {
				cr_assert_eq(bb_printf(&b, " %s/%s %s kind=%d", ev.part->type, ev.part->subtype,
						       mime_cte_name(ev.part->cte), ev.part->kind), 0);
			} else if (t == MIME_EV_DEFECT) {
				cr_assert_eq(bb_printf(&b, " %s", mime_defect_name(ev.defect)), 0);
			} else if (t == MIME_EV_BODY || t == MIME_EV_PREAMBLE || t == MIME_EV_EPILOGUE) {
				cr_assert_eq(bb_append(&b, " ", 1), 0);
				cr_assert_eq(bb_append_span(&b, ev.data), 0);
			}
			last = (int)t;
			last_part = part;
		}
		guard_release(g, to - from);
	}
	mime_finish(&p);
	while (mime_next(&p, &ev) != MIME_EV_END) {
		uint32_t part = ev.part ? ev.part->index : ev.part_index;

		if ((ev.type == MIME_EV_BODY || ev.type == MIME_EV_PREAMBLE || ev.type == MIME_EV_EPILOGUE) &&
		    last == (int)ev.type && last_part == part) {
			cr_assert_eq(bb_append_span(&b, ev.data), 0);
			continue;
		}
		cr_assert_eq(bb_printf(&b, "\n%s %u", mime_ev_name(ev.type), part), 0);
		if (ev.type == MIME_EV_DEFECT) {
			cr_assert_eq(bb_printf(&b, " %s", mime_defect_name(ev.defect)), 0);
		} else if (ev.type == MIME_EV_BODY || ev.type == MIME_EV_PREAMBLE || ev.type == MIME_EV_EPILOGUE) {
			cr_assert_eq(bb_append(&b, " ", 1), 0);
			cr_assert_eq(bb_append_span(&b, ev.data), 0);
		}
		last = (int)ev.type;
		last_part = part;
	}
	cr_assert_eq(bb_append(&b, "\nend", 5), 0);
	return (char *)b.p;
}

static const char SAMPLE[] =
	"From: a@x.test\r\n"
	"Subject: =?utf-8?q?h=C3=A9llo?=\r\n"
	"\t world\r\n"
	"X-Dup: 1\r\n"
	"X-Dup: 2\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"caf=E9 soft=\r\n"
	"break =3d=3D\r\n"
	"--b1\r\n"
	"Content-Type: multipart/alternative; boundary=b2\r\n"
	"\r\n"
	"--b2\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n"
	"--b2--\r\n"
	"--b1\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: inner\r\n"
	"\r\n"
	"-- not a delimiter\r\n"
	"--b1x\r\n"
	"--b1--  \r\n"
	"epilogue\r\n";

Test(mime, event_sequence)
{
	char *t = trace(SAMPLE, sizeof(SAMPLE) - 1, 0, 0);

	cr_assert_str_eq(t,
		"\npart_begin 0"
		"\nheader 0 [From]=[a@x.test]"
		"\nheader 0 [Subject]=[=?utf-8?q?h=C3=A9llo?=\t world]"
		"\nheader 0 [X-Dup]=[1]"
		"\nheader 0 [X-Dup]=[2]"
		"\nheader 0 [Content-Type]=[multipart/mixed; boundary=\"b1\"]"
		"\nheaders_end 0 multipart/mixed 7bit kind=1"
		"\npreamble 0 preamble"
		"\npart_begin 1"
		"\nheader 1 [Content-Type]=[text/plain; charset=iso-8859-1]"
		"\nheader 1 [Content-Transfer-Encoding]=[quoted-printable]"
		"\nheaders_end 1 text/plain quoted-printable kind=0"
		"\nbody 1 caf\xe9 softbreak =="
		"\npart_end 1"
		"\npart_begin 2"
		"\nheader 2 [Content-Type]=[multipart/alternative; boundary=b2]"
		"\nheaders_end 2 multipart/alternative 7bit kind=1"
		"\npart_begin 3"
		"\nheader 3 [Content-Transfer-Encoding]=[base64]"
		"\nheaders_end 3 text/plain base64 kind=0"
		"\nbody 3 hello world"
		"\npart_end 3"
		"\npart_end 2"
		"\npart_begin 4"
		"\nheader 4 [Content-Type]=[message/rfc822]"
		"\nheaders_end 4 message/rfc822 7bit kind=2"
		"\npart_begin 5"
		"\nheader 5 [Subject]=[inner]"
		"\nheaders_end 5 text/plain 7bit kind=0"
		"\nbody 5 -- not a delimiter\r\n--b1x"
		"\npart_end 5"
		"\npart_end 4"
		"\nepilogue 0 epilogue\r\n"
		"\npart_end 0"
		"\nend");
	free(t);
}

Test(mime, same_events_at_every_split)
{
	size_t len = sizeof(SAMPLE) - 1;
	char *whole = trace(SAMPLE, len, 0, 0);

	for (size_t a = 0; a <= len; a++) {
		char *t = trace(SAMPLE, len, a, a);

		cr_assert_str_eq(t, whole, "split at %zu", a);
		free(t);
	}
	/* byte by byte, via all three-way splits on a stride */
	for (size_t a = 0; a <= len; a += 7) {
		for (size_t b = a; b <= len; b += 13) {
			char *t = trace(SAMPLE, len, a, b);

			cr_assert_str_eq(t, whole, "split at %zu,%zu", a, b);
			free(t);
		}
	}
	free(whole);
}

static bool has_defect(const char *t, const char *name)
{
	char pat[128];

	snprintf(pat, sizeof(pat), " %s", name);
	return strstr(t, pat) != NULL;
}

Test(mime, depth_bomb_is_a_defect)
{
	struct bb b;

	bb_init(&b, 0);
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(bb_printf(&b, "Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n", i, i), 0);
	}
	cr_assert_eq(bb_append_str(&b, "\r\nleaf\r\n"), 0);
	char *t = trace((const char *)b.p, b.len, b.len / 3, b.len / 2);

	cr_assert(has_defect(t, "depth_exceeded"));
	cr_assert(has_defect(t, "multipart_no_close_delimiter"));
	free(t);
	bb_fini(&b);
}

Test(mime, part_bomb_is_a_defect)
{
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(bb_append_str(&b, "Content-Type: multipart/mixed; boundary=x\r\n\r\n"), 0);
	for (int i = 0; i < MIME_PARTS_MAX + 50; i++) {
		cr_assert_eq(bb_append_str(&b, "--x\r\n\r\np\r\n"), 0);
	}
	cr_assert_eq(bb_append_str(&b, "--x--\r\n"), 0);
	char *t = trace((const char *)b.p, b.len, 0, 0);

	cr_assert(has_defect(t, "parts_exceeded"));
	cr_assert_null(strstr(t, "part_begin 1000"));
	cr_assert_not_null(strstr(t, "part_begin 999"));
	free(t);
	bb_fini(&b);
}

Test(mime, long_header_line_and_block_are_bounded)
{
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(bb_append_str(&b, "X-Long: "), 0);
	for (int i = 0; i < MIME_LINE_MAX + 100; i++) {
		cr_assert_eq(bb_append(&b, "a", 1), 0);
	}
	cr_assert_eq(bb_append_str(&b, "\r\nX-Fold: a\r\n"), 0);
	for (int i = 0; i < 5000; i++) {
		cr_assert_eq(bb_append_str(&b, " continuation line here\r\n"), 0);
	}
	for (int i = 0; i < 20000; i++) {
		cr_assert_eq(bb_printf(&b, "X-Many-%d: some value to fill the header block\r\n", i), 0);
	}
	cr_assert_eq(bb_append_str(&b, "\r\nbody\r\n"), 0);
	char *t = trace((const char *)b.p, b.len, 100, b.len - 3);

	cr_assert(has_defect(t, "header_line_too_long"));
	cr_assert(has_defect(t, "header_field_too_long"));
	cr_assert(has_defect(t, "header_block_too_large"));
	cr_assert_not_null(strstr(t, "body 0 body\r\n"));
	free(t);
	bb_fini(&b);
}

Test(mime, malformed_structure_defects)
{
	static const char *const cases[][2] = {
		{ "Content-Type: multipart/mixed\r\n\r\nx\r\n", "multipart_no_boundary" },
		{ "Content-Type: multipart/mixed; boundary=q\r\n\r\nno delimiter\r\n", "multipart_no_start_delimiter" },
		{ "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nx\r\n", "multipart_no_close_delimiter" },
		{ "Content-Type: text\r\n\r\nx", "content_type_invalid" },
		{ "Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nx", "content_type_duplicate" },
		{ "Content-Transfer-Encoding: x-foo\r\n\r\nx", "transfer_encoding_unknown" },
		{ "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8*!\r\n", "base64_invalid" },
		{ "Content-Transfer-Encoding: quoted-printable\r\n\r\na=zz\r\n", "quoted_printable_invalid" },
		{ "not a header\r\nbody\r\n", "header_no_colon" },
		{ " folded first\r\nA: b\r\n\r\n", "header_continuation_first" },
		{ "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nQTogYiAgIA==\r\n",
		  "encoded_composite" },
		{ "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nA: b\r\n\r\nc\r\n",
		  "transfer_encoding_on_composite" },
		{ "Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
		  "transfer_encoding_on_composite" },
		{ "Content-Transfer-Encoding: x-uuencode\r\n\r\nno begin line\r\n", "uuencode_no_begin" },
		{ "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n#86)C\r\n", "uuencode_no_end" },
		{ "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n#86)C\r\njunk line\r\nend\r\n",
		  "uuencode_invalid" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = trace(cases[i][0], strlen(cases[i][0]), 0, 0);

		cr_expect(has_defect(t, cases[i][1]), "case %zu: no %s in %s", i, cases[i][1], t);
		cr_assert_not_null(strstr(t, "\nend"));
		free(t);
	}
}

Test(mime, bom_mbox_line_and_obsolete_colon)
{
	static const char msg[] = "\xef\xbb\xbf" "From someone Sat Jan  1 00:00:00 2000\r\nSubject : x\r\n\r\nb";
	char *t = trace(msg, sizeof(msg) - 1, 2, 5);

	cr_assert_not_null(strstr(t, "header 0 [Subject]=[x]"), "%s", t);
	cr_assert_null(strstr(t, "defect"), "%s", t);
	free(t);
}

Test(mime, lf_only_and_digest_default)
{
	static const char msg[] = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: in\n\nbody\n--d--\n";
	char *t = trace(msg, sizeof(msg) - 1, 0, 0);

	cr_assert_not_null(strstr(t, "headers_end 1 message/rfc822 7bit kind=2"), "%s", t);
	cr_assert_not_null(strstr(t, "body 2 body\npart_end 2"), "%s", t);
	free(t);
}
