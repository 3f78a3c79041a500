/*
 * charset.h - conversion of text to UTF-8 (for bodies, encoded words and
 * RFC 2231 parameters). Invalid or unmappable input becomes U+FFFD and is
 * counted, never dropped silently. UTF-8, US-ASCII and ISO-8859-1 are
 * converted in place; other charsets go through glibc iconv.
 * Pure apart from iconv's own state (opened and closed per call).
 */
#ifndef OMX_CHARSET_H
#define OMX_CHARSET_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/bb.h"
#include "../core/span.h"

#define CHARSET_NAME_MAX 64

/*
 * charset_to_utf8 appends `in`, in charset `cs`, to out as UTF-8.
 * *out_num_bad (may be NULL) grows by the number of replaced sequences.
 * Returns 0, -ENOMEM/-E2BIG from the builder, or -ENOENT when the charset
 * is unknown (then `in` was appended as UTF-8 with replacements).
 */
int charset_to_utf8(struct bb *out, struct span cs, struct span in, size_t *out_num_bad);

/* utf8_sanitize appends `in` with every invalid UTF-8 sequence as U+FFFD. */
int utf8_sanitize(struct bb *out, struct span in, size_t *out_num_bad);

/*
 * utf8_replace_nul appends `in` with every NUL byte as U+FFFD, so the text
 * can live in a C string without being cut there (RFC 5322 §3.2.3, §2.3:
 * NUL is not allowed in header fields or message text). *out_num_nul (may
 * be NULL) grows by the number of NUL bytes replaced. 0, -ENOMEM or -E2BIG.
 */
int utf8_replace_nul(struct bb *out, struct span in, size_t *out_num_nul);

/* utf8_valid says whether `in` is entirely well-formed UTF-8 (RFC 3629). */
bool utf8_valid(struct span in);

/* utf8_seq_len returns the length of the valid sequence at p (1..4) or 0. */
size_t utf8_seq_len(const uint8_t *p, size_t avail);

/* charset_is_utf8 says whether cs names UTF-8 or a subset (US-ASCII). */
bool charset_is_utf8(struct span cs);

#endif
