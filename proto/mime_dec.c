/*
 * mime_dec.c - base64 and quoted-printable decoders, tolerant as the
 * mainstream parsers are: base64 skips line breaks and junk and accepts a
 * missing final padding; quoted-printable takes hex digits in either case,
 * "=" followed by white space and a line break as a soft break (RFC 2045
 * §6.7 note on transport padding) and a lone "=" literally; uudecode as
 * described in mime_dec.h.
 */
#include "mime_dec.h"

#include <string.h>

/* 0..63 for the alphabet, 64 for '=', 65 for ignorable white space, 66 junk. */
static const uint8_t b64_tab[256] = {
#define J 66
	J, J, J, J, J, J, J, J, J, 65, 65, J, J, 65, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J,
	65, J, J, J, J, J, J, J, J, J, J, 62, J, J, J, 63, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, J, J, J, 64, J, J,
	J, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, J, J, J, J, J,
	J, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, J, J, J, J, J,
	J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J,
	J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J,
	J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J,
	J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J, J,
#undef J
};

size_t mime_b64_decode(struct mime_b64 *st, uint8_t *out, struct span in)
{
	const uint8_t *p = in.p, *end = in.p + in.len;
	uint8_t *o = out;
	uint32_t acc = st->acc;
	unsigned n = st->num_acc;

	/* Fast path: whole quanta of alphabet characters. */
	while (p < end) {
		if (n == 0 && st->pad == 0) {
			while (end - p >= 4) {
				uint8_t a = b64_tab[p[0]], b = b64_tab[p[1]], c = b64_tab[p[2]], d = b64_tab[p[3]];

				if ((a | b | c | d) >= 64) {
					break;
				}
				uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;

				o[0] = (uint8_t)(v >> 16);
				o[1] = (uint8_t)(v >> 8);
				o[2] = (uint8_t)v;
				o += 3;
				p += 4;
			}
			if (p == end) {
				break;
			}
		}
		uint8_t v = b64_tab[*p++];

		if (v < 64) {
			if (st->pad) {
				/* Data after the final padding is ignored, as Python and most decoders do. */
				st->num_junk++;
				continue;
			}
			acc = acc << 6 | v;
			if (++n == 4) {
				o[0] = (uint8_t)(acc >> 16);
				o[1] = (uint8_t)(acc >> 8);
				o[2] = (uint8_t)acc;
				o += 3;
				n = 0;
				acc = 0;
			}
		} else if (v == 64) {
			/* '=': the quantum ends here (RFC 4648 §4). */
			if (n == 2) {
				*o++ = (uint8_t)(acc >> 4);
			} else if (n == 3) {
				*o++ = (uint8_t)(acc >> 10);
				*o++ = (uint8_t)(acc >> 2);
			}
			if (n != 0) {
				st->pad = 1;
			}
			n = 0;
			acc = 0;
		} else if (v == 66) {
			st->num_junk++;
		}
	}
	st->acc = acc;
	st->num_acc = (uint8_t)n;
	return (size_t)(o - out);
}

size_t mime_b64_finish(struct mime_b64 *st, uint8_t *out)
{
	size_t n = 0;

	/* Missing padding is accepted, as Python and GMime do. */
	if (st->num_acc == 2) {
		out[n++] = (uint8_t)(st->acc >> 4);
	} else if (st->num_acc == 3) {
		out[n++] = (uint8_t)(st->acc >> 10);
		out[n++] = (uint8_t)(st->acc >> 2);
	} else if (st->num_acc == 1) {
		st->num_junk++; /* six bits cannot make a byte */
	}
	st->acc = 0;
	st->num_acc = 0;
	st->pad = 0;
	return n;
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	c |= 0x20;
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	return -1;
}

/*
 * qp_step resolves held bytes (starting with '=') plus the next byte c.
 * Returns 1 if c was consumed, 0 if the hold was flushed and c must be
 * processed again from the plain state.
 */
static int qp_step(struct mime_qp *st, uint8_t **o, uint8_t c)
{
	uint8_t *w = *o;

	if (st->num_held == 1) { /* "=" */
		if (hexval(c) >= 0) {
			st->held[st->num_held++] = c;
			return 1;
		}
		if (c == '\n') { /* soft line break */
			st->num_held = 0;
			return 1;
		}
		if (c == '\r' || c == ' ' || c == '\t') {
			st->held[st->num_held++] = c;
			return 1;
		}
	} else if (st->num_held == 2 && hexval(st->held[1]) >= 0) { /* "=X" */
		if (hexval(c) >= 0) {
			*w++ = (uint8_t)(hexval(st->held[1]) << 4 | hexval(c));
			st->num_held = 0;
			*o = w;
			return 1;
		}
	} else { /* "=" followed by white space and maybe CR */
		if (c == '\n') {
			st->num_held = 0;
			return 1;
		}
		if ((c == ' ' || c == '\t' || c == '\r') && st->num_held < sizeof(st->held)) {
			st->held[st->num_held++] = c;
			return 1;
		}
	}
	/* Not an escape: the "=" and what followed are literal. */
	st->num_bad++;
	memcpy(w, st->held, st->num_held);
	w += st->num_held;
	st->num_held = 0;
	*o = w;
	return 0;
}

size_t mime_qp_decode(struct mime_qp *st, uint8_t *out, struct span in)
{
	const uint8_t *p = in.p, *end = in.p + in.len;
	uint8_t *o = out;

	while (p < end) {
		if (st->num_held > 0) {
			if (qp_step(st, &o, *p)) {
				p++;
			}
			continue;
		}
		const uint8_t *eq = memchr(p, '=', (size_t)(end - p));
		size_t n = eq ? (size_t)(eq - p) : (size_t)(end - p);

		memcpy(o, p, n);
		o += n;
		p += n;
		if (eq != NULL) {
			st->held[0] = '=';
			st->num_held = 1;
			p++;
		}
	}
	return (size_t)(o - out);
}

size_t mime_qp_finish(struct mime_qp *st, uint8_t *out)
{
	size_t n = st->num_held;

	/* "=" + white space at the very end is a soft break without its newline. */
	if (n > 0 && !(n == 2 && hexval(st->held[1]) >= 0)) {
		int soft = 1;

		for (size_t i = 1; i < n; i++) {
			if (st->held[i] != ' ' && st->held[i] != '\t' && st->held[i] != '\r') {
				soft = 0;
			}
		}
		if (soft) {
			st->num_held = 0;
			return 0;
		}
	}
	if (n > 0) {
		st->num_bad++;
	}
	memcpy(out, st->held, n);
	st->num_held = 0;
	return n;
}

void mime_uu_init(struct mime_uu *st)
{
	st->state = MIME_UU_ST_BEGIN;
	st->name_ready = false;
	st->line_len = 0;
	st->name_len = 0;
	st->line_cut = false;
	st->num_bad = 0;
}

static bool is_uu_wsp(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f';
}

/* uu_begin: "begin" SP 1*octal [SP name], as Python's email takes it (the mode must be octal). */
static bool uu_begin(struct mime_uu *st, const uint8_t *l, size_t n)
{
	size_t i = 6;

	if (n < 7 || memcmp(l, "begin ", 6) != 0) {
		return false;
	}
	while (i < n && l[i] >= '0' && l[i] <= '7') {
		i++;
	}
	if (i == 6 || (i < n && l[i] != ' ')) {
		return false;
	}
	if (i < n) {
		i++; /* the space before the name */
	}
	while (n > i && is_uu_wsp(l[n - 1])) {
		n--;
	}
	n -= i;
	if (n > MIME_UU_NAME_MAX) {
		n = MIME_UU_NAME_MAX;
	}
	if (n > 0) {
		memcpy(st->name, l + i, n);
	}
	st->name_len = (uint16_t)n;
	st->name_ready = n > 0;
	return true;
}

/* uu_line handles one line (without its line feed); returns bytes written. */
static size_t uu_line(struct mime_uu *st, uint8_t *out)
{
	const uint8_t *l = st->line;
	size_t n = st->line_len;

	if (n > 0 && l[n - 1] == '\r' && !st->line_cut) {
		n--;
	}
	st->line_len = 0;
	st->line_cut = false;
	if (st->state == MIME_UU_ST_BEGIN) {
		if (uu_begin(st, l, n)) {
			st->state = MIME_UU_ST_DATA;
		}
		return 0;
	}
	if (st->state != MIME_UU_ST_DATA) {
		return 0;
	}
	size_t a = 0, b = n;

	while (a < b && is_uu_wsp(l[a])) {
		a++;
	}
	while (b > a && is_uu_wsp(l[b - 1])) {
		b--;
	}
	if (b - a == 3 && memcmp(l + a, "end", 3) == 0) {
		st->state = MIME_UU_ST_END;
		return 0;
	}
	if (n == 0 || l[0] < 0x20 || l[0] > 0x60) {
		st->num_bad++; /* an empty line or junk: Python gives up on the whole body here */
		return 0;
	}
	size_t len = (size_t)((l[0] - 0x20) & 63);
	size_t need = (len * 4 + 2) / 3;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < need; i++) {
		/* Missing characters count as ' ' (zero): trailing spaces eaten in transit. */
		uint8_t c = 1 + i < n ? l[1 + i] : ' ';

		if (c < 0x20 || c > 0x60) {
			st->num_bad++;
			return 0; /* the line is junk: nothing of it */
		}
		acc = (acc << 6 | ((c - 0x20) & 63)) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < len) {
				out[o++] = (uint8_t)(acc >> bits);
			}
		}
	}
	return o;
}

size_t mime_uu_decode(struct mime_uu *st, uint8_t *out, struct span in)
{
	const uint8_t *p = in.p, *end = in.p + in.len;
	size_t o = 0;

	if (st->state == MIME_UU_ST_END) {
		return 0; /* the rest of the body is ignored */
	}
	while (p < end) {
		const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
		size_t n = lf ? (size_t)(lf - p) : (size_t)(end - p);
		size_t room = MIME_UU_LINE_MAX - st->line_len;
		size_t k = n < room ? n : room;

		if (k > 0) {
			memcpy(st->line + st->line_len, p, k);
			st->line_len = (uint16_t)(st->line_len + k);
		}
		st->line_cut = st->line_cut || k < n;
		if (lf == NULL) {
			break;
		}
		p = lf + 1;
		o += uu_line(st, out + o);
		if (st->state == MIME_UU_ST_END) {
			break;
		}
	}
	return o;
}

size_t mime_uu_finish(struct mime_uu *st, uint8_t *out)
{
	size_t n = 0;

	if (st->line_len > 0 && st->state != MIME_UU_ST_END) {
		n = uu_line(st, out);
	}
	st->line_len = 0;
	st->line_cut = false;
	return n;
}

size_t mime_qp_decode_word(uint8_t *out, struct span in)
{
	size_t n = 0;

	for (size_t i = 0; i < in.len; i++) {
		uint8_t c = in.p[i];

		if (c == '_') {
			out[n++] = ' '; /* RFC 2047 §4.2 (2) */
		} else if (c == '=' && i + 2 < in.len && hexval(in.p[i + 1]) >= 0 && hexval(in.p[i + 2]) >= 0) {
			out[n++] = (uint8_t)(hexval(in.p[i + 1]) << 4 | hexval(in.p[i + 2]));
			i += 2;
		} else {
			out[n++] = c;
		}
	}
	return n;
}

size_t mime_b64_decode_word(uint8_t *out, struct span in)
{
	struct mime_b64 st = { 0 };
	size_t n = mime_b64_decode(&st, out, in);

	return n + mime_b64_finish(&st, out + n);
}
