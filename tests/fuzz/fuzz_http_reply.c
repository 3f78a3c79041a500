/*
 * fuzz_http_reply.c - libFuzzer target for what the webhook sink reads from
 * a receiver (sinks/sink_http_reply.c, sinks/sink_text.c): the input is
 * one header line, then its value is read as a Retry-After and the whole
 * input as an error body. Never crash; a Retry-After is within its cap;
 * the reason is bounded, NUL-terminated and printable ASCII without quotes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/sink_http_reply.h"
#include "sinks/sink_text.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct span in = span_make(data, size), v;
	uint64_t secs;
	char text[SINK_TEXT_MAX + 1];
	size_t n;

	if (sink_http_header_value(in, "Retry-After", &v)) {
		CHECK(v.p >= data && v.p + v.len <= data + size);
		if (sink_http_retry_after(v, 1700000000, &secs)) {
			CHECK(secs <= HTTP_RETRY_AFTER_MAX);
		}
	}
	if (sink_http_retry_after(in, 0, &secs)) {
		CHECK(secs <= HTTP_RETRY_AFTER_MAX);
	}
	n = sink_text_line(text, sizeof(text), in);
	CHECK(n <= SINK_TEXT_MAX && strlen(text) == n);
	for (size_t i = 0; i < n; i++) {
		CHECK(text[i] >= 0x20 && text[i] < 0x7f && text[i] != '"' && text[i] != '\\');
	}
	if (size >= 2) {
		CHECK(sink_http_status_rc((long)data[0] * 4 + data[1]) < SINK_RC_COUNT);
	}
	return 0;
}
