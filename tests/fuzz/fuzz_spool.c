/*
 * fuzz_spool.c - the spool file parser (core/spool.c) must reject or accept
 * any byte string without overreading, and what it accepts must lie inside
 * the input: the message span, a bounded envelope.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_entry ent;
	uint8_t *copy = malloc(size ? size : 1);

	if (copy == NULL) {
		return 0;
	}
	memcpy(copy, data, size);
	if (spool_parse(&ent, copy, size) != 0) {
		free(copy);
		return 0;
	}
	if (ent.msg.p < ent.data || ent.msg.p + ent.msg.len > ent.data + ent.data_len ||
	    ent.auth.p != ent.msg.p + ent.msg.len || ent.auth.p + ent.auth.len > ent.data + ent.data_len) {
		abort();
	}
	if (strlen(ent.env.id) >= MSG_ID_MAX || ent.env.num_rcpts == 0) {
		abort();
	}
	for (size_t i = 0; i < ent.env.num_rcpts; i++) {
		if (strchr(ent.env.rcpts[i], '\n') != NULL) {
			abort();
		}
	}
	spool_entry_fini(&ent);
	return 0;
}
