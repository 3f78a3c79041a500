/*
 * message.c - builds a struct message from MIME events and answers the
 * accessors of message.h. The message owns: the parser state (heap, one
 * per message), parts, headers (name, raw and decoded values), defects,
 * kept part contents, the UTF-8 bodies and the address lists.
 */
#include "message.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/bb.h"
#include "addr.h"
#include "charset.h"
#include "date.h"
#include "mime.h"
#include "rfc2047.h"
#include "rfc2231.h"
#include "sha256.h"

#define MESSAGE_FILENAME_MAX 1024
#define MESSAGE_DEFECTS_MAX 256

struct message_part {
	struct message *m;
	uint32_t index, parent;
	uint32_t *children;
	size_t num_children;
	char *id;
	char *base;          /* numbering prefix for the children */
	enum message_kind kind;
	char type[2 * MIME_TOKEN_MAX + 2];
	enum mime_cte cte;
	char *charset, *filename, *disposition, *content_id, *description;
	size_t first_header, num_headers;
	uint64_t size;
	struct sha256 sha;
	char sha_hex[2 * SHA256_LEN + 1];
	struct bb content;
	bool content_complete;
	bool in_message;     /* inside an encapsulated message/rfc822 */
	bool text_candidate;
	bool is_attachment;
	bool ended;
};

struct message {
	struct message_opts o;
	struct mime *mp;
	struct message_part **parts;
	size_t num_parts, alloc_parts;
	struct message_header *headers;
	size_t num_headers, alloc_headers, header_bytes;
	bool headers_full;
	struct message_defect *defects;
	size_t num_defects;
	struct addr_list lists[MESSAGE_ADDR_FIELD_COUNT];
	struct message_addr *addrs[MESSAGE_ADDR_FIELD_COUNT];
	char *subject;
	char date[DATE_ISO_LEN];
	bool has_date;
	char *msgid;
	char **irt, **refs;
	size_t num_irt, num_refs;
	struct bb text, html;
	uint32_t text_part, html_part; /* UINT32_MAX if none */
	uint32_t *att;
	size_t num_att;
	uint64_t size;
	int err;
	bool ended;
};

static const char *const field_names[MESSAGE_ADDR_FIELD_COUNT] = { "from", "sender", "reply-to", "to", "cc", "bcc" };

static void add_defect(struct message *m, const char *code, uint32_t part)
{
	if (m->num_defects >= MESSAGE_DEFECTS_MAX) {
		return;
	}
	if (m->defects == NULL) {
		m->defects = calloc(MESSAGE_DEFECTS_MAX, sizeof(*m->defects));
		if (m->defects == NULL) {
			m->err = -ENOMEM;
			return;
		}
	}
	m->defects[m->num_defects].code = code;
	m->defects[m->num_defects].part = part;
	m->num_defects++;
}

struct message *message_new(const struct message_opts *opts)
{
	struct message *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		return NULL;
	}
	if (opts != NULL) {
		m->o = *opts;
	}
	if (m->o.keep_max == 0) {
		m->o.keep_max = SIZE_MAX;
	}
	if (m->o.text_max == 0) {
		m->o.text_max = 32u << 20;
	}
	m->mp = malloc(sizeof(*m->mp));
	if (m->mp == NULL) {
		free(m);
		return NULL;
	}
	mime_init(m->mp);
	bb_init(&m->text, 0);
	bb_init(&m->html, 0);
	m->text_part = m->html_part = UINT32_MAX;
	return m;
}

static void part_free(struct message_part *p)
{
	free(p->children); p->children = NULL;
	free(p->id); p->id = NULL;
	free(p->base); p->base = NULL;
	free(p->charset); p->charset = NULL;
	free(p->filename); p->filename = NULL;
	free(p->disposition); p->disposition = NULL;
	free(p->content_id); p->content_id = NULL;
	free(p->description); p->description = NULL;
	bb_fini(&p->content);
	free(p);
}

void message_free(struct message *m)
{
	if (m == NULL) {
		return;
	}
	for (size_t i = 0; i < m->num_parts; i++) {
		part_free(m->parts[i]);
	}
	free(m->parts); m->parts = NULL;
	for (size_t i = 0; i < m->num_headers; i++) {
		free((char *)m->headers[i].name);
		free((char *)m->headers[i].value);
		free((char *)m->headers[i].raw);
	}
	free(m->headers); m->headers = NULL;
	free(m->defects); m->defects = NULL;
	for (int i = 0; i < MESSAGE_ADDR_FIELD_COUNT; i++) {
		addr_list_fini(&m->lists[i]);
		free(m->addrs[i]); m->addrs[i] = NULL;
	}
	free(m->subject); m->subject = NULL;
	free(m->msgid); m->msgid = NULL;
	for (size_t i = 0; i < m->num_irt; i++) {
		free(m->irt[i]);
	}
	free(m->irt); m->irt = NULL;
	for (size_t i = 0; i < m->num_refs; i++) {
		free(m->refs[i]);
	}
	free(m->refs); m->refs = NULL;
	bb_fini(&m->text);
	bb_fini(&m->html);
	free(m->att); m->att = NULL;
	free(m->mp); m->mp = NULL;
	free(m);
}

static char *dup_span(struct span s)
{
	char *p = malloc(s.len + 1);

	if (p != NULL) {
		if (s.len > 0) {
			memcpy(p, s.p, s.len);
		}
		p[s.len] = '\0';
	}
	return p;
}

static char *dup_bb(struct bb *b)
{
	char *p = dup_span(bb_span(b));

	bb_fini(b);
	return p;
}

/* add_defect_once records `code` for `part` unless it is there already. */
static void add_defect_once(struct message *m, const char *code, uint32_t part)
{
	for (size_t i = 0; i < m->num_defects; i++) {
		if (m->defects[i].part == part && strcmp(m->defects[i].code, code) == 0) {
			return;
		}
	}
	add_defect(m, code, part);
}

/*
 * dup_text copies s as a C string for the model, every NUL byte as U+FFFD
 * (a C string would end there and silently lose the rest), and then
 * records `code` (header_nul, body_nul) once for `part`. NULL on
 * allocation failure.
 */
static char *dup_text(struct message *m, struct span s, const char *code, uint32_t part)
{
	struct bb b;
	size_t num_nul = 0;

	bb_init(&b, 0);
	if (utf8_replace_nul(&b, s, &num_nul) != 0 || bb_append(&b, "", 1) != 0) {
		bb_fini(&b);
		return NULL;
	}
	if (num_nul > 0) {
		add_defect_once(m, code, part);
	}
	return (char *)b.p;
}

/* hdr_raw: the undecoded value of a field, NUL bytes included. */
static struct span hdr_raw(const struct message_header *h)
{
	return span_make(h->raw, h->raw_len);
}

static int on_begin(struct message *m, const struct mime_part_info *in)
{
	struct message_part *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		return -ENOMEM;
	}
	if (m->num_parts == m->alloc_parts) {
		size_t n = m->alloc_parts ? m->alloc_parts * 2 : 8;
		struct message_part **np = realloc(m->parts, n * sizeof(*np));

		if (np == NULL) {
			free(p);
			return -ENOMEM;
		}
		m->parts = np;
		m->alloc_parts = n;
	}
	p->m = m;
	p->index = in->index;
	p->parent = in->parent;
	p->first_header = m->num_headers;
	bb_init(&p->content, 0);
	p->content_complete = true;
	if (in->parent != UINT32_MAX && in->parent < m->num_parts) {
		struct message_part *par = m->parts[in->parent];
		uint32_t *nc = realloc(par->children, (par->num_children + 1) * sizeof(*nc));

		if (nc == NULL) {
			free(p);
			return -ENOMEM;
		}
		par->children = nc;
		par->children[par->num_children++] = in->index;
		if (par->kind == MESSAGE_KIND_MULTIPART && par->num_children == 1) {
			bb_fini(&par->content); /* the preamble is not content */
			par->size = 0;
		}
		p->in_message = par->in_message || par->kind == MESSAGE_KIND_MESSAGE;
	}
	m->parts[m->num_parts++] = p;
	return 0;
}

static int on_header(struct message *m, const struct mime_event *ev)
{
	struct message_header *h;
	struct bb dec;
	int rc;

	if (m->headers_full) {
		return 0;
	}
	m->header_bytes += ev->name.len + 2 * ev->value.len;
	if (m->header_bytes > MESSAGE_HEADERS_MAX) {
		m->headers_full = true;
		add_defect(m, "headers_too_large", ev->part->index);
		return 0;
	}
	if (m->num_headers == m->alloc_headers) {
		size_t n = m->alloc_headers ? m->alloc_headers * 2 : 32;
		struct message_header *nh = realloc(m->headers, n * sizeof(*nh));

		if (nh == NULL) {
			return -ENOMEM;
		}
		m->headers = nh;
		m->alloc_headers = n;
	}
	bb_init(&dec, 0);
	rc = rfc2047_decode(&dec, ev->value, NULL);
	h = &m->headers[m->num_headers];
	h->part = ev->part->index;
	h->name = dup_span(ev->name);
	h->raw = dup_span(ev->value);
	h->raw_len = ev->value.len;
	h->value = rc == 0 ? dup_text(m, bb_span(&dec), "header_nul", ev->part->index) : NULL;
	bb_fini(&dec);
	if (h->name == NULL || h->raw == NULL || h->value == NULL) {
		free((char *)h->name);
		free((char *)h->raw);
		free((char *)h->value);
		return -ENOMEM;
	}
	m->num_headers++;
	m->parts[ev->part->index]->num_headers++;
	return 0;
}

static const struct message_header *part_hdr(const struct message_part *p, const char *name, size_t nth)
{
	const struct message *m = p->m;

	for (size_t i = p->first_header; i < p->first_header + p->num_headers && i < m->num_headers; i++) {
		if (strcasecmp(m->headers[i].name, name) == 0 && nth-- == 0) {
			return &m->headers[i];
		}
	}
	return NULL;
}

/*
 * param_utf8 reads a parameter and decodes it to UTF-8 (RFC 2231 charset
 * or RFC 2047 words); a NUL, quoted or decoded ("%00", "=00"), is U+FFFD.
 */
static char *param_utf8(struct message *m, uint32_t part, struct span value, const char *name, bool *out_found)
{
	char *s;

	uint8_t buf[MESSAGE_FILENAME_MAX];
	size_t n;
	struct span cs;
	unsigned flags;
	struct bb out;
	int rc;

	*out_found = rfc2231_param(value, name, buf, sizeof(buf), &n, &cs, &flags);
	if (!*out_found) {
		return NULL;
	}
	bb_init(&out, 0);
	if (flags & RFC2231_F_EXTENDED) {
		rc = charset_to_utf8(&out, cs, span_make(buf, n), NULL);
		if (rc == -ENOENT) {
			rc = 0;
		}
	} else {
		rc = rfc2047_decode(&out, span_make(buf, n), NULL);
	}
	s = rc == 0 ? dup_text(m, bb_span(&out), "header_nul", part) : NULL;
	bb_fini(&out);
	return s;
}

static char *strip_angle(struct message *m, uint32_t part, struct span v)
{
	struct span s = span_trim_ws(v);

	if (s.len >= 2 && s.p[0] == '<') {
		const uint8_t *e = memchr(s.p, '>', s.len);

		if (e != NULL) {
			s = span_make(s.p + 1, (size_t)(e - s.p - 1));
		}
	}
	return dup_text(m, s, "header_nul", part);
}

static int on_headers_end(struct message *m, const struct mime_part_info *in)
{
	struct message_part *p = m->parts[in->index];
	struct message_part *par = in->parent != UINT32_MAX ? m->parts[in->parent] : NULL;
	const struct message_header *h;
	char num[16];
	struct bb id;
	bool found;
	int rc = 0;

	p->kind = in->kind == MIME_KIND_MULTIPART ? MESSAGE_KIND_MULTIPART
		  : in->kind == MIME_KIND_MESSAGE ? MESSAGE_KIND_MESSAGE
						  : MESSAGE_KIND_LEAF;
	snprintf(p->type, sizeof(p->type), "%s/%s", in->type, in->subtype);
	p->cte = in->cte;
	/* IMAP section numbers (RFC 3501 §6.4.5); unnumbered multiparts get ".0" (docs/json.md). */
	bb_init(&id, 0);
	snprintf(num, sizeof(num), "%u", in->child_num);
	if (par == NULL) {
		rc = bb_append_str(&id, p->kind == MESSAGE_KIND_MULTIPART ? "0" : "1");
		p->base = strdup(p->kind == MESSAGE_KIND_MULTIPART ? "" : "1");
	} else if (par->kind == MESSAGE_KIND_MESSAGE) {
		rc = bb_printf(&id, "%s.%s", par->id, p->kind == MESSAGE_KIND_MULTIPART ? "0" : "1");
		p->base = strdup(p->kind == MESSAGE_KIND_MULTIPART ? par->id : "");
		if (p->base != NULL && p->kind != MESSAGE_KIND_MULTIPART) {
			free(p->base);
			p->base = dup_span(bb_span(&id));
		}
	} else {
		rc = par->base[0] ? bb_printf(&id, "%s.%s", par->base, num) : bb_append_str(&id, num);
		p->base = dup_span(bb_span(&id));
	}
	if (rc != 0 || p->base == NULL || (p->id = dup_bb(&id)) == NULL) {
		bb_fini(&id);
		return -ENOMEM;
	}
	if ((h = part_hdr(p, "content-type", 0)) != NULL) {
		p->charset = param_utf8(m, p->index, hdr_raw(h), "charset", &found);
		p->filename = param_utf8(m, p->index, hdr_raw(h), "name", &found);
	}
	if ((h = part_hdr(p, "content-disposition", 0)) != NULL) {
		char tok[64];
		char *fn = param_utf8(m, p->index, hdr_raw(h), "filename", &found);

		if (rfc2231_first_token(hdr_raw(h), tok, sizeof(tok))) {
			p->disposition = strdup(tok);
		}
		if (fn != NULL) {
			free(p->filename);
			p->filename = fn;
		}
	}
	if ((h = part_hdr(p, "content-id", 0)) != NULL) {
		p->content_id = strip_angle(m, p->index, hdr_raw(h));
	}
	if ((h = part_hdr(p, "content-description", 0)) != NULL) {
		p->description = strdup(h->value);
	}
	sha256_init(&p->sha);
	if (p->kind == MESSAGE_KIND_LEAF) {
		bool is_text = strcmp(p->type, "text/plain") == 0 || strcmp(p->type, "text/html") == 0;
		bool attach = p->disposition != NULL && strcmp(p->disposition, "attachment") == 0;

		p->text_candidate = is_text && !attach && p->filename == NULL && !p->in_message;
	}
	return 0;
}

static int on_body(struct message *m, const struct mime_event *ev)
{
	struct message_part *p = m->parts[ev->part->index];
	size_t lim = p->text_candidate ? m->o.text_max : m->o.keep_max;
	int rc;

	if (m->o.part_data != NULL && (rc = m->o.part_data(m->o.arg, p, p->size, ev->data)) != 0) {
		return rc;
	}
	sha256_update(&p->sha, ev->data.p, ev->data.len);
	p->size += ev->data.len;
	if (p->content_complete) {
		if (p->size > lim) {
			p->content_complete = false;
			bb_fini(&p->content);
		} else if ((rc = bb_append_span(&p->content, ev->data)) != 0) {
			return rc;
		}
	}
	return 0;
}

static int on_event(struct message *m, const struct mime_event *ev)
{
	switch (ev->type) {
	case MIME_EV_PART_BEGIN:
		return on_begin(m, ev->part);
	case MIME_EV_HEADER:
		return on_header(m, ev);
	case MIME_EV_HEADERS_END:
		return on_headers_end(m, ev->part);
	case MIME_EV_BODY:
		return on_body(m, ev);
	case MIME_EV_PART_END: {
		struct message_part *p = m->parts[ev->part->index];
		uint8_t d[SHA256_LEN];

		if (p->kind == MESSAGE_KIND_MULTIPART && p->num_children == 0) {
			p->kind = MESSAGE_KIND_LEAF;
		}
		if (p->kind == MESSAGE_KIND_LEAF && !p->ended) {
			sha256_final(&p->sha, d);
			sha256_hex(d, p->sha_hex);
		}
		p->ended = true;
		return 0;
	}
	case MIME_EV_DEFECT:
		add_defect(m, mime_defect_name(ev->defect), ev->part_index);
		return 0;
	case MIME_EV_UU_BEGIN: {
		/*
		 * The file name of a uuencoded body: it names the part when its
		 * header did not, and a named file is an attachment, not the
		 * text body (no body bytes have come before it).
		 */
		struct message_part *p = m->parts[ev->part->index];

		if (p->filename == NULL && ev->value.len > 0) {
			if ((p->filename = dup_text(m, ev->value, "body_nul", p->index)) == NULL) {
				return -ENOMEM;
			}
			p->text_candidate = false;
		}
		return 0;
	}
	case MIME_EV_PREAMBLE: {
		/* Kept while no delimiter came: a multipart without any is a leaf (as in Python). */
		struct message_part *p = m->parts[ev->part->index];

		if (p->num_children == 0) {
			sha256_update(&p->sha, ev->data.p, ev->data.len);
			p->size += ev->data.len;
			if (p->content_complete && p->size <= m->o.keep_max) {
				return bb_append_span(&p->content, ev->data);
			}
			p->content_complete = false;
			bb_fini(&p->content);
		}
		return 0;
	}
	case MIME_EV_EPILOGUE:
	case MIME_EV_END:
	case MIME_EV_MORE:
	case MIME_EV_COUNT:
		break;
	}
	return 0;
}

int message_feed(struct message *m, const void *data, size_t len)
{
	struct mime_event ev;

	if (m->err != 0 || m->ended) {
		return m->err ? m->err : -EINVAL;
	}
	m->size += len;
	mime_push(m->mp, span_make(data, len));
	while (mime_next(m->mp, &ev) != MIME_EV_MORE) {
		int rc = on_event(m, &ev);

		if (rc != 0) {
			m->err = rc;
			return rc;
		}
	}
	return 0;
}

/* msgids collects every "<...>" (or, failing that, every word) of a root field's value. */
static int msgids(struct message *m, struct span v, char ***out, size_t *out_num)
{
	struct span c = v;
	bool angle = c.len > 0 && memchr(c.p, '<', c.len) != NULL;

	while (c.len > 0) {
		struct span id;

		if (angle) {
			const uint8_t *lt = memchr(c.p, '<', c.len);

			if (lt == NULL) {
				break;
			}
			span_skip(&c, (size_t)(lt + 1 - c.p));
			const uint8_t *gt = memchr(c.p, '>', c.len);
			size_t n = gt ? (size_t)(gt - c.p) : c.len;

			id = span_trim_ws(span_make(c.p, n));
			span_skip(&c, gt ? n + 1 : n);
		} else {
			while (c.len > 0 && (c.p[0] == ' ' || c.p[0] == '\t' || c.p[0] == ',')) {
				span_skip(&c, 1);
			}
			size_t n = 0;

			while (n < c.len && c.p[n] != ' ' && c.p[n] != '\t' && c.p[n] != ',') {
				n++;
			}
			id = span_make(c.p, n);
			span_skip(&c, n);
		}
		if (id.len == 0) {
			continue;
		}
		if (*out_num >= 1000) {
			break;
		}
		char **n = realloc(*out, (*out_num + 1) * sizeof(*n));

		if (n == NULL) {
			return -ENOMEM;
		}
		*out = n;
		if ((n[*out_num] = dup_text(m, id, "header_nul", 0)) == NULL) {
			return -ENOMEM;
		}
		(*out_num)++;
	}
	return 0;
}

static int body_utf8(struct message *m, struct bb *out, const struct message_part *p)
{
	size_t bad = 0;
	int rc;

	if (!p->content_complete) {
		add_defect(m, "body_truncated", p->index);
	}
	rc = charset_to_utf8(out, span_cstr(p->charset ? p->charset : "us-ascii"), bb_span(&p->content), &bad);
	if (rc == -ENOENT) {
		add_defect(m, "charset_unknown", p->index);
		rc = 0;
	}
	if (bad > 0) {
		add_defect(m, "charset_invalid_bytes", p->index);
	}
	/* The text is a span, but consumers hand it on as a C string: no NUL in it. */
	if (rc == 0 && out->len > 0 && memchr(out->p, '\0', out->len) != NULL) {
		struct bb tmp;

		bb_init(&tmp, 0);
		if ((rc = utf8_replace_nul(&tmp, bb_span(out), NULL)) == 0) {
			bb_fini(out);
			*out = tmp;
			add_defect(m, "body_nul", p->index);
		} else {
			bb_fini(&tmp);
		}
	}
	return rc;
}

static int resolve(struct message *m)
{
	const struct message_header *h;
	int rc = 0;

	if (m->num_parts == 0) {
		return 0;
	}
	const struct message_part *root = m->parts[0];

	for (size_t i = 0; i < m->num_parts && rc == 0; i++) {
		struct message_part *p = m->parts[i];

		if (p->kind != MESSAGE_KIND_LEAF) {
			continue;
		}
		if (!p->ended) {
			uint8_t d[SHA256_LEN];

			sha256_final(&p->sha, d);
			sha256_hex(d, p->sha_hex);
			p->ended = true;
		}
		if (p->text_candidate && strcmp(p->type, "text/plain") == 0 && m->text_part == UINT32_MAX) {
			m->text_part = p->index;
			rc = body_utf8(m, &m->text, p);
			continue;
		}
		if (p->text_candidate && strcmp(p->type, "text/html") == 0 && m->html_part == UINT32_MAX) {
			m->html_part = p->index;
			rc = body_utf8(m, &m->html, p);
			continue;
		}
		uint32_t *na = realloc(m->att, (m->num_att + 1) * sizeof(*na));

		if (na == NULL) {
			return -ENOMEM;
		}
		m->att = na;
		m->att[m->num_att++] = p->index;
		p->is_attachment = true;
	}
	for (int f = 0; f < MESSAGE_ADDR_FIELD_COUNT && rc == 0; f++) {
		struct bb all;

		bb_init(&all, 0);
		for (size_t n = 0; rc == 0 && (h = part_hdr(root, field_names[f], n)) != NULL; n++) {
			if (all.len > 0) {
				rc = bb_append(&all, ",", 1);
			}
			if (rc == 0) {
				rc = bb_append(&all, h->raw, h->raw_len);
			}
		}
		if (rc == 0 && all.len > 0) {
			rc = addr_list_parse(&m->lists[f], bb_span(&all));
			struct addr_list *l = &m->lists[f];

			if (rc == 0 && l->num > 0) {
				m->addrs[f] = calloc(l->num, sizeof(struct message_addr));
				if (m->addrs[f] == NULL) {
					rc = -ENOMEM;
				}
				for (size_t i = 0; rc == 0 && i < l->num; i++) {
					struct message_addr *a = &m->addrs[f][i];
					const struct addr_item *it = &l->items[i];

					a->name = it->name;
					a->email = it->email;
					a->local = it->local;
					a->domain = it->domain;
					a->detail = it->detail;
					a->group = it->group;
					a->invalid = it->invalid;
				}
			}
			if (rc == 0 && l->num_invalid > 0) {
				add_defect(m, "address_invalid", 0);
			}
			if (rc == 0 && l->num_nul > 0) {
				add_defect_once(m, "header_nul", 0);
			}
		}
		bb_fini(&all);
	}
	if (rc == 0 && (h = part_hdr(root, "subject", 0)) != NULL && (m->subject = strdup(h->value)) == NULL) {
		rc = -ENOMEM;
	}
	if (rc == 0 && (h = part_hdr(root, "date", 0)) != NULL) {
		int64_t t;

		if (date_parse(hdr_raw(h), &t)) {
			date_iso(m->date, t);
			m->has_date = true;
		} else {
			add_defect(m, "date_invalid", 0);
		}
	}
	if (rc == 0 && (h = part_hdr(root, "message-id", 0)) != NULL) {
		char **ids = NULL;
		size_t n = 0;

		rc = msgids(m, hdr_raw(h), &ids, &n);
		if (n > 0) {
			m->msgid = ids[0];
			for (size_t i = 1; i < n; i++) {
				free(ids[i]);
			}
		}
		free(ids);
	}
	if (rc == 0 && (h = part_hdr(root, "in-reply-to", 0)) != NULL) {
		rc = msgids(m, hdr_raw(h), &m->irt, &m->num_irt);
	}
	if (rc == 0 && (h = part_hdr(root, "references", 0)) != NULL) {
		rc = msgids(m, hdr_raw(h), &m->refs, &m->num_refs);
	}
	return rc;
}

int message_end(struct message *m)
{
	struct mime_event ev;
	int rc;

	if (m->err != 0 || m->ended) {
		return m->err ? m->err : 0;
	}
	mime_finish(m->mp);
	mime_push(m->mp, span_make("", 0));
	while (mime_next(m->mp, &ev) != MIME_EV_END) {
		if ((rc = on_event(m, &ev)) != 0) {
			m->err = rc;
			return rc;
		}
	}
	m->ended = true;
	free(m->mp); m->mp = NULL;
	if ((rc = resolve(m)) != 0) {
		m->err = rc;
	}
	return rc;
}

struct message *message_parse(const void *p, size_t len, const struct message_opts *opts)
{
	struct message *m = message_new(opts);

	if (m != NULL && (message_feed(m, p, len) != 0 || message_end(m) != 0)) {
		message_free(m);
		return NULL;
	}
	return m;
}

size_t message_num_headers(const struct message *m)
{
	return m->num_parts > 0 ? m->parts[0]->num_headers : 0;
}

const struct message_header *message_header_at(const struct message *m, size_t i)
{
	return i < message_num_headers(m) ? &m->headers[i] : NULL;
}

const char *message_header_nth(const struct message *m, const char *name, size_t n)
{
	const struct message_header *h = m->num_parts > 0 ? part_hdr(m->parts[0], name, n) : NULL;

	return h ? h->value : NULL;
}

const char *message_header(const struct message *m, const char *name)
{
	return message_header_nth(m, name, 0);
}

size_t message_addrs(const struct message *m, enum message_addr_field f, const struct message_addr **out)
{
	if ((unsigned)f >= MESSAGE_ADDR_FIELD_COUNT || m->addrs[f] == NULL) {
		*out = NULL;
		return 0;
	}
	*out = m->addrs[f];
	return m->lists[f].num;
}

const char *message_subject(const struct message *m) { return m->subject; }
const char *message_date(const struct message *m) { return m->has_date ? m->date : NULL; }
const char *message_id(const struct message *m) { return m->msgid; }

size_t message_in_reply_to(const struct message *m, const char *const **out)
{
	*out = (const char *const *)m->irt;
	return m->num_irt;
}

size_t message_references(const struct message *m, const char *const **out)
{
	*out = (const char *const *)m->refs;
	return m->num_refs;
}

bool message_is_multipart(const struct message *m)
{
	return m->num_parts > 0 && m->parts[0]->kind == MESSAGE_KIND_MULTIPART;
}

size_t message_num_parts(const struct message *m) { return m->num_parts; }

const struct message_part *message_part(const struct message *m, size_t i)
{
	return i < m->num_parts ? m->parts[i] : NULL;
}

const struct message_part *message_root(const struct message *m) { return message_part(m, 0); }
struct span message_text(const struct message *m) { return bb_span(&m->text); }
struct span message_html(const struct message *m) { return bb_span(&m->html); }

const struct message_part *message_text_part(const struct message *m)
{
	return m->text_part != UINT32_MAX ? m->parts[m->text_part] : NULL;
}

const struct message_part *message_html_part(const struct message *m)
{
	return m->html_part != UINT32_MAX ? m->parts[m->html_part] : NULL;
}

size_t message_num_attachments(const struct message *m) { return m->num_att; }

const struct message_part *message_attachment(const struct message *m, size_t i)
{
	return i < m->num_att ? m->parts[m->att[i]] : NULL;
}

size_t message_num_defects(const struct message *m) { return m->num_defects; }

const struct message_defect *message_defect(const struct message *m, size_t i)
{
	return i < m->num_defects ? &m->defects[i] : NULL;
}

uint64_t message_size(const struct message *m) { return m->size; }
uint32_t message_part_index(const struct message_part *p) { return p->index; }
const char *message_part_id(const struct message_part *p) { return p->id ? p->id : ""; }
enum message_kind message_part_kind(const struct message_part *p) { return p->kind; }
const char *message_part_type(const struct message_part *p) { return p->type[0] ? p->type : "text/plain"; }
const char *message_part_charset(const struct message_part *p) { return p->charset; }
const char *message_part_encoding(const struct message_part *p) { return mime_cte_name(p->cte); }
const char *message_part_filename(const struct message_part *p) { return p->filename; }
const char *message_part_disposition(const struct message_part *p) { return p->disposition; }
const char *message_part_content_id(const struct message_part *p) { return p->content_id; }
const char *message_part_description(const struct message_part *p) { return p->description; }
uint64_t message_part_size(const struct message_part *p) { return p->size; }

const char *message_part_sha256(const struct message_part *p)
{
	return p->kind == MESSAGE_KIND_LEAF && p->ended ? p->sha_hex : NULL;
}

bool message_part_content(const struct message_part *p, struct span *out)
{
	*out = bb_span(&p->content);
	return p->kind == MESSAGE_KIND_LEAF && p->content_complete;
}

size_t message_part_num_children(const struct message_part *p) { return p->num_children; }

const struct message_part *message_part_child(const struct message_part *p, size_t i)
{
	return i < p->num_children ? p->m->parts[p->children[i]] : NULL;
}

const struct message_part *message_part_parent(const struct message_part *p)
{
	return p->parent != UINT32_MAX ? p->m->parts[p->parent] : NULL;
}

const char *message_part_header(const struct message_part *p, const char *name)
{
	const struct message_header *h = part_hdr(p, name, 0);

	return h ? h->value : NULL;
}

size_t message_part_num_headers(const struct message_part *p) { return p->num_headers; }

const struct message_header *message_part_header_at(const struct message_part *p, size_t i)
{
	return i < p->num_headers && p->first_header + i < p->m->num_headers ? &p->m->headers[p->first_header + i]
									       : NULL;
}

bool message_part_is_attachment(const struct message_part *p) { return p->is_attachment; }

const char *message_kind_name(enum message_kind k)
{
	static const char *const names[MESSAGE_KIND_COUNT] = { "leaf", "multipart", "message" };

	return (unsigned)k < MESSAGE_KIND_COUNT ? names[k] : "?";
}
