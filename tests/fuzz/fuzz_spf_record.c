/*
 * fuzz_spf_record.c - libFuzzer target for the SPF record parser
 * (verify/spf_record.c) and the generic DNS answer decoder
 * (dns_answer_from_rdata, every type). Invariants: an accepted record's
 * term iterator yields exactly num_terms mechanisms whose spans lie inside
 * the input, with CIDR lengths in range; a refusal has a reason and a
 * position inside the input; decoded records lie inside the answer buffer.
 */
#include <stdint.h>
#include <stdlib.h>

#include "verify/dns.h"
#include "verify/spf.h"

#define CHECK(c)                  \
	do {                      \
		if (!(c)) {       \
			abort();  \
		}                 \
	} while (0)

static bool inside(struct span s, const uint8_t *p, size_t n)
{
	return s.len == 0 || (s.p >= p && s.p + s.len <= p + n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_PTR, DNS_T_TXT };
	static struct dns_answer a;
	struct spf_record r;
	const char *why = NULL;
	size_t pos = 0;
	const uint8_t *rd[1] = { data };
	size_t rl[1] = { size };

	if (spf_record_parse(&r, &why, &pos, span_make(data, size)) == AUTH_NONE) {
		struct span c = r.terms;
		struct spf_term t;
		unsigned n = 0;

		CHECK(inside(r.terms, data, size) && inside(r.redirect, data, size) && inside(r.exp, data, size));
		while (spf_term_next(&c, &t)) {
			CHECK(inside(t.domain, data, size));
			CHECK(t.cidr4 <= 32 && t.cidr6 <= 128);
			CHECK((unsigned)t.mech < SPF_M_COUNT);
			n++;
		}
		CHECK(n == r.num_terms);
	} else {
		CHECK(why != NULL && pos <= size);
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (dns_answer_from_rdata(&a, types[i], rd, rl, 1) == DNS_OK) {
			for (unsigned k = 0; k < a.num_records; k++) {
				CHECK(inside(a.rr[k].data, a.buf, a.buf_len));
			}
		}
	}
	return 0;
}
