/*
 * dkim_canon.h - DKIM canonicalisation (RFC 6376 §3.4), simple and
 * relaxed, for header fields (one whole field at a time) and for the body
 * (incremental: init, any number of updates, final).
 *
 * The output goes to a sink callback, so the same code feeds a hash in the
 * verifier and a byte builder in the tests. The body canonicaliser keeps
 * only a few counters between updates, so its output is identical for any
 * split of the input. Pure: no allocation.
 */
#ifndef OMX_DKIM_CANON_H
#define OMX_DKIM_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "dkim_sig.h"

/* dkim_sink_fn receives canonical bytes; p is valid only during the call. */
typedef void dkim_sink_fn(void *arg, const uint8_t *p, size_t len);

struct dkim_body_canon {
	enum dkim_canon c;
	dkim_sink_fn *sink;
	void *arg;
	uint64_t pending_crlf; /* empty lines held back: dropped if the body ends here */
	bool at_bol;           /* nothing (but WSP, in relaxed) on the current line yet */
	bool held_cr;          /* a CR that may start a CRLF */
	bool pending_wsp;      /* relaxed: a WSP run to emit as one SP before more text */
	uint64_t num_out;      /* canonical bytes emitted so far */
};

/* dkim_body_canon_init prepares *bc; `sink` gets every canonical byte. */
void dkim_body_canon_init(struct dkim_body_canon *bc, enum dkim_canon c, dkim_sink_fn *sink, void *arg);

/* dkim_body_canon_update consumes body bytes (CRLF line ends, as on the wire after unstuffing). */
void dkim_body_canon_update(struct dkim_body_canon *bc, const uint8_t *p, size_t len);

/*
 * dkim_body_canon_final flushes the end of the body: trailing empty lines
 * are dropped, a last line without CRLF gets one, and an empty body is
 * "CRLF" in simple and "" in relaxed (§3.4.3, §3.4.4 with erratum 1384).
 */
void dkim_body_canon_final(struct dkim_body_canon *bc);

/*
 * dkim_hdr_canon writes one header field in canonical form: `field` is the
 * whole field as received (name, colon, value, folding CRLFs) without its
 * final CRLF. With `crlf` a CRLF is appended (every signed field); without,
 * not (the DKIM-Signature field itself, §3.7).
 */
void dkim_hdr_canon(enum dkim_canon c, struct span field, bool crlf, dkim_sink_fn *sink, void *arg);

/* dkim_hdr_name returns the field name of `field` (before ':', trailing WSP trimmed), or an empty span. */
struct span dkim_hdr_name(struct span field);

#endif
