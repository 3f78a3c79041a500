/*
 * worker.h - one oceanmx-load thread: its own io_uring ring, provided-
 * buffer ring for replies, and a fixed set of connection slots.
 */
#ifndef OMX_LOAD_WORKER_H
#define OMX_LOAD_WORKER_H

#include <pthread.h>

#include "load.h"

struct worker;

/*
 * worker_new prepares worker `idx` of `num` driving `num_conns` slots;
 * NULL on allocation or ring failure (message in err). The run is
 * borrowed and must outlive the worker.
 */
struct worker *worker_new(struct load_run *run, unsigned idx, unsigned num, unsigned num_conns, char *err,
			  size_t err_len);
void worker_free(struct worker *w);

/* worker_main is the thread body (arg: struct worker *). */
void *worker_main(void *arg);

/* worker_done tells whether the worker's loop has ended (any thread). */
bool worker_done(const struct worker *w);

/* worker_stats_peek copies the live counters (any thread; relaxed). */
void worker_stats_peek(const struct worker *w, struct load_stats *out);

/* worker_hists borrows the histograms; valid to read only after the thread ended. */
const struct hist *worker_lat(const struct worker *w);
const struct hist *worker_setup(const struct worker *w);
const struct hist *worker_tls_hs(const struct worker *w); /* 220 to STARTTLS -> handshake done */

/* worker_tls_desc: "TLSv1.3 CIPHER" of the worker's first TLS session, or ""; after the thread ended. */
const char *worker_tls_desc(const struct worker *w);

/* worker_first_error returns the first error text seen (or ""), after the thread ended. */
const char *worker_first_error(const struct worker *w);

int64_t mono_ns(void);

#endif
