/* test_charset.c - text to UTF-8 helpers (proto/charset.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "core/bb.h"
#include "proto/charset.h"

Test(charset, replace_nul_keeps_the_rest)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
		size_t num;
	} t[] = {
		{ "", 0, "", 0 },
		{ "plain", 5, "plain", 0 },
		{ "Invoice\0 tail", 13, "Invoice\xef\xbf\xbd tail", 1 },
		{ "\0\0", 2, "\xef\xbf\xbd\xef\xbf\xbd", 2 },
		{ "a\0", 2, "a\xef\xbf\xbd", 1 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bb b;
		size_t num = 0;

		bb_init(&b, 0);
		cr_assert_eq(utf8_replace_nul(&b, span_make(t[i].in, t[i].len), &num), 0);
		cr_assert_eq(b.len, strlen(t[i].out), "case %zu", i);
		cr_assert(b.len == 0 || memcmp(b.p, t[i].out, b.len) == 0, "case %zu", i);
		cr_assert_eq(num, t[i].num, "case %zu", i);
		bb_fini(&b);
	}
}

Test(charset, replace_nul_reports_a_full_builder)
{
	struct bb b;

	bb_init(&b, 4);
	cr_assert_neq(utf8_replace_nul(&b, span_make("ab\0", 3), NULL), 0);
	bb_fini(&b);
}
