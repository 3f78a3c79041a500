/*
 * metrics.h - the metrics registry and the Prometheus text exposition
 * (format 0.0.4) that /metrics serves.
 *
 * Counters live where they are counted, as plain structs of _Atomic
 * uint64_t owned by one thread (a shard, a delivery worker): the owner
 * writes them with metrics_add()/metrics_set() (a relaxed load and a
 * relaxed store: no locked read-modify-write, no fence on the hot path),
 * and the scraper reads them with relaxed loads. A counter has exactly one
 * writer, so nothing is lost; a scrape may see one owner's counters a few
 * increments apart, which Prometheus tolerates.
 *
 * A module makes its counters visible by registering a source: a callback
 * that appends its families to the exposition at scrape time, on the
 * metrics thread. Readiness (/readyz) works the same way: each registered
 * check may veto. Sources and checks are registered by the main thread
 * before metrics_serve_start() or later (the registry has its own mutex,
 * taken by the scraper and registrants only, never by a shard).
 */
#ifndef OMX_METRICS_H
#define OMX_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bb.h"

/* metrics_add adds n to a counter that only the calling thread writes. */
static inline void metrics_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* metrics_set stores a gauge value that only the calling thread writes. */
static inline void metrics_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

/* metrics_get reads a counter or gauge written by another thread. */
static inline uint64_t metrics_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)c, memory_order_relaxed);
}

/*
 * A histogram with fixed upper bounds (ascending, in the unit of the
 * observations); one writer, like the counters. b[i] counts observations
 * <= bounds[i] and not <= bounds[i - 1]; b[num_bounds] counts the rest.
 * The exposition makes the buckets cumulative.
 */
#define METRICS_HIST_BOUNDS_MAX 16

struct metrics_hist {
	_Atomic uint64_t b[METRICS_HIST_BOUNDS_MAX + 1];
	_Atomic uint64_t count;
	_Atomic uint64_t sum;
};

/* metrics_hist_observe records v against `bounds` (num_bounds <= METRICS_HIST_BOUNDS_MAX). */
void metrics_hist_observe(struct metrics_hist *h, const uint64_t *bounds, unsigned num_bounds, uint64_t v);

/* ------------------------------------------------------------ exposition */

enum metrics_type {
	METRICS_COUNTER = 0, /* name ends in _total */
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
	METRICS_TYPE_COUNT   /* sentinel */
};

/*
 * metrics_family appends the "# HELP" and "# TYPE" lines of family `name`
 * (help text escaped as the format asks: backslash and newline). Each
 * family must be written once per scrape, its samples right after it.
 * Append failures (ENOMEM) are sticky in the bb's caller: the functions
 * here return -ENOMEM and the scrape answers 500.
 */
int metrics_family(struct bb *out, const char *name, enum metrics_type type, const char *help);

/*
 * metrics_sample appends `name{k1="v1",...} value`: after the value, a
 * NULL-terminated list of label name/value pairs (values escaped: \\, \",
 * \n). Label names must be valid ([a-zA-Z_][a-zA-Z0-9_]*); the caller's.
 */
int metrics_sample(struct bb *out, const char *name, uint64_t value, ...) __attribute__((sentinel));

/* metrics_sample_f is metrics_sample for a non-integer value (printed with %.9g). */
int metrics_sample_f(struct bb *out, const char *name, double value, ...) __attribute__((sentinel));

/*
 * metrics_hist_write appends the samples of histogram family `name`
 * (name_bucket{le=...}, name_sum, name_count) for the sum of `num_h`
 * histograms. `scale` divides bounds and sum (observations in µs, exposed
 * in seconds: 1e6). `label`/`label_value` add one label, or NULL.
 */
int metrics_hist_write(struct bb *out, const char *name, const struct metrics_hist *const *h, size_t num_h,
		       const uint64_t *bounds, unsigned num_bounds, double scale, const char *label,
		       const char *label_value);

/* metrics_label_escape appends `v` escaped for a label value (\\, \", \n). */
int metrics_label_escape(struct bb *out, const char *v);

/* ------------------------------------------------------------ registry */

/*
 * metrics_source_fn appends a module's families to `out`, on the metrics
 * thread, at every scrape. It must not block on anything a shard holds.
 * Returns 0 or -ENOMEM.
 */
typedef int metrics_source_fn(void *arg, struct bb *out);

/*
 * metrics_ready_fn tells whether the module is ready to take mail; when not,
 * it sets *out_why to a static string (the /readyz body). Metrics thread.
 */
typedef bool metrics_ready_fn(void *arg, const char **out_why);

/*
 * metrics_source_add registers a source; `arg` is borrowed and must live
 * until metrics_registry_clear(). Sources appear in registration order.
 * 0, or -ENOMEM. Any thread but a shard's hot path.
 */
int metrics_source_add(metrics_source_fn *fn, void *arg);

/* metrics_ready_add registers a readiness check (same rules). */
int metrics_ready_add(metrics_ready_fn *fn, void *arg);

/*
 * metrics_registry_lock / _unlock hold off scrapes, so the main thread can
 * take an object a source reads out of its reach (set its pointer to NULL)
 * before freeing it. Never on a shard.
 */
void metrics_registry_lock(void);
void metrics_registry_unlock(void);

/* metrics_registry_clear forgets every source and check (main thread, after metrics_serve_stop). */
void metrics_registry_clear(void);

/* metrics_render appends the whole exposition: every source in order. 0 or -ENOMEM. */
int metrics_render(struct bb *out);

/* metrics_ready runs every check; false with *out_why from the first that vetoes. */
bool metrics_ready(const char **out_why);

#endif
