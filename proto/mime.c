/*
 * mime.c - the incremental MIME event parser (see mime.h).
 *
 * Two layers, as STYLE.md §5 asks. Framing finds line ends with memchr
 * and keeps, across pushes, only what a decision needs: a partial header
 * line (carry[], bounded by MIME_LINE_MAX) or the start of a body line that
 * may be a delimiter (carry[], bounded by MIME_LOOKAHEAD). The line ending
 * before a possible delimiter belongs to the delimiter (RFC 2046 §5.1.1),
 * so it is held (pend_eol) until the next line proves not to be one.
 * Between such lines body bytes are handed out in large zero-copy runs.
 *
 * The frame stack holds every open part from the root to the current one;
 * closing (a delimiter, EOF) pops frames one PART_END per call.
 *
 * An encoded composite adds a layer below that machinery: the raw layer
 * (enc_fill) reads the caller's bytes, stops at a delimiter of a multipart
 * below the composite (held line ending and lookahead as above) and
 * decodes the rest into dec[], which the machinery then reads as its input;
 * the end of the raw body is its end of input, after which the delimiter's
 * closing follows (enc_leave). Same output for any cut of the raw input:
 * the decoders are streaming and the line state is kept as above.
 */
#include "mime.h"

#include <string.h>

enum mime_st {
	ST_BEGIN = 0, /* root PART_BEGIN not yet sent */
	ST_HDR,       /* reading the header block of the top frame */
	ST_BODY,      /* reading the body of the top frame */
	ST_DONE,      /* END sent */
};

static const uint8_t CRLF[2] = { '\r', '\n' };

enum mime_after {
	AFT_NONE = 0,
	AFT_CHILD,    /* a delimiter: the top multipart starts a new child */
	AFT_EPILOGUE, /* a close delimiter: the top multipart reads its epilogue */
	AFT_END,      /* end of input: everything closed */
};

enum { MS_PREAMBLE = 0, MS_CHILDREN = 1, MS_EPILOGUE = 2, MS_SKIP = 3 };

/* mime_frame.enc: a multipart or message part with a base64/QP body. */
enum {
	ENC_NONE = 0,     /* not encoded, or the header was ignored */
	ENC_SNIFF_B64,    /* base64: its first non-blank line decides (step_sniff) */
	ENC_SNIFF_QP,     /* QP multipart: a preamble line that decodes to its delimiter decides */
	ENC_SNIFF_ALWAYS, /* QP message: decoded unless its body starts with a delimiter */
	ENC_LAYER,        /* its body is being decoded (mime.enc) */
};

/* uuencode: line feeds per BODY event, so that the output fits out[] (mime_dec.h). */
#define MIME_UU_EVENT_LINES 238
_Static_assert((MIME_UU_EVENT_LINES + 2) * MIME_UU_LINE_OUT <= MIME_OUT_MAX, "uudecode output bound");

void mime_init(struct mime *p)
{
	memset(p, 0, offsetof(struct mime, ended));
	p->st = ST_BEGIN;
	p->first_line = true;
	p->at_line_start = true;
}

void mime_push(struct mime *p, struct span in)
{
	if (p->enc) {
		p->raw = in; /* in still holds decoded bytes of the last input */
		return;
	}
	p->in = in;
	p->pend_eol_contig = false; /* the held line ending was in the old buffer */
}

void mime_finish(struct mime *p)
{
	if (p->enc) {
		p->raw_eof = true;
		return;
	}
	p->eof = true;
}

/* find_lf is memchr for '\n' that accepts an empty (possibly NULL) range. */
static const uint8_t *find_lf(const uint8_t *p, size_t n)
{
	return n > 0 ? memchr(p, '\n', n) : NULL;
}

static void consume(struct mime *p, size_t n)
{
	if (n == 0) {
		return; /* the input may be an empty span with a NULL pointer */
	}
	span_skip(&p->in, n);
	if (!p->enc) {
		p->offset += n; /* decoded bytes: the raw layer counts the input */
	}
}

static struct mime_frame *top(struct mime *p)
{
	return &p->stack[p->depth > 0 ? p->depth - 1 : 0]; /* depth 0 only before the root begins */
}

static void defect_at(struct mime *p, enum mime_defect d, uint32_t part)
{
	if (p->defq_len < MIME_DEFECTS_QUEUED) {
		p->defq[p->defq_len] = (uint8_t)d;
		p->defq_part[p->defq_len] = part;
		p->defq_len++;
	} else {
		p->num_defects_dropped++;
	}
}

static void defect(struct mime *p, enum mime_defect d)
{
	defect_at(p, d, p->depth > 0 ? top(p)->info.index : 0);
}

static void push_part(struct mime *p)
{
	struct mime_frame *parent = p->depth > 0 ? top(p) : NULL;
	struct mime_frame *f = &p->stack[p->depth];

	memset(f, 0, offsetof(struct mime_frame, info) + offsetof(struct mime_part_info, type));
	f->mstate = 0;
	f->num_children = 0;
	f->cte_seen = false;
	f->ctype_seen = false;
	f->header_bytes = 0;
	f->enc = ENC_NONE;
	f->info.index = p->num_parts++;
	f->info.parent = parent ? parent->info.index : UINT32_MAX;
	f->info.child_num = parent ? ++parent->num_children : 0;
	f->info.depth = (uint16_t)p->depth;
	f->info.kind = MIME_KIND_LEAF;
	f->info.cte = MIME_CTE_7BIT;
	f->info.has_ctype = false;
	f->info.boundary_len = 0;
	/* RFC 2046 §5.1.5: in a digest the default is message/rfc822. */
	if (parent && parent->info.kind == MIME_KIND_MULTIPART && strcmp(parent->info.subtype, "digest") == 0) {
		memcpy(f->info.type, "message", 8);
		memcpy(f->info.subtype, "rfc822", 7);
	} else {
		memcpy(f->info.type, "text", 5);
		memcpy(f->info.subtype, "plain", 6);
	}
	p->depth++;
	p->st = ST_HDR;
	p->field_len = 0;
	p->field_drop = false;
	p->field_cut = false;
	p->at_line_start = true;
	p->pend_eol = 0;
	p->pend_cr = false;
	p->flushed = false;
	memset(&p->b64, 0, sizeof(p->b64));
	memset(&p->qp, 0, sizeof(p->qp));
	mime_uu_init(&p->uu);
}

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* strip_eol drops a trailing LF and then CR. */
static struct span strip_eol(struct span s)
{
	if (s.len > 0 && s.p[s.len - 1] == '\n') {
		s.len--;
		if (s.len > 0 && s.p[s.len - 1] == '\r') {
			s.len--;
		}
	}
	return s;
}

/* layer_lo: the first frame whose delimiters count in the current input (mime.enc: decoded bytes). */
static uint32_t layer_lo(const struct mime *p)
{
	return p->enc ? p->enc_base : 0;
}

static bool bounds_in(const struct mime *p, uint32_t lo, uint32_t hi)
{
	for (uint32_t i = lo; i < hi; i++) {
		if (p->stack[i].info.kind == MIME_KIND_MULTIPART && p->stack[i].mstate != MS_EPILOGUE) {
			return true;
		}
	}
	return false;
}

static bool any_bounds(const struct mime *p)
{
	return bounds_in(p, layer_lo(p), p->depth);
}

/* delim_content: a line without its line ending, as match_range looks at it. */
static struct span delim_content(struct span line)
{
	struct span c;

	if (line.len > MIME_LOOKAHEAD) {
		line.len = MIME_LOOKAHEAD;
	}
	c = strip_eol(line);
	if (c.len == line.len && c.len > 0 && c.p[c.len - 1] == '\r') {
		c.len--;
	}
	return c;
}

/* match_frame: is content (see delim_content) "--" boundary ["--"] WSP* of frame f? */
static bool match_frame(const struct mime_frame *f, struct span c, bool *out_close)
{
	size_t bl = f->info.boundary_len;

	if (f->info.kind != MIME_KIND_MULTIPART || f->mstate == MS_EPILOGUE) {
		return false;
	}
	if (c.len < 2 + bl || c.p[0] != '-' || c.p[1] != '-' || memcmp(c.p + 2, f->info.boundary, bl) != 0) {
		return false;
	}
	struct span rest = span_make(c.p + 2 + bl, c.len - 2 - bl);
	bool close = rest.len >= 2 && rest.p[0] == '-' && rest.p[1] == '-';

	if (close) {
		span_skip(&rest, 2);
	}
	while (rest.len > 0 && is_wsp(rest.p[0])) {
		span_skip(&rest, 1);
	}
	*out_close = close;
	return rest.len == 0;
}

/*
 * match_range: is `line` "--" boundary ["--"] WSP* EOL of an open
 * multipart among stack[lo..hi)? Only the first MIME_LOOKAHEAD bytes count,
 * wherever the line comes from (a header block, carry[], the input), so
 * that the answer does not depend on how the input was cut; a line cut
 * there (or at the end) may end in the CR of its CRLF.
 */
static bool match_range(const struct mime *p, struct span line, uint32_t lo, uint32_t hi, uint32_t *out_idx,
			bool *out_close)
{
	struct span c = delim_content(line);

	if (c.len < 2 || c.p[0] != '-' || c.p[1] != '-') {
		return false;
	}
	for (uint32_t i = hi; i-- > lo;) {
		if (match_frame(&p->stack[i], c, out_close)) {
			*out_idx = i;
			return true;
		}
	}
	return false;
}

/* match_boundary: match_range over the multiparts of the current input. */
static bool match_boundary(const struct mime *p, struct span line, uint32_t *out_idx, bool *out_close)
{
	return match_range(p, line, layer_lo(p), p->depth, out_idx, out_close);
}

static enum mime_cte parse_cte(struct span v)
{
	char tok[32];

	if (!rfc2231_first_token(v, tok, sizeof(tok))) {
		return MIME_CTE_UNKNOWN;
	}
	if (strcmp(tok, "7bit") == 0) {
		return MIME_CTE_7BIT;
	}
	if (strcmp(tok, "8bit") == 0) {
		return MIME_CTE_8BIT;
	}
	if (strcmp(tok, "binary") == 0) {
		return MIME_CTE_BINARY;
	}
	if (strcmp(tok, "quoted-printable") == 0) {
		return MIME_CTE_QP;
	}
	if (strcmp(tok, "base64") == 0) {
		return MIME_CTE_BASE64;
	}
	if (strcmp(tok, "x-uuencode") == 0 || strcmp(tok, "uuencode") == 0 || strcmp(tok, "x-uue") == 0 ||
	    strcmp(tok, "uue") == 0) {
		return MIME_CTE_UUENCODE; /* the names Python's email decodes */
	}
	return MIME_CTE_UNKNOWN;
}

/* note_header looks at the fields the parser itself needs. */
static void note_header(struct mime *p, struct span name, struct span value)
{
	struct mime_frame *f = top(p);

	if (span_eq_ci(name, "content-type")) {
		if (f->ctype_seen) {
			defect(p, MIME_DEF_CTYPE_DUPLICATE);
			return;
		}
		f->ctype_seen = true;
		char t[MIME_TOKEN_MAX], s[MIME_TOKEN_MAX];

		if (!rfc2231_ctype(value, t, s)) {
			defect(p, MIME_DEF_CTYPE_INVALID);
			return;
		}
		memcpy(f->info.type, t, sizeof(t));
		memcpy(f->info.subtype, s, sizeof(s));
		f->info.has_ctype = true;
		if (strcmp(t, "multipart") == 0) {
			struct span cs;
			size_t n = 0;
			unsigned flags = 0;

			if (rfc2231_param(value, "boundary", f->info.boundary, sizeof(f->info.boundary), &n, &cs,
					  &flags) &&
			    !(flags & RFC2231_F_TRUNCATED)) {
				while (n > 0 && is_wsp(f->info.boundary[n - 1])) {
					n--; /* as Python's get_boundary() */
				}
				f->info.boundary_len = n;
			}
		}
	} else if (span_eq_ci(name, "content-transfer-encoding")) {
		if (f->cte_seen) {
			defect(p, MIME_DEF_CTE_DUPLICATE);
			return;
		}
		f->cte_seen = true;
		f->info.cte = parse_cte(value);
		if (f->info.cte == MIME_CTE_UNKNOWN) {
			defect(p, MIME_DEF_CTE_UNKNOWN);
		}
	}
}

/* field_event turns field[] into a HEADER event; false if it is dropped. */
static bool field_event(struct mime *p, struct mime_event *ev)
{
	struct span f = span_make(p->field, p->field_len);
	const uint8_t *colon = memchr(f.p, ':', f.len);

	if (p->field_drop || colon == NULL) {
		p->field_len = 0;
		p->field_drop = false;
		p->field_cut = false;
		return false;
	}
	p->field_emitted = true;
	struct span name = span_make(f.p, (size_t)(colon - f.p));
	struct span value = span_make(colon + 1, f.len - name.len - 1);

	while (name.len > 0 && is_wsp(name.p[name.len - 1])) {
		name.len--; /* RFC 5322 §4.5.3 obs: WSP before the colon */
	}
	value = span_trim_ws(value);
	note_header(p, name, value);
	ev->type = MIME_EV_HEADER;
	ev->part = &top(p)->info;
	ev->name = name;
	ev->value = value;
	return true;
}

static void field_append(struct mime *p, struct span s)
{
	struct mime_frame *f = top(p);
	size_t room = MIME_FIELD_MAX - p->field_len;

	f->header_bytes += s.len;
	if (f->header_bytes > MIME_HEADER_MAX && !p->field_drop) {
		if (f->header_bytes - s.len <= MIME_HEADER_MAX) {
			defect(p, MIME_DEF_HEADER_BLOCK_TOO_LARGE);
		}
		p->field_drop = true;
	}
	if (p->field_drop) {
		return;
	}
	if (s.len > room) {
		if (!p->field_cut) {
			defect(p, MIME_DEF_HEADER_FIELD_TOO_LONG);
			p->field_cut = true;
		}
		s.len = room;
	}
	memcpy(p->field + p->field_len, s.p, s.len);
	p->field_len += s.len;
}

/* finish_headers resolves the part's kind and sends HEADERS_END. */
static void finish_headers(struct mime *p, struct mime_event *ev)
{
	struct mime_frame *f = top(p);
	struct mime_part_info *in = &f->info;

	bool multipart = strcmp(in->type, "multipart") == 0;
	bool encoded = in->cte == MIME_CTE_BASE64 || in->cte == MIME_CTE_QP;

	in->kind = MIME_KIND_LEAF;
	if (multipart) {
		if (in->boundary_len > 0) {
			in->kind = MIME_KIND_MULTIPART;
		} else {
			defect(p, MIME_DEF_NO_BOUNDARY);
		}
	} else if (strcmp(in->type, "message") == 0 &&
		   (strcmp(in->subtype, "rfc822") == 0 || strcmp(in->subtype, "global") == 0 ||
		    strcmp(in->subtype, "news") == 0)) {
		if (encoded && p->enc) {
			defect(p, MIME_DEF_CTE_ON_COMPOSITE); /* one decoded layer only: kept as an encoded leaf */
		} else if (p->num_parts >= MIME_PARTS_MAX) {
			defect(p, MIME_DEF_PARTS_EXCEEDED);
		} else {
			in->kind = MIME_KIND_MESSAGE;
		}
	}
	if (in->kind != MIME_KIND_LEAF && p->depth > MIME_DEPTH_MAX - 1) {
		defect(p, MIME_DEF_DEPTH_EXCEEDED);
		in->kind = MIME_KIND_LEAF;
	}
	p->sniff = false;
	if (encoded && in->kind != MIME_KIND_LEAF && !p->enc) {
		/* RFC 2045 §6.4 forbids it; whether the body is encoded is read from it. */
		f->enc = in->cte == MIME_CTE_BASE64 ? ENC_SNIFF_B64
			 : in->kind == MIME_KIND_MULTIPART ? ENC_SNIFF_QP
							      : ENC_SNIFF_ALWAYS;
		p->sniff = f->enc != ENC_SNIFF_QP;
	} else if (encoded && multipart) {
		/*
		 * Not decoded as a composite (inside a decoded body, too deep, no
		 * boundary): the header is ignored for the structure, as Python
		 * does; a multipart that is a leaf (no boundary) is decoded as one.
		 */
		defect(p, MIME_DEF_CTE_ON_COMPOSITE);
	}
	p->st = ST_BODY;
	p->at_line_start = true;
	p->pend_eol = 0;
	p->pend_cr = false;
	p->start_child = in->kind == MIME_KIND_MESSAGE && !p->sniff;
	ev->type = MIME_EV_HEADERS_END;
	ev->part = in;
}

/* skip_rest drops the rest of a line that was cut; false: need more input. */
static bool skip_rest(struct mime *p)
{
	if (p->skip_to_lf) {
		const uint8_t *lf = find_lf(p->in.p, p->in.len);

		if (lf == NULL) {
			consume(p, p->in.len);
			if (!p->eof) {
				return false;
			}
			p->skip_to_lf = false;
			return true;
		}
		consume(p, (size_t)(lf + 1 - p->in.p));
		p->skip_to_lf = false;
	}
	return true;
}

/*
 * hdr_line gets the next complete header line (with its line ending) from
 * carry[] or, zero-copy, from the input. False: need more input. A line
 * longer than MIME_LINE_MAX (line ending included) is cut there, with a
 * defect, whether it came whole or in pieces; the rest is skipped.
 */
static bool hdr_line(struct mime *p, struct span *out_line, bool *out_carry)
{
	if (!skip_rest(p)) {
		return false;
	}
	if (p->carry_len > 0 && !p->carry_done) {
		const uint8_t *lf = find_lf(p->in.p, p->in.len);
		size_t n = lf ? (size_t)(lf + 1 - p->in.p) : p->in.len;
		size_t room = MIME_LINE_MAX - p->carry_len;

		if (n > room) {
			n = room;
			lf = NULL;
			p->skip_to_lf = true;
			p->carry_done = true;
			defect(p, MIME_DEF_HEADER_LINE_TOO_LONG);
		}
		if (n > 0) {
			if (n > 0) {
				memcpy(p->carry + p->carry_len, p->in.p, n);
			}
		}
		p->carry_len += n;
		consume(p, n);
		if (lf != NULL || p->eof) {
			p->carry_done = true;
		}
	}
	if (p->carry_len > 0) {
		if (!p->carry_done) {
			return false;
		}
		*out_line = span_make(p->carry, p->carry_len);
		*out_carry = true;
		return true;
	}
	const uint8_t *lf = find_lf(p->in.p, p->in.len);
	size_t len = lf != NULL ? (size_t)(lf + 1 - p->in.p) : p->in.len;

	*out_carry = false;
	if (len > MIME_LINE_MAX) {
		/*
		 * Too long, known now: cut it into carry[] as the branch above
		 * does when the line comes in pieces, so that step_hdr may look
		 * at it more than once and the rest is skipped only after it.
		 */
		memcpy(p->carry, p->in.p, MIME_LINE_MAX);
		p->carry_len = MIME_LINE_MAX;
		p->carry_done = true;
		p->skip_to_lf = true;
		consume(p, MIME_LINE_MAX);
		defect(p, MIME_DEF_HEADER_LINE_TOO_LONG);
		*out_line = span_make(p->carry, p->carry_len);
		*out_carry = true;
		return true;
	}
	if (lf != NULL) {
		*out_line = span_make(p->in.p, len);
		return true;
	}
	if (p->in.len == 0) {
		return false;
	}
	if (p->eof) {
		*out_line = p->in;
		return true;
	}
	/* in.len <= MIME_LINE_MAX: whether the line is too long is known when more comes. */
	memcpy(p->carry, p->in.p, p->in.len);
	p->carry_len = p->in.len;
	p->carry_done = false;
	consume(p, p->in.len);
	return false;
}

static void line_done(struct mime *p, struct span line, bool from_carry)
{
	if (from_carry) {
		p->carry_len = 0;
		p->carry_done = false;
	} else {
		consume(p, line.len);
	}
}

/* begin_close arranges the pops after a delimiter of frame idx or at EOF. */
static void begin_close(struct mime *p, uint32_t keep_depth, enum mime_after after)
{
	p->closing = true;
	p->close_to = keep_depth;
	p->after = (uint8_t)after;
	p->pend_eol = 0;
	p->pend_cr = false;
}

static bool hdr_valid_name(struct span content)
{
	const uint8_t *colon = memchr(content.p, ':', content.len);

	if (colon == NULL) {
		return false;
	}
	size_t n = (size_t)(colon - content.p);

	while (n > 0 && is_wsp(content.p[n - 1])) {
		n--;
	}
	for (size_t i = 0; i < n; i++) {
		if (content.p[i] < 33 || content.p[i] > 126) {
			return false;
		}
	}
	return n > 0 || colon == content.p;
}

/* step_hdr: one header line. True when *ev holds an event. */
static bool step_hdr(struct mime *p, struct mime_event *ev, bool *out_more)
{
	struct span line;
	bool from_carry;
	uint32_t idx;
	bool close;

	if (!hdr_line(p, &line, &from_carry)) {
		if (!p->eof) {
			*out_more = true;
			return false;
		}
		/* End of input inside the header block. */
		if (p->field_len > 0 && field_event(p, ev)) {
			return true;
		}
		p->field_len = 0;
		finish_headers(p, ev);
		return true;
	}
	struct span content = strip_eol(line);

	if (p->first_line && p->depth == 1) {
		if (content.len >= 3 && memcmp(content.p, "\xef\xbb\xbf", 3) == 0) {
			/* A UTF-8 BOM before the first field (seen from Windows tools). */
			if (from_carry) {
				memmove(p->carry, p->carry + 3, p->carry_len - 3);
				p->carry_len -= 3;
			} else {
				consume(p, 3);
			}
			return false;
		}
		p->first_line = false;
		if (content.len >= 5 && memcmp(content.p, "From ", 5) == 0) {
			line_done(p, line, from_carry); /* mbox separator line */
			return false;
		}
	}
	p->first_line = false;
	if (content.len >= 2 && content.p[0] == '-' && content.p[1] == '-' && match_boundary(p, line, &idx, &close)) {
		if (idx + 2 == p->depth && !close && p->field_len == 0 && top(p)->header_bytes == 0) {
			/* "--b" right after "--b": no empty part in between (Python's reading of RFC 2046 §5.1.1). */
			line_done(p, line, from_carry);
			return false;
		}
		/* An enclosing delimiter inside a header block: the part ends here. */
		if (p->field_len > 0 && !p->field_emitted && field_event(p, ev)) {
			return true;
		}
		p->field_len = 0;
		finish_headers(p, ev);
		return true;
	}
	if (content.len == 0) {
		if (p->field_len > 0 && field_event(p, ev)) {
			return true;
		}
		p->field_len = 0;
		line_done(p, line, from_carry);
		finish_headers(p, ev);
		return true;
	}
	if (is_wsp(content.p[0])) {
		if (p->field_len > 0 || p->field_drop) {
			field_append(p, content);
		} else {
			defect(p, MIME_DEF_HEADER_CONT_FIRST);
		}
		line_done(p, line, from_carry);
		return false;
	}
	if (p->field_len > 0 || p->field_drop) {
		/* This line starts a new field: hand out the finished one first. */
		if (field_event(p, ev)) {
			return true;
		}
	}
	if (hdr_valid_name(content)) {
		p->field_drop = false;
		p->field_cut = false;
		field_append(p, content);
		line_done(p, line, from_carry);
		return false;
	}
	/* Not a header field: the body starts with this line (Python, GMime), all of it. */
	defect(p, MIME_DEF_HEADER_NO_COLON);
	if (from_carry) {
		p->carry_done = true;
	}
	p->skip_to_lf = false;
	finish_headers(p, ev);
	return true;
}

/* uu_name_event hands out the begin line's file name; the n bytes decoded after it follow. */
static bool uu_name_event(struct mime *p, struct mime_event *ev, size_t n)
{
	p->uu.name_ready = false;
	p->out_pend = n;
	ev->type = MIME_EV_UU_BEGIN;
	ev->part = &top(p)->info;
	ev->value = span_make(p->uu.name, p->uu.name_len);
	return true;
}

/* uu_limit: the end of at most MIME_UU_EVENT_LINES lines from pos (bounded decoded size). */
static const uint8_t *uu_limit(const uint8_t *pos, const uint8_t *limit)
{
	for (int i = 0; i < MIME_UU_EVENT_LINES; i++) {
		const uint8_t *lf = find_lf(pos, (size_t)(limit - pos));

		if (lf == NULL) {
			return limit;
		}
		pos = lf + 1;
	}
	return pos;
}

/* emit_data runs raw body bytes through the top frame's decoder. */
static bool emit_data(struct mime *p, struct mime_event *ev, struct span raw)
{
	struct mime_frame *f = top(p);

	if (raw.len == 0) {
		return false;
	}
	ev->part = &f->info;
	if (f->info.kind == MIME_KIND_LEAF) {
		ev->type = MIME_EV_BODY;
		if (f->info.cte == MIME_CTE_BASE64) {
			ev->data = span_make(p->out, mime_b64_decode(&p->b64, p->out, raw));
		} else if (f->info.cte == MIME_CTE_QP) {
			ev->data = span_make(p->out, mime_qp_decode(&p->qp, p->out, raw));
		} else if (f->info.cte == MIME_CTE_UUENCODE) {
			/* raw holds at most MIME_UU_EVENT_LINES + 1 line feeds (run, the callers of emit_data). */
			size_t n = mime_uu_decode(&p->uu, p->out, raw);

			if (p->uu.name_ready) {
				return uu_name_event(p, ev, n);
			}
			ev->data = span_make(p->out, n);
		} else {
			ev->data = raw;
		}
	} else if (f->mstate == MS_PREAMBLE) {
		ev->type = MIME_EV_PREAMBLE;
		ev->data = raw;
	} else if (f->mstate == MS_EPILOGUE) {
		ev->type = MIME_EV_EPILOGUE;
		ev->data = raw;
	} else {
		return false; /* skipping parts past the limit */
	}
	return ev->data.len > 0;
}

/* emit_eol hands out a held line ending as data. */
static bool emit_eol(struct mime *p, struct mime_event *ev)
{
	struct span e = p->pend_eol == 2 ? span_make(CRLF, 2) : span_make(CRLF + 1, 1);

	p->pend_eol = 0;
	return emit_data(p, ev, e);
}

/* run hands out body bytes from the input up to the next line that may be a delimiter. */
static bool run(struct mime *p, struct mime_event *ev, bool bounded)
{
	if (p->pend_eol > 0 && !p->pend_eol_contig) {
		return emit_eol(p, ev);
	}
	if (p->pend_cr) {
		if (p->in.len == 0) {
			return false;
		}
		p->pend_cr = false;
		if (p->in.p[0] == '\n') {
			consume(p, 1);
			if (bounded) {
				p->pend_eol = 2;
				p->pend_eol_contig = false;
				p->at_line_start = true;
				return false;
			}
			return emit_data(p, ev, span_make(CRLF, 2));
		}
		return emit_data(p, ev, span_make(CRLF, 1));
	}
	const uint8_t *start = p->in.p - p->pend_eol;
	size_t lim = MIME_OUT_MAX - p->pend_eol;
	const uint8_t *in_end = p->in.p + p->in.len;
	const uint8_t *limit = p->in.p + (p->in.len < lim ? p->in.len : lim);
	const uint8_t *pos = p->in.p;

	if (top(p)->info.kind == MIME_KIND_LEAF && top(p)->info.cte == MIME_CTE_UUENCODE) {
		limit = uu_limit(pos, limit);
	}

	p->pend_eol = 0;
	if (!bounded) {
		consume(p, (size_t)(limit - p->in.p));
		return emit_data(p, ev, span_make(start, (size_t)(limit - start)));
	}
	for (;;) {
		const uint8_t *lf = find_lf(pos, (size_t)(limit - pos));

		if (lf == NULL) {
			const uint8_t *end = limit;

			consume(p, (size_t)(limit - p->in.p));
			p->at_line_start = false;
			if (end == in_end && end > start && end[-1] == '\r' && !p->eof) {
				end--;
				p->pend_cr = true;
			}
			return emit_data(p, ev, span_make(start, (size_t)(end - start)));
		}
		const uint8_t *next = lf + 1;

		if (next < limit && *next != '-') {
			pos = next;
			continue;
		}
		uint8_t eol = (lf > pos && lf[-1] == '\r') ? 2 : 1;

		consume(p, (size_t)(next - p->in.p));
		p->pend_eol = eol;
		p->pend_eol_contig = true;
		p->at_line_start = true;
		return emit_data(p, ev, span_make(start, (size_t)(next - eol - start)));
	}
}

/* ---- encoded composites: the raw layer ---- */

enum enc_fill { FILL_MORE = 0, FILL_DATA, FILL_END };

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static void raw_consume(struct mime *p, size_t n)
{
	if (n > 0) {
		span_skip(&p->raw, n);
		p->offset += n;
	}
}

/* enc_dec decodes raw bytes onto dec[]; s.len <= MIME_LINE_MAX - dec_len (decoded <= raw + held). */
static void enc_dec(struct mime *p, struct span s)
{
	uint8_t *o = p->dec + p->dec_len;

	if (s.len == 0) {
		return;
	}
	p->dec_len += p->enc_cte == MIME_CTE_BASE64 ? mime_b64_decode(&p->eb64, o, s) : mime_qp_decode(&p->eqp, o, s);
}

/* enc_flush_eol decodes a held raw line ending (base64 skips line breaks anyway). */
static void enc_flush_eol(struct mime *p)
{
	if (p->rl_eol > 0 && p->enc_cte != MIME_CTE_BASE64) {
		enc_dec(p, span_make(CRLF + 2 - p->rl_eol, p->rl_eol));
	}
	p->rl_eol = 0;
}

/*
 * enc_line decodes a raw line start (line.len > 0) that is no delimiter:
 * a whole line's ending is held, a CR that may be half of one too.
 */
static void enc_line(struct mime *p, struct span line)
{
	if (line.p[line.len - 1] == '\n') {
		struct span c = strip_eol(line);

		enc_dec(p, c);
		p->rl_eol = (uint8_t)(line.len - c.len);
		return;
	}
	p->rl_line_start = false;
	if (line.p[line.len - 1] == '\r' && !(p->raw_eof && p->raw.len == 0)) {
		line.len--;
		p->rl_cr = true;
	}
	enc_dec(p, line);
}

/*
 * enc_enter starts decoding the top frame's body. `first` is a line start
 * already read (in carry[] or consumed from the input) that is no
 * delimiter of an open multipart; the rest of the raw body is in `in`.
 */
static void enc_enter(struct mime *p, struct span first)
{
	struct mime_frame *f = top(p);

	defect(p, MIME_DEF_ENCODED_COMPOSITE);
	f->enc = ENC_LAYER;
	p->enc = true;
	p->enc_base = p->depth - 1;
	p->enc_cte = (uint8_t)f->info.cte;
	memset(&p->eb64, 0, sizeof(p->eb64));
	memset(&p->eqp, 0, sizeof(p->eqp));
	p->raw = p->in;
	p->raw_eof = p->eof;
	p->rl_line_start = true;
	p->rl_cr = false;
	p->rl_end = false;
	p->rl_flushed = false;
	p->rl_cut = false;
	p->rl_eol = 0;
	p->rl_carry_len = 0;
	p->dec_len = 0;
	if (first.len > 0) {
		enc_line(p, first);
	}
	p->in = span_make(p->dec, p->dec_len);
	p->eof = false;
	p->carry_len = 0;
	p->carry_done = false;
	p->skip_to_lf = false;
	p->pend_eol = 0;
	p->pend_eol_contig = false;
	p->pend_cr = false;
	p->at_line_start = true;
}

/*
 * enc_fill decodes the next raw bytes into dec[]: FILL_DATA (dec_len > 0),
 * FILL_MORE (push more raw input), or FILL_END (the raw body has ended:
 * rl_close_to/rl_after say how). Line endings before a line that starts
 * with '-' are held until the line proves not to be a delimiter of a
 * multipart below the decoded one (RFC 2046 §5.1.1), as in step_body.
 */
static enum enc_fill enc_fill(struct mime *p)
{
	bool outer = bounds_in(p, 0, p->enc_base);
	enum enc_fill wait;

	p->dec_len = 0;
	for (;;) {
		/*
		 * A step decodes at most room bytes, or MIME_LOOKAHEAD + 3, and its
		 * output exceeds its input by at most the bytes the decoder held
		 * (< MIME_DEC_SLACK): dec[] has MIME_DEC_SLACK bytes past MIME_LINE_MAX.
		 */
		size_t room = p->dec_len < MIME_LINE_MAX ? MIME_LINE_MAX - p->dec_len : 0;

		if (room < MIME_LOOKAHEAD + 3 + MIME_DEC_SLACK) {
			return FILL_DATA;
		}
		wait = p->dec_len > 0 ? FILL_DATA : FILL_MORE;
		if (p->rl_end && !p->rl_flushed) {
			/* The decoder's last bytes (its complaints wait for enc_leave, a point independent of cuts). */
			p->rl_flushed = true;
			if (p->enc_cte == MIME_CTE_BASE64) {
				p->dec_len += mime_b64_finish(&p->eb64, p->dec + p->dec_len);
			} else {
				p->dec_len += mime_qp_finish(&p->eqp, p->dec + p->dec_len);
			}
		}
		if (p->rl_end) {
			return p->dec_len > 0 ? FILL_DATA : FILL_END;
		}
		if (p->rl_line_start) {
			if (p->rl_carry_len == 0) {
				if (p->raw.len == 0) {
					if (!p->raw_eof) {
						return wait;
					}
					/* End of input: a part's last line ending goes with the missing delimiter. */
					if (!outer) {
						enc_flush_eol(p);
					}
					p->rl_eol = 0;
					p->rl_end = true;
					p->rl_close_to = 0;
					p->rl_after = AFT_END;
					continue;
				}
				if (p->raw.p[0] != '-' || !outer) {
					enc_flush_eol(p);
					p->rl_line_start = false;
					continue;
				}
			}
			/* A line that may be a delimiter: its first MIME_LOOKAHEAD bytes decide. */
			size_t lim = min_sz(p->raw.len, MIME_LOOKAHEAD - p->rl_carry_len);
			const uint8_t *lf = find_lf(p->raw.p, lim);
			size_t n = lf != NULL ? (size_t)(lf + 1 - p->raw.p) : lim;
			uint32_t idx;
			bool close;

			if (n > 0) {
				memcpy(p->rl_carry + p->rl_carry_len, p->raw.p, n);
				p->rl_carry_len += n;
				raw_consume(p, n);
			}
			if (lf == NULL && p->rl_carry_len < MIME_LOOKAHEAD && !p->raw_eof) {
				return wait;
			}
			struct span line = span_make(p->rl_carry, p->rl_carry_len);

			p->rl_carry_len = 0;
			if (match_range(p, line, 0, p->enc_base, &idx, &close)) {
				p->rl_cut = line.p[line.len - 1] != '\n';
				p->rl_eol = 0;
				p->rl_end = true;
				p->rl_close_to = idx + 1;
				p->rl_after = close ? AFT_EPILOGUE : AFT_CHILD;
				continue;
			}
			enc_flush_eol(p);
			enc_line(p, line);
			continue;
		}
		if (p->rl_cr) {
			/* a CR held at the end of the last input: CRLF (a line ending) or data */
			if (p->raw.len == 0 && !p->raw_eof) {
				return wait;
			}
			p->rl_cr = false;
			if (p->raw.len > 0 && p->raw.p[0] == '\n') {
				raw_consume(p, 1);
				p->rl_eol = 2;
				p->rl_line_start = true;
			} else {
				enc_dec(p, span_make(CRLF, 1));
			}
			continue;
		}
		if (p->raw.len == 0) {
			if (!p->raw_eof) {
				return wait;
			}
			p->rl_end = true;
			p->rl_close_to = 0;
			p->rl_after = AFT_END;
			continue;
		}
		size_t lim = min_sz(p->raw.len, room);

		if (!outer) {
			/* no delimiter to look for: the rest of the input is body */
			enc_dec(p, span_make(p->raw.p, lim));
			raw_consume(p, lim);
			continue;
		}
		const uint8_t *lf = find_lf(p->raw.p, lim);

		if (lf == NULL) {
			bool hold = p->raw.p[lim - 1] == '\r' && !(p->raw_eof && lim == p->raw.len);

			enc_dec(p, span_make(p->raw.p, lim - hold));
			raw_consume(p, lim);
			p->rl_cr = hold;
			continue;
		}
		size_t n = (size_t)(lf - p->raw.p);
		uint8_t eol = n > 0 && p->raw.p[n - 1] == '\r' ? 2 : 1;

		enc_dec(p, span_make(p->raw.p, n + 1 - eol));
		raw_consume(p, n + 1);
		p->rl_eol = eol;
		p->rl_line_start = true;
	}
}

/* enc_leave: the decoded body has been read to its end; back to the raw input, then the delimiter's closing. */
static void enc_leave(struct mime *p)
{
	uint32_t part = p->stack[p->enc_base].info.index;

	if (p->enc_cte == MIME_CTE_BASE64 ? p->eb64.num_junk > 0 : p->eqp.num_bad > 0) {
		defect_at(p, p->enc_cte == MIME_CTE_BASE64 ? MIME_DEF_BASE64_INVALID : MIME_DEF_QP_INVALID, part);
	}
	p->enc = false;
	p->in = p->raw;
	p->eof = p->raw_eof;
	p->raw = span_make(NULL, 0);
	p->skip_to_lf = p->rl_cut; /* the rest of a delimiter line cut at the lookahead */
	p->pend_eol_contig = false;
	begin_close(p, p->rl_close_to, (enum mime_after)p->rl_after);
}

/* text_like: UTF-8 text without control characters but HT, CR, LF (a sequence may be cut at the end). */
static bool text_like(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t c = s[i++];
		size_t k = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 0;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f) {
				return false;
			}
			continue;
		}
		if (k == 0 || c > 0xf4) {
			return false;
		}
		for (; k > 0 && i < n; k--) {
			if ((s[i++] & 0xc0) != 0x80) {
				return false;
			}
		}
	}
	return true;
}

/*
 * b64_line: does the first non-blank line of a body declared base64 look
 * like base64 (alphabet only, at most two '=' at the end, at least 8
 * characters, a multiple of 4 when the line is whole) of text (a preamble,
 * a delimiter, header fields)? A word such as "preamble" passes the first
 * test, not the second. Only the first MIME_LOOKAHEAD bytes count,
 * wherever the line comes from.
 */
static bool b64_line(struct span line)
{
	bool whole = line.len <= MIME_LOOKAHEAD && line.len > 0 && line.p[line.len - 1] == '\n';
	struct span c = whole ? strip_eol(line) : span_make(line.p, min_sz(line.len, MIME_LOOKAHEAD));
	size_t n = 0, pad = 0;

	while (c.len > 0 && (is_wsp(c.p[c.len - 1]) || c.p[c.len - 1] == '\r')) {
		c.len--;
	}
	for (size_t i = 0; i < c.len; i++) {
		uint8_t ch = c.p[i];

		if (ch == '=') {
			pad++;
		} else if (pad == 0 && ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
					ch == '+' || ch == '/')) {
			n++;
		} else {
			return false;
		}
	}
	if (pad > 2 || n + pad < 8 || (whole && (n + pad) % 4 != 0)) {
		return false;
	}
	uint8_t buf[MIME_LOOKAHEAD];
	struct mime_b64 st;

	memset(&st, 0, sizeof(st));
	return text_like(buf, mime_b64_decode(&st, buf, c));
}

static bool is_blank(struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (!is_wsp(s.p[i])) {
			return false;
		}
	}
	return true;
}

/*
 * step_sniff: the top frame is a multipart or message whose body is
 * declared base64 (or, for a message, quoted-printable). Its first line
 * (blank lines skipped for base64, MIME_LOOKAHEAD bytes looked at) decides
 * whether the body is decoded (enc_enter) or the header is ignored, as
 * Python's email always does; the line then stays in carry[] for the
 * header or body reader.
 */
static bool step_sniff(struct mime *p, bool *out_more)
{
	struct mime_frame *f = top(p);
	uint32_t idx;
	bool close;

	for (;;) {
		if (p->carry_len == 0 && !skip_rest(p)) {
			*out_more = true;
			return false;
		}
		if (p->carry_len == 0 || !p->carry_done) {
			size_t lim = min_sz(p->in.len, MIME_LOOKAHEAD > p->carry_len ? MIME_LOOKAHEAD - p->carry_len : 0);
			const uint8_t *lf = find_lf(p->in.p, lim);
			size_t n = lf != NULL ? (size_t)(lf + 1 - p->in.p) : lim;

			if (n > 0) {
				memcpy(p->carry + p->carry_len, p->in.p, n);
				p->carry_len += n;
				consume(p, n);
			}
			if (lf == NULL && p->carry_len < MIME_LOOKAHEAD && !p->eof) {
				*out_more = true;
				return false;
			}
			p->carry_done = true;
		}
		struct span line = span_make(p->carry, p->carry_len);

		if (f->enc == ENC_SNIFF_B64 && line.len > 0 && line.p[line.len - 1] == '\n' &&
		    is_blank(strip_eol(line))) {
			p->carry_len = 0; /* blank lines before base64: dropped */
			p->carry_done = false;
			continue;
		}
		break;
	}
	struct span line = span_make(p->carry, p->carry_len);
	bool complete = line.len > 0 && line.p[line.len - 1] == '\n';

	p->sniff = false;
	p->start_child = f->info.kind == MIME_KIND_MESSAGE;
	if (line.len > 0 && !match_boundary(p, line, &idx, &close) &&
	    (f->enc == ENC_SNIFF_ALWAYS || b64_line(line))) {
		enc_enter(p, line);
		return false;
	}
	/* Not encoded after all: the header is ignored and the line read as it stands. */
	defect(p, MIME_DEF_CTE_ON_COMPOSITE);
	f->enc = ENC_NONE;
	if (p->carry_len == 0) {
		p->carry_done = false;
	} else if (!complete && !p->eof && f->info.kind == MIME_KIND_MESSAGE && p->carry_len < MIME_LINE_MAX) {
		p->carry_done = false; /* a header line: hdr_line reads on to its end */
	}
	return false;
}

/*
 * qp_delim: the top frame is a multipart declared quoted-printable, still
 * in its preamble; is `line`, which is no delimiter as it stands, one of
 * its delimiters once decoded ("--=3D_b" for boundary "=_b")?
 */
static bool qp_delim(const struct mime *p, struct span line)
{
	const struct mime_frame *f = &p->stack[p->depth - 1]; /* in a body: depth >= 1 */
	uint8_t buf[MIME_LOOKAHEAD + MIME_DEC_SLACK];
	struct mime_qp st;
	bool close;
	size_t n;

	if (f->enc != ENC_SNIFF_QP || f->mstate != MS_PREAMBLE || p->enc) {
		return false;
	}
	line.len = min_sz(line.len, MIME_LOOKAHEAD);
	if (memchr(line.p, '=', line.len) == NULL) {
		return false; /* decodes to itself */
	}
	memset(&st, 0, sizeof(st));
	n = mime_qp_decode(&st, buf, line);
	n += mime_qp_finish(&st, buf + n); /* decoded bytes never outnumber the input */
	return match_frame(f, delim_content(span_make(buf, n)), &close);
}

/* step_body: one step in a body. True when *ev holds an event. */
static bool step_body(struct mime *p, struct mime_event *ev, bool *out_more)
{
	bool bounded = any_bounds(p);
	uint32_t idx;
	bool close;

	if (p->carry_len == 0 && !skip_rest(p)) {
		*out_more = true; /* the rest of a delimiter line before an epilogue */
		return false;
	}
	if (p->carry_len > 0) {
		/* A line start kept from the last input (or a non-field header line). */
		if (!p->carry_done) {
			const uint8_t *lf = find_lf(p->in.p, p->in.len);
			size_t n = lf ? (size_t)(lf + 1 - p->in.p) : p->in.len;
			size_t room = MIME_LOOKAHEAD > p->carry_len ? MIME_LOOKAHEAD - p->carry_len : 0;

			if (n >= room) {
				n = room;
				p->carry_done = true;
			}
			if (n > 0) {
				memcpy(p->carry + p->carry_len, p->in.p, n);
			}
			p->carry_len += n;
			consume(p, n);
			if (p->carry_len > 0 && p->carry[p->carry_len - 1] == '\n') {
				p->carry_done = true;
			}
			if (!p->carry_done) {
				if (!p->eof) {
					*out_more = true;
					return false;
				}
				p->carry_done = true;
			}
		}
		struct span line = span_make(p->carry, p->carry_len);

		if (bounded && match_boundary(p, line, &idx, &close)) {
			/* A delimiter line cut at the lookahead: the rest of it goes too. */
			p->skip_to_lf = p->skip_to_lf || line.p[line.len - 1] != '\n';
			p->carry_len = 0;
			p->carry_done = false;
			begin_close(p, idx + 1, close ? AFT_EPILOGUE : AFT_CHILD);
			return false;
		}
		if (bounded && qp_delim(p, line)) {
			enc_enter(p, line); /* the delimiter's held line ending is dropped */
			return false;
		}
		if (p->pend_eol > 0) {
			if (emit_eol(p, ev)) {
				return true;
			}
		}
		struct span content = line;
		bool complete = line.p[line.len - 1] == '\n';

		if (complete && bounded) {
			content = strip_eol(line);
			p->pend_eol = (uint8_t)(line.len - content.len);
			p->pend_eol_contig = false;
			p->at_line_start = true;
		} else if (complete) {
			p->at_line_start = true;
		} else {
			p->at_line_start = false;
			if (content.p[content.len - 1] == '\r' && !p->eof) {
				content.len--;
				p->pend_cr = true;
			}
		}
		/*
		 * The carried line is used up now. When it gives an event, the
		 * event may point into carry[], so it is released at the next
		 * call; when it gives none (base64 junk, a skipped part), release
		 * it here, or the loop in mime_next would hand it out again
		 * (decoding it twice, or for ever).
		 */
		if (emit_data(p, ev, content)) {
			p->carry_emitted = true;
			return true;
		}
		p->carry_len = 0;
		p->carry_done = false;
		return false;
	}
	if (p->at_line_start && !p->pend_cr) {
		if (p->in.len == 0) {
			goto input_end;
		}
		if (bounded && p->in.p[0] == '-') {
			size_t lim = p->in.len < MIME_LOOKAHEAD ? p->in.len : MIME_LOOKAHEAD;
			const uint8_t *lf = find_lf(p->in.p, lim);

			if (lf != NULL || p->in.len >= MIME_LOOKAHEAD || p->eof) {
				struct span line = span_make(p->in.p, lf ? (size_t)(lf + 1 - p->in.p) : lim);

				if (match_boundary(p, line, &idx, &close)) {
					consume(p, line.len);
					p->skip_to_lf = lf == NULL;
					begin_close(p, idx + 1, close ? AFT_EPILOGUE : AFT_CHILD);
					return false;
				}
				if (qp_delim(p, line)) {
					consume(p, line.len);
					enc_enter(p, line);
					return false;
				}
			} else {
				memcpy(p->carry, p->in.p, p->in.len);
				p->carry_len = p->in.len;
				p->carry_done = false;
				consume(p, p->in.len);
				*out_more = true;
				return false;
			}
		}
	}
	if (p->in.len == 0 && !p->pend_cr && !(p->pend_eol > 0 && !p->pend_eol_contig)) {
		goto input_end;
	}
	if (p->in.len == 0 && p->pend_cr && !p->eof) {
		*out_more = true;
		return false;
	}
	if (p->pend_cr && p->in.len == 0) {
		p->pend_cr = false;
		return emit_data(p, ev, span_make(CRLF, 1));
	}
	return run(p, ev, bounded);

input_end:
	if (!p->eof) {
		*out_more = true;
		return false;
	}
	if (p->pend_eol > 0) {
		/* A part cut off by the end: its last line ending is taken as the
		 * missing delimiter's, as Python's email does; preambles keep it. */
		if (top(p)->info.kind == MIME_KIND_LEAF) {
			p->pend_eol = 0;
		} else {
			return emit_eol(p, ev);
		}
	}
	if (p->enc) {
		enc_leave(p); /* the end of a decoded body */
		return false;
	}
	begin_close(p, 0, AFT_END);
	return false;
}

/* step_close: pop one frame, or do what follows the pops. */
static bool step_close(struct mime *p, struct mime_event *ev)
{
	if (p->depth > p->close_to) {
		struct mime_frame *f = top(p);

		if (f->info.kind == MIME_KIND_LEAF && !p->flushed) {
			size_t n = 0;

			p->flushed = true;
			if (f->info.cte == MIME_CTE_BASE64) {
				n = mime_b64_finish(&p->b64, p->out);
				if (p->b64.num_junk > 0) {
					defect(p, MIME_DEF_BASE64_INVALID);
				}
			} else if (f->info.cte == MIME_CTE_QP) {
				n = mime_qp_finish(&p->qp, p->out);
				if (p->qp.num_bad > 0) {
					defect(p, MIME_DEF_QP_INVALID);
				}
			} else if (f->info.cte == MIME_CTE_UUENCODE) {
				n = mime_uu_finish(&p->uu, p->out);
				if (p->uu.state == MIME_UU_ST_BEGIN) {
					defect(p, MIME_DEF_UU_NO_BEGIN);
				} else if (p->uu.state == MIME_UU_ST_DATA) {
					defect(p, MIME_DEF_UU_NO_END);
				}
				if (p->uu.num_bad > 0) {
					defect(p, MIME_DEF_UU_INVALID);
				}
				if (p->uu.name_ready) {
					return uu_name_event(p, ev, n); /* a begin line without line feed */
				}
			}
			if (n > 0) {
				ev->type = MIME_EV_BODY;
				ev->part = &f->info;
				ev->data = span_make(p->out, n);
				return true;
			}
			if (p->defq_len > 0) {
				return false; /* report them while the part is open */
			}
		}
		if (f->info.kind == MIME_KIND_MULTIPART && f->mstate != MS_EPILOGUE && f->mstate != 4) {
			defect(p, f->mstate == MS_PREAMBLE ? MIME_DEF_NO_START_DELIMITER : MIME_DEF_NO_CLOSE_DELIMITER);
			f->mstate = 4; /* reported */
			return false;
		}
		if (p->st == ST_HDR) {
			/* Closed inside its header block: finish it first. */
			if (p->field_len > 0 && !p->field_emitted && field_event(p, ev)) {
				return true;
			}
			p->field_len = 0;
			finish_headers(p, ev);
			p->start_child = false;
			p->sniff = false;
			return true;
		}
		if (f->enc != ENC_NONE && f->enc != ENC_LAYER) {
			f->enc = ENC_NONE; /* closed before its body told: the header was ignored */
			defect(p, MIME_DEF_CTE_ON_COMPOSITE);
			return false;
		}
		p->ended = f->info;
		p->depth--;
		p->flushed = true; /* a parent is never a leaf */
		ev->type = MIME_EV_PART_END;
		ev->part = &p->ended;
		return true;
	}
	p->closing = false;
	switch ((enum mime_after)p->after) {
	case AFT_CHILD: {
		struct mime_frame *m = top(p);

		p->st = ST_BODY;
		p->at_line_start = true;
		if (m->enc == ENC_SNIFF_QP) {
			m->enc = ENC_NONE; /* a delimiter as it stands: the header is ignored (Python) */
			defect(p, MIME_DEF_CTE_ON_COMPOSITE);
		}
		if (m->mstate == MS_SKIP) {
			return false;
		}
		m->mstate = MS_CHILDREN;
		if (p->num_parts >= MIME_PARTS_MAX) {
			defect(p, MIME_DEF_PARTS_EXCEEDED);
			m->mstate = MS_SKIP;
			return false;
		}
		push_part(p);
		ev->type = MIME_EV_PART_BEGIN;
		ev->part = &top(p)->info;
		return true;
	}
	case AFT_EPILOGUE:
		if (top(p)->enc == ENC_SNIFF_QP) {
			top(p)->enc = ENC_NONE;
			defect(p, MIME_DEF_CTE_ON_COMPOSITE);
		}
		top(p)->mstate = MS_EPILOGUE;
		p->st = ST_BODY;
		p->at_line_start = true;
		return false;
	case AFT_END:
	case AFT_NONE:
		break;
	}
	p->st = ST_DONE;
	if (p->num_defects_dropped > 0) {
		p->num_defects_dropped = 0;
		defect(p, MIME_DEF_DEFECTS_DROPPED);
		return false;
	}
	ev->type = MIME_EV_END;
	ev->part = NULL;
	return true;
}

enum mime_ev_type mime_next(struct mime *p, struct mime_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (p->field_emitted) {
		p->field_emitted = false;
		p->field_len = 0;
		p->field_drop = false;
		p->field_cut = false;
	}
	if (p->carry_emitted) {
		p->carry_emitted = false;
		p->carry_len = 0;
		p->carry_done = false;
	}
	for (;;) {
		bool more = false, got;

		ev->offset = p->offset;
		if (p->defq_len > 0) {
			ev->type = MIME_EV_DEFECT;
			ev->defect = (enum mime_defect)p->defq[0];
			ev->part_index = p->defq_part[0];
			memmove(p->defq, p->defq + 1, --p->defq_len);
			memmove(p->defq_part, p->defq_part + 1, p->defq_len * sizeof(p->defq_part[0]));
			return ev->type;
		}
		if (p->out_pend > 0) {
			/* the bytes decoded after a uuencode begin line */
			ev->type = MIME_EV_BODY;
			ev->part = &top(p)->info;
			ev->data = span_make(p->out, p->out_pend);
			p->out_pend = 0;
			return ev->type;
		}
		if (p->st == ST_DONE) {
			ev->type = MIME_EV_END;
			return ev->type;
		}
		if (p->closing) {
			got = step_close(p, ev);
		} else if (p->st == ST_BEGIN) {
			push_part(p);
			ev->type = MIME_EV_PART_BEGIN;
			ev->part = &top(p)->info;
			got = true;
		} else if (p->sniff) {
			got = step_sniff(p, &more);
		} else if (p->start_child) {
			p->start_child = false;
			push_part(p);
			ev->type = MIME_EV_PART_BEGIN;
			ev->part = &top(p)->info;
			got = true;
		} else if (p->st == ST_HDR) {
			got = step_hdr(p, ev, &more);
		} else {
			got = step_body(p, ev, &more);
		}
		if (got) {
			return ev->type;
		}
		if (more && p->enc) {
			/* The decoded input is used up (MORE means all of it): decode more. */
			enum enc_fill r = enc_fill(p);

			p->in = span_make(p->dec, p->dec_len);
			p->pend_eol_contig = false;
			if (r == FILL_DATA) {
				continue;
			}
			if (r == FILL_END) {
				p->eof = true;
				continue;
			}
		}
		if (more) {
			ev->type = MIME_EV_MORE;
			return ev->type;
		}
	}
}

const char *mime_defect_name(enum mime_defect d)
{
	static const char *const names[MIME_DEF_COUNT] = {
		[MIME_DEF_NONE] = "none",
		[MIME_DEF_HEADER_NO_COLON] = "header_no_colon",
		[MIME_DEF_HEADER_CONT_FIRST] = "header_continuation_first",
		[MIME_DEF_HEADER_LINE_TOO_LONG] = "header_line_too_long",
		[MIME_DEF_HEADER_FIELD_TOO_LONG] = "header_field_too_long",
		[MIME_DEF_HEADER_BLOCK_TOO_LARGE] = "header_block_too_large",
		[MIME_DEF_CTYPE_INVALID] = "content_type_invalid",
		[MIME_DEF_CTYPE_DUPLICATE] = "content_type_duplicate",
		[MIME_DEF_CTE_UNKNOWN] = "transfer_encoding_unknown",
		[MIME_DEF_CTE_DUPLICATE] = "transfer_encoding_duplicate",
		[MIME_DEF_CTE_ON_COMPOSITE] = "transfer_encoding_on_composite",
		[MIME_DEF_ENCODED_COMPOSITE] = "encoded_composite",
		[MIME_DEF_NO_BOUNDARY] = "multipart_no_boundary",
		[MIME_DEF_NO_START_DELIMITER] = "multipart_no_start_delimiter",
		[MIME_DEF_NO_CLOSE_DELIMITER] = "multipart_no_close_delimiter",
		[MIME_DEF_DEPTH_EXCEEDED] = "depth_exceeded",
		[MIME_DEF_PARTS_EXCEEDED] = "parts_exceeded",
		[MIME_DEF_BASE64_INVALID] = "base64_invalid",
		[MIME_DEF_QP_INVALID] = "quoted_printable_invalid",
		[MIME_DEF_UU_NO_BEGIN] = "uuencode_no_begin",
		[MIME_DEF_UU_NO_END] = "uuencode_no_end",
		[MIME_DEF_UU_INVALID] = "uuencode_invalid",
		[MIME_DEF_DEFECTS_DROPPED] = "defects_dropped",
	};

	return (unsigned)d < MIME_DEF_COUNT && names[d] ? names[d] : "?";
}

const char *mime_cte_name(enum mime_cte c)
{
	static const char *const names[MIME_CTE_COUNT] = { "7bit",   "8bit",       "binary", "quoted-printable",
							   "base64", "x-uuencode", "unknown" };

	return (unsigned)c < MIME_CTE_COUNT ? names[c] : "?";
}

const char *mime_ev_name(enum mime_ev_type t)
{
	static const char *const names[MIME_EV_COUNT] = { "more",     "part_begin", "header",   "headers_end",
							  "body",     "preamble",   "epilogue", "part_end",
							  "defect",   "uu_begin",   "end" };

	return (unsigned)t < MIME_EV_COUNT ? names[t] : "?";
}
