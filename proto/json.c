/*
 * json.c - JSON writer. A comma is due before an item when the current
 * container already holds one: tracked as one bit per depth.
 */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "charset.h"

void json_init(struct json *j, struct bb *b)
{
	j->b = b;
	j->first[0] = 1;
	j->depth = 0;
	j->after_key = false;
	j->err = 0;
	j->num_bad = 0;
}

static void put(struct json *j, const void *p, size_t len)
{
	if (j->err == 0) {
		j->err = bb_append(j->b, p, len);
	}
}

/* item prepares for a value: a comma unless first, nothing after a key. */
static void item(struct json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->first[j->depth]) {
		j->first[j->depth] = 0;
	} else {
		put(j, ",", 1);
	}
}

static void open_(struct json *j, char c)
{
	item(j);
	put(j, &c, 1);
	if (j->depth + 1 >= JSON_DEPTH_MAX) {
		if (j->err == 0) {
			j->err = -EINVAL;
		}
		return;
	}
	j->depth++;
	j->first[j->depth] = 1;
}

static void close_(struct json *j, char c)
{
	if (j->depth == 0) {
		if (j->err == 0) {
			j->err = -EINVAL;
		}
		return;
	}
	j->depth--;
	put(j, &c, 1);
}

void json_obj(struct json *j) { open_(j, '{'); }
void json_obj_end(struct json *j) { close_(j, '}'); }
void json_arr(struct json *j) { open_(j, '['); }
void json_arr_end(struct json *j) { close_(j, ']'); }

int json_escape(struct bb *b, struct span s, size_t *out_num_bad)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, run = 0;
	int rc;

	if (s.len == 0) {
		return 0;
	}
	while (i < s.len) {
		uint8_t c = s.p[i];
		char esc[8];
		size_t esc_len = 0;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c >= 0x80) {
			size_t n = utf8_seq_len(s.p + i, s.len - i);

			if (n > 0) {
				i += n;
				continue;
			}
			memcpy(esc, "\xef\xbf\xbd", 3); /* U+FFFD for an invalid sequence */
			esc_len = 3;
			if (out_num_bad != NULL) {
				(*out_num_bad)++;
			}
		} else if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			esc_len = 2;
		} else if (c == '\n') {
			memcpy(esc, "\\n", 2);
			esc_len = 2;
		} else if (c == '\r') {
			memcpy(esc, "\\r", 2);
			esc_len = 2;
		} else if (c == '\t') {
			memcpy(esc, "\\t", 2);
			esc_len = 2;
		} else {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			esc_len = 6;
		}
		if ((rc = bb_append(b, s.p + run, i - run)) != 0 || (rc = bb_append(b, esc, esc_len)) != 0) {
			return rc;
		}
		i++;
		run = i;
	}
	return bb_append(b, s.p + run, i - run);
}

void json_key(struct json *j, const char *key)
{
	item(j);
	put(j, "\"", 1);
	if (j->err == 0) {
		j->err = json_escape(j->b, span_cstr(key), &j->num_bad);
	}
	put(j, "\":", 2);
	j->after_key = true;
}

void json_str(struct json *j, struct span s)
{
	item(j);
	put(j, "\"", 1);
	if (j->err == 0) {
		j->err = json_escape(j->b, s, &j->num_bad);
	}
	put(j, "\"", 1);
}

void json_cstr(struct json *j, const char *s)
{
	if (s == NULL) {
		json_null(j);
	} else {
		json_str(j, span_cstr(s));
	}
}

void json_u64(struct json *j, uint64_t v)
{
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);

	item(j);
	put(j, buf, (size_t)n);
}

void json_i64(struct json *j, int64_t v)
{
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	item(j);
	put(j, buf, (size_t)n);
}

void json_num2(struct json *j, double v)
{
	char buf[40];
	int n;

	if (!isfinite(v) || v > 1e15 || v < -1e15) {
		json_null(j);
		return;
	}
	n = snprintf(buf, sizeof(buf), "%.2f", v);
	item(j);
	put(j, buf, (size_t)n);
}

void json_bool(struct json *j, bool v)
{
	item(j);
	put(j, v ? "true" : "false", v ? 4 : 5);
}

void json_null(struct json *j)
{
	item(j);
	put(j, "null", 4);
}

void json_base64(struct json *j, struct span s)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t out_len = (s.len + 2) / 3 * 4;

	item(j);
	put(j, "\"", 1);
	if (j->err == 0 && (j->err = bb_reserve(j->b, out_len)) == 0) {
		uint8_t *o = j->b->p + j->b->len;
		size_t i = 0;

		for (; i + 3 <= s.len; i += 3) {
			uint32_t v = (uint32_t)s.p[i] << 16 | (uint32_t)s.p[i + 1] << 8 | s.p[i + 2];

			*o++ = (uint8_t)tab[v >> 18];
			*o++ = (uint8_t)tab[(v >> 12) & 63];
			*o++ = (uint8_t)tab[(v >> 6) & 63];
			*o++ = (uint8_t)tab[v & 63];
		}
		if (s.len - i == 1) {
			uint32_t v = (uint32_t)s.p[i] << 16;

			*o++ = (uint8_t)tab[v >> 18];
			*o++ = (uint8_t)tab[(v >> 12) & 63];
			*o++ = '=';
			*o++ = '=';
		} else if (s.len - i == 2) {
			uint32_t v = (uint32_t)s.p[i] << 16 | (uint32_t)s.p[i + 1] << 8;

			*o++ = (uint8_t)tab[v >> 18];
			*o++ = (uint8_t)tab[(v >> 12) & 63];
			*o++ = (uint8_t)tab[(v >> 6) & 63];
			*o++ = '=';
		}
		j->b->len += out_len;
	}
	put(j, "\"", 1);
}
