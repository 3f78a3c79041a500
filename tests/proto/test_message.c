/*
 * test_message.c - the message model (proto/message.c) and its document
 * (proto/msgdoc.c) with NUL bytes in the input: no string or text body is
 * cut at one; each becomes U+FFFD and a defect (header_nul, body_nul) is
 * recorded; an address holding one is invalid, never a shorter valid one.
 * Every input is also fed byte by byte: the document must not change.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/message.h"
#include "tests/proto/mime_doc.h"

#define FFFD "\xef\xbf\xbd"

static struct message *parse_n(const char *s, size_t n)
{
	struct message *m = message_parse(s, n, NULL);

	cr_assert_not_null(m);
	return m;
}

#define PARSE(lit) parse_n((lit), sizeof(lit) - 1)

/* doc_of: the document of s fed whole; it must equal the one fed byte by byte. */
static char *doc_of(const char *s, size_t n)
{
	struct message *a = message_new(NULL), *b = message_new(NULL);
	char *da, *db;

	cr_assert(a != NULL && b != NULL);
	cr_assert_eq(message_feed(a, s, n), 0);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(message_feed(b, s + i, 1), 0);
	}
	da = doc_end(a);
	db = doc_end(b);
	cr_assert_str_eq(da, db);
	free(db);
	return da;
}

#define DOC(lit) doc_of((lit), sizeof(lit) - 1)

/* has_defect says whether m lists `code` for the part numbered `part_id`. */
static bool has_defect(const struct message *m, const char *code, const char *part_id)
{
	for (size_t i = 0; i < message_num_defects(m); i++) {
		const struct message_defect *d = message_defect(m, i);

		if (strcmp(d->code, code) == 0 && strcmp(message_part_id(message_part(m, d->part)), part_id) == 0) {
			return true;
		}
	}
	return false;
}

static size_t count_defect(const struct message *m, const char *code)
{
	size_t n = 0;

	for (size_t i = 0; i < message_num_defects(m); i++) {
		n += strcmp(message_defect(m, i)->code, code) == 0;
	}
	return n;
}

static const char subject_msg[] = "Subject: Invoice\0 tail\r\n"
				  "Content-Description: one\0two\r\n"
				  "\r\n"
				  "hello\r\n";

Test(message_nul, subject_keeps_the_tail)
{
	struct message *m = PARSE(subject_msg);
	const struct message_header *h = message_header_at(m, 0);
	char *doc = DOC(subject_msg);

	cr_assert_str_eq(message_subject(m), "Invoice" FFFD " tail");
	cr_assert_str_eq(message_header(m, "subject"), "Invoice" FFFD " tail");
	cr_assert_eq(h->raw_len, 13);
	cr_assert_eq(memcmp(h->raw, "Invoice\0 tail", 14), 0);
	cr_assert_str_eq(message_part_description(message_root(m)), "one" FFFD "two");
	cr_assert(has_defect(m, "header_nul", "1"));
	cr_assert_eq(count_defect(m, "header_nul"), 1); /* once per part */
	cr_assert_not_null(strstr(doc, "\"subject\":\"Invoice" FFFD " tail\""));
	cr_assert_not_null(strstr(doc, "{\"name\":\"Subject\",\"value\":\"Invoice" FFFD " tail\"}"));
	cr_assert_not_null(strstr(doc, "{\"code\":\"header_nul\",\"part_id\":\"1\"}"));
	cr_assert_null(strstr(doc, "\\u0000"));
	free(doc);
	message_free(m);
}

Test(message_nul, clean_message_has_no_nul_defect)
{
	static const char msg[] = "Subject: fine\r\nFrom: A <a@x.test>\r\n\r\nbody\r\n";
	struct message *m = PARSE(msg);

	cr_assert_eq(message_num_defects(m), 0);
	cr_assert_eq(message_header_at(m, 0)->raw_len, 4);
	message_free(m);
}

static const char from_msg[] = "From: Ann\0X <ann\0@x.test>\r\n"
			       "To: t@x.test\0, u@y.test, \"V\0\" <v@y.test>, w@evil.test\0.x.test\r\n"
			       "Cc: =?utf-8?q?C=00D?= <cd@x.test>\r\n"
			       "\r\n"
			       "hi\r\n";

Test(message_nul, from_display_name_and_address)
{
	struct message *m = PARSE(from_msg);
	const struct message_addr *a;
	size_t n = message_addrs(m, MESSAGE_FROM, &a);

	cr_assert_eq(n, 1);
	cr_assert_str_eq(a[0].name, "Ann" FFFD "X");
	cr_assert_str_eq(a[0].email, "ann" FFFD "@x.test");
	cr_assert(a[0].invalid);
	cr_assert_str_eq(message_header(m, "from"), "Ann" FFFD "X <ann" FFFD "@x.test>");
	cr_assert(has_defect(m, "header_nul", "1"));
	cr_assert(has_defect(m, "address_invalid", "1"));
	message_free(m);
}

Test(message_nul, to_list_keeps_every_address)
{
	struct message *m = PARSE(from_msg);
	const struct message_addr *a;
	size_t n = message_addrs(m, MESSAGE_TO, &a);
	char *doc = DOC(from_msg);

	/* Cut at the NUL this list was just "t@x.test". */
	cr_assert_eq(n, 4);
	cr_assert_str_eq(a[0].email, "t@x.test" FFFD);
	cr_assert(a[0].invalid);
	cr_assert_str_eq(a[1].email, "u@y.test");
	cr_assert_not(a[1].invalid);
	cr_assert_str_eq(a[2].name, "V" FFFD);
	cr_assert_str_eq(a[2].email, "v@y.test");
	cr_assert_not(a[2].invalid);
	cr_assert_str_eq(a[3].domain, "evil.test" FFFD ".x.test");
	cr_assert(a[3].invalid);
	n = message_addrs(m, MESSAGE_CC, &a);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(a[0].name, "C" FFFD "D");
	cr_assert_not_null(strstr(doc, "\"email\":\"t@x.test" FFFD "\",\"local\":\"t\",\"domain\":\"x.test" FFFD "\","
				       "\"detail\":null,\"invalid\":true}"));
	cr_assert_not_null(strstr(doc, "\"email\":\"u@y.test\""));
	free(doc);
	message_free(m);
}

static const char word_msg[] = "Subject: =?utf-8?q?Invoice=00_tail?= =?utf-8?b?QQBC?=\r\n"
			       "\r\n"
			       "hi\r\n";

Test(message_nul, encoded_word_decoding_to_nul)
{
	struct message *m = PARSE(word_msg);
	char *doc = DOC(word_msg);

	cr_assert_str_eq(message_subject(m), "Invoice" FFFD " tail" "A" FFFD "B");
	cr_assert(has_defect(m, "header_nul", "1"));
	cr_assert_not_null(strstr(doc, "\"subject\":\"Invoice" FFFD " tailA" FFFD "B\""));
	free(doc);
	message_free(m);
}

static const char param_msg[] = "Content-Type: multipart/mixed; boundary=b\r\n"
				"\r\n"
				"--b\r\n"
				"Content-Type: application/pdf; name=\"n\0ame.pdf\"\r\n"
				"Content-Disposition: attachment; filename*=utf-8''in%00voice.pdf\r\n"
				"Content-ID: <c\0id@x>\r\n"
				"\r\n"
				"%PDF\r\n"
				"--b\r\n"
				"Content-Type: application/octet-stream; name*0*=utf-8''a%00; name*1=\"b\"\r\n"
				"\r\n"
				"x\r\n"
				"--b\r\n"
				"Content-Type: application/octet-stream; name==?utf-8?q?q=00r?=\r\n"
				"\r\n"
				"y\r\n"
				"--b\r\n"
				"Content-Type: text/plain; charset=\"utf-8\0x\"\r\n"
				"\r\n"
				"t\r\n"
				"--b--\r\n";

Test(message_nul, rfc2231_filename_with_percent_00)
{
	struct message *m = PARSE(param_msg);
	const struct message_part *p;
	char *doc = DOC(param_msg);

	cr_assert_eq(message_num_attachments(m), 3);
	p = message_attachment(m, 0);
	cr_assert_str_eq(message_part_filename(p), "in" FFFD "voice.pdf"); /* Content-Disposition wins */
	cr_assert_str_eq(message_part_content_id(p), "c" FFFD "id@x");
	cr_assert_str_eq(message_part_filename(message_attachment(m, 1)), "a" FFFD "b");
	cr_assert_str_eq(message_part_filename(message_attachment(m, 2)), "q" FFFD "r");
	p = message_text_part(m);
	cr_assert_not_null(p);
	cr_assert_str_eq(message_part_charset(p), "utf-8" FFFD "x");
	cr_assert(has_defect(m, "header_nul", "1"));
	cr_assert(has_defect(m, "header_nul", "2"));
	cr_assert(has_defect(m, "header_nul", "3"));
	cr_assert(has_defect(m, "header_nul", "4"));
	cr_assert_not_null(strstr(doc, "\"filename\":\"in" FFFD "voice.pdf\""));
	cr_assert_not_null(strstr(doc, "\"content_id\":\"c" FFFD "id@x\""));
	free(doc);
	message_free(m);
}

static const char body_msg[] = "Content-Type: text/plain; charset=utf-8\r\n"
			       "\r\n"
			       "body\0 tail\r\n";

Test(message_nul, text_body)
{
	struct message *m = PARSE(body_msg);
	struct span t = message_text(m);
	const struct message_part *p = message_text_part(m);
	struct span raw;
	char *doc = DOC(body_msg);

	cr_assert_eq(t.len, 14);
	cr_assert_eq(memcmp(t.p, "body" FFFD " tail\r\n", 14), 0);
	cr_assert(has_defect(m, "body_nul", "1"));
	cr_assert_not(has_defect(m, "header_nul", "1"));
	/* The part's decoded bytes (and so its size and hash) are the input's. */
	cr_assert(message_part_content(p, &raw));
	cr_assert_eq(raw.len, 12);
	cr_assert_eq(message_part_size(p), 12);
	cr_assert_not_null(strstr(doc, "\"content\":\"body" FFFD " tail\\r\\n\""));
	cr_assert_not_null(strstr(doc, "{\"code\":\"body_nul\",\"part_id\":\"1\"}"));
	free(doc);
	message_free(m);
}

static const char ids_msg[] = "Message-ID: <id\0x@h>\r\n"
			      "References: <r1@h> <r\0 2@h>\r\n"
			      "Date: Mon, 1 Jan 2024 00:00:00 +0000\0junk\r\n"
			      "\r\n"
			      "hi\r\n";

Test(message_nul, message_ids_and_date)
{
	struct message *m = PARSE(ids_msg);
	const char *const *ids;

	cr_assert_str_eq(message_id(m), "id" FFFD "x@h");
	cr_assert_eq(message_references(m, &ids), 2);
	cr_assert_str_eq(ids[1], "r" FFFD " 2@h");
	cr_assert(has_defect(m, "header_nul", "1"));
	/* Parsed from all of its bytes: trailing text is ignored, with or without the NUL. */
	cr_assert_str_eq(message_date(m), "2024-01-01T00:00:00Z");
	message_free(m);
}

static const char uu_msg[] = "Content-Type: text/plain\r\n"
			     "Content-Transfer-Encoding: x-uuencode\r\n"
			     "\r\n"
			     "begin 644 f\0g.bin\r\n"
			     "#86)C\r\n"
			     "`\r\n"
			     "end\r\n";

Test(message_nul, uuencode_file_name)
{
	struct message *m = PARSE(uu_msg);

	cr_assert_eq(message_num_attachments(m), 1);
	cr_assert_str_eq(message_part_filename(message_attachment(m, 0)), "f" FFFD "g.bin");
	cr_assert(has_defect(m, "body_nul", "1"));
	message_free(m);
}
