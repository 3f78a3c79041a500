/* sink_query.c - query-string options of sink specs; see sink_query.h. */
#include "sink_query.h"

bool sink_query_next(struct span *c, struct span *out_key, struct span *out_val, bool *out_has_val)
{
	while (c->len > 0) {
		struct span pair, key;

		if (!span_take_until(c, &pair, '&')) {
			span_take(c, &pair, c->len);
		} else {
			span_skip(c, 1);
		}
		if (pair.len == 0) {
			continue;
		}
		if (span_take_until(&pair, &key, '=')) {
			span_skip(&pair, 1);
			*out_key = key;
			*out_val = pair;
			*out_has_val = true;
		} else {
			*out_key = pair;
			*out_val = span_make(pair.p + pair.len, 0);
			*out_has_val = false;
		}
		return true;
	}
	return false;
}

bool sink_query_uint(struct span v, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t n;

	if (!span_get_dec_u64(&v, &n, max) || v.len != 0 || n < min) {
		return false;
	}
	*out = n;
	return true;
}

bool sink_query_bool(struct span v, bool *out)
{
	if (span_eq_ci(v, "yes")) {
		*out = true;
		return true;
	}
	if (span_eq_ci(v, "no")) {
		*out = false;
		return true;
	}
	return false;
}
