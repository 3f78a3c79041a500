/*
 * hist.h - log-linear latency histogram (after HdrHistogram).
 *
 * Values are unsigned 64-bit (oceanmx-load records nanoseconds). Values
 * below HIST_SUB are counted exactly; above, each power-of-two range is
 * split into HIST_SUB/2 equal buckets, so a reported quantile is within
 * 1/64 (1.6%) of the true value, whatever the magnitude. min, max and the
 * sum are exact. A hist is plain caller storage (about 30 KiB): no heap,
 * no locks; one per thread, merged at the end.
 */
#ifndef OMX_LOAD_HIST_H
#define OMX_LOAD_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS) /* 128: exact below this */
#define HIST_BUCKETS  (HIST_SUB + (64 - HIST_SUB_BITS) * (HIST_SUB / 2))

struct hist {
	uint64_t count;
	uint64_t min, max;
	long double sum;
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);

/* hist_record counts one value. */
void hist_record(struct hist *h, uint64_t v);

/* hist_merge adds every count of `src` into `dst`. */
void hist_merge(struct hist *dst, const struct hist *src);

/*
 * hist_quantile returns the value at quantile q (0..1): the highest value
 * equivalent to the bucket holding the ceil(q*count)-th smallest value,
 * clamped to [min, max]. q >= 1 gives max exactly; an empty hist gives 0.
 */
uint64_t hist_quantile(const struct hist *h, double q);

/* hist_mean returns the exact mean, or 0 when empty. */
double hist_mean(const struct hist *h);

/* hist_index and hist_bucket_low map values to buckets and back (tests). */
unsigned hist_index(uint64_t v);
uint64_t hist_bucket_low(unsigned idx);
uint64_t hist_bucket_high(unsigned idx);

#endif
