/* test_rfc2231.c - MIME parameters: RFC 2231 continuations and charsets, quoting, breakage. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/rfc2231.h"

static void check(const char *v, const char *name, const char *want, const char *want_cs)
{
	uint8_t out[256];
	size_t n;
	struct span cs;
	unsigned flags;
	bool found = rfc2231_param(span_cstr(v), name, out, sizeof(out), &n, &cs, &flags);

	if (want == NULL) {
		cr_assert(!found, "%s", v);
		return;
	}
	cr_assert(found, "%s", v);
	cr_assert_eq(n, strlen(want), "%s: %.*s", v, (int)n, out);
	cr_assert(memcmp(out, want, n) == 0, "%s: %.*s", v, (int)n, out);
	cr_assert_eq(cs.len, strlen(want_cs));
	cr_assert(cs.len == 0 || memcmp(cs.p, want_cs, cs.len) == 0);
}

Test(rfc2231, parameters)
{
	check("text/plain; charset=us-ascii", "charset", "us-ascii", "");
	check("text/plain; CHARSET=\"utf-8\"", "charset", "utf-8", "");
	check("a/b; name*0=\"foo\"; name*1=\"bar\"", "name", "foobar", "");
	check("a/b; name*1=\"bar\"; name*0=\"foo\"", "name", "foobar", "");
	check("a/b; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A", "title", "This is ***fun***", "us-ascii");
	check("a/b; title*0*=us-ascii'en'This%20is%20even%20more%20; title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2=\"isn't it!\"",
	      "title", "This is even more ***fun*** isn't it!", "us-ascii");
	check("a/b;; name=x", "name", "x", "");
	check("a/b; name = \"spaced\" ", "name", "spaced", "");
	check("a/b; filename=\"a\\\"b\"", "filename", "a\"b", "");
	check("a/b; filename=\"C:\\TEMP\\x.png\"", "filename", "C:\\TEMP\\x.png", "");
	check("a/b; filename=unquoted name.txt", "filename", "unquoted name.txt", "");
	check("a/b; filename=\"open", "filename", "open", "");
	check("a/b; xname=1", "name", NULL, "");
	check("a/b; boundary=\"q;q\"; x=1", "boundary", "q;q", "");
}

Test(rfc2231, content_type)
{
	char t[MIME_TOKEN_MAX], s[MIME_TOKEN_MAX];

	cr_assert(rfc2231_ctype(span_cstr("Text/HTML; charset=x"), t, s));
	cr_assert_str_eq(t, "text");
	cr_assert_str_eq(s, "html");
	cr_assert(rfc2231_ctype(span_cstr(" (comment) multipart / mixed"), t, s));
	cr_assert_str_eq(s, "mixed");
	cr_assert(!rfc2231_ctype(span_cstr("text"), t, s));
	cr_assert(!rfc2231_ctype(span_cstr(""), t, s));
}
