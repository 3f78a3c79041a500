/*
 * test_mime_enc.c - the two decoding layers added to the MIME parser:
 * x-uuencode bodies (mime_uu_*, the UU_BEGIN event, the file name and
 * attachment it gives) and encoded composites (a multipart or
 * message/rfc822 whose body is base64 or quoted-printable is decoded and
 * parsed; a header the body contradicts is ignored). Every message here is
 * also fed at every two-way split and byte by byte: the JSON document must
 * not change.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bb.h"
#include "proto/message.h"
#include "proto/mime.h"
#include "proto/mime_dec.h"
#include "proto/msgdoc.h"
#include "tests/proto/mime_doc.h"
#include "tests/support/guard.h"

/* doc_cuts: the JSON document of msg fed in pieces of `step` bytes (0: whole), each at a guard page. */
static char *doc_cuts(const char *msg, size_t len, size_t first, size_t step)
{
	struct message *m = message_new(NULL);
	size_t off = 0;

	cr_assert_not_null(m);
	while (off < len) {
		size_t n = off == 0 && first > 0 ? first : step > 0 ? step : len - off;

		n = n > len - off ? len - off : n;
		const uint8_t *g = guard_copy(msg + off, n);

		cr_assert_eq(message_feed(m, g, n), 0);
		guard_release(g, n);
		off += n;
	}
	return doc_end(m);
}

/* same_doc_everywhere: whole == every two-way split == byte by byte; returns the document. */
static char *same_doc_everywhere(const char *msg)
{
	size_t len = strlen(msg);
	char *whole = doc_cuts(msg, len, 0, 0);
	char *t;

	for (size_t k = 1; k < len; k++) {
		t = doc_cuts(msg, len, k, 0);
		cr_assert_str_eq(t, whole, "document differs when cut at %zu (byte %02x)", k, (unsigned char)msg[k]);
		free(t);
	}
	t = doc_cuts(msg, len, 0, 1);
	cr_assert_str_eq(t, whole, "document differs fed byte by byte");
	free(t);
	return whole;
}

static struct message *parse(const char *msg)
{
	struct message *m = message_parse(msg, strlen(msg), NULL);

	cr_assert_not_null(m);
	return m;
}

static bool has_defect(const struct message *m, const char *code)
{
	for (size_t i = 0; i < message_num_defects(m); i++) {
		if (strcmp(message_defect(m, i)->code, code) == 0) {
			return true;
		}
	}
	return false;
}

/* assert_span: s holds exactly the string want. */
static void assert_span(struct span s, const char *want)
{
	cr_assert(s.len == strlen(want) && (s.len == 0 || memcmp(s.p, want, s.len) == 0), "got [%.*s], want [%s]",
		  (int)s.len, s.p ? (const char *)s.p : "", want);
}

static void assert_content(const struct message_part *p, const void *want, size_t want_len)
{
	struct span c;

	cr_assert_not_null(p);
	cr_assert(message_part_content(p, &c), "part %s: content not kept", message_part_id(p));
	cr_assert_eq(c.len, want_len, "part %s: %zu bytes, want %zu", message_part_id(p), c.len, want_len);
	cr_assert(c.len == 0 || memcmp(c.p, want, want_len) == 0, "part %s: content differs", message_part_id(p));
}

/* ---- uudecode ---- */

/* uu_all decodes a whole body with the streaming decoder, cut at `cut`. */
static size_t uu_all(uint8_t *out, const char *body, size_t cut, struct mime_uu *st)
{
	size_t len = strlen(body), n;

	mime_uu_init(st);
	cut = cut > len ? len : cut;
	n = mime_uu_decode(st, out, span_make(body, cut));
	n += mime_uu_decode(st, out + n, span_make(body + cut, len - cut));
	return n + mime_uu_finish(st, out + n);
}

Test(mime_uu, decodes_standard_lines_at_any_cut)
{
	/* "Cat" and the 45-byte line of the alphabet, as uuencode(1) writes them. */
	static const char body[] = "begin 644 cat.txt\n"
				   "#0V%T\n"
				   "M86)C9&5F9VAI:FML;6YO<'%R<W1U=G=X>7I!0D-$149'2$E*2TQ-3D]045)3\n"
				   "`\n"
				   "end\n";
	static const char want[] = "CatabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS";
	uint8_t out[1024];
	struct mime_uu st;

	for (size_t k = 0; k <= sizeof(body) - 1; k++) {
		size_t n = uu_all(out, body, k, &st);

		cr_assert_eq(n, sizeof(want) - 1, "cut %zu: %zu bytes", k, n);
		cr_assert(memcmp(out, want, n) == 0, "cut %zu", k);
		cr_assert_eq(st.state, MIME_UU_ST_END);
		cr_assert_eq(st.num_bad, 0);
		cr_assert_eq(st.name_len, 7);
		cr_assert(memcmp(st.name, "cat.txt", 7) == 0);
	}
}

Test(mime_uu, tolerates_stripped_spaces_checksums_junk_and_no_end)
{
	uint8_t out[4096];
	struct mime_uu st;
	size_t n;

	/* Trailing spaces eaten in transit: the missing characters are zero bits (Python's a2b_uu). */
	n = uu_all(out, "begin 600 z\r\n#0V\r\nend\r\n", 99, &st);
	cr_assert_eq(n, 3);
	cr_assert(memcmp(out, "C`\0", 3) == 0);
	cr_assert_eq(st.num_bad, 0);
	/* "M" alone is 45 zero bytes: output may outgrow input (the caller bounds lines per call). */
	n = uu_all(out, "begin 600 z\nM\nM\n`\nend\n", 99, &st);
	cr_assert_eq(n, 90);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(out[i], 0);
	}
	/* A checksum character after the data is ignored. */
	n = uu_all(out, "begin 644 c\n#0V%TX\nend\n", 99, &st);
	cr_assert_eq(n, 3);
	cr_assert(memcmp(out, "Cat", 3) == 0);
	cr_assert_eq(st.num_bad, 0);
	/* Junk and empty lines are skipped and counted; a missing end is accepted. */
	n = uu_all(out, "junk before begin\nbegin 644 c\n#0V%T\n\nthanks, bob\n#0V%T\n", 99, &st);
	cr_assert_eq(n, 6);
	cr_assert(memcmp(out, "CatCat", 6) == 0);
	cr_assert_eq(st.num_bad, 2);
	cr_assert_eq(st.state, MIME_UU_ST_DATA);
	/* Without begin line (or with a mode that is not octal) nothing is decoded. */
	n = uu_all(out, "begin 6x4 c\n#0V%T\nend\n", 99, &st);
	cr_assert_eq(n, 0);
	cr_assert_eq(st.state, MIME_UU_ST_BEGIN);
	/* Lines after end are ignored, a second block too. */
	n = uu_all(out, "begin 644\n#0V%T\nend\nbegin 644 d\n#0V%T\nend\n", 99, &st);
	cr_assert_eq(n, 3);
	cr_assert_eq(st.name_len, 0);
	/* A last line without line feed still counts. */
	n = uu_all(out, "begin 644 c\n#0V%T", 99, &st);
	cr_assert_eq(n, 3);
}

static const char UU_MSG[] =
	"From: a@x\r\n"
	"Subject: uu\r\n"
	"Content-Type: multipart/mixed; boundary=b\r\n"
	"\r\n"
	"--b\r\n"
	"\r\n"
	"see the files\r\n"
	"--b\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Transfer-Encoding: x-uuencode\r\n"
	"\r\n"
	"begin 644 cat.txt\r\n"
	"#0V%T\r\n"
	"`\r\n"
	"end\r\n"
	"--b\r\n"
	"Content-Type: application/octet-stream; name=\"header.bin\"\r\n"
	"Content-Transfer-Encoding: uuencode\r\n"
	"\r\n"
	"begin 644 body.bin\r\n"
	"#0V%T\r\n"
	"thanks, bob\r\n"
	"--b\r\n"
	"Content-Transfer-Encoding: x-uue\r\n"
	"\r\n"
	"-- a junk line that starts like a delimiter\r\n"
	"begin 644 last.txt"
	"\r\n--b--\r\n";

Test(mime_uu, message_attachments_names_and_defects)
{
	char *doc = same_doc_everywhere(UU_MSG);
	struct message *m = parse(UU_MSG);
	const struct message_part *p;

	/* The begin line names a part without name; a named file is an attachment, not the text. */
	assert_span(message_text(m), "see the files");
	cr_assert_eq(message_num_attachments(m), 3);
	p = message_attachment(m, 0);
	cr_assert_str_eq(message_part_filename(p), "cat.txt");
	cr_assert_str_eq(message_part_encoding(p), "x-uuencode");
	assert_content(p, "Cat", 3);
	cr_assert_str_eq(message_part_sha256(p), "48735c4fae42d1501164976afec76730b9e5fe467f680bdd8daff4bb77674045");
	p = message_attachment(m, 1);
	cr_assert_str_eq(message_part_filename(p), "header.bin"); /* the header's name wins */
	assert_content(p, "Cat", 3);
	p = message_attachment(m, 2);
	cr_assert_str_eq(message_part_filename(p), "last.txt"); /* a begin line without line feed */
	assert_content(p, "", 0);
	cr_assert(has_defect(m, "uuencode_no_end"));
	cr_assert(has_defect(m, "uuencode_invalid"));
	cr_assert_not_null(strstr(doc, "\"encoding\":\"x-uuencode\""), "%s", doc);
	message_free(m);
	free(doc);
}

Test(mime_uu, inline_blocks_in_text_are_not_decoded)
{
	/* As Python's email: only Content-Transfer-Encoding asks for uudecode. */
	static const char msg[] = "Subject: inline\r\n\r\nbefore\r\nbegin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\n";
	struct message *m = parse(msg);

	cr_assert_eq(message_num_attachments(m), 0);
	assert_span(message_text(m), "before\r\nbegin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\n");
	cr_assert_eq(message_num_defects(m), 0);
	message_free(m);
}

Test(mime_uu, expanding_lines_stay_bounded, .timeout = 60)
{
	/* 20000 lines of "M" (45 zero bytes each) in and out of a multipart: 900000 bytes from 60 KB. */
	struct bb b;

	alarm(60);
	bb_init(&b, 0);
	for (int inner = 0; inner < 2; inner++) {
		bb_reset(&b, 0);
		if (inner) {
			cr_assert_eq(bb_printf(&b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"), 0);
		}
		cr_assert_eq(bb_printf(&b, "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 zero\r\n"), 0);
		for (int i = 0; i < 20000; i++) {
			cr_assert_eq(bb_append_str(&b, "M\r\n"), 0);
		}
		cr_assert_eq(bb_printf(&b, "end\r\n%s", inner ? "--b--\r\n" : ""), 0);
		cr_assert_eq(bb_append(&b, "", 1), 0);
		struct message *m = parse((const char *)b.p);
		const struct message_part *p = message_attachment(m, 0);

		cr_assert_not_null(p);
		cr_assert_eq(message_part_size(p), 900000);
		cr_assert_eq(message_num_defects(m), 0);
		message_free(m);
		/* and fed in odd pieces */
		char *a = doc_cuts((const char *)b.p, b.len - 1, 0, 0);
		char *c = doc_cuts((const char *)b.p, b.len - 1, 5, 977);

		cr_assert_str_eq(a, c);
		free(a);
		free(c);
	}
	bb_fini(&b);
}

/* ---- encoded composites ---- */

/* The decoded body of ENC_B64_ROOT (a multipart with a text and a binary part). */
static const char INNER[] = "preamble\r\n"
			    "--in\r\n"
			    "Content-Type: text/plain\r\n"
			    "\r\n"
			    "hello\r\n"
			    "--in\r\n"
			    "Content-Type: application/octet-stream; name=a.bin\r\n"
			    "Content-Transfer-Encoding: base64\r\n"
			    "\r\n"
			    "AAEC/w==\r\n"
			    "--in--\r\n";

/* base64 of INNER, 76 characters a line */
static const char INNER_B64[] =
	"cHJlYW1ibGUNCi0taW4NCkNvbnRlbnQtVHlwZTogdGV4dC9wbGFpbg0KDQpoZWxsbw0KLS1pbg0K\r\n"
	"Q29udGVudC1UeXBlOiBhcHBsaWNhdGlvbi9vY3RldC1zdHJlYW07IG5hbWU9YS5iaW4NCkNvbnRl\r\n"
	"bnQtVHJhbnNmZXItRW5jb2Rpbmc6IGJhc2U2NA0KDQpBQUVDL3c9PQ0KLS1pbi0tDQo=\r\n";

static void assert_inner(const struct message *m, const char *text_id, const char *bin_id)
{
	const struct message_part *p;

	assert_span(message_text(m), "hello");
	cr_assert_str_eq(message_part_id(message_text_part(m)), text_id);
	p = message_attachment(m, 0);
	cr_assert_not_null(p);
	cr_assert_str_eq(message_part_id(p), bin_id);
	cr_assert_str_eq(message_part_filename(p), "a.bin");
	assert_content(p, "\x00\x01\x02\xff", 4);
}

Test(mime_enc, base64_root_multipart)
{
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(bb_printf(&b, "From: a@x\r\nContent-Type: multipart/mixed; boundary=in\r\n"
				   "Content-Transfer-Encoding: base64\r\n\r\n\r\n%s", INNER_B64), 0);
	cr_assert_eq(bb_append(&b, "", 1), 0);
	char *doc = same_doc_everywhere((const char *)b.p);
	struct message *m = parse((const char *)b.p);

	cr_assert(message_is_multipart(m));
	cr_assert_eq(message_num_parts(m), 3);
	assert_inner(m, "1", "2");
	cr_assert_str_eq(message_part_encoding(message_root(m)), "base64");
	cr_assert(has_defect(m, "encoded_composite"));
	cr_assert_eq(message_num_defects(m), 1, "%s", doc);
	message_free(m);
	free(doc);
	bb_fini(&b);
}

Test(mime_enc, base64_multipart_between_siblings, .timeout = 60)
{
	struct bb b;

	alarm(60);
	bb_init(&b, 0);
	cr_assert_eq(bb_printf(&b, "Content-Type: multipart/mixed; boundary=out\r\n\r\n"
				   "--out\r\n"
				   "Content-Type: multipart/mixed; boundary=in\r\n"
				   "Content-Transfer-Encoding: base64\r\n\r\n%s"
				   "--out\r\n"
				   "Content-Type: text/html\r\n\r\n<p>after</p>\r\n"
				   "--out--\r\n", INNER_B64), 0);
	cr_assert_eq(bb_append(&b, "", 1), 0);
	char *doc = same_doc_everywhere((const char *)b.p);
	struct message *m = parse((const char *)b.p);

	cr_assert_eq(message_num_parts(m), 5);
	assert_inner(m, "1.1", "1.2");
	assert_span(message_html(m), "<p>after</p>");
	cr_assert_str_eq(message_part_id(message_html_part(m)), "2");
	cr_assert_eq(message_num_defects(m), 1, "%s", doc);
	message_free(m);
	free(doc);
	bb_fini(&b);
}

/* QP with a boundary that has '=' in it: the delimiters only show once decoded. */
static const char ENC_QP_MULTI[] =
	"Content-Type: multipart/mixed; boundary=out\r\n\r\n"
	"--out\r\n"
	"Content-Type: multipart/alternative; boundary=\"=_in\"\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
	"This is a preamble =3D not a delimiter\r\n"
	"--=3D_in\r\n"
	"Content-Type: text/plain; charset=3Dutf-8\r\n"
	"\r\n"
	"caf=C3=A9 with a soft=\r\n"
	" break\r\n"
	"--=3D_in\r\n"
	"Content-Type: text/html\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"PGI+aGk8L2I+\r\n"
	"--=3D_in--\r\n"
	"--out--\r\n";

Test(mime_enc, quoted_printable_multipart)
{
	char *doc = same_doc_everywhere(ENC_QP_MULTI);
	struct message *m = parse(ENC_QP_MULTI);

	cr_assert_eq(message_num_parts(m), 4, "%s", doc);
	assert_span(message_text(m), "caf\xc3\xa9 with a soft break");
	cr_assert_str_eq(message_part_charset(message_text_part(m)), "utf-8");
	assert_span(message_html(m), "<b>hi</b>");
	cr_assert(has_defect(m, "encoded_composite"));
	message_free(m);
	free(doc);
}

Test(mime_enc, header_the_body_contradicts_is_ignored)
{
	/* Python's email ignores the header on these: so do we, with the old defect. */
	static const char *const msgs[] = {
		/* base64 declared, plain delimiters and parts */
		"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"This is a multi-part message in MIME format.\r\n--b\r\n\r\nhello\r\n--b\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n",
		/* base64 declared, a first line of base64 letters that does not decode to text */
		"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"preamble\r\n--b\r\n\r\nhello\r\n--b\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n",
		/* quoted-printable declared, a delimiter as it stands, base64 padding that QP would eat */
		"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
		"\r\n--b\r\n\r\nhello\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n",
	};

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		char *doc = same_doc_everywhere(msgs[i]);
		struct message *m = parse(msgs[i]);

		cr_assert_eq(message_num_parts(m), 3, "case %zu: %s", i, doc);
		assert_span(message_text(m), "hello");
		assert_content(message_attachment(m, 0), "hi", 2);
		cr_assert(has_defect(m, "transfer_encoding_on_composite"), "case %zu", i);
		cr_assert(!has_defect(m, "encoded_composite"), "case %zu", i);
		message_free(m);
		free(doc);
	}
}

Test(mime_enc, encoded_messages)
{
	/* base64 (blank line before it) and quoted-printable message/rfc822, and a base64 one that is not */
	static const char msg[] =
		"Content-Type: multipart/mixed; boundary=o\r\n\r\n"
		"--o\r\n"
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\r\n"
		"U3ViamVjdDogaW5uZXINCkNvbnRlbnQtVHlwZTogdGV4dC9wbGFpbg0KDQpib2R5DQo=\r\n"
		"--o\r\n"
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
		"Subject: =3D?utf-8?q?x?=3D\r\n"
		"Content-Type: application/pdf; name=3Dq.pdf\r\n\r\n"
		"%PDF=\r\n"
		"-1\r\n"
		"--o\r\n"
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"Subject: plain\r\n\r\nnot encoded\r\n"
		"--o--\r\n";
	char *doc = same_doc_everywhere(msg);
	struct message *m = parse(msg);
	const struct message_part *p;

	cr_assert_eq(message_num_parts(m), 7, "%s", doc);
	p = message_part(m, 2);
	cr_assert_str_eq(message_part_id(p), "1.1");
	cr_assert_str_eq(message_part_header(p, "subject"), "inner");
	assert_content(p, "body\r\n", 6); /* its own line ending: the delimiter's was not encoded */
	p = message_part(m, 4);
	cr_assert_str_eq(message_part_header(p, "subject"), "x");
	cr_assert_str_eq(message_part_filename(p), "q.pdf");
	assert_content(p, "%PDF-1", 6);
	p = message_part(m, 6);
	cr_assert_str_eq(message_part_header(p, "subject"), "plain");
	assert_content(p, "not encoded", 11);
	cr_assert(has_defect(m, "encoded_composite"));
	cr_assert(has_defect(m, "transfer_encoding_on_composite"));
	message_free(m);
	free(doc);
}

Test(mime_enc, one_decoded_layer_and_broken_bodies)
{
	/* An encoded multipart inside a decoded one keeps the old treatment. */
	static const char nested[] =
		"Content-Type: multipart/mixed; boundary=a\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		/* "--a\r\nContent-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		   "LS1iDQoNCngNCi0tYi0tDQo=\r\n--a--\r\n" */
		"LS1hDQpDb250ZW50LVR5cGU6IG11bHRpcGFydC9taXhlZDsgYm91bmRhcnk9Yg0KQ29udGVudC1U\r\n"
		"cmFuc2Zlci1FbmNvZGluZzogYmFzZTY0DQoNCkxTMWlEUW9OQ25nTkNpMHRZaTB0RFFvPQ0KLS1h\r\n"
		"LS0NCg==\r\n";
	/* Cut off inside the decoded body: no close delimiter, a dangling sextet. */
	static const char cut[] =
		"Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\n"
		"Content-Type: multipart/mixed; boundary=in\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"cHJlYW1ibGUNCi0taW4NCkNvbnRlbnQtVHlwZTogdGV4dC9wbGFpbg0KDQpoZWxsbw0KLS1pbg0K\r\n"
		"Q29ud\r\n--out--\r\n";
	char *doc = same_doc_everywhere(nested);
	struct message *m = parse(nested);

	cr_assert(has_defect(m, "encoded_composite"));
	cr_assert(has_defect(m, "transfer_encoding_on_composite"), "%s", doc);
	cr_assert_eq(message_num_parts(m), 2, "%s", doc);
	message_free(m);
	free(doc);
	doc = same_doc_everywhere(cut);
	m = parse(cut);
	assert_span(message_text(m), "hello");
	cr_assert(has_defect(m, "multipart_no_close_delimiter"));
	cr_assert(has_defect(m, "base64_invalid"), "%s", doc);
	message_free(m);
	free(doc);
}

Test(mime_enc, decoded_tree_equals_plain_tree, .timeout = 60)
{
	/*
	 * The parts of an encoded multipart are those of the same message with
	 * the body written out plainly: compare the part lists (ids, types,
	 * sizes, hashes) of both documents.
	 */
	struct bb enc, plain;
	struct message *a, *b;

	alarm(60);
	bb_init(&enc, 0);
	bb_init(&plain, 0);
	cr_assert_eq(bb_printf(&enc, "Content-Type: multipart/mixed; boundary=in\r\nContent-Transfer-Encoding: "
				     "base64\r\n\r\n%s", INNER_B64), 0);
	cr_assert_eq(bb_printf(&plain, "Content-Type: multipart/mixed; boundary=in\r\n\r\n%s", INNER), 0);
	a = message_parse(enc.p, enc.len, NULL);
	b = message_parse(plain.p, plain.len, NULL);
	cr_assert_eq(message_num_parts(a), message_num_parts(b));
	for (size_t i = 0; i < message_num_parts(a); i++) {
		const struct message_part *x = message_part(a, i), *y = message_part(b, i);

		cr_assert_str_eq(message_part_id(x), message_part_id(y));
		cr_assert_str_eq(message_part_type(x), message_part_type(y));
		cr_assert_eq(message_part_size(x), message_part_size(y), "part %zu", i);
		if (message_part_sha256(y) != NULL) {
			cr_assert_str_eq(message_part_sha256(x), message_part_sha256(y), "part %zu", i);
		}
	}
	message_free(a);
	message_free(b);
	bb_fini(&enc);
	bb_fini(&plain);
}

Test(mime_enc, event_stream_stays_in_parser_storage)
{
	/* Every span of every event lies in the input or in struct mime (dec[], out[], uu.name). */
	static struct mime p;
	struct mime_event ev;
	const uint8_t *lo = (const uint8_t *)&p, *hi = lo + sizeof(p);
	size_t len = sizeof(ENC_QP_MULTI) - 1;
	const uint8_t *g = guard_copy(ENC_QP_MULTI, len);
	int depth = 0, bodies = 0;

	mime_init(&p);
	mime_push(&p, span_make(g, len));
	mime_finish(&p);
	while (mime_next(&p, &ev) != MIME_EV_END) {
		struct span s = ev.type == MIME_EV_HEADER ? ev.value : ev.data;

		cr_assert(s.len == 0 || (s.p >= g && s.p + s.len <= g + len) || (s.p >= lo && s.p + s.len <= hi),
			  "%s event outside", mime_ev_name(ev.type));
		depth += ev.type == MIME_EV_PART_BEGIN;
		depth -= ev.type == MIME_EV_PART_END;
		bodies += ev.type == MIME_EV_BODY;
	}
	cr_assert_eq(depth, 0);
	cr_assert_gt(bodies, 0);
	guard_release(g, len);
}

/*
 * tests/fuzz/corpus/fuzz_mime/split-encoded-defect-order.eml (found by
 * fuzz_mime): the base64_invalid of an encoded composite was queued when
 * the raw layer reached the end of the body, which came before or after
 * the decoded body's own defects depending on the cut. Now it is queued
 * when the decoded body has been read (enc_leave).
 */
static const char FUZZ_DEFECT_ORDER[] =
	"Content-Type: multipart/mixed; boundary=out\r\n"
	"\r\n"
	"--out\r\n"
	"Content-Type: multipart/mixed; boundary=in\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"cHJlDQotLWluDQpDb250ZW50LVR5cGU6IHRleHQvcGxhaW4NCg0KaGVsbG8NCi0taW4NCkNvbnRl\r\n"
	"bnG+VHJhbnNmZXItRW5jb2Rpbmc6IHgtdXVlbmNvZGUNCg0KYmVnaW4gNjQ0IGMudHh0DQojMFYl\r\n"
	"VA0KYA0KZW5kDQotLWluLS0NCg=U3ViamVjdDogafter\r\n"
	"--out--\r\n";

Test(mime_enc, layer_defects_in_the_same_order_at_any_cut)
{
	char *doc = same_doc_everywhere(FUZZ_DEFECT_ORDER);

	cr_assert_not_null(strstr(doc, "{\"code\":\"header_no_colon\",\"part_id\":\"1.2\"},"
				       "{\"code\":\"base64_invalid\",\"part_id\":\"1\"}"), "%s", doc);
	free(doc);
}
