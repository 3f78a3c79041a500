/*
 * fuzz_http_request.c - the metrics endpoint's request parser
 * (core/http_req.c) and its route table (core/metrics_http.c) take any
 * bytes: the result is the same whatever prefix was seen before (the
 * server re-parses the accumulated head), spans stay inside the input,
 * consumed <= len, and every answer is one complete HTTP/1.1 response
 * with Connection: close.
 */
#include <stdlib.h>
#include <string.h>

#include "core/http_req.h"
#include "core/metrics_http.h"

static void in_input(struct span s, const uint8_t *p, size_t len)
{
	if (s.len > 0 && (s.p < p || s.p + s.len > p + len)) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_req r, r2;
	size_t used, used2;
	enum http_parse rc = http_req_parse(&r, &used, data, size), rc2;
	struct bb out;

	if (rc == HTTP_PARSE_OK) {
		if (used == 0 || used > size || used > HTTP_REQ_HEAD_MAX) {
			abort();
		}
		in_input(r.path, data, size);
		in_input(r.query, data, size);
		in_input(r.method_name, data, size);
		/* The head alone parses the same. */
		rc2 = http_req_parse(&r2, &used2, data, used);
		if (rc2 != HTTP_PARSE_OK || used2 != used || r2.method != r.method || !span_eq(r2.path, r.path)) {
			abort();
		}
		/* Every shorter prefix asks for more (never an error the whole does not have). */
		if (used > 1 && http_req_parse(&r2, &used2, data, used - 1) != HTTP_PARSE_MORE) {
			abort();
		}
	} else if (rc == HTTP_PARSE_MORE && size >= HTTP_REQ_HEAD_MAX) {
		abort();
	}
	if (rc != HTTP_PARSE_MORE) {
		bb_init(&out, 0);
		if (metrics_http_respond(&out, rc, &r) != 0) {
			abort();
		}
		if (out.len < 17 || memcmp(out.p, "HTTP/1.1 ", 9) != 0 ||
		    memmem(out.p, out.len, "\r\nConnection: close\r\n", 21) == NULL ||
		    memmem(out.p, out.len, "\r\n\r\n", 4) == NULL) {
			abort();
		}
		bb_fini(&out);
	}
	return 0;
}
