/* deliver.c - delivery workers; see deliver.h. */
#include "deliver.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../verify/authres.h"
#include "cfg.h"
#include "log.h"
#include "metrics.h"
#include "thread.h"
#include "spool.h"

#define DELIVER_BATCH_MAX   256               /* messages per flush */

struct item;

/* One sink's answer for one message; done() writes it. */
struct result {
	struct item *it;
	enum sink_rc rc;
};

struct item {
	struct item *next;
	int64_t due_ms;      /* retry time (CLOCK_MONOTONIC ms); 0 = now */
	int64_t enq_ms;      /* queued (CLOCK_MONOTONIC ms), for the spool's oldest age */
	uint32_t attempts;
	struct spool_entry ent;
	struct result res[CFG_SINK_MAX];
	char why[160];
	char name[];         /* spool file name in SPOOL/q */
};

struct deliver {
	const struct deliver_global *g;
	unsigned idx;
	char who[16];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item *queue, **queue_tail; /* guarded by mu */
	bool stopping;                    /* guarded by mu */
	struct item *retry;               /* worker-owned */
	void *state[CFG_SINK_MAX];     /* per-sink worker state */
	struct spool_pool *pool;       /* delivered files for the shard to reuse */
	_Atomic uint64_t n_ok, n_temp, n_perm;
	/* metrics (metrics.h): one writer each */
	_Atomic uint64_t n_enq;                    /* written under mu */
	_Atomic uint64_t sink_ok[CFG_SINK_MAX];    /* worker */
	_Atomic uint64_t sink_temp[CFG_SINK_MAX];  /* worker */
	_Atomic uint64_t sink_perm[CFG_SINK_MAX];  /* worker */
	_Atomic uint64_t oldest_ms;                /* worker: enq_ms of the oldest waiting item, 0 = none */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_done(void *arg, enum sink_rc rc, const char *why)
{
	struct result *r = arg;

	r->rc = rc;
	if (rc != SINK_OK && why != NULL && r->it->why[0] == '\0') {
		snprintf(r->it->why, sizeof(r->it->why), "%s", why);
	}
}

#define MSG_SPANS_MAX 64 /* pieces of a message after removing forged A-R fields */

/*
 * message_spans splits what the sinks get into spans: our auth block first
 * (RFC 8601: at the top), then the message without the Authentication-
 * Results fields in its header that claim our authserv-id (RFC 8601 §5:
 * a sender could forge our verdict). Returns the number of spans.
 */
static size_t message_spans(const struct spool_entry *e, const char *hostname, struct span *out)
{
	struct span c = e->msg;
	size_t n = 0;
	const uint8_t *keep = c.p; /* start of the bytes kept since the last removal */

	if (e->auth.len > 0) {
		out[n++] = e->auth;
	}
	while (c.len > 0 && n < MSG_SPANS_MAX - 2) {
		const uint8_t *start = c.p;
		struct span line, field;

		/* One field: a line and its continuation lines (starting with SP/HT). */
		do {
			if (!span_take_until(&c, &line, '\n')) {
				span_take(&c, &line, c.len);
			} else {
				span_skip(&c, 1);
			}
		} while (c.len > 0 && (c.p[0] == ' ' || c.p[0] == '\t'));
		field = span_make(start, (size_t)(c.p - start));
		if (field.len <= 2 && (field.p[0] == '\r' || field.p[0] == '\n')) {
			break; /* the empty line: the body follows */
		}
		while (field.len > 0 && (field.p[field.len - 1] == '\n' || field.p[field.len - 1] == '\r')) {
			field.len--;
		}
		if (authres_is_ours(field, hostname)) {
			if (start > keep) {
				out[n++] = span_make(keep, (size_t)(start - keep));
			}
			keep = c.p;
		}
	}
	out[n++] = span_make(keep, (size_t)(e->msg.p + e->msg.len - keep));
	return n;
}

/* start_one loads the entry and opens a tx on every sink; results land in it->rc. */
static void start_one(struct deliver *d, struct item *it)
{
	const struct deliver_global *g = d->g;
	int rc;

	for (unsigned s = 0; s < g->num_sinks; s++) {
		it->res[s].it = it;
		it->res[s].rc = SINK_TEMPFAIL;
	}
	it->why[0] = '\0';
	if (it->ent.data == NULL && (rc = spool_load(&it->ent, g->dirs->q, it->name)) != 0) {
		snprintf(it->why, sizeof(it->why), "spool load: %s", strerror(-rc));
		if (rc == -EINVAL) {
			for (unsigned s = 0; s < g->num_sinks; s++) {
				it->res[s].rc = SINK_PERMFAIL;
			}
		}
		return;
	}
	struct span spans[MSG_SPANS_MAX];
	size_t num_spans = message_spans(&it->ent, g->hostname, spans);

	for (unsigned s = 0; s < g->num_sinks; s++) {
		const struct sink_ops *ops = g->sinks[s].ops;
		struct sink_tx *tx = NULL;

		rc = ops->tx_begin(d->state[s], &tx, &it->ent.env);
		for (size_t k = 0; rc == 0 && k < num_spans; k++) {
			rc = ops->tx_write(tx, spans[k]);
		}
		if (rc != 0 && tx != NULL) {
			ops->tx_abort(tx);
		}
		if (rc != 0) {
			snprintf(it->why, sizeof(it->why), "%s: %s", g->sinks[s].spec, strerror(-rc));
			continue;
		}
		ops->tx_commit(tx, on_done, &it->res[s]); /* TEMPFAIL until done() says otherwise */
	}
}

/*
 * spool_retire takes a delivered message out of SPOOL/q: small files move
 * to SPOOL/free for the shard to reuse (see spool.h), the rest are removed.
 * Neither needs a sync: after a crash the message is delivered again.
 */
static void spool_retire(struct deliver *d, struct item *it, size_t file_len, const char *who)
{
	const struct spool_dirs *dirs = d->g->dirs;

	if (file_len <= SPOOL_REUSE_MAX_BYTES && spool_pool_has_room(d->pool) &&
	    renameat(dirs->q, it->name, dirs->free, it->name) == 0) {
		if (!spool_pool_put(d->pool, it->name)) {
			unlinkat(dirs->free, it->name, 0);
		}
		return;
	}
	if (unlinkat(dirs->q, it->name, 0) != 0) {
		log_line(LOG_WARN, who, "spool.unlink error=\"%s\"", strerror(errno));
	}
}

static void finish_one(struct deliver *d, struct item *it)
{
	const struct deliver_global *g = d->g;
	bool all_ok = true, perm = false;
	char who[64];

	for (unsigned s = 0; s < g->num_sinks; s++) {
		all_ok &= it->res[s].rc == SINK_OK;
		perm |= it->res[s].rc == SINK_PERMFAIL;
	}
	snprintf(who, sizeof(who), "%s %s", d->who, it->ent.data ? it->ent.env.id : it->name);
	for (unsigned s = 0; s < g->num_sinks; s++) {
		metrics_add(it->res[s].rc == SINK_OK ? &d->sink_ok[s]
			    : it->res[s].rc == SINK_PERMFAIL ? &d->sink_perm[s] : &d->sink_temp[s], 1);
	}
	if (all_ok) {
		size_t file_len = it->ent.data_len;

		/* Unmap first: once in SPOOL/free the shard may truncate the file. */
		spool_entry_fini(&it->ent);
		spool_retire(d, it, file_len, who);
		log_line(LOG_INFO, who, "deliver.ok sinks=%u", g->num_sinks);
		atomic_fetch_add_explicit(&d->n_ok, 1, memory_order_relaxed);
		free(it);
		return;
	}
	if (perm) {
		log_line(LOG_WARN, who, "deliver.permfail reason=\"%s\" moved=failed/", it->why);
		if (renameat(g->dirs->q, it->name, g->dirs->failed, it->name) != 0) {
			log_line(LOG_ERR, who, "spool.move error=\"%s\"", strerror(errno));
		}
		atomic_fetch_add_explicit(&d->n_perm, 1, memory_order_relaxed);
		spool_entry_fini(&it->ent);
		free(it);
		return;
	}
	/* TEMPFAIL: keep it in the spool, retry with doubling backoff. Drop the
	 * loaded bytes meanwhile; they are reloaded at the next attempt. */
	int64_t delay = g->retry_first_ms << (it->attempts < 5 ? it->attempts : 5);

	it->attempts++;
	it->due_ms = now_ms() + (delay < g->retry_max_ms ? delay : g->retry_max_ms);
	log_line(LOG_WARN, who, "deliver.tempfail reason=\"%s\" attempt=%u retry_in=%llds", it->why, it->attempts,
		 (long long)(it->due_ms - now_ms()) / 1000);
	atomic_fetch_add_explicit(&d->n_temp, 1, memory_order_relaxed);
	spool_entry_fini(&it->ent);
	memset(&it->ent, 0, sizeof(it->ent));
	it->next = d->retry;
	d->retry = it;
}

static void run_batch(struct deliver *d, struct item *batch)
{
	const struct deliver_global *g = d->g;
	struct item *it, *next;

	for (it = batch; it != NULL; it = it->next) {
		start_one(d, it);
	}
	for (unsigned s = 0; s < g->num_sinks; s++) {
		if (g->sinks[s].ops->flush != NULL) {
			g->sinks[s].ops->flush(d->state[s]);
		}
	}
	for (it = batch; it != NULL; it = next) {
		next = it->next;
		finish_one(d, it);
	}
}

/* take_batch moves up to DELIVER_BATCH_MAX due items off the queues. Called with mu held. */
static struct item *take_batch(struct deliver *d)
{
	struct item *batch = NULL, **tail = &batch, **pp;
	unsigned n = 0;
	int64_t now = now_ms(), oldest;

	while (d->queue != NULL && n < DELIVER_BATCH_MAX) {
		struct item *it = d->queue;

		d->queue = it->next;
		it->next = NULL;
		*tail = it;
		tail = &it->next;
		n++;
	}
	if (d->queue == NULL) {
		d->queue_tail = &d->queue;
	}
	/* The oldest waiting item, for metrics: the queue is FIFO, so its head
	 * (or the batch's first item) is its oldest; retries are scanned below. */
	oldest = batch != NULL ? batch->enq_ms : d->queue != NULL ? d->queue->enq_ms : INT64_MAX;
	if (d->queue != NULL && d->queue->enq_ms < oldest) {
		oldest = d->queue->enq_ms;
	}
	for (pp = &d->retry; *pp != NULL && n < DELIVER_BATCH_MAX;) {
		struct item *it = *pp;

		if (it->enq_ms < oldest) {
			oldest = it->enq_ms;
		}

		if (it->due_ms > now) {
			pp = &it->next;
			continue;
		}
		*pp = it->next;
		it->next = NULL;
		*tail = it;
		tail = &it->next;
		n++;
	}
	for (struct item *it = *pp; it != NULL; it = it->next) {
		if (it->enq_ms < oldest) {
			oldest = it->enq_ms; /* retries beyond the batch limit */
		}
	}
	metrics_set(&d->oldest_ms, oldest == INT64_MAX ? 0 : (uint64_t)oldest);
	return batch;
}

static void *worker_main(void *arg)
{
	struct deliver *d = arg;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		struct item *batch = take_batch(d);

		if (batch == NULL) {
			struct timespec ts;
			int64_t wait = 1000;

			if (d->stopping) {
				break;
			}
			for (struct item *r = d->retry; r != NULL; r = r->next) {
				int64_t w = r->due_ms - now_ms();

				wait = w < wait ? (w > 0 ? w : 0) : wait;
			}
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&d->cv, &d->mu, &ts);
			continue;
		}
		pthread_mutex_unlock(&d->mu);
		run_batch(d, batch);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

struct deliver *deliver_start(const struct deliver_global *g, unsigned idx)
{
	struct deliver *d = calloc(1, sizeof(*d));
	unsigned s;

	if (d == NULL) {
		return NULL;
	}
	d->g = g;
	d->idx = idx;
	snprintf(d->who, sizeof(d->who), "d%u", idx);
	d->queue_tail = &d->queue;
	d->pool = spool_pool_new(g->reuse_cap);
	if (d->pool == NULL) {
		free(d);
		return NULL;
	}
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	for (s = 0; s < g->num_sinks; s++) {
		int rc = g->sinks[s].ops->worker_init(g->sinks[s].conf, &d->state[s]);

		if (rc != 0) {
			log_line(LOG_ERR, d->who, "sink.init sink=%s error=\"%s\"", g->sinks[s].spec, strerror(-rc));
			goto fail;
		}
	}
	if (pthread_create(&d->thread, NULL, worker_main, d) != 0) {
		log_line(LOG_ERR, d->who, "deliver.start error=\"cannot create thread\"");
		goto fail;
	}
	thread_name(d->thread, "omx-deliver", d->idx);
	return d;
fail:
	while (s-- > 0) {
		g->sinks[s].ops->worker_fini(d->state[s]);
	}
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	spool_pool_free(d->pool);
	free(d);
	return NULL;
}

int deliver_enqueue(struct deliver *d, const char *name)
{
	size_t n = strlen(name) + 1;
	struct item *it = calloc(1, sizeof(*it) + n);

	if (it == NULL) {
		return -ENOMEM;
	}
	memcpy(it->name, name, n);
	it->enq_ms = now_ms();
	pthread_mutex_lock(&d->mu);
	metrics_add(&d->n_enq, 1); /* under mu: one writer at a time */
	*d->queue_tail = it;
	d->queue_tail = &it->next;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	return 0;
}

void deliver_stop(struct deliver *d)
{
	struct item *it, *next;

	if (d == NULL) {
		return;
	}
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	for (it = d->retry; it != NULL; it = next) {
		next = it->next;
		spool_entry_fini(&it->ent);
		free(it);
	}
	for (unsigned s = 0; s < d->g->num_sinks; s++) {
		d->g->sinks[s].ops->worker_fini(d->state[s]);
	}
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	spool_pool_free(d->pool);
	free(d);
}

struct spool_pool *deliver_pool(struct deliver *d)
{
	return d->pool;
}

void deliver_get_stats(struct deliver *d, struct deliver_stats *out)
{
	out->delivered = atomic_load_explicit(&d->n_ok, memory_order_relaxed);
	out->tempfail = atomic_load_explicit(&d->n_temp, memory_order_relaxed);
	out->permfail = atomic_load_explicit(&d->n_perm, memory_order_relaxed);
	for (unsigned s = 0; s < d->g->num_sinks && s < CFG_SINK_MAX; s++) {
		out->sink_ok[s] = metrics_get(&d->sink_ok[s]);
		out->sink_temp[s] = metrics_get(&d->sink_temp[s]);
		out->sink_perm[s] = metrics_get(&d->sink_perm[s]);
	}
	{
		uint64_t enq = metrics_get(&d->n_enq), gone = out->delivered + out->permfail;

		out->queued = enq > gone ? enq - gone : 0;
	}
	out->oldest_ms = (int64_t)metrics_get(&d->oldest_ms);
}
