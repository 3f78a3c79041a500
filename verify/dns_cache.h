/*
 * dns_cache.h - the verify pool's cache of DNS answers, shared by every
 * thread, in front of the resolver (libunbound in the server).
 *
 * Why: asking libunbound costs a pipe round trip through its own thread
 * (fcntl, write, read, futex) per lookup, even for answers it has cached;
 * with sender domains that repeat, that round trip was most of the DNS
 * thread's work. Here a verify worker reads a cached answer under a short
 * per-shard lock, in its own thread, and only misses go to the resolver.
 *
 * What is kept (by name, compared case-insensitively and without a final
 * dot, and query type):
 *   - answers with records, for their TTL (capped at DNS_CACHE_TTL_MAX);
 *   - NXDOMAIN and NODATA for the negative TTL the resolver reports (RFC
 *     2308 §5: the SOA minimum), capped at DNS_CACHE_NEG_TTL_MAX; a TTL of 0
 *     is not cached (RFC 2308 §5: no SOA, no negative caching);
 *   - SERVFAIL and timeouts for DNS_CACHE_FAIL_TTL seconds only, so a
 *     broken name is not asked once per message, yet recovers quickly;
 *   - DNS_ERROR (a local failure) never.
 * Memory is bounded: entries are evicted least recently used first, per
 * shard, once the bytes they take pass the budget (dns_cache_opts.max_bytes).
 *
 * Concurrent misses share one lookup: the first getter of a missing name
 * gets DNS_CACHE_MISS and must fetch it and call dns_cache_put exactly once;
 * later getters get DNS_CACHE_JOINED; every waiter is answered by that put.
 *
 * Answers are immutable and refcounted (struct dns_cache_ans), so a reader
 * keeps its answer after the entry is replaced, expires or is evicted.
 *
 * Thread safety: every function may be called from any thread, except that
 * one front resolver (dns_cache_resolver_new) is used by one thread at a
 * time, like any struct dns_resolver.
 */
#ifndef OMX_DNS_CACHE_H
#define OMX_DNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"

#define DNS_CACHE_BYTES_DEFAULT ((size_t)16 << 20) /* 16 MiB: ~60,000 typical answers */
#define DNS_CACHE_BYTES_MIN     ((size_t)64 << 10)
#define DNS_CACHE_TTL_MAX       86400u /* seconds; bounds a hostile TTL (unbound's cache-max-ttl) */
#define DNS_CACHE_NEG_TTL_MAX   900u   /* seconds; RFC 2308 §5 suggests at most 1-3 hours */
#define DNS_CACHE_FAIL_TTL      5u     /* seconds for SERVFAIL and timeouts */

/* dns_cache_clock_fn returns the time in milliseconds (tests inject one). */
typedef uint64_t dns_cache_clock_fn(void *arg);

struct dns_cache_opts {
	size_t max_bytes;            /* 0: DNS_CACHE_BYTES_DEFAULT; less than the minimum is raised to it */
	dns_cache_clock_fn *now_ms;  /* NULL: dns_now_ms */
	void *clock_arg;
};

struct dns_cache_stats {
	uint64_t hits;      /* answered from the cache */
	uint64_t misses;    /* sent to the resolver */
	uint64_t shared;    /* misses that joined a lookup already in flight */
	uint64_t evictions; /* live entries dropped to stay within the budget */
	uint64_t entries;   /* entries now (answers and lookups in flight) */
	uint64_t bytes;     /* bytes they take now */
};

struct dns_cache;
struct dns_cache_ans; /* one immutable answer */

/* dns_cache_new makes an empty cache; NULL on ENOMEM. */
struct dns_cache *dns_cache_new(const struct dns_cache_opts *o);

/*
 * dns_cache_free frees the cache and its answers (readers' references stay
 * valid). Waiters of lookups still in flight are dropped without a call:
 * free it only once no lookup is outstanding. NULL does nothing.
 */
void dns_cache_free(struct dns_cache *c);

/* dns_cache_wait_fn gets the answer of a shared lookup; it takes the reference `a`. */
typedef void dns_cache_wait_fn(void *arg, struct dns_cache_ans *a);

/* A waiter for a lookup in flight: caller storage, borrowed until fn ran. */
struct dns_cache_waiter {
	struct dns_cache_waiter *next; /* the cache's */
	dns_cache_wait_fn *fn;
	void *arg;
};

enum dns_cache_rc {
	DNS_CACHE_HIT = 0, /* *out_ans is a new reference */
	DNS_CACHE_MISS,    /* the caller fetches, then calls dns_cache_put; w (if any) waits */
	DNS_CACHE_JOINED,  /* a lookup is in flight: w waits for its put */
	DNS_CACHE_ERROR,   /* the name is too long, or memory is short: nothing registered; answer DNS_ERROR */
	DNS_CACHE_RC_COUNT /* number of values */
};

/*
 * dns_cache_get looks up (name, qtype). With w == NULL it only reads: a miss
 * registers nothing and asks nothing of the caller (DNS_CACHE_MISS).
 */
enum dns_cache_rc dns_cache_get(struct dns_cache *c, struct dns_cache_ans **out_ans, const char *name,
				uint16_t qtype, struct dns_cache_waiter *w);

/*
 * dns_cache_put stores answer `a` (borrowed) of (name, qtype) as the policy
 * above says, and calls every waiter of the lookup in flight, in the calling
 * thread, outside the cache's locks. Waiters always get an answer: when
 * memory for a copy is short, a static DNS_ERROR one (nothing is stored).
 */
void dns_cache_put(struct dns_cache *c, const char *name, uint16_t qtype, const struct dns_answer *a);

/* dns_cache_now_ms: the cache's clock (dns_cache_opts.now_ms). */
uint64_t dns_cache_now_ms(const struct dns_cache *c);

/* dns_cache_stats sums the counters of every shard into *out. */
void dns_cache_stats(struct dns_cache *c, struct dns_cache_stats *out);

/* dns_cache_ans_ref / _unref count references to an answer; _unref(NULL) does nothing. */
struct dns_cache_ans *dns_cache_ans_ref(struct dns_cache_ans *a);
void dns_cache_ans_unref(struct dns_cache_ans *a);

/* dns_cache_ans_status: the answer's status. */
enum dns_status dns_cache_ans_status(const struct dns_cache_ans *a);

/*
 * dns_cache_ans_answer fills *out from `a` (borrowed); out->ttl is the TTL
 * left at `now_ms` (the clock of the cache that made it).
 */
void dns_cache_ans_answer(struct dns_answer *out, const struct dns_cache_ans *a, uint64_t now_ms);

/*
 * dns_cache_ans_txt fills *out, a TXT answer for the callers of dns_txt(),
 * from the generic TXT answer `a` (records beyond DNS_TXT_RECORDS_MAX are
 * counted in num_ignored).
 */
void dns_cache_ans_txt(struct dns_txt_answer *out, const struct dns_cache_ans *a, uint64_t now_ms);

/* dns_cache_fetch_fn: fetch (name, qtype), then call dns_cache_put exactly once, from any thread. */
typedef void dns_cache_fetch_fn(void *arg, const char *name, uint16_t qtype, uint64_t deadline_ms);

/* dns_cache_wake_fn: answers wait in the front; its owner should call dns_process() on it. Any thread. */
typedef void dns_cache_wake_fn(void *arg);

/*
 * dns_cache_resolver_new makes a front resolver over `c` for one thread: a
 * struct dns_resolver whose txt and query answer hits from the cache and
 * hand misses to fetch(arg, ...); the answers, hits included, are delivered
 * by dns_process() in the owner's thread (never inside txt or query). When
 * an answer of a miss arrives, wake(arg) runs in the thread that put it.
 * The front has no file descriptor and no deadlines of its own: the fetch
 * answers by the deadline it was given (shared lookups use the first
 * asker's). Free it once no lookup of its is in flight in the cache, or
 * after the cache. NULL on ENOMEM.
 */
struct dns_resolver *dns_cache_resolver_new(struct dns_cache *c, dns_cache_fetch_fn *fetch, dns_cache_wake_fn *wake,
					    void *arg);

#endif
