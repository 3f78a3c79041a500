/*
 * rfc2047.h - decoding of header text with RFC 2047 encoded words
 * ("=?charset?B|Q?text?=") to UTF-8.
 *
 * Tolerant as mainstream readers are: words may touch other text, white
 * space between two adjacent encoded words is dropped (§6.2), adjacent
 * words in the same charset are joined before conversion (so a multibyte
 * character split across words survives), RFC 2231 language suffixes
 * ("=?utf-8*en?Q?...?=") are ignored. Raw 8-bit text outside words is taken
 * as UTF-8 (RFC 6532); invalid sequences become U+FFFD.
 */
#ifndef OMX_RFC2047_H
#define OMX_RFC2047_H

#include <stddef.h>

#include "../core/bb.h"
#include "../core/span.h"

#define RFC2047_WORD_MAX 4096 /* longer "words" are left as they are */

struct rfc2047_stats {
	size_t num_words;    /* encoded words decoded */
	size_t num_bad;      /* invalid sequences replaced */
	size_t num_unknown;  /* words in a charset we cannot convert */
};

/*
 * rfc2047_decode appends the decoded form of `in` to out. `st` may be NULL.
 * Returns 0 or a builder error (-ENOMEM, -E2BIG).
 */
int rfc2047_decode(struct bb *out, struct span in, struct rfc2047_stats *st);

#endif
