/* bb.c - byte builder; see bb.h. */
#include "bb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bb_init(struct bb *b, size_t cap)
{
	b->p = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap ? cap : SIZE_MAX;
}

void bb_fini(struct bb *b)
{
	free(b->p); b->p = NULL;
	b->len = 0;
	b->alloc = 0;
}

void bb_reset(struct bb *b, int release)
{
	b->len = 0;
	if (release) {
		free(b->p); b->p = NULL;
		b->alloc = 0;
	}
}

int bb_reserve(struct bb *b, size_t extra)
{
	size_t need, n;
	uint8_t *np;

	if (extra > b->cap || b->len > b->cap - extra) {
		return -E2BIG;
	}
	need = b->len + extra;
	if (need <= b->alloc) {
		return 0;
	}
	n = b->alloc ? b->alloc : 64;
	while (n < need) {
		n = (n > SIZE_MAX / 2) ? need : n * 2;
	}
	if (n > b->cap) {
		n = b->cap;
	}
	np = realloc(b->p, n);
	if (np == NULL) {
		return -ENOMEM;
	}
	b->p = np;
	b->alloc = n;
	return 0;
}

int bb_append(struct bb *b, const void *p, size_t len)
{
	int rc;

	if (len == 0) {
		return 0;
	}
	rc = bb_reserve(b, len);
	if (rc != 0) {
		return rc;
	}
	memcpy(b->p + b->len, p, len);
	b->len += len;
	return 0;
}

int bb_append_span(struct bb *b, struct span s)
{
	return bb_append(b, s.p, s.len);
}

int bb_append_str(struct bb *b, const char *s)
{
	return bb_append(b, s, strlen(s));
}

__attribute__((format(printf, 2, 0))) int bb_vprintf(struct bb *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n, rc;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0) {
		return -EINVAL;
	}
	rc = bb_reserve(b, (size_t)n + 1);
	if (rc != 0) {
		return rc;
	}
	vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int bb_printf(struct bb *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = bb_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void bb_consume(struct bb *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}
