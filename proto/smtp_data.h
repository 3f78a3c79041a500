/*
 * smtp_data.h - incremental DATA unstuffer and BDAT chunk counter.
 *
 * DATA (RFC 5321 §4.1.1.4, §4.5.2): only <CRLF>.<CRLF> ends the data; a
 * leading dot is removed from every other line; bare CR / bare LF follow
 * enum smtp_bare_policy; text lines and the total size are bounded. The
 * unstuffer is zero-copy: body spans point into the caller's input or into
 * static strings ("\r\n", ".\r\n"). Its state across calls is an enum and
 * counters; it allocates nothing.
 *
 * After the first error (bare CR/LF under REJECT, a text line over the
 * limit, the size over the limit) the unstuffer reports SMTP_DATA_ERROR
 * once, then keeps reading in discard mode (no more body) until the real
 * <CRLF>.<CRLF>, which is reported as SMTP_DATA_END as usual. The bytes
 * yielded before the error are an unspecified prefix of the message.
 */
#ifndef OMX_SMTP_DATA_H
#define OMX_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "smtp_sess.h"

/* Unstuffer position within the line structure. */
enum smtp_data_state {
	SMTP_DATA_ST_BOL = 0, /* at the start of a line that follows a real CRLF (dot is special) */
	SMTP_DATA_ST_TEXT,    /* inside a line, or after a normalised bare CR/LF (dot is data) */
	SMTP_DATA_ST_CR,      /* inside a line, a CR was the last octet seen */
	SMTP_DATA_ST_DOT,     /* a "." at BOL was seen and dropped */
	SMTP_DATA_ST_DOT_CR,  /* "." CR at BOL was seen */
	SMTP_DATA_ST_DONE,    /* <CRLF>.<CRLF> was consumed */
	SMTP_DATA_ST_COUNT    /* sentinel */
};

/* Why the message is refused; the first error wins. */
enum smtp_data_err {
	SMTP_DATA_ERR_NONE = 0,  /* no error */
	SMTP_DATA_ERR_BARE,      /* bare CR or LF under SMTP_BARE_REJECT: 550 5.5.2 */
	SMTP_DATA_ERR_LINE,      /* text line over max_line: 500 5.5.2 */
	SMTP_DATA_ERR_SIZE,      /* body over max_size: 552 5.3.4 */
	SMTP_DATA_ERR_RUNAWAY,   /* a refused overlong line ran SMTP_LINE_RUNAWAY_MAX further: 500 5.5.2 and close */
	SMTP_DATA_ERR_COUNT      /* sentinel */
};

enum smtp_data_rc {
	SMTP_DATA_MORE = 0, /* all input consumed, data not finished */
	SMTP_DATA_BODY,     /* *out_body holds the next unstuffed bytes */
	SMTP_DATA_ERROR,    /* an error was just found (see err); discard mode follows */
	SMTP_DATA_END,      /* <CRLF>.<CRLF> consumed; the rest of the input is untouched */
	SMTP_DATA_RC_COUNT  /* sentinel */
};

struct smtp_data {
	enum smtp_data_state st;
	enum smtp_data_err err;
	enum smtp_bare_policy bare;
	size_t max_line;   /* octets per text line including CRLF; 0 = no limit */
	size_t line_len;   /* text octets of the current line, stuffing dot excluded */
	uint64_t max_size; /* 0 = no limit */
	uint64_t size;     /* octets yielded so far */
};

/*
 * smtp_data_init starts a DATA body right after the DATA command's CRLF
 * (so in state BOL: an immediate ".\r\n" is an empty message).
 */
void smtp_data_init(struct smtp_data *d, enum smtp_bare_policy bare, size_t max_line, uint64_t max_size);

/*
 * smtp_data_next consumes from *in (advancing it) until the next result.
 * SMTP_DATA_BODY sets *out_body (borrowed from *in or static storage).
 */
enum smtp_data_rc smtp_data_next(struct smtp_data *d, struct span *in, struct span *out_body);

const char *smtp_data_state_name(enum smtp_data_state st);

/* BDAT chunk counter (RFC 3030 §2): exactly `left` octets, binary-safe. */
struct smtp_bdat {
	uint64_t left;     /* octets still to read in this chunk */
	bool discard;      /* swallow without yielding */
};

/* smtp_bdat_init starts a chunk of `count` octets. */
void smtp_bdat_init(struct smtp_bdat *b, uint64_t count, bool discard);

/*
 * smtp_bdat_next: SMTP_DATA_BODY (*out_body borrowed from *in), MORE (all
 * input consumed, chunk unfinished) or END (chunk complete, the rest of the
 * input is untouched). Never ERROR.
 */
enum smtp_data_rc smtp_bdat_next(struct smtp_bdat *b, struct span *in, struct span *out_body);

#endif
