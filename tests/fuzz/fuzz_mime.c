/*
 * fuzz_mime.c - libFuzzer target for the MIME event parser and the
 * message document. The input is fed whole and then at pseudo-random
 * splits derived from its first bytes; invariants: every event span lies
 * inside the current input or the parser's own storage (dec[] of an
 * encoded composite, out[], a uuencode file name), PART_BEGIN/END
 * nest, the stream ends with END, and the JSON documents of both feeds are
 * identical (split independence).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/bb.h"
#include "proto/message.h"
#include "proto/mime.h"
#include "proto/msgdoc.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

static struct mime P;

static bool inside(struct span s, const uint8_t *base, size_t len)
{
	const uint8_t *lo = (const uint8_t *)&P, *hi = lo + sizeof(P);

	if (s.len == 0) {
		return true;
	}
	if (s.p >= base && s.p + s.len <= base + len) {
		return true;
	}
	if (s.p >= lo && s.p + s.len <= hi) {
		return true;
	}
	/* a held line ending or CR, handed out from the parser's static strings */
	return (s.len == 2 && memcmp(s.p, "\r\n", 2) == 0) || (s.len == 1 && (s.p[0] == '\n' || s.p[0] == '\r'));
}

/* check_event: spans in place; a uuencode file name only on a part that is uuencoded. */
static void check_event(const struct mime_event *ev, const uint8_t *data, size_t size)
{
	CHECK(inside(ev->name, data, size) && inside(ev->value, data, size) && inside(ev->data, data, size));
	CHECK(ev->type != MIME_EV_UU_BEGIN || (ev->part != NULL && ev->part->cte == MIME_CTE_UUENCODE));
}

static void check_events(const uint8_t *data, size_t size)
{
	struct mime_event ev;
	int depth = 0;

	mime_init(&P);
	mime_push(&P, span_make(data, size));
	while (mime_next(&P, &ev) != MIME_EV_MORE) {
		check_event(&ev, data, size);
		depth += ev.type == MIME_EV_PART_BEGIN;
		depth -= ev.type == MIME_EV_PART_END;
		CHECK(depth >= 0 && depth <= MIME_DEPTH_MAX);
	}
	mime_finish(&P);
	mime_push(&P, span_make("", 0));
	while (mime_next(&P, &ev) != MIME_EV_END) {
		check_event(&ev, data, size);
		depth += ev.type == MIME_EV_PART_BEGIN;
		depth -= ev.type == MIME_EV_PART_END;
		CHECK(depth >= 0);
	}
	CHECK(depth == 0);
}

static char *doc(const uint8_t *data, size_t size, unsigned seed, size_t *out_len)
{
	struct message *m = message_new(NULL);
	struct msgdoc_opts o = { .inline_max = SIZE_MAX };
	struct bb b;
	size_t off = 0;

	CHECK(m != NULL);
	while (off < size) {
		size_t n = seed == 0 ? size : 1 + (seed = seed * 1103515245u + 12345u) % 61;

		n = n > size - off ? size - off : n;
		CHECK(message_feed(m, data + off, n) == 0);
		off += n;
	}
	CHECK(message_end(m) == 0);
	bb_init(&b, 0);
	CHECK(msgdoc_write(&b, m, NULL, &o) == 0);
	message_free(m);
	*out_len = b.len;
	return (char *)b.p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t a_len, b_len;
	char *a, *b;

	check_events(data, size);
	a = doc(data, size, 0, &a_len);
	b = doc(data, size, size > 0 ? data[0] | 1u : 1u, &b_len);
	CHECK(a_len == b_len && memcmp(a, b, a_len) == 0);
	free(a);
	free(b);
	return 0;
}
