/*
 * vpool.c - the verify pool; see vpool.h.
 *
 * Threads: workers (each job is bound to one, so its operations run in
 * order on one thread, as struct dkim_msg requires) and one DNS thread
 * owning the resolver. Hand-offs are small queues under a mutex per worker
 * (or for the DNS thread) plus a condition variable or an eventfd; the
 * result goes back to the shard through a lock-free stack and an eventfd
 * its ring reads.
 *
 * DNS: the checks (DKIM and ARC keys, SPF, DMARC) run on the job's worker
 * against the worker's front resolver (verify/dns_cache.h): a cached answer
 * is read there under a short lock, and only a miss goes to the DNS thread,
 * which asks libunbound and puts the answer into the cache; the cache then
 * answers every worker waiting for that name and type (one lookup for all)
 * and wakes them (dns_wake), and each delivers its answers from its own
 * thread (dns_process on the front).
 *
 * Ownership: the shard owns a job's feed buffer until it posts it (the
 * buffer moves into the operation); the worker owns the verifier state;
 * the job is freed only by the shard, after it came back through the inbox.
 */
#include "vpool.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../verify/arc.h"
#include "../verify/authres.h"
#include "../verify/dkim.h"
#include "../verify/dkim_keyrec.h"
#include "../verify/dns.h"
#include "../verify/dns_cache.h"
#include "../verify/dmarc.h"
#include "../verify/hdrsplit.h"
#include "../verify/psl.h"
#include "../verify/rspamd.h"
#include "../verify/spf.h"
#include "log.h"
#include "rspamd_client.h"
#include "thread.h"

#define VJOB_CHUNK      (64u * 1024)  /* message bytes per posted operation */

enum vop_kind {
	VOP_DATA = 0, /* message bytes (header and body) */
	VOP_END,      /* the message is complete */
	VOP_SPF,      /* start the SPF checks (vjob_spf) */
	VOP_DNSBL,    /* start the DNSBL lookups (vjob_dnsbl_new) */
	VOP_KIND_COUNT
};

struct vop {
	struct vop *next;
	struct vjob *job;
	enum vop_kind kind;
	struct spf_req *spf;          /* VOP_SPF, owned */
	struct dnsbl_req *dnsbl;      /* VOP_DNSBL, owned */
	bool abandon;                 /* VOP_END: nobody wants the verdict (no rspamd check) */
	struct bb data;               /* VOP_DATA, owned */
};

struct vworker {
	struct vpool *pool;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct vop *head, **tail;     /* under mu */
	bool stop;                    /* under mu */
	bool dns_wake;                /* under mu: answers wait in `front` */
	bool started;
	struct dns_resolver *front;   /* this worker's view of the DNS cache; worker thread only */
	/* metrics: queue length = posted - done (each has one writer at a time) */
	_Atomic uint64_t n_posted;    /* written under mu */
	_Atomic uint64_t n_done;      /* written by the worker */
};

/* A miss of the DNS cache, for the DNS thread to ask libunbound. */
struct dnsreq {
	struct dnsreq *next;
	struct vdns *d;
	uint16_t qtype;
	uint64_t deadline_ms;         /* 0: the resolver's timeout from now */
	char name[DNS_NAME_TEXT_MAX + 2];
};

struct spf_req {
	char client_ip[64];
	char *mail_from, *helo, *receiver;
	uint32_t timeout_ms;
};

/* The DNSBL names of one client (RFC 5782 §2.1), built by the shard side. */
struct dnsbl_req {
	unsigned num;
	uint32_t timeout_ms;
	char names[VPOOL_DNSBL_MAX][DNS_NAME_TEXT_MAX + 2]; /* reversed address + "." + zone */
	const char *zones[VPOOL_DNSBL_MAX];                  /* borrowed from the caller's config */
};

/* One DNSBL lookup in flight on a worker. */
struct dnsbl_run {
	struct vjob *job;
	unsigned idx;
};

/* One SPF check in flight on a worker. */
struct spf_run {
	struct vjob *job;
	struct spf_check *check;
};

/* A DKIM or ARC key lookup in flight on a worker. */
struct keyreq {
	struct vjob *job;
	unsigned idx;                 /* the DKIM signature or ARC key index */
	bool arc;                     /* for the ARC validator */
	char name[DNS_NAME_TEXT_MAX + 2];
};

struct vdns {
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	struct dnsreq *head, **tail;  /* under mu */
	bool stop;                    /* under mu */
	bool stopped;                 /* under mu: the thread is gone; misses answer DNS_ERROR at once */
	int efd;                      /* wakes the DNS thread */
	struct dns_resolver *res;     /* DNS thread only */
	struct dns_cache *cache;      /* the pool's */
	struct dns_opts opts;
	char *upstream;
};

/*
 * Key cache: the parsed outcomes of recent key lookups (dkim_keyrec.h: the
 * key record and its public key ready for the crypto library, or why there
 * is no key), by name, until their TTL runs out, shared by the workers. A
 * hit answers the job on the worker at once with a reference, without a
 * round trip through the DNS thread and libunbound's own threads
 * (libunbound caches too, but asking it costs several context switches per
 * message), and without decoding or parsing the key again: a key is parsed
 * once per lookup, on the worker that got the answer (the DNS cache below
 * it keeps the raw answers, negative ones and failures too). Direct-mapped: a collision replaces
 * the entry. Entries are immutable and refcounted, so a job may keep its
 * reference after the entry is replaced or the TTL ends.
 */
#define KCACHE_SLOTS   1024
#define KCACHE_TTL_MAX 3600  /* seconds; bounds a hostile TTL */

struct kcache_entry {
	char name[256];
	uint64_t expires_ms;            /* 0 = empty */
	struct dkim_keyrec *kr;         /* a reference; NULL = empty */
};

struct vpool {
	struct psl *psl;                /* DMARC organizational domains; NULL: DMARC off */
	struct dns_cache *dc;           /* every DNS answer the checks use */
	uint32_t dns_timeout_ms;
	pthread_mutex_t kc_mu;
	struct kcache_entry *kc;        /* KCACHE_SLOTS entries */
	unsigned num_workers;
	struct vworker *w;
	struct vdns dns;
	_Atomic unsigned next_worker;
	struct dkim_opts dopts;
	_Atomic uint64_t kc_hits, kc_misses; /* key cache, written under kc_mu */
	struct rspamd_client *rspamd; /* --rspamd; NULL: no spam check */
	struct milter_client *milter; /* --milter; NULL: no milter */
};

struct vjob {
	struct vpool *pool;
	struct vworker *w;
	struct vpool_inbox *in;
	struct vjob *next;            /* inbox link */
	void *owner;                  /* the shard's tx; meaningful unless abandoned */
	/* shard side */
	struct bb pend;               /* bytes not yet posted */
	bool end_posted, abandoned;
	_Atomic bool body_unwanted;   /* set by the worker: no signature, skip the body */
	/* worker side */
	struct dkim_msg *m;
	struct arc_msg *arc;          /* ARC validator; NULL when ARC is off or done */
	bool arc_on;                  /* ARC is validated (--arc on) */
	bool arc_done;                /* arc_res holds a result */
	struct arc_result arc_res;
	struct hdrsplit split;        /* header fields, bounded (a huge field is skipped, never an end) */
	bool in_body, ended;
	unsigned dns_outstanding;
	unsigned spf_outstanding;     /* set by the shard before anything is posted */
	bool dkim;                    /* DKIM is verified (--dkim on) */
	/* DMARC (RFC 7489), worker side */
	struct dmarc_from_seen from;  /* the From fields */
	unsigned dmarc_outstanding;
	struct dmarc_check *dmarc;    /* discovery done, evaluated at completion */
	bool dmarc_done;              /* dmarc_res holds a result */
	struct dmarc_result dmarc_res;
	struct spf_result *spf[SPF_ID_COUNT]; /* owned; NULL when not checked */
	/* DNSBL at connect (vjob_dnsbl_new): a job of its own, no message */
	bool dnsbl_job;
	unsigned dnsbl_outstanding;
	struct dnsbl_req *dnsbl;      /* owned */
	int dnsbl_hit;                /* index of the first zone (in order) that lists the client; -1 none */
	uint8_t dnsbl_addr[VPOOL_DNSBL_MAX][4]; /* each zone's answer, 0.0.0.0 when not listed */
	bool dnsbl_failed[VPOOL_DNSBL_MAX];     /* no answer (timeout, SERVFAIL): not listed, logged */
	/* results, set by the worker before the job enters the inbox */
	size_t num_res;
	struct dkim_result *res;
	bool failed;                  /* the verifier could not run (out of memory) */
	/* rspamd (--rspamd): the context is set by the shard before END is
	 * posted; the message and the request are the worker's, then the
	 * client thread's until its done; the verdict is read by the shard. */
	bool spam_on;                 /* checked by rspamd */
	bool full_lost;               /* worker: out of memory while keeping the message */
	bool w_abandoned;             /* worker side: END came with abandon */
	struct bb spam_ctx;           /* rspamd protocol headers (vjob_context) */
	char *authserv_id;            /* for the A-R rspamd gets (vjob_context) */
	struct bb full;               /* worker: the client's message bytes */
	struct bb spam_body;          /* our A-R, then the message: what rspamd gets */
	struct rspamd_req spam_req;
	struct rspamd_reply *spam;    /* the verdict; NULL until asked */
	int spam_state;               /* 0 not checked, 1 verdict, -1 failed (spam_req.error) */
	/* milters (--milter): vjob_context copies the envelope and starts the
	 * conversations (milter_begun); the worker hands each data op's bytes
	 * on and ends them at VOP_END; the request is the milter client
	 * thread's until its done; the verdict is read by the shard. The job
	 * goes to the inbox when both the worker's side (DKIM ... rspamd) and
	 * the milters are done (parts). */
	bool milter_on;               /* run through the milters */
	bool milter_begun;            /* set by the shard before the data ops are posted */
	bool milter_ran;              /* milter_req holds an answer */
	_Atomic unsigned parts;       /* sides still running: 1, or 2 once milter_begun */
	struct milter_env menv;       /* strings below, owned */
	char *m_helo, *m_from, *m_id, *m_host, *m_tlsv, *m_cipher, *m_ip;
	char **m_rcpts;
	size_t m_num_rcpts;
	struct milter_req milter_req;
};

static void kc_store(struct vpool *p, const char *name, const struct dns_txt_answer *a, struct dkim_keyrec *kr);
static void spf_req_free(struct spf_req *q);

/* ------------------------------------------------------------ helpers */

static void worker_post(struct vworker *w, struct vop *op)
{
	op->next = NULL;
	pthread_mutex_lock(&w->mu);
	*w->tail = op;
	w->tail = &op->next;
	metrics_add(&w->n_posted, 1); /* under mu: one writer at a time */
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void op_free(struct vop *op)
{
	free(op->dnsbl); op->dnsbl = NULL;
	bb_fini(&op->data);
	spf_req_free(op->spf); op->spf = NULL;
	free(op);
}

/* inbox_push hands a finished job to its shard; the job is the shard's from here on. */
static void inbox_push(struct vjob *j)
{
	struct vpool_inbox *in = j->in;
	struct vjob *old = atomic_load(&in->head);
	uint64_t one = 1;

	do {
		j->next = old;
	} while (!atomic_compare_exchange_weak(&in->head, &old, j));
	if (old == NULL && write(in->efd, &one, sizeof(one)) != sizeof(one)) {
		log_line(LOG_ERR, "vpool", "inbox.wake error=\"%s\"", strerror(errno));
	}
}

/* ------------------------------------------------------------ DNS thread */

static void spf_req_free(struct spf_req *q)
{
	if (q == NULL) {
		return;
	}
	free(q->mail_from); q->mail_from = NULL;
	free(q->helo); q->helo = NULL;
	free(q->receiver); q->receiver = NULL;
	free(q);
}

/* fetch_answered puts libunbound's answer into the cache, which answers every waiter. DNS thread. */
static void fetch_answered(void *arg, const struct dns_answer *a)
{
	struct dnsreq *rq = arg;

	dns_cache_put(rq->d->cache, rq->name, rq->qtype, a);
	free(rq);
}

/* fetch_fail answers a miss that cannot be asked with DNS_ERROR (not cached). */
static void fetch_fail(struct dns_cache *c, const char *name, uint16_t qtype)
{
	struct dns_answer a;

	dns_answer_set_status(&a, qtype, DNS_ERROR);
	dns_cache_put(c, name, qtype, &a);
}

static void dns_start_pending(struct vdns *d, struct dnsreq *list)
{
	while (list != NULL) {
		struct dnsreq *rq = list;
		uint64_t id;

		list = rq->next;
		if (d->res == NULL || dns_query(d->res, rq->name, rq->qtype, rq->deadline_ms, fetch_answered, rq, &id) != 0) {
			fetch_fail(d->cache, rq->name, rq->qtype);
			free(rq);
		}
	}
}

static void *dns_main(void *arg)
{
	struct vdns *d = arg;
	char *err = NULL;
	struct dnsreq *left;

	d->res = dns_unbound_new(&d->opts, &err);
	if (d->res == NULL) {
		log_line(LOG_ERR, "vpool", "dns.start error=\"%s\" (every DNS lookup fails as temperror)",
			 err ? err : "unknown");
		free(err);
	}
	for (;;) {
		struct pollfd pfd[2];
		struct dnsreq *list;
		uint64_t now = dns_now_ms(), next = d->res ? d->res->ops->next_deadline(d->res) : UINT64_MAX, v;
		int timeout = next == UINT64_MAX ? 1000 : (next <= now ? 0 : (int)(next - now < 1000 ? next - now : 1000));
		bool stop;

		pfd[0].fd = d->efd;
		pfd[0].events = POLLIN;
		pfd[1].fd = d->res ? d->res->ops->fd(d->res) : -1;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR) {
			break;
		}
		if (pfd[0].revents & POLLIN) {
			if (read(d->efd, &v, sizeof(v)) < 0) {
				/* Nothing to do: the queue is read below anyway. */
			}
		}
		pthread_mutex_lock(&d->mu);
		list = d->head;
		d->head = NULL;
		d->tail = &d->head;
		stop = d->stop;
		pthread_mutex_unlock(&d->mu);
		dns_start_pending(d, list);
		if (d->res != NULL) {
			d->res->ops->process(d->res, dns_now_ms());
		}
		/* Stop only once every lookup answered: jobs wait for them. */
		if (stop && (d->res == NULL || d->res->ops->pending(d->res) == 0)) {
			break;
		}
	}
	/* From here on, misses are answered at once (pool_fetch); none is lost. */
	pthread_mutex_lock(&d->mu);
	d->stopped = true;
	left = d->head;
	d->head = NULL;
	d->tail = &d->head;
	pthread_mutex_unlock(&d->mu);
	while (left != NULL) {
		struct dnsreq *rq = left;

		left = rq->next;
		fetch_fail(d->cache, rq->name, rq->qtype);
		free(rq);
	}
	if (d->res != NULL) {
		d->res->ops->free(d->res);
		d->res = NULL;
	}
	return NULL;
}

/*
 * pool_fetch hands a miss of the DNS cache to the DNS thread (the
 * dns_cache_fetch_fn of every worker's front). Worker thread.
 */
static void pool_fetch(void *arg, const char *name, uint16_t qtype, uint64_t deadline_ms)
{
	struct vworker *w = arg;
	struct vdns *d = &w->pool->dns;
	struct dnsreq *rq;
	uint64_t one = 1;
	bool stopped;

	/* The waiters need an answer: wait for the allocator. */
	while ((rq = calloc(1, sizeof(*rq))) == NULL) {
		usleep(1000);
	}
	rq->d = d;
	rq->qtype = qtype;
	rq->deadline_ms = deadline_ms;
	snprintf(rq->name, sizeof(rq->name), "%s", name); /* the cache refused longer names */
	pthread_mutex_lock(&d->mu);
	stopped = d->stopped;
	if (!stopped) {
		*d->tail = rq;
		d->tail = &rq->next;
	}
	pthread_mutex_unlock(&d->mu);
	if (stopped) {
		fetch_fail(d->cache, rq->name, qtype);
		free(rq);
		return;
	}
	if (write(d->efd, &one, sizeof(one)) != sizeof(one)) {
		log_line(LOG_ERR, "vpool", "dns.wake error=\"%s\"", strerror(errno));
	}
}

/* worker_dns_wake tells worker `arg` that answers wait in its front. Any thread. */
static void worker_dns_wake(void *arg)
{
	struct vworker *w = arg;

	pthread_mutex_lock(&w->mu);
	w->dns_wake = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* ------------------------------------------------------------ checks on the workers */

static void maybe_complete(struct vjob *j);

/* spf_finished keeps one identity's result. Worker thread. */
static void spf_finished(void *arg, struct spf_check *c)
{
	struct spf_run *run = arg;
	struct vjob *j = run->job;
	const struct spf_result *r = spf_check_result(c);

	if (r->identity < SPF_ID_COUNT && j->spf[r->identity] == NULL &&
	    (j->spf[r->identity] = malloc(sizeof(*j->spf[0]))) != NULL) {
		memcpy(j->spf[r->identity], r, sizeof(*r));
	}
	spf_check_free(c); /* allowed from its own done callback */
	free(run);
	j->spf_outstanding--;
	maybe_complete(j); /* may hand j back to its shard: the last touch */
}

/* spf_start starts both SPF checks of j (VOP_SPF). Worker thread. */
static void spf_start(struct vworker *w, struct vjob *j, const struct spf_req *q)
{
	for (int id = 0; id < SPF_ID_COUNT; id++) {
		struct spf_params sp = {
			.identity = (enum spf_identity)id,
			.client_ip = q->client_ip,
			.mail_from = q->mail_from ? q->mail_from : "",
			.helo = q->helo ? q->helo : "",
			.receiver = q->receiver,
			.now = (uint64_t)time(NULL),
			.timeout_ms = q->timeout_ms,
		};
		struct spf_run *run = calloc(1, sizeof(*run));

		if (run != NULL) {
			run->job = j;
			run->check = spf_check_new(&sp);
		}
		if (run == NULL || run->check == NULL || w->front == NULL) {
			/* No result for this identity: temperror (vjob_authres). */
			spf_check_free(run ? run->check : NULL);
			free(run);
			j->spf_outstanding--;
			continue;
		}
		spf_check_start(run->check, w->front, spf_finished, run);
	}
}

/*
 * dnsbl_answered keeps one zone's answer: an A record in 127.0.0.0/8 lists
 * the client (RFC 5782 §2.1), except 127.255.255.0/24, which Spamhaus and
 * others use to say the query itself was refused: not a listing. Worker thread.
 */
static void dnsbl_answered(void *arg, const struct dns_answer *a)
{
	struct dnsbl_run *run = arg;
	struct vjob *j = run->job;

	if (a->status == DNS_OK && a->num_records > 0 && a->rr[0].data.len == 4) {
		const uint8_t *ip = a->rr[0].data.p;

		if (ip[0] == 127 && !(ip[1] == 255 && ip[2] == 255)) {
			memcpy(j->dnsbl_addr[run->idx], ip, 4);
			if (j->dnsbl_hit < 0 || (int)run->idx < j->dnsbl_hit) {
				j->dnsbl_hit = (int)run->idx;
			}
		}
	} else if (a->status != DNS_NXDOMAIN && a->status != DNS_NODATA) {
		j->dnsbl_failed[run->idx] = true;
	}
	free(run);
	j->dnsbl_outstanding--;
	maybe_complete(j);
}

/* dnsbl_start asks every zone at once. Worker thread. */
static void dnsbl_start(struct vworker *w, struct vjob *j, struct dnsbl_req *q)
{
	uint64_t deadline = dns_now_ms() + q->timeout_ms;

	j->dnsbl = q; /* kept for the zone names */
	for (unsigned i = 0; i < q->num; i++) {
		struct dnsbl_run *run = calloc(1, sizeof(*run));
		uint64_t id;

		if (run == NULL || w->front == NULL) {
			free(run);
			j->dnsbl_failed[i] = true;
			j->dnsbl_outstanding--;
			continue;
		}
		run->job = j;
		run->idx = i;
		if (dns_query(w->front, q->names[i], DNS_T_A, deadline, dnsbl_answered, run, &id) != 0) {
			free(run);
			j->dnsbl_failed[i] = true;
			j->dnsbl_outstanding--;
		}
	}
}

/* dmarc_finished keeps the discovered record for the evaluation at completion. Worker thread. */
static void dmarc_finished(void *arg, struct dmarc_check *c)
{
	struct vjob *j = arg;

	j->dmarc = c; /* evaluated and freed by maybe_complete: its lookups are over */
	j->dmarc_outstanding--;
	maybe_complete(j);
}

static size_t kc_slot(const char *name)
{
	uint64_t h = 1469598103934665603ull;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h = (h ^ (uint64_t)(*p | 0x20)) * 1099511628211ull; /* DNS names: case-insensitive */
	}
	return (size_t)(h % KCACHE_SLOTS);
}

/* kc_lookup returns a new reference to the live cached key outcome of `name`, or NULL on a miss. Worker thread. */
static struct dkim_keyrec *kc_lookup(struct vpool *p, const char *name)
{
	struct kcache_entry *e = &p->kc[kc_slot(name)];
	struct dkim_keyrec *kr = NULL;
	uint64_t now = dns_now_ms();

	pthread_mutex_lock(&p->kc_mu);
	if (e->kr != NULL && e->expires_ms > now && strcasecmp(e->name, name) == 0) {
		kr = dkim_keyrec_ref(e->kr);
	}
	metrics_add(kr != NULL ? &p->kc_hits : &p->kc_misses, 1); /* under kc_mu */
	pthread_mutex_unlock(&p->kc_mu);
	return kr;
}

/*
 * kc_store keeps the outcome `kr` of a definite answer `a` (a key, or no
 * such key) for the answer's TTL; takes a reference of its own. Worker thread.
 */
static void kc_store(struct vpool *p, const char *name, const struct dns_txt_answer *a, struct dkim_keyrec *kr)
{
	struct kcache_entry *e;
	struct dkim_keyrec *old;
	uint32_t ttl = a->ttl < KCACHE_TTL_MAX ? a->ttl : KCACHE_TTL_MAX;

	if (ttl == 0 || dns_status_transient(a->status) || strlen(name) >= sizeof(e->name)) {
		return; /* temporary failures are asked again */
	}
	e = &p->kc[kc_slot(name)];
	pthread_mutex_lock(&p->kc_mu);
	old = e->kr;
	e->kr = dkim_keyrec_ref(kr);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->expires_ms = dns_now_ms() + (uint64_t)ttl * 1000;
	pthread_mutex_unlock(&p->kc_mu);
	dkim_keyrec_unref(old); /* outside the lock: may free a key */
}

/* dmarc_request starts the DMARC record discovery for `domain` on the worker's front. Worker thread. */
static void dmarc_request(struct vjob *j, const char *domain)
{
	struct vpool *p = j->pool;
	struct dmarc_opts o = { .timeout_ms = p->dns_timeout_ms };
	struct dmarc_check *c = j->w->front != NULL ? dmarc_check_new(p->psl, domain, &o) : NULL;

	if (c == NULL) {
		j->dmarc_done = true;
		j->dmarc_res.res = AUTH_TEMPERROR;
		j->dmarc_res.reason = "record discovery could not run";
		return;
	}
	j->dmarc_outstanding++; /* before the start: done may run inside it */
	dmarc_check_start(c, j->w->front, dmarc_finished, j);
}

/* key_answer gives a key lookup's parsed outcome (borrowed; NULL: out of memory) to the DKIM or the ARC verifier of j. */
static void key_answer(struct vjob *j, bool arc, unsigned idx, struct dkim_keyrec *kr)
{
	if (arc) {
		if (j->arc != NULL) {
			arc_msg_key_set(j->arc, idx, kr);
		}
	} else if (j->m != NULL) {
		dkim_msg_key_set(j->m, idx, kr);
	}
}

/* key_answered parses a key lookup's answer (once per lookup; the key cache keeps it). Worker thread. */
static void key_answered(void *arg, const struct dns_txt_answer *a)
{
	struct keyreq *kq = arg;
	struct vjob *j = kq->job;
	struct dkim_keyrec *kr = dkim_keyrec_new(a);

	if (kr != NULL) {
		kc_store(j->pool, kq->name, a, kr);
	}
	key_answer(j, kq->arc, kq->idx, kr);
	dkim_keyrec_unref(kr);
	free(kq);
	j->dns_outstanding--;
	maybe_complete(j); /* may hand j back to its shard: the last touch */
}

/*
 * key_request looks up `name`, the key of DKIM signature or ARC key `idx`:
 * from the key cache (parsed keys) at once, else through the worker's DNS
 * front (the DNS cache, then the DNS thread). DKIM and ARC keys are the
 * same records (RFC 8617 §4.1). Worker thread.
 */
static void key_request(struct vjob *j, bool arc, unsigned idx, const char *name)
{
	struct dkim_keyrec *kr = kc_lookup(j->pool, name);
	struct keyreq *kq;
	uint64_t id;

	if (kr != NULL) {
		key_answer(j, arc, idx, kr);
		dkim_keyrec_unref(kr);
		return;
	}
	if (j->w->front == NULL || (kq = calloc(1, sizeof(*kq))) == NULL) {
		key_answer(j, arc, idx, NULL); /* temperror */
		return;
	}
	kq->job = j;
	kq->idx = idx;
	kq->arc = arc;
	snprintf(kq->name, sizeof(kq->name), "%s", name);
	j->dns_outstanding++;
	if (dns_txt(j->w->front, name, 0, key_answered, kq, &id) != 0) {
		j->dns_outstanding--;
		free(kq);
		key_answer(j, arc, idx, NULL);
	}
}

/* ------------------------------------------------------------ workers */

/*
 * header_field hands one complete header field to the verifiers. A field
 * the splitter could not keep whole goes in as "big": DKIM and ARC keep its
 * place and fail what selects it, DMARC cannot read it if it is From.
 */
static void header_field(struct vjob *j, const struct hdrsplit_field *f)
{
	int sig = -1;

	if (j->pool->psl != NULL &&
	    dmarc_from_seen_field(&j->from, f->bytes, f->whole, f->len, f->max_line, f->offset) != 0) {
		/* out of memory: the From counts as unreadable (permerror, never none) */
	}
	if (!f->whole) {
		if (j->m != NULL && dkim_msg_header_big(j->m, f->bytes, &sig) != 0) {
			/* out of memory: a signature selecting this field then fails to verify */
		}
		if (j->arc != NULL && arc_msg_header_big(j->arc, f->bytes) != 0) {
			/* as above */
		}
		return;
	}
	if (f->bytes.len == 0) {
		return;
	}
	if (j->m != NULL && dkim_msg_header(j->m, f->bytes, &sig) == 0 && sig >= 0) {
		key_request(j, false, (unsigned)sig, dkim_msg_key_name(j->m, (unsigned)sig));
	}
	sig = -1;
	if (j->arc != NULL && arc_msg_header(j->arc, f->bytes, &sig) == 0 && sig >= 0) {
		key_request(j, true, (unsigned)sig, arc_msg_key_name(j->arc, (unsigned)sig));
	}
}

static void dmarc_request(struct vjob *j, const char *domain);

/*
 * headers_done: the header section is complete. DMARC needs exactly one
 * From address (RFC 7489 §6.6.1); its record discovery starts now, so its
 * DNS overlaps the body.
 */
static void headers_done(struct vjob *j)
{
	char domain[PSL_NAME_MAX + 1];
	enum dmarc_from_rc rc;

	j->in_body = true;
	if (j->m != NULL) {
		dkim_msg_headers_end(j->m);
	}
	if (j->arc != NULL) {
		arc_msg_headers_end(j->arc);
	}
	if (!j->spam_on && !j->milter_on && (j->m == NULL || dkim_msg_num_sigs(j->m) == 0) &&
	    (j->arc == NULL || !arc_msg_body_wanted(j->arc))) {
		/* Nothing to verify: the shard may stop copying the body. */
		atomic_store_explicit(&j->body_unwanted, true, memory_order_relaxed);
	}
	if (j->pool->psl == NULL) {
		return;
	}
	rc = dmarc_from_seen_domain(&j->from, domain, sizeof(domain));
	if (rc == DMARC_FROM_OK) {
		memset(&j->dmarc_res, 0, sizeof(j->dmarc_res));
		dmarc_request(j, domain);
		return;
	}
	/* Reported, never guessed at: no From, several, unreadable, or no domain in it. */
	j->dmarc_done = true;
	dmarc_from_result(&j->dmarc_res, rc);
}

/* feed takes message bytes: header fields until the empty line, then the body. */
static void feed(struct vjob *j, struct span in)
{
	while (!j->in_body && in.len > 0) {
		struct hdrsplit_field f;
		enum hdrsplit_ev ev = hdrsplit_next(&j->split, &f, &in);

		if (ev == HDRSPLIT_FIELD) {
			header_field(j, &f);
		} else if (ev == HDRSPLIT_END) {
			headers_done(j);
		} else {
			break;
		}
	}
	if (in.len > 0 && j->m != NULL) {
		dkim_msg_body(j->m, in.p, in.len);
	}
	if (in.len > 0 && j->arc != NULL) {
		arc_msg_body(j->arc, in.p, in.len);
	}
}

/* part_done: one side of the job finished; the last one hands the job to its shard. Any pool thread. */
static void part_done(struct vjob *j)
{
	if (atomic_fetch_sub(&j->parts, 1) == 1) {
		inbox_push(j); /* last touch by the pool */
	}
}

/* milter_done keeps the milters' answer. Milter client thread. */
static void milter_done(void *arg, struct milter_req *req)
{
	struct vjob *j = arg;

	(void)req;
	j->milter_ran = true;
	part_done(j);
}

/* spam_done keeps rspamd's answer; the worker's side of the job is done. Client thread. */
static void spam_done(void *arg, struct rspamd_req *req)
{
	struct vjob *j = arg;

	j->spam_state = req->ok ? 1 : -1;
	bb_fini(&j->spam_body);
	part_done(j);
}

/*
 * spam_start sends the message to rspamd: our Authentication-Results on
 * top (what rspamd would otherwise work out again with DNS), then the
 * client's bytes, with the envelope in the protocol's headers. Worker
 * thread; from here the job belongs to the client thread.
 */
static void spam_start(struct vjob *j)
{
	struct rspamd_req *req = &j->spam_req;

	memset(req, 0, sizeof(*req));
	bb_init(&j->spam_body, 0);
	if (j->full_lost || (j->spam = malloc(sizeof(*j->spam))) == NULL ||
	    vjob_authres(j, &j->spam_body, j->authserv_id ? j->authserv_id : "localhost") != 0 ||
	    bb_append_span(&j->spam_body, bb_span(&j->full)) != 0) {
		snprintf(req->error, sizeof(req->error), "out of memory");
		bb_fini(&j->full);
		spam_done(j, req);
		return;
	}
	bb_fini(&j->full);
	req->body = j->spam_body.p;
	req->body_len = j->spam_body.len;
	req->ctx = &j->spam_ctx;
	req->reply = j->spam;
	req->done = spam_done;
	req->arg = j;
	rspamd_client_submit(j->pool->rspamd, req);
}

static void maybe_complete(struct vjob *j)
{
	size_t n;

	if (!j->ended || j->dns_outstanding != 0 || j->spf_outstanding != 0 || j->dmarc_outstanding != 0 ||
	    j->dnsbl_outstanding != 0) {
		return;
	}
	if (j->m != NULL) {
		n = dkim_msg_results(j->m, NULL, 0);
		if (n > 0) {
			j->res = calloc(n, sizeof(*j->res));
			if (j->res == NULL) {
				j->failed = true;
				n = 0;
			} else {
				j->num_res = dkim_msg_results(j->m, j->res, n);
			}
		}
		dkim_msg_free(j->m);
		j->m = NULL;
	}
	if (j->arc != NULL) {
		arc_msg_result(j->arc, &j->arc_res);
		j->arc_done = true;
		arc_msg_free(j->arc);
		j->arc = NULL;
	} else if (j->arc_on && !j->arc_done) {
		j->arc_done = true;
		j->arc_res.res = AUTH_TEMPERROR; /* the validator could not be created */
		j->arc_res.reason = "out of memory";
	}
	if (j->pool->psl != NULL && !j->dmarc_done) {
		if (j->dmarc != NULL) {
			/* RFC 7489 §4.2: aligned DKIM pass or aligned SPF (MAIL FROM) pass. */
			dmarc_check_eval(j->dmarc, &j->dmarc_res, j->res, j->num_res, j->spf[SPF_ID_MAILFROM]);
		} else {
			j->dmarc_res.res = AUTH_TEMPERROR;
			j->dmarc_res.reason = "record discovery could not run";
		}
		j->dmarc_done = true;
	}
	dmarc_check_free(j->dmarc);
	j->dmarc = NULL;
	hdrsplit_fini(&j->split);
	dmarc_from_seen_fini(&j->from);
	if (j->spam_on && !j->w_abandoned) {
		spam_start(j); /* rspamd runs beside the milters; its client ends this side */
		return;
	}
	part_done(j);
}

/*
 * keep_full keeps a data op's bytes for rspamd: the first buffer moves
 * (unless the milters take it next), later ones are appended. Worker thread.
 */
static void keep_full(struct vjob *j, struct bb *data)
{
	if (j->full.len == 0 && j->full.p == NULL && !j->milter_begun) {
		j->full = *data;
		bb_init(data, 0);
		return;
	}
	if (bb_append_span(&j->full, bb_span(data)) != 0) {
		j->full_lost = true; /* an incomplete message is not checked: reported as failed */
	}
}

static void run_op(struct vop *op)
{
	struct vjob *j = op->job;

	switch (op->kind) {
	case VOP_DATA:
		feed(j, bb_span(&op->data));
		if (j->spam_on) {
			keep_full(j, &op->data);
		}
		if (j->milter_begun) {
			/* The buffer moves: the milter client thread never reads one the worker may realloc. */
			milter_client_feed(j->pool->milter, &j->milter_req, &op->data);
		}
		break;
	case VOP_END:
		j->w_abandoned = op->abandon;
		if (j->milter_begun) {
			milter_client_end(j->pool->milter, &j->milter_req, op->abandon);
		}
		if (!j->in_body) {
			/* no empty line: the header ends with the message */
			struct hdrsplit_field f;

			while (hdrsplit_finish(&j->split, &f) == HDRSPLIT_FIELD) {
				header_field(j, &f);
			}
			headers_done(j);
		}
		if (j->m != NULL) {
			dkim_msg_body_end(j->m);
		}
		if (j->arc != NULL) {
			arc_msg_body_end(j->arc);
		}
		j->ended = true;
		maybe_complete(j);
		break;
	case VOP_SPF:
		spf_start(j->w, j, op->spf); /* the first op of j: it cannot complete here */
		break;
	case VOP_DNSBL:
		dnsbl_start(j->w, j, op->dnsbl); /* its VOP_END follows: it cannot complete here */
		op->dnsbl = NULL;
		break;
	case VOP_KIND_COUNT:
		break;
	}
	op_free(op);
}

static void *worker_main(void *arg)
{
	struct vworker *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct vop *list = w->head;

		if (list == NULL && !w->dns_wake) {
			if (w->stop) {
				break;
			}
			pthread_cond_wait(&w->cv, &w->mu);
			continue;
		}
		w->head = NULL;
		w->tail = &w->head;
		w->dns_wake = false;
		pthread_mutex_unlock(&w->mu);
		while (list != NULL) {
			struct vop *op = list;

			list = op->next;
			run_op(op);
			metrics_add(&w->n_done, 1);
		}
		/* Answers: cache hits of the ops above, and misses the DNS thread answered. */
		if (w->front != NULL) {
			dns_process(w->front, 0);
		}
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* ------------------------------------------------------------ API */

struct vpool *vpool_start(const struct vpool_cfg *c, char **out_err)
{
	struct vpool *p = calloc(1, sizeof(*p));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	*out_err = NULL;
	if (p == NULL) {
		return NULL;
	}
	p->num_workers = c->workers ? c->workers : (ncpu > 0 ? (unsigned)ncpu : 1);
	p->dopts.max_sigs = c->max_sigs;
	p->dopts.now = 0; /* set per job: x= is checked against the arrival time */
	p->w = calloc(p->num_workers, sizeof(*p->w));
	p->kc = calloc(KCACHE_SLOTS, sizeof(*p->kc));
	pthread_mutex_init(&p->kc_mu, NULL);
	p->dc = dns_cache_new(&(struct dns_cache_opts){ .max_bytes = c->dns_cache_bytes });
	p->dns.cache = p->dc;
	p->dns.efd = eventfd(0, EFD_CLOEXEC);
	p->dns.upstream = c->dns ? strdup(c->dns) : NULL;
	pthread_mutex_init(&p->dns.mu, NULL);
	if (p->w == NULL || p->kc == NULL || p->dc == NULL || p->dns.efd < 0 || (c->dns && p->dns.upstream == NULL)) {
		if (asprintf(out_err, "verify pool: %s", strerror(errno ? errno : ENOMEM)) < 0) {
			*out_err = NULL;
		}
		vpool_stop(p);
		return NULL;
	}
	p->dns_timeout_ms = c->dns_timeout_ms;
	if (c->dmarc) {
		p->psl = psl_load(c->psl_path ? c->psl_path : PSL_DEFAULT_PATH, out_err);
		if (p->psl == NULL) {
			vpool_stop(p);
			return NULL;
		}
	}
	if (c->rspamd_url != NULL && (p->rspamd = rspamd_client_start(c->rspamd_url, c->rspamd_timeout_ms, out_err)) == NULL) {
		vpool_stop(p);
		return NULL;
	}
	if (c->num_milters > 0 && (p->milter = milter_client_start(c->milters, c->num_milters, out_err)) == NULL) {
		vpool_stop(p);
		return NULL;
	}
	p->dns.opts.upstream = p->dns.upstream;
	p->dns.opts.timeout_ms = c->dns_timeout_ms;
	p->dns.tail = &p->dns.head;
	if (pthread_create(&p->dns.thread, NULL, dns_main, &p->dns) != 0) {
		if (asprintf(out_err, "verify pool: cannot start the DNS thread") < 0) {
			*out_err = NULL;
		}
		vpool_stop(p);
		return NULL;
	}
	p->dns.started = true;
	thread_name(p->dns.thread, "omx-dns", -1);
	for (unsigned i = 0; i < p->num_workers; i++) {
		struct vworker *w = &p->w[i];

		w->pool = p;
		w->tail = &w->head;
		pthread_mutex_init(&w->mu, NULL);
		pthread_cond_init(&w->cv, NULL);
		/* Without a front (ENOMEM) the worker's checks answer temperror. */
		w->front = dns_cache_resolver_new(p->dc, pool_fetch, worker_dns_wake, w);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			if (asprintf(out_err, "verify pool: cannot start worker %u", i) < 0) {
				*out_err = NULL;
			}
			vpool_stop(p);
			return NULL;
		}
		w->started = true;
		thread_name(w->thread, "omx-verify", (int)i);
	}
	return p;
}

void vpool_stop(struct vpool *p)
{
	uint64_t one = 1;

	if (p == NULL) {
		return;
	}
	/* DNS first: it stops once every lookup answered, and the answers are
	 * in the cache and with the workers' fronts, which are stopped (after
	 * draining) next; a miss after that is answered DNS_ERROR at once. */
	if (p->dns.started) {
		pthread_mutex_lock(&p->dns.mu);
		p->dns.stop = true;
		pthread_mutex_unlock(&p->dns.mu);
		if (write(p->dns.efd, &one, sizeof(one)) != sizeof(one)) {
			log_line(LOG_ERR, "vpool", "dns.wake error=\"%s\"", strerror(errno));
		}
		pthread_join(p->dns.thread, NULL);
	}
	for (unsigned i = 0; p->w != NULL && i < p->num_workers; i++) {
		struct vworker *w = &p->w[i];

		if (!w->started) {
			continue;
		}
		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
	}
	/* The workers are gone: nothing submits any more; answer what is in flight. */
	rspamd_client_stop(p->rspamd); /* its last answers may go on to the milters */
	p->rspamd = NULL;
	milter_client_stop(p->milter);
	p->milter = NULL;
	if (p->dc != NULL) {
		struct dns_cache_stats st;

		dns_cache_stats(p->dc, &st);
		log_line(LOG_NOTICE, "vpool",
			 "dns.cache hits=%llu misses=%llu shared=%llu evictions=%llu entries=%llu bytes=%llu",
			 (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.shared,
			 (unsigned long long)st.evictions, (unsigned long long)st.entries, (unsigned long long)st.bytes);
	}
	/* Every fetch was answered (the DNS thread is gone), so nothing names the fronts. */
	for (unsigned i = 0; p->w != NULL && i < p->num_workers; i++) {
		dns_free(p->w[i].front); p->w[i].front = NULL;
	}
	dns_cache_free(p->dc); p->dc = NULL;
	pthread_mutex_destroy(&p->dns.mu);
	if (p->dns.efd >= 0) {
		close(p->dns.efd);
	}
	free(p->dns.upstream); p->dns.upstream = NULL;
	free(p->w); p->w = NULL;
	for (size_t i = 0; p->kc != NULL && i < KCACHE_SLOTS; i++) {
		dkim_keyrec_unref(p->kc[i].kr); p->kc[i].kr = NULL;
	}
	free(p->kc); p->kc = NULL;
	pthread_mutex_destroy(&p->kc_mu);
	psl_free(p->psl); p->psl = NULL;
	free(p);
}

void vpool_dns_cache_stats(struct vpool *p, struct dns_cache_stats *out)
{
	dns_cache_stats(p->dc, out);
}

int vpool_inbox_init(struct vpool_inbox *in)
{
	atomic_init(&in->head, NULL);
	in->efd = eventfd(0, EFD_CLOEXEC);
	return in->efd < 0 ? -errno : 0;
}

void vpool_inbox_fini(struct vpool_inbox *in)
{
	if (in->efd >= 0) {
		close(in->efd);
	}
	in->efd = -1;
}

struct vjob *vpool_inbox_take(struct vpool_inbox *in)
{
	return atomic_exchange(&in->head, NULL);
}

struct vjob *vjob_next(const struct vjob *j)
{
	return j->next;
}

struct vjob *vjob_new(struct vpool *p, struct vpool_inbox *in, bool dkim, bool arc)
{
	struct vjob *j = calloc(1, sizeof(*j));
	struct dkim_opts o = p->dopts;
	struct arc_opts ao = { 0 };

	if (j == NULL) {
		return NULL;
	}
	o.now = (uint64_t)time(NULL);
	j->dkim = dkim;
	j->arc_on = arc;
	if ((dkim && (j->m = dkim_msg_new(&o)) == NULL) || (arc && (j->arc = arc_msg_new(&ao)) == NULL)) {
		dkim_msg_free(j->m);
		free(j);
		return NULL;
	}
	j->spam_on = p->rspamd != NULL;
	j->milter_on = p->milter != NULL;
	atomic_init(&j->parts, 1);
	if (milter_req_init(&j->milter_req, p->milter != NULL ? milter_client_count(p->milter) : 0) != 0) {
		dkim_msg_free(j->m);
		arc_msg_free(j->arc);
		free(j);
		return NULL;
	}
	bb_init(&j->spam_ctx, 0);
	bb_init(&j->full, 0);
	if (!dkim && !arc && p->psl == NULL && !j->spam_on && !j->milter_on) {
		/* Nothing reads the message (DMARC needs the From field). */
		atomic_store(&j->body_unwanted, true);
	}
	j->pool = p;
	j->in = in;
	j->w = &p->w[atomic_fetch_add(&p->next_worker, 1) % p->num_workers];
	bb_init(&j->pend, 0);
	hdrsplit_init(&j->split);
	return j;
}

static void post_pending(struct vjob *j)
{
	struct vop *op;

	if (j->pend.len == 0) {
		return;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		/* Dropping bytes makes the body hash fail: the verdict is then
		 * fail, never a false pass. */
		bb_reset(&j->pend, 0);
		return;
	}
	op->kind = VOP_DATA;
	op->job = j;
	op->data = j->pend; /* the buffer moves into the operation */
	bb_init(&j->pend, 0);
	worker_post(j->w, op);
}

void vjob_feed(struct vjob *j, const uint8_t *p, size_t len)
{
	if (j->end_posted || atomic_load_explicit(&j->body_unwanted, memory_order_relaxed)) {
		return;
	}
	if (bb_append(&j->pend, p, len) != 0) {
		post_pending(j);
		if (bb_append(&j->pend, p, len) != 0) {
			return;
		}
	}
	if (j->pend.len >= VJOB_CHUNK) {
		post_pending(j);
	}
}

static void end_post(struct vjob *j, bool abandon);

void vjob_end(struct vjob *j)
{
	end_post(j, false);
}

static void end_post(struct vjob *j, bool abandon)
{
	struct vop *op;

	if (j->end_posted) {
		return;
	}
	post_pending(j);
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		/* Without END the job never comes back: wait for the allocator. */
		while ((op = calloc(1, sizeof(*op))) == NULL) {
			usleep(1000);
		}
	}
	op->kind = VOP_END;
	op->job = j;
	op->abandon = abandon;
	j->end_posted = true;
	worker_post(j->w, op);
}

void vjob_abandon(struct vjob *j)
{
	j->abandoned = true;
	bb_reset(&j->pend, 1); /* nobody wants the verdict: stop hashing */
	end_post(j, true);
}

bool vjob_abandoned(const struct vjob *j)
{
	return j->abandoned;
}

int vjob_authres(const struct vjob *j, struct bb *out, const char *hostname)
{
	struct authres_in in = {
		.dkim = j->res,
		.num_dkim = j->num_res,
		.spf_mfrom = j->spf[SPF_ID_MAILFROM],
		.spf_helo = j->spf[SPF_ID_HELO],
		.dmarc = j->dmarc_done ? &j->dmarc_res : NULL,
		.arc = j->arc_done ? &j->arc_res : NULL,
	};
	static const struct dkim_result none[1];

	if (in.dkim == NULL && j->dkim) {
		in.dkim = none; /* DKIM was checked: "dkim=none" when there was no signature */
	}
	return authres_write_all(out, hostname, &in);
}

int vjob_spf(struct vjob *j, const char *client_ip, const char *mail_from, const char *helo, const char *receiver,
	     uint32_t timeout_ms)
{
	struct vop *op = calloc(1, sizeof(*op));
	struct spf_req *q = calloc(1, sizeof(*q));

	if (op == NULL || q == NULL || (mail_from && (q->mail_from = strdup(mail_from)) == NULL) ||
	    (helo && (q->helo = strdup(helo)) == NULL) || (receiver && (q->receiver = strdup(receiver)) == NULL)) {
		spf_req_free(q);
		free(op);
		return -ENOMEM;
	}
	snprintf(q->client_ip, sizeof(q->client_ip), "%s", client_ip);
	q->timeout_ms = timeout_ms;
	op->kind = VOP_SPF;
	op->job = j;
	op->spf = q; /* the op owns it */
	j->spf_outstanding = SPF_ID_COUNT; /* before the checks can answer */
	worker_post(j->w, op);
	return 0;
}

/* ctx_add appends one "Name: value" protocol header, value made safe for HTTP (no CR, LF or controls). */
static int ctx_add(struct bb *b, const char *name, const char *value)
{
	size_t mark = b->len;
	int rc = bb_printf(b, "%s: ", name);

	for (const unsigned char *v = (const unsigned char *)value; rc == 0 && *v != '\0'; v++) {
		uint8_t ch = (*v < 0x20 || *v == 0x7f) ? '?' : *v;

		rc = bb_append(b, &ch, 1);
	}
	if (rc == 0) {
		rc = bb_append(b, "", 1);
	}
	if (rc != 0) {
		b->len = mark;
	}
	return rc;
}

/* milter_context copies what the milters are told (milter_client.h). 0 or -ENOMEM. Shard thread. */
static int milter_context(struct vjob *j, const struct msg_env *env, const char *hostname)
{
	struct milter_env *m = &j->menv;
	bool ok;

	memset(m, 0, sizeof(*m));
	j->m_helo = strdup(env->helo ? env->helo : "");
	j->m_ip = strdup(env->client_ip); /* the session's: it may go before the milters finish */
	j->m_from = strdup(env->mail_from ? env->mail_from : "");
	j->m_host = strdup(hostname);
	j->m_tlsv = env->tls.on ? strdup(env->tls.version) : NULL;
	j->m_cipher = env->tls.on ? strdup(env->tls.cipher) : NULL;
	j->m_rcpts = calloc(env->num_rcpts ? env->num_rcpts : 1, sizeof(*j->m_rcpts));
	ok = j->m_helo && j->m_ip && j->m_from && j->m_host && j->m_rcpts && (!env->tls.on || (j->m_tlsv && j->m_cipher));
	for (size_t i = 0; ok && i < env->num_rcpts; i++) {
		ok = (j->m_rcpts[i] = strdup(env->rcpts[i])) != NULL;
		j->m_num_rcpts += ok;
	}
	if (!ok || (j->m_id = strdup(env->id)) == NULL) {
		return -ENOMEM; /* m->id stays NULL: the milters are not asked (failed: see vjob_milter) */
	}
	m->hostname = j->m_host;
	m->client_ip = j->m_ip;
	m->client_port = env->client_port;
	m->helo = env->helo ? j->m_helo : NULL;
	m->mail_from = j->m_from;
	m->body = env->body == MSG_BODY_7BIT ? NULL : msg_body_name(env->body);
	m->smtputf8 = env->smtputf8;
	m->rcpts = (const char *const *)j->m_rcpts;
	m->num_rcpts = j->m_num_rcpts;
	m->tls_version = j->m_tlsv;
	m->cipher = j->m_cipher;
	m->id = j->m_id;
	return 0;
}

int vjob_context(struct vjob *j, const struct msg_env *env, const char *authserv_id)
{
	int rc = 0;

	if (j->milter_on && !j->end_posted && j->menv.id == NULL && milter_context(j, env, authserv_id) != 0) {
		rc = -ENOMEM;
	}
	if (j->milter_on && !j->end_posted && j->menv.id != NULL && !j->milter_begun) {
		/* Negotiation, CONNECT ... DATA now, while the message is on its way (README "Milters"). */
		struct milter_req *req = &j->milter_req;

		j->milter_begun = true;
		atomic_store(&j->parts, 2);
		req->env = &j->menv;
		req->done = milter_done;
		req->arg = j;
		milter_client_begin(j->pool->milter, req);
	}
	if (!j->spam_on || j->end_posted) {
		return rc;
	}
	bb_reset(&j->spam_ctx, 0);
	free(j->authserv_id);
	if ((j->authserv_id = strdup(authserv_id)) == NULL) {
		return -ENOMEM;
	}
	/* rspamd's protocol (docs: "Rspamd protocol"): the envelope and the session. */
	if (env->client_ip[0] != '\0') {
		rc = ctx_add(&j->spam_ctx, "IP", env->client_ip);
	}
	if (rc == 0 && env->helo != NULL && env->helo[0] != '\0') {
		rc = ctx_add(&j->spam_ctx, "Helo", env->helo);
	}
	if (rc == 0 && env->mail_from != NULL && env->mail_from[0] != '\0') {
		rc = ctx_add(&j->spam_ctx, "From", env->mail_from);
	}
	for (size_t i = 0; rc == 0 && i < env->num_rcpts; i++) {
		rc = ctx_add(&j->spam_ctx, "Rcpt", env->rcpts[i]);
	}
	if (rc == 0) {
		rc = ctx_add(&j->spam_ctx, "Queue-Id", env->id);
	}
	if (rc == 0) {
		rc = ctx_add(&j->spam_ctx, "MTA-Name", authserv_id);
	}
	if (rc == 0 && env->tls.on) {
		rc = ctx_add(&j->spam_ctx, "TLS-Version", env->tls.version);
		if (rc == 0) {
			rc = ctx_add(&j->spam_ctx, "TLS-Cipher", env->tls.cipher);
		}
	}
	return rc;
}

int vjob_spam(const struct vjob *j, const struct rspamd_reply **out_r, const char **out_err)
{
	*out_r = NULL;
	*out_err = NULL;
	if (j->spam_state == 1) {
		*out_r = j->spam;
	} else if (j->spam_state == -1) {
		*out_err = j->spam_req.error;
	}
	return j->spam_state;
}

const struct milter_req *vjob_milter(const struct vjob *j)
{
	return j->milter_ran ? &j->milter_req : NULL;
}

bool vjob_dmarc_reject(const struct vjob *j)
{
	if (!j->dmarc_done) {
		return false;
	}
	/* A From we could not read could name any domain, a p=reject one
	 * included: local policy (RFC 7489 §6.6.1, §6.7) rejects it, or a
	 * huge field would switch enforcement off (issue 13). The same holds
	 * for several From fields or addresses (§6.6.1 allows rejecting them):
	 * a second From naming a p=reject domain must not be a way around. */
	return (j->dmarc_res.res == AUTH_FAIL && j->dmarc_res.disposition == DMARC_P_REJECT) ||
	       j->dmarc_res.from_unreadable || j->dmarc_res.from_ambiguous;
}

enum auth_res vjob_worst(const struct vjob *j)
{
	enum auth_res worst = AUTH_NONE;

	for (size_t i = 0; i < j->num_res; i++) {
		if (j->res[i].res == AUTH_TEMPERROR) {
			worst = AUTH_TEMPERROR;
		}
	}
	return worst;
}

void vjob_set_owner(struct vjob *j, void *owner)
{
	j->owner = owner;
}

void *vjob_owner(const struct vjob *j)
{
	return j->owner;
}

void vjob_free(struct vjob *j)
{
	if (j == NULL) {
		return;
	}
	dkim_msg_free(j->m);
	arc_msg_free(j->arc);
	bb_fini(&j->pend);
	hdrsplit_fini(&j->split);
	free(j->res); j->res = NULL;
	for (int i = 0; i < SPF_ID_COUNT; i++) {
		free(j->spf[i]); j->spf[i] = NULL;
	}
	dmarc_from_seen_fini(&j->from);
	dmarc_check_free(j->dmarc); j->dmarc = NULL;
	free(j->dnsbl); j->dnsbl = NULL;
	bb_fini(&j->spam_ctx);
	bb_fini(&j->full);
	bb_fini(&j->spam_body);
	free(j->authserv_id); j->authserv_id = NULL;
	free(j->spam); j->spam = NULL;
	milter_req_fini(&j->milter_req);
	for (size_t i = 0; j->m_rcpts != NULL && i < j->m_num_rcpts; i++) {
		free(j->m_rcpts[i]); j->m_rcpts[i] = NULL;
	}
	free(j->m_rcpts); j->m_rcpts = NULL;
	free(j->m_helo); j->m_helo = NULL;
	free(j->m_from); j->m_from = NULL;
	free(j->m_id); j->m_id = NULL;
	free(j->m_host); j->m_host = NULL;
	free(j->m_tlsv); j->m_tlsv = NULL;
	free(j->m_cipher); j->m_cipher = NULL;
	free(j->m_ip); j->m_ip = NULL;
	free(j);
}

/* dnsbl_name writes the RFC 5782 §2.1 / §2.4 query name of ip under zone; false if it does not fit. */
static bool dnsbl_name(char *out, size_t cap, const char *ip, const char *zone)
{
	uint8_t a[16];
	size_t n = 0;
	int k;

	if (inet_pton(AF_INET, ip, a) == 1) {
		k = snprintf(out, cap, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0], zone);
		return k > 0 && (size_t)k < cap;
	}
	if (inet_pton(AF_INET6, ip, a) != 1) {
		return false;
	}
	for (int i = 15; i >= 0; i--) {
		static const char hex[] = "0123456789abcdef";

		if (n + 4 >= cap) {
			return false;
		}
		out[n++] = hex[a[i] & 15];
		out[n++] = '.';
		out[n++] = hex[a[i] >> 4];
		out[n++] = '.';
	}
	k = snprintf(out + n, cap - n, "%s", zone);
	return k > 0 && (size_t)k < cap - n;
}

struct vjob *vjob_dnsbl_new(struct vpool *p, struct vpool_inbox *in, const char *client_ip, char *const *zones,
			    unsigned num_zones, uint32_t timeout_ms)
{
	struct vjob *j = vjob_new(p, in, false, false);
	struct dnsbl_req *q = calloc(1, sizeof(*q));
	struct vop *op = calloc(1, sizeof(*op));

	if (j == NULL || q == NULL || op == NULL) {
		vjob_free(j);
		free(q);
		free(op);
		return NULL;
	}
	j->dnsbl_job = true;
	j->dnsbl_hit = -1;
	j->spam_on = false; /* no message to check */
	j->milter_on = false;
	q->timeout_ms = timeout_ms;
	for (unsigned i = 0; i < num_zones && q->num < VPOOL_DNSBL_MAX; i++) {
		if (dnsbl_name(q->names[q->num], sizeof(q->names[0]), client_ip, zones[i])) {
			q->zones[q->num++] = zones[i];
		}
	}
	j->dnsbl_outstanding = q->num; /* before anything is posted */
	op->kind = VOP_DNSBL;
	op->job = j;
	op->dnsbl = q;
	worker_post(j->w, op);
	vjob_end(j); /* no message: the job completes when the lookups are in */
	return j;
}

bool vjob_is_dnsbl(const struct vjob *j)
{
	return j->dnsbl_job;
}

const char *vjob_dnsbl_listed(const struct vjob *j, char out_addr[16])
{
	const uint8_t *a;

	out_addr[0] = '\0';
	if (j->dnsbl_hit < 0 || j->dnsbl == NULL) {
		return NULL;
	}
	a = j->dnsbl_addr[j->dnsbl_hit];
	snprintf(out_addr, 16, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	return j->dnsbl->zones[j->dnsbl_hit];
}

unsigned vjob_dnsbl_failed(const struct vjob *j)
{
	unsigned n = 0;

	for (unsigned i = 0; j->dnsbl != NULL && i < j->dnsbl->num; i++) {
		n += j->dnsbl_failed[i];
	}
	return n;
}

void vpool_get_stats(struct vpool *p, struct vpool_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (p == NULL) {
		return;
	}
	out->workers = p->num_workers;
	for (unsigned i = 0; i < p->num_workers; i++) {
		uint64_t done = metrics_get(&p->w[i].n_done), posted = metrics_get(&p->w[i].n_posted);

		out->queued += posted > done ? posted - done : 0;
	}
	out->key_cache_hits = metrics_get(&p->kc_hits);
	out->key_cache_misses = metrics_get(&p->kc_misses);
}

void vjob_brief(const struct vjob *j, struct vjob_brief *out)
{
	static const int rank[AUTH_RES_COUNT] = {
		[AUTH_PASS] = 7, [AUTH_FAIL] = 5, [AUTH_NEUTRAL] = 4, [AUTH_SOFTFAIL] = 3,
		[AUTH_TEMPERROR] = 2, [AUTH_PERMERROR] = 6, [AUTH_POLICY] = 1, [AUTH_NONE] = 0,
	};

	memset(out, 0, sizeof(*out));
	out->dkim_on = j->dkim;
	out->dkim = AUTH_NONE;
	for (size_t i = 0; i < j->num_res; i++) {
		enum auth_res r = j->res[i].res;

		if (r < AUTH_RES_COUNT) {
			out->dkim_count[r]++;
			if (rank[r] > rank[out->dkim]) {
				out->dkim = r;
			}
		}
	}
	out->spf_mfrom_on = j->spf[SPF_ID_MAILFROM] != NULL;
	out->spf_mfrom = out->spf_mfrom_on ? j->spf[SPF_ID_MAILFROM]->res : AUTH_NONE;
	out->spf_helo_on = j->spf[SPF_ID_HELO] != NULL;
	out->spf_helo = out->spf_helo_on ? j->spf[SPF_ID_HELO]->res : AUTH_NONE;
	out->dmarc_on = j->dmarc_done;
	out->dmarc = j->dmarc_done ? j->dmarc_res.res : AUTH_NONE;
	out->arc_on = j->arc_done;
	out->arc = j->arc_done ? j->arc_res.res : AUTH_NONE;
}
