/*
 * dkim_tag.h - the DKIM tag=value list (RFC 6376 §3.2), shared by the
 * DKIM-Signature field (§3.5) and the key record (§3.6.1), plus the
 * base64 and dkim-quoted-printable decoders these tags use.
 *
 * Pure: no allocation, no I/O. Tags borrow the input bytes (spans into it).
 */
#ifndef OMX_DKIM_TAG_H
#define OMX_DKIM_TAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"

/* More tags than any real signature or key record carries (RFC 6376 defines 14). */
#define DKIM_TAGS_MAX 32

struct dkim_tag {
	struct span name;  /* tag-name */
	struct span value; /* tag-value without surrounding FWS (may hold inner FWS) */
	struct span raw;   /* everything between '=' and ';' (or the end), FWS included */
};

enum dkim_tag_rc {
	DKIM_TAG_OK = 0,   /* *out_num tags parsed */
	DKIM_TAG_SYNTAX,   /* not a tag-list (position in *out_err_pos) */
	DKIM_TAG_DUP,      /* a tag name occurs twice (§3.2: "MUST ... be considered invalid") */
	DKIM_TAG_TOO_MANY, /* more than `max` tags */
};

/*
 * dkim_tags_parse splits `in` into at most `max` tags in out[]. Tag names
 * are case-sensitive (§3.2). Accepts FWS (SP, HTAB, CRLF followed by WSP)
 * around names, '=' and values, and a trailing ';'. The spans in out[]
 * borrow `in`. On failure *out_err_pos is the offset where parsing stopped.
 */
__attribute__((warn_unused_result)) enum dkim_tag_rc dkim_tags_parse(struct dkim_tag *out, size_t max,
								       size_t *out_num, size_t *out_err_pos,
								       struct span in);

/* dkim_tag_rc_name returns a short static description of rc. */
const char *dkim_tag_rc_name(enum dkim_tag_rc rc);

/* dkim_tag_find returns the tag named `name` or NULL. */
const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, size_t num, const char *name);

/*
 * dkim_b64_decode decodes base64 (RFC 4648 §4) skipping FWS, as b=, bh= and
 * p= allow. Padding is required and must be canonical. False on a bad
 * character, bad padding or when the result would pass out_max bytes.
 */
__attribute__((warn_unused_result)) bool dkim_b64_decode(uint8_t *out, size_t out_max, size_t *out_len,
							 struct span in);

/*
 * dkim_qp_decode decodes dkim-quoted-printable (§2.11): "=XX" hex escapes,
 * FWS ignored. False on a bad escape or when out_max would be passed.
 */
__attribute__((warn_unused_result)) bool dkim_qp_decode(uint8_t *out, size_t out_max, size_t *out_len,
							struct span in);

/*
 * dkim_list_next takes the next element of a colon-separated list (h=, q=,
 * the key's h=, s=, t=) into *out, FWS trimmed, and consumes its colon.
 * False when the list is exhausted.
 */
bool dkim_list_next(struct span *list, struct span *out);

#endif
