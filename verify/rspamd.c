/*
 * rspamd.c - rspamd's /checkv2 reply and our X-Spam-* fields; see rspamd.h.
 *
 * The reader is a small recursive-descent JSON scanner (RFC 8259) over a
 * cursor: every read is bounded by the input, nesting by RSPAMD_DEPTH_MAX,
 * and only the members we keep are decoded, into fixed-size fields of the
 * caller's struct. Strings are never NUL-terminated in place; numbers are
 * copied (at most 63 bytes) before strtod.
 */
#include "rspamd.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cur {
	const uint8_t *p, *end, *start;
	unsigned depth;
	enum rspamd_rc err;
};

static void ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n')) {
		c->p++;
	}
}

static bool fail(struct cur *c, enum rspamd_rc rc)
{
	if (c->err == RSPAMD_OK) {
		c->err = rc;
	}
	return false;
}

static bool eat(struct cur *c, uint8_t ch)
{
	ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

static int hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9') {
		return ch - '0';
	}
	ch |= 0x20;
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/*
 * string reads a JSON string; when `out` is given, its ASCII content goes
 * there (cut at out_len - 1, NUL-terminated; escapes decoded, anything
 * outside printable ASCII as '?').
 */
static bool string(struct cur *c, char *out, size_t out_len)
{
	size_t n = 0;

	ws(c);
	if (c->p >= c->end || *c->p != '"') {
		return fail(c, RSPAMD_SYNTAX);
	}
	c->p++;
	for (;;) {
		uint8_t ch;

		if (c->p >= c->end) {
			return fail(c, RSPAMD_SYNTAX);
		}
		ch = *c->p++;
		if (ch == '"') {
			break;
		}
		if (ch < 0x20) {
			return fail(c, RSPAMD_SYNTAX); /* RFC 8259 §7: control characters are escaped */
		}
		if (ch == '\\') {
			if (c->p >= c->end) {
				return fail(c, RSPAMD_SYNTAX);
			}
			ch = *c->p++;
			switch (ch) {
			case '"': case '\\': case '/':
				break;
			case 'b': case 'f': case 'n': case 'r': case 't':
				ch = '?';
				break;
			case 'u':
				if (c->end - c->p < 4 || hexval(c->p[0]) < 0 || hexval(c->p[1]) < 0 || hexval(c->p[2]) < 0 ||
				    hexval(c->p[3]) < 0) {
					return fail(c, RSPAMD_SYNTAX);
				}
				ch = (hexval(c->p[0]) == 0 && hexval(c->p[1]) == 0 && c->p[2] < '8')
					     ? (uint8_t)(hexval(c->p[2]) << 4 | hexval(c->p[3]))
					     : '?';
				c->p += 4;
				break;
			default:
				return fail(c, RSPAMD_SYNTAX);
			}
		}
		if (out != NULL && n + 1 < out_len) {
			out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
		}
	}
	if (out != NULL && out_len > 0) {
		out[n] = '\0';
	}
	return true;
}

/* number reads a JSON number into *out (when given). */
static bool number(struct cur *c, double *out)
{
	const uint8_t *s;
	char buf[64];
	size_t n;

	ws(c);
	s = c->p;
	if (c->p < c->end && *c->p == '-') {
		c->p++;
	}
	if (c->p >= c->end || *c->p < '0' || *c->p > '9') {
		return fail(c, RSPAMD_SYNTAX);
	}
	while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '.' || *c->p == 'e' || *c->p == 'E' ||
				 *c->p == '+' || *c->p == '-')) {
		c->p++;
	}
	n = (size_t)(c->p - s);
	if (out == NULL) {
		return true;
	}
	if (n >= sizeof(buf)) {
		*out = 0; /* absurd precision: not a score */
		return true;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *e;

	*out = strtod(buf, &e);
	if (e != buf + n || !isfinite(*out)) {
		return fail(c, RSPAMD_SYNTAX);
	}
	return true;
}

static bool lit(struct cur *c, const char *w)
{
	size_t n = strlen(w);

	ws(c);
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) {
		return fail(c, RSPAMD_SYNTAX);
	}
	c->p += n;
	return true;
}

static bool value(struct cur *c);

/* members walks an object, calling `on` for each key (the cursor then at its value). */
typedef bool member_fn(struct cur *c, const char *key, void *arg);

static bool object(struct cur *c, member_fn *on, void *arg)
{
	char key[RSPAMD_NAME_MAX + 8];

	if (!eat(c, '{')) {
		return fail(c, RSPAMD_SYNTAX);
	}
	if (++c->depth > RSPAMD_DEPTH_MAX) {
		return fail(c, RSPAMD_TOO_DEEP);
	}
	if (eat(c, '}')) {
		c->depth--;
		return true;
	}
	for (;;) {
		if (!string(c, key, sizeof(key)) || !eat(c, ':')) {
			return fail(c, RSPAMD_SYNTAX);
		}
		if (!(on != NULL ? on(c, key, arg) : value(c))) {
			return false;
		}
		if (eat(c, ',')) {
			continue;
		}
		if (eat(c, '}')) {
			break;
		}
		return fail(c, RSPAMD_SYNTAX);
	}
	c->depth--;
	return true;
}

static bool array(struct cur *c)
{
	if (!eat(c, '[')) {
		return fail(c, RSPAMD_SYNTAX);
	}
	if (++c->depth > RSPAMD_DEPTH_MAX) {
		return fail(c, RSPAMD_TOO_DEEP);
	}
	if (eat(c, ']')) {
		c->depth--;
		return true;
	}
	for (;;) {
		if (!value(c)) {
			return false;
		}
		if (eat(c, ',')) {
			continue;
		}
		if (eat(c, ']')) {
			break;
		}
		return fail(c, RSPAMD_SYNTAX);
	}
	c->depth--;
	return true;
}

/* value skips any JSON value. */
static bool value(struct cur *c)
{
	ws(c);
	if (c->p >= c->end) {
		return fail(c, RSPAMD_SYNTAX);
	}
	switch (*c->p) {
	case '{':
		return object(c, NULL, NULL);
	case '[':
		return array(c);
	case '"':
		return string(c, NULL, 0);
	case 't':
		return lit(c, "true");
	case 'f':
		return lit(c, "false");
	case 'n':
		return lit(c, "null");
	default:
		return number(c, NULL);
	}
}

struct sym_ctx {
	double score;
	bool have;
};

static bool sym_member(struct cur *c, const char *key, void *arg)
{
	struct sym_ctx *s = arg;

	ws(c);
	if (strcmp(key, "score") == 0 && c->p < c->end && (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))) {
		s->have = true;
		return number(c, &s->score);
	}
	return value(c);
}

static void sym_keep(struct rspamd_reply *r, const char *name, double score)
{
	unsigned at = r->num_symbols;
	size_t i;

	if (at == RSPAMD_SYMBOLS_MAX) {
		/* Full: replace the smallest |score| when this one weighs more. */
		unsigned min = 0;

		for (unsigned k = 1; k < r->num_symbols; k++) {
			if (fabs(r->sym[k].score) < fabs(r->sym[min].score)) {
				min = k;
			}
		}
		r->num_dropped++;
		if (fabs(score) <= fabs(r->sym[min].score)) {
			return;
		}
		at = min;
	} else {
		r->num_symbols++;
	}
	for (i = 0; name[i] != '\0' && i + 1 < sizeof(r->sym[0].name); i++) {
		char ch = name[i];
		bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
			  ch == '_' || ch == '.' || ch == '-';

		r->sym[at].name[i] = ok ? ch : '_';
	}
	r->sym[at].name[i] = '\0';
	r->sym[at].score = score;
}

static bool symbols_member(struct cur *c, const char *key, void *arg)
{
	struct rspamd_reply *r = arg;
	struct sym_ctx s = { 0 };

	ws(c);
	if (c->p < c->end && *c->p == '{') {
		if (!object(c, sym_member, &s)) {
			return false;
		}
		sym_keep(r, key[0] != '\0' ? key : "_", s.have ? s.score : 0);
		return true;
	}
	return value(c);
}

struct top_ctx {
	struct rspamd_reply *r;
	bool have_score, have_required, have_action, error;
};

static bool top_member(struct cur *c, const char *key, void *arg)
{
	struct top_ctx *t = arg;
	char action[RSPAMD_ACTION_MAX];

	ws(c);
	if (c->p >= c->end) {
		return fail(c, RSPAMD_SYNTAX);
	}
	if (strcmp(key, "score") == 0 && *c->p != '"' && *c->p != '{' && *c->p != '[' && *c->p != 'n' &&
	    *c->p != 't' && *c->p != 'f') {
		t->have_score = true;
		return number(c, &t->r->score);
	}
	if (strcmp(key, "required_score") == 0 && *c->p != '"' && *c->p != '{' && *c->p != '[' && *c->p != 'n' &&
	    *c->p != 't' && *c->p != 'f') {
		t->have_required = true;
		return number(c, &t->r->required);
	}
	if (strcmp(key, "action") == 0 && *c->p == '"') {
		size_t i;

		if (!string(c, action, sizeof(action))) {
			return false;
		}
		for (i = 0; action[i] != '\0'; i++) {
			char ch = action[i];

			t->r->action[i] = ((ch >= 'a' && ch <= 'z') || ch == ' ') ? ch : '_';
		}
		t->r->action[i] = '\0';
		t->have_action = true;
		return true;
	}
	if (strcmp(key, "is_skipped") == 0 && (*c->p == 't' || *c->p == 'f')) {
		t->r->skipped = *c->p == 't';
		return lit(c, *c->p == 't' ? "true" : "false");
	}
	if (strcmp(key, "symbols") == 0 && *c->p == '{') {
		return object(c, symbols_member, t->r);
	}
	if (strcmp(key, "error") == 0) {
		t->error = true;
	}
	return value(c);
}

enum rspamd_rc rspamd_reply_parse(struct rspamd_reply *out, size_t *out_err_pos, const uint8_t *p, size_t len)
{
	struct cur c = { .p = p, .end = p + len, .start = p };
	struct top_ctx t = { .r = out };

	memset(out, 0, sizeof(*out));
	*out_err_pos = 0;
	if (len > RSPAMD_REPLY_MAX) {
		return RSPAMD_TOO_LONG;
	}
	if (!object(&c, top_member, &t)) {
		*out_err_pos = (size_t)(c.p - c.start);
		return c.err != RSPAMD_OK ? c.err : RSPAMD_SYNTAX;
	}
	ws(&c);
	*out_err_pos = (size_t)(c.p - c.start);
	if (c.p != c.end) {
		return RSPAMD_SYNTAX; /* trailing bytes */
	}
	if (t.error || !t.have_score || !t.have_required || !t.have_action) {
		return RSPAMD_INCOMPLETE;
	}
	return RSPAMD_OK;
}

const char *rspamd_rc_name(enum rspamd_rc rc)
{
	static const char *const names[RSPAMD_RC_COUNT] = {
		[RSPAMD_OK] = "ok",           [RSPAMD_SYNTAX] = "syntax",         [RSPAMD_TOO_DEEP] = "too deep",
		[RSPAMD_TOO_LONG] = "too long", [RSPAMD_INCOMPLETE] = "incomplete",
	};

	return (unsigned)rc < RSPAMD_RC_COUNT ? names[rc] : "?";
}

bool rspamd_is_spam(const struct rspamd_reply *r)
{
	return strcmp(r->action, "reject") == 0 || strcmp(r->action, "add header") == 0 ||
	       strcmp(r->action, "rewrite subject") == 0;
}

/* score_ok: a score we print with %.2f in a bounded buffer. */
static double clamp(double v)
{
	return !isfinite(v) ? 0 : v > 1e9 ? 1e9 : v < -1e9 ? -1e9 : v;
}

#define FOLD_COL 76

int rspamd_fields_write(struct bb *out, const struct rspamd_reply *r, const char *error)
{
	size_t mark = out->len, col;
	int rc = 0;

	if (r == NULL) {
		char clean[97];
		size_t n = 0;

		for (const char *s = error ? error : "unknown"; *s != '\0' && n + 1 < sizeof(clean); s++) {
			unsigned char ch = (unsigned char)*s;

			clean[n++] = (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? (char)ch : '?';
		}
		clean[n] = '\0';
		rc = bb_printf(out, "X-Spam-Status: Unknown, engine=rspamd error=\"%s\"\r\n", clean);
		goto out;
	}
	rc = bb_printf(out, "X-Spam-Flag: %s\r\nX-Spam-Score: %.2f\r\n", rspamd_is_spam(r) ? "YES" : "NO",
		       clamp(r->score));
	if (rc == 0) {
		size_t start = out->len;

		rc = bb_printf(out, "X-Spam-Status: %s, score=%.2f required=%.2f action=\"%s\" engine=rspamd",
			       rspamd_is_spam(r) ? "Yes" : "No", clamp(r->score), clamp(r->required), r->action);
		col = out->len - start;
	}
	for (unsigned i = 0; rc == 0 && i < r->num_symbols; i++) {
		char item[RSPAMD_NAME_MAX + 40];
		int n = snprintf(item, sizeof(item), "%s%s(%.2f)", i == 0 ? "tests=" : ",", r->sym[i].name,
				 clamp(r->sym[i].score));

		if (n < 0 || (size_t)n >= sizeof(item)) {
			continue;
		}
		if (col + (size_t)n + 1 > FOLD_COL) {
			rc = bb_append(out, i == 0 ? "\r\n\t" : ",\r\n\t", i == 0 ? 3 : 4);
			col = 1;
			if (rc == 0) {
				const char *body = i == 0 ? item : item + 1;

				rc = bb_append_str(out, body);
				col += strlen(body);
			}
			continue;
		}
		if (i == 0) {
			rc = bb_append(out, " ", 1);
			col++;
		}
		if (rc == 0) {
			rc = bb_append(out, item, (size_t)n);
			col += (size_t)n;
		}
	}
	if (rc == 0) {
		rc = bb_append(out, "\r\n", 2);
	}
out:
	if (rc != 0) {
		out->len = mark;
		return -ENOMEM;
	}
	return 0;
}
