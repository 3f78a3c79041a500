/*
 * mime.h - incremental RFC 5322 / MIME (RFC 2045-2049) event parser.
 *
 * Push/next, after OpenSMTPD's rfc5322_push/rfc5322_next:
 *
 *   mime_init(&p);
 *   for each chunk: mime_push(&p, chunk);
 *                   while ((ev = mime_next(&p, &e)) != MIME_EV_MORE) use(&e);
 *   mime_finish(&p); while (mime_next(&p, &e) != MIME_EV_END) use(&e);
 *
 * The pushed bytes are borrowed until mime_next returns MIME_EV_MORE; the
 * parser copies what it must keep (a partial header line, the start of a
 * possible boundary line) into its own bounded storage. Every span in an
 * event is valid until the next call. All state lives in struct mime (about
 * 100 KB of caller storage, 16 KB of it for decoded composite bodies): no allocation, no I/O, no globals, no logging.
 *
 * Events, per part in document order (parts nest):
 *   PART_BEGIN, HEADER* (unfolded, in order, duplicates kept), HEADERS_END
 *   (type, transfer encoding and kind resolved), then for a leaf BODY*
 *   (decoded bytes; an x-uuencode body may start with UU_BEGIN), for a
 *   multipart PREAMBLE* child parts EPILOGUE*, for a message/rfc822 the
 *   encapsulated message as one child part; PART_END. DEFECT events may
 *   appear anywhere; the stream ends with END.
 *
 * Encoded composites (RFC 2045 §6.4 and RFC 2046 §5.2.1 forbid them, real
 * mail has them): a multipart or message/rfc822 part whose body is base64
 * or quoted-printable is decoded and the decoded bytes are parsed as its
 * body, with an ENCODED_COMPOSITE defect. The raw body still ends at a
 * delimiter of an enclosing multipart. Whether the body is really encoded
 * is read from it, as senders also put the header on bodies they did not
 * encode (Python's email then ignores the header, and so do we): base64
 * when its first non-blank line looks like base64, quoted-printable for a
 * multipart when a preamble line decodes to its delimiter (and is not one
 * as it stands), for a message always. One level: an encoded composite
 * inside a decoded body gets the old treatment (TRANSFER_ENCODING_ON_COMPOSITE).
 *
 * Robustness (RFC 2046 §5.1, as Python's email and GMime behave): a
 * delimiter of any enclosing multipart ends the inner parts; a missing
 * close delimiter or start delimiter, a multipart without boundary, a
 * header line without colon (the body starts there) and every bound below
 * give a DEFECT and parsing goes on. Nothing in the input stops the parser.
 */
#ifndef OMX_MIME_H
#define OMX_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "mime_dec.h"
#include "rfc2231.h"

#define MIME_DEPTH_MAX 32          /* nesting of multiparts and messages (MIME bombs) */
#define MIME_PARTS_MAX 1000        /* parts per message; later ones are skipped */
#define MIME_LINE_MAX 16384        /* header line kept; the rest is cut (RFC 5322 §2.1.1 says 998) */
#define MIME_FIELD_MAX 32768       /* unfolded header field */
#define MIME_HEADER_MAX 262144     /* header block of one part */
#define MIME_BOUNDARY_MAX 200      /* RFC 2046 §5.1.1 says 70; longer ones seen in the wild */
#define MIME_LOOKAHEAD (MIME_BOUNDARY_MAX + 72) /* "--" boundary "--" padding CRLF */
#define MIME_OUT_MAX 16384         /* raw bytes per BODY event */
#define MIME_DEFECTS_QUEUED 8

enum mime_ev_type {
	MIME_EV_MORE = 0,     /* push more input, or call mime_finish */
	MIME_EV_PART_BEGIN,   /* ev.part: index, parent, depth */
	MIME_EV_HEADER,       /* ev.name, ev.value (unfolded, trimmed) */
	MIME_EV_HEADERS_END,  /* ev.part: kind, type, subtype, cte, boundary */
	MIME_EV_BODY,         /* ev.data: decoded bytes of a leaf part */
	MIME_EV_PREAMBLE,     /* ev.data: raw bytes before the first delimiter */
	MIME_EV_EPILOGUE,     /* ev.data: raw bytes after the close delimiter */
	MIME_EV_PART_END,
	MIME_EV_DEFECT,       /* ev.defect, ev.part (may be NULL before the root begins) */
	MIME_EV_UU_BEGIN,     /* ev.value: the file name on the begin line of an x-uuencode body */
	MIME_EV_END,          /* after mime_finish: nothing more, ever */
	MIME_EV_COUNT         /* sentinel */
};

enum mime_kind {
	MIME_KIND_LEAF = 0,   /* decoded body */
	MIME_KIND_MULTIPART,  /* children between delimiters */
	MIME_KIND_MESSAGE,    /* message/rfc822, message/global: one child message */
	MIME_KIND_COUNT       /* sentinel */
};

enum mime_cte {
	MIME_CTE_7BIT = 0,    /* also the default when absent */
	MIME_CTE_8BIT,
	MIME_CTE_BINARY,
	MIME_CTE_QP,
	MIME_CTE_BASE64,
	MIME_CTE_UUENCODE,    /* x-uuencode, uuencode, x-uue, uue (not RFC 2045; as Python's email) */
	MIME_CTE_UNKNOWN,     /* passed through undecoded (x-binhex, typos) */
	MIME_CTE_COUNT        /* sentinel */
};

enum mime_defect {
	MIME_DEF_NONE = 0,
	MIME_DEF_HEADER_NO_COLON,       /* a line in the header block is not a field: body starts */
	MIME_DEF_HEADER_CONT_FIRST,     /* continuation line with no field before it: dropped */
	MIME_DEF_HEADER_LINE_TOO_LONG,  /* line cut at MIME_LINE_MAX */
	MIME_DEF_HEADER_FIELD_TOO_LONG, /* unfolded field cut at MIME_FIELD_MAX */
	MIME_DEF_HEADER_BLOCK_TOO_LARGE,/* fields after MIME_HEADER_MAX dropped */
	MIME_DEF_CTYPE_INVALID,         /* Content-Type without type/subtype: default used */
	MIME_DEF_CTYPE_DUPLICATE,       /* several Content-Type fields: the first wins */
	MIME_DEF_CTE_UNKNOWN,           /* body passed through undecoded */
	MIME_DEF_CTE_DUPLICATE,         /* the first wins */
	MIME_DEF_CTE_ON_COMPOSITE,      /* base64/QP on multipart or message, not decoded: ignored / leaf */
	MIME_DEF_ENCODED_COMPOSITE,     /* base64/QP body of a multipart or message: decoded and parsed */
	MIME_DEF_NO_BOUNDARY,           /* multipart without usable boundary: a leaf */
	MIME_DEF_NO_START_DELIMITER,    /* multipart whose first delimiter never came */
	MIME_DEF_NO_CLOSE_DELIMITER,    /* multipart ended by EOF or an outer delimiter */
	MIME_DEF_DEPTH_EXCEEDED,        /* nested too deep: kept as a leaf */
	MIME_DEF_PARTS_EXCEEDED,        /* later parts skipped */
	MIME_DEF_BASE64_INVALID,        /* junk characters or a dangling sextet */
	MIME_DEF_QP_INVALID,            /* "=" not followed by hex or a line break */
	MIME_DEF_UU_NO_BEGIN,           /* x-uuencode body without begin line: nothing decoded */
	MIME_DEF_UU_NO_END,             /* x-uuencode body without end line */
	MIME_DEF_UU_INVALID,            /* x-uuencode junk or empty lines skipped */
	MIME_DEF_DEFECTS_DROPPED,       /* too many defects at once; some not reported */
	MIME_DEF_COUNT                  /* sentinel */
};

struct mime_part_info {
	uint32_t index;       /* 0 = the message itself, then document order */
	uint32_t parent;      /* UINT32_MAX for the root */
	uint32_t child_num;   /* 1-based position among its parent's children */
	uint16_t depth;       /* root = 0 */
	enum mime_kind kind;
	enum mime_cte cte;
	bool has_ctype;       /* a valid Content-Type was given (else default) */
	char type[MIME_TOKEN_MAX];     /* lower case, e.g. "text" */
	char subtype[MIME_TOKEN_MAX];  /* lower case, e.g. "plain" */
	uint8_t boundary[MIME_BOUNDARY_MAX];
	size_t boundary_len;
};

struct mime_event {
	enum mime_ev_type type;
	const struct mime_part_info *part;
	struct span name, value;  /* HEADER */
	struct span data;         /* BODY, PREAMBLE, EPILOGUE */
	enum mime_defect defect;  /* DEFECT */
	uint32_t part_index;      /* DEFECT: the part it concerns */
	uint64_t offset;          /* input offset near the event (for defects) */
};

/* Per-part parser state; private, in the header only so callers can allocate. */
struct mime_frame {
	struct mime_part_info info;
	uint8_t mstate;       /* multipart: 0 preamble, 1 children, 2 epilogue, 3 skipping */
	uint32_t num_children;
	bool cte_seen;
	bool ctype_seen;
	size_t header_bytes;
	uint8_t enc;          /* encoded composite: enum in mime.c */
};

struct mime {
	/* input */
	struct span in;
	bool eof;
	uint64_t offset;
	/* state */
	uint8_t st;           /* enum in mime.c */
	uint8_t after;        /* action after closing */
	uint32_t close_to;    /* closing: pop frames until depth == close_to */
	bool closing;
	bool at_line_start;
	bool first_line;      /* first header line of the root */
	bool skip_to_lf;      /* rest of a too-long header line */
	uint8_t pend_eol;     /* held line ending before a possible delimiter: 0, 1 ("\n") or 2 ("\r\n") */
	bool pend_eol_contig; /* the held line ending lies just before in.p */
	bool pend_cr;         /* a CR at the end of the last input, maybe half of CRLF */
	bool field_emitted;   /* field[] was handed out; reset at the next call */
	bool carry_emitted;   /* carry[] was handed out; reset at the next call */
	bool flushed;         /* decoder of the top leaf flushed */
	bool carry_done;      /* carry[] holds a whole line (or all we will look at) */
	bool field_drop;      /* the current field is past MIME_HEADER_MAX: not emitted */
	bool field_cut;       /* the current field was cut at MIME_FIELD_MAX */
	bool start_child;     /* a message/rfc822 frame waits for its child */
	bool sniff;           /* the top frame's base64/QP body is read before deciding */
	size_t out_pend;      /* decoded bytes in out[] to hand out after a UU_BEGIN */
	uint32_t num_parts;
	uint32_t depth;       /* frames in use */
	uint32_t num_defects_dropped;
	/* decoders */
	struct mime_b64 b64;
	struct mime_qp qp;
	/*
	 * Encoded composite (enc): in, eof and the line state above then work
	 * on dec[], the decoded body; raw is what the caller pushed. The raw
	 * layer (rl_) only looks for delimiters of the multiparts below
	 * stack[enc_base] and decodes everything else.
	 */
	bool enc;
	bool raw_eof;
	bool rl_line_start;   /* at the start of a raw line */
	bool rl_cr;           /* a raw CR at the end of the input, maybe half of CRLF */
	bool rl_end;          /* the raw body ended: a delimiter (rl_close_to, rl_after) or the input */
	bool rl_cut;          /* that delimiter line was longer than the lookahead: skip its rest */
	bool rl_flushed;      /* the decoder was flushed at that end */
	uint8_t rl_eol;       /* held raw line ending: 0, 1 or 2 bytes */
	uint8_t rl_after;
	uint8_t enc_cte;
	uint32_t enc_base;
	uint32_t rl_close_to;
	size_t rl_carry_len;
	size_t dec_len;
	struct span raw;
	struct mime_b64 eb64;
	struct mime_qp eqp;
	struct mime_uu uu;
	/* queued defects */
	uint8_t defq[MIME_DEFECTS_QUEUED];
	uint32_t defq_part[MIME_DEFECTS_QUEUED];
	uint8_t defq_len;
	/* storage */
	size_t field_len, carry_len;
	struct mime_part_info ended;
	struct mime_frame stack[MIME_DEPTH_MAX + 1];
	uint8_t field[MIME_FIELD_MAX];
	uint8_t carry[MIME_LINE_MAX];
	uint8_t out[MIME_OUT_MAX + MIME_DEC_SLACK];
	uint8_t rl_carry[MIME_LOOKAHEAD];
	uint8_t dec[MIME_LINE_MAX + MIME_DEC_SLACK];
};

/* mime_init prepares caller storage for one message. */
void mime_init(struct mime *p);

/* mime_push lends the next input bytes until mime_next returns MIME_EV_MORE. */
void mime_push(struct mime *p, struct span in);

/* mime_finish says the input has ended; mime_next then drains to MIME_EV_END. */
void mime_finish(struct mime *p);

/*
 * mime_next fills *ev with the next event and returns its type. MIME_EV_MORE
 * means all pushed input is consumed. After MIME_EV_END it keeps returning END.
 */
enum mime_ev_type mime_next(struct mime *p, struct mime_event *ev);

const char *mime_defect_name(enum mime_defect d);
const char *mime_cte_name(enum mime_cte c);
const char *mime_ev_name(enum mime_ev_type t);

#endif
