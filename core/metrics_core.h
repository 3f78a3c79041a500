/*
 * metrics_core.h - the metrics sources and the readiness check of what
 * main wires: shards, delivery workers and their sinks, the verify pool,
 * the spool directory and the process itself. Main fills a struct
 * metrics_core (which it owns and keeps alive until metrics_http_stop),
 * then calls metrics_core_register once.
 *
 * Hooks for modules being rewritten: a new spool or DNS cache registers
 * its own source with metrics_source_add() (and, for the spool, its own
 * readiness check with metrics_ready_add()); the spool gauges here
 * (oceanmx_spool_messages, oceanmx_spool_oldest_age_seconds) come from
 * the delivery queues until then.
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
	const char *version;
	int64_t start_unix;            /* seconds */
};

/* metrics_core_register adds the sources and the readiness check. 0 or -ENOMEM. Main thread. */
int metrics_core_register(struct metrics_core *mc);

#endif
