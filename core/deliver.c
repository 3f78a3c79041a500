/* deliver.c - delivery workers; see deliver.h. */
#include "deliver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../verify/authres.h"
#include "../proto/msgdoc.h"
#include "cfg.h"
#include "crc32c.h"
#include "log.h"
#include "metrics.h"
#include "thread.h"
#include "spool.h"

#define DELIVER_BATCH_MAX   256               /* messages per flush */
#define DONE_SYNC_MS        100               /* done files fdatasync'd at most this often */

_Static_assert(CFG_SINK_MAX <= SPOOL_SINK_BITS, "every sink needs its done bit in the spool");
#define READ_MAX            (1u << 20)        /* records up to this size are read, larger ones mapped */
#define LOGS_MAX            64

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
	int64_t first_fail_ms; /* the first TEMPFAIL (CLOCK_MONOTONIC ms), for --spool-forward-after */
	bool forwarded;      /* copied forward once already */
	bool sync;           /* waits for the sync sinks; its conn waits for the outcome */
	uint32_t conn_idx, conn_gen;
	struct spool_entry ent;
	struct spool_ref ref;
	struct result res[CFG_SINK_MAX];
	char why[160];
};

struct recycle_req {
	struct recycle_req *next;
	struct spool_log *log;
	struct spool_seg *seg;
};

struct deliver {
	const struct deliver_global *g;
	unsigned idx;
	char who[16];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item *queue, **queue_tail; /* guarded by mu */
	struct item *sync_q, **sync_tail; /* guarded by mu: sync items, taken first */
	uint32_t sync_mask;               /* the "?sync=yes" sinks, bit per sink index */
	struct inbox sync_inbox;          /* outcomes of sync items, read by the shard */
	bool stopping;                    /* guarded by mu */
	struct item *retry;               /* worker-owned */
	void *state[CFG_SINK_MAX];     /* per-sink worker state */
	struct spool_log *logs[LOGS_MAX]; /* logs this worker looks after (its shard's first) */
	_Atomic unsigned num_logs;       /* grows while the worker runs (recovery adds logs): published after logs[] */
	struct recycle_req *recycle;      /* guarded by mu */
	bool kicked;                      /* guarded by mu: a log wants a segment */
	int64_t last_done_sync, last_make_try, last_ctl;
	uint64_t jitter;                  /* xorshift state for the retry jitter; worker-owned */
	struct spool_seg *fwd[LOGS_MAX];  /* per log (as logs[]): the segment records are copied forward into */
	_Atomic uint64_t n_ok, n_temp, n_perm;
	/* metrics (metrics.h): one writer each */
	_Atomic uint64_t n_enq;                    /* written under mu: items into queue */
	_Atomic uint64_t n_left;                   /* worker: items out of the spool (delivered or dead) */
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

/* auth_has_spam: our auth block holds a spam verdict (rspamd checked this message). */
static bool auth_has_spam(struct span auth)
{
	while (auth.len > 0) {
		struct span line;

		if (!span_take_until(&auth, &line, '\n')) {
			line = auth;
			auth.len = 0;
		} else {
			span_skip(&auth, 1);
		}
		if (msgdoc_spam_field_name(line)) {
			return true;
		}
	}
	return false;
}

/*
 * message_spans splits what the sinks get into spans: our auth block first
 * (RFC 8601: at the top), then the message without the Authentication-
 * Results fields in its header that claim our authserv-id (RFC 8601 §5:
 * a sender could forge our verdict), and, when the auth block holds our
 * spam verdict, without X-Spam-Flag/-Score/-Status fields (a sender could
 * forge those too: only ours remain). Returns the number of spans.
 */
static size_t message_spans(const struct spool_entry *e, const char *hostname, struct span *out)
{
	struct span c = e->msg;
	size_t n = 0;
	const uint8_t *keep = c.p; /* start of the bytes kept since the last removal */
	bool spam = auth_has_spam(e->auth);

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
		if (authres_is_ours(field, hostname) || (spam && msgdoc_spam_field_name(field))) {
			if (start > keep) {
				out[n++] = span_make(keep, (size_t)(start - keep));
			}
			keep = c.p;
		}
	}
	out[n++] = span_make(keep, (size_t)(e->msg.p + e->msg.len - keep));
	return n;
}

/* dead_load reads SPOOL/failed/id into e (spool retry of a dead letter). */
static int dead_load(struct spool_entry *e, int dirfd, const char *id)
{
	int fd = openat(dirfd, id, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int rc;

	if (fd < 0) {
		return -errno;
	}
	if (fstat(fd, &st) != 0 || (buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1)) == NULL) {
		rc = buf == NULL ? -ENOMEM : -errno;
		close(fd);
		return rc;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if ((rc = spool_dead_parse(e, buf, got)) != 0) {
		free(buf);
		return rc;
	}
	e->data = buf;
	e->data_len = got;
	return 0;
}

/*
 * record_load reads the record at ref into e: small ones into the heap
 * (a munmap per message would shoot down the mapping on every CPU), large
 * ones mapped read-only from the segment.
 */
static int record_load(struct spool_entry *e, const struct spool_ref *ref, int failed_dirfd)
{
	uint8_t *buf;
	size_t len = (size_t)ref->len, got = 0;
	int rc;

	if (ref->log == NULL) {
		return dead_load(e, failed_dirfd, ref->id);
	}
	if (ref->len > READ_MAX) {
		long page = sysconf(_SC_PAGESIZE);
		size_t skew = (size_t)(ref->off % (uint64_t)page);
		uint8_t *map = mmap(NULL, len + skew, PROT_READ, MAP_SHARED, ref->seg->fd, (off_t)(ref->off - skew));

		if (map == MAP_FAILED) {
			return -errno;
		}
		if ((rc = spool_rec_parse(e, map + skew, len)) != 0) {
			munmap(map, len + skew);
			return rc;
		}
		e->data = map + skew;
		e->data_len = len;
		e->map_len = len + skew;
		e->map_skew = skew;
		e->mapped = true;
		return 0;
	}
	if ((buf = malloc(len ? len : 1)) == NULL) {
		return -ENOMEM;
	}
	while (got < len) {
		ssize_t n = pread(ref->seg->fd, buf + got, len - got, (off_t)(ref->off + got));

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			free(buf);
			return n < 0 ? -errno : -EINVAL;
		}
		got += (size_t)n;
	}
	if ((rc = spool_rec_parse(e, buf, len)) != 0) {
		free(buf);
		return rc;
	}
	e->data = buf;
	e->data_len = len;
	return 0;
}

/*
 * start_one loads the entry and opens a tx on every sink in `mask` (a bit
 * per sink index); results land in it->res (TEMPFAIL until done() says
 * otherwise; sinks outside the mask stay TEMPFAIL and are not asked).
 */
static void start_one(struct deliver *d, struct item *it, uint32_t mask)
{
	const struct deliver_global *g = d->g;
	int rc;

	for (unsigned s = 0; s < g->num_sinks; s++) {
		it->res[s].it = it;
		it->res[s].rc = SINK_TEMPFAIL;
	}
	it->why[0] = '\0';
	if (it->ent.data == NULL && (rc = record_load(&it->ent, &it->ref, g->dirs->failed)) != 0) {
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

		if (s < SPOOL_SINK_BITS && (it->ref.done & (1u << s))) {
			it->res[s].rc = SINK_OK; /* took it at an earlier attempt */
			continue;
		}
		if (!(mask & (1u << s))) {
			continue;
		}
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

/* record_done drops the item's reference on its segment; recycles an emptied, sealed one. */
static void record_done(struct deliver *d, struct item *it)
{
	if (it->ref.log == NULL) {
		return; /* a dead letter sent again: it has no record in the log */
	}
	int rc;

	if (spool_log_unref(it->ref.log, it->ref.seg) &&
	    (rc = spool_log_recycle(it->ref.log, it->ref.seg)) != 0) {
		log_line(LOG_WARN, d->who, "spool.recycle seg=%u error=\"%s\"", it->ref.seg->n, strerror(-rc));
	}
}

/*
 * dead_letter writes a message a sink refused for good to SPOOL/failed/ID:
 * its envelope text with the lengths of what follows and the sinks' last
 * error ("msg_len", "auth_len", "error" lines; spool_dead_parse reads it
 * back), then the message and our auth block. Rare, so a file of its own
 * is fine; it is durable before the record is marked removed.
 */
static int dead_letter(struct deliver *d, struct item *it)
{
	const struct spool_entry *e = &it->ent;
	struct bb b;
	int fd, rc = 0;

	if (e->data == NULL) {
		return -EINVAL;
	}
	bb_init(&b, 0);
	if (spool_head_format(&b, &e->env) != 0) {
		bb_fini(&b);
		return -ENOMEM;
	}
	b.len--; /* the head's empty line comes after our lines */
	if (bb_printf(&b, "msg_len %zu\nauth_len %zu\nerror %s\n\n", e->msg.len, e->auth.len, it->why) != 0 ||
	    bb_append_span(&b, e->msg) != 0 || bb_append_span(&b, e->auth) != 0) {
		bb_fini(&b);
		return -ENOMEM;
	}
	fd = openat(d->g->dirs->failed, e->env.id, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
	} else {
		if (write(fd, b.p, b.len) != (ssize_t)b.len || fdatasync(fd) != 0) {
			rc = -EIO;
		}
		close(fd);
	}
	if (rc == 0 && fsync(d->g->dirs->failed) != 0) {
		rc = -errno;
	}
	bb_fini(&b);
	return rc;
}

/* retry_after_ms reads a sink's SINK_WHY_RETRY_AFTER "<N>s" from why; 0 if none. */
static int64_t retry_after_ms(const char *why)
{
	const char *p = strstr(why, SINK_WHY_RETRY_AFTER);
	uint64_t n = 0;

	if (p == NULL) {
		return 0;
	}
	p += strlen(SINK_WHY_RETRY_AFTER);
	for (; *p >= '0' && *p <= '9' && n <= SINK_RETRY_AFTER_MAX_S; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
	}
	if (*p != 's') {
		return 0;
	}
	return (int64_t)(n < SINK_RETRY_AFTER_MAX_S ? n : SINK_RETRY_AFTER_MAX_S) * 1000;
}

/*
 * forward_record copies a record that has waited --spool-forward-after for
 * a sink into this worker's forward segment of the same log, so the
 * segment it came in can be recycled once its other records are done (a
 * sink down for hours would otherwise pin every segment until
 * --spool-max-size). The copy is a record like any other (new generation
 * and slot, same id), durable before the old one is marked removed: a crash
 * between the two delivers it twice, never loses it. Its done byte carries
 * the sinks that already took it. Once per message (a copy that found no
 * free segment or failed to write is tried again at the next retry); a
 * record larger than a segment stays where it is. Worker thread; it->ent holds the record.
 */
static void forward_record(struct deliver *d, struct item *it)
{
	struct spool_log *l = it->ref.log;
	struct spool_rec_hdr h;
	uint64_t len, padded, off;
	uint8_t hdr[SPOOL_REC_HDR_LEN], trl[SPOOL_REC_TRL_LEN + SPOOL_REC_ALIGN] = { 0 };
	const uint8_t *payload;
	size_t payload_len;
	struct spool_seg *f;
	unsigned li, nl = atomic_load_explicit(&d->num_logs, memory_order_acquire);
	bool wake;
	char who[64];
	int rc;

	it->forwarded = true;
	snprintf(who, sizeof(who), "%s %s", d->who, it->ref.id);
	for (li = 0; li < nl && d->logs[li] != l; li++) {
	}
	if (li == nl || it->ent.data == NULL ||
	    !spool_rec_check(&h, &len, it->ent.data, it->ent.data_len, it->ref.seg->gen, it->ref.slot)) {
		return;
	}
	payload = it->ent.data + SPOOL_REC_HDR_LEN;
	payload_len = (size_t)(len - SPOOL_REC_HDR_LEN - SPOOL_REC_TRL_LEN);
	padded = spool_rec_padded(len);
	if (padded > l->seg_size - SPOOL_SEG_HDR_LEN) {
		return; /* a spilled giant: its segment holds it alone anyway */
	}
	if ((f = d->fwd[li]) != NULL && f->tail + padded > f->size) {
		if (spool_log_seal(l, f) && (rc = spool_log_recycle(l, f)) != 0) {
			log_line(LOG_WARN, d->who, "spool.recycle seg=%u error=\"%s\"", f->n, strerror(-rc));
		}
		f = d->fwd[li] = NULL;
	}
	if (f == NULL) {
		if ((rc = spool_log_take(l, SEG_ACTIVE, &f, &wake, NULL)) != 0) {
			it->forwarded = false; /* no free segment now: tried again at its next retry */
			return;
		}
		d->fwd[li] = f;
	}
	h.gen = f->gen;
	h.slot = f->num_slots;
	spool_rec_hdr_encode(hdr, &h);
	(void)spool_rec_trailer_encode(trl, hdr, crc32c_update(0, payload, payload_len), payload_len);
	off = f->tail;
	{
		struct iovec iov[3] = {
			{ hdr, sizeof(hdr) },
			{ (void *)(uintptr_t)payload, payload_len },
			{ trl, SPOOL_REC_TRL_LEN + (size_t)(padded - len) },
		};
		ssize_t want = (ssize_t)(sizeof(hdr) + payload_len + SPOOL_REC_TRL_LEN + (padded - len));

		if (pwritev(f->fd, iov, 3, (off_t)off) != want || fdatasync(f->fd) != 0) {
			log_line(LOG_WARN, who, "spool.forward error=\"%s\" (it stays where it is)", strerror(errno));
			it->forwarded = false; /* tried again at its next retry */
			return; /* the bytes past the tail are never read: the next copy overwrites them */
		}
	}
	f->tail = off + padded;
	f->num_slots++;
	spool_log_ref(l, f);
	if (it->ref.done != 0 && (rc = spool_log_mark(l, f, h.slot, it->ref.done)) != 0) {
		log_line(LOG_WARN, who, "spool.done error=\"%s\"", strerror(-rc));
	}
	if ((rc = spool_log_mark(l, it->ref.seg, it->ref.slot, SPOOL_DONE_REMOVED)) != 0) {
		log_line(LOG_WARN, who, "spool.done error=\"%s\"", strerror(-rc));
	}
	log_line(LOG_INFO, who, "spool.forward from=s%u-%u to=s%u-%u slot=%u", l->shard, it->ref.seg->n, l->shard, f->n,
		 h.slot);
	record_done(d, it); /* the old copy: its segment may be recycled now */
	it->ref.seg = f;
	it->ref.off = off;
	it->ref.len = len;
	it->ref.slot = h.slot;
}

/* real_us is the wall clock, to compare with a message's received_us. */
static int64_t real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void finish_one(struct deliver *d, struct item *it)
{
	const struct deliver_global *g = d->g;
	bool all_ok = true, perm = false;
	uint8_t ok_bits = 0;
	char who[64];
	int rc;

	for (unsigned s = 0; s < g->num_sinks; s++) {
		all_ok &= it->res[s].rc == SINK_OK;
		perm |= it->res[s].rc == SINK_PERMFAIL;
		if (it->res[s].rc == SINK_OK && s < SPOOL_SINK_BITS) {
			ok_bits |= (uint8_t)(1u << s);
		}
	}
	snprintf(who, sizeof(who), "%s %s", d->who, it->ent.data ? it->ent.env.id : "?");
	if (!all_ok && !perm && it->ent.data != NULL && real_us() - it->ent.env.received_us > g->max_age_us) {
		/* Retried long enough (--sink-max-age): a dead letter, with the last error. */
		char last[sizeof(it->why)];

		snprintf(last, sizeof(last), "%s", it->why);
		snprintf(it->why, sizeof(it->why), "expired after %u attempts: %.120s", it->attempts + 1, last);
		perm = true;
	}
	/* Per sink: took it, will be retried, or refused for good (a dead
	 * letter, --sink-max-age included). */
	for (unsigned s = 0; s < g->num_sinks; s++) {
		if (s < SPOOL_SINK_BITS && (it->ref.done & (1u << s))) {
			continue; /* took it before (a sync sink, or an earlier attempt) */
		}
		metrics_add(it->res[s].rc == SINK_OK ? &d->sink_ok[s] : perm ? &d->sink_perm[s] : &d->sink_temp[s], 1);
	}
	if ((ok_bits & ~it->ref.done) != 0) {
		/* What each sink took is recorded, so a retry (or a restart) goes
		 * only to the sinks that still owe it. */
		if (it->ref.log != NULL && (rc = spool_log_mark(it->ref.log, it->ref.seg, it->ref.slot, ok_bits)) != 0) {
			log_line(LOG_WARN, who, "spool.done error=\"%s\"", strerror(-rc));
		}
		it->ref.done |= ok_bits;
	}
	if (all_ok) {
		spool_entry_fini(&it->ent);
		if (it->ref.log == NULL && unlinkat(g->dirs->failed, it->ref.id, 0) != 0) {
			log_line(LOG_WARN, who, "spool.failed error=\"%s\" (delivered; remove the dead letter by hand)",
				 strerror(errno));
		}
		log_line(LOG_INFO, who, "deliver.ok sinks=%u%s", g->num_sinks, it->ref.log == NULL ? " from=failed/" : "");
		atomic_fetch_add_explicit(&d->n_ok, 1, memory_order_relaxed);
		metrics_add(&d->n_left, 1);
		record_done(d, it);
		free(it);
		return;
	}
	if (perm) {
		log_line(LOG_WARN, who, "deliver.permfail reason=\"%s\" moved=failed/", it->why);
		if ((rc = dead_letter(d, it)) != 0 && it->ent.data != NULL) {
			/* Kept in the log: retried like a TEMPFAIL until it can be written. */
			log_line(LOG_ERR, who, "spool.failed error=\"%s\"", strerror(-rc));
		} else {
			if (it->ref.log != NULL &&
			    (rc = spool_log_mark(it->ref.log, it->ref.seg, it->ref.slot, SPOOL_DONE_REMOVED)) != 0) {
				log_line(LOG_WARN, who, "spool.done error=\"%s\"", strerror(-rc));
			}
			atomic_fetch_add_explicit(&d->n_perm, 1, memory_order_relaxed);
			metrics_add(&d->n_left, 1);
			spool_entry_fini(&it->ent);
			record_done(d, it);
			free(it);
			return;
		}
	}
	/* TEMPFAIL: keep it in the spool, retry with doubling backoff. Drop the
	 * loaded bytes meanwhile; they are reloaded at the next attempt. */
	int64_t delay = g->retry_first_ms << (it->attempts < 5 ? it->attempts : 5), after;

	if (delay > g->retry_max_ms) {
		delay = g->retry_max_ms;
	}
	if ((after = retry_after_ms(it->why)) > delay) {
		delay = after; /* the consumer asked for more time (HTTP Retry-After) */
	}
	/* Up to 10% of jitter, so messages deferred together (a consumer
	 * down) do not all come back in the same millisecond. */
	d->jitter ^= d->jitter << 13;
	d->jitter ^= d->jitter >> 7;
	d->jitter ^= d->jitter << 17;
	delay += (int64_t)(d->jitter % (uint64_t)(delay / 10 + 1));
	if (it->attempts == 0) {
		it->first_fail_ms = now_ms();
	}
	if (g->forward_after_ms > 0 && !it->forwarded && it->ref.log != NULL && it->ent.data != NULL &&
	    now_ms() - it->first_fail_ms >= g->forward_after_ms &&
	    spool_log_state(it->ref.log, it->ref.seg) == SEG_SEALED) {
		forward_record(d, it);
	}
	it->attempts++;
	it->due_ms = now_ms() + delay;
	log_line(LOG_WARN, who, "deliver.tempfail reason=\"%s\" attempt=%u retry_in=%llds", it->why, it->attempts,
		 (long long)(it->due_ms - now_ms()) / 1000);
	atomic_fetch_add_explicit(&d->n_temp, 1, memory_order_relaxed);
	spool_entry_fini(&it->ent);
	memset(&it->ent, 0, sizeof(it->ent));
	it->next = d->retry;
	d->retry = it;
}

static void sync_done(struct deliver *d)
{
	d->last_done_sync = now_ms();
	for (unsigned i = 0, n = atomic_load_explicit(&d->num_logs, memory_order_acquire); i < n; i++) {
		spool_log_sync_done(d->logs[i]);
	}
}

/* ctl_take removes the item with `id` from the queue or the retry list; NULL if this worker has none. mu held. */
static struct item *ctl_take(struct deliver *d, const char *id, bool *out_was_retry)
{
	struct item **pp;

	for (pp = &d->queue; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->ref.id, id) == 0) {
			struct item *it = *pp;

			*pp = it->next;
			if (d->queue_tail == &it->next) {
				d->queue_tail = pp;
			}
			it->next = NULL;
			*out_was_retry = false;
			return it;
		}
	}
	for (pp = &d->retry; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->ref.id, id) == 0) {
			struct item *it = *pp;

			*pp = it->next;
			it->next = NULL;
			*out_was_retry = true;
			return it;
		}
	}
	return NULL;
}

/*
 * ctl_scan acts on the requests `oceanmx spool retry|delete ID` left in
 * SPOOL/ctl (files named ID.retry or ID.delete): the worker that holds the
 * message removes the file. A request nobody took within a minute (the
 * message was delivered meanwhile, or never existed) is dropped by worker 0.
 */
static void ctl_scan(struct deliver *d)
{
	int fd = dup(d->g->dirs->ctl);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	d->last_ctl = now_ms();
	if (dir == NULL) {
		if (fd >= 0) {
			close(fd);
		}
		return;
	}
	rewinddir(dir);
	while ((e = readdir(dir)) != NULL) {
		char id[SPOOL_REC_ID_LEN];
		const char *dot = strrchr(e->d_name, '.');
		bool del, was_retry = false;
		struct item *it;
		size_t n;

		if (e->d_name[0] == '.' || dot == NULL || (size_t)(dot - e->d_name) >= sizeof(id)) {
			continue;
		}
		del = strcmp(dot, ".delete") == 0;
		if (!del && strcmp(dot, ".retry") != 0) {
			continue;
		}
		n = (size_t)(dot - e->d_name);
		memcpy(id, e->d_name, n);
		id[n] = '\0';
		pthread_mutex_lock(&d->mu);
		it = ctl_take(d, id, &was_retry);
		if (it != NULL && !del) {
			it->due_ms = 0;
			*d->queue_tail = it; /* at the end of the queue: delivered with the next batch */
			d->queue_tail = &it->next;
		}
		pthread_mutex_unlock(&d->mu);
		if (it == NULL && d->idx == 0 && faccessat(d->g->dirs->failed, id, F_OK, 0) == 0) {
			/* A dead letter: retry sends it to every sink again from
			 * SPOOL/failed (removed once they all took it); delete
			 * removes it. Worker 0 looks after SPOOL/failed. */
			if (del) {
				if (unlinkat(d->g->dirs->failed, id, 0) != 0) {
					log_line(LOG_WARN, d->who, "spool.ctl id=%s op=delete error=\"%s\"", id, strerror(errno));
				}
			} else if ((it = calloc(1, sizeof(*it))) != NULL) {
				snprintf(it->ref.id, sizeof(it->ref.id), "%s", id);
				pthread_mutex_lock(&d->mu);
				*d->queue_tail = it;
				d->queue_tail = &it->next;
				pthread_mutex_unlock(&d->mu);
				it = NULL;
			} else {
				continue; /* out of memory: the request stays for the next scan */
			}
			unlinkat(d->g->dirs->ctl, e->d_name, 0);
			log_line(LOG_NOTICE, d->who, "spool.ctl id=%s op=%s from=failed/", id, dot + 1);
			continue;
		}
		if (it == NULL) {
			struct stat st;

			if (d->idx == 0 && fstatat(d->g->dirs->ctl, e->d_name, &st, 0) == 0 &&
			    st.st_mtime + 60 < time(NULL)) {
				unlinkat(d->g->dirs->ctl, e->d_name, 0);
				log_line(LOG_NOTICE, d->who, "spool.ctl id=%s op=%s result=\"not queued\"", id, dot + 1);
			}
			continue;
		}
		if (del && it->ref.log == NULL) {
			/* a dead letter queued for a retry: deleting it drops both */
			unlinkat(d->g->dirs->failed, id, 0);
			spool_entry_fini(&it->ent);
			free(it);
		} else if (del) {
			int rc = spool_log_mark(it->ref.log, it->ref.seg, it->ref.slot, SPOOL_DONE_REMOVED);

			if (rc != 0) {
				log_line(LOG_WARN, d->who, "spool.done error=\"%s\"", strerror(-rc));
			}
			spool_entry_fini(&it->ent);
			record_done(d, it);
			free(it);
		}
		unlinkat(d->g->dirs->ctl, e->d_name, 0);
		log_line(LOG_NOTICE, d->who, "spool.ctl id=%s op=%s", id, dot + 1);
	}
	closedir(dir);
}

/*
 * upkeep does the worker's log chores (called without mu): recycle the
 * segments the shard sealed empty, and make a segment when a log's pool
 * runs low (at most one try a second after a failure such as a full disk).
 */
static void upkeep(struct deliver *d)
{
	struct recycle_req *r;
	int rc;

	pthread_mutex_lock(&d->mu);
	r = d->recycle;
	d->recycle = NULL;
	d->kicked = false;
	pthread_mutex_unlock(&d->mu);
	if (now_ms() - d->last_ctl >= 1000) {
		ctl_scan(d);
	}
	while (r != NULL) {
		struct recycle_req *next = r->next;

		if ((rc = spool_log_recycle(r->log, r->seg)) != 0) {
			log_line(LOG_WARN, d->who, "spool.recycle seg=%u error=\"%s\"", r->seg->n, strerror(-rc));
		}
		free(r);
		r = next;
	}
	for (unsigned i = 0, n = atomic_load_explicit(&d->num_logs, memory_order_acquire); i < n; i++) {
		struct spool_log *l = d->logs[i];
		bool want, now;

		if (!spool_log_make_begin(l, d->last_make_try == 0 || now_ms() - d->last_make_try >= 1000, &now)) {
			continue;
		}
		rc = spool_log_make_segment(l);
		want = spool_log_make_done(l, rc);
		if (rc != 0) {
			/* Attempts a waiting transaction asked for may come often
			 * while a fault holds: one line a second is enough. */
			if (!now || now_ms() - d->last_make_try >= 1000 || d->last_make_try == 0) {
				log_line(LOG_WARN, d->who, "spool.segment error=\"%s\"", strerror(-rc));
				d->last_make_try = now_ms();
			}
		} else {
			d->last_make_try = 0;
			if (want) {
				pthread_mutex_lock(&d->mu);
				d->kicked = true; /* maybe one more */
				pthread_mutex_unlock(&d->mu);
			}
		}
	}
}

static void run_batch(struct deliver *d, struct item *batch)
{
	const struct deliver_global *g = d->g;
	struct item *it, *next;

	for (it = batch; it != NULL; it = it->next) {
		start_one(d, it, UINT32_MAX);
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
	if (now_ms() - d->last_done_sync >= DONE_SYNC_MS) {
		sync_done(d);
	}
}

/*
 * sync_post tells the shard the outcome of a sync item. Without memory the
 * outcome is lost: the client then gets 421 at --timeout-commit.
 */
static void sync_post(struct deliver *d, const struct item *it, enum sink_rc rc, const char *who)
{
	struct deliver_sync_res *r = calloc(1, sizeof(*r));
	const char *said = rc == SINK_OK ? NULL : sink_why_said(it->why);

	if (r == NULL) {
		log_line(LOG_WARN, who, "deliver.sync error=\"out of memory\" (the client times out)");
		return;
	}
	r->conn_idx = it->conn_idx;
	r->conn_gen = it->conn_gen;
	r->rc = rc;
	snprintf(r->id, sizeof(r->id), "%s", it->ref.id);
	snprintf(r->said, sizeof(r->said), "%s", said ? said : "");
	inbox_push(&d->sync_inbox, &r->node);
}

/*
 * finish_sync settles a sync item after its sync sinks answered. All OK:
 * their done bits are recorded and the item joins the queue for the other
 * sinks (it is still loaded). Otherwise the record is marked removed and
 * that made durable before the refusal is posted, so a crash never delivers
 * a message whose client was told 451 or 550.
 */
static void finish_sync(struct deliver *d, struct item *it)
{
	const struct deliver_global *g = d->g;
	enum sink_rc worst = SINK_OK;
	uint8_t ok_bits = 0;
	char who[64];
	int rc;

	for (unsigned s = 0; s < g->num_sinks; s++) {
		if (!(d->sync_mask & (1u << s))) {
			continue;
		}
		metrics_add(it->res[s].rc == SINK_OK ? &d->sink_ok[s]
			    : it->res[s].rc == SINK_PERMFAIL ? &d->sink_perm[s] : &d->sink_temp[s], 1);
		if (it->res[s].rc == SINK_OK) {
			ok_bits |= (uint8_t)(1u << s);
		} else if (it->res[s].rc == SINK_PERMFAIL) {
			worst = SINK_PERMFAIL;
		} else if (worst == SINK_OK) {
			worst = SINK_TEMPFAIL;
		}
	}
	snprintf(who, sizeof(who), "%s %s", d->who, it->ref.id);
	if (worst == SINK_OK) {
		if ((ok_bits & ~it->ref.done) != 0 &&
		    (rc = spool_log_mark(it->ref.log, it->ref.seg, it->ref.slot, ok_bits)) != 0) {
			log_line(LOG_WARN, who, "spool.done error=\"%s\"", strerror(-rc));
		}
		it->ref.done |= ok_bits;
		log_line(LOG_INFO, who, "deliver.sync result=ok");
		sync_post(d, it, SINK_OK, who);
		it->sync = false;
		it->why[0] = '\0';
		pthread_mutex_lock(&d->mu);
		metrics_add(&d->n_enq, 1); /* under mu */
		it->enq_ms = now_ms();
		*d->queue_tail = it; /* on to the other sinks; the done bits skip the sync ones */
		d->queue_tail = &it->next;
		pthread_mutex_unlock(&d->mu);
		return;
	}
	log_line(LOG_NOTICE, who, "deliver.sync result=%s reason=\"%s\" removed=yes", sink_rc_name(worst), it->why);
	if ((rc = spool_log_mark(it->ref.log, it->ref.seg, it->ref.slot, SPOOL_DONE_REMOVED)) != 0) {
		log_line(LOG_WARN, who, "spool.done error=\"%s\"", strerror(-rc));
	}
	spool_log_sync_done(it->ref.log);
	sync_post(d, it, worst, who);
	atomic_fetch_add_explicit(worst == SINK_PERMFAIL ? &d->n_perm : &d->n_temp, 1, memory_order_relaxed);
	spool_entry_fini(&it->ent);
	record_done(d, it);
	free(it);
}

/* run_sync hands sync items to the sync sinks only, then settles each. */
static void run_sync(struct deliver *d, struct item *list)
{
	const struct deliver_global *g = d->g;
	struct item *it, *next;

	for (it = list; it != NULL; it = it->next) {
		start_one(d, it, d->sync_mask);
	}
	for (unsigned s = 0; s < g->num_sinks; s++) {
		if ((d->sync_mask & (1u << s)) && g->sinks[s].ops->flush != NULL) {
			g->sinks[s].ops->flush(d->state[s]);
		}
	}
	for (it = list; it != NULL; it = next) {
		next = it->next;
		it->next = NULL;
		finish_sync(d, it);
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
		struct item *batch;

		if (d->recycle != NULL || d->kicked || now_ms() - d->last_ctl >= 1000) {
			pthread_mutex_unlock(&d->mu);
			upkeep(d);
			pthread_mutex_lock(&d->mu);
		}
		if (d->sync_q != NULL) {
			/* Sync items first: a client waits for each. */
			batch = d->sync_q;
			d->sync_q = NULL;
			d->sync_tail = &d->sync_q;
			pthread_mutex_unlock(&d->mu);
			run_sync(d, batch);
			pthread_mutex_lock(&d->mu);
			continue;
		}
		batch = take_batch(d);
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
			if (d->recycle == NULL && !d->kicked) {
				pthread_cond_timedwait(&d->cv, &d->mu, &ts);
			}
			if (d->last_done_sync + DONE_SYNC_MS <= now_ms()) {
				pthread_mutex_unlock(&d->mu);
				sync_done(d);
				pthread_mutex_lock(&d->mu);
			}
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
	d->jitter = (0x9E3779B97F4A7C15ull ^ ((uint64_t)idx << 32) ^ (uint64_t)now_ms()) | 1; /* xorshift: never 0 */
	d->g = g;
	d->idx = idx;
	snprintf(d->who, sizeof(d->who), "d%u", idx);
	d->queue_tail = &d->queue;
	d->sync_tail = &d->sync_q;
	if (inbox_init(&d->sync_inbox) != 0) {
		log_line(LOG_ERR, d->who, "deliver.start error=\"%s\"", strerror(errno));
		free(d);
		return NULL;
	}
	for (s = 0; s < g->num_sinks; s++) {
		if (g->sinks[s].sync) {
			d->sync_mask |= 1u << s;
		}
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
	inbox_fini(&d->sync_inbox);
	free(d);
	return NULL;
}

int deliver_add_log(struct deliver *d, struct spool_log *l)
{
	unsigned n = atomic_load_explicit(&d->num_logs, memory_order_relaxed);

	if (n == LOGS_MAX) {
		return -ENOMEM;
	}
	d->logs[n] = l;
	atomic_store_explicit(&d->num_logs, n + 1, memory_order_release); /* the worker reads logs[n] after this */
	return 0;
}

int deliver_enqueue(struct deliver *d, const struct spool_ref *ref)
{
	struct item *it = calloc(1, sizeof(*it));

	if (it == NULL) {
		return -ENOMEM;
	}
	it->ref = *ref;
	it->enq_ms = now_ms();
	pthread_mutex_lock(&d->mu);
	metrics_add(&d->n_enq, 1); /* under mu: one writer at a time */
	*d->queue_tail = it;
	d->queue_tail = &it->next;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	return 0;
}

bool deliver_has_sync(const struct deliver *d)
{
	return d->sync_mask != 0;
}

int deliver_enqueue_sync(struct deliver *d, const struct spool_ref *ref, uint32_t conn_idx, uint32_t conn_gen)
{
	struct item *it = calloc(1, sizeof(*it));

	if (it == NULL) {
		return -ENOMEM;
	}
	it->ref = *ref;
	it->sync = true;
	it->conn_idx = conn_idx;
	it->conn_gen = conn_gen;
	pthread_mutex_lock(&d->mu);
	*d->sync_tail = it;
	d->sync_tail = &it->next;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	return 0;
}

struct inbox *deliver_sync_inbox(struct deliver *d)
{
	return &d->sync_inbox;
}

void deliver_recycle(struct deliver *d, struct spool_log *l, struct spool_seg *seg)
{
	struct recycle_req *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		log_line(LOG_WARN, d->who,
			 "spool.recycle seg=%u error=\"out of memory\" (tried again with the next segment made)", seg->n);
		spool_log_recycle_later(l, seg);
		deliver_kick(d);
		return;
	}
	r->log = l;
	r->seg = seg;
	pthread_mutex_lock(&d->mu);
	r->next = d->recycle;
	d->recycle = r;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

void deliver_kick(struct deliver *d)
{
	pthread_mutex_lock(&d->mu);
	d->kicked = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
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
	upkeep(d);
	sync_done(d);
	for (it = d->retry; it != NULL; it = next) {
		next = it->next;
		spool_entry_fini(&it->ent);
		free(it);
	}
	for (unsigned s = 0; s < d->g->num_sinks; s++) {
		d->g->sinks[s].ops->worker_fini(d->state[s]);
	}
	/* Outcomes nobody read (the shard stopped first) */
	for (struct inbox_node *n = inbox_take(&d->sync_inbox), *nn; n != NULL; n = nn) {
		nn = n->next;
		free(n); /* the node is the first member of struct deliver_sync_res */
	}
	inbox_fini(&d->sync_inbox);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
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
		uint64_t enq = metrics_get(&d->n_enq), gone = metrics_get(&d->n_left);

		out->queued = enq > gone ? enq - gone : 0;
	}
	out->oldest_ms = (int64_t)metrics_get(&d->oldest_ms);
}
