/*
 * fuzz_milter.c - libFuzzer target for the milter packets oceanmx reads
 * (proto/milter.c): the input is a stream of packets as a milter would
 * send them. Never crash or read past the input; every packet lies inside
 * it; a parsed reply's spans lie inside its packet, codes are 4xx/5xx,
 * header names are printable without ':'; and the header field written
 * from a parsed add/insert/change is printable lines ending in CRLF where
 * every line after the first starts with white space (no injected field).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/milter.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

static void check_inside(struct span s, struct span pkt)
{
	if (s.len == 0) {
		return;
	}
	CHECK(s.p >= pkt.p && s.p + s.len <= pkt.p + pkt.len);
}

static void check_field(const struct bb *b)
{
	size_t i = 0;
	bool first = true;

	while (i < b->len) {
		CHECK(first || b->p[i] == ' ' || b->p[i] == '\t');
		while (i < b->len && b->p[i] != '\r' && b->p[i] != '\n') {
			CHECK(b->p[i] >= 0x20 || b->p[i] == '\t');
			i++;
		}
		CHECK(i + 1 < b->len && b->p[i] == '\r' && b->p[i + 1] == '\n');
		i += 2;
		first = false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct span in = span_make(data, size);

	for (;;) {
		struct milter_pkt p;
		struct milter_reply r;
		size_t used = 0;
		enum milter_rc rc = milter_pkt_next(&p, &used, in);

		CHECK(rc < MILTER_RC_COUNT);
		if (rc != MILTER_OK) {
			CHECK(used == 0);
			break;
		}
		CHECK(used >= 5 && used <= in.len);
		CHECK(p.data.p == in.p + 5 && p.data.len == used - 5);
		rc = milter_reply_parse(&r, &p);
		CHECK(rc == MILTER_OK || rc == MILTER_SYNTAX);
		if (rc == MILTER_OK) {
			CHECK(r.act < MILTER_A_COUNT);
			check_inside(r.name, p.data);
			check_inside(r.value, p.data);
			check_inside(r.text, p.data);
			CHECK(r.text.len <= MILTER_TEXT_MAX);
			if (r.act == MILTER_A_REPLYCODE) {
				CHECK(r.code >= 400 && r.code <= 599);
			}
			if (r.act == MILTER_A_ADDHEADER || r.act == MILTER_A_INSHEADER || r.act == MILTER_A_CHGHEADER) {
				struct bb b;

				CHECK(r.name.len > 0);
				for (size_t i = 0; i < r.name.len; i++) {
					CHECK(r.name.p[i] > 32 && r.name.p[i] < 127 && r.name.p[i] != ':');
				}
				bb_init(&b, 0);
				CHECK(milter_field_write(&b, r.name, r.value) == 0);
				check_field(&b);
				bb_fini(&b);
			}
		}
		span_skip(&in, used);
	}
	return 0;
}
