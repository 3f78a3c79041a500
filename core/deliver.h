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
	int64_t retry_first_ms; /* first retry after a TEMPFAIL (--sink-retry-first) */
	int64_t retry_max_ms;   /* backoff ceiling (--sink-retry-max) */
	int64_t max_age_us;     /* --sink-max-age: older TEMPFAILs are dead-lettered */
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

/* deliver_start starts worker `idx`; NULL (with a log line) on failure. Main thread only. */
struct deliver *deliver_start(const struct deliver_global *g, unsigned idx);

/*
 * deliver_add_log gives the worker a log to look after (make segments,
 * recycle, sync done files); before the shards start. Main thread. 0 or -ENOMEM.
 */
int deliver_add_log(struct deliver *d, struct spool_log *l);

/* deliver_enqueue queues the record at *ref (copied). Any thread. 0 or -ENOMEM. */
int deliver_enqueue(struct deliver *d, const struct spool_ref *ref);

/* deliver_recycle asks the worker to recycle a sealed, empty segment. Any thread. */
void deliver_recycle(struct deliver *d, struct spool_log *l, struct spool_seg *seg);

/* deliver_kick wakes the worker to make a segment (the log's want_seg is set). Any thread. */
void deliver_kick(struct deliver *d);

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
