/*
 * span.h - bounded, non-owning byte cursor (after BoringSSL's CBS).
 *
 * A span borrows its bytes: it never owns or frees them, and it is valid
 * only as long as the memory it points into. Every reader consumes from
 * the front and never overruns; on failure the cursor has not moved.
 * Wire bytes are never NUL-terminated and never go to str* functions.
 */
#ifndef OMX_SPAN_H
#define OMX_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct span {
	const uint8_t *p;
	size_t len;
};

static inline struct span span_make(const void *p, size_t len)
{
	struct span s = { (const uint8_t *)p, len };
	return s;
}

/* span_lit builds a span over a string literal (without its NUL). */
#define SPAN_LIT(s) span_make((s), sizeof(s) - 1)

static inline struct span span_cstr(const char *s)
{
	return span_make(s, strlen(s));
}

static inline bool span_empty(struct span s)
{
	return s.len == 0;
}

/* span_skip drops n bytes from the front; false (unmoved) if fewer remain. */
static inline bool span_skip(struct span *c, size_t n)
{
	if (n > c->len) {
		return false;
	}
	c->p += n;
	c->len -= n;
	return true;
}

static inline bool span_get_u8(struct span *c, uint8_t *out)
{
	if (c->len == 0) {
		return false;
	}
	*out = c->p[0];
	c->p++;
	c->len--;
	return true;
}

/* span_peek_u8 returns the first byte or -1 when empty. */
static inline int span_peek_u8(struct span c)
{
	return c.len ? c.p[0] : -1;
}

/*
 * span_take_until moves the bytes before the first `delim` into *out and
 * leaves the cursor on the delimiter. False (cursor unchanged) if absent.
 */
bool span_take_until(struct span *c, struct span *out, uint8_t delim);

/* span_take takes exactly n bytes into *out; false (unmoved) if short. */
bool span_take(struct span *c, struct span *out, size_t n);

/* span_eat_ci consumes `lit` if the span starts with it, ASCII case-insensitively. */
bool span_eat_ci(struct span *c, const char *lit);

/* span_eq_ci compares a whole span with `lit`, ASCII case-insensitively. */
bool span_eq_ci(struct span s, const char *lit);

/* span_eq compares two spans byte for byte. */
bool span_eq(struct span a, struct span b);

/*
 * span_get_dec_u64 parses 1..20 decimal digits (no sign, no spaces) that
 * must not exceed `max`. False (unmoved) on empty, overflow or > max.
 */
bool span_get_dec_u64(struct span *c, uint64_t *out, uint64_t max);

/* span_trim_ws drops leading and trailing spaces and tabs. */
struct span span_trim_ws(struct span s);

#endif
