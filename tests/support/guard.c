/* guard.c - see guard.h. */
#include "guard.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t guard_pages(size_t len, size_t *out_pg)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	*out_pg = pg;
	return (len + pg - 1) / pg + 1;
}

const uint8_t *guard_copy(const void *p, size_t len)
{
	size_t pg, n = guard_pages(len, &pg);
	uint8_t *m = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		abort();
	}
	if (mprotect(m + (n - 1) * pg, pg, PROT_NONE) != 0) {
		abort();
	}
	uint8_t *start = m + (n - 1) * pg - len;
	if (len) {
		memcpy(start, p, len);
	}
	return start;
}

void guard_release(const uint8_t *g, size_t len)
{
	size_t pg, n = guard_pages(len, &pg);
	uintptr_t end = (uintptr_t)(g + len);

	munmap((void *)(end - (n - 1) * pg), n * pg);
}
