/*
 * shard.h - one shard: a thread with its own io_uring ring, its own
 * SO_REUSEPORT listening sockets, a provided-buffer ring shared by its
 * connections, and the SMTP sessions it accepted. Shards share nothing
 * mutable but the connection limits and their delivery queue.
 */
#ifndef OMX_SHARD_H
#define OMX_SHARD_H

#include <stdatomic.h>
#include <stdint.h>

#include "../proto/smtp_sess.h"
#include "cfg.h"
#include "deliver.h"
#include "limits.h"
#include "spool.h"
#include "vpool.h"

struct shard_global {
	const struct cfg *cfg;
	const struct smtp_cfg *smtp;
	struct conn_limits *limits;
	struct vpool *vpool;     /* DKIM verification; NULL with --dkim off */
	const struct spool_dirs *dirs; /* SPOOL/{q,free,failed} */
	atomic_bool stopping;    /* set by main on SIGTERM/SIGINT */
};

struct shard;

/*
 * shard_start creates shard `idx` and waits for its set-up (ring, buffers,
 * listeners). Returns NULL (after logging why) on failure. Main thread only.
 */
struct shard *shard_start(const struct shard_global *g, unsigned idx, struct deliver *d);

/* shard_wake makes the shard notice g->stopping now. Any thread. */
void shard_wake(struct shard *sh);

/*
 * shard_metrics returns the shard's counters, valid until shard_join;
 * written by the shard only, read with relaxed loads (metrics_shard.h).
 */
struct metrics_shard;
const struct metrics_shard *shard_metrics(const struct shard *sh);

/* shard_join waits for the shard to finish its shutdown and frees it. */
void shard_join(struct shard *sh);

#endif
