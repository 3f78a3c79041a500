/*
 * hdrsplit.c - header fields for the verifiers, bounded; see hdrsplit.h.
 */
#include "hdrsplit.h"

#include <string.h>

void hdrsplit_init(struct hdrsplit *s)
{
	memset(s, 0, sizeof(*s));
	bb_init(&s->field, HDRSPLIT_FIELD_MAX);
	s->bol = true;
}

void hdrsplit_fini(struct hdrsplit *s)
{
	bb_fini(&s->field);
}

/* keep appends n bytes of the field: what fits under HDRSPLIT_FIELD_MAX is kept, the rest only counted. */
static void keep(struct hdrsplit *s, const uint8_t *p, size_t n)
{
	size_t room = HDRSPLIT_FIELD_MAX - s->field.len;

	if (!s->lost && bb_append(&s->field, p, n < room ? n : room) != 0) {
		s->lost = true; /* out of memory: the field is handed out as not whole */
	}
	s->field_len += n;
}

static enum hdrsplit_ev emit(struct hdrsplit *s, struct hdrsplit_field *out)
{
	struct span b = bb_span(&s->field);

	out->whole = !s->lost && s->field_len == s->field.len;
	out->len = s->field_len;
	out->offset = s->field_off;
	out->max_line = s->max_line;
	if (out->whole && b.len > 0 && b.p[b.len - 1] == '\n') {
		b.len--;
		if (b.len > 0 && b.p[b.len - 1] == '\r') {
			b.len--;
		}
	}
	out->bytes = b;
	s->emitted = true;
	return HDRSPLIT_FIELD;
}

static void drop_emitted(struct hdrsplit *s)
{
	if (s->emitted) {
		bb_reset(&s->field, 0);
		s->field_len = 0;
		s->max_line = 0;
		s->lost = false;
		s->emitted = false;
	}
}

enum hdrsplit_ev hdrsplit_next(struct hdrsplit *s, struct hdrsplit_field *out, struct span *in)
{
	drop_emitted(s);
	while (!s->ended && in->len > 0) {
		const uint8_t *lf;
		size_t n;

		if (s->bol) {
			uint8_t c = in->p[0];

			if (s->cr) {
				s->cr = false;
				if (c == '\n') {
					span_skip(in, 1);
					s->header_bytes++;
					s->ended = true;
					break;
				}
				/* a line that starts with a bare CR: the start of a (broken) field */
				s->field_off = s->header_bytes - 1;
				keep(s, (const uint8_t *)"\r", 1);
				s->line_len = 1;
				s->bol = false;
				continue;
			}
			if (c != ' ' && c != '\t' && s->field_len > 0) {
				return emit(s, out); /* the next line is not a continuation */
			}
			if (c == '\n') {
				span_skip(in, 1);
				s->header_bytes++;
				s->ended = true;
				break;
			}
			if (c == '\r') {
				span_skip(in, 1);
				s->header_bytes++;
				s->cr = true;
				continue;
			}
			if (s->field_len == 0) {
				s->field_off = s->header_bytes;
			}
			s->line_len = 0;
			s->bol = false;
		}
		lf = memchr(in->p, '\n', in->len);
		n = lf != NULL ? (size_t)(lf - in->p) + 1 : in->len;
		keep(s, in->p, n);
		span_skip(in, n);
		s->header_bytes += n;
		s->line_len += n;
		if (s->line_len > s->max_line) {
			s->max_line = s->line_len;
		}
		s->bol = lf != NULL;
	}
	if (s->ended) {
		return s->field_len > 0 ? emit(s, out) : HDRSPLIT_END;
	}
	return HDRSPLIT_MORE;
}

enum hdrsplit_ev hdrsplit_finish(struct hdrsplit *s, struct hdrsplit_field *out)
{
	drop_emitted(s);
	s->ended = true;
	s->cr = false; /* a last lone CR: nothing follows it */
	return s->field_len > 0 ? emit(s, out) : HDRSPLIT_END;
}
