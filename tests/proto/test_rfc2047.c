/* test_rfc2047.c - encoded words (RFC 2047 §8 examples and the usual breakage). */
#include <criterion/criterion.h>
#include <string.h>

#include "core/bb.h"
#include "proto/rfc2047.h"

static void check(const char *in, const char *want)
{
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(rfc2047_decode(&b, span_cstr(in), NULL), 0);
	cr_assert_eq(bb_append(&b, "", 1), 0);
	cr_assert_str_eq((const char *)b.p, want, "input %s", in);
	bb_fini(&b);
}

Test(rfc2047, rfc_section_8_examples)
{
	check("(=?ISO-8859-1?Q?a?=)", "(a)");
	check("(=?ISO-8859-1?Q?a?= b)", "(a b)");
	check("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)");
	check("(=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=)", "(ab)");
	check("(=?ISO-8859-1?Q?a_b?=)", "(a b)");
	check("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)");
	check("=?US-ASCII?Q?Keith_Moore?=", "Keith Moore");
	check("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld J\xc3\xb8rn Simonsen");
	check("=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard");
}

Test(rfc2047, base64_split_multibyte_and_charsets)
{
	check("=?UTF-8?B?w6k=?=", "\xc3\xa9");
	/* "é" split across two words: joined before conversion */
	check("=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "\xc3\xa9");
	check("=?utf-8*en?Q?lang?=", "lang");
	check("=?windows-1252?Q?=80?=", "\xe2\x82\xac");
	check("=?KOI8-R?B?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
	check("pre=?utf-8?q?mid?=post", "premidpost");
	check("=?bogus-charset?q?x?=", "x");
	check("=?utf-8?q?unterminated", "=?utf-8?q?unterminated");
	check("raw \xff byte", "raw \xef\xbf\xbd byte");
	check("=?utf-8?b?/w==?=", "\xef\xbf\xbd");
}
