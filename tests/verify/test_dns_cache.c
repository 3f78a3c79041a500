/*
 * test_dns_cache.c - the verify pool's DNS answer cache (verify/dns_cache.c)
 * with an injected clock and a fake backend (the fetch hook records the
 * misses; the test answers them with dns_cache_put): TTL expiry, negative
 * and failure caching, the memory bound, shared lookups (also from several
 * threads at once), case-insensitive names, and the front resolver's
 * delivery contract (answers only from dns_process, cancel, TXT answers).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dns_cache.h"

static uint64_t clock_ms;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return clock_ms;
}

static struct dns_cache *cache_new(size_t max_bytes)
{
	struct dns_cache_opts o = { .max_bytes = max_bytes, .now_ms = fake_clock };
	struct dns_cache *c;

	clock_ms = 1000000;
	c = dns_cache_new(&o);
	cr_assert_not_null(c);
	return c;
}

/* answer fills *a with one TXT (or A) record `text` and `ttl`, or a bare status. */
static void answer(struct dns_answer *a, uint16_t qtype, enum dns_status st, uint32_t ttl, const char *text)
{
	dns_answer_set_status(a, qtype, st);
	a->ttl = ttl;
	if (st == DNS_OK) {
		size_t n = strlen(text);

		memcpy(a->buf, text, n);
		a->buf_len = n;
		a->rr[0].data = span_make(a->buf, n);
		a->rr[0].pref = 0;
		a->num_records = 1;
	}
}

static void put(struct dns_cache *c, const char *name, uint16_t qtype, enum dns_status st, uint32_t ttl,
		const char *text)
{
	static struct dns_answer a;

	answer(&a, qtype, st, ttl, text);
	dns_cache_put(c, name, qtype, &a);
}

/* peek returns the cached status of (name, qtype), or -1 on a miss. */
static int peek(struct dns_cache *c, const char *name, uint16_t qtype)
{
	struct dns_cache_ans *a;
	int st;

	if (dns_cache_get(c, &a, name, qtype, NULL) != DNS_CACHE_HIT) {
		return -1;
	}
	st = (int)dns_cache_ans_status(a);
	dns_cache_ans_unref(a);
	return st;
}

Test(dns_cache, answer_kept_until_its_ttl_ends)
{
	struct dns_cache *c = cache_new(0);
	static struct dns_answer out;
	struct dns_cache_ans *a;

	put(c, "example.com", DNS_T_TXT, DNS_OK, 60, "v=spf1 -all");
	cr_assert_eq(dns_cache_get(c, &a, "example.com", DNS_T_TXT, NULL), DNS_CACHE_HIT);
	clock_ms += 20000;
	dns_cache_ans_answer(&out, a, clock_ms);
	cr_assert_eq(out.status, DNS_OK);
	cr_assert_eq(out.num_records, 1);
	cr_assert_eq(out.rr[0].data.len, 11);
	cr_assert(memcmp(out.rr[0].data.p, "v=spf1 -all", 11) == 0);
	cr_assert_eq(out.ttl, 40, "the TTL left, not the original: %u", out.ttl);
	dns_cache_ans_unref(a);
	clock_ms += 39999;
	cr_assert_eq(peek(c, "example.com", DNS_T_TXT), DNS_OK);
	clock_ms += 1;
	cr_assert_eq(peek(c, "example.com", DNS_T_TXT), -1, "expired at its TTL");
	dns_cache_free(c);
}

Test(dns_cache, ttl_zero_and_local_errors_not_kept)
{
	struct dns_cache *c = cache_new(0);

	put(c, "zero.example", DNS_T_TXT, DNS_OK, 0, "x");
	put(c, "err.example", DNS_T_TXT, DNS_ERROR, 300, NULL);
	cr_assert_eq(peek(c, "zero.example", DNS_T_TXT), -1);
	cr_assert_eq(peek(c, "err.example", DNS_T_TXT), -1);
	dns_cache_free(c);
}

Test(dns_cache, huge_ttl_capped)
{
	struct dns_cache *c = cache_new(0);

	put(c, "long.example", DNS_T_A, DNS_OK, 0x7fffffff, "\x7f\0\0\1");
	clock_ms += (uint64_t)DNS_CACHE_TTL_MAX * 1000 - 1;
	cr_assert_eq(peek(c, "long.example", DNS_T_A), DNS_OK);
	clock_ms += 1;
	cr_assert_eq(peek(c, "long.example", DNS_T_A), -1);
	dns_cache_free(c);
}

Test(dns_cache, negative_answers_kept_for_their_negative_ttl)
{
	struct dns_cache *c = cache_new(0);

	put(c, "gone.example", DNS_T_TXT, DNS_NXDOMAIN, 300, NULL);
	put(c, "empty.example", DNS_T_MX, DNS_NODATA, 100000, NULL); /* capped */
	put(c, "nosoa.example", DNS_T_TXT, DNS_NXDOMAIN, 0, NULL);   /* RFC 2308 §5: not cached */
	cr_assert_eq(peek(c, "gone.example", DNS_T_TXT), DNS_NXDOMAIN);
	cr_assert_eq(peek(c, "empty.example", DNS_T_MX), DNS_NODATA);
	cr_assert_eq(peek(c, "nosoa.example", DNS_T_TXT), -1);
	clock_ms += 300 * 1000;
	cr_assert_eq(peek(c, "gone.example", DNS_T_TXT), -1);
	cr_assert_eq(peek(c, "empty.example", DNS_T_MX), DNS_NODATA);
	clock_ms += (uint64_t)(DNS_CACHE_NEG_TTL_MAX - 300) * 1000;
	cr_assert_eq(peek(c, "empty.example", DNS_T_MX), -1, "negative TTL capped at %u s", DNS_CACHE_NEG_TTL_MAX);
	dns_cache_free(c);
}

Test(dns_cache, servfail_and_timeout_kept_briefly)
{
	struct dns_cache *c = cache_new(0);

	put(c, "broken.example", DNS_T_TXT, DNS_SERVFAIL, 3600, NULL);
	put(c, "slow.example", DNS_T_TXT, DNS_TIMEOUT, 0, NULL);
	cr_assert_eq(peek(c, "broken.example", DNS_T_TXT), DNS_SERVFAIL);
	cr_assert_eq(peek(c, "slow.example", DNS_T_TXT), DNS_TIMEOUT);
	clock_ms += DNS_CACHE_FAIL_TTL * 1000;
	cr_assert_eq(peek(c, "broken.example", DNS_T_TXT), -1, "a cached SERVFAIL expires");
	cr_assert_eq(peek(c, "slow.example", DNS_T_TXT), -1, "a cached timeout expires");
	dns_cache_free(c);
}

Test(dns_cache, names_compare_case_insensitively_with_or_without_final_dot)
{
	struct dns_cache *c = cache_new(0);

	put(c, "Example.COM.", DNS_T_TXT, DNS_OK, 60, "a");
	cr_assert_eq(peek(c, "example.com", DNS_T_TXT), DNS_OK);
	cr_assert_eq(peek(c, "EXAMPLE.com.", DNS_T_TXT), DNS_OK);
	cr_assert_eq(peek(c, "example.com", DNS_T_A), -1, "the type is part of the key");
	cr_assert_eq(peek(c, "example.co", DNS_T_TXT), -1);
	cr_assert_eq(peek(c, "xexample.com", DNS_T_TXT), -1);
	dns_cache_free(c);
}

Test(dns_cache, overlong_names_refused)
{
	struct dns_cache *c = cache_new(0);
	char name[300];
	struct dns_cache_ans *a;
	struct dns_cache_waiter w = { 0 };

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	cr_assert_eq(dns_cache_get(c, &a, name, DNS_T_TXT, &w), DNS_CACHE_ERROR);
	name[255] = '\0';
	cr_assert_eq(dns_cache_get(c, &a, name, DNS_T_TXT, NULL), DNS_CACHE_MISS);
	dns_cache_free(c);
}

Test(dns_cache, memory_stays_within_the_budget)
{
	size_t budget = 64 * 1024;
	struct dns_cache *c = cache_new(budget);
	struct dns_cache_stats st;
	char name[64];
	int kept = 0;

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "d%d.example", i);
		put(c, name, DNS_T_TXT, DNS_OK, 3600, "v=spf1 ip4:192.0.2.0/24 -all");
		/* d0 is read often: least recently used goes first, not it. */
		cr_assert_eq(peek(c, "d0.example", DNS_T_TXT), DNS_OK, "after %d", i);
		dns_cache_stats(c, &st);
		cr_assert_leq(st.bytes, budget);
	}
	dns_cache_stats(c, &st);
	cr_assert_gt(st.evictions, 0);
	cr_assert_eq(st.entries + st.evictions, 5000);
	for (int i = 4990; i < 5000; i++) {
		snprintf(name, sizeof(name), "d%d.example", i);
		kept += peek(c, name, DNS_T_TXT) == DNS_OK;
	}
	cr_assert_geq(kept, 8, "the newest answers are kept (%d of 10)", kept);
	dns_cache_free(c);
}

struct waited {
	atomic_int calls;
	enum dns_status st;
};

static void on_answer(void *arg, struct dns_cache_ans *a)
{
	struct waited *wt = arg;

	wt->st = dns_cache_ans_status(a);
	atomic_fetch_add(&wt->calls, 1);
	dns_cache_ans_unref(a);
}

Test(dns_cache, concurrent_misses_share_one_lookup)
{
	struct dns_cache *c = cache_new(0);
	struct waited w1 = { 0 }, w2 = { 0 }, w3 = { 0 };
	struct dns_cache_waiter a = { .fn = on_answer, .arg = &w1 }, b = { .fn = on_answer, .arg = &w2 },
				o = { .fn = on_answer, .arg = &w3 };
	struct dns_cache_ans *ans;
	struct dns_cache_stats st;

	cr_assert_eq(dns_cache_get(c, &ans, "Shared.example", DNS_T_TXT, &a), DNS_CACHE_MISS);
	cr_assert_eq(dns_cache_get(c, &ans, "shared.example.", DNS_T_TXT, &b), DNS_CACHE_JOINED);
	cr_assert_eq(dns_cache_get(c, &ans, "shared.example", DNS_T_A, &o), DNS_CACHE_MISS, "another type");
	cr_assert_eq(peek(c, "shared.example", DNS_T_TXT), -1, "in flight is not a hit");
	put(c, "shared.example", DNS_T_TXT, DNS_NXDOMAIN, 60, NULL);
	cr_assert_eq(atomic_load(&w1.calls), 1);
	cr_assert_eq(atomic_load(&w2.calls), 1);
	cr_assert_eq(w1.st, DNS_NXDOMAIN);
	cr_assert_eq(w2.st, DNS_NXDOMAIN);
	cr_assert_eq(atomic_load(&w3.calls), 0);
	/* An answer that is not kept still reaches its waiters. */
	put(c, "shared.example", DNS_T_A, DNS_ERROR, 0, NULL);
	cr_assert_eq(atomic_load(&w3.calls), 1);
	cr_assert_eq(w3.st, DNS_ERROR);
	dns_cache_stats(c, &st);
	cr_assert_eq(st.misses, 2);
	cr_assert_eq(st.shared, 1);
	cr_assert_eq(st.entries, 1);
	dns_cache_free(c);
}

Test(dns_cache, expired_answer_asked_again_once)
{
	struct dns_cache *c = cache_new(0);
	struct waited w1 = { 0 }, w2 = { 0 };
	struct dns_cache_waiter a = { .fn = on_answer, .arg = &w1 }, b = { .fn = on_answer, .arg = &w2 };
	struct dns_cache_ans *ans;

	put(c, "again.example", DNS_T_TXT, DNS_SERVFAIL, 0, NULL);
	clock_ms += DNS_CACHE_FAIL_TTL * 1000;
	cr_assert_eq(dns_cache_get(c, &ans, "again.example", DNS_T_TXT, &a), DNS_CACHE_MISS);
	cr_assert_eq(dns_cache_get(c, &ans, "again.example", DNS_T_TXT, &b), DNS_CACHE_JOINED);
	put(c, "again.example", DNS_T_TXT, DNS_OK, 60, "ok");
	cr_assert_eq(w1.st, DNS_OK);
	cr_assert_eq(w2.st, DNS_OK);
	cr_assert_eq(peek(c, "again.example", DNS_T_TXT), DNS_OK);
	dns_cache_free(c);
}

#define NTHREADS 8

struct racer {
	struct dns_cache *c;
	pthread_barrier_t *bar;
	struct dns_cache_waiter w;
	struct waited wt;
	enum dns_cache_rc rc;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct dns_cache_ans *a = NULL;

	pthread_barrier_wait(r->bar);
	r->rc = dns_cache_get(r->c, &a, "race.example", DNS_T_TXT, &r->w);
	if (r->rc == DNS_CACHE_MISS) {
		put(r->c, "race.example", DNS_T_TXT, DNS_OK, 60, "v=spf1 -all"); /* the fetch, answered at once */
	} else if (r->rc == DNS_CACHE_HIT) {
		on_answer(&r->wt, a);
	}
	return NULL;
}

Test(dns_cache, concurrent_misses_from_threads_coalesce)
{
	for (int round = 0; round < 50; round++) {
		struct dns_cache *c = cache_new(0);
		pthread_barrier_t bar;
		struct racer r[NTHREADS];
		pthread_t t[NTHREADS];
		struct dns_cache_stats st;
		int misses = 0;

		pthread_barrier_init(&bar, NULL, NTHREADS);
		memset(r, 0, sizeof(r));
		for (int i = 0; i < NTHREADS; i++) {
			r[i].c = c;
			r[i].bar = &bar;
			r[i].w.fn = on_answer;
			r[i].w.arg = &r[i].wt;
			pthread_create(&t[i], NULL, race, &r[i]);
		}
		/* A joined asker is answered by the thread that missed, which may
		 * finish after it: join every thread before checking any answer. */
		for (int i = 0; i < NTHREADS; i++) {
			pthread_join(t[i], NULL);
		}
		for (int i = 0; i < NTHREADS; i++) {
			misses += r[i].rc == DNS_CACHE_MISS;
			cr_assert_eq(atomic_load(&r[i].wt.calls), 1, "every asker answered once");
			cr_assert_eq(r[i].wt.st, DNS_OK);
		}
		cr_assert_eq(misses, 1, "one lookup for all");
		dns_cache_stats(c, &st);
		cr_assert_eq(st.misses, 1);
		cr_assert_eq(st.hits + st.shared, NTHREADS - 1);
		pthread_barrier_destroy(&bar);
		dns_cache_free(c);
	}
}

/* ------------------------------------------------------------ the front resolver, fake backend */

struct fake {
	struct dns_cache *c;
	int fetches;
	char last[300];
	uint16_t last_type;
	int wakes;
};

static void fake_fetch(void *arg, const char *name, uint16_t qtype, uint64_t deadline_ms)
{
	struct fake *f = arg;

	(void)deadline_ms;
	f->fetches++;
	snprintf(f->last, sizeof(f->last), "%s", name);
	f->last_type = qtype;
}

static void fake_wake(void *arg)
{
	struct fake *f = arg;

	f->wakes++;
}

struct got {
	int calls;
	enum dns_status st;
	unsigned num;
	char first[64];
};

static void got_answer(void *arg, const struct dns_answer *a)
{
	struct got *g = arg;

	g->calls++;
	g->st = a->status;
	g->num = a->num_records;
	if (a->num_records > 0) {
		snprintf(g->first, sizeof(g->first), "%.*s", (int)a->rr[0].data.len, (const char *)a->rr[0].data.p);
	}
}

static void got_txt(void *arg, const struct dns_txt_answer *a)
{
	struct got *g = arg;

	g->calls++;
	g->st = a->status;
	g->num = a->num_records;
	if (a->num_records > 0) {
		snprintf(g->first, sizeof(g->first), "%.*s", (int)a->rec[0].len, (const char *)a->rec[0].p);
	}
}

Test(dns_cache_front, misses_fetched_once_and_answered_from_process)
{
	struct fake fk = { .c = cache_new(0) };
	struct dns_resolver *r = dns_cache_resolver_new(fk.c, fake_fetch, fake_wake, &fk);
	struct got g1 = { 0 }, g2 = { 0 }, g3 = { 0 };
	uint64_t id1, id2, id3;

	cr_assert_not_null(r);
	cr_assert_eq(dns_query(r, "Mail.example", DNS_T_TXT, 0, got_answer, &g1, &id1), 0);
	cr_assert_eq(dns_query(r, "mail.example", DNS_T_TXT, 0, got_answer, &g2, &id2), 0);
	cr_assert_eq(dns_query(r, "mail.example", DNS_T_TXT, 0, got_answer, &g3, &id3), 0);
	cr_assert_eq(fk.fetches, 1, "one fetch for three askers");
	cr_assert_str_eq(fk.last, "Mail.example");
	cr_assert_eq(fk.last_type, DNS_T_TXT);
	cr_assert_eq(r->ops->pending(r), 3);
	dns_cancel(r, id3);
	cr_assert_eq(r->ops->pending(r), 2);
	dns_process(r, 0);
	cr_assert_eq(g1.calls + g2.calls, 0, "nothing answered yet");
	put(fk.c, "mail.example", DNS_T_TXT, DNS_OK, 60, "v=spf1 -all");
	cr_assert_eq(fk.wakes, 1, "one wake for a batch of answers");
	cr_assert_eq(g1.calls + g2.calls, 0, "answers wait for dns_process");
	dns_process(r, 0);
	cr_assert_eq(g1.calls, 1);
	cr_assert_eq(g2.calls, 1);
	cr_assert_eq(g3.calls, 0, "cancelled");
	cr_assert_str_eq(g1.first, "v=spf1 -all");
	cr_assert_eq(r->ops->pending(r), 0);
	dns_free(r);
	dns_cache_free(fk.c);
}

Test(dns_cache_front, hits_delivered_by_process_not_inside_query)
{
	struct fake fk = { .c = cache_new(0) };
	struct dns_resolver *r = dns_cache_resolver_new(fk.c, fake_fetch, fake_wake, &fk);
	struct got g = { 0 }, t = { 0 }, x = { 0 };
	uint64_t id;

	put(fk.c, "key._domainkey.example", DNS_T_TXT, DNS_OK, 300, "v=DKIM1; p=");
	put(fk.c, "nope.example", DNS_T_AAAA, DNS_NXDOMAIN, 300, NULL);
	cr_assert_eq(dns_query(r, "key._domainkey.example", DNS_T_TXT, 0, got_answer, &g, &id), 0);
	cr_assert_eq(dns_txt(r, "KEY._domainkey.example.", 0, got_txt, &t, &id), 0);
	cr_assert_eq(dns_query(r, "nope.example", DNS_T_AAAA, 0, got_answer, &x, &id), 0);
	cr_assert_eq(g.calls + t.calls + x.calls, 0);
	cr_assert_eq(fk.fetches, 0, "hits ask nothing");
	dns_process(r, 0);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(t.calls, 1);
	cr_assert_eq(t.st, DNS_OK);
	cr_assert_eq(t.num, 1);
	cr_assert_str_eq(t.first, "v=DKIM1; p=");
	cr_assert_eq(x.st, DNS_NXDOMAIN);
	dns_free(r);
	dns_cache_free(fk.c);
}

Test(dns_cache_front, freed_with_lookups_in_flight_after_the_cache)
{
	struct fake fk = { .c = cache_new(0) };
	struct dns_resolver *r = dns_cache_resolver_new(fk.c, fake_fetch, fake_wake, &fk);
	struct got g = { 0 };
	uint64_t id;

	cr_assert_eq(dns_query(r, "never.example", DNS_T_MX, 0, got_answer, &g, &id), 0);
	dns_cache_free(fk.c); /* drops the waiter */
	dns_free(r);          /* frees the lookup (ASan checks) */
	cr_assert_eq(g.calls, 0);
}
