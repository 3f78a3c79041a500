/*
 * sink.h - the delivery interface. A sink takes messages out of the spool
 * and hands them to their consumer (a maildir today; JSON files, sockets,
 * LMTP, webhooks, a command or a plugin later).
 *
 * Life cycle, all driven by core/deliver.c:
 *   configure(arg)          once, main thread, from "--sink NAME:ARG"
 *   worker_init(conf)       once per delivery worker thread -> state
 *   tx_begin / tx_write* / tx_commit(done)   per message, on that worker
 *   flush(state)            after a batch: make committed messages durable and
 *                           call their done(); may be NULL if tx_commit calls
 *                           done itself
 *   worker_fini, unconfigure
 *
 * A sink sees an immutable envelope and the message bytes, never the
 * client. Workers may block (they are not shards); a sink that keeps
 * shared mutable state brings its own synchronisation. done() is called
 * exactly once per committed tx. A message leaves the spool only when every
 * sink said SINK_OK; TEMPFAIL retries it later (so sinks must tolerate
 * seeing a message again: at-least-once, keyed by env->id).
 */
#ifndef OMX_SINK_H
#define OMX_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/span.h"
#include "../proto/msg.h"

#define SINK_ABI_VERSION 1u

enum sink_rc {
	SINK_OK = 0,    /* durable at the consumer */
	SINK_TEMPFAIL,  /* try again later; the message stays in the spool */
	SINK_PERMFAIL,  /* never deliverable here; moved to SPOOL/failed */
	SINK_RC_COUNT   /* sentinel */
};

/*
 * sink_done_fn reports a message's outcome. A TEMPFAIL's `why` may end with
 * SINK_WHY_RETRY_AFTER "<seconds>s" (e.g. "http 503; retry_after=120s"):
 * the delivery worker then waits at least that long (at most a day) before
 * the next attempt, as an HTTP Retry-After asks.
 */
typedef void sink_done_fn(void *arg, enum sink_rc rc, const char *why);
#define SINK_WHY_RETRY_AFTER "retry_after="
#define SINK_RETRY_AFTER_MAX_S 86400

/* What every sink may know about the server. */
struct sink_ctx {
	const char *hostname;
};

struct sink_tx; /* defined by each sink */

struct sink_ops {
	const char *name; /* the NAME in "NAME:ARG" */
	uint32_t abi;     /* SINK_ABI_VERSION; checked at registration */
	int (*configure)(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err);
	void (*unconfigure)(void *conf);
	int (*worker_init)(const void *conf, void **out_state);
	void (*worker_fini)(void *state);
	/* tx_begin: 0 or -errno; `env` is borrowed until done() or tx_abort(). */
	int (*tx_begin)(void *state, struct sink_tx **out_tx, const struct msg_env *env);
	/* tx_write: borrows `bytes`; 0 or -errno (the caller then calls tx_abort). */
	int (*tx_write)(struct sink_tx *tx, struct span bytes);
	/* tx_commit: takes tx; done is called exactly once, now or at flush(). */
	void (*tx_commit)(struct sink_tx *tx, sink_done_fn *done, void *arg);
	/* tx_abort: takes tx; cannot fail. */
	void (*tx_abort)(struct sink_tx *tx);
	void (*flush)(void *state);
};

/* A configured sink: which implementation and its parsed configuration. */
struct sink {
	const struct sink_ops *ops;
	void *conf;
	char *spec; /* as given, for logs */
	bool sync;  /* "?sync=yes": the 250 waits for this sink's answer (core/deliver.h) */
};

/*
 * sink_configure parses "NAME:ARG" with the registry and configures it into
 * *out. The options every sink takes are parsed here and removed from the
 * ARG the sink sees (a '?' left with nothing after it goes too):
 *   sync=yes|no   the SMTP reply to the message waits for this sink's answer
 * Returns 0, or -1 with *out_err a malloc'd message.
 */
int sink_configure(struct sink *out, const struct sink_ctx *ctx, const char *spec, char **out_err);
void sink_unconfigure(struct sink *s);

/* sink_err formats a configuration error into *out_err (malloc'd; NULL when out of memory); returns -1. */
int sink_err(char **out_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sink_lookup finds an implementation by NAME; NULL if none. */
const struct sink_ops *sink_lookup(const char *name, size_t name_len);

const char *sink_rc_name(enum sink_rc rc);

/*
 * sink_why_said finds, in a `why` given to done(), the words the consumer
 * itself sent (what a ?sync=yes sink may show the SMTP client), without
 * the sink's own prefix, which can name sockets, paths or hosts. The shapes
 * known: the stream sink's "TARGET: REJECT|RETRY TEXT" and the exec sink's
 * "exec: exit N: LINE". NULL when `why` has none of them (the client then
 * gets a generic text). The result points into `why`.
 */
const char *sink_why_said(const char *why);

#endif
