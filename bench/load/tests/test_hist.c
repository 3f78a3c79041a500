/* test_hist.c - bench/load/hist.c: bucket mapping, quantiles, merge. */
#include <criterion/criterion.h>

#include "hist.h"

Test(hist, small_values_are_exact)
{
	for (uint64_t v = 0; v < HIST_SUB; v++) {
		cr_assert_eq(hist_index(v), v);
		cr_assert_eq(hist_bucket_low((unsigned)v), v);
	}
}

Test(hist, every_value_lies_in_its_bucket)
{
	uint64_t vals[] = { 128, 129, 255, 256, 1000, 4095, 4096, 123456789, 1ull << 40, (1ull << 63) + 12345,
			    UINT64_MAX };

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		unsigned idx = hist_index(vals[i]);

		cr_assert_lt(idx, HIST_BUCKETS);
		cr_assert_leq(hist_bucket_low(idx), vals[i], "v=%llu", (unsigned long long)vals[i]);
		cr_assert_geq(hist_bucket_high(idx), vals[i], "v=%llu", (unsigned long long)vals[i]);
		/* Relative width bound: 1/64. */
		cr_assert_leq((double)(hist_bucket_high(idx) - hist_bucket_low(idx)), (double)vals[i] / 64.0 + 1);
	}
}

Test(hist, buckets_are_contiguous)
{
	for (unsigned i = 1; i < HIST_BUCKETS; i++) {
		cr_assert_eq(hist_bucket_low(i), hist_bucket_high(i - 1) + 1, "idx %u", i);
		cr_assert_eq(hist_index(hist_bucket_low(i)), i);
		cr_assert_eq(hist_index(hist_bucket_high(i)), i);
	}
}

Test(hist, empty_gives_zero)
{
	struct hist h;

	hist_init(&h);
	cr_assert_eq(hist_quantile(&h, 0.5), 0);
	cr_assert_eq(hist_quantile(&h, 1.0), 0);
	cr_assert_eq(hist_mean(&h), 0.0);
}

Test(hist, quantiles_of_a_uniform_range)
{
	static struct hist h;
	double qs[] = { 0.5, 0.9, 0.99, 0.999 };

	hist_init(&h);
	for (uint64_t v = 1; v <= 1000000; v++) {
		hist_record(&h, v);
	}
	cr_assert_eq(h.count, 1000000);
	cr_assert_eq(h.min, 1);
	cr_assert_eq(h.max, 1000000);
	cr_assert_eq(hist_quantile(&h, 1.0), 1000000);
	cr_assert_float_eq(hist_mean(&h), 500000.5, 1e-6);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		double want = qs[i] * 1e6;
		double got = (double)hist_quantile(&h, qs[i]);

		cr_assert_geq(got, want, "q=%g got %g", qs[i], got);
		cr_assert_leq(got, want * (1 + 1.0 / 64), "q=%g got %g", qs[i], got);
	}
}

Test(hist, quantile_picks_the_outlier)
{
	static struct hist h;

	hist_init(&h);
	for (int i = 0; i < 999; i++) {
		hist_record(&h, 1000);
	}
	hist_record(&h, 5000000);
	cr_assert_leq(hist_quantile(&h, 0.99), 1000 + 1000 / 64);
	cr_assert_geq(hist_quantile(&h, 0.999), 1000);
	cr_assert_eq(hist_quantile(&h, 0.9991), 5000000);
	cr_assert_eq(hist_quantile(&h, 1.0), 5000000);
}

Test(hist, merge_equals_recording_everything_in_one)
{
	static struct hist a, b, all;

	hist_init(&a);
	hist_init(&b);
	hist_init(&all);
	for (uint64_t v = 1; v < 200000; v += 7) {
		hist_record(v % 2 ? &a : &b, v * 13);
		hist_record(&all, v * 13);
	}
	hist_merge(&a, &b);
	cr_assert_eq(a.count, all.count);
	cr_assert_eq(a.min, all.min);
	cr_assert_eq(a.max, all.max);
	cr_assert_eq(memcmp(a.b, all.b, sizeof(a.b)), 0);
	for (double q = 0.05; q < 1.0; q += 0.05) {
		cr_assert_eq(hist_quantile(&a, q), hist_quantile(&all, q));
	}
}
