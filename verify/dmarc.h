/*
 * dmarc.h - DMARC (RFC 7489): the record parser and the From-domain
 * extraction (pure, fuzzed), identifier alignment over the Public Suffix
 * List, policy evaluation, and record discovery over the resolver
 * (asynchronous, like spf.h).
 *
 * Sequence (one thread at a time per struct dmarc_check):
 *   at the From: field:  dmarc_from_domain(...), then
 *                        c = dmarc_check_new(psl, domain, &opts);
 *                        dmarc_check_start(c, resolver, done, arg);
 *                        (_dmarc.<from>, then _dmarc.<org domain>, §6.6.3)
 *   at the end of data, once DKIM and SPF results are known and `done`
 *   has run:             dmarc_check_eval(c, &out, dkim, n, spf);
 *                        dmarc_check_free(c);
 */
#ifndef OMX_DMARC_H
#define OMX_DMARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "auth.h"
#include "dkim.h"
#include "dns.h"
#include "psl.h"
#include "spf.h"

#define DMARC_URIS_MAX 8 /* rua/ruf URIs kept per tag */

enum dmarc_policy {
	DMARC_P_UNSET = 0,   /* tag absent */
	DMARC_P_NONE,        /* monitor only */
	DMARC_P_QUARANTINE,  /* treat as suspicious */
	DMARC_P_REJECT,      /* refuse at SMTP */
	DMARC_P_COUNT        /* number of values */
};

enum dmarc_parse_rc {
	DMARC_PARSE_OK = 0,      /* a usable record */
	DMARC_PARSE_EMPTY,       /* nothing there */
	DMARC_PARSE_BAD_VERSION, /* not "v=DMARC1" first (§6.3): not a DMARC record */
	DMARC_PARSE_BAD_VALUE,   /* a known tag with an invalid value (*out_err_pos) */
	DMARC_PARSE_NO_P,        /* no valid p= (§6.6.3 step 6 decides) */
	DMARC_PARSE_SYNTAX,      /* not a tag list */
};

/* Failure reporting options (fo=, §6.3), a bit each. */
#define DMARC_FO_0 1u
#define DMARC_FO_1 2u
#define DMARC_FO_D 4u
#define DMARC_FO_S 8u
/* Report formats (rf=). */
#define DMARC_RF_AFRF 1u
#define DMARC_RF_IODEF 2u

struct dmarc_record {
	enum dmarc_policy p, sp;  /* sp UNSET: p applies to subdomains too */
	bool strict_dkim, strict_spf; /* adkim=s, aspf=s (default relaxed) */
	unsigned pct;             /* 0..100, default 100 */
	unsigned fo;              /* DMARC_FO_*, default 0 */
	unsigned rf;              /* DMARC_RF_*, default afrf */
	uint32_t ri;              /* seconds, default 86400 */
	unsigned num_rua, num_ruf; /* usable URIs (mailto:, http:, https:) */
	struct span rua[DMARC_URIS_MAX], ruf[DMARC_URIS_MAX]; /* borrowed, without !size */
	bool bad_p, bad_sp;       /* p= / sp= present with an invalid value */
};

/*
 * dmarc_record_parse parses one TXT record (§6.3, §6.4): tag names are
 * matched exactly, values ASCII case-insensitively (ABNF literals);
 * unknown tags are ignored. *out borrows txt, is always
 * filled (defaults for tags that are absent or bad), and is usable when the
 * result is DMARC_PARSE_OK, or DMARC_PARSE_BAD_VALUE with !bad_p && !bad_sp.
 * Pure.
 */
__attribute__((warn_unused_result)) enum dmarc_parse_rc dmarc_record_parse(struct dmarc_record *out,
									     size_t *out_err_pos, struct span txt);

const char *dmarc_parse_rc_name(enum dmarc_parse_rc rc);
const char *dmarc_policy_name(enum dmarc_policy p);

enum dmarc_from_rc {
	DMARC_FROM_OK = 0,   /* exactly one address with a domain */
	DMARC_FROM_NONE,     /* no address */
	DMARC_FROM_MULTIPLE, /* several addresses (§6.6.1: not evaluated) */
	DMARC_FROM_INVALID,  /* an address without a usable domain */
	DMARC_FROM_NOMEM,
	DMARC_FROM_UNREADABLE, /* a From field too large to read whole (dmarc_from_seen) */
};

/*
 * dmarc_from_domain finds the author domain in the value of the (one)
 * From field, with proto/addr's parser (RFC 5322 §3.6.2), lower case into
 * out. Pure apart from the parser's heap use.
 */
enum dmarc_from_rc dmarc_from_domain(char *out, size_t out_len, struct span from_value);

/*
 * dmarc_aligned: `a` and `b` are aligned (§3.1): strict: equal; relaxed:
 * the same organizational domain. ASCII case-insensitive; leading and
 * trailing dots ignored.
 */
bool dmarc_aligned(const struct psl *psl, const char *a, const char *b, bool strict);

/*
 * A From field is read only when the message parser (proto/mime, whose
 * From the JSON document shows) reads it whole too, so both see the same
 * From: at most DMARC_FROM_FIELD_MAX bytes, no line longer than
 * DMARC_FROM_LINE_MAX, ending within DMARC_FROM_HEADER_MAX header bytes
 * (MIME_FIELD_MAX, MIME_LINE_MAX, MIME_HEADER_MAX; checked in dmarc.c).
 * Counted on the raw field, line ends included, which is never less than
 * the parser counts, so a From the parser cuts or drops is never read.
 */
#define DMARC_FROM_FIELD_MAX 32768
#define DMARC_FROM_LINE_MAX 16384
#define DMARC_FROM_HEADER_MAX 262144

/*
 * The From fields of a message, as the header is read: how many, the
 * first one's value, and whether one could not be read whole. Caller
 * storage; zero it, then dmarc_from_seen_field for each header field,
 * dmarc_from_seen_domain at the end of the header, dmarc_from_seen_fini.
 */
struct dmarc_from_seen {
	unsigned num;     /* From fields seen, unreadable ones included */
	bool unreadable;  /* a From field past the bounds above, or not whole */
	char *value;      /* the first From field's value, NUL-terminated; owned */
	size_t value_len;
};

/* dmarc_from_seen_fini frees what f owns. */
void dmarc_from_seen_fini(struct dmarc_from_seen *f);

/*
 * dmarc_from_seen_field looks at one header field: `field` is the field
 * (name, colon, value; borrowed) when `whole`, else only its start;
 * `len` its length in the message, `max_line` its longest line, `offset`
 * the header bytes before it (struct hdrsplit_field). Other fields are
 * ignored. 0 or -ENOMEM (then the From counts as unreadable).
 */
__attribute__((warn_unused_result)) int dmarc_from_seen_field(struct dmarc_from_seen *f, struct span field, bool whole,
								uint64_t len, uint64_t max_line, uint64_t offset);

/*
 * dmarc_from_seen_domain: DMARC_FROM_OK with the author domain in out
 * (dmarc_from_domain), or why not: DMARC_FROM_UNREADABLE first (whatever
 * else was seen), DMARC_FROM_NONE without From, DMARC_FROM_MULTIPLE with
 * several From fields or addresses.
 */
enum dmarc_from_rc dmarc_from_seen_domain(const struct dmarc_from_seen *f, char *out, size_t out_len);

struct dmarc_opts {
	uint32_t timeout_ms;  /* per lookup; 0: the resolver's default */
	/* sample returns 0..99 for pct= (§6.6.4); NULL: random. Injectable for tests. */
	unsigned (*sample)(void *arg);
	void *sample_arg;
};

struct dmarc_result {
	enum auth_res res;               /* pass, fail, none, temperror, permerror */
	const char *reason;              /* static */
	char from_domain[PSL_NAME_MAX + 1];
	char org_domain[PSL_NAME_MAX + 1];
	char record_domain[PSL_NAME_MAX + 1]; /* where the record was found, "" if none */
	enum dmarc_policy policy;        /* the published policy that applies (p or sp) */
	enum dmarc_policy disposition;   /* what to do after pct (§6.6.4) */
	bool sampled_out;                /* pct excluded the message: disposition was lowered */
	unsigned pct;
	bool strict_dkim, strict_spf;
	bool dkim_aligned, spf_aligned;
	char dkim_domain[PSL_NAME_MAX + 1]; /* d= of the aligned passing signature, "" if none */
	char spf_domain[PSL_NAME_MAX + 1];  /* the SPF MAIL FROM domain */
	bool from_unreadable;            /* permerror: a From field too large to read (dmarc_from_result) */
	bool from_ambiguous;             /* permerror: several From fields or addresses (dmarc_from_result) */
};

/*
 * dmarc_from_result fills *out for a From that gives no author domain (rc
 * not DMARC_FROM_OK): none without From; permerror otherwise (RFC 7489
 * §6.6.1: exactly one author domain is needed, and what to do with other
 * messages is local policy, §6.7). DMARC_FROM_UNREADABLE also sets
 * out->from_unreadable: the From could be any domain, a p=reject one
 * included, so an enforcing receiver rejects it (vjob_dmarc_reject).
 */
void dmarc_from_result(struct dmarc_result *out, enum dmarc_from_rc rc);

/*
 * dmarc_evaluate computes the result from a parsed record (NULL: none was
 * found) and the authentication results: DKIM pass with an aligned d=, or
 * SPF pass (MAIL FROM identity) with an aligned domain, gives pass (§4.2).
 * Fills everything except from/org/record domains, which the caller sets.
 */
void dmarc_evaluate(struct dmarc_result *out, const struct psl *psl, const struct dmarc_record *rec, bool subdomain,
		    const struct dkim_result *dkim, size_t num_dkim, const struct spf_result *spf,
		    const struct dmarc_opts *o);

struct dmarc_check;
typedef void dmarc_done_fn(void *arg, struct dmarc_check *c);

/* dmarc_check_new: record discovery for `from_domain` (copied); psl borrowed for its lifetime. */
struct dmarc_check *dmarc_check_new(const struct psl *psl, const char *from_domain, const struct dmarc_opts *o);

/* dmarc_check_start: as spf_check_start (done runs once, maybe before it returns). */
void dmarc_check_start(struct dmarc_check *c, struct dns_resolver *r, dmarc_done_fn *done, void *arg);

bool dmarc_check_done(const struct dmarc_check *c);

/* dmarc_check_eval writes the result (after done) given the DKIM and SPF results (borrowed). */
void dmarc_check_eval(struct dmarc_check *c, struct dmarc_result *out, const struct dkim_result *dkim,
		      size_t num_dkim, const struct spf_result *spf);

void dmarc_check_free(struct dmarc_check *c);

#endif
