/*
 * metrics_core.h - the metrics sources and the readiness check of what
 * main wires: shards, delivery workers and their sinks, the verify pool,
 * the spool directory and the process itself. Main fills a struct
 * metrics_core (which it owns and keeps alive until metrics_http_stop),
 * then calls metrics_core_register once.
 *
 * The spool's depth and oldest age come from the delivery queues (after
 * recovery every record some sink still owes is queued or retrying); its
 * segments and their limit from the shards' logs; the DNS cache's counters
 * from the verify pool. A module with metrics of its own can still add a
 * source with metrics_source_add().
 */
#ifndef OMX_METRICS_CORE_H
#define OMX_METRICS_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct shard;
struct deliver;
struct sink;
struct vpool;
struct spool_log;

struct metrics_core {
	struct shard *const *shards;   /* num_shards entries; NULL entries are skipped */
	unsigned num_shards;
	struct deliver *const *workers;
	unsigned num_workers;
	const struct sink *sinks;      /* labels: the spec of each */
	unsigned num_sinks;
	struct vpool *vpool;           /* NULL: verification off */
	const atomic_bool *stopping;   /* set at SIGTERM/SIGINT */
	atomic_bool listening;         /* set by main once every shard listens */
	int spool_fd;                  /* a directory the spool writes into (SPOOL/log) */
	struct spool_log *const *logs; /* num_logs entries: segments in use and free */
	unsigned num_logs;
	const char *version;
	int64_t start_unix;            /* seconds */
};

/* metrics_core_register adds the sources and the readiness check. 0 or -ENOMEM. Main thread. */
int metrics_core_register(struct metrics_core *mc);

#endif
