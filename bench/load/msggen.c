/*
 * msggen.c - message bodies, header blocks and DKIM relaxed
 * canonicalisation for oceanmx-load; see msggen.h. Only start-up code: nothing here runs on
 * the send path.
 */
#include "msggen.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *const words[] = {
	"inbound", "mail",   "exchanger", "ring",    "queue",   "spool",  "durable", "message",
	"header",  "body",   "sender",    "domain",  "verify",  "signed", "shard",   "buffer",
	"latency", "commit", "fsync",     "records", "carrier", "window", "harbour", "tide",
	"ocean",   "wave",   "current",   "anchor",  "lantern", "keel",   "compass", "reef",
};

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* (Vigna): fine for filler text and for picking messages. */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

bool size_parse(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || !isdigit((unsigned char)s[0])) {
		return false;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0) {
		return false;
	}
	if (*end == 'k' || *end == 'K') {
		v *= 1024;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		v *= 1024 * 1024;
		end++;
	}
	if (*end != '\0' || v > MSG_SIZE_MAX) {
		return false;
	}
	*out = (size_t)v;
	return true;
}

bool sizes_parse(const char *s, struct msgspec *out, unsigned max, unsigned *out_n, char *err, size_t err_len)
{
	char buf[1024];
	char *save = NULL, *tok;
	unsigned n = 0;

	if (strlen(s) >= sizeof(buf)) {
		snprintf(err, err_len, "size list too long");
		return false;
	}
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		unsigned long w = 1;

		if (n == max) {
			snprintf(err, err_len, "at most %u sizes", max);
			return false;
		}
		if (colon != NULL) {
			char *end;

			*colon = '\0';
			errno = 0;
			w = strtoul(colon + 1, &end, 10);
			if (errno != 0 || *end != '\0' || colon[1] == '\0' || w == 0 || w > 1000000) {
				snprintf(err, err_len, "bad weight '%s' (1..1000000)", colon + 1);
				return false;
			}
		}
		if (!size_parse(tok, &out[n].size)) {
			snprintf(err, err_len, "bad size '%s' (octets, optional k/M suffix, at most 512M)", tok);
			return false;
		}
		out[n].weight = (unsigned)w;
		n++;
	}
	if (n == 0) {
		snprintf(err, err_len, "empty size list");
		return false;
	}
	*out_n = n;
	return true;
}

void body_fill(uint8_t *out, size_t len, uint64_t seed)
{
	uint64_t s = seed ? seed : 0x9E3779B97F4A7C15ull;
	size_t pos = 0;

	while (pos < len) {
		size_t rem = len - pos;
		size_t target, n = 0;

		if (rem <= MSG_LINE_MAX + 2) {
			/* Last line: exactly rem octets (rem >= 2 by construction). */
			for (size_t i = 0; i + 2 < rem; i++) {
				out[pos++] = (uint8_t)('a' + rng_next(&s) % 26);
			}
			if (rem >= 2) {
				out[pos++] = '\r';
			}
			out[pos++] = '\n';
			break;
		}
		target = 56 + (size_t)(rng_next(&s) % (MSG_LINE_MAX - 56 + 1));
		/* Never leave exactly 1 octet for the last line. */
		if (rem - (target + 2) == 1) {
			target--;
		}
		for (;;) {
			const char *w = words[rng_next(&s) % (sizeof(words) / sizeof(words[0]))];
			size_t wl = strlen(w);

			if (n + (n ? 1 : 0) + wl > target) {
				break;
			}
			if (n) {
				out[pos + n++] = ' ';
			}
			memcpy(out + pos + n, w, wl);
			n += wl;
		}
		/* Pad with letters so the line is exactly `target` long (no trailing space). */
		while (n < target) {
			out[pos + n++] = (uint8_t)('a' + rng_next(&s) % 26);
		}
		pos += n;
		out[pos++] = '\r';
		out[pos++] = '\n';
	}
}

/* ---------------------------------------------------------------- DKIM */

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

int dkim_body_relaxed(struct bb *out, struct span body)
{
	size_t empty = 0; /* empty lines held back: trailing ones are dropped */
	struct span c = body;

	while (c.len > 0) {
		struct span line;
		size_t end, i;
		bool wsp = false;
		int rc;

		/* A line ends at CRLF; a last line without CRLF is still a line. */
		end = 0;
		while (end < c.len && !(c.p[end] == '\n' && end > 0 && c.p[end - 1] == '\r')) {
			end++;
		}
		if (end < c.len) {
			line = span_make(c.p, end - 1); /* without CRLF */
			span_skip(&c, end + 1);
		} else {
			line = c;
			span_skip(&c, c.len);
		}
		while (line.len > 0 && is_wsp(line.p[line.len - 1])) {
			line.len--;
		}
		if (line.len == 0) {
			empty++;
			continue;
		}
		for (; empty > 0; empty--) {
			rc = bb_append(out, "\r\n", 2);
			if (rc != 0) {
				return rc;
			}
		}
		rc = bb_reserve(out, line.len + 2);
		if (rc != 0) {
			return rc;
		}
		for (i = 0; i < line.len; i++) {
			uint8_t ch = line.p[i];

			if (is_wsp(ch)) {
				wsp = true;
				continue;
			}
			if (wsp) {
				out->p[out->len++] = ' ';
				wsp = false;
			}
			out->p[out->len++] = ch;
		}
		out->p[out->len++] = '\r';
		out->p[out->len++] = '\n';
	}
	return 0;
}

int dkim_header_relaxed(struct bb *out, struct span field)
{
	const uint8_t *colon = memchr(field.p, ':', field.len);
	size_t name_len, i;
	bool wsp = false, started = false;
	int rc;

	if (colon == NULL) {
		return -1;
	}
	name_len = (size_t)(colon - field.p);
	while (name_len > 0 && is_wsp(field.p[name_len - 1])) {
		name_len--;
	}
	rc = bb_reserve(out, field.len + 3);
	if (rc != 0) {
		return rc;
	}
	for (i = 0; i < name_len; i++) {
		out->p[out->len++] = (uint8_t)tolower(field.p[i]);
	}
	out->p[out->len++] = ':';
	for (i = (size_t)(colon - field.p) + 1; i < field.len; i++) {
		uint8_t ch = field.p[i];

		if (ch == '\r' || ch == '\n') {
			continue; /* unfold */
		}
		if (is_wsp(ch)) {
			wsp = true;
			continue;
		}
		if (wsp && started) {
			out->p[out->len++] = ' ';
		}
		wsp = false;
		started = true;
		out->p[out->len++] = ch;
	}
	out->p[out->len++] = '\r';
	out->p[out->len++] = '\n';
	return 0;
}

#define FIELDS_MAX 64

/* split_fields finds the fields of a header block; returns their count. */
static size_t split_fields(struct span headers, struct span *out, size_t max)
{
	size_t n = 0, pos = 0;

	while (pos < headers.len && n < max) {
		size_t start = pos;

		for (;;) {
			const uint8_t *nl = memchr(headers.p + pos, '\n', headers.len - pos);

			pos = nl ? (size_t)(nl - headers.p) + 1 : headers.len;
			if (pos >= headers.len || !is_wsp(headers.p[pos])) {
				break;
			}
		}
		out[n++] = span_make(headers.p + start, pos - start);
	}
	return n;
}

static bool field_named(struct span f, const char *name, size_t name_len)
{
	size_t i;

	for (i = 0; i < name_len; i++) {
		if (i >= f.len || tolower(f.p[i]) != tolower((unsigned char)name[i])) {
			return false;
		}
	}
	while (i < f.len && is_wsp(f.p[i])) {
		i++;
	}
	return i < f.len && f.p[i] == ':';
}

int dkim_canon_headers(struct bb *out, struct span headers, const char *signed_names)
{
	struct span fields[FIELDS_MAX];
	bool used[FIELDS_MAX] = { false };
	size_t num_fields = split_fields(headers, fields, FIELDS_MAX);
	const char *p = signed_names;

	while (*p != '\0') {
		const char *e = strchr(p, ':');
		size_t nl = e ? (size_t)(e - p) : strlen(p);

		for (size_t i = num_fields; i > 0; i--) {
			if (!used[i - 1] && field_named(fields[i - 1], p, nl)) {
				used[i - 1] = true;
				if (dkim_header_relaxed(out, fields[i - 1]) != 0) {
					return -1;
				}
				break;
			}
		}
		p += nl;
		if (*p == ':') {
			p++;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- msgset */

/* build_head appends the header block (and the empty line) of one message. */
static int build_head(struct bb *out, const struct msgset_opts *o, const char *local, const char *domain,
		      unsigned size_idx, size_t size, struct span body)
{
	char date[64];
	struct tm tm;
	struct bb h;
	int rc;

	gmtime_r(&o->date, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	bb_init(&h, 0);
	rc = bb_printf(&h,
		       "From: Load Generator <%s@%s>\r\n"
		       "To: <%s>\r\n"
		       "Subject: oceanmx-load test message of about %zu octets\r\n"
		       "Date: %s\r\n"
		       "Message-ID: <omxload.%u.%lld@%s>\r\n"
		       "MIME-Version: 1.0\r\n"
		       "Content-Type: text/plain; charset=us-ascii\r\n",
		       local, domain, o->to, size, date, size_idx, (long long)o->date, domain);
	if (rc == 0 && o->sign != NULL) {
		rc = o->sign(o->sign_arg, out, domain, bb_span(&h), body);
	}
	if (rc == 0) {
		rc = bb_append(out, h.p, h.len);
	}
	if (rc == 0) {
		rc = bb_append(out, "\r\n", 2);
	}
	bb_fini(&h);
	return rc;
}

int msgset_build(struct msgset *ms, const struct msgset_opts *o, const struct msgspec *spec, unsigned num_spec,
		 char *err, size_t err_len)
{
	uint64_t cum = 0;

	memset(ms, 0, sizeof(*ms));
	if (num_spec == 0 || num_spec > MSG_SIZES_MAX || o->num_domains == 0 || o->num_domains > MSG_DOMAINS_MAX) {
		snprintf(err, err_len, "bad message set parameters");
		return -1;
	}
	ms->num_sizes = num_spec;
	ms->num_domains = o->num_domains;
	ms->from_local = strdup(o->from_local);
	ms->domains = calloc(o->num_domains, sizeof(*ms->domains));
	ms->msgs = calloc((size_t)num_spec * o->num_domains, sizeof(*ms->msgs));
	if (ms->from_local == NULL || ms->domains == NULL || ms->msgs == NULL) {
		goto nomem;
	}
	for (unsigned d = 0; d < o->num_domains; d++) {
		char name[300];

		if (o->num_domains == 1) {
			snprintf(name, sizeof(name), "%s", o->from_domain);
		} else {
			snprintf(name, sizeof(name), "s%u.%s", d + 1, o->from_domain);
		}
		ms->domains[d] = strdup(name);
		if (ms->domains[d] == NULL) {
			goto nomem;
		}
	}
	for (unsigned s = 0; s < num_spec; s++) {
		struct bb probe;
		size_t head_len, blen;
		static const uint8_t nobody[2] = { '\r', '\n' };

		ms->spec[s] = spec[s];
		cum += spec[s].weight;
		ms->cum[s] = cum;
		/* The head's length does not depend on the body (fixed-size
		 * hashes and signatures), so measure it with a stand-in body. */
		bb_init(&probe, 0);
		if (build_head(&probe, o, ms->from_local, ms->domains[0], s, spec[s].size, span_make(nobody, 2)) != 0) {
			bb_fini(&probe);
			snprintf(err, err_len, "cannot build the message header (DKIM signing failed?)");
			goto fail;
		}
		head_len = probe.len;
		bb_fini(&probe);
		blen = spec[s].size > head_len + 2 ? spec[s].size - head_len : 2;
		ms->bodies[s] = malloc(blen);
		if (ms->bodies[s] == NULL) {
			goto nomem;
		}
		body_fill(ms->bodies[s], blen, 0x5eed0000ull + s);
		ms->body_len[s] = blen;
		for (unsigned d = 0; d < o->num_domains; d++) {
			struct lmsg *m = &ms->msgs[(size_t)s * o->num_domains + d];

			bb_init(&m->head, 0);
			if (build_head(&m->head, o, ms->from_local, ms->domains[d], s, spec[s].size,
				       span_make(ms->bodies[s], blen)) != 0) {
				snprintf(err, err_len, "cannot build the message header (DKIM signing failed?)");
				goto fail;
			}
			m->body = ms->bodies[s];
			m->body_len = blen;
			m->size = m->head.len + blen;
			m->domain = d;
		}
	}
	return 0;
nomem:
	snprintf(err, err_len, "out of memory building messages");
fail:
	msgset_fini(ms);
	return -1;
}

void msgset_fini(struct msgset *ms)
{
	if (ms->msgs != NULL) {
		for (size_t i = 0; i < (size_t)ms->num_sizes * ms->num_domains; i++) {
			bb_fini(&ms->msgs[i].head);
		}
	}
	free(ms->msgs);
	ms->msgs = NULL;
	if (ms->domains != NULL) {
		for (unsigned d = 0; d < ms->num_domains; d++) {
			free(ms->domains[d]);
		}
	}
	free(ms->domains);
	ms->domains = NULL;
	for (unsigned s = 0; s < MSG_SIZES_MAX; s++) {
		free(ms->bodies[s]);
		ms->bodies[s] = NULL;
	}
	free(ms->from_local);
	ms->from_local = NULL;
}

const struct lmsg *msgset_pick(const struct msgset *ms, uint64_t r_size, uint64_t r_domain)
{
	uint64_t w = r_size % ms->cum[ms->num_sizes - 1];
	unsigned s = 0;

	while (w >= ms->cum[s]) {
		s++;
	}
	return &ms->msgs[(size_t)s * ms->num_domains + (unsigned)(r_domain % ms->num_domains)];
}
