/*
 * fuzz_lmtp_reply.c - libFuzzer target for the LMTP reply parser
 * (sinks/sink_lmtp.c). The input is a server's byte stream, parsed once
 * whole and once in segments split at the marker "\xff\xff". Invariants:
 * consumed <= offered, every reply has a valid code and a bounded,
 * NUL-terminated printable text, and both ways give the same replies and
 * the same final state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/sink_lmtp.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

#define REPLIES_MAX 64

struct run {
	struct lmtp_reply_parser p;
	uint16_t codes[REPLIES_MAX];
	uint32_t hashes[REPLIES_MAX];
	size_t num;
	enum lmtp_parse last;
};

static uint32_t hash_reply(const struct lmtp_reply *r)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < r->text_len; i++) {
		h = (h ^ (uint8_t)r->text[i]) * 16777619u;
	}
	return h ^ r->num_lines ^ ((uint32_t)r->enh_class << 24) ^ ((uint32_t)r->enh_subject << 12) ^ r->enh_detail;
}

static void check_reply(const struct lmtp_reply *r)
{
	CHECK(r->code >= 200 && r->code <= 559);
	CHECK(r->num_lines >= 1 && r->num_lines <= LMTP_REPLY_LINES_MAX);
	CHECK(r->text_len <= LMTP_REPLY_TEXT_MAX && r->text[r->text_len] == '\0');
	CHECK(strlen(r->text) == r->text_len);
	for (size_t i = 0; i < r->text_len; i++) {
		CHECK(r->text[i] == '\n' || (r->text[i] >= 0x20 && r->text[i] < 0x7f));
	}
	CHECK(r->enh_class == 0 || r->enh_class == r->code / 100);
	CHECK(r->enh_subject <= 999 && r->enh_detail <= 999);
	(void)lmtp_reply_has_keyword(r, "PIPELINING");
	(void)lmtp_reply_rc(r);
}

static void feed(struct run *x, const uint8_t *in, size_t len)
{
	while (len > 0 && (x->last == LMTP_PARSE_MORE || x->last == LMTP_PARSE_OK)) {
		struct lmtp_reply r;
		size_t used;

		x->last = lmtp_reply_parse(&x->p, &r, &used, in, len);
		CHECK(used <= len);
		if (x->last == LMTP_PARSE_MORE) {
			CHECK(used == len);
		}
		if (x->last == LMTP_PARSE_OK) {
			CHECK(used > 0);
			check_reply(&r);
			if (x->num < REPLIES_MAX) {
				x->codes[x->num] = r.code;
				x->hashes[x->num] = hash_reply(&r);
			}
			x->num++;
		}
		in += used;
		len -= used;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, split; /* ~3 KiB each: not on the stack */
	const uint8_t *seg = data, *end = data + size;
	uint8_t *plain = malloc(size ? size : 1);
	size_t plain_len = 0;

	memset(&whole, 0, sizeof(whole));
	memset(&split, 0, sizeof(split));
	lmtp_reply_parser_init(&whole.p);
	lmtp_reply_parser_init(&split.p);
	while (seg <= end) {
		const uint8_t *m = NULL;

		for (const uint8_t *q = seg; q + 1 < end; q++) {
			if (q[0] == 0xff && q[1] == 0xff) {
				m = q;
				break;
			}
		}
		size_t n = (size_t)((m ? m : end) - seg);

		memcpy(plain + plain_len, seg, n);
		plain_len += n;
		feed(&split, seg, n);
		if (m == NULL) {
			break;
		}
		seg = m + 2;
	}
	feed(&whole, plain, plain_len);
	if (whole.last != LMTP_PARSE_MORE && whole.last != LMTP_PARSE_OK) {
		CHECK(split.last == whole.last);
	}
	CHECK(split.num == whole.num);
	for (size_t i = 0; i < whole.num && i < REPLIES_MAX; i++) {
		CHECK(split.codes[i] == whole.codes[i] && split.hashes[i] == whole.hashes[i]);
	}
	free(plain);
	return 0;
}
