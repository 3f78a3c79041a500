/*
 * sink_query.h - the options of a sink spec's query string
 * ("exec:/bin/x?concurrency=8&timeout=30"): "key=value" pairs separated by
 * '&', taken literally (no percent-decoding, so a value holds no '&').
 * Pure: spans into the caller's string, no allocation.
 */
#ifndef OMX_SINK_QUERY_H
#define OMX_SINK_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/span.h"

/*
 * sink_query_next takes the next pair off the cursor `c` (the text after
 * '?'): *out_key is the text before the first '=', *out_val the rest
 * (empty, and *out_has_val false, when there is no '='). Empty pairs
 * ("a=1&&b=2") are skipped. False when the cursor is empty.
 */
bool sink_query_next(struct span *c, struct span *out_key, struct span *out_val, bool *out_has_val);

/* sink_query_uint parses a decimal in [min, max] (no sign, no spaces); false otherwise. */
bool sink_query_uint(struct span v, uint64_t min, uint64_t max, uint64_t *out);

/* sink_query_bool parses "yes" or "no"; false otherwise. */
bool sink_query_bool(struct span v, bool *out);

#endif
