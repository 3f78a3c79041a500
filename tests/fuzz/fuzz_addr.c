/*
 * fuzz_addr.c - libFuzzer target for address lists (proto/addr.c) and
 * dates (proto/date.c): never crash, every item has all strings, and the
 * strings are valid UTF-8 (names are decoded with replacement). A NUL in
 * the input never cuts a string (it is U+FFFD; see the email bound).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/addr.h"
#include "proto/charset.h"
#include "proto/date.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct addr_list l;
	int64_t t;
	char iso[DATE_ISO_LEN];

	CHECK(addr_list_parse(&l, span_make(data, size)) == 0);
	CHECK(l.num <= ADDR_LIST_MAX);
	for (size_t i = 0; i < l.num; i++) {
		const struct addr_item *it = &l.items[i];

		CHECK(it->name && it->email && it->local && it->domain);
		CHECK(utf8_valid(span_cstr(it->name)));
		/* Words are re-joined with spaces, open quotes closed, and each NUL is U+FFFD (3 bytes). */
		CHECK(strlen(it->email) <= 4 * size + 2);
	}
	addr_list_fini(&l);
	if (date_parse(span_make(data, size), &t)) {
		date_iso(iso, t);
		CHECK(strlen(iso) == DATE_ISO_LEN - 1);
	}
	return 0;
}
