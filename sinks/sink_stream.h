/*
 * sink_stream.h - the stream sink's answer parser ("unix:PATH" and
 * "tcp:HOST:PORT", sinks/sink_stream.c; wire format in docs/sinks.md).
 *
 * The consumer answers every message with one line, in any order:
 *   OK <id>[ <text>]\n          it has the message durably (text ignored)
 *   RETRY <id>[ <text>]\n       temporary: oceanmx sends it again later
 *   REJECT <id>[ <text>]\n      permanent: the message goes to SPOOL/failed
 * A CR before the LF is allowed. <id> is 1 to MSG_ID_MAX - 1 visible ASCII
 * characters; <text> is printable ASCII, HT or bytes >= 0x80 (UTF-8).
 * Anything else, or a line longer than STREAM_REPLY_MAX, is unparseable,
 * and the sink then closes the connection.
 *
 * Pure: no I/O, no allocation; results point into the caller's input.
 */
#ifndef OMX_SINK_STREAM_H
#define OMX_SINK_STREAM_H

#include <stddef.h>

#include "../core/span.h"

#define STREAM_REPLY_MAX 1024 /* bytes of an answer line, "\n" included */

enum stream_answer {
	STREAM_ANS_OK = 0,  /* durable at the consumer */
	STREAM_ANS_RETRY,   /* try again later */
	STREAM_ANS_REJECT,  /* never: dead letter */
	STREAM_ANS_COUNT    /* sentinel */
};

enum stream_parse {
	STREAM_PARSE_OK = 0,   /* one answer in *out */
	STREAM_PARSE_MORE,     /* no complete line yet: read more */
	STREAM_PARSE_SYNTAX,   /* a complete line that is not an answer */
	STREAM_PARSE_TOO_LONG, /* no "\n" within STREAM_REPLY_MAX bytes */
	STREAM_PARSE_COUNT     /* sentinel */
};

struct stream_reply {
	enum stream_answer kind;
	struct span id;   /* borrows the input */
	struct span text; /* borrows the input; may be empty */
};

/*
 * stream_reply_parse reads the first line of `in`. On STREAM_PARSE_OK,
 * *out holds the answer and *out_consumed the line's length; on
 * STREAM_PARSE_SYNTAX *out_consumed is the length of the bad line; on MORE
 * and TOO_LONG it is 0. *out_consumed <= in.len always.
 */
enum stream_parse stream_reply_parse(struct stream_reply *out, size_t *out_consumed, struct span in);

const char *stream_answer_name(enum stream_answer a);

#endif
