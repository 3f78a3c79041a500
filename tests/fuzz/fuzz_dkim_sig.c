/*
 * fuzz_dkim_sig.c - libFuzzer target for the DKIM tag-list parser, the
 * DKIM-Signature parser and the canonicalisers (verify/dkim_tag.c,
 * dkim_sig.c, dkim_canon.c). Invariants: every tag span lies inside the
 * input, names are never empty, a signature that parses has its spans
 * inside the input and sane lengths; the body canonicaliser gives the same
 * bytes whole and split at a point taken from the input, and never more
 * than 2 + 2x the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dkim_canon.h"
#include "verify/dkim_sig.h"
#include "verify/dkim_tag.h"

#define CHECK(c)                  \
	do {                      \
		if (!(c)) {       \
			abort();  \
		}                 \
	} while (0)

static bool inside(struct span s, const uint8_t *p, size_t len)
{
	return s.len == 0 || (s.p >= p && s.p + s.len <= p + len);
}

struct acc {
	uint8_t *buf;
	size_t len, cap;
};

static void sink(void *arg, const uint8_t *p, size_t len)
{
	struct acc *a = arg;

	CHECK(a->len + len <= a->cap);
	memcpy(a->buf + a->len, p, len);
	a->len += len;
}

static void body(enum dkim_canon c, const uint8_t *data, size_t size, size_t cut, struct acc *a)
{
	struct dkim_body_canon bc;

	a->len = 0;
	dkim_body_canon_init(&bc, c, sink, a);
	dkim_body_canon_update(&bc, data, cut);
	dkim_body_canon_update(&bc, data + cut, size - cut);
	dkim_body_canon_final(&bc);
	CHECK(bc.num_out == a->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dkim_sig sig;
	struct dkim_tag tags[DKIM_TAGS_MAX];
	size_t num = 0, pos = 0;
	const char *why = NULL;
	struct acc a1, a2, hdr;

	if (dkim_tags_parse(tags, DKIM_TAGS_MAX, &num, &pos, span_make(data, size)) == DKIM_TAG_OK) {
		CHECK(num <= DKIM_TAGS_MAX);
		for (size_t i = 0; i < num; i++) {
			CHECK(tags[i].name.len > 0);
			CHECK(inside(tags[i].name, data, size) && inside(tags[i].value, data, size) &&
			      inside(tags[i].raw, data, size));
		}
	} else {
		CHECK(pos <= size);
	}
	if (dkim_sig_parse(&sig, &why, span_make(data, size)) == AUTH_NONE) {
		CHECK(inside(sig.d, data, size) && inside(sig.s, data, size) && inside(sig.b_raw, data, size));
		CHECK(sig.num_h > 0 && sig.num_h <= DKIM_SIG_H_MAX);
		CHECK(sig.b_len <= DKIM_SIG_B_MAX && sig.identity_len <= DKIM_ID_MAX);
		CHECK(sig.alg == DKIM_ALG_RSA_SHA256 || sig.alg == DKIM_ALG_ED25519_SHA256);
	} else {
		CHECK(why != NULL);
	}

	a1.cap = a2.cap = hdr.cap = 2 * size + 4;
	a1.buf = malloc(a1.cap);
	a2.buf = malloc(a2.cap);
	hdr.buf = malloc(hdr.cap);
	CHECK(a1.buf && a2.buf && hdr.buf);
	for (int c = 0; c < 2; c++) {
		size_t cut = size ? data[0] % (size + 1) : 0;

		body((enum dkim_canon)c, data, size, size, &a1);
		body((enum dkim_canon)c, data, size, cut, &a2);
		CHECK(a1.len == a2.len && memcmp(a1.buf, a2.buf, a1.len) == 0);
		hdr.len = 0;
		dkim_hdr_canon((enum dkim_canon)c, span_make(data, size), true, sink, &hdr);
	}
	free(a1.buf);
	free(a2.buf);
	free(hdr.buf);
	return 0;
}
