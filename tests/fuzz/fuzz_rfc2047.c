/*
 * fuzz_rfc2047.c - libFuzzer target for encoded words (proto/rfc2047.c),
 * MIME parameters (proto/rfc2231.c) and charset conversion: the output is
 * always valid UTF-8, with any NUL (written or decoded) replaceable by
 * U+FFFD, and parameter values never exceed their buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/bb.h"
#include "proto/charset.h"
#include "proto/rfc2047.h"
#include "proto/rfc2231.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bb b, z;
	uint8_t val[64];
	size_t n, num_nul = 0;
	struct span cs;
	unsigned flags;
	char t[MIME_TOKEN_MAX], s[MIME_TOKEN_MAX];

	bb_init(&b, 0);
	CHECK(rfc2047_decode(&b, span_make(data, size), NULL) == 0);
	CHECK(utf8_valid(bb_span(&b)));
	/* As the message model stores it: no NUL left, nothing else changed. */
	bb_init(&z, 0);
	CHECK(utf8_replace_nul(&z, bb_span(&b), &num_nul) == 0);
	CHECK(z.len == b.len + 2 * num_nul);
	CHECK(z.len == 0 || memchr(z.p, '\0', z.len) == NULL);
	CHECK(utf8_valid(bb_span(&z)));
	bb_fini(&z);
	bb_fini(&b);
	if (rfc2231_param(span_make(data, size), "name", val, sizeof(val), &n, &cs, &flags)) {
		CHECK(n <= sizeof(val));
		CHECK(cs.len == 0 || (cs.p >= data && cs.p + cs.len <= data + size));
		bb_init(&b, 0);
		int rc = charset_to_utf8(&b, cs, span_make(val, n), NULL);

		CHECK(rc == 0 || rc == -2 /* ENOENT */);
		CHECK(utf8_valid(bb_span(&b)));
		bb_fini(&b);
	}
	if (rfc2231_ctype(span_make(data, size), t, s)) {
		CHECK(strlen(t) < MIME_TOKEN_MAX && strlen(s) < MIME_TOKEN_MAX);
	}
	return 0;
}
