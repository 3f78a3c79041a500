/*
 * dkim_hash.h - the hashing halves shared by DKIM (dkim.c) and ARC
 * (arc.c): the kept header section with h= selection (RFC 6376 §5.4.2),
 * the signature field hashed with its b= value deleted (§3.7), and a body
 * hash with its canonicalisation and l= cut (§3.4, §3.5 "l=").
 *
 * Pure apart from the SHA-256 of the crypto seam (dkim_crypto.h).
 * struct dkim_hdrs owns copies of the fields; spans it returns are valid
 * until the next dkim_hdrs_add or dkim_hdrs_fini.
 */
#ifndef OMX_DKIM_HASH_H
#define OMX_DKIM_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/bb.h"
#include "../core/span.h"
#include "dkim_canon.h"
#include "dkim_crypto.h"
#include "dkim_sig.h"

#define DKIM_HDR_BYTES_MAX (1024 * 1024) /* header bytes kept whole for h= selection */
#define DKIM_HDR_FIELDS_MAX 8192        /* header fields kept */
#define DKIM_HDR_NAME_KEEP 64           /* name bytes kept of a field too large to keep whole */

/*
 * A kept field: whole, or (`big`) only its name, for a field too large to
 * keep. A big field keeps its place in the order, so selection from the
 * bottom stays exact; a signature that selects it cannot be checked.
 * `name_cut`: the name was longer than DKIM_HDR_NAME_KEEP (or its colon
 * was not seen), so only a prefix is known: it may match any longer name.
 */
struct dkim_field_ref {
	uint32_t off, len;
	bool big, name_cut;
};

/* The header section of one message, in order, bounded. */
struct dkim_hdrs {
	struct bb bytes;                 /* every kept field (or big field's name), back to back */
	size_t whole_bytes;              /* bytes of whole fields (at most DKIM_HDR_BYTES_MAX) */
	struct dkim_field_ref *fields;
	size_t num_fields, cap_fields;
	bool overflow;                   /* past DKIM_HDR_FIELDS_MAX: selection would be wrong */
};

/* dkim_hdrs_init prepares an empty store (no allocation yet). */
void dkim_hdrs_init(struct dkim_hdrs *h);

/* dkim_hdrs_fini releases the store. */
void dkim_hdrs_fini(struct dkim_hdrs *h);

/*
 * dkim_hdrs_add copies one whole header field (as received, without its
 * final CRLF). A field that does not fit in DKIM_HDR_BYTES_MAX any more is
 * kept as a big field (dkim_hdrs_add_big). Past DKIM_HDR_FIELDS_MAX the
 * field is dropped and h->overflow set (not an error). 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int dkim_hdrs_add(struct dkim_hdrs *h, struct span field);

/*
 * dkim_hdrs_add_big records a field too large to keep, from `head`, its
 * first bytes (the name and colon when they were seen): only the name is
 * kept (see struct dkim_field_ref). 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int dkim_hdrs_add_big(struct dkim_hdrs *h, struct span head);

/* dkim_hdrs_field returns field `i` (i < h->num_fields); only the name of a big one. */
struct span dkim_hdrs_field(const struct dkim_hdrs *h, size_t i);

/*
 * dkim_hdrs_hash_signed feeds the canonical form (with CRLF) of the fields
 * that names[] selects to `sha`: for each name, the last not yet used
 * instance, from the bottom; a name with no instance left contributes
 * nothing, which is how over-signing works (§5.4.2). Names compare ASCII
 * case-insensitively. False when a selected field (or one that may be
 * selected) is big: the digest would be over a different header set, so
 * the caller must not verify it.
 */
__attribute__((warn_unused_result)) bool dkim_hdrs_hash_signed(const struct dkim_hdrs *h, enum dkim_canon c,
								const struct span *names, unsigned num_names,
								struct dkim_sha256 *sha);

/*
 * dkim_hash_sig_field feeds the canonical form of a signature field to
 * `sha` with the bytes `b_raw` (b='s value, inside `field`) deleted and no
 * final CRLF (§3.7). False when out of memory (the field is copied once).
 */
__attribute__((warn_unused_result)) bool dkim_hash_sig_field(enum dkim_canon c, struct span field,
							    struct span b_raw, struct dkim_sha256 *sha);

/* One body hash: a canonicalisation and an optional l= cut. */
struct dkim_bodyhash {
	enum dkim_canon c;
	bool has_l;
	uint64_t l;
	struct dkim_body_canon canon;
	struct dkim_sha256 sha;
	uint8_t digest[DKIM_SHA256_LEN]; /* after dkim_bodyhash_final */
};

/* dkim_bodyhash_init starts a body hash; with has_l only the first l canonical octets count. */
void dkim_bodyhash_init(struct dkim_bodyhash *bh, enum dkim_canon c, bool has_l, uint64_t l);

/* dkim_bodyhash_update takes body bytes (CRLF, dot-unstuffed), any split. Borrows p. */
void dkim_bodyhash_update(struct dkim_bodyhash *bh, const uint8_t *p, size_t len);

/* dkim_bodyhash_final ends the body and fills bh->digest. */
void dkim_bodyhash_final(struct dkim_bodyhash *bh);

/*
 * dkim_bodyhash_check compares a finished body hash with a signature's bh=
 * (and its l= with the canonical body length). AUTH_NONE when they agree,
 * else AUTH_FAIL with a static *out_reason.
 */
__attribute__((warn_unused_result)) enum auth_res dkim_bodyhash_check(const struct dkim_bodyhash *bh,
									const struct dkim_sig *sig,
									const char **out_reason);

#endif
