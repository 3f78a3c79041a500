/*
 * dns_unbound.c - the libunbound backend of struct dns_resolver.
 *
 * One ub_ctx in threaded async mode: libunbound's own thread does the
 * network work and writes finished lookups to a pipe (ub_fd); ub_process()
 * in the owner's thread runs our callback, which maps the answer to a
 * bounded struct dns_txt_answer (txt) or struct dns_answer (query, any
 * type) and calls the user's callback.
 * Deadlines are ours (libunbound retries an unresponsive server for much
 * longer than a mail transaction can wait): a lookup past its deadline is
 * cancelled and completes as DNS_TIMEOUT. A lookup whose cancel raced with
 * its delivery stays allocated ("orphan") until libunbound hands it back.
 * Caching (TTL, negative answers) is libunbound's, and in the server also
 * dns_cache.c's in front of it; see dns.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "dns.h"

#define RR_TYPE_TXT 16
#define DNS_UB_INFLIGHT "1024" /* lookups in flight at once (sockets, and queries served) */
#define RR_CLASS_IN 1

struct ubq {
	struct ubq *next, *prev;
	struct dns_ub *owner;
	uint64_t id;
	uint64_t deadline;
	int async_id;
	bool orphan;         /* completed by us (timeout/cancel); unbound still owns a callback */
	dns_txt_fn *cb;        /* txt lookups */
	dns_answer_fn *acb;    /* generic lookups (query) */
	uint16_t qtype;
	void *arg;
};

struct dns_ub {
	struct dns_resolver base;
	struct ub_ctx *ctx;
	struct ubq pending;  /* list head of live lookups */
	struct ubq orphans;  /* list head of lookups waiting for a late unbound callback */
	unsigned num_pending;
	uint64_t next_id;
	uint32_t timeout_ms;
	struct dns_txt_answer *ans; /* scratch answer, reused per callback */
	struct dns_answer *gans;    /* scratch generic answer, allocated on first query */
};

static void list_init(struct ubq *h)
{
	h->next = h->prev = h;
}

static void list_add(struct ubq *h, struct ubq *q)
{
	q->next = h->next;
	q->prev = h;
	h->next->prev = q;
	h->next = q;
}

static void list_del(struct ubq *q)
{
	q->prev->next = q->next;
	q->next->prev = q->prev;
	q->next = q->prev = q;
}

static struct dns_ub *ub_of(struct dns_resolver *r)
{
	return (struct dns_ub *)(void *)r;
}

static void fill_answer(struct dns_txt_answer *a, int err, const struct ub_result *res)
{
	a->num_records = 0;
	a->num_ignored = 0;
	a->buf_len = 0;
	a->ttl = 0;
	if (err != 0 || res == NULL) {
		a->status = err == UB_SERVFAIL ? DNS_SERVFAIL : DNS_ERROR;
		return;
	}
	a->ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
	if (res->bogus) {
		a->status = DNS_SERVFAIL;
	} else if (res->rcode == 3 || res->nxdomain) {
		a->status = DNS_NXDOMAIN;
	} else if (res->rcode != 0) {
		a->status = DNS_SERVFAIL; /* SERVFAIL, REFUSED, FORMERR, ... */
	} else if (!res->havedata) {
		a->status = DNS_NODATA;
	} else {
		const uint8_t *rd[DNS_TXT_RECORDS_MAX + 1];
		size_t rl[DNS_TXT_RECORDS_MAX + 1];
		size_t n = 0, extra = 0;

		for (size_t i = 0; res->data[i] != NULL; i++) {
			if (n == DNS_TXT_RECORDS_MAX + 1) {
				extra++;
				continue;
			}
			rd[n] = (const uint8_t *)res->data[i];
			rl[n] = res->len[i] > 0 ? (size_t)res->len[i] : 0;
			n++;
		}
		dns_txt_from_rdata(a, rd, rl, n);
		a->num_ignored += (unsigned)extra;
	}
}

static void fill_generic(struct dns_answer *a, uint16_t qtype, int err, const struct ub_result *res)
{
	if (err != 0 || res == NULL) {
		dns_answer_set_status(a, qtype, err == UB_SERVFAIL ? DNS_SERVFAIL : DNS_ERROR);
		return;
	}
	if (res->bogus) {
		dns_answer_set_status(a, qtype, DNS_SERVFAIL);
	} else if (res->rcode == 3 || res->nxdomain) {
		dns_answer_set_status(a, qtype, DNS_NXDOMAIN);
	} else if (res->rcode != 0) {
		dns_answer_set_status(a, qtype, DNS_SERVFAIL);
	} else if (!res->havedata) {
		dns_answer_set_status(a, qtype, DNS_NODATA);
	} else {
		const uint8_t *rd[DNS_RR_MAX + 1];
		size_t rl[DNS_RR_MAX + 1];
		size_t n = 0, extra = 0;

		for (size_t i = 0; res->data[i] != NULL; i++) {
			if (n == DNS_RR_MAX + 1) {
				extra++;
				continue;
			}
			rd[n] = (const uint8_t *)res->data[i];
			rl[n] = res->len[i] > 0 ? (size_t)res->len[i] : 0;
			n++;
		}
		dns_answer_from_rdata(a, qtype, rd, rl, n);
		a->num_ignored += (unsigned)extra;
	}
	a->ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
}

/* deliver runs q's callback with an answer built by fill_* or a bare status. */
static void deliver(struct dns_ub *u, struct ubq *q, int err, const struct ub_result *res, bool timeout)
{
	if (q->acb != NULL) {
		if (timeout) {
			dns_answer_set_status(u->gans, q->qtype, DNS_TIMEOUT);
		} else {
			fill_generic(u->gans, q->qtype, err, res);
		}
		q->acb(q->arg, u->gans);
		return;
	}
	if (timeout) {
		u->ans->status = DNS_TIMEOUT;
		u->ans->num_records = u->ans->num_ignored = 0;
		u->ans->buf_len = 0;
		u->ans->ttl = 0;
	} else {
		fill_answer(u->ans, err, res);
	}
	q->cb(q->arg, u->ans);
}

static void ub_done(void *mydata, int err, struct ub_result *res)
{
	struct ubq *q = mydata;
	struct dns_ub *u = q->owner;

	if (q->orphan) {
		list_del(q);
		free(q);
	} else {
		list_del(q);
		u->num_pending--;
		deliver(u, q, err, res, false);
		free(q);
	}
	if (res != NULL) {
		ub_resolve_free(res);
	}
}

/*
 * presentation writes `name` (raw label bytes, '.' between labels) in the
 * master-file form libunbound parses: bytes other than letters, digits,
 * '-' and '_' as \DDD (RFC 1035 §5.1), so a macro-expanded SPF name with
 * spaces or '%' (RFC 7208 §7.3) is asked as it is. -EINVAL if too long.
 */
static int presentation(char *out, size_t out_len, const char *name)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		unsigned char c = *p;
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
			     c == '_' || c == '.';

		if (n + (plain ? 1 : 4) >= out_len) {
			return -EINVAL;
		}
		if (plain) {
			out[n++] = (char)c;
		} else {
			n += (size_t)snprintf(out + n, out_len - n, "\\%03u", c);
		}
	}
	out[n] = '\0';
	return 0;
}

static int start(struct dns_ub *u, const char *name, uint16_t qtype, uint64_t deadline_ms, dns_txt_fn *cb,
		 dns_answer_fn *acb, void *arg, uint64_t *out_id)
{
	struct ubq *q;
	char pres[4 * 256];
	int rc;

	if (presentation(pres, sizeof(pres), name) != 0) {
		return -EINVAL;
	}
	name = pres;
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		return -ENOMEM;
	}
	q->owner = u;
	q->id = ++u->next_id;
	q->deadline = deadline_ms ? deadline_ms : dns_now_ms() + u->timeout_ms;
	q->cb = cb;
	q->acb = acb;
	q->qtype = qtype;
	q->arg = arg;
	list_add(&u->pending, q);
	u->num_pending++;
	rc = ub_resolve_async(u->ctx, name, qtype, RR_CLASS_IN, q, ub_done, &q->async_id);
	if (rc != 0) {
		list_del(q);
		u->num_pending--;
		free(q);
		return rc == UB_NOMEM ? -ENOMEM : -EIO;
	}
	*out_id = q->id;
	return 0;
}

static int ub_txt(struct dns_resolver *r, const char *name, uint64_t deadline_ms, dns_txt_fn *cb, void *arg,
		  uint64_t *out_id)
{
	return start(ub_of(r), name, RR_TYPE_TXT, deadline_ms, cb, NULL, arg, out_id);
}

static int ub_query(struct dns_resolver *r, const char *name, uint16_t qtype, uint64_t deadline_ms,
		    dns_answer_fn *cb, void *arg, uint64_t *out_id)
{
	struct dns_ub *u = ub_of(r);

	if (u->gans == NULL && (u->gans = malloc(sizeof(*u->gans))) == NULL) {
		return -ENOMEM;
	}
	return start(u, name, qtype, deadline_ms, NULL, cb, arg, out_id);
}

/* finish completes q now (timeout or cancel): unbound is told to drop it. */
static void finish(struct dns_ub *u, struct ubq *q, bool run_cb)
{
	list_del(q);
	u->num_pending--;
	if (ub_cancel(u->ctx, q->async_id) == 0) {
		if (run_cb) {
			deliver(u, q, 0, NULL, true);
		}
		free(q);
		return;
	}
	/* Already delivered to the pipe: ub_done will see it and free it. */
	q->orphan = true;
	list_add(&u->orphans, q);
	if (run_cb) {
		deliver(u, q, 0, NULL, true);
	}
}

static void ub_cancel_id(struct dns_resolver *r, uint64_t id)
{
	struct dns_ub *u = ub_of(r);

	for (struct ubq *q = u->pending.next; q != &u->pending; q = q->next) {
		if (q->id == id) {
			finish(u, q, false);
			return;
		}
	}
}

static int ub_fd_of(struct dns_resolver *r)
{
	return ub_fd(ub_of(r)->ctx);
}

static int ub_process_all(struct dns_resolver *r, uint64_t now_ms)
{
	struct dns_ub *u = ub_of(r);
	int rc = ub_process(u->ctx);

	for (struct ubq *q = u->pending.next, *n; q != &u->pending; q = n) {
		n = q->next;
		if (q->deadline <= now_ms) {
			finish(u, q, true);
			n = u->pending.next; /* the callback may have changed the list */
		}
	}
	return rc == 0 ? 0 : -EIO;
}

static unsigned ub_pending(struct dns_resolver *r)
{
	return ub_of(r)->num_pending;
}

static uint64_t ub_next_deadline(struct dns_resolver *r)
{
	struct dns_ub *u = ub_of(r);
	uint64_t dl = UINT64_MAX;

	for (struct ubq *q = u->pending.next; q != &u->pending; q = q->next) {
		if (q->deadline < dl) {
			dl = q->deadline;
		}
	}
	return dl;
}

static void ub_free_all(struct dns_resolver *r)
{
	struct dns_ub *u = ub_of(r);

	if (u->ctx != NULL) {
		ub_ctx_delete(u->ctx); /* stops unbound's thread; no callback runs after this */
	}
	while (u->pending.next != &u->pending) {
		struct ubq *q = u->pending.next;

		list_del(q);
		free(q);
	}
	while (u->orphans.next != &u->orphans) {
		struct ubq *q = u->orphans.next;

		list_del(q);
		free(q);
	}
	free(u->ans);
	free(u->gans);
	free(u);
}

static const struct dns_resolver_ops ub_ops = {
	.name = "unbound",
	.txt = ub_txt,
	.cancel = ub_cancel_id,
	.fd = ub_fd_of,
	.process = ub_process_all,
	.pending = ub_pending,
	.next_deadline = ub_next_deadline,
	.free = ub_free_all,
	.query = ub_query,
};

/* fwd_spec turns "ADDR[:PORT]" / "[V6]:PORT" / "V6" into unbound's "ADDR@PORT". */
static int fwd_spec(char *out, size_t out_len, const char *up)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *port = "53", *colon = strrchr(up, ':');
	size_t alen;
	unsigned char bin[16];
	char *end;
	unsigned long pn;

	if (up[0] == '[') {
		const char *rb = strchr(up, ']');

		if (rb == NULL) {
			return -EINVAL;
		}
		alen = (size_t)(rb - up - 1);
		if (alen >= sizeof(addr)) {
			return -EINVAL;
		}
		memcpy(addr, up + 1, alen);
		addr[alen] = '\0';
		if (rb[1] == ':') {
			port = rb + 2;
		} else if (rb[1] != '\0') {
			return -EINVAL;
		}
	} else if (colon != NULL && strchr(up, ':') == colon) {
		alen = (size_t)(colon - up);
		if (alen >= sizeof(addr)) {
			return -EINVAL;
		}
		memcpy(addr, up, alen);
		addr[alen] = '\0';
		port = colon + 1;
	} else {
		if (strlen(up) >= sizeof(addr)) {
			return -EINVAL;
		}
		strcpy(addr, up);
	}
	if (inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1) {
		return -EINVAL;
	}
	errno = 0;
	pn = strtoul(port, &end, 10);
	if (errno != 0 || *end != '\0' || pn == 0 || pn > 65535) {
		return -EINVAL;
	}
	if ((size_t)snprintf(out, out_len, "%s@%lu", addr, pn) >= out_len) {
		return -EINVAL;
	}
	return 0;
}

static char *errdup(const char *what, const char *detail)
{
	char *s = NULL;

	if (asprintf(&s, "dns: %s%s%s", what, detail ? ": " : "", detail ? detail : "") < 0) {
		return NULL;
	}
	return s;
}

struct dns_resolver *dns_unbound_new(const struct dns_opts *o, char **out_err)
{
	struct dns_ub *u = calloc(1, sizeof(*u));
	char fwd[INET6_ADDRSTRLEN + 16];
	int rc;

	*out_err = NULL;
	if (u == NULL || (u->ans = malloc(sizeof(*u->ans))) == NULL) {
		free(u);
		*out_err = errdup("out of memory", NULL);
		return NULL;
	}
	u->base.ops = &ub_ops;
	list_init(&u->pending);
	list_init(&u->orphans);
	u->timeout_ms = o && o->timeout_ms ? o->timeout_ms : DNS_TIMEOUT_MS_DEFAULT;
	u->ctx = ub_ctx_create();
	if (u->ctx == NULL) {
		*out_err = errdup("cannot create the libunbound context", NULL);
		goto fail;
	}
	/* Threads, not fork(): we live inside a multi-threaded server. */
	if ((rc = ub_ctx_async(u->ctx, 1)) != 0 ||
	    /* resolv.conf often names 127.0.0.53; a test server sits on loopback too */
	    (rc = ub_ctx_set_option(u->ctx, "do-not-query-localhost:", "no")) != 0 ||
	    /* ask upstream the full name: a minimised walk stops at empty non-terminals */
	    (rc = ub_ctx_set_option(u->ctx, "qname-minimisation:", "no")) != 0 ||
	    /* reverse names of private and documentation space are the upstream's to
	     * answer (SPF ptr and %{p} look them up), not unbound's built-in empty zones */
	    (rc = ub_ctx_set_option(u->ctx, "unblock-lan-zones:", "yes")) != 0 ||
	    (rc = ub_ctx_set_option(u->ctx, "insecure-lan-zones:", "yes")) != 0 ||
	    (rc = ub_ctx_set_option(u->ctx, "local-zone:", "8.b.d.0.1.0.0.2.ip6.arpa. nodefault")) != 0 ||
	    /* libunbound's default outgoing-range (one UDP socket per query in
	     * flight) is tiny: with it, 16 lookups were in flight at once and a
	     * 20 ms upstream capped the server at ~400 msg/s (bench/dns_delay.sh).
	     * A mail server has hundreds of sessions waiting on DNS at once. */
	    (rc = ub_ctx_set_option(u->ctx, "outgoing-range:", DNS_UB_INFLIGHT)) != 0 ||
	    (rc = ub_ctx_set_option(u->ctx, "num-queries-per-thread:", DNS_UB_INFLIGHT)) != 0) {
		*out_err = errdup("libunbound setup", ub_strerror(rc));
		goto fail;
	}
	if (o != NULL && o->upstream != NULL) {
		if (fwd_spec(fwd, sizeof(fwd), o->upstream) != 0) {
			*out_err = errdup("bad --dns address (want ADDR[:PORT] or [V6]:PORT)", o->upstream);
			goto fail;
		}
		if ((rc = ub_ctx_set_fwd(u->ctx, fwd)) != 0) {
			*out_err = errdup("cannot forward to", o->upstream);
			goto fail;
		}
		/* RFC 6761 §6.2 lets a resolver answer test. itself (unbound's
		 * default static zone: NXDOMAIN); a server the operator names may
		 * well serve it (test set-ups, the load generator's signing
		 * domain), so names under test. go there too. */
		if ((rc = ub_ctx_set_option(u->ctx, "local-zone:", "test. transparent")) != 0) {
			*out_err = errdup("libunbound setup", ub_strerror(rc));
			goto fail;
		}
	} else if ((rc = ub_ctx_resolvconf(u->ctx, NULL)) != 0) {
		*out_err = errdup("cannot read /etc/resolv.conf", rc > 0 ? strerror(rc) : ub_strerror(rc));
		goto fail;
	}
	return &u->base;
fail:
	ub_free_all(&u->base);
	return NULL;
}
