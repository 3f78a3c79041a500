/* test_sink_query.c - query-string options of sink specs (sinks/sink_query.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "sinks/sink_query.h"

static bool next_is(struct span *c, const char *key, const char *val, bool has_val)
{
	struct span k, v;
	bool hv;

	return sink_query_next(c, &k, &v, &hv) && span_eq(k, span_cstr(key)) && span_eq(v, span_cstr(val)) &&
	       hv == has_val;
}

Test(sink_query, splits_pairs_in_order)
{
	struct span c = span_cstr("concurrency=8&timeout=30&&flag&empty=&a=b=c");

	cr_assert(next_is(&c, "concurrency", "8", true));
	cr_assert(next_is(&c, "timeout", "30", true));
	cr_assert(next_is(&c, "flag", "", false));
	cr_assert(next_is(&c, "empty", "", true));
	cr_assert(next_is(&c, "a", "b=c", true), "the value is everything after the first '='");
	struct span k, v;
	bool hv;

	cr_assert_not(sink_query_next(&c, &k, &v, &hv));
}

Test(sink_query, empty_and_only_separators)
{
	struct span k, v, c = span_cstr("");
	bool hv;

	cr_assert_not(sink_query_next(&c, &k, &v, &hv));
	c = span_cstr("&&&");
	cr_assert_not(sink_query_next(&c, &k, &v, &hv));
}

Test(sink_query, uint_bounds)
{
	uint64_t n = 99;

	cr_assert(sink_query_uint(span_cstr("1"), 1, 10, &n) && n == 1);
	cr_assert(sink_query_uint(span_cstr("10"), 1, 10, &n) && n == 10);
	cr_assert_not(sink_query_uint(span_cstr("0"), 1, 10, &n));
	cr_assert_not(sink_query_uint(span_cstr("11"), 1, 10, &n));
	cr_assert_not(sink_query_uint(span_cstr(""), 0, 10, &n));
	cr_assert_not(sink_query_uint(span_cstr("-1"), 0, 10, &n));
	cr_assert_not(sink_query_uint(span_cstr("5s"), 0, 10, &n));
	cr_assert_not(sink_query_uint(span_cstr(" 5"), 0, 10, &n));
	cr_assert_not(sink_query_uint(span_cstr("99999999999999999999999"), 0, UINT64_MAX, &n));
}

Test(sink_query, bool_yes_no)
{
	bool b = false;

	cr_assert(sink_query_bool(span_cstr("yes"), &b) && b);
	cr_assert(sink_query_bool(span_cstr("NO"), &b) && !b);
	cr_assert_not(sink_query_bool(span_cstr("1"), &b));
	cr_assert_not(sink_query_bool(span_cstr(""), &b));
}
