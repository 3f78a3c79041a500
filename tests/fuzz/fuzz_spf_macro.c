/*
 * fuzz_spf_macro.c - libFuzzer target for SPF macro expansion
 * (verify/spf_macro.c, RFC 7208 §7). The first byte picks the flags and
 * client address family; the rest is the macro-string. Invariants: the
 * syntax-only pass agrees with the expanding pass, the output fits the
 * buffer, a domain expansion is at most 253 octets (plus a final dot).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/spf.h"

#define CHECK(c)                  \
	do {                      \
		if (!(c)) {       \
			abort();  \
		}                 \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[SPF_EXPAND_MAX];
	struct spf_macro_env e = {
		.sender = "strong-bad@email.example.com",
		.local = "strong-bad",
		.sender_domain = "email.example.com",
		.domain = "a-b.c_d.example.com",
		.helo = "mx.example.org",
		.receiver = NULL,
		.validated = "mx.example.org",
		.now = 1234567890,
		.ip = { 0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 },
	};
	unsigned flags;
	size_t len = 0, pos = 0, len0 = 0, pos0 = 0;
	enum spf_macro_rc rc, rc0;
	struct span in;

	if (size == 0) {
		return 0;
	}
	flags = data[0] & (SPF_MACRO_EXP | SPF_MACRO_DOMAIN);
	e.ipv6 = (data[0] & 4) != 0;
	in = span_make(data + 1, size - 1);
	rc0 = spf_macro_expand(NULL, 0, &len0, &pos0, NULL, in, flags);
	rc = spf_macro_expand(out, sizeof(out), &len, &pos, &e, in, flags);
	CHECK(rc0 != SPF_MACRO_TOO_LONG);
	if (rc0 == SPF_MACRO_SYNTAX) {
		CHECK(rc == SPF_MACRO_SYNTAX && pos == pos0 && pos0 <= in.len);
	} else {
		CHECK(rc != SPF_MACRO_SYNTAX);
	}
	if (rc == SPF_MACRO_OK) {
		CHECK(len <= sizeof(out));
		if (flags & SPF_MACRO_DOMAIN) {
			CHECK(len <= SPF_DOMAIN_MAX + 1);
		}
	}
	(void)spf_macro_uses_p(in);
	(void)spf_domain_ok(in);
	return 0;
}
