/*
 * fuzz_dns_answer.c - libFuzzer target for the DNS answers as verify/ sees
 * them (verify/dns_txt.c, verify/dns.c): the input is split into rdatas at
 * the marker "\xff\xfe" (a resolver hands them over one by one), octet 0
 * picks the record type. Invariants: never reads outside an rdata (ASan),
 * a status in range, and on DNS_OK every record span lies inside the
 * answer's own buffer, no more records than the bounds allow.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dns.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

#define RDATA_MAX 64

static bool inside(const uint8_t *buf, size_t buf_len, struct span s)
{
	return s.len == 0 || (s.p >= buf && s.p + s.len <= buf + buf_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_PTR, DNS_T_TXT };
	static struct dns_answer a;
	static struct dns_txt_answer t;
	const uint8_t *rd[RDATA_MAX];
	size_t rl[RDATA_MAX], n = 0, pos = 1;
	uint16_t qtype;
	enum dns_status st;

	if (size < 1) {
		return 0;
	}
	qtype = types[data[0] % (sizeof(types) / sizeof(types[0]))];
	while (pos <= size && n < RDATA_MAX) {
		const uint8_t *m = NULL;

		for (size_t i = pos; i + 1 < size; i++) {
			if (data[i] == 0xff && data[i + 1] == 0xfe) {
				m = data + i;
				break;
			}
		}
		rd[n] = data + pos;
		rl[n] = m ? (size_t)(m - (data + pos)) : size - pos;
		n++;
		if (m == NULL) {
			break;
		}
		pos = (size_t)(m - data) + 2;
	}
	st = dns_answer_from_rdata(&a, qtype, rd, rl, n);
	CHECK((unsigned)st < DNS_STATUS_COUNT && st == a.status);
	if (st == DNS_OK) {
		CHECK(a.num_records >= 1 && a.num_records <= DNS_RR_MAX && a.buf_len <= sizeof(a.buf));
		for (unsigned i = 0; i < a.num_records; i++) {
			CHECK(inside(a.buf, a.buf_len, a.rr[i].data));
			if (qtype == DNS_T_A) {
				CHECK(a.rr[i].data.len == 4);
			} else if (qtype == DNS_T_AAAA) {
				CHECK(a.rr[i].data.len == 16);
			}
		}
	}
	st = dns_txt_from_rdata(&t, rd, rl, n);
	CHECK((unsigned)st < DNS_STATUS_COUNT && st == t.status);
	if (st == DNS_OK) {
		CHECK(t.num_records >= 1 && t.num_records <= DNS_TXT_RECORDS_MAX && t.buf_len <= sizeof(t.buf));
		for (unsigned i = 0; i < t.num_records; i++) {
			CHECK(inside(t.buf, t.buf_len, t.rec[i]));
		}
	}
	return 0;
}
