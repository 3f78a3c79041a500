/*
 * fuzz_arc.c - libFuzzer target for ARC chain validation (verify/arc.c)
 * and the parsers it adds (ARC-Seal, instance, AAR prefix, the AMS kind
 * of dkim_sig_parse_kind), linked with the pure verify library and the
 * unit tests' crypto seam (tests/verify/crypto_fake.c, no BoringSSL):
 * SHA-256 is proto/sha256, and in its lenient mode a "signature" verifies
 * when the key is "good" and its first byte is even, so the fuzzer can
 * reach the passing paths (oldest-pass, every seal) without forging
 * digests (a body hash must still be right: see the seed seed4_pass).
 *
 * Input: byte 0 chooses the key answers (bit 0-1: good key, NXDOMAIN,
 * timeout, garbage record; bit 2: answer only every other key; bit 3:
 * ask for the result before the body ends), byte 1 where the body is cut;
 * the rest is a message: header fields (LF or CRLF lines, WSP-led lines
 * fold), an empty line, the body.
 *
 * Invariants: the result is none, pass or fail; a fail has a reason,
 * pass and none have none; sets <= 50, oldest_pass <= sets on pass; keys
 * asked for are numbered in order and bounded; every parsed span lies in
 * its input; nothing leaks (ASan) and the same input gives the same result
 * however the body is cut.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/arc.h"
#include "verify/dkim_crypto.h"

#define CHECK(c)                  \
	do {                      \
		if (!(c)) {       \
			abort();  \
		}                 \
	} while (0)

/* The test seam (SHA-256 from proto/sha256), lenient: see crypto_fake_even_signature. */
#include "../verify/crypto_fake.c"

static bool inside(struct span s, const uint8_t *p, size_t len)
{
	return s.len == 0 || (s.p >= p && s.p + s.len <= p + len);
}

static void answer(struct dns_txt_answer *a, unsigned mode)
{
	static const char *const recs[] = { "v=DKIM1; k=rsa; p=Z29vZA==", NULL, NULL, "v=DKIM1; k=rsa; omg" };

	memset(a, 0, sizeof(*a));
	a->status = mode == 1 ? DNS_NXDOMAIN : mode == 2 ? DNS_TIMEOUT : DNS_OK;
	if (recs[mode] != NULL) {
		size_t n = strlen(recs[mode]);

		memcpy(a->buf, recs[mode], n);
		a->buf_len = n;
		a->rec[0] = span_make(a->buf, n);
		a->num_records = 1;
	}
}

/* parsers checks the field parsers on one header field's value. */
static void parsers(struct span value)
{
	static struct dkim_sig g;
	struct arc_seal s;
	const char *why = NULL;
	unsigned i;

	if (arc_seal_parse(&s, &why, value) == AUTH_NONE) {
		CHECK(s.instance >= 1 && s.instance <= ARC_INSTANCES_MAX);
		CHECK(s.alg == DKIM_ALG_RSA_SHA256 || s.alg == DKIM_ALG_ED25519_SHA256);
		CHECK(s.cv < ARC_CV_COUNT && s.b_len > 0 && s.b_len <= DKIM_SIG_B_MAX);
		CHECK(inside(s.d, value.p, value.len) && inside(s.s, value.p, value.len) &&
		      inside(s.b_raw, value.p, value.len));
	} else {
		CHECK(why != NULL);
	}
	if (dkim_sig_parse_kind(&g, &why, value, DKIM_SIG_ARC_AMS) == AUTH_NONE) {
		CHECK(g.num_h <= DKIM_SIG_H_MAX && !g.has_i); /* i= may be empty: arc.c checks the instance */
		CHECK(inside(g.i, value.p, value.len) && inside(g.b_raw, value.p, value.len));
		for (unsigned k = 0; k < g.num_h; k++) {
			CHECK(g.h[k].len > 0 && inside(g.h[k], value.p, value.len));
		}
	} else {
		CHECK(why != NULL);
	}
	i = arc_aar_instance(value);
	CHECK(i <= ARC_INSTANCES_MAX);
}

/* validate runs one validator over the fields and body; the body is cut at `cut`. */
static struct arc_result validate(const struct span *fields, size_t num, struct span body, size_t cut, uint8_t mode)
{
	struct arc_msg *m = arc_msg_new(NULL);
	struct dns_txt_answer *a = malloc(sizeof(*a));
	struct arc_result r;
	unsigned keys = 0;
	char text[ARC_REASON_MAX];

	CHECK(m != NULL && a != NULL);
	answer(a, mode & 3);
	for (size_t i = 0; i < num; i++) {
		int key;

		if (arc_msg_header(m, fields[i], &key) != 0) {
			continue; /* out of memory: not an input bug */
		}
		if (key >= 0) {
			CHECK((unsigned)key == keys);
			keys++;
			CHECK(strlen(arc_msg_key_name(m, (unsigned)key)) <= DKIM_NAME_MAX);
			if (!(mode & 4) || key % 2 == 0) {
				arc_msg_key_answer(m, (unsigned)key, a);
			}
		}
	}
	CHECK(keys == arc_msg_num_keys(m) && keys <= ARC_KEYS_DEFAULT);
	CHECK(arc_msg_keys_pending(m) <= keys);
	arc_msg_headers_end(m);
	arc_msg_body(m, body.p, cut);
	if (!(mode & 8)) {
		arc_msg_body(m, body.p + cut, body.len - cut);
		arc_msg_body_end(m);
	}
	arc_msg_result(m, &r);
	CHECK(r.res == AUTH_NONE || r.res == AUTH_PASS || r.res == AUTH_FAIL);
	CHECK((r.res == AUTH_FAIL) == (r.reason != NULL));
	CHECK(r.num_sets <= ARC_INSTANCES_MAX);
	CHECK(r.res != AUTH_PASS || r.oldest_pass <= r.num_sets);
	CHECK(r.res != AUTH_NONE || r.num_sets == 0);
	CHECK(strlen(arc_result_describe(text, sizeof(text), &r)) < sizeof(text) - 1);
	free(a);
	arc_msg_free(m);
	return r;
}

#define FIELDS_MAX 512

static struct span fields_buf[FIELDS_MAX];

static void push(size_t *num, const uint8_t *data, size_t from, size_t to)
{
	if (*num < FIELDS_MAX) {
		fields_buf[(*num)++] = span_make(data + from, to - from);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t num = 0, i = 2, fstart = SIZE_MAX, fend = 0;
	struct span body;
	struct arc_result r1, r2;
	uint8_t mode;

	if (size < 2) {
		return 0;
	}
	crypto_fake_even_signature = true;
	mode = data[0];
	/* header fields: a line starting with SP/HTAB continues the field before it */
	while (i < size) {
		const uint8_t *lf = memchr(data + i, '\n', size - i);
		size_t end = lf ? (size_t)(lf - data) : size;
		size_t line_end = end > i && data[end - 1] == '\r' ? end - 1 : end;
		size_t next = lf ? end + 1 : size;

		if (line_end == i) {
			i = next; /* the empty line: the body follows */
			break;
		}
		if ((data[i] == ' ' || data[i] == '\t') && fstart != SIZE_MAX) {
			fend = line_end; /* a fold: the field goes on, its CRLF kept inside */
		} else {
			if (fstart != SIZE_MAX) {
				push(&num, data, fstart, fend);
			}
			fstart = i;
			fend = line_end;
		}
		i = next;
	}
	if (fstart != SIZE_MAX) {
		push(&num, data, fstart, fend);
	}
	body = span_make(data + i, size - i);
	for (size_t k = 0; k < num; k++) {
		const struct span f = fields_buf[k];
		const uint8_t *colon = memchr(f.p, ':', f.len);

		CHECK(inside(f, data, size));
		if (colon != NULL) {
			parsers(span_make(colon + 1, f.len - (size_t)(colon - f.p) - 1));
		}
	}
	r1 = validate(fields_buf, num, body, body.len ? data[1] % (body.len + 1) : 0, mode);
	r2 = validate(fields_buf, num, body, body.len, mode);
	if (!(mode & 8)) {
		CHECK(r1.res == r2.res && r1.oldest_pass == r2.oldest_pass && r1.num_sets == r2.num_sets);
	}
	return 0;
}
