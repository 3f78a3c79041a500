/* test_log.c - JSON log lines (core/log.c log_json_format) and log_escape. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/log.h"

Test(log, json_fields_numbers_and_strings)
{
	char out[512];
	size_t n = log_json_format(out, sizeof(out), "2026-12-07T05:10:28.318Z", "info", "s0 00defcdf7bfc336b",
				   "tx.done id=662043E8 helo=\"vm x\" rcpts=1 size=244 code=250 neg=-3 lead=007 "
				   "big=1234567890123456789 reason=\"a\\x22b\"");

	cr_assert_eq(n, strlen(out));
	cr_assert_str_eq(out, "{\"ts\":\"2026-12-07T05:10:28.318Z\",\"level\":\"info\",\"who\":\"s0 00defcdf7bfc336b\","
			      "\"event\":\"tx.done\",\"id\":\"662043E8\",\"helo\":\"vm x\",\"rcpts\":1,\"size\":244,"
			      "\"code\":250,\"neg\":-3,\"lead\":\"007\",\"big\":\"1234567890123456789\","
			      "\"reason\":\"a\\\\x22b\"}\n");
}

Test(log, json_free_text_and_control_bytes)
{
	char out[256];

	log_json_format(out, sizeof(out), "t", "err", "main", "bug: TX_BEGIN with a transaction open");
	cr_assert_str_eq(out, "{\"ts\":\"t\",\"level\":\"err\",\"who\":\"main\",\"event\":\"bug:\","
			      "\"msg\":\"TX_BEGIN with a transaction open\"}\n");
	log_json_format(out, sizeof(out), "t", "info", "w\"ho", "ev k=\"unterminated\x01");
	cr_assert_str_eq(out, "{\"ts\":\"t\",\"level\":\"info\",\"who\":\"w\\\"ho\",\"event\":\"ev\","
			      "\"k\":\"unterminated\\u0001\"}\n");
	log_json_format(out, sizeof(out), "t", "info", "w", "");
	cr_assert_str_eq(out, "{\"ts\":\"t\",\"level\":\"info\",\"who\":\"w\",\"event\":\"\"}\n");
}

Test(log, json_cut_short_stays_valid)
{
	char msg[600], out[64];

	memset(msg, 'a', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	memcpy(msg, "ev k=\"", 6);
	for (size_t cap = 8; cap <= sizeof(out); cap++) {
		size_t n = log_json_format(out, cap, "2026", "info", "who", msg);

		cr_assert_lt(n, cap);
		cr_assert_eq(out[n], '\0');
		cr_assert_eq(out[n - 1], '\n', "cap %zu: %s", cap, out);
		cr_assert_eq(out[n - 2], '}', "cap %zu: %s", cap, out);
		/* quotes balance: an even count of unescaped quotes */
		size_t q = 0;
		for (size_t i = 0; i < n; i++) {
			q += out[i] == '"' && (i == 0 || out[i - 1] != '\\');
		}
		cr_assert_eq(q % 2, 0, "cap %zu: %s", cap, out);
	}
}

Test(log, parse_format)
{
	cr_assert_eq(log_parse_format("text"), LOG_FMT_TEXT);
	cr_assert_eq(log_parse_format("json"), LOG_FMT_JSON);
	cr_assert_eq(log_parse_format("JSON"), -1);
}
