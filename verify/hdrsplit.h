/*
 * hdrsplit.h - splits the header section of a message into header fields
 * for the verifiers (DKIM, ARC, DMARC's From), incrementally and with
 * bounded memory, whatever the size of a field.
 *
 * A field longer than HDRSPLIT_FIELD_MAX is not buffered: its first
 * HDRSPLIT_FIELD_MAX bytes (its name, for any sane name) are handed out
 * marked not whole, the rest is skipped, and splitting goes on, so a huge
 * field never hides the fields after it (issue 13: a 70 KB Received: before
 * From: made the verifier stop reading and answer dmarc=none). A verifier
 * decides what a field it needs but cannot read whole means
 * (dkim_msg_header_big, arc_msg_header_big, dmarc_from_seen_field).
 *
 * Folding (RFC 5322 §2.2.3): a line starting with WSP continues the field;
 * the empty line ("\r\n", or a bare "\n") ends the header section.
 *
 * Pure: no I/O, no globals; struct hdrsplit owns the bytes of the field
 * being assembled (at most HDRSPLIT_FIELD_MAX).
 */
#ifndef OMX_HDRSPLIT_H
#define OMX_HDRSPLIT_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/bb.h"
#include "../core/span.h"

#define HDRSPLIT_FIELD_MAX (64u * 1024) /* bytes of one field kept whole (the largest kept is 16 KiB: DKIM_SIG_FIELD_MAX) */

enum hdrsplit_ev {
	HDRSPLIT_MORE = 0, /* the input is used up: call again with more */
	HDRSPLIT_FIELD,    /* *out holds a complete field */
	HDRSPLIT_END,      /* the header section ended: *in starts at the body */
	HDRSPLIT_EV_COUNT  /* number of values */
};

struct hdrsplit_field {
	struct span bytes; /* whole: the field without its final CRLF; else its first HDRSPLIT_FIELD_MAX bytes */
	bool whole;        /* bytes is the whole field */
	uint64_t len;      /* its length in the message, final line end included */
	uint64_t offset;   /* header bytes before it */
	uint64_t max_line; /* its longest line, line end included */
};

struct hdrsplit {
	struct bb field;       /* the start of the field being assembled */
	uint64_t field_len;    /* its length so far, bytes not kept included */
	uint64_t field_off;    /* header bytes before it */
	uint64_t line_len;     /* the current line's length so far */
	uint64_t max_line;     /* the field's longest line so far */
	uint64_t header_bytes; /* header bytes consumed */
	bool bol;              /* at the beginning of a line */
	bool cr;               /* a CR held at the beginning of a line (maybe the empty line) */
	bool lost;             /* a byte of the field could not be kept (out of memory) */
	bool emitted;          /* the field was handed out; dropped at the next call */
	bool ended;            /* the empty line (or the end of input) was seen */
};

/* hdrsplit_init prepares s (no allocation yet). */
void hdrsplit_init(struct hdrsplit *s);

/* hdrsplit_fini releases s. */
void hdrsplit_fini(struct hdrsplit *s);

/*
 * hdrsplit_next consumes header bytes from *in (advancing it) until a
 * field is complete (HDRSPLIT_FIELD: *out is valid until the next call),
 * the header section ends (HDRSPLIT_END: *in is left at the first body
 * byte; every later call returns HDRSPLIT_END), or *in is used up
 * (HDRSPLIT_MORE). Any split of the input gives the same fields. A field
 * is complete only when the first byte of the next line is known.
 */
enum hdrsplit_ev hdrsplit_next(struct hdrsplit *s, struct hdrsplit_field *out, struct span *in);

/*
 * hdrsplit_finish ends the input before the empty line: HDRSPLIT_FIELD
 * for a field still being assembled, then HDRSPLIT_END.
 */
enum hdrsplit_ev hdrsplit_finish(struct hdrsplit *s, struct hdrsplit_field *out);

/* hdrsplit_in_body: the header section has ended. */
static inline bool hdrsplit_in_body(const struct hdrsplit *s)
{
	return s->ended;
}

#endif
