/*
 * dkim_canon.c - DKIM header and body canonicalisation (RFC 6376 §3.4).
 *
 * Body state machine, byte by byte in meaning but run by run in practice
 * (memchr for CR, spans of ordinary bytes, in relaxed with their single
 * inner SPs, go to the sink in one call):
 *   held_cr      a CR was the last byte; a following LF ends the line.
 *   at_bol       the line holds nothing yet (relaxed: nothing but WSP).
 *   pending_crlf empty lines seen since the last text; emitted before the
 *                next text, dropped at the end (§3.4.3, §3.4.4 "ignore all
 *                empty lines at the end of the message body").
 *   pending_wsp  relaxed: a WSP run, emitted as one SP before the next text
 *                on the line and dropped at the end of the line (§3.4.4).
 * A CR not followed by LF, and a lone LF, are ordinary text.
 */
#include "dkim_canon.h"

static const uint8_t crlfs[64] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
				 "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";

static void emit(struct dkim_body_canon *bc, const uint8_t *p, size_t len)
{
	if (len > 0) {
		bc->sink(bc->arg, p, len);
		bc->num_out += len;
	}
}

static void flush_pending(struct dkim_body_canon *bc)
{
	while (bc->pending_crlf > 0) {
		uint64_t n = bc->pending_crlf < sizeof(crlfs) / 2 ? bc->pending_crlf : sizeof(crlfs) / 2;

		emit(bc, crlfs, (size_t)n * 2);
		bc->pending_crlf -= n;
	}
}

void dkim_body_canon_init(struct dkim_body_canon *bc, enum dkim_canon c, dkim_sink_fn *sink, void *arg)
{
	memset(bc, 0, sizeof(*bc));
	bc->c = c;
	bc->sink = sink;
	bc->arg = arg;
	bc->at_bol = true;
}

/* text emits ordinary bytes (no CR, and in relaxed no WSP) of the current line. */
static void text(struct dkim_body_canon *bc, const uint8_t *p, size_t len)
{
	if (bc->at_bol) {
		flush_pending(bc);
		bc->at_bol = false;
	}
	if (bc->pending_wsp) {
		emit(bc, (const uint8_t *)" ", 1);
		bc->pending_wsp = false;
	}
	emit(bc, p, len);
}

static void end_line(struct dkim_body_canon *bc)
{
	if (bc->at_bol) {
		bc->pending_crlf++;
	} else {
		emit(bc, crlfs, 2);
	}
	bc->at_bol = true;
	bc->pending_wsp = false;
}

void dkim_body_canon_update(struct dkim_body_canon *bc, const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (bc->held_cr) {
			bc->held_cr = false;
			if (p[i] == '\n') {
				i++;
				end_line(bc);
				continue;
			}
			text(bc, (const uint8_t *)"\r", 1); /* a bare CR is text */
		}
		if (bc->c == DKIM_CANON_SIMPLE) {
			const uint8_t *cr = memchr(p + i, '\r', len - i);
			size_t run = cr ? (size_t)(cr - (p + i)) : len - i;

			if (run > 0) {
				text(bc, p + i, run);
				i += run;
			}
			if (i < len) {
				bc->held_cr = true; /* p[i] == '\r' */
				i++;
			}
			continue;
		}
		/* relaxed: a run whose canonical form is itself: no CR or HTAB,
		 * and an SP only between two text bytes (a single SP stays a
		 * single SP). Most lines of real mail are one such run, so the
		 * sink (a hash) gets one call per line, not one per word. */
		size_t j = i;

		while (j < len && p[j] != '\r' && p[j] != '\t' &&
		       (p[j] != ' ' || (j > i && j + 1 < len && p[j + 1] != ' ' && p[j + 1] != '\t' &&
					p[j + 1] != '\r'))) {
			j++;
		}
		if (j > i) {
			text(bc, p + i, j - i);
			i = j;
		}
		if (i < len) {
			if (p[i] == '\r') {
				bc->held_cr = true;
			} else {
				bc->pending_wsp = true;
			}
			i++;
		}
	}
}

void dkim_body_canon_final(struct dkim_body_canon *bc)
{
	if (bc->held_cr) {
		bc->held_cr = false;
		text(bc, (const uint8_t *)"\r", 1);
	}
	if (!bc->at_bol) {
		emit(bc, crlfs, 2); /* a last line without CRLF gets one; its trailing WSP is gone */
		bc->at_bol = true;
	}
	bc->pending_crlf = 0;
	bc->pending_wsp = false;
	if (bc->c == DKIM_CANON_SIMPLE && bc->num_out == 0) {
		emit(bc, crlfs, 2); /* §3.4.3: an empty body is one CRLF */
	}
}

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

struct span dkim_hdr_name(struct span field)
{
	const uint8_t *colon = memchr(field.p, ':', field.len);
	size_t n;

	if (colon == NULL) {
		return span_make(field.p, 0);
	}
	n = (size_t)(colon - field.p);
	while (n > 0 && is_wsp(field.p[n - 1])) {
		n--;
	}
	return span_make(field.p, n);
}

/* A small staging buffer so relaxed output reaches the sink in few calls. */
struct stage {
	uint8_t buf[256];
	size_t len;
	dkim_sink_fn *sink;
	void *arg;
};

static void stage_put(struct stage *s, uint8_t c)
{
	if (s->len == sizeof(s->buf)) {
		s->sink(s->arg, s->buf, s->len);
		s->len = 0;
	}
	s->buf[s->len++] = c;
}

static void stage_flush(struct stage *s)
{
	if (s->len > 0) {
		s->sink(s->arg, s->buf, s->len);
		s->len = 0;
	}
}

void dkim_hdr_canon(enum dkim_canon c, struct span field, bool crlf, dkim_sink_fn *sink, void *arg)
{
	struct stage s = { .len = 0, .sink = sink, .arg = arg };
	const uint8_t *colon;
	size_t name_len, i;
	bool wsp = false, any = false;

	if (c == DKIM_CANON_SIMPLE) {
		if (field.len > 0) {
			sink(arg, field.p, field.len);
		}
		if (crlf) {
			sink(arg, (const uint8_t *)"\r\n", 2);
		}
		return;
	}
	/* §3.4.2: lower-case name, no WSP around the colon, unfold, WSP runs to
	 * one SP, no WSP at the end of the value. */
	colon = memchr(field.p, ':', field.len);
	name_len = colon ? (size_t)(colon - field.p) : field.len;
	for (i = 0; i < name_len; i++) {
		uint8_t b = field.p[i];

		if (is_wsp(b) || b == '\r' || b == '\n') {
			continue; /* WSP before the colon (and any fold in it) goes */
		}
		stage_put(&s, b >= 'A' && b <= 'Z' ? (uint8_t)(b + 32) : b);
	}
	if (colon != NULL) {
		stage_put(&s, ':');
		for (i = name_len + 1; i < field.len; i++) {
			uint8_t b = field.p[i];

			if (b == '\r' || b == '\n') {
				continue; /* unfold: CRLF removed */
			}
			if (is_wsp(b)) {
				wsp = true;
				continue;
			}
			if (wsp && any) {
				stage_put(&s, ' ');
			}
			wsp = false;
			any = true;
			stage_put(&s, b);
		}
	}
	if (crlf) {
		stage_put(&s, '\r');
		stage_put(&s, '\n');
	}
	stage_flush(&s);
}
