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
#include "tls.h"
#include "vpool.h"

struct shard_global {
	const struct cfg *cfg;
	const struct smtp_cfg *smtp;
	struct conn_limits *limits;
	struct rate_limits *rates; /* --max-connection-rate, --max-message-rate; NULL when both are off */
	_Atomic uint64_t max_input_rate; /* --max-input-rate, bytes/s per connection (0 = off); SIGHUP sets it */
	struct vpool *vpool;     /* DKIM verification; NULL with --dkim off */
	const struct spool_dirs *dirs; /* SPOOL/{log,failed,ctl} */
	struct tls_holder *tls;  /* the current certificates (SIGHUP swaps them); NULL: no STARTTLS */
	/* Listening sockets, bound by main with shard_listen: [shard][cfg->listen
	 * index]. shard_start hands each shard its row; the shard closes them. */
	int (*listen_fds)[CFG_LISTEN_MAX];
	atomic_bool stopping;    /* set by main on SIGTERM/SIGINT */
};

struct shard;

/*
 * shard_start takes the listening sockets g->listen_fds[idx] (in every
 * case, failure included) and creates shard `idx` and waits for its set-up (ring, buffers,
 * listeners); it appends to `log` and hands records to `d`. Returns NULL (after logging why) on failure. Main thread only.
 */
struct shard *shard_start(const struct shard_global *g, unsigned idx, struct deliver *d, struct spool_log *log);

/*
 * shard_mail_ok is the sessions' smtp_cfg.mail_ok: the client's message
 * rate (--max-message-rate). `owner` is the session's conn. Shard thread.
 */
bool shard_mail_ok(void *owner);

/*
 * shard_tls_ok is the sessions' smtp_cfg.tls_ok: the client's rate of new
 * TLS sessions (--max-tls-rate); a session that turns out resumed gives its
 * token back. Shard thread.
 */
bool shard_tls_ok(void *owner);

/*
 * shard_listen makes one non-blocking SO_REUSEPORT listening socket for
 * `l` (one per shard per address, so the kernel spreads connections).
 * Main thread, before privileges are dropped (port 25 needs them). 0 or -errno.
 */
int shard_listen(const struct cfg_listen *l, int *out_fd);

/* shard_wake makes the shard notice g->stopping now. Any thread. */
void shard_wake(struct shard *sh);

/*
 * shard_metrics returns the shard's counters, valid until shard_free;
 * written by the shard only, read with relaxed loads (metrics_shard.h).
 */
struct metrics_shard;
const struct metrics_shard *shard_metrics(const struct shard *sh);

/*
 * shard_join waits for the shard's thread to finish its shutdown. The shard
 * keeps its ring and its verify inbox until shard_free, because a verify
 * worker may still be posting to the inbox's eventfd after handing back
 * the last job: stop the pool between the two. Main thread only.
 */
void shard_join(struct shard *sh);

/* shard_free releases a joined shard; NULL does nothing. Main thread only. */
void shard_free(struct shard *sh);

#endif
