/*
 * sink_http_reply.h - what the webhook sink makes of a receiver's answer:
 * the status class (RFC 9110 §15) and the Retry-After field (§10.2.3).
 * libcurl parses the status line and splits the header fields; these
 * functions read the bytes it hands over, which come from the receiver
 * (untrusted). Pure: no I/O, no clock (the caller passes "now").
 */
#ifndef OMX_SINK_HTTP_REPLY_H
#define OMX_SINK_HTTP_REPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/span.h"
#include "sink.h"

#define HTTP_RETRY_AFTER_MAX (24 * 3600) /* a longer Retry-After is capped to a day */

/*
 * sink_http_status_rc maps a final status code: 2xx SINK_OK; 408, 429 and
 * 5xx SINK_TEMPFAIL; other 4xx SINK_PERMFAIL; anything else (1xx, a 3xx
 * redirect, which is never followed, or a code outside 100..599)
 * SINK_TEMPFAIL, so the operator can fix the URL before mail is dead-lettered.
 */
enum sink_rc sink_http_status_rc(long status);

/*
 * sink_http_header_value: if `line` (one header line as received, with or
 * without its CRLF) is the field `name` (ASCII case-insensitive), its value
 * without surrounding white space in *out (a span into `line`) and true.
 */
bool sink_http_header_value(struct span line, const char *name, struct span *out);

/*
 * sink_http_retry_after reads a Retry-After value: delta-seconds, or an
 * HTTP-date (IMF-fixdate; RFC 9110 §5.6.7) taken relative to `now` (Unix
 * seconds; a date in the past gives 0). The result is capped at
 * HTTP_RETRY_AFTER_MAX. False if the value is neither.
 */
bool sink_http_retry_after(struct span value, int64_t now, uint64_t *out_secs);

#endif
