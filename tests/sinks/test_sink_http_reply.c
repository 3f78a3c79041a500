/* test_sink_http_reply.c - webhook answers: status classes and Retry-After (sinks/sink_http_reply.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "sinks/sink_http_reply.h"

Test(sink_http_reply, status_classes)
{
	static const struct {
		long status;
		enum sink_rc rc;
	} t[] = {
		{ 200, SINK_OK }, { 201, SINK_OK }, { 204, SINK_OK }, { 299, SINK_OK },
		{ 408, SINK_TEMPFAIL }, { 429, SINK_TEMPFAIL }, { 500, SINK_TEMPFAIL }, { 503, SINK_TEMPFAIL },
		{ 599, SINK_TEMPFAIL }, { 400, SINK_PERMFAIL }, { 401, SINK_PERMFAIL }, { 404, SINK_PERMFAIL },
		{ 410, SINK_PERMFAIL }, { 499, SINK_PERMFAIL }, { 301, SINK_TEMPFAIL }, { 100, SINK_TEMPFAIL },
		{ 0, SINK_TEMPFAIL }, { 600, SINK_TEMPFAIL }, { -1, SINK_TEMPFAIL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_assert_eq(sink_http_status_rc(t[i].status), t[i].rc, "status %ld", t[i].status);
	}
}

Test(sink_http_reply, header_value)
{
	struct span v;

	cr_assert(sink_http_header_value(span_cstr("Retry-After: 120\r\n"), "Retry-After", &v));
	cr_assert(span_eq(v, span_cstr("120")));
	cr_assert(sink_http_header_value(span_cstr("retry-after:\t 5 \t\n"), "Retry-After", &v));
	cr_assert(span_eq(v, span_cstr("5")));
	cr_assert(sink_http_header_value(span_cstr("RETRY-AFTER:"), "Retry-After", &v) && v.len == 0);
	cr_assert_not(sink_http_header_value(span_cstr("Retry-After-X: 1\r\n"), "Retry-After", &v));
	cr_assert_not(sink_http_header_value(span_cstr("Retry-Afte"), "Retry-After", &v));
	cr_assert_not(sink_http_header_value(span_cstr("Retry-After 1"), "Retry-After", &v));
	cr_assert_not(sink_http_header_value(span_cstr("HTTP/1.1 503 Busy\r\n"), "Retry-After", &v));
}

Test(sink_http_reply, retry_after_seconds)
{
	uint64_t s = 1;

	cr_assert(sink_http_retry_after(span_cstr("0"), 0, &s) && s == 0);
	cr_assert(sink_http_retry_after(span_cstr("120"), 0, &s) && s == 120);
	cr_assert(sink_http_retry_after(span_cstr("86400"), 0, &s) && s == HTTP_RETRY_AFTER_MAX);
	cr_assert(sink_http_retry_after(span_cstr("99999999999999999999999999"), 0, &s) && s == HTTP_RETRY_AFTER_MAX,
		  "a huge delay is capped, not refused");
	cr_assert_not(sink_http_retry_after(span_cstr("12a"), 0, &s));
	cr_assert_not(sink_http_retry_after(span_cstr("-5"), 0, &s));
	cr_assert_not(sink_http_retry_after(span_cstr(""), 0, &s));
	cr_assert_not(sink_http_retry_after(span_cstr("soon"), 0, &s));
}

Test(sink_http_reply, retry_after_date)
{
	/* RFC 9110 §10.2.3's example; 784111777 is Sun, 06 Nov 1994 08:49:37 GMT. */
	struct span d = span_cstr("Sun, 06 Nov 1994 08:49:37 GMT");
	uint64_t s = 1;

	cr_assert(sink_http_retry_after(d, 784111777 - 90, &s) && s == 90, "got %llu", (unsigned long long)s);
	cr_assert(sink_http_retry_after(d, 784111777 + 5, &s) && s == 0, "a date in the past: now");
	cr_assert(sink_http_retry_after(d, 784111777 - 10 * 86400, &s) && s == HTTP_RETRY_AFTER_MAX);
	cr_assert(sink_http_retry_after(span_cstr("Fri, 31 Dec 1999 23:59:59 GMT"), 946684799 - 1, &s) && s == 1);
}
