/*
 * arc.h - ARC (RFC 8617) chain validation of one message, fed
 * incrementally like dkim.h: header fields as they are parsed, key
 * answers as they arrive, body chunks as they are received.
 *
 * Sequence and threading (the dkim_msg contract): any thread, but one
 * thread at a time per struct arc_msg; the caller serialises key answers
 * with the other calls. In the verify pool that means: the job's worker
 * makes every call; a key index from arc_msg_header goes to the DNS
 * thread as the name (copy arc_msg_key_name into the request), and the
 * answer comes back to the worker as an operation that calls
 * arc_msg_key_answer. ARC key indexes are their own number space, apart
 * from dkim_msg's signature indexes, so the operation must say which
 * validator it is for. Headers go to both validators (they keep their own
 * copies); arc_msg_body_wanted joins dkim_msg_num_sigs in deciding
 * whether the body is still needed.
 *
 *   m = arc_msg_new(&opts);
 *   for each header field:  arc_msg_header(m, field, &key);
 *       key >= 0: start the TXT lookup of arc_msg_key_name(m, key) now,
 *                 so DNS overlaps the rest of the transfer;
 *   arc_msg_headers_end(m);           (structure checked here)
 *   arc_msg_body_wanted(m)?           false: the body may be skipped
 *   for each body chunk:    arc_msg_body(m, p, len);     (hashes as it goes)
 *   arc_msg_body_end(m);
 *   for each answer (any time after its arc_msg_header):
 *                           arc_msg_key_answer(m, key, answer);
 *   arc_msg_result(m, &res);          signature checks happen here
 *   arc_msg_free(m);
 *
 * Bounds: at most ARC_INSTANCES_MAX sets (more, or an instance outside
 * 1..50, is a fail, §4.2.1); key names are looked up once each, at most
 * opts.max_keys distinct names per message (one chain needing more fails),
 * so one message causes at most ARC_KEYS_HARD_MAX lookups; at most
 * ARC_BODYHASH_MAX body hashes run over the body (the newest AMS always
 * has one). Header bytes are kept (bounded by DKIM_HDR_BYTES_MAX) because
 * AMS h= selects fields from the bottom of the header, known at its end.
 *
 * Ownership: struct arc_msg copies every field it keeps and parses the
 * keys out of the answers during arc_msg_key_answer; the result is a value
 * whose strings are static. The result never depends on DKIM-Signature
 * fields: only the ARC fields and the fields their h= names count.
 *
 * Pure apart from the crypto seam in dkim_crypto.h: no I/O, no globals.
 */
#ifndef OMX_ARC_H
#define OMX_ARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "auth.h"
#include "dkim_sig.h"
#include "dns.h"

#define ARC_INSTANCES_MAX 50   /* RFC 8617 §4.2.1: i= is 1..50 */
#define ARC_KEYS_DEFAULT 16    /* distinct key names looked up per message */
#define ARC_KEYS_HARD_MAX 100  /* upper bound for opts.max_keys: an AS and an AMS per instance */
#define ARC_BODYHASH_MAX 4     /* distinct AMS body canonicalisations hashed per message */
#define ARC_FIELD_MAX 16384    /* one ARC header field (as DKIM_SIG_FIELD_MAX) */
#define ARC_REASON_MAX 160     /* arc_result_describe's longest text, NUL included */

struct arc_opts {
	unsigned max_keys; /* 0: ARC_KEYS_DEFAULT; at most ARC_KEYS_HARD_MAX */
};

struct arc_result {
	enum auth_res res;      /* cv: AUTH_NONE, AUTH_PASS or AUTH_FAIL (RFC 8617 §4.4) */
	const char *reason;     /* static, NULL on pass and none */
	const char *fail_field; /* static: "ARC-Seal", "ARC-Message-Signature",
				 * "ARC-Authentication-Results", or NULL (not one field's fault) */
	unsigned fail_instance; /* the set the failure is in, 0 if none */
	unsigned num_sets;      /* ARC sets seen (highest instance; 0 for none) */
	unsigned oldest_pass;   /* pass only: lowest instance from which every AMS up to the
				 * newest verifies; 0 when all of them do (RFC 8617 §5.2 step 5) */
};

/*
 * arc_result_describe writes a one-line text for r's failure into buf
 * ("ARC-Seal i=2: signature did not verify"); "" for pass and none.
 * Returns buf. len of ARC_REASON_MAX never truncates.
 */
const char *arc_result_describe(char *buf, size_t len, const struct arc_result *r);

struct arc_msg;

/* arc_msg_new returns a validator for one message, or NULL (out of memory). */
struct arc_msg *arc_msg_new(const struct arc_opts *o);

/* arc_msg_free releases m; NULL does nothing. */
void arc_msg_free(struct arc_msg *m);

/*
 * arc_msg_header takes one header field exactly as received: name, colon,
 * value with its folding CRLFs, without the CRLF that ends it. Copies
 * what it keeps. *out_key is the index of a key whose lookup must start
 * now, or -1 (not an ARC field, a key already asked for, or a chain that
 * has already failed). Returns 0, or -ENOMEM; malformed ARC fields and a
 * header section past the bounds are not errors: they make the result fail.
 */
__attribute__((warn_unused_result)) int arc_msg_header(struct arc_msg *m, struct span field, int *out_key);

/*
 * arc_msg_header_big takes a header field too large to keep, given by
 * `head`, its first bytes (as dkim_msg_header_big): the name is copied so
 * the field keeps its place for h= selection; an AMS that selects it
 * fails, and an ARC field this large fails the chain. 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int arc_msg_header_big(struct arc_msg *m, struct span head);

/* arc_msg_key_name: "selector._domainkey.domain" of key `key`, valid while m lives. */
const char *arc_msg_key_name(const struct arc_msg *m, unsigned key);

/*
 * arc_msg_key_answer gives key `key` its lookup result; borrows `a` during
 * the call only (the key is parsed here). A second answer for
 * the same key is ignored.
 */
void arc_msg_key_answer(struct arc_msg *m, unsigned key, const struct dns_txt_answer *a);

struct dkim_keyrec;

/*
 * arc_msg_key_set gives key `key` its parsed lookup outcome (dkim_keyrec.h),
 * e.g. from a cache: takes a reference of its own when the key is usable.
 * NULL (the outcome could not be made: out of memory) is a temperror key.
 * arc_msg_key_answer is dkim_keyrec_new + arc_msg_key_set.
 */
void arc_msg_key_set(struct arc_msg *m, unsigned key, struct dkim_keyrec *kr);

/* arc_msg_headers_end: the header section is complete; the chain's structure is checked, body hashing starts. */
void arc_msg_headers_end(struct arc_msg *m);

/* arc_msg_body_wanted: after arc_msg_headers_end, whether the body matters (an AMS is to be verified). */
bool arc_msg_body_wanted(const struct arc_msg *m);

/* arc_msg_body hashes body bytes (after the empty line, CRLF, dot-unstuffed). Borrows p. */
void arc_msg_body(struct arc_msg *m, const uint8_t *p, size_t len);

/* arc_msg_body_end: the body is complete. */
void arc_msg_body_end(struct arc_msg *m);

/* arc_msg_num_keys: key lookups asked for so far. */
unsigned arc_msg_num_keys(const struct arc_msg *m);

/* arc_msg_keys_pending: keys asked for and not yet answered. */
unsigned arc_msg_keys_pending(const struct arc_msg *m);

/*
 * arc_msg_result validates the chain (after arc_msg_body_end; earlier, an
 * AMS fails as "message body incomplete") and writes the result to *out.
 * A key never answered fails its signature. The work is done once; later
 * calls copy the same result.
 */
void arc_msg_result(struct arc_msg *m, struct arc_result *out);

/* ---- the parsers, pure (exposed for the unit tests and fuzz targets) ---- */

enum arc_cv {
	ARC_CV_NONE = 0, /* first set: no chain before it */
	ARC_CV_PASS,     /* the chain before this set validated */
	ARC_CV_FAIL,     /* the chain before this set failed: the chain ends (§5.1.2) */
	ARC_CV_COUNT     /* number of values */
};

/* The ARC-Seal field (RFC 8617 §4.1.3). */
struct arc_seal {
	unsigned instance;          /* i= */
	enum dkim_alg alg;          /* a= */
	enum arc_cv cv;             /* cv= */
	struct span d, s;           /* borrowed */
	struct span b_raw;          /* b='s value, FWS included (borrowed), deleted for hashing */
	uint8_t b[DKIM_SIG_B_MAX];
	size_t b_len;
	bool has_t;
	uint64_t t;
};

/*
 * arc_instance_parse reads an instance value (1*2DIGIT, 1..ARC_INSTANCES_MAX,
 * §4.2.1); 0 when it is not one.
 */
unsigned arc_instance_parse(struct span v);

/*
 * arc_seal_parse parses the value of an ARC-Seal field (after the colon)
 * into *out, which borrows `value`. AUTH_NONE when well formed, else
 * AUTH_PERMERROR with a static *out_reason: tag-list syntax or duplicate,
 * a missing a=, b=, cv=, d=, i= or s=, an h= (not allowed, §4.1.3), an
 * unsupported or rsa-sha1 algorithm, a bad cv=, i=, d=, s=, b= or t=.
 */
__attribute__((warn_unused_result)) enum auth_res arc_seal_parse(struct arc_seal *out, const char **out_reason,
								   struct span value);

/*
 * arc_aar_instance reads the instance that starts an
 * ARC-Authentication-Results value: [CFWS] "i" [CFWS] "=" [CFWS] 1*2DIGIT
 * [CFWS] ";" (§4.1.1). 0 when the value does not start that way.
 */
unsigned arc_aar_instance(struct span value);

#endif
