/*
 * fuzz_reply.c - libFuzzer target for the reply extraction
 * (proto/mail_reply.c). The input is a text body, or, after a first byte
 * 'H', an HTML body (then the text is derived from it), or both, split at
 * the first "\n=====\n". Invariants: it never fails but for memory; the
 * signature is a suffix of the text; text and HTML are no longer than what
 * they come from (the derived text: than the HTML's bytes, entities only
 * shrink); with valid UTF-8 in, text and html are valid UTF-8; every
 * non-empty line of a text from a text body is a line of the body (or, for
 * a same-line attribution, a prefix of one), and in the body's order.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/charset.h"
#include "proto/mail_reply.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

/* lines_in_order: each line of `out` (CR dropped) is a line, or a prefix of one, of `in`, in order. */
static bool lines_in_order(struct span out, struct span in)
{
	size_t ip = 0, op = 0;

	while (op < out.len) {
		const uint8_t *e = memchr(out.p + op, '\n', out.len - op);
		size_t ol = (e ? (size_t)(e - out.p) : out.len) - op;

		if (ol > 0 && out.p[op + ol - 1] == '\r') {
			ol--;
		}
		bool found = false;

		while (ip < in.len || (ip == in.len && !found)) {
			const uint8_t *f = ip < in.len ? memchr(in.p + ip, '\n', in.len - ip) : NULL;
			size_t il = (f ? (size_t)(f - in.p) : in.len) - ip;
			size_t next = f ? ip + il + 1 : in.len + 1;

			if (ol <= il && memcmp(out.p + op, in.p + ip, ol) == 0) {
				found = true;
				ip = next;
				break;
			}
			ip = next;
			if (ip > in.len) {
				break;
			}
		}
		if (!found) {
			return false;
		}
		op = e ? (size_t)(e - out.p) + 1 : out.len;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mail_reply r;
	struct span text = span_make(data, size), html = span_make(data, 0);
	bool have_text = true, have_html = false;
	const uint8_t *sep = NULL;

	if (size > 0 && data[0] == 'H') {
		have_text = false;
		have_html = true;
		html = span_make(data + 1, size - 1);
	} else {
		for (size_t i = 0; i + 7 <= size; i++) {
			if (memcmp(data + i, "\n=====\n", 7) == 0) {
				sep = data + i;
				break;
			}
		}
		if (sep != NULL) {
			text = span_make(data, (size_t)(sep - data));
			html = span_make(sep + 7, size - (size_t)(sep - data) - 7);
			have_html = true;
		}
	}
	mail_reply_init(&r);
	int rc = mail_reply_extract(&r, have_text ? &text : NULL, have_html ? &html : NULL);

	CHECK(rc == 0 || rc == -12 /* ENOMEM */);
	if (rc == 0) {
		CHECK(r.has_text);
		CHECK(r.has_html == have_html);
		CHECK(!r.has_sig || (r.signature.p >= r.text.p && r.signature.p + r.signature.len == r.text.p + r.text.len &&
				     r.signature.len < r.text.len));
		if (have_html) {
			CHECK(r.html.len <= html.len);
		}
		if (have_text) {
			CHECK(r.text.len <= text.len + 1);
			CHECK(lines_in_order(r.text, text));
			CHECK(r.quoted || r.text.len == 0 || memmem(text.p, text.len, r.text.p, r.text.len) != NULL);
		} else {
			CHECK(r.text.len <= 4 * html.len + 4);
		}
		if (have_text && utf8_valid(text)) {
			CHECK(utf8_valid(r.text));
		}
		if (have_html && utf8_valid(html)) {
			CHECK(utf8_valid(r.html));
			CHECK(have_text || utf8_valid(r.text)); /* the text derived from it */
		}
		CHECK(r.work <= 64 * (uint64_t)size + 4096);
	}
	mail_reply_fini(&r);
	return 0;
}
