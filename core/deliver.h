/*
 * deliver.h - delivery workers: move committed messages from the spool to
 * every sink, at least once, with retries.
 *
 * One worker thread per shard, each with its own queue, so the per-message
 * hand-off takes only that pair's lock. Workers may block (sinks do plain
 * file or socket I/O); shards never do. A message leaves SPOOL/q only when
 * every sink returned SINK_OK; on TEMPFAIL it is retried with backoff; on
 * PERMFAIL it moves to SPOOL/failed for the operator.
 */
#ifndef OMX_DELIVER_H
#define OMX_DELIVER_H

#include <stdint.h>

#include "../sinks/sink.h"
#include "spool.h"

struct deliver_global {
	struct sink *sinks;  /* configured sinks, shared read-only */
	unsigned num_sinks;
	const struct spool_dirs *dirs;
	const char *hostname;  /* our authserv-id: forged A-R fields claiming it are dropped */
	uint32_t reuse_cap;  /* spool files kept for reuse per worker (0 = none) */
	int64_t retry_first_ms; /* first retry after a TEMPFAIL (--sink-retry-first) */
	int64_t retry_max_ms;   /* backoff ceiling (--sink-retry-max) */
};

struct deliver;

/* deliver_start starts worker `idx`; NULL (with a log line) on failure. Main thread only. */
struct deliver *deliver_start(const struct deliver_global *g, unsigned idx);

/* deliver_pool is the worker's pool of delivered spool files for reuse; its shard takes from it. */
struct spool_pool *deliver_pool(struct deliver *d);

/* deliver_enqueue queues spool file `name` (copied). Any thread. 0 or -ENOMEM. */
int deliver_enqueue(struct deliver *d, const char *name);

/*
 * deliver_stop delivers what is queued (retries stay in the spool for the
 * next start), then joins and frees the worker. Main thread only.
 */
void deliver_stop(struct deliver *d);

/* Cumulative counters, read without locking (approximate). */
struct deliver_stats {
	uint64_t delivered, tempfail, permfail;
};
void deliver_get_stats(struct deliver *d, struct deliver_stats *out);

#endif
