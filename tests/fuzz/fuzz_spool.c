/*
 * fuzz_spool.c - the segment scanner and record parser (core/spool.c) on
 * any byte string taken as a segment image: no overread, every record the
 * scan accepts lies inside the input, in order, aligned, and parses into a
 * bounded envelope whose spans lie inside the record. The generation is
 * taken from the image's own header when it has a valid one, so the
 * fuzzer reaches records, else 1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spool.h"

struct ctx {
	const uint8_t *data;
	size_t size;
	uint64_t last_end;
};

static void on_rec(void *arg, const struct spool_rec_hdr *h, uint64_t off, uint64_t len)
{
	struct ctx *c = arg;
	struct spool_entry e;

	(void)h;
	if (off < c->last_end || off % SPOOL_REC_ALIGN != 0 || off + len > c->size) {
		abort();
	}
	c->last_end = off + len;
	if (spool_rec_parse(&e, c->data + off, (size_t)len) == 0) {
		if (e.msg.p < c->data + off || e.auth.p != e.msg.p + e.msg.len ||
		    e.auth.p + e.auth.len > c->data + off + len || e.env.num_rcpts == 0 ||
		    strlen(e.env.id) >= MSG_ID_MAX) {
			abort();
		}
		for (size_t i = 0; i < e.env.num_rcpts; i++) {
			if (strchr(e.env.rcpts[i], '\n') != NULL) {
				abort();
			}
		}
		spool_entry_fini(&e);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_seg_hdr h;
	struct ctx c = { data, size, 0 };
	uint64_t gen = 1, end;

	if (spool_seg_hdr_decode(&h, data, size)) {
		gen = h.gen;
	}
	spool_scan(data, size, gen, on_rec, &c, &end);
	if (end > size && size >= SPOOL_SEG_HDR_LEN) {
		abort();
	}
	/* The parser alone, on the input as one record. */
	{
		struct spool_entry e;

		if (spool_rec_parse(&e, data, size) == 0) {
			spool_entry_fini(&e);
		}
	}
	return 0;
}
