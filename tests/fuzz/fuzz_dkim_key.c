/*
 * fuzz_dkim_key.c - libFuzzer target for DKIM key records (verify/dkim_key.c)
 * and TXT rdata handling (verify/dns_txt.c). The input is used both as a
 * key record and as TXT rdata; a record that joins cleanly is parsed too.
 * Invariants: a parsed key fits DKIM_KEY_P_MAX, a refusal has a reason,
 * records lie inside the answer buffer.
 */
#include <stdint.h>
#include <stdlib.h>

#include "verify/dkim_key.h"
#include "verify/dns.h"

#define CHECK(c)                  \
	do {                      \
		if (!(c)) {       \
			abort();  \
		}                 \
	} while (0)

static void key(struct span rec)
{
	static struct dkim_key k;
	const char *why = NULL;

	if (dkim_key_parse(&k, &why, rec) == AUTH_NONE) {
		CHECK(k.p_len > 0 && k.p_len <= DKIM_KEY_P_MAX);
	} else {
		CHECK(why != NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dns_txt_answer a;
	const uint8_t *rd[1] = { data };
	size_t rl[1] = { size };

	key(span_make(data, size));
	if (dns_txt_from_rdata(&a, rd, rl, 1) == DNS_OK) {
		CHECK(a.num_records == 1 && a.buf_len <= sizeof(a.buf));
		CHECK(a.rec[0].p >= a.buf && a.rec[0].p + a.rec[0].len <= a.buf + a.buf_len);
		key(a.rec[0]);
	}
	return 0;
}
