/*
 * hist.c - log-linear histogram: see hist.h. Bucket layout:
 *   idx < HIST_SUB                    value == idx (exact)
 *   idx = HIST_SUB + (s-1)*HALF + r   values [(HALF+r) << s, (HALF+r+1) << s)
 * where HALF = HIST_SUB/2, s >= 1 is the shift that brings v into
 * [HALF, HIST_SUB), and r < HALF.
 */
#include "hist.h"

#include <string.h>

#define HALF (HIST_SUB / 2)

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned hist_index(uint64_t v)
{
	unsigned msb, s;

	if (v < HIST_SUB) {
		return (unsigned)v;
	}
	msb = 63u - (unsigned)__builtin_clzll(v);
	s = msb - (HIST_SUB_BITS - 1);
	return HIST_SUB + (s - 1) * HALF + (unsigned)((v >> s) - HALF);
}

uint64_t hist_bucket_low(unsigned idx)
{
	unsigned s, r;

	if (idx < HIST_SUB) {
		return idx;
	}
	s = (idx - HIST_SUB) / HALF + 1;
	r = (idx - HIST_SUB) % HALF;
	return (uint64_t)(HALF + r) << s;
}

uint64_t hist_bucket_high(unsigned idx)
{
	unsigned s;

	if (idx < HIST_SUB) {
		return idx;
	}
	s = (idx - HIST_SUB) / HALF + 1;
	return hist_bucket_low(idx) + ((uint64_t)1 << s) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->count++;
	h->sum += (long double)v;
	if (v < h->min) {
		h->min = v;
	}
	if (v > h->max) {
		h->max = v;
	}
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (src->count == 0) {
		return;
	}
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		dst->b[i] += src->b[i];
	}
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min) {
		dst->min = src->min;
	}
	if (src->max > dst->max) {
		dst->max = src->max;
	}
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (h->count == 0) {
		return 0;
	}
	if (q >= 1.0) {
		return h->max;
	}
	if (q <= 0.0) {
		return h->min;
	}
	rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count) {
		rank++; /* ceil */
	}
	if (rank == 0) {
		rank = 1;
	}
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t v = hist_bucket_high(i);

			if (v > h->max) {
				v = h->max;
			}
			if (v < h->min) {
				v = h->min;
			}
			return v;
		}
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}
