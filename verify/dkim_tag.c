/*
 * dkim_tag.c - DKIM tag=value lists (RFC 6376 §3.2) and the base64 and
 * dkim-quoted-printable decoders (§2.11). Pure, caller storage only.
 */
#include "dkim_tag.h"

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static bool is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* VALCHAR = %x21-3A / %x3C-7E (§3.2); UTF-8 bytes are allowed for RFC 8616. */
static bool is_valchar(uint8_t c)
{
	return (c >= 0x21 && c <= 0x7e && c != ';') || c >= 0x80;
}

/* fws_len returns the length of the FWS at p[0..len) (0 if none). */
static size_t fws_len(const uint8_t *p, size_t len)
{
	size_t i = 0;

	for (;;) {
		if (i < len && is_wsp(p[i])) {
			i++;
		} else if (i + 2 < len && p[i] == '\r' && p[i + 1] == '\n' && is_wsp(p[i + 2])) {
			i += 3; /* a fold: CRLF must be followed by WSP */
		} else {
			return i;
		}
	}
}

enum dkim_tag_rc dkim_tags_parse(struct dkim_tag *out, size_t max, size_t *out_num, size_t *out_err_pos,
				 struct span in)
{
	const uint8_t *p = in.p;
	size_t len = in.len, i = 0, num = 0;

	*out_num = 0;
	*out_err_pos = 0;
	for (;;) {
		size_t name_start, name_end, raw_start, val_start, val_end;

		i += fws_len(p + i, len - i);
		if (i == len) {
			break; /* empty list, or a trailing ';' (and FWS) */
		}
		name_start = i;
		if (!is_alpha(p[i])) {
			*out_err_pos = i;
			return DKIM_TAG_SYNTAX;
		}
		while (i < len && (is_alpha(p[i]) || is_digit(p[i]) || p[i] == '_')) {
			i++;
		}
		name_end = i;
		i += fws_len(p + i, len - i);
		if (i == len || p[i] != '=') {
			*out_err_pos = i;
			return DKIM_TAG_SYNTAX;
		}
		raw_start = ++i;
		i += fws_len(p + i, len - i);
		val_start = val_end = i;
		while (i < len && p[i] != ';') {
			size_t f;

			if (is_valchar(p[i])) {
				val_end = ++i; /* first: the common case (b=, bh=); FWS never starts with one */
			} else if ((f = fws_len(p + i, len - i)) > 0) {
				i += f;
			} else {
				*out_err_pos = i; /* CTL, bare CR/LF, or CRLF not followed by WSP */
				return DKIM_TAG_SYNTAX;
			}
		}
		if (num == max) {
			*out_err_pos = name_start;
			return DKIM_TAG_TOO_MANY;
		}
		out[num].name = span_make(p + name_start, name_end - name_start);
		out[num].value = span_make(p + val_start, val_end - val_start);
		out[num].raw = span_make(p + raw_start, i - raw_start);
		for (size_t k = 0; k < num; k++) {
			if (span_eq(out[k].name, out[num].name)) {
				*out_err_pos = name_start;
				return DKIM_TAG_DUP; /* §3.2: duplicate tag names are invalid */
			}
		}
		num++;
		if (i == len) {
			break;
		}
		i++; /* ';' */
	}
	*out_num = num;
	return DKIM_TAG_OK;
}

const char *dkim_tag_rc_name(enum dkim_tag_rc rc)
{
	switch (rc) {
	case DKIM_TAG_OK:
		return "ok";
	case DKIM_TAG_SYNTAX:
		return "tag-list syntax error";
	case DKIM_TAG_DUP:
		return "duplicate tag";
	case DKIM_TAG_TOO_MANY:
		return "too many tags";
	}
	return "tag-list error";
}

const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, size_t num, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < num; i++) {
		if (tags[i].name.len == n && memcmp(tags[i].name.p, name, n) == 0) {
			return &tags[i];
		}
	}
	return NULL;
}

static int b64_val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z') {
		return c - 'A';
	}
	if (c >= 'a' && c <= 'z') {
		return c - 'a' + 26;
	}
	if (c >= '0' && c <= '9') {
		return c - '0' + 52;
	}
	if (c == '+') {
		return 62;
	}
	if (c == '/') {
		return 63;
	}
	return -1;
}

bool dkim_b64_decode(uint8_t *out, size_t out_max, size_t *out_len, struct span in)
{
	uint32_t acc = 0;
	unsigned nacc = 0, npad = 0;
	size_t n = 0;

	*out_len = 0;
	for (size_t i = 0; i < in.len; i++) {
		uint8_t c = in.p[i];
		int v;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			continue; /* FWS may appear anywhere in b=, bh=, p= (§3.5) */
		}
		if (c == '=') {
			npad++;
			if (npad > 2) {
				return false;
			}
			continue;
		}
		if (npad > 0 || (v = b64_val(c)) < 0) {
			return false; /* data after padding, or not base64 */
		}
		acc = acc << 6 | (uint32_t)v;
		if (++nacc == 4) {
			if (n + 3 > out_max) {
				return false;
			}
			out[n++] = (uint8_t)(acc >> 16);
			out[n++] = (uint8_t)(acc >> 8);
			out[n++] = (uint8_t)acc;
			acc = 0;
			nacc = 0;
		}
	}
	/* nacc data characters remain: 0 (npad 0), 2 (npad 2) or 3 (npad 1). */
	if (nacc == 0) {
		if (npad != 0) {
			return false;
		}
	} else if (nacc == 2 && npad == 2) {
		if ((acc & 0xf) != 0 || n + 1 > out_max) {
			return false;
		}
		out[n++] = (uint8_t)(acc >> 4);
	} else if (nacc == 3 && npad == 1) {
		if ((acc & 0x3) != 0 || n + 2 > out_max) {
			return false;
		}
		out[n++] = (uint8_t)(acc >> 10);
		out[n++] = (uint8_t)(acc >> 2);
	} else {
		return false;
	}
	*out_len = n;
	return true;
}

static int hex_val(uint8_t c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10; /* §2.11 says upper case; accept lower as Mail::DKIM does */
	}
	return -1;
}

bool dkim_qp_decode(uint8_t *out, size_t out_max, size_t *out_len, struct span in)
{
	size_t n = 0;

	*out_len = 0;
	for (size_t i = 0; i < in.len; i++) {
		uint8_t c = in.p[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			continue; /* FWS is not part of the value (§2.11) */
		}
		if (c == '=') {
			int hi, lo;

			if (i + 2 >= in.len) {
				return false;
			}
			hi = hex_val(in.p[i + 1]);
			lo = hex_val(in.p[i + 2]);
			if (hi < 0 || lo < 0) {
				return false;
			}
			c = (uint8_t)(hi << 4 | lo);
			i += 2;
		}
		if (n == out_max) {
			return false;
		}
		out[n++] = c;
	}
	*out_len = n;
	return true;
}

bool dkim_list_next(struct span *list, struct span *out)
{
	struct span item;

	if (list->p == NULL) {
		return false;
	}
	if (!span_take_until(list, &item, ':')) {
		item = *list;
		list->p = NULL; /* last element: the list is now exhausted */
		list->len = 0;
	} else {
		span_skip(list, 1);
	}
	/* trim FWS (SP, HTAB, CR, LF) on both sides */
	while (item.len && (item.p[0] == ' ' || item.p[0] == '\t' || item.p[0] == '\r' || item.p[0] == '\n')) {
		item.p++;
		item.len--;
	}
	while (item.len && (item.p[item.len - 1] == ' ' || item.p[item.len - 1] == '\t' ||
			    item.p[item.len - 1] == '\r' || item.p[item.len - 1] == '\n')) {
		item.len--;
	}
	*out = item;
	return true;
}
