/*
 * msggen.h - the messages oceanmx-load sends: size classes with weights,
 * deterministic text bodies, per-sender-domain header blocks (signed
 * through a callback) and DKIM relaxed canonicalisation.
 *
 * Pure (no crypto: signing is a callback, see dkim.h), so the unit tests
 * link no TLS library. Everything is built once at start-up; the send path
 * only borrows the bytes. A msgset owns its bodies (one per size class, shared by every
 * sender domain) and one header block per (size class, domain).
 */
#ifndef OMX_LOAD_MSGGEN_H
#define OMX_LOAD_MSGGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/bb.h"
#include "core/span.h"

#define MSG_SIZES_MAX   16
#define MSG_SIZE_MAX    ((size_t)512 << 20)
#define MSG_DOMAINS_MAX 100000
#define DKIM_SELECTOR   "omxload"
/* RFC 5322 §2.1.1: lines of at most 78 characters before CRLF. */
#define MSG_LINE_MAX    76

/* The fields every message carries and a signature covers, in order. */
#define MSG_SIGNED_NAMES "from:to:subject:date:message-id:mime-version:content-type"

/*
 * msg_sign_fn appends a complete signature field (ending CRLF) for the
 * header block `headers` and `body` of a message from `domain`; 0 or -1.
 */
typedef int msg_sign_fn(void *arg, struct bb *out, const char *domain, struct span headers, struct span body);

struct msgspec {
	size_t size;     /* approximate message size in octets (headers + body) */
	unsigned weight; /* relative frequency */
};

struct lmsg {
	struct bb head;        /* header fields + the empty line; owned */
	const uint8_t *body;   /* borrowed from the msgset's body of this size class */
	size_t body_len;
	size_t size;           /* head.len + body_len: what the server stores */
	unsigned domain;       /* sender domain index */
};

struct msgset_opts {
	const char *from_local;   /* local part of MAIL FROM and From: */
	const char *from_domain;  /* base domain; with num_domains > 1 senders are sN.<base> */
	const char *to;           /* To: address */
	unsigned num_domains;     /* >= 1 */
	msg_sign_fn *sign;        /* NULL: unsigned */
	void *sign_arg;
	time_t date;              /* Date: */
};

struct msgset {
	unsigned num_sizes, num_domains;
	struct msgspec spec[MSG_SIZES_MAX];
	uint64_t cum[MSG_SIZES_MAX];  /* cumulative weights */
	uint8_t *bodies[MSG_SIZES_MAX];
	size_t body_len[MSG_SIZES_MAX];
	struct lmsg *msgs;            /* [size class * num_domains + domain] */
	char **domains;               /* sender domain names */
	char *from_local;
};

/* size_parse reads "4096", "4k", "100K", "1M", "1m" (powers of 1024). */
bool size_parse(const char *s, size_t *out);

/*
 * sizes_parse reads "SIZE" or "SIZE:WEIGHT,SIZE:WEIGHT,..." (weight
 * default 1). Returns false with a message in err on bad input.
 */
bool sizes_parse(const char *s, struct msgspec *out, unsigned max, unsigned *out_n, char *err, size_t err_len);

/* body_fill writes `len` octets of CRLF text lines (none starts with '.',
 * none longer than MSG_LINE_MAX, no trailing white space), seeded. */
void body_fill(uint8_t *out, size_t len, uint64_t seed);

/* msgset_build builds every message; 0, or -1 with a message in err. */
int msgset_build(struct msgset *ms, const struct msgset_opts *o, const struct msgspec *spec, unsigned num_spec,
		 char *err, size_t err_len);
void msgset_fini(struct msgset *ms);

/* msgset_pick chooses a message from two random numbers (size by weight, domain uniformly). */
const struct lmsg *msgset_pick(const struct msgset *ms, uint64_t r_size, uint64_t r_domain);

/* ---- relaxed canonicalisation (pure; used by dkim.c and the tests) ---- */

/* dkim_body_relaxed appends the relaxed canonical form of `body` (RFC 6376 §3.4.4). */
int dkim_body_relaxed(struct bb *out, struct span body);

/* dkim_header_relaxed appends one field (name ":" value, folded, with or
 * without its final CRLF) in relaxed canonical form with CRLF (§3.4.2). */
int dkim_header_relaxed(struct bb *out, struct span field);

/*
 * dkim_canon_headers appends, for each name in `signed_names` (colon
 * separated), the relaxed form of the last not yet used field of that name
 * in `headers` (RFC 6376 §5.4.2); absent names add nothing.
 */
int dkim_canon_headers(struct bb *out, struct span headers, const char *signed_names);

#endif
