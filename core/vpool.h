/*
 * vpool.h - the verify pool: M worker threads that run DKIM verification
 * (header parsing, body hashing, signature checks) for messages the shards
 * are receiving, plus one DNS thread that owns the resolver (one resolver
 * for the whole process), and a cache of DNS answers the workers read
 * without it (verify/dns_cache.h). Shards never wait: they post message bytes and get
 * the finished job back through their inbox (an eventfd their ring reads).
 *
 * Life of a job (all calls on the owning shard's thread unless noted):
 *   j = vjob_new(pool, inbox)        at MAIL FROM (SMTP_EV_MAIL)
 *   vjob_spf(j, ...)                 at once, so SPF's DNS overlaps RCPT and DATA
 *   vjob_feed(j, bytes)              from TX_BEGIN: the client's message bytes, in order
 *   vjob_context(j, env, hostname)   at TX_BEGIN, for rspamd (--rspamd) and milters (--milter):
 *                                    the milter conversations start here, and
 *                                    the worker streams them the message's bytes
 *   vjob_end(j)                      at TX_END; or vjob_abandon(j) when the
 *                                    transaction or session goes away (the
 *                                    milters then get SMFIC_ABORT)
 *   ... the job shows up in vpool_inbox_take() once every key lookup has
 *   answered (the DNS deadline bounds that), with --rspamd once rspamd
 *   answered (--rspamd-timeout bounds that; DKIM, SPF, DMARC and ARC
 *   finish first, then the worker hands the message with our
 *   Authentication-Results on top to the rspamd client thread), and with
 *   --milter once every milter answered the end of message (--milter-timeout
 *   per reply bounds that), whichever of these comes last ...
 *   vjob_authres(j, out, hostname)   the Authentication-Results field
 *   vjob_free(j)
 * An abandoned job still comes back through the inbox (the pool never frees
 * a job the shard may still name); the shard frees it there.
 */
#ifndef OMX_VPOOL_H
#define OMX_VPOOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../verify/auth.h"
#include "../verify/dns_cache.h"
#include "../proto/msg.h"
#include "../verify/rspamd.h"
#include "bb.h"
#include "milter_client.h"

struct vpool_cfg {
	unsigned workers;        /* worker threads; 0: one per online CPU */
	const char *dns;         /* "ADDR[:PORT]" upstream; NULL: /etc/resolv.conf */
	uint32_t dns_timeout_ms; /* per lookup; 0: the resolver's default */
	size_t dns_cache_bytes;  /* the DNS answer cache's budget; 0: DNS_CACHE_BYTES_DEFAULT */
	unsigned max_sigs;       /* DKIM signatures verified per message; 0: default */
	bool dmarc;              /* evaluate DMARC (RFC 7489) */
	const char *psl_path;    /* Public Suffix List; NULL: Debian's publicsuffix file */
	const char *rspamd_url;  /* --rspamd base URL; NULL: no spam check */
	uint32_t rspamd_timeout_ms; /* whole request, then the check counts as failed */
	const struct milter_conf *milters; /* --milter, in order; borrowed during vpool_start */
	unsigned num_milters;       /* 0: no milter */
};

struct vpool;
struct vjob;

/* A shard's completion inbox: finished jobs, and an eventfd to wake its ring. */
struct vpool_inbox {
	_Atomic(struct vjob *) head;
	int efd;
};

/* vpool_start starts the workers and the DNS thread; NULL with *out_err (malloc'd) on failure. Main thread. */
struct vpool *vpool_start(const struct vpool_cfg *c, char **out_err);

/* vpool_stop finishes queued work, then joins and frees everything. Main thread, after the shards stopped. */
void vpool_stop(struct vpool *p);

/*
 * vpool_dns_cache_stats reads the DNS cache's counters (hits, misses,
 * shared lookups, evictions, size) into *out. Any thread, while the pool runs.
 */
void vpool_dns_cache_stats(struct vpool *p, struct dns_cache_stats *out);

int vpool_inbox_init(struct vpool_inbox *in);
void vpool_inbox_fini(struct vpool_inbox *in);

/* vpool_inbox_take takes every finished job (a list linked by vjob_next). Shard thread. */
struct vjob *vpool_inbox_take(struct vpool_inbox *in);
struct vjob *vjob_next(const struct vjob *j);

/*
 * vjob_new starts a job whose result goes to `in`, verifying DKIM when
 * `dkim` and the ARC chain when `arc` (DMARC when the pool has it); NULL on
 * ENOMEM (the message is then not verified).
 */
struct vjob *vjob_new(struct vpool *p, struct vpool_inbox *in, bool dkim, bool arc);

/* vjob_set_owner / vjob_owner: the shard's own pointer for the job (its tx). */
void vjob_set_owner(struct vjob *j, void *owner);
void *vjob_owner(const struct vjob *j);

/*
 * vjob_feed copies message bytes (the client's, not our Received:) for the
 * job; once the worker saw a header without any DKIM-Signature, the body is
 * not copied any more.
 */
void vjob_feed(struct vjob *j, const uint8_t *p, size_t len);

/*
 * vjob_spf starts the SPF checks (RFC 7208) of the MAIL FROM identity
 * (postmaster@HELO for the null sender) and of the HELO identity for a
 * client at `client_ip`; the job then waits for both. Call it right after
 * vjob_new, before anything else. Strings are copied. 0 or -ENOMEM.
 */
int vjob_spf(struct vjob *j, const char *client_ip, const char *mail_from, const char *helo, const char *receiver,
	     uint32_t timeout_ms);

/* vjob_end: the message is complete. */
void vjob_end(struct vjob *j);

/* vjob_abandon: nobody wants the result; the job still returns through the inbox. */
void vjob_abandon(struct vjob *j);

/* vjob_abandoned tells whether vjob_abandon was called (shard thread). */
bool vjob_abandoned(const struct vjob *j);

/*
 * vjob_authres appends the Authentication-Results field (RFC 8601) for the
 * finished job (dkim=, spf= for both identities when vjob_spf ran, dmarc=, arc=),
 * CRLF-terminated, with authserv-id `hostname`. 0 or -ENOMEM.
 */
int vjob_authres(const struct vjob *j, struct bb *out, const char *hostname);

/*
 * vjob_dmarc_reject: DMARC failed and the sender's policy (after pct) is
 * reject, or the From field was too large to read (a permerror that could
 * hide any domain: rejected by local policy when enforcing).
 */
bool vjob_dmarc_reject(const struct vjob *j);

/*
 * vjob_context gives the job what rspamd and the milters are told besides
 * the message: the client IP, HELO, MAIL FROM, each RCPT, the queue id,
 * TLS, and our authserv-id (copied), and with --milter starts the milter
 * conversations. Call it before the first vjob_feed; it does nothing
 * without --rspamd or --milter. 0 or -ENOMEM (the check then runs with
 * less context; the milters are not asked: 451).
 */
int vjob_context(struct vjob *j, const struct msg_env *env, const char *authserv_id);

/*
 * vjob_spam: rspamd's verdict of a finished job. Returns 0 (not checked:
 * no --rspamd, or the job was abandoned), 1 (*out_r is the verdict) or -1
 * (the check failed: *out_err says why). Both borrowed from j.
 */
int vjob_spam(const struct vjob *j, const struct rspamd_reply **out_r, const char **out_err);

/*
 * vjob_milter: the milters' answer for a finished job: NULL when no milter
 * ran (no --milter, or the job was abandoned), else the request with its
 * verdict, reply text, header fields to add, quarantine reason and log
 * text (core/milter_client.h), borrowed from j.
 */
const struct milter_req *vjob_milter(const struct vjob *j);

/* vjob_worst: the most severe DKIM result (for the optional tempfail policy). */
enum auth_res vjob_worst(const struct vjob *j);

void vjob_free(struct vjob *j);

/*
 * vjob_brief: the finished job's results, one value per method, for
 * metrics and the transaction log line. `dkim` is the best signature
 * result (pass over permerror over fail ...), AUTH_NONE without one;
 * dkim_count counts every signature. A method that did not run has its
 * *_on false. Shard thread, after the job came back.
 */
struct vjob_brief {
	bool dkim_on, spf_mfrom_on, spf_helo_on, dmarc_on, arc_on;
	enum auth_res dkim, spf_mfrom, spf_helo, dmarc, arc;
	unsigned dkim_count[AUTH_RES_COUNT];
};
void vjob_brief(const struct vjob *j, struct vjob_brief *out);

/*
 * DNSBL at connect (RFC 5782): vjob_dnsbl_new starts a job of its own that
 * asks every zone (at most VPOOL_DNSBL_MAX; `zones` are borrowed and must
 * outlive the job) for client_ip through the pool's DNS cache, bounded by
 * timeout_ms, and comes back through `in` like any job (vjob_is_dnsbl tells
 * it apart). NULL on ENOMEM. Shard thread.
 */
#define VPOOL_DNSBL_MAX 8
struct vjob *vjob_dnsbl_new(struct vpool *p, struct vpool_inbox *in, const char *client_ip, char *const *zones,
			    unsigned num_zones, uint32_t timeout_ms);
bool vjob_is_dnsbl(const struct vjob *j);
/* vjob_dnsbl_listed: the first zone (in the given order) listing the client, its answer in out_addr; else NULL. */
const char *vjob_dnsbl_listed(const struct vjob *j, char out_addr[16]);
/* vjob_dnsbl_failed: zones that gave no answer (timeout, SERVFAIL), counted as not listing. */
unsigned vjob_dnsbl_failed(const struct vjob *j);

/* Pool-wide counters, read without locks (metrics thread). */
struct vpool_stats {
	unsigned workers;
	uint64_t queued;           /* operations posted to the workers and not yet run */
	uint64_t key_cache_hits;   /* DKIM/ARC key lookups answered by the key cache */
	uint64_t key_cache_misses; /* ... that went to DNS */
};
/* vpool_get_stats fills *out; all zero for a NULL pool. Any thread. */
void vpool_get_stats(struct vpool *p, struct vpool_stats *out);

#endif
