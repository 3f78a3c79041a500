/* test_http_req.c - the metrics endpoint's request-head parser (core/http_req.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/http_req.h"
#include "tests/support/guard.h"

static enum http_parse parse_str(struct http_req *r, size_t *used, const char *s)
{
	size_t n = strlen(s);
	const uint8_t *g = guard_copy(s, n);
	enum http_parse rc = http_req_parse(r, used, g, n);

	return rc;
}

Test(http_req, parses_a_prometheus_scrape)
{
	static const char req[] = "GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9025\r\nUser-Agent: Prometheus/2.42.0\r\n"
				  "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nAccept-Encoding: gzip\r\n"
				  "X-Prometheus-Scrape-Timeout-Seconds: 1\r\n\r\n";
	struct http_req r;
	size_t used;

	cr_assert_eq(parse_str(&r, &used, req), HTTP_PARSE_OK);
	cr_assert_eq(used, strlen(req));
	cr_assert_eq(r.method, HTTP_M_GET);
	cr_assert(span_eq(r.path, span_cstr("/metrics")));
	cr_assert(span_eq(r.query, span_cstr("x=1")));
	cr_assert_eq(r.minor, 1);
	cr_assert_eq(r.num_fields, 5);
}

Test(http_req, identical_for_every_split)
{
	static const char req[] = "HEAD /readyz HTTP/1.0\nHost: a\n\n";
	size_t n = strlen(req), used;
	struct http_req r;

	/* The caller re-parses the accumulated bytes: every prefix but the whole is MORE. */
	for (size_t k = 0; k < n; k++) {
		cr_assert_eq(http_req_parse(&r, &used, (const uint8_t *)req, k), HTTP_PARSE_MORE, "prefix %zu", k);
	}
	cr_assert_eq(http_req_parse(&r, &used, (const uint8_t *)req, n), HTTP_PARSE_OK);
	cr_assert_eq(r.method, HTTP_M_HEAD);
	cr_assert_eq(r.minor, 0);
	cr_assert(span_eq(r.path, span_cstr("/readyz")));
}

Test(http_req, other_methods_are_valid_but_not_served)
{
	struct http_req r;
	size_t used;

	cr_assert_eq(parse_str(&r, &used, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), HTTP_PARSE_OK);
	cr_assert_eq(r.method, HTTP_M_OTHER);
	cr_assert(span_eq(r.method_name, span_cstr("POST")));
	cr_assert_eq(used, strlen("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n"), "a body is never consumed");
	cr_assert_eq(parse_str(&r, &used, "get /metrics HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
	cr_assert_eq(r.method, HTTP_M_OTHER, "methods are case-sensitive");
}

Test(http_req, rejects_garbage)
{
	static const char *const bad[] = {
		"garbage\r\n\r\n",
		"GET /metrics\r\n\r\n",                 /* HTTP/0.9 */
		"GET metrics HTTP/1.1\r\n\r\n",          /* not origin-form */
		"GET http://x/metrics HTTP/1.1\r\n\r\n", /* absolute-form */
		"GET /metrics HTTP/2.0\r\n\r\n",
		"GET /metrics http/1.1\r\n\r\n",
		"GET  /metrics HTTP/1.1\r\n\r\n",
		"GET /met rics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/1.1 \r\n\r\n",
		"G\x01T /metrics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", /* space before the colon (RFC 9112 §5.1) */
		"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nX: a\x01b\r\n\r\n",
		"GET /metrics HTTP/1.1\r\n: empty-name\r\n\r\n",
	};
	struct http_req r;
	size_t used;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse_str(&r, &used, bad[i]), HTTP_PARSE_SYNTAX, "case %zu: %s", i, bad[i]);
	}
}

Test(http_req, bounded_head)
{
	static uint8_t big[HTTP_REQ_HEAD_MAX + 100];
	static char many[HTTP_REQ_HEAD_MAX];
	struct http_req r;
	size_t used, n;

	memcpy(big, "GET /", 5);
	memset(big + 5, 'a', sizeof(big) - 5);
	cr_assert_eq(http_req_parse(&r, &used, big, HTTP_REQ_HEAD_MAX - 1), HTTP_PARSE_MORE);
	cr_assert_eq(http_req_parse(&r, &used, big, HTTP_REQ_HEAD_MAX), HTTP_PARSE_TOO_LONG);
	cr_assert_eq(http_req_parse(&r, &used, big, sizeof(big)), HTTP_PARSE_TOO_LONG);

	n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= HTTP_REQ_FIELDS_MAX; i++) {
		n += (size_t)snprintf(many + n, sizeof(many) - n, "X-%d: y\r\n", i);
	}
	n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
	cr_assert_eq(http_req_parse(&r, &used, (const uint8_t *)many, n), HTTP_PARSE_TOO_LONG);
}

Test(http_req, leading_empty_lines_are_ignored)
{
	struct http_req r;
	size_t used;

	cr_assert_eq(parse_str(&r, &used, "\r\n\nGET /healthz HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
	cr_assert(span_eq(r.path, span_cstr("/healthz")));
}
