/*
 * fuzz_stream_reply.c - libFuzzer target for the stream sink's answer
 * parser (sinks/sink_stream.h): never crash or overread; consumed bytes
 * stay within the input; an answer's id and text lie inside its line, the
 * id is 1..MSG_ID_MAX-1 visible characters, the text has no CR, LF or
 * other control byte but HT. The input is parsed as a stream of lines, as
 * the sink reads it, until the parser asks for more or gives up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"
#include "sinks/sink_stream.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

static int inside(struct span s, const uint8_t *lo, const uint8_t *hi)
{
	return s.len == 0 || (s.p >= lo && s.p + s.len <= hi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct span in = span_make(data, size);

	for (;;) {
		struct stream_reply r;
		size_t used = SIZE_MAX;
		enum stream_parse pr = stream_reply_parse(&r, &used, in);

		CHECK(pr < STREAM_PARSE_COUNT);
		CHECK(used <= in.len);
		if (pr == STREAM_PARSE_MORE || pr == STREAM_PARSE_TOO_LONG) {
			CHECK(used == 0);
			CHECK(pr == STREAM_PARSE_MORE ? in.len < STREAM_REPLY_MAX : in.len >= STREAM_REPLY_MAX);
			break;
		}
		CHECK(used > 0 && used <= STREAM_REPLY_MAX && in.p[used - 1] == '\n');
		if (pr == STREAM_PARSE_OK) {
			CHECK(r.kind < STREAM_ANS_COUNT);
			CHECK(r.id.len >= 1 && r.id.len <= MSG_ID_MAX - 1);
			CHECK(inside(r.id, in.p, in.p + used) && inside(r.text, in.p, in.p + used));
			for (size_t i = 0; i < r.id.len; i++) {
				CHECK(r.id.p[i] > 0x20 && r.id.p[i] < 0x7f);
			}
			for (size_t i = 0; i < r.text.len; i++) {
				CHECK(r.text.p[i] == '\t' || (r.text.p[i] >= 0x20 && r.text.p[i] != 0x7f));
			}
		}
		span_skip(&in, used);
	}
	return 0;
}
