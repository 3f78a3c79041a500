/* sink_http_reply.c - webhook answers; see sink_http_reply.h. */
#include "sink_http_reply.h"

#include "../proto/date.h"

enum sink_rc sink_http_status_rc(long status)
{
	if (status >= 200 && status <= 299) {
		return SINK_OK;
	}
	if (status == 408 || status == 429) { /* RFC 9110 §15.5.9, RFC 6585 §4 */
		return SINK_TEMPFAIL;
	}
	if (status >= 400 && status <= 499) {
		return SINK_PERMFAIL;
	}
	return SINK_TEMPFAIL; /* 5xx, and what we do not handle */
}

bool sink_http_header_value(struct span line, const char *name, struct span *out)
{
	struct span c = line;

	if (!span_eat_ci(&c, name) || c.len == 0 || c.p[0] != ':') {
		return false;
	}
	span_skip(&c, 1);
	while (c.len > 0 && (c.p[c.len - 1] == '\n' || c.p[c.len - 1] == '\r')) {
		c.len--;
	}
	*out = span_trim_ws(c);
	return true;
}

bool sink_http_retry_after(struct span value, int64_t now, uint64_t *out_secs)
{
	struct span c = value;
	uint64_t n;
	int64_t when;

	if (c.len > 0 && c.p[0] >= '0' && c.p[0] <= '9') {
		/* delta-seconds = 1*DIGIT; a value too large for 64 bits is still "long". */
		size_t i = 0;

		while (i < c.len && c.p[i] >= '0' && c.p[i] <= '9') {
			i++;
		}
		if (i != c.len) {
			return false;
		}
		if (i > 18 || !span_get_dec_u64(&c, &n, UINT64_MAX)) {
			n = HTTP_RETRY_AFTER_MAX;
		}
		*out_secs = n < HTTP_RETRY_AFTER_MAX ? n : HTTP_RETRY_AFTER_MAX;
		return true;
	}
	/* IMF-fixdate is an RFC 5322 date-time with the obsolete zone "GMT". */
	if (!date_parse(value, &when)) {
		return false;
	}
	if (when <= now) {
		*out_secs = 0;
	} else {
		*out_secs = (uint64_t)(when - now) < HTTP_RETRY_AFTER_MAX ? (uint64_t)(when - now) : HTTP_RETRY_AFTER_MAX;
	}
	return true;
}
