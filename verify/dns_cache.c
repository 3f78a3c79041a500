/*
 * dns_cache.c - the shared cache of DNS answers and its front resolver;
 * see dns_cache.h for the policy.
 *
 * Layout: DNS_CACHE_SHARDS shards picked by the top bits of the key's hash,
 * each with its own mutex, hash chains, LRU list and byte budget (the
 * total budget split evenly), so workers reading different names rarely
 * meet on a lock and no lock is held across a hand-off or a callback.
 * An entry is either an answer (in the LRU list, evictable) or a lookup in
 * flight (its waiters, not evictable: someone will put its answer).
 *
 * Ownership: an entry holds one reference to its answer; a hit hands the
 * reader a new one; a put hands each waiter one. Waiter storage belongs to
 * the waiter and is borrowed until its fn runs.
 */
#include "dns_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DNS_CACHE_SHARDS      16u   /* a power of two */
#define DNS_CACHE_SHARD_BITS  4u
#define DNS_CACHE_ENTRY_GUESS 256u  /* bytes of a typical entry, to size the hash tables */

struct dns_cache_rr {
	uint32_t off, len;  /* into the data after rr[] */
	uint16_t pref;
};

struct dns_cache_ans {
	atomic_uint refs;
	bool is_static;          /* the out-of-memory answer: never freed */
	enum dns_status status;
	uint16_t qtype;
	unsigned num_records, num_ignored;
	uint64_t expires_ms;     /* the TTL, as an instant of the cache's clock */
	size_t size;             /* bytes allocated */
	struct dns_cache_rr rr[]; /* num_records, then the record bytes */
};

struct dce {
	struct dce *hnext;                /* hash chain */
	struct dce *prev, *next;          /* LRU list; self-linked while in flight */
	uint64_t hash;
	struct dns_cache_ans *ans;        /* a reference; NULL while the lookup is in flight */
	struct dns_cache_waiter *waiters; /* while in flight */
	size_t cost;                      /* bytes counted against the shard's budget */
	uint16_t qtype;
	uint16_t name_len;
	char *name;                       /* canonical: lower case, no final dot; stored
	                                     right after the struct (not a flexible array,
	                                     so the LRU head can be a struct dce) */
};

struct dcs {
	pthread_mutex_t mu;
	struct dce **buckets;
	size_t mask;
	struct dce lru;                   /* head: lru.next is the most recently used */
	size_t bytes, budget;
	uint64_t entries, hits, misses, shared, evictions;
};

struct dns_cache {
	dns_cache_clock_fn *now_fn;
	void *clock_arg;
	struct dcs shard[DNS_CACHE_SHARDS];
};

static struct dns_cache_ans oom_ans = {
	.is_static = true,
	.status = DNS_ERROR,
};

static uint64_t default_clock(void *arg)
{
	(void)arg;
	return dns_now_ms();
}

uint64_t dns_cache_now_ms(const struct dns_cache *c)
{
	return c->now_fn(c->clock_arg);
}

/* ------------------------------------------------------------ answers */

struct dns_cache_ans *dns_cache_ans_ref(struct dns_cache_ans *a)
{
	if (!a->is_static) {
		atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
	}
	return a;
}

void dns_cache_ans_unref(struct dns_cache_ans *a)
{
	if (a == NULL || a->is_static) {
		return;
	}
	if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
		free(a);
	}
}

enum dns_status dns_cache_ans_status(const struct dns_cache_ans *a)
{
	return a->status;
}

static const uint8_t *ans_data(const struct dns_cache_ans *a)
{
	return (const uint8_t *)&a->rr[a->num_records];
}

static uint32_t ttl_left(const struct dns_cache_ans *a, uint64_t now_ms)
{
	return a->expires_ms > now_ms ? (uint32_t)((a->expires_ms - now_ms + 999) / 1000) : 0;
}

void dns_cache_ans_answer(struct dns_answer *out, const struct dns_cache_ans *a, uint64_t now_ms)
{
	const uint8_t *d = ans_data(a);
	size_t len = 0;

	dns_answer_set_status(out, a->qtype, a->status);
	out->ttl = ttl_left(a, now_ms);
	out->num_ignored = a->num_ignored;
	for (unsigned i = 0; i < a->num_records; i++) {
		len = a->rr[i].off + a->rr[i].len > len ? a->rr[i].off + a->rr[i].len : len;
	}
	memcpy(out->buf, d, len);
	out->buf_len = len;
	for (unsigned i = 0; i < a->num_records; i++) {
		out->rr[i].data = span_make(out->buf + a->rr[i].off, a->rr[i].len);
		out->rr[i].pref = a->rr[i].pref;
	}
	out->num_records = a->num_records;
}

void dns_cache_ans_txt(struct dns_txt_answer *out, const struct dns_cache_ans *a, uint64_t now_ms)
{
	const uint8_t *d = ans_data(a);

	out->status = a->status;
	out->ttl = ttl_left(a, now_ms);
	out->num_records = 0;
	out->num_ignored = a->num_ignored;
	out->buf_len = 0;
	for (unsigned i = 0; i < a->num_records; i++) {
		if (out->num_records == DNS_TXT_RECORDS_MAX) {
			out->num_ignored++;
			continue;
		}
		/* Both answers bound their bytes by DNS_TXT_BYTES_MAX: this fits. */
		memcpy(out->buf + out->buf_len, d + a->rr[i].off, a->rr[i].len);
		out->rec[out->num_records++] = span_make(out->buf + out->buf_len, a->rr[i].len);
		out->buf_len += a->rr[i].len;
	}
}

/* store_ttl is how long (seconds) answer `a` may be kept; 0: not at all. */
static uint32_t store_ttl(const struct dns_answer *a)
{
	switch (a->status) {
	case DNS_OK:
	case DNS_TOO_BIG:   /* definite answers: the same until their TTL ends */
	case DNS_MALFORMED:
		return a->ttl < DNS_CACHE_TTL_MAX ? a->ttl : DNS_CACHE_TTL_MAX;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		/* RFC 2308 §5: the negative TTL (the resolver's, from the SOA); none without one. */
		return a->ttl < DNS_CACHE_NEG_TTL_MAX ? a->ttl : DNS_CACHE_NEG_TTL_MAX;
	case DNS_SERVFAIL:
	case DNS_TIMEOUT:
		return DNS_CACHE_FAIL_TTL; /* RFC 2308 §7.1: briefly, so a retry comes soon */
	case DNS_ERROR:
	case DNS_STATUS_COUNT:
		break;
	}
	return 0;
}

/* ans_new copies `a` into a new answer (one reference) expiring `ttl` seconds after now_ms. */
static struct dns_cache_ans *ans_new(const struct dns_answer *a, uint32_t ttl, uint64_t now_ms)
{
	unsigned n = a->status == DNS_OK ? a->num_records : 0;
	size_t bytes = 0, size;
	struct dns_cache_ans *c;
	uint8_t *d;

	for (unsigned i = 0; i < n; i++) {
		bytes += a->rr[i].data.len;
	}
	size = sizeof(*c) + n * sizeof(c->rr[0]) + bytes;
	c = malloc(size);
	if (c == NULL) {
		return NULL;
	}
	atomic_init(&c->refs, 1);
	c->is_static = false;
	c->status = a->status;
	c->qtype = a->qtype;
	c->num_records = n;
	c->num_ignored = a->num_ignored;
	c->expires_ms = now_ms + (uint64_t)ttl * 1000;
	c->size = size;
	d = (uint8_t *)&c->rr[n];
	bytes = 0;
	for (unsigned i = 0; i < n; i++) {
		memcpy(d + bytes, a->rr[i].data.p, a->rr[i].data.len);
		c->rr[i].off = (uint32_t)bytes;
		c->rr[i].len = (uint32_t)a->rr[i].data.len;
		c->rr[i].pref = a->rr[i].pref;
		bytes += a->rr[i].data.len;
	}
	return c;
}

/* ------------------------------------------------------------ the cache */

/*
 * canon writes `name` as the key compares it: ASCII lower case (RFC 4343),
 * without a final dot (absolute either way, RFC 1034 §3.1). Its length, or
 * -1 when longer than a domain name's text can be.
 */
static int canon(char *out, const char *name)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		if (n == DNS_NAME_TEXT_MAX + 1) {
			return -1;
		}
		out[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	}
	if (n > 0 && out[n - 1] == '.') {
		n--;
	}
	if (n > DNS_NAME_TEXT_MAX) {
		return -1;
	}
	out[n] = '\0';
	return (int)n;
}

static uint64_t key_hash(const char *name, size_t len, uint16_t qtype)
{
	uint64_t h = 1469598103934665603ull ^ qtype;

	for (size_t i = 0; i < len; i++) {
		h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
	}
	return h ^ (h >> 29);
}

static struct dcs *shard_of(struct dns_cache *c, uint64_t h)
{
	return &c->shard[h >> (64 - DNS_CACHE_SHARD_BITS)];
}

static struct dce **find(struct dcs *s, uint64_t h, const char *name, size_t len, uint16_t qtype)
{
	struct dce **pp = &s->buckets[h & s->mask];

	for (; *pp != NULL; pp = &(*pp)->hnext) {
		const struct dce *e = *pp;

		if (e->hash == h && e->qtype == qtype && e->name_len == len && memcmp(e->name, name, len) == 0) {
			return pp;
		}
	}
	return pp;
}

static void lru_unlink(struct dce *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->next = e->prev = e;
}

static void lru_front(struct dcs *s, struct dce *e)
{
	lru_unlink(e);
	e->next = s->lru.next;
	e->prev = &s->lru;
	s->lru.next->prev = e;
	s->lru.next = e;
}

/* set_cost charges the shard for what e takes now. */
static void set_cost(struct dcs *s, struct dce *e)
{
	size_t cost = sizeof(*e) + e->name_len + 1 + (e->ans != NULL ? e->ans->size : 0);

	s->bytes = s->bytes - e->cost + cost;
	e->cost = cost;
}

/* drop unlinks the entry at *pp and frees it with its answer reference. Shard locked. */
static void drop(struct dcs *s, struct dce **pp)
{
	struct dce *e = *pp;

	*pp = e->hnext;
	lru_unlink(e);
	s->bytes -= e->cost;
	s->entries--;
	dns_cache_ans_unref(e->ans);
	free(e);
}

static struct dce *entry_new(struct dcs *s, struct dce **slot, uint64_t h, const char *name, size_t len,
			     uint16_t qtype)
{
	struct dce *e = calloc(1, sizeof(*e) + len + 1);

	if (e == NULL) {
		return NULL;
	}
	e->name = (char *)(e + 1);
	e->hash = h;
	e->qtype = qtype;
	e->name_len = (uint16_t)len;
	memcpy(e->name, name, len + 1);
	e->next = e->prev = e;
	e->hnext = *slot;
	*slot = e;
	s->entries++;
	set_cost(s, e);
	return e;
}

/* evict drops least recently used answers until the shard is within its budget. Shard locked. */
static void evict(struct dcs *s)
{
	while (s->bytes > s->budget && s->lru.prev != &s->lru) {
		struct dce *e = s->lru.prev;

		drop(s, find(s, e->hash, e->name, e->name_len, e->qtype));
		s->evictions++;
	}
}

struct dns_cache *dns_cache_new(const struct dns_cache_opts *o)
{
	struct dns_cache *c = calloc(1, sizeof(*c));
	size_t total = o != NULL && o->max_bytes != 0 ? o->max_bytes : DNS_CACHE_BYTES_DEFAULT;

	if (c == NULL) {
		return NULL;
	}
	if (total < DNS_CACHE_BYTES_MIN) {
		total = DNS_CACHE_BYTES_MIN;
	}
	c->now_fn = o != NULL && o->now_ms != NULL ? o->now_ms : default_clock;
	c->clock_arg = o != NULL ? o->clock_arg : NULL;
	for (unsigned i = 0; i < DNS_CACHE_SHARDS; i++) {
		struct dcs *s = &c->shard[i];
		size_t nb = 16;

		s->budget = total / DNS_CACHE_SHARDS;
		while (nb < s->budget / DNS_CACHE_ENTRY_GUESS && nb < ((size_t)1 << 20)) {
			nb <<= 1;
		}
		s->mask = nb - 1;
		s->lru.next = s->lru.prev = &s->lru;
		pthread_mutex_init(&s->mu, NULL);
		s->buckets = calloc(nb, sizeof(*s->buckets));
		if (s->buckets == NULL) {
			for (unsigned k = 0; k <= i; k++) {
				free(c->shard[k].buckets);
				pthread_mutex_destroy(&c->shard[k].mu);
			}
			free(c);
			return NULL;
		}
	}
	return c;
}

void dns_cache_free(struct dns_cache *c)
{
	if (c == NULL) {
		return;
	}
	for (unsigned i = 0; i < DNS_CACHE_SHARDS; i++) {
		struct dcs *s = &c->shard[i];

		for (size_t b = 0; b <= s->mask; b++) {
			while (s->buckets[b] != NULL) {
				drop(s, &s->buckets[b]);
			}
		}
		free(s->buckets); s->buckets = NULL;
		pthread_mutex_destroy(&s->mu);
	}
	free(c);
}

enum dns_cache_rc dns_cache_get(struct dns_cache *c, struct dns_cache_ans **out_ans, const char *name,
				uint16_t qtype, struct dns_cache_waiter *w)
{
	char key[DNS_NAME_TEXT_MAX + 2];
	int len = canon(key, name);
	uint64_t h, now;
	struct dcs *s;
	struct dce **pp, *e;
	enum dns_cache_rc rc = DNS_CACHE_MISS;

	*out_ans = NULL;
	if (len < 0) {
		return DNS_CACHE_ERROR;
	}
	h = key_hash(key, (size_t)len, qtype);
	s = shard_of(c, h);
	now = c->now_fn(c->clock_arg);
	pthread_mutex_lock(&s->mu);
	pp = find(s, h, key, (size_t)len, qtype);
	e = *pp;
	if (e != NULL && e->ans != NULL && e->ans->expires_ms > now) {
		*out_ans = dns_cache_ans_ref(e->ans);
		lru_front(s, e);
		s->hits++;
		rc = DNS_CACHE_HIT;
	} else if (e != NULL && e->ans == NULL) {
		if (w != NULL) {
			w->next = e->waiters;
			e->waiters = w;
			s->shared++;
			rc = DNS_CACHE_JOINED;
		}
	} else if (w != NULL) {
		if (e != NULL) {
			/* Expired: the entry waits for the new answer in place. */
			lru_unlink(e);
			dns_cache_ans_unref(e->ans);
			e->ans = NULL;
			set_cost(s, e);
		} else if ((e = entry_new(s, pp, h, key, (size_t)len, qtype)) == NULL) {
			rc = DNS_CACHE_ERROR;
		}
		if (e != NULL) {
			w->next = NULL;
			e->waiters = w;
			s->misses++;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void dns_cache_put(struct dns_cache *c, const char *name, uint16_t qtype, const struct dns_answer *a)
{
	char key[DNS_NAME_TEXT_MAX + 2];
	int len = canon(key, name);
	uint64_t now = c->now_fn(c->clock_arg), h;
	uint32_t ttl = store_ttl(a);
	struct dns_cache_ans *ans = ans_new(a, ttl, now);
	struct dns_cache_waiter *w = NULL;
	struct dcs *s;
	struct dce **pp, *e;

	if (ans == NULL) {
		ans = &oom_ans;
		ttl = 0;
	}
	if (len < 0) {
		dns_cache_ans_unref(ans);
		return; /* no get could have registered it */
	}
	h = key_hash(key, (size_t)len, qtype);
	s = shard_of(c, h);
	pthread_mutex_lock(&s->mu);
	pp = find(s, h, key, (size_t)len, qtype);
	e = *pp;
	if (e != NULL && e->ans == NULL) {
		w = e->waiters;
		e->waiters = NULL;
	}
	if (ttl == 0) {
		if (e != NULL) {
			drop(s, pp);
		}
	} else {
		if (e == NULL) {
			e = entry_new(s, pp, h, key, (size_t)len, qtype);
		}
		if (e != NULL) {
			dns_cache_ans_unref(e->ans);
			e->ans = dns_cache_ans_ref(ans);
			set_cost(s, e);
			lru_front(s, e);
			evict(s);
		}
	}
	pthread_mutex_unlock(&s->mu);
	while (w != NULL) {
		struct dns_cache_waiter *next = w->next; /* fn may free w */

		w->fn(w->arg, dns_cache_ans_ref(ans));
		w = next;
	}
	dns_cache_ans_unref(ans);
}

void dns_cache_stats(struct dns_cache *c, struct dns_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < DNS_CACHE_SHARDS; i++) {
		struct dcs *s = &c->shard[i];

		pthread_mutex_lock(&s->mu);
		out->hits += s->hits;
		out->misses += s->misses;
		out->shared += s->shared;
		out->evictions += s->evictions;
		out->entries += s->entries;
		out->bytes += s->bytes;
		pthread_mutex_unlock(&s->mu);
	}
}

/* ------------------------------------------------------------ the front resolver */

#define FRONT_ID_BUCKETS 256u /* a power of two */

struct fq {
	struct fq *next;                /* the local or remote list of answered lookups */
	struct fq *all_prev, *all_next; /* every lookup of the front (owner thread) */
	struct fq *hnext;               /* by id, until delivered or cancelled */
	struct dns_cache_waiter w;
	struct dns_front *f;
	struct dns_cache_ans *ans;      /* a reference once answered; NULL: DNS_ERROR */
	uint64_t id;
	dns_answer_fn *acb;             /* query */
	dns_txt_fn *tcb;                /* txt */
	void *arg;
	uint16_t qtype;
	bool cancelled;
};

struct dns_front {
	struct dns_resolver base;
	struct dns_cache *c;
	dns_cache_fetch_fn *fetch;
	dns_cache_wake_fn *wake;
	void *arg;
	pthread_mutex_t mu;
	struct fq *remote;              /* under mu: answered by put in other threads, newest first */
	struct fq *local, **local_tail; /* answered, in order, to deliver */
	struct fq all;                  /* list head */
	struct fq *ids[FRONT_ID_BUCKETS];
	unsigned num_pending;           /* neither delivered nor cancelled */
	uint64_t next_id;
	struct dns_answer *ans;         /* scratch answers, borrowed by the callbacks */
	struct dns_txt_answer *tans;
};

static struct dns_front *front_of(struct dns_resolver *r)
{
	return (struct dns_front *)(void *)r;
}

static void local_push(struct dns_front *f, struct fq *q)
{
	q->next = NULL;
	*f->local_tail = q;
	f->local_tail = &q->next;
}

/* front_answered is the waiter fn: any thread. */
static void front_answered(void *arg, struct dns_cache_ans *a)
{
	struct fq *q = arg;
	struct dns_front *f = q->f;
	bool was_empty;

	q->ans = a;
	pthread_mutex_lock(&f->mu);
	was_empty = f->remote == NULL;
	q->next = f->remote;
	f->remote = q;
	pthread_mutex_unlock(&f->mu);
	if (was_empty) {
		f->wake(f->arg);
	}
}

static struct fq **id_slot(struct dns_front *f, uint64_t id)
{
	struct fq **pp = &f->ids[id & (FRONT_ID_BUCKETS - 1)];

	while (*pp != NULL && (*pp)->id != id) {
		pp = &(*pp)->hnext;
	}
	return pp;
}

static int front_start(struct dns_front *f, const char *name, uint16_t qtype, uint64_t deadline_ms,
		       dns_answer_fn *acb, dns_txt_fn *tcb, void *arg, uint64_t *out_id)
{
	struct fq *q = calloc(1, sizeof(*q));
	struct dns_cache_ans *hit;
	struct fq **slot;

	if (q == NULL) {
		return -ENOMEM;
	}
	q->f = f;
	q->id = ++f->next_id;
	q->acb = acb;
	q->tcb = tcb;
	q->arg = arg;
	q->qtype = qtype;
	q->w.fn = front_answered;
	q->w.arg = q;
	slot = id_slot(f, q->id);
	*slot = q;
	q->all_next = f->all.all_next;
	q->all_prev = &f->all;
	f->all.all_next->all_prev = q;
	f->all.all_next = q;
	f->num_pending++;
	*out_id = q->id;
	switch (dns_cache_get(f->c, &hit, name, qtype, &q->w)) {
	case DNS_CACHE_HIT:
		q->ans = hit;
		local_push(f, q);
		break;
	case DNS_CACHE_MISS:
		f->fetch(f->arg, name, qtype, deadline_ms); /* may answer q at once, through front_answered */
		break;
	case DNS_CACHE_JOINED:
		break;
	case DNS_CACHE_ERROR:
	case DNS_CACHE_RC_COUNT:
		local_push(f, q); /* no answer: DNS_ERROR */
		break;
	}
	return 0;
}

static int front_txt(struct dns_resolver *r, const char *name, uint64_t deadline_ms, dns_txt_fn *cb, void *arg,
		     uint64_t *out_id)
{
	return front_start(front_of(r), name, DNS_T_TXT, deadline_ms, NULL, cb, arg, out_id);
}

static int front_query(struct dns_resolver *r, const char *name, uint16_t qtype, uint64_t deadline_ms,
		       dns_answer_fn *cb, void *arg, uint64_t *out_id)
{
	return front_start(front_of(r), name, qtype, deadline_ms, cb, NULL, arg, out_id);
}

static void front_cancel(struct dns_resolver *r, uint64_t id)
{
	struct dns_front *f = front_of(r);
	struct fq **pp = id_slot(f, id), *q = *pp;

	if (q == NULL) {
		return;
	}
	*pp = q->hnext;
	q->cancelled = true; /* freed when its answer arrives, without a callback */
	f->num_pending--;
}

static int front_fd(struct dns_resolver *r)
{
	(void)r;
	return -1;
}

static void deliver(struct dns_front *f, struct fq *q, uint64_t now)
{
	if (q->acb != NULL) {
		if (q->ans != NULL) {
			dns_cache_ans_answer(f->ans, q->ans, now);
		} else {
			dns_answer_set_status(f->ans, q->qtype, DNS_ERROR);
		}
		q->acb(q->arg, f->ans);
		return;
	}
	if (q->ans != NULL) {
		dns_cache_ans_txt(f->tans, q->ans, now);
	} else {
		memset(f->tans, 0, offsetof(struct dns_txt_answer, buf));
		f->tans->status = DNS_ERROR;
	}
	q->tcb(q->arg, f->tans);
}

static int front_process(struct dns_resolver *r, uint64_t now_ms)
{
	struct dns_front *f = front_of(r);
	uint64_t now = dns_cache_now_ms(f->c);

	(void)now_ms; /* TTLs are on the cache's clock */
	for (;;) {
		struct fq *q, *rev = NULL;

		pthread_mutex_lock(&f->mu);
		q = f->remote;
		f->remote = NULL;
		pthread_mutex_unlock(&f->mu);
		while (q != NULL) {
			struct fq *next = q->next;

			q->next = rev;
			rev = q;
			q = next;
		}
		while (rev != NULL) {
			q = rev;
			rev = q->next;
			local_push(f, q);
		}
		if ((q = f->local) == NULL) {
			break;
		}
		f->local = q->next;
		if (f->local == NULL) {
			f->local_tail = &f->local;
		}
		q->all_prev->all_next = q->all_next;
		q->all_next->all_prev = q->all_prev;
		if (!q->cancelled) {
			struct fq **pp = id_slot(f, q->id);

			*pp = q->hnext;
			f->num_pending--;
			deliver(f, q, now); /* may start or cancel other lookups */
		}
		dns_cache_ans_unref(q->ans);
		free(q);
	}
	return 0;
}

static unsigned front_pending(struct dns_resolver *r)
{
	return front_of(r)->num_pending;
}

static uint64_t front_next_deadline(struct dns_resolver *r)
{
	(void)r;
	return UINT64_MAX;
}

static void front_free(struct dns_resolver *r)
{
	struct dns_front *f = front_of(r);

	while (f->all.all_next != &f->all) {
		struct fq *q = f->all.all_next;

		f->all.all_next = q->all_next;
		dns_cache_ans_unref(q->ans);
		free(q);
	}
	pthread_mutex_destroy(&f->mu);
	free(f->ans); f->ans = NULL;
	free(f->tans); f->tans = NULL;
	free(f);
}

static const struct dns_resolver_ops front_ops = {
	.name = "cache",
	.txt = front_txt,
	.cancel = front_cancel,
	.fd = front_fd,
	.process = front_process,
	.pending = front_pending,
	.next_deadline = front_next_deadline,
	.free = front_free,
	.query = front_query,
};

struct dns_resolver *dns_cache_resolver_new(struct dns_cache *c, dns_cache_fetch_fn *fetch, dns_cache_wake_fn *wake,
					    void *arg)
{
	struct dns_front *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		return NULL;
	}
	f->ans = malloc(sizeof(*f->ans));
	f->tans = malloc(sizeof(*f->tans));
	if (f->ans == NULL || f->tans == NULL) {
		free(f->ans);
		free(f->tans);
		free(f);
		return NULL;
	}
	f->base.ops = &front_ops;
	f->c = c;
	f->fetch = fetch;
	f->wake = wake;
	f->arg = arg;
	pthread_mutex_init(&f->mu, NULL);
	f->local_tail = &f->local;
	f->all.all_next = f->all.all_prev = &f->all;
	return &f->base;
}
