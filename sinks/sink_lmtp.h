/*
 * sink_lmtp.h - the pure parts of the LMTP sink (sinks/sink_lmtp.c),
 * exposed for the unit tests and the fuzz target: the reply parser and the
 * reduction of per-recipient answers to one sink_rc.
 *
 * The reply parser reads SMTP/LMTP replies (RFC 5321 §4.2, RFC 2033 §4.2):
 * one or more lines "CODE-text" ending with "CODE text" or "CODE", the same
 * three-digit code on every line, an optional enhanced status code
 * "class.subject.detail" at the start of the text (RFC 2034, RFC 3463).
 * It is incremental (any split of the input gives the same replies), does
 * no I/O and no allocation, and bounds everything it keeps.
 */
#ifndef OMX_SINK_LMTP_H
#define OMX_SINK_LMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sink.h"

/* RFC 5321 §4.5.3.1.5 sets 512 octets per reply line; we accept 4x that
 * from a server before calling the reply garbage. */
#define LMTP_REPLY_LINE_MAX 2048
#define LMTP_REPLY_LINES_MAX 64    /* lines per reply (an LHLO reply has ~10) */
#define LMTP_REPLY_TEXT_MAX 1024   /* text kept per reply: the lines joined by '\n' */

enum lmtp_parse {
	LMTP_PARSE_MORE = 0,  /* all input consumed, the reply is not complete yet */
	LMTP_PARSE_OK,        /* one complete reply in *out; *out_consumed bytes used */
	LMTP_PARSE_SYNTAX,    /* not a reply line (bad code, separator, mixed codes) */
	LMTP_PARSE_TOO_LONG,  /* a line over LMTP_REPLY_LINE_MAX or too many lines */
	LMTP_PARSE_COUNT      /* sentinel */
};

struct lmtp_reply {
	uint16_t code;            /* 200..599 */
	uint8_t enh_class;        /* 2, 4 or 5; 0 when the reply has no enhanced code */
	uint16_t enh_subject;     /* 0..999 */
	uint16_t enh_detail;      /* 0..999 */
	uint32_t num_lines;
	bool truncated;           /* text was cut at LMTP_REPLY_TEXT_MAX */
	size_t text_len;
	/* The text after "CODE-"/"CODE " of each line (the enhanced code of the
	 * first line removed), lines joined by '\n'; printable ASCII only (other
	 * octets become '?'), NUL-terminated. */
	char text[LMTP_REPLY_TEXT_MAX + 1];
};

/* Parser state that survives between calls; zero it (lmtp_reply_parser_init) per stream. */
struct lmtp_reply_parser {
	struct lmtp_reply cur;   /* the reply being built */
	uint8_t line[LMTP_REPLY_LINE_MAX]; /* carry: the partial line so far */
	size_t line_len;
	bool failed;             /* a SYNTAX/TOO_LONG was returned: the stream is out of sync */
};

void lmtp_reply_parser_init(struct lmtp_reply_parser *p);

/*
 * lmtp_reply_parse consumes input up to the end of the first complete
 * reply. Returns LMTP_PARSE_OK with the reply in *out and *out_consumed
 * bytes used (the rest belongs to later replies: call again with it);
 * LMTP_PARSE_MORE with all of `len` consumed; or an error, after which the
 * parser keeps returning that error (the caller drops the connection).
 * Lines end at LF; a CR before it is removed. `in` is borrowed.
 */
enum lmtp_parse lmtp_reply_parse(struct lmtp_reply_parser *p, struct lmtp_reply *out, size_t *out_consumed,
				 const uint8_t *in, size_t len);

const char *lmtp_parse_name(enum lmtp_parse r);

/*
 * lmtp_reply_has_keyword: does a line of this (LHLO) reply, after the
 * first, start with `kw` (ASCII case-insensitive) followed by the end of
 * the line or a space? RFC 5321 §4.1.1.1 ehlo-line.
 */
bool lmtp_reply_has_keyword(const struct lmtp_reply *r, const char *kw);

/* lmtp_reply_rc: 2xx -> SINK_OK, 4xx -> SINK_TEMPFAIL, 5xx (and others) -> SINK_PERMFAIL. */
enum sink_rc lmtp_reply_rc(const struct lmtp_reply *r);

/*
 * lmtp_rc_reduce maps per-recipient outcomes to the per-message sink_rc:
 * every recipient OK -> SINK_OK; any TEMPFAIL -> SINK_TEMPFAIL (the message
 * is retried whole); otherwise SINK_PERMFAIL. SINK_OK for num == 0.
 */
enum sink_rc lmtp_rc_reduce(const enum sink_rc *rcs, size_t num);

#endif
