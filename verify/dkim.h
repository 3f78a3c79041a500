/*
 * dkim.h - DKIM verification of one message (RFC 6376, RFC 8301, RFC 8463),
 * fed incrementally: header fields as they are parsed, key answers as they
 * arrive, body chunks as they are received.
 *
 * Sequence (any thread, but one thread at a time per struct dkim_msg):
 *
 *   m = dkim_msg_new(&opts);
 *   for each header field:  dkim_msg_header(m, field, &sig);
 *       sig >= 0: start the TXT lookup of dkim_msg_key_name(m, sig) now,
 *                 so DNS overlaps the rest of the transfer;
 *   dkim_msg_headers_end(m);
 *   for each body chunk:    dkim_msg_body(m, p, len);     (hashes as it goes)
 *   dkim_msg_body_end(m);
 *   for each answer (any time after its dkim_msg_header):
 *                           dkim_msg_key_answer(m, sig, answer);
 *   n = dkim_msg_results(m, out, max);   signature checks happen here
 *   dkim_msg_free(m);
 *
 * Up to opts.max_sigs signatures are verified, each with its own result;
 * further DKIM-Signature fields are counted (dkim_msg_num_skipped) and
 * ignored, which bounds the work one message can cause. Header bytes are
 * kept (bounded by DKIM_HDR_BYTES_MAX) because h= selects fields from the
 * bottom of the header, which is only known at its end.
 *
 * Pure apart from the crypto seam in dkim_crypto.h: no I/O, no globals.
 */
#ifndef OMX_DKIM_H
#define OMX_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "auth.h"
#include "dkim_hash.h"
#include "dkim_sig.h"
#include "dns.h"

#define DKIM_SIGS_DEFAULT 8             /* signatures verified per message (issue 5) */
#define DKIM_SIGS_HARD_MAX 64           /* upper bound for opts.max_sigs */
/* DKIM_HDR_BYTES_MAX, DKIM_HDR_FIELDS_MAX: dkim_hash.h */
#define DKIM_SIG_FIELD_MAX 16384        /* one DKIM-Signature field */
#define DKIM_B_PREFIX 8                 /* header.b: first 8 characters of b= (RFC 6008 §4) */

struct dkim_opts {
	unsigned max_sigs; /* 0: DKIM_SIGS_DEFAULT; at most DKIM_SIGS_HARD_MAX */
	uint64_t now;      /* Unix time for x= (injectable for tests); 0: no expiry check */
};

struct dkim_result {
	enum auth_res res;
	const char *reason;                   /* static text; NULL on pass */
	char domain[DKIM_NAME_MAX + 1];       /* d= (header.d) */
	char selector[DKIM_NAME_MAX + 1];     /* s= (header.s) */
	char algorithm[32];                   /* a= as written (header.a) */
	char identity[DKIM_ID_MAX + 1];       /* i= decoded (header.i); empty without i= */
	char b[DKIM_B_PREFIX + 1];            /* header.b */
	bool testing;                         /* key record t=y */
	unsigned key_bits;                    /* key size when known, else 0 */
};

struct dkim_msg;

/* dkim_msg_new returns a verifier for one message, or NULL (out of memory). */
struct dkim_msg *dkim_msg_new(const struct dkim_opts *o);

/* dkim_msg_free releases m; NULL does nothing. */
void dkim_msg_free(struct dkim_msg *m);

/*
 * dkim_msg_header takes one header field exactly as received: name, colon,
 * value with its folding CRLFs, without the CRLF that ends it. Copies it.
 * *out_sig is the index of a signature whose key must be looked up now, or
 * -1. Returns 0, or -ENOMEM; a header section past the bounds is not an
 * error, it makes every signature permerror at the end.
 */
__attribute__((warn_unused_result)) int dkim_msg_header(struct dkim_msg *m, struct span field, int *out_sig);

/*
 * dkim_msg_header_big takes a header field too large to keep (the caller's
 * bound, or DKIM_HDR_BYTES_MAX), given by `head`, its first bytes (at least
 * its name and colon when the field had them within the bound). Copies
 * the name only. The field keeps its place in the header order; a
 * signature whose h= selects it is permerror, and a DKIM-Signature field
 * this large is permerror ("signature field too long"). *out_sig is -1.
 * Returns 0, or -ENOMEM.
 */
__attribute__((warn_unused_result)) int dkim_msg_header_big(struct dkim_msg *m, struct span head, int *out_sig);

/* dkim_msg_key_name: "selector._domainkey.domain" of signature `sig`, valid while m lives. */
const char *dkim_msg_key_name(const struct dkim_msg *m, unsigned sig);

/*
 * dkim_msg_key_answer gives signature `sig` its key lookup result; it
 * borrows `a` during the call only (the key is parsed here).
 */
void dkim_msg_key_answer(struct dkim_msg *m, unsigned sig, const struct dns_txt_answer *a);

struct dkim_keyrec;

/*
 * dkim_msg_key_set gives signature `sig` its parsed key lookup outcome
 * (dkim_keyrec.h), e.g. from a cache: takes a reference of its own when the
 * key is usable, so the caller keeps its reference. NULL means the outcome
 * could not be made (out of memory): temperror. An answer already given,
 * or an index that wants no key, is ignored. dkim_msg_key_answer is
 * dkim_keyrec_new + dkim_msg_key_set.
 */
void dkim_msg_key_set(struct dkim_msg *m, unsigned sig, struct dkim_keyrec *kr);

/* dkim_msg_headers_end: the header section is complete; body hashing starts. */
void dkim_msg_headers_end(struct dkim_msg *m);

/* dkim_msg_body hashes body bytes (after the empty line, CRLF, dot-unstuffed). Borrows p. */
void dkim_msg_body(struct dkim_msg *m, const uint8_t *p, size_t len);

/* dkim_msg_body_end: the body is complete. */
void dkim_msg_body_end(struct dkim_msg *m);

/* dkim_msg_num_sigs: signatures being verified (the ones with a result). */
unsigned dkim_msg_num_sigs(const struct dkim_msg *m);

/* dkim_msg_num_skipped: DKIM-Signature fields beyond opts.max_sigs. */
unsigned dkim_msg_num_skipped(const struct dkim_msg *m);

/* dkim_msg_keys_pending: signatures still waiting for a key answer. */
unsigned dkim_msg_keys_pending(const struct dkim_msg *m);

/*
 * dkim_msg_results verifies every signature (after dkim_msg_body_end) and
 * writes at most `max` results in header order; returns how many there
 * are (dkim_msg_num_sigs). A key never answered gives temperror. The work
 * is done once; later calls copy the same results.
 */
__attribute__((warn_unused_result)) size_t dkim_msg_results(struct dkim_msg *m, struct dkim_result *out, size_t max);

#endif
