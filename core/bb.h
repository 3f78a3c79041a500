/*
 * bb.h - growable byte builder with a hard cap.
 *
 * A bb owns its heap buffer (bb_fini frees it). Appends copy; they fail
 * with -ENOMEM when allocation fails and -E2BIG when the result would pass
 * `cap`, and leave the builder unchanged on failure. An empty bb holds no
 * memory, so an idle owner (a session between commands) costs nothing.
 */
#ifndef OMX_BB_H
#define OMX_BB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

struct bb {
	uint8_t *p;
	size_t len;
	size_t alloc;
	size_t cap; /* hard limit on len; 0 means SIZE_MAX */
};

void bb_init(struct bb *b, size_t cap);
void bb_fini(struct bb *b);

/* bb_reset empties the builder; with `release` it also frees the buffer. */
void bb_reset(struct bb *b, int release);

__attribute__((warn_unused_result)) int bb_reserve(struct bb *b, size_t extra);
__attribute__((warn_unused_result)) int bb_append(struct bb *b, const void *p, size_t len);
__attribute__((warn_unused_result)) int bb_append_span(struct bb *b, struct span s);
__attribute__((warn_unused_result)) int bb_append_str(struct bb *b, const char *s);
__attribute__((warn_unused_result, format(printf, 2, 3))) int bb_printf(struct bb *b, const char *fmt, ...);
__attribute__((warn_unused_result, format(printf, 2, 0))) int bb_vprintf(struct bb *b, const char *fmt, va_list ap);

/* bb_consume drops n bytes from the front (n <= len). */
void bb_consume(struct bb *b, size_t n);

static inline struct span bb_span(const struct bb *b)
{
	return span_make(b->p, b->len);
}

#endif
