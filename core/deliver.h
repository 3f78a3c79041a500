/*
 * deliver.h - delivery workers: move committed messages from the spool to
 * every sink, at least once, with retries.
 *
 * One worker thread per shard, each with its own queue, so the per-message
 * hand-off takes only that pair's lock. Workers may block (sinks do plain
 * file or socket I/O); shards never do. Records are read from the shard's
 * log segments; what each sink took is recorded in the segment's done file
 * (lazily durable: a crash redelivers the last few). A record is done when
 * every sink returned SINK_OK; TEMPFAIL retries the sinks that still owe it
 * with backoff; PERMFAIL writes it to SPOOL/failed for the operator. A
 * sealed segment whose records are all done is recycled by this worker,
 * which also makes new segments when its shard's pool runs low.
 *
 * Sync sinks ("?sync=yes"): the shard, once a record is durable, queues it
 * with deliver_enqueue_sync instead and holds the client's reply. The worker
 * takes sync items ahead of its batch queue (between batches, never in the
 * middle of one), hands them to the sync sinks only, and posts the outcome
 * to its inbox (deliver_sync_inbox), which its shard reads:
 *   every sync sink OK -> their done bits are set, the item joins the
 *                         queue for the other sinks; the shard answers 250
 *   any TEMPFAIL       -> 451 4.3.0; any PERMFAIL -> 550 5.7.1 with the
 *                         consumer's words. Either way the record is marked
 *                         removed (and that made durable) before the answer
 *                         is posted: no sink ever gets it.
 * The outcome names the conn by (idx, generation) and the message id; the
 * shard drops one whose conn is gone (--timeout-commit cut it, the client
 * left) without changing what the worker decided for the record.
 */
#ifndef OMX_DELIVER_H
#define OMX_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "../proto/reply.h"
#include "../sinks/sink.h"
#include "cfg.h"
#include "inbox.h"
#include "spool.h"

struct deliver_global {
	struct sink *sinks;  /* configured sinks, shared read-only */
	unsigned num_sinks;
	const struct spool_dirs *dirs;
	const char *hostname;  /* our authserv-id: forged A-R fields claiming it are dropped */
	int64_t retry_first_ms; /* first retry after a TEMPFAIL (--sink-retry-first) */
	int64_t retry_max_ms;   /* backoff ceiling (--sink-retry-max) */
	int64_t max_age_us;     /* --sink-max-age: older TEMPFAILs are dead-lettered */
	int64_t forward_after_ms; /* --spool-forward-after; 0 = never */
};

/* Where a committed record lies; copied by deliver_enqueue. */
struct spool_ref {
	struct spool_log *log;
	struct spool_seg *seg;
	uint64_t off, len;   /* record offset and length (without padding) */
	uint32_t slot;
	uint8_t done;        /* done bits already recorded (sinks that have it) */
	char id[SPOOL_REC_ID_LEN]; /* the message id, for `oceanmx spool retry|delete` */
};

struct deliver;

/* The outcome of a sync delivery, posted by the worker to its shard. */
struct deliver_sync_res {
	struct inbox_node node;    /* first: the inbox link */
	uint32_t conn_idx, conn_gen; /* the shard's conn that waits, as given to deliver_enqueue_sync */
	enum sink_rc rc;           /* the worst answer of the sync sinks */
	char id[SPOOL_REC_ID_LEN]; /* the message id */
	char said[REPLY_DETAIL_MAX]; /* the consumer's own words, untrusted, not yet cleaned; may be "" */
};

/* deliver_start starts worker `idx`; NULL (with a log line) on failure. Main thread only. */
struct deliver *deliver_start(const struct deliver_global *g, unsigned idx);

/*
 * deliver_add_log gives the worker a log to look after (make segments,
 * recycle, sync done files); before the shards start. Main thread. 0 or -ENOMEM.
 */
int deliver_add_log(struct deliver *d, struct spool_log *l);

/* deliver_enqueue queues the record at *ref (copied). Any thread. 0 or -ENOMEM. */
int deliver_enqueue(struct deliver *d, const struct spool_ref *ref);

/* deliver_has_sync tells whether any configured sink is "?sync=yes". Any thread. */
bool deliver_has_sync(const struct deliver *d);

/*
 * deliver_enqueue_sync queues the durable record at *ref (copied) for the
 * sync sinks first; the outcome comes back through deliver_sync_inbox with
 * (conn_idx, conn_gen). Shard thread. 0 or -ENOMEM (the record then stays
 * in the spool for the next start, and no outcome is posted).
 */
int deliver_enqueue_sync(struct deliver *d, const struct spool_ref *ref, uint32_t conn_idx, uint32_t conn_gen);

/*
 * deliver_sync_inbox is where the worker posts struct deliver_sync_res
 * (free() each one taken). It lives until deliver_stop, so it outlives the
 * shard that reads it. Read by that one shard only.
 */
struct inbox *deliver_sync_inbox(struct deliver *d);

/* deliver_recycle asks the worker to recycle a sealed, empty segment. Any thread. */
void deliver_recycle(struct deliver *d, struct spool_log *l, struct spool_seg *seg);

/* deliver_kick wakes the worker to make a segment (the log's want_seg is set). Any thread. */
void deliver_kick(struct deliver *d);

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
