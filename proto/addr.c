/*
 * addr.c - address-list parsing. One pass with a cursor; each mailbox is
 * gathered as phrase text (for the name) and addr-spec text (for the
 * address), then split. Strings are built in byte builders and handed to
 * the items.
 */
#include "addr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/bb.h"
#include "charset.h"
#include "rfc2047.h"

static bool is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* RFC 5322 specials, minus '.', which we keep inside words (obs-phrase). */
static bool is_special(uint8_t c)
{
	return c == '(' || c == ')' || c == '<' || c == '>' || c == '[' || c == ']' || c == ':' || c == ';' ||
	       c == '@' || c == '\\' || c == ',' || c == '"';
}

/*
 * dup_text copies s as a C string, every NUL byte as U+FFFD (a NUL would
 * cut the string: "a@x\0, b@y" must never read as "a@x"). *num_nul grows
 * by the number replaced. NULL on allocation failure.
 */
static char *dup_text(struct span s, size_t *num_nul)
{
	struct bb b;

	bb_init(&b, 0);
	if (utf8_replace_nul(&b, s, num_nul) != 0 || bb_append(&b, "", 1) != 0) {
		bb_fini(&b);
		return NULL;
	}
	return (char *)b.p;
}

/* decode_text RFC 2047-decodes s into a new C string (NUL as U+FFFD); NULL on allocation failure. */
static char *decode_text(struct span s, size_t *num_nul)
{
	struct bb dec;
	char *p = NULL;

	bb_init(&dec, 0);
	if (rfc2047_decode(&dec, s, NULL) == 0) {
		p = dup_text(bb_span(&dec), num_nul);
	}
	bb_fini(&dec);
	return p;
}

void addr_item_fini(struct addr_item *it)
{
	free(it->name); it->name = NULL;
	free(it->email); it->email = NULL;
	free(it->local); it->local = NULL;
	free(it->domain); it->domain = NULL;
	free(it->detail); it->detail = NULL;
	free(it->group); it->group = NULL;
}

void addr_list_fini(struct addr_list *l)
{
	for (size_t i = 0; i < l->num; i++) {
		addr_item_fini(&l->items[i]);
	}
	free(l->items); l->items = NULL;
	l->num = 0;
}

/*
 * split is addr_split counting the NUL bytes it replaced in *num_nul. A
 * NUL anywhere in the addr-spec makes it invalid: no mailbox has one, and
 * reading up to it would name a different, valid address.
 */
static int split(struct addr_item *out, struct span a, size_t *num_nul)
{
	static const uint8_t repl[3] = { 0xef, 0xbf, 0xbd }; /* U+FFFD */
	const uint8_t *at = NULL;
	struct bb local;
	bool q = false, nul = false;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	a = span_trim_ws(a);
	/* The last '@' outside quotes separates local part and domain. */
	for (size_t i = 0; i < a.len; i++) {
		if (a.p[i] == '"') {
			q = !q;
		} else if (a.p[i] == '\\' && q) {
			i++;
		} else if (a.p[i] == '@' && !q) {
			at = a.p + i;
		}
	}
	struct span lp = at ? span_make(a.p, (size_t)(at - a.p)) : a;
	struct span dom = at ? span_make(at + 1, a.len - lp.len - 1) : span_make(NULL, 0);

	bb_init(&local, 0);
	for (size_t i = 0; i < lp.len && rc == 0; i++) {
		uint8_t c = lp.p[i];

		if (c == '"') {
			continue;
		}
		if (c == '\\' && i + 1 < lp.len) {
			c = lp.p[++i];
		}
		rc = c != '\0' ? bb_append(&local, &c, 1) : bb_append(&local, repl, sizeof(repl));
	}
	if (rc == 0) {
		rc = bb_append(&local, "", 1);
	}
	out->email = dup_text(a, num_nul);
	out->domain = dup_text(dom, NULL); /* its NULs were counted in email */
	if (rc != 0 || out->email == NULL || out->domain == NULL) {
		bb_fini(&local);
		addr_item_fini(out);
		return -ENOMEM;
	}
	out->local = (char *)local.p;
	if (out->local == NULL) {
		out->local = dup_text(span_make("", 0), NULL);
	}
	/* Sub-addressing: "user+tag" (the common convention; RFC 5233 for Sieve). */
	char *plus = out->local ? strchr(out->local, '+') : NULL;

	if (plus != NULL && at != NULL) {
		out->detail = dup_text(span_cstr(plus + 1), NULL);
		if (out->detail == NULL) {
			addr_item_fini(out);
			return -ENOMEM;
		}
	}
	nul = a.len > 0 && memchr(a.p, '\0', a.len) != NULL;
	out->invalid = at == NULL || lp.len == 0 || dom.len == 0 || nul;
	return out->local ? 0 : -ENOMEM;
}

int addr_split(struct addr_item *out, struct span a)
{
	return split(out, a, NULL);
}

struct mbox {
	struct bb phrase;   /* words of the display name, raw (still encoded) */
	struct bb spec;     /* addr-spec text */
	struct bb comment;  /* first comment */
	bool angle;
	bool any;
};

static void skip_ws(struct span *c)
{
	while (c->len > 0 && is_ws(c->p[0])) {
		span_skip(c, 1);
	}
}

/* read_quoted consumes "..." and appends the content (unescaped) to b; raw form to spec if given. */
static int read_quoted(struct span *c, struct bb *b, struct bb *spec)
{
	int rc = 0;

	span_skip(c, 1);
	if (spec != NULL) {
		rc = bb_append(spec, "\"", 1);
	}
	while (c->len > 0 && rc == 0 && c->p[0] != '"') {
		uint8_t ch = c->p[0];

		if (ch == '\\' && c->len > 1) {
			if (spec != NULL) {
				rc = bb_append(spec, c->p, 2);
			}
			span_skip(c, 1);
			ch = c->p[0];
		} else if (spec != NULL) {
			rc = bb_append(spec, &ch, 1);
		}
		if (rc == 0 && ch != '\r' && ch != '\n') {
			rc = bb_append(b, &ch, 1);
		}
		span_skip(c, 1);
	}
	if (c->len > 0) {
		span_skip(c, 1);
	}
	if (spec != NULL && rc == 0) {
		rc = bb_append(spec, "\"", 1);
	}
	return rc;
}

static int read_comment(struct span *c, struct bb *b)
{
	int depth = 0, rc = 0;

	while (c->len > 0 && rc == 0) {
		uint8_t ch = c->p[0];

		span_skip(c, 1);
		if (ch == '\\' && c->len > 0) {
			ch = c->p[0];
			span_skip(c, 1);
		} else if (ch == '(') {
			if (depth++ == 0) {
				continue;
			}
		} else if (ch == ')') {
			if (--depth == 0) {
				break;
			}
		}
		if (b != NULL) {
			rc = bb_append(b, &ch, 1);
		}
	}
	return rc;
}

static int phrase_word(struct mbox *m, struct span w)
{
	int rc = 0;

	if (m->phrase.len > 0) {
		rc = bb_append(&m->phrase, " ", 1);
	}
	return rc ? rc : bb_append_span(&m->phrase, w);
}

/* emit turns the gathered mailbox into an item. */
static int emit(struct addr_list *l, struct mbox *m, const char *group)
{
	struct addr_item it;
	int rc;

	if (!m->any) {
		return 0;
	}
	if (l->num >= ADDR_LIST_MAX) {
		l->num_dropped++;
		return 0;
	}
	struct span spec = m->angle ? bb_span(&m->spec) : bb_span(&m->spec);

	if (!m->angle && memchr(spec.p ? (const void *)spec.p : "", '@', spec.len) == NULL && m->phrase.len > 0) {
		/* "John Doe" alone or "john" with no domain: the words are the address text. */
		spec = bb_span(&m->phrase);
	}
	if ((rc = split(&it, spec, &l->num_nul)) != 0) {
		return rc;
	}
	struct span raw_name = m->angle ? bb_span(&m->phrase) : span_make(NULL, 0);

	if (raw_name.len == 0 && m->comment.len > 0) {
		raw_name = bb_span(&m->comment);
	}
	rc = (it.name = decode_text(span_trim_ws(raw_name), &l->num_nul)) == NULL ? -ENOMEM : 0;
	if (rc == 0 && group != NULL && (it.group = strdup(group)) == NULL) {
		rc = -ENOMEM;
	}
	if (rc != 0) {
		addr_item_fini(&it);
		return rc;
	}
	if (it.invalid) {
		l->num_invalid++;
	}
	struct addr_item *n = realloc(l->items, (l->num + 1) * sizeof(*n));

	if (n == NULL) {
		addr_item_fini(&it);
		return -ENOMEM;
	}
	l->items = n;
	l->items[l->num++] = it;
	return 0;
}

static void mbox_reset(struct mbox *m)
{
	m->phrase.len = 0;
	m->spec.len = 0;
	m->comment.len = 0;
	m->angle = false;
	m->any = false;
}

int addr_list_parse(struct addr_list *out, struct span in)
{
	struct span c = in;
	struct mbox m;
	char *group = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	bb_init(&m.phrase, 65536);
	bb_init(&m.spec, 65536);
	bb_init(&m.comment, 65536);
	mbox_reset(&m);
	while (rc == 0) {
		skip_ws(&c);
		if (c.len == 0) {
			rc = emit(out, &m, group);
			break;
		}
		uint8_t ch = c.p[0];

		if (ch == ',') {
			span_skip(&c, 1);
			rc = emit(out, &m, group);
			mbox_reset(&m);
		} else if (ch == ';') {
			span_skip(&c, 1);
			rc = emit(out, &m, group);
			mbox_reset(&m);
			free(group); group = NULL;
		} else if (ch == ':' && group == NULL && !m.angle && memchr(m.spec.p ? (const void *)m.spec.p : "", '@', m.spec.len) == NULL) {
			/* group display name */
			span_skip(&c, 1);
			if ((group = decode_text(span_trim_ws(bb_span(&m.phrase)), &out->num_nul)) == NULL) {
				rc = -ENOMEM;
			}
			mbox_reset(&m);
		} else if (ch == '(') {
			struct bb tmp;

			bb_init(&tmp, 65536);
			rc = read_comment(&c, &tmp);
			if (rc == 0 && m.comment.len == 0) {
				rc = bb_append_span(&m.comment, span_trim_ws(bb_span(&tmp)));
			}
			bb_fini(&tmp);
		} else if (ch == '"') {
			struct bb w;

			bb_init(&w, 65536);
			m.any = true;
			rc = read_quoted(&c, &w, m.angle ? NULL : &m.spec);
			if (rc == 0 && !m.angle) {
				rc = phrase_word(&m, bb_span(&w));
			}
			bb_fini(&w);
		} else if (ch == '<') {
			span_skip(&c, 1);
			m.any = true;
			if (m.angle) {
				continue; /* "<<a@b>>" */
			}
			m.angle = true;
			m.spec.len = 0;
			skip_ws(&c);
			/* obs-route: "@a,@b:" before the address (RFC 5322 §4.4) */
			if (c.len > 0 && c.p[0] == '@') {
				const uint8_t *colon = memchr(c.p, ':', c.len);
				const uint8_t *gt = memchr(c.p, '>', c.len);

				if (colon != NULL && (gt == NULL || colon < gt)) {
					span_skip(&c, (size_t)(colon + 1 - c.p));
				}
			}
			while (c.len > 0 && c.p[0] != '>' && rc == 0) {
				if (c.p[0] == '"') {
					struct bb w;

					bb_init(&w, 65536);
					rc = read_quoted(&c, &w, &m.spec);
					bb_fini(&w);
				} else if (c.p[0] == '(') {
					rc = read_comment(&c, NULL);
				} else if (is_ws(c.p[0])) {
					span_skip(&c, 1);
				} else {
					rc = bb_append(&m.spec, c.p, 1);
					span_skip(&c, 1);
				}
			}
			if (c.len > 0) {
				span_skip(&c, 1);
			}
		} else if (ch == '[') {
			const uint8_t *end = memchr(c.p, ']', c.len);
			size_t n = end ? (size_t)(end + 1 - c.p) : c.len;

			m.any = true;
			rc = bb_append(&m.spec, c.p, n);
			span_skip(&c, n);
		} else if (ch == '>' || ch == ')' || ch == '\\') {
			span_skip(&c, 1); /* stray */
		} else {
			/* a word: atom text up to a special or white space */
			size_t n = 0;

			while (n < c.len && !is_ws(c.p[n]) && (!is_special(c.p[n]) || c.p[n] == '@')) {
				n++;
			}
			if (n == 0) {
				n = 1;
			}
			m.any = true;
			if (m.angle) {
				/* text after <...>: ignore (some software puts names there) */
			} else {
				rc = bb_append(&m.spec, c.p, n);
				if (rc == 0) {
					rc = phrase_word(&m, span_make(c.p, n));
				}
			}
			span_skip(&c, n);
		}
	}
	free(group);
	bb_fini(&m.phrase);
	bb_fini(&m.spec);
	bb_fini(&m.comment);
	if (rc != 0) {
		addr_list_fini(out);
	}
	return rc;
}
