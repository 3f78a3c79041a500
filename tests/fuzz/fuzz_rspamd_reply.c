/*
 * fuzz_rspamd_reply.c - libFuzzer target for rspamd's /checkv2 reply as the
 * verify pool reads it (verify/rspamd.c), and the X-Spam-* fields written
 * from what was read. Never crash or read past the input; the stop offset
 * is inside it; a verdict's action and symbol names are clean and bounded;
 * the fields are printable ASCII lines ending in CRLF, continuation lines
 * start with a tab, and nothing else starts a line (no injected field).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/rspamd.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

static void check_fields(const struct bb *b)
{
	size_t i = 0;

	while (i < b->len) {
		size_t start = i;

		while (i < b->len && b->p[i] != '\r') {
			CHECK(b->p[i] >= 0x20 && b->p[i] < 0x7f || b->p[i] == '\t');
			i++;
		}
		CHECK(i + 1 < b->len + 1 && b->p[i] == '\r' && i + 1 < b->len && b->p[i + 1] == '\n');
		CHECK(b->p[start] == '\t' || memcmp(b->p + start, "X-Spam-", 7) == 0);
		i += 2;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rspamd_reply r;
	size_t pos = 0;
	enum rspamd_rc rc = rspamd_reply_parse(&r, &pos, data, size);
	struct bb b;

	CHECK(rc < RSPAMD_RC_COUNT && pos <= size);
	bb_init(&b, 0);
	if (rc == RSPAMD_OK) {
		CHECK(r.num_symbols <= RSPAMD_SYMBOLS_MAX);
		CHECK(strlen(r.action) < RSPAMD_ACTION_MAX);
		for (const char *a = r.action; *a; a++) {
			CHECK((*a >= 'a' && *a <= 'z') || *a == ' ' || *a == '_');
		}
		for (unsigned i = 0; i < r.num_symbols; i++) {
			CHECK(strlen(r.sym[i].name) < RSPAMD_NAME_MAX);
			for (const char *n = r.sym[i].name; *n; n++) {
				CHECK((*n >= 'A' && *n <= 'Z') || (*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') ||
				      *n == '_' || *n == '.' || *n == '-');
			}
		}
		CHECK(rspamd_fields_write(&b, &r, NULL) == 0);
	} else {
		char err[64];
		size_t n = size < sizeof(err) - 1 ? size : sizeof(err) - 1;

		memcpy(err, data, n);
		err[n] = '\0';
		CHECK(rspamd_fields_write(&b, NULL, err) == 0);
	}
	check_fields(&b);
	bb_fini(&b);
	return 0;
}
