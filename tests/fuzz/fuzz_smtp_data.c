/*
 * fuzz_smtp_data.c - libFuzzer target for DATA unstuffing and BDAT framing
 * (proto/smtp_data.c). Octet 0 picks the mode (DATA reject / DATA
 * normalise / BDAT) and limits; the rest is fed in segments split at the
 * marker "\xff\xff". Invariants: consumed <= len, every body span lies in
 * the current segment or is one of the static strings, and the result (end
 * position, error, body when accepted) equals a whole-input run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_data.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

struct result {
	struct bb body;
	bool ended;
	size_t end_pos; /* position in the joined stream */
	int err;
};

static bool is_static(struct span s)
{
	return span_eq(s, SPAN_LIT("\r\n")) || span_eq(s, SPAN_LIT(".\r\n"));
}

static void run(struct result *r, uint8_t mode, const uint8_t *data, size_t size, bool split)
{
	struct smtp_data d;
	struct smtp_bdat b;
	size_t pos = 0, joined_pos = 0;
	bool bdat = (mode & 3) == 2;

	memset(r, 0, sizeof(*r));
	bb_init(&r->body, 0);
	smtp_data_init(&d, (mode & 1) ? SMTP_BARE_NORMALISE : SMTP_BARE_REJECT, (mode & 4) ? 8 : 1000,
		       (mode & 8) ? 64 : 0);
	smtp_bdat_init(&b, (uint64_t)(mode >> 4) * 7, false);
	while (pos <= size && !r->ended) {
		const uint8_t *m = NULL;
		size_t seg;

		if (split) {
			for (size_t i = pos; i + 1 < size; i++) {
				if (data[i] == 0xff && data[i + 1] == 0xff) {
					m = data + i;
					break;
				}
			}
		}
		seg = m ? (size_t)(m - data) - pos : size - pos;
		{
			struct span in = span_make(data + pos, seg), s = in, body;

			for (;;) {
				const uint8_t *before = s.p;
				enum smtp_data_rc rc = bdat ? smtp_bdat_next(&b, &s, &body) : smtp_data_next(&d, &s, &body);

				CHECK(s.p >= before && s.len <= in.len && s.p + s.len == in.p + in.len);
				if (rc == SMTP_DATA_MORE) {
					CHECK(s.len == 0);
					break;
				}
				if (rc == SMTP_DATA_BODY) {
					CHECK(body.len > 0);
					CHECK((body.p >= in.p && body.p + body.len <= in.p + in.len) || is_static(body));
					CHECK(bb_append_span(&r->body, body) == 0);
					continue;
				}
				if (rc == SMTP_DATA_ERROR) {
					CHECK(!bdat && r->err == 0 && d.err != SMTP_DATA_ERR_NONE);
					r->err = (int)d.err;
					continue;
				}
				CHECK(rc == SMTP_DATA_END);
				r->ended = true;
				r->end_pos = joined_pos + (in.len - s.len);
				break;
			}
		}
		joined_pos += seg;
		pos += seg + (m ? 2 : 0);
		if (m == NULL) {
			break;
		}
	}
	if (!bdat) {
		CHECK(r->err == (int)d.err);
		if (d.err == SMTP_DATA_ERR_NONE) {
			CHECK(d.size == r->body.len);
			if (d.max_size) {
				CHECK(d.size <= d.max_size);
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result a, b;
	uint8_t *joined;
	size_t jn = 0;
	uint8_t mode;

	if (size < 1) {
		return 0;
	}
	mode = data[0];
	data++;
	size--;
	run(&a, mode, data, size, true);
	joined = malloc(size + 1);
	CHECK(joined != NULL);
	for (size_t i = 0; i < size; i++) {
		if (i + 1 < size && data[i] == 0xff && data[i + 1] == 0xff) {
			i++;
			continue;
		}
		joined[jn++] = data[i];
	}
	run(&b, mode, joined, jn, false);
	CHECK(a.ended == b.ended && a.err == b.err);
	if (a.ended) {
		CHECK(a.end_pos == b.end_pos);
	}
	if (a.err == 0) {
		CHECK(a.body.len == b.body.len && (a.body.len == 0 || memcmp(a.body.p, b.body.p, a.body.len) == 0));
	}
	free(joined);
	bb_fini(&a.body);
	bb_fini(&b.body);
	return 0;
}
