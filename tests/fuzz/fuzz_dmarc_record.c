/*
 * fuzz_dmarc_record.c - libFuzzer target for the DMARC record parser
 * (verify/dmarc.c, RFC 7489 §6.3) and the From-domain extraction. The
 * input is parsed as a record and as a From field value. Invariants:
 * values stay in range, URI spans lie inside the input, the From domain
 * is a NUL-terminated string that fits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dmarc.h"

#define CHECK(c)                  \
	do {                      \
		if (!(c)) {       \
			abort();  \
		}                 \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmarc_record r;
	size_t pos = 0;
	char dom[PSL_NAME_MAX + 1];
	enum dmarc_parse_rc rc = dmarc_record_parse(&r, &pos, span_make(data, size));

	CHECK(pos <= size);
	CHECK(r.pct <= 100 && (unsigned)r.p < DMARC_P_COUNT && (unsigned)r.sp < DMARC_P_COUNT);
	CHECK(r.num_rua <= DMARC_URIS_MAX && r.num_ruf <= DMARC_URIS_MAX);
	for (unsigned i = 0; i < r.num_rua; i++) {
		CHECK(r.rua[i].p >= data && r.rua[i].p + r.rua[i].len <= data + size);
	}
	for (unsigned i = 0; i < r.num_ruf; i++) {
		CHECK(r.ruf[i].p >= data && r.ruf[i].p + r.ruf[i].len <= data + size);
	}
	if (rc == DMARC_PARSE_OK) {
		CHECK(r.p != DMARC_P_UNSET && !r.bad_p && !r.bad_sp);
	}
	if (dmarc_from_domain(dom, sizeof(dom), span_make(data, size)) == DMARC_FROM_OK) {
		CHECK(strlen(dom) > 0 && strlen(dom) < sizeof(dom));
	}
	return 0;
}
