/*
 * dns.h - the asynchronous DNS resolver interface used by verify/ (DKIM
 * keys, SPF, DMARC and ARC records), bounded TXT answers, and bounded
 * answers of the other types SPF needs (A, AAAA, MX, PTR) through the
 * generic query op added for SPF (dns_query; a backend without it makes
 * dns_query fail with -ENOSYS, so older backends keep working).
 *
 * A resolver is a vtable (struct dns_resolver_ops) so that the tests and a
 * fake can plug in; dns_unbound_new() is the real one (libunbound). The
 * owner polls dns_fd() for readability and calls dns_process(), which runs
 * the callbacks of finished lookups in the calling thread; it also calls
 * dns_process() at dns_next_deadline() so lookups past their deadline
 * complete as DNS_TIMEOUT. One resolver is used by one thread at a time.
 *
 * Caching: libunbound keeps its own message and RRset caches per context,
 * honouring each record's TTL, and a negative cache for NXDOMAIN/NODATA
 * answers (RFC 2308, TTL from the SOA minimum). One context should
 * therefore live as long as the process and be shared rather than made per
 * message. Asking it still costs a round trip through its thread per
 * lookup, so the server's verify pool puts dns_cache.h in front of it: a
 * cache read in the asking thread, with a resolver of this interface per
 * thread; the offline tools use libunbound alone.
 */
#ifndef OMX_DNS_H
#define OMX_DNS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"

#define DNS_TXT_BYTES_MAX 8192   /* all TXT strings of one answer, concatenated per record */
#define DNS_TXT_RECORDS_MAX 16   /* records of one answer that we look at */
#define DNS_TIMEOUT_MS_DEFAULT 5000

enum dns_status {
	DNS_OK = 0,     /* num_records >= 1 */
	DNS_NXDOMAIN,   /* the name does not exist */
	DNS_NODATA,     /* the name exists, without TXT records */
	DNS_SERVFAIL,   /* upstream failure (SERVFAIL, REFUSED, a broken answer) */
	DNS_TIMEOUT,    /* no answer before the deadline */
	DNS_TOO_BIG,    /* more than DNS_TXT_BYTES_MAX bytes of TXT */
	DNS_MALFORMED,  /* TXT rdata that does not parse */
	DNS_ERROR,      /* local failure: out of memory, resolver not usable */
	DNS_STATUS_COUNT /* number of values */
};

/* dns_status_name returns a short static name ("ok", "nxdomain", ...). */
const char *dns_status_name(enum dns_status s);

/* dns_status_transient: a later retry may succeed (SERVFAIL, timeout, local error). */
bool dns_status_transient(enum dns_status s);

struct dns_txt_answer {
	enum dns_status status;
	uint32_t ttl;
	unsigned num_records;
	unsigned num_ignored;                 /* records beyond DNS_TXT_RECORDS_MAX */
	struct span rec[DNS_TXT_RECORDS_MAX]; /* each record's strings concatenated, into buf */
	size_t buf_len;
	uint8_t buf[DNS_TXT_BYTES_MAX];
};

/*
 * dns_txt_from_rdata fills *out from the TXT rdatas of one answer (wire
 * format: length-prefixed character-strings, RFC 1035 §3.3.14), joining
 * each record's strings (RFC 6376 §3.6.2.2). Returns out->status:
 * DNS_OK, DNS_NODATA (no records), DNS_MALFORMED or DNS_TOO_BIG.
 */
enum dns_status dns_txt_from_rdata(struct dns_txt_answer *out, const uint8_t *const *rdata, const size_t *rdata_len,
				   size_t num);

/* dns_txt_fn gets the answer; `a` is borrowed for the duration of the call. */
typedef void dns_txt_fn(void *arg, const struct dns_txt_answer *a);

/* Record types of the generic query (RFC 1035 §3.2.2, RFC 3596). */
enum dns_qtype {
	DNS_T_A = 1,
	DNS_T_PTR = 12,
	DNS_T_MX = 15,
	DNS_T_TXT = 16,
	DNS_T_AAAA = 28,
};

#define DNS_RR_MAX 32        /* records of one generic answer that we look at */
#define DNS_NAME_TEXT_MAX 255 /* a domain name as text, without the final dot */

/*
 * One record of a generic answer: A -> 4 octets, AAAA -> 16 octets, MX ->
 * the exchange as text (lower case, no final dot) with its preference in
 * `pref`, PTR -> the name as text, TXT -> its strings concatenated (an
 * rdata without strings is an empty record here, not an error).
 */
struct dns_rr {
	struct span data; /* into the answer's buf */
	uint16_t pref;    /* MX only */
};

struct dns_answer {
	enum dns_status status; /* DNS_OK means num_records >= 1 */
	uint16_t qtype;
	uint32_t ttl;
	unsigned num_records;
	unsigned num_ignored;   /* records beyond DNS_RR_MAX, or of another type */
	struct dns_rr rr[DNS_RR_MAX];
	size_t buf_len;
	uint8_t buf[DNS_TXT_BYTES_MAX];
};

/*
 * dns_answer_from_rdata fills *out from the rdatas (wire format) of one
 * answer of type `qtype`; names inside MX and PTR rdata must be
 * uncompressed (libunbound hands them out so). Returns out->status:
 * DNS_OK, DNS_NODATA, DNS_MALFORMED or DNS_TOO_BIG.
 */
enum dns_status dns_answer_from_rdata(struct dns_answer *out, uint16_t qtype, const uint8_t *const *rdata,
				      const size_t *rdata_len, size_t num);

/* dns_answer_set_status empties *out and sets its status (for failures). */
void dns_answer_set_status(struct dns_answer *out, uint16_t qtype, enum dns_status s);

/* dns_answer_fn gets the answer; `a` is borrowed for the duration of the call. */
typedef void dns_answer_fn(void *arg, const struct dns_answer *a);

struct dns_resolver;

struct dns_resolver_ops {
	const char *name;
	/* txt starts a TXT lookup of `name` (a C string); cb runs exactly once
	 * from dns_process(), unless cancelled. 0 and *out_id, or -errno. */
	int (*txt)(struct dns_resolver *r, const char *name, uint64_t deadline_ms, dns_txt_fn *cb, void *arg,
		   uint64_t *out_id);
	/* cancel: cb of `id` will not run. Unknown or finished ids are ignored. */
	void (*cancel)(struct dns_resolver *r, uint64_t id);
	/* fd: readable when dns_process has work; -1 if there is none to poll. */
	int (*fd)(struct dns_resolver *r);
	/* process runs finished callbacks and expires lookups past their deadline. */
	int (*process)(struct dns_resolver *r, uint64_t now_ms);
	/* pending: lookups started and not yet completed or cancelled. */
	unsigned (*pending)(struct dns_resolver *r);
	/* next_deadline: earliest deadline among pending lookups, UINT64_MAX if none. */
	uint64_t (*next_deadline)(struct dns_resolver *r);
	void (*free)(struct dns_resolver *r);
	/* query starts a lookup of `name` for type `qtype` (enum dns_qtype);
	 * like txt, cb runs exactly once from dns_process() unless cancelled,
	 * and ids share txt's space. NULL in backends that predate it. */
	int (*query)(struct dns_resolver *r, const char *name, uint16_t qtype, uint64_t deadline_ms,
		     dns_answer_fn *cb, void *arg, uint64_t *out_id);
};

struct dns_resolver {
	const struct dns_resolver_ops *ops;
};

struct dns_opts {
	const char *upstream;   /* "ADDR[:PORT]" or "[V6]:PORT"; NULL: /etc/resolv.conf */
	uint32_t timeout_ms;    /* per lookup; 0: DNS_TIMEOUT_MS_DEFAULT */
};

/*
 * dns_unbound_new makes a libunbound resolver (threaded async mode, so no
 * fork). With o->upstream it forwards everything there (loopback allowed),
 * else it uses the servers in /etc/resolv.conf. NULL on failure with a
 * malloc'd message in *out_err (caller frees).
 */
struct dns_resolver *dns_unbound_new(const struct dns_opts *o, char **out_err);

/* dns_now_ms: CLOCK_MONOTONIC in milliseconds, the clock of all deadlines. */
uint64_t dns_now_ms(void);

static inline int dns_txt(struct dns_resolver *r, const char *name, uint64_t deadline_ms, dns_txt_fn *cb, void *arg,
			  uint64_t *out_id)
{
	return r->ops->txt(r, name, deadline_ms, cb, arg, out_id);
}

/* dns_query: see dns_resolver_ops.query; -ENOSYS when the backend lacks it. */
static inline int dns_query(struct dns_resolver *r, const char *name, uint16_t qtype, uint64_t deadline_ms,
			    dns_answer_fn *cb, void *arg, uint64_t *out_id)
{
	if (r->ops->query == NULL) {
		return -ENOSYS;
	}
	return r->ops->query(r, name, qtype, deadline_ms, cb, arg, out_id);
}

static inline void dns_cancel(struct dns_resolver *r, uint64_t id)
{
	r->ops->cancel(r, id);
}

static inline int dns_fd(struct dns_resolver *r)
{
	return r->ops->fd(r);
}

static inline int dns_process(struct dns_resolver *r, uint64_t now_ms)
{
	return r->ops->process(r, now_ms);
}

static inline uint64_t dns_next_deadline(struct dns_resolver *r)
{
	return r->ops->next_deadline(r);
}

static inline void dns_free(struct dns_resolver *r)
{
	if (r != NULL) {
		r->ops->free(r);
	}
}

/*
 * dns_wait blocks (poll on dns_fd) running dns_process until no lookup is
 * pending; deadlines bound it. For the offline tools only, never a shard.
 * 0 or -errno.
 */
int dns_wait(struct dns_resolver *r);

#endif
