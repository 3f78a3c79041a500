/*
 * fuzz_proxy.c - libFuzzer target for the PROXY protocol header parser
 * (proto/proxy.c). Invariants: never reads past the input (ASan), consumed
 * <= input and <= PROXY_HDR_MAX on OK, the header alone parses the same,
 * every shorter prefix of it is MORE, and the addresses are NUL-terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proxy.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr h, h2;
	size_t c = 0, c2 = 0;
	enum proxy_parse rc = proxy_parse(&h, &c, span_make(data, size));

	CHECK((unsigned)rc < PROXY_PARSE_COUNT);
	if (rc != PROXY_PARSE_OK) {
		return 0;
	}
	CHECK(c > 0 && c <= size && c <= PROXY_HDR_MAX);
	CHECK(memchr(h.src_ip, 0, sizeof(h.src_ip)) != NULL && memchr(h.dst_ip, 0, sizeof(h.dst_ip)) != NULL);
	CHECK(h.local || h.src_ip[0] != '\0');
	CHECK(proxy_parse(&h2, &c2, span_make(data, c)) == PROXY_PARSE_OK && c2 == c);
	CHECK(h2.local == h.local && h2.src_port == h.src_port && strcmp(h2.src_ip, h.src_ip) == 0);
	CHECK(proxy_parse(&h2, &c2, span_make(data, c - 1)) == PROXY_PARSE_MORE);
	return 0;
}
