/* test_sink_text.c - a consumer's first line made safe (sinks/sink_text.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "sinks/sink_text.h"

static const char *line(const char *in, size_t in_len)
{
	static char out[SINK_TEXT_MAX + 1];

	sink_text_line(out, sizeof(out), span_make(in, in_len));
	return out;
}

Test(sink_text, first_line_only)
{
	cr_assert_str_eq(line("no such user\nsecond line\n", 26), "no such user");
	cr_assert_str_eq(line("crlf\r\nrest", 10), "crlf");
	cr_assert_str_eq(line("\nafter an empty first line", 26), "");
	cr_assert_str_eq(line("", 0), "");
	cr_assert_str_eq(line(NULL, 0), "");
}

Test(sink_text, trims_and_replaces_unsafe_bytes)
{
	cr_assert_str_eq(line("  \tpadded \t ", 12), "padded");
	cr_assert_str_eq(line("a\"b\\c\x01\x7f\xc3\xa9", 9), "a?b?c????");
	cr_assert_str_eq(line("nul\0inside", 10), "nul?inside");
	cr_assert_str_eq(line("tab\tinside", 10), "tab?inside");
}

Test(sink_text, bounded)
{
	char big[1000], out[16];

	memset(big, 'x', sizeof(big));
	cr_assert_eq(strlen(line(big, sizeof(big))), SINK_TEXT_MAX);
	cr_assert_eq(sink_text_line(out, sizeof(out), span_make(big, sizeof(big))), 15);
	cr_assert_eq(sink_text_line(out, sizeof(out), span_cstr("12345678901234 6789")), 14, "no trailing space after a cut");
	cr_assert_str_eq(out, "12345678901234");
	cr_assert_eq(sink_text_line(out, 1, span_cstr("abc")), 0);
	cr_assert_str_eq(out, "");
}
