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
#include "cfg.h"
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

/*
 * Cumulative counters, read without locking (approximate). Per sink (index
 * as in deliver_global.sinks): accepted (ok), retried later (temp), refused
 * for good (perm: the message went to SPOOL/failed). The spool hook for
 * metrics: `queued` messages wait in this worker (queue, retries, in
 * delivery) and the oldest of them was queued at `oldest_ms`
 * (CLOCK_MONOTONIC ms, 0 = none; refreshed each time the worker looks at
 * its queue, at least once a second).
 */
struct deliver_stats {
	uint64_t delivered, tempfail, permfail;
	uint64_t sink_ok[CFG_SINK_MAX], sink_temp[CFG_SINK_MAX], sink_perm[CFG_SINK_MAX];
	uint64_t queued;
	int64_t oldest_ms;
};
void deliver_get_stats(struct deliver *d, struct deliver_stats *out);

#endif
