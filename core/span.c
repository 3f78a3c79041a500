/* span.c - bounded byte cursor; see span.h. */
#include "span.h"

static inline uint8_t ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

bool span_take_until(struct span *c, struct span *out, uint8_t delim)
{
	const uint8_t *hit = c->len ? memchr(c->p, delim, c->len) : NULL;

	if (hit == NULL) {
		return false;
	}
	out->p = c->p;
	out->len = (size_t)(hit - c->p);
	c->p = hit;
	c->len -= out->len;
	return true;
}

bool span_take(struct span *c, struct span *out, size_t n)
{
	if (n > c->len) {
		return false;
	}
	out->p = c->p;
	out->len = n;
	c->p += n;
	c->len -= n;
	return true;
}

bool span_eat_ci(struct span *c, const char *lit)
{
	size_t n = strlen(lit);

	if (n > c->len) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (ascii_lower(c->p[i]) != ascii_lower((uint8_t)lit[i])) {
			return false;
		}
	}
	c->p += n;
	c->len -= n;
	return true;
}

bool span_eq_ci(struct span s, const char *lit)
{
	return strlen(lit) == s.len && span_eat_ci(&s, lit);
}

bool span_eq(struct span a, struct span b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool span_get_dec_u64(struct span *c, uint64_t *out, uint64_t max)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < c->len && c->p[i] >= '0' && c->p[i] <= '9') {
		uint64_t d = (uint64_t)(c->p[i] - '0');

		if (i >= 20 || v > (UINT64_MAX - d) / 10) {
			return false;
		}
		v = v * 10 + d;
		i++;
	}
	if (i == 0 || v > max) {
		return false;
	}
	c->p += i;
	c->len -= i;
	*out = v;
	return true;
}

struct span span_trim_ws(struct span s)
{
	while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
		s.p++;
		s.len--;
	}
	while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t')) {
		s.len--;
	}
	return s;
}
