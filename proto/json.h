/*
 * json.h - a small streaming JSON writer (RFC 8259) into a byte builder.
 *
 * Strings are escaped as RFC 8259 §7 requires and validated as UTF-8:
 * invalid sequences are written as U+FFFD, so the output is always valid
 * JSON in UTF-8. Errors (out of memory, builder cap) latch in `err`; the
 * caller checks once at the end. Nesting is bounded by JSON_DEPTH_MAX.
 * The writer borrows the builder; it owns nothing.
 */
#ifndef OMX_JSON_H
#define OMX_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/bb.h"
#include "../core/span.h"

#define JSON_DEPTH_MAX 192

struct json {
	struct bb *b;
	uint8_t first[JSON_DEPTH_MAX]; /* 1: no item written yet at depth d */
	unsigned depth;
	bool after_key;
	int err;            /* first error: -ENOMEM, -E2BIG or -EINVAL (bad nesting) */
	size_t num_bad;     /* invalid UTF-8 sequences replaced */
};

void json_init(struct json *j, struct bb *b);
void json_obj(struct json *j);
void json_obj_end(struct json *j);
void json_arr(struct json *j);
void json_arr_end(struct json *j);
void json_key(struct json *j, const char *key);
void json_str(struct json *j, struct span s);
void json_cstr(struct json *j, const char *s);   /* NULL writes null */
void json_u64(struct json *j, uint64_t v);
void json_i64(struct json *j, int64_t v);
/* json_num2 writes a number with two decimals (a spam score); not finite or beyond 1e15: null. */
void json_num2(struct json *j, double v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);
/* json_base64 writes `s` base64-encoded (RFC 4648 §4, no line breaks) as a string. */
void json_base64(struct json *j, struct span s);

/* json_escape appends s as the inside of a JSON string (no quotes). */
int json_escape(struct bb *b, struct span s, size_t *out_num_bad);

#endif
