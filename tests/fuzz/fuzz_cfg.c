/*
 * fuzz_cfg.c - the config-file parser (core/cfg.c) takes any text: it
 * either applies it or fails with a "name:line: key: message" error, and
 * never overreads, leaks or leaves a half-built config that crashes later.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg c;
	char *err = NULL;

	cfg_init(&c);
	if (cfg_parse_text(&c, (const char *)data, size, "fuzz.conf", &err) == 0) {
		if (err != NULL) {
			abort(); /* success never reports an error */
		}
		if (cfg_finish(&c, &err) == 0 && (c.num_listen == 0 || c.num_sinks == 0 || c.hostname == NULL)) {
			abort();
		}
	} else if (err == NULL || strncmp(err, "fuzz.conf:", 10) != 0) {
		abort(); /* every error names where it is */
	}
	free(err);
	cfg_fini(&c);
	return 0;
}
