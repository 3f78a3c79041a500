/*
 * rfc2231.c - parameter scanning. One pass over the value per lookup;
 * header values are bounded by the MIME parser, so this stays cheap.
 */
#include "rfc2231.h"

#include <string.h>
#include <strings.h>

static bool is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_tspecial(uint8_t c)
{
	return c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* skip_cfws skips white space and (nested) comments. */
static void skip_cfws(struct span *c)
{
	while (c->len > 0) {
		if (is_ws(c->p[0])) {
			span_skip(c, 1);
		} else if (c->p[0] == '(') {
			int depth = 0;

			while (c->len > 0) {
				uint8_t ch = c->p[0];

				span_skip(c, 1);
				if (ch == '\\' && c->len > 0) {
					span_skip(c, 1);
				} else if (ch == '(') {
					depth++;
				} else if (ch == ')' && --depth == 0) {
					break;
				}
			}
		} else {
			break;
		}
	}
}

static bool get_token(struct span *c, struct span *out)
{
	size_t n = 0;

	while (n < c->len && !is_tspecial(c->p[n])) {
		n++;
	}
	if (n == 0) {
		return false;
	}
	return span_take(c, out, n);
}

bool rfc2231_ctype(struct span value, char *out_type, char *out_subtype)
{
	struct span c = value, t, s;

	skip_cfws(&c);
	if (!get_token(&c, &t)) {
		return false;
	}
	skip_cfws(&c);
	if (c.len == 0 || c.p[0] != '/') {
		return false;
	}
	span_skip(&c, 1);
	skip_cfws(&c);
	if (!get_token(&c, &s) || t.len >= MIME_TOKEN_MAX || s.len >= MIME_TOKEN_MAX) {
		return false;
	}
	for (size_t i = 0; i < t.len; i++) {
		out_type[i] = (char)(t.p[i] >= 'A' && t.p[i] <= 'Z' ? t.p[i] + 32 : t.p[i]);
	}
	out_type[t.len] = '\0';
	for (size_t i = 0; i < s.len; i++) {
		out_subtype[i] = (char)(s.p[i] >= 'A' && s.p[i] <= 'Z' ? s.p[i] + 32 : s.p[i]);
	}
	out_subtype[s.len] = '\0';
	return true;
}

bool rfc2231_first_token(struct span value, char *out, size_t cap)
{
	struct span c = value, t;

	skip_cfws(&c);
	if (c.len > 0 && c.p[0] == '"') {
		span_skip(&c, 1);
	}
	if (!get_token(&c, &t) || t.len >= cap) {
		return false;
	}
	for (size_t i = 0; i < t.len; i++) {
		out[i] = (char)(t.p[i] >= 'A' && t.p[i] <= 'Z' ? t.p[i] + 32 : t.p[i]);
	}
	out[t.len] = '\0';
	return true;
}

struct pval {
	struct span v;
	bool quoted;
};

/* next_param reads "; attr = value"; false at the end. */
static bool next_param(struct span *c, struct span *out_attr, struct pval *out_val)
{
	for (;;) {
		/* Find the next ';' outside quotes (values before it were consumed). */
		while (c->len > 0 && c->p[0] != ';') {
			if (c->p[0] == '"') {
				span_skip(c, 1);
				while (c->len > 0 && c->p[0] != '"') {
					span_skip(c, c->p[0] == '\\' && c->len > 1 ? 2 : 1);
				}
			}
			span_skip(c, 1);
		}
		if (c->len == 0) {
			return false;
		}
		span_skip(c, 1);
		skip_cfws(c);
		size_t n = 0;

		while (n < c->len && c->p[n] != '=' && c->p[n] != ';' && !is_ws(c->p[n])) {
			n++;
		}
		if (n == 0) {
			continue; /* ";;" */
		}
		span_take(c, out_attr, n);
		skip_cfws(c);
		if (c->len == 0 || c->p[0] != '=') {
			continue; /* attribute without value */
		}
		span_skip(c, 1);
		skip_cfws(c);
		if (c->len > 0 && c->p[0] == '"') {
			size_t k = 1;

			while (k < c->len && c->p[k] != '"') {
				k += c->p[k] == '\\' && k + 1 < c->len ? 2 : 1;
			}
			out_val->v = span_make(c->p + 1, (k < c->len ? k : c->len) - 1);
			out_val->quoted = true;
			span_skip(c, k < c->len ? k + 1 : c->len);
		} else {
			size_t k = 0;

			while (k < c->len && c->p[k] != ';') {
				k++;
			}
			out_val->v = span_trim_ws(span_make(c->p, k));
			out_val->quoted = false;
			span_skip(c, k);
		}
		return true;
	}
}

static int hexv(uint8_t c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* put appends a segment: percent-decoded if extended, unescaped if quoted. */
static void put(uint8_t *out, size_t cap, size_t *len, struct pval v, bool ext, unsigned *flags)
{
	for (size_t i = 0; i < v.v.len; i++) {
		uint8_t ch = v.v.p[i];

		if (ext && ch == '%' && i + 2 < v.v.len && hexv(v.v.p[i + 1]) >= 0 && hexv(v.v.p[i + 2]) >= 0) {
			ch = (uint8_t)(hexv(v.v.p[i + 1]) << 4 | hexv(v.v.p[i + 2]));
			i += 2;
		} else if (v.quoted && ch == '\\' && i + 1 < v.v.len && (v.v.p[i + 1] == '\\' || v.v.p[i + 1] == '"')) {
			/* Only \\ and \" are unescaped: Windows paths ("C:\TEMP\x.png") keep their backslashes, as in Python and GMime. */
			ch = v.v.p[++i];
		}
		if (*len >= cap) {
			*flags |= RFC2231_F_TRUNCATED;
			return;
		}
		out[(*len)++] = ch;
	}
}

bool rfc2231_param(struct span value, const char *name, uint8_t *out, size_t cap, size_t *out_len,
		   struct span *out_charset, unsigned *out_flags)
{
	struct span c = value, attr;
	struct pval v, plain = { { NULL, 0 }, false }, seg[RFC2231_SEGMENTS_MAX];
	bool seg_ext[RFC2231_SEGMENTS_MAX];
	size_t name_len = strlen(name), num_seg = 0;
	bool have_plain = false, plain_ext = false;
	unsigned flags = 0;
	uint64_t seen = 0;

	*out_len = 0;
	*out_charset = span_make(NULL, 0);
	while (next_param(&c, &attr, &v)) {
		if (attr.len < name_len || strncasecmp((const char *)attr.p, name, name_len) != 0) {
			continue;
		}
		struct span rest = span_make(attr.p + name_len, attr.len - name_len);

		if (rest.len == 0 || (rest.len == 1 && rest.p[0] == '*')) {
			if (have_plain) {
				flags |= RFC2231_F_DUPLICATE;
				continue;
			}
			have_plain = true;
			plain = v;
			plain_ext = rest.len == 1;
			continue;
		}
		if (rest.p[0] != '*') {
			continue; /* another parameter that shares the prefix */
		}
		span_skip(&rest, 1);
		uint64_t idx;
		bool ext = rest.len > 0 && rest.p[rest.len - 1] == '*';

		if (ext) {
			rest.len--;
		}
		if (!span_get_dec_u64(&rest, &idx, RFC2231_SEGMENTS_MAX - 1) || rest.len != 0) {
			flags |= RFC2231_F_GAP;
			continue;
		}
		if (seen & (1ull << idx)) {
			flags |= RFC2231_F_DUPLICATE;
			continue;
		}
		seen |= 1ull << idx;
		seg[idx] = v;
		seg_ext[idx] = ext;
		if (idx + 1 > num_seg) {
			num_seg = (size_t)idx + 1;
		}
	}
	if (num_seg > 0) {
		for (size_t i = 0; i < num_seg; i++) {
			if (!(seen & (1ull << i))) {
				flags |= RFC2231_F_GAP;
				break; /* RFC 2231 §3: stop at the first missing segment */
			}
			struct pval s = seg[i];

			if (seg_ext[i]) {
				flags |= RFC2231_F_EXTENDED;
				if (i == 0) {
					/* charset'language'value */
					const uint8_t *q1 = memchr(s.v.p, '\'', s.v.len);
					const uint8_t *q2 = q1 ? memchr(q1 + 1, '\'', s.v.len - (size_t)(q1 + 1 - s.v.p)) : NULL;

					if (q2 != NULL) {
						*out_charset = span_make(s.v.p, (size_t)(q1 - s.v.p));
						s.v = span_make(q2 + 1, s.v.len - (size_t)(q2 + 1 - s.v.p));
					}
				}
			}
			put(out, cap, out_len, s, seg_ext[i], &flags);
		}
	} else if (have_plain) {
		if (plain_ext) {
			const uint8_t *q1 = memchr(plain.v.p, '\'', plain.v.len);
			const uint8_t *q2 = q1 ? memchr(q1 + 1, '\'', plain.v.len - (size_t)(q1 + 1 - plain.v.p)) : NULL;

			flags |= RFC2231_F_EXTENDED;
			if (q2 != NULL) {
				*out_charset = span_make(plain.v.p, (size_t)(q1 - plain.v.p));
				plain.v = span_make(q2 + 1, plain.v.len - (size_t)(q2 + 1 - plain.v.p));
			}
		}
		put(out, cap, out_len, plain, plain_ext, &flags);
	} else {
		if (out_flags != NULL) {
			*out_flags = flags;
		}
		return false;
	}
	if (out_flags != NULL) {
		*out_flags = flags;
	}
	return true;
}
