/*
 * fuzz_hdrsplit.c - libFuzzer target for the verifiers' header splitter
 * (verify/hdrsplit.c) and what the verify pool feeds from it: DMARC's
 * From collector (dmarc_from_seen) and DKIM's header store with fields too
 * large to keep (dkim_msg_header_big). Issue 13: a field past the bound
 * must never end header reading.
 *
 * Input: byte 0 and 1 give a cut position; the rest is a message.
 *
 * Invariants: the same fields, body offset and From outcome whether the
 * input comes whole or cut in two; every field span lies in the splitter's
 * buffer and within HDRSPLIT_FIELD_MAX; a field's len >= its bytes; the
 * body starts where the header bytes end; From none only when no From
 * field was seen; nothing leaks (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dkim.h"
#include "verify/dmarc.h"
#include "verify/hdrsplit.h"

#define CHECK(c)                  \
	do {                      \
		if (!(c)) {       \
			abort();  \
		}                 \
	} while (0)

/* The test seam (SHA-256 from proto/sha256): dkim.c links against it; no signature is checked here. */
#include "../verify/crypto_fake.c"

struct outcome {
	size_t num_fields, num_big, body_at;
	uint64_t len_sum;
	enum dmarc_from_rc from;
	unsigned num_from;
	unsigned num_sigs;
};

static void take(struct outcome *o, struct dmarc_from_seen *from, struct dkim_msg *m, const struct hdrsplit *s,
		 const struct hdrsplit_field *f)
{
	int sig;

	CHECK(f->bytes.len <= HDRSPLIT_FIELD_MAX && f->bytes.len <= f->len);
	CHECK(f->bytes.len == 0 || (f->bytes.p >= s->field.p && f->bytes.p + f->bytes.len <= s->field.p + s->field.len));
	CHECK(f->offset + f->len <= s->header_bytes && f->max_line <= f->len);
	o->num_fields++;
	o->num_big += !f->whole;
	o->len_sum += f->len;
	if (dmarc_from_seen_field(from, f->bytes, f->whole, f->len, f->max_line, f->offset) != 0) {
		return; /* out of memory: not an input bug */
	}
	if (f->whole ? dkim_msg_header(m, f->bytes, &sig) != 0 : dkim_msg_header_big(m, f->bytes, &sig) != 0) {
		return;
	}
}

static struct outcome run(const uint8_t *p, size_t len, size_t cut)
{
	struct outcome o = { .body_at = SIZE_MAX };
	struct hdrsplit s;
	struct hdrsplit_field f;
	struct dmarc_from_seen from = { 0 };
	struct dkim_msg *m = dkim_msg_new(NULL);
	char dom[PSL_NAME_MAX + 1];
	size_t at = 0;

	CHECK(m != NULL);
	hdrsplit_init(&s);
	while (at < len && o.body_at == SIZE_MAX) {
		size_t n = at < cut ? cut - at : len - at;
		struct span in = span_make(p + at, n);
		enum hdrsplit_ev ev;

		while ((ev = hdrsplit_next(&s, &f, &in)) == HDRSPLIT_FIELD) {
			take(&o, &from, m, &s, &f);
		}
		CHECK(in.len <= n && (ev == HDRSPLIT_END || in.len == 0));
		if (ev == HDRSPLIT_END) {
			o.body_at = at + n - in.len;
			CHECK(o.body_at == s.header_bytes);
		}
		at += n;
	}
	if (o.body_at == SIZE_MAX) {
		while (hdrsplit_finish(&s, &f) == HDRSPLIT_FIELD) {
			take(&o, &from, m, &s, &f);
		}
	}
	o.from = dmarc_from_seen_domain(&from, dom, sizeof(dom));
	o.num_from = from.num;
	CHECK(o.from != DMARC_FROM_NONE || from.num == 0 || from.value != NULL);
	CHECK(from.num > 0 || o.from == DMARC_FROM_NONE);
	dkim_msg_headers_end(m);
	o.num_sigs = dkim_msg_num_sigs(m);
	dkim_msg_free(m);
	dmarc_from_seen_fini(&from);
	hdrsplit_fini(&s);
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome a, b;
	size_t cut;

	if (size < 2) {
		return 0;
	}
	cut = ((size_t)data[0] << 8 | data[1]) % (size - 1);
	a = run(data + 2, size - 2, size - 2);
	b = run(data + 2, size - 2, cut);
	CHECK(a.num_fields == b.num_fields && a.num_big == b.num_big && a.body_at == b.body_at);
	CHECK(a.len_sum == b.len_sum && a.from == b.from && a.num_from == b.num_from && a.num_sigs == b.num_sigs);
	return 0;
}
