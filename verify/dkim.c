/*
 * dkim.c - DKIM verification of one message (RFC 6376 §6).
 *
 * Ownership: struct dkim_msg owns a copy of every header field (hdrs), a
 * copy of each DKIM-Signature field (slot->field, which slot->sig borrows),
 * and the parsed keys. Nothing it returns outlives it but the results,
 * which are values. Body hashing is shared between signatures with the
 * same body canonicalisation and l= (the common two-signature case hashes
 * the body once).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/bb.h"
#include "dkim.h"
#include "dkim_canon.h"
#include "dkim_crypto.h"
#include "dkim_key.h"

struct bodyhash {
	enum dkim_canon c;
	bool has_l;
	uint64_t l;
	struct dkim_body_canon canon;
	struct dkim_sha256 sha;
	uint8_t digest[DKIM_SHA256_LEN];
};

struct field_ref {
	uint32_t off, len;
};

struct slot {
	uint8_t *field;            /* owned copy of the DKIM-Signature field */
	size_t field_len;
	struct dkim_sig sig;       /* borrows field */
	enum auth_res res;         /* AUTH_NONE until decided */
	const char *reason;
	bool key_wanted, key_done;
	enum auth_res key_res;     /* AUTH_NONE: key usable */
	const char *key_reason;
	struct dkim_key key;
	int bh;                    /* index into m->bh, or -1 */
	unsigned key_bits;
	char key_name[DKIM_NAME_MAX + 1];
	struct dkim_result out;
};

struct dkim_msg {
	struct dkim_opts o;
	struct bb hdrs;
	struct field_ref *fields;
	size_t num_fields, cap_fields;
	bool hdr_overflow;
	bool headers_done, body_done, evaluated;
	struct slot *slots;
	unsigned num_slots, num_skipped;
	struct bodyhash bh[DKIM_SIGS_HARD_MAX];
	unsigned num_bh;
};

struct dkim_msg *dkim_msg_new(const struct dkim_opts *o)
{
	struct dkim_msg *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		return NULL;
	}
	if (o != NULL) {
		m->o = *o;
	}
	if (m->o.max_sigs == 0) {
		m->o.max_sigs = DKIM_SIGS_DEFAULT;
	}
	if (m->o.max_sigs > DKIM_SIGS_HARD_MAX) {
		m->o.max_sigs = DKIM_SIGS_HARD_MAX;
	}
	m->slots = calloc(m->o.max_sigs, sizeof(*m->slots));
	if (m->slots == NULL) {
		free(m);
		return NULL;
	}
	bb_init(&m->hdrs, DKIM_HDR_BYTES_MAX);
	return m;
}

void dkim_msg_free(struct dkim_msg *m)
{
	if (m == NULL) {
		return;
	}
	for (unsigned i = 0; i < m->num_slots; i++) {
		free(m->slots[i].field);
		m->slots[i].field = NULL;
	}
	free(m->slots);
	free(m->fields);
	bb_fini(&m->hdrs);
	free(m);
}

static void copy_cstr(char *dst, size_t dst_len, struct span s)
{
	size_t n = s.len < dst_len - 1 ? s.len : dst_len - 1;

	for (size_t i = 0; i < n; i++) {
		dst[i] = s.p[i] >= 0x20 && s.p[i] != 0x7f ? (char)s.p[i] : '?';
	}
	dst[n] = '\0';
}

/* b_prefix copies the first DKIM_B_PREFIX base64 characters of b=, FWS skipped. */
static void b_prefix(char *dst, struct span b)
{
	size_t n = 0;

	for (size_t i = 0; i < b.len && n < DKIM_B_PREFIX; i++) {
		uint8_t c = b.p[i];

		if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			dst[n++] = c >= 0x20 && c != 0x7f ? (char)c : '?';
		}
	}
	dst[n] = '\0';
}

static void fill_names(struct slot *s)
{
	const struct dkim_sig *g = &s->sig;

	copy_cstr(s->out.domain, sizeof(s->out.domain), g->d);
	copy_cstr(s->out.selector, sizeof(s->out.selector), g->s);
	copy_cstr(s->out.algorithm, sizeof(s->out.algorithm), g->a);
	if (g->has_i) {
		copy_cstr(s->out.identity, sizeof(s->out.identity), span_make(g->identity, g->identity_len));
	} else if (g->i.len > 0) {
		copy_cstr(s->out.identity, sizeof(s->out.identity), g->i);
	}
	b_prefix(s->out.b, g->b_text);
}

static void new_sig(struct dkim_msg *m, struct span field, int *out_sig)
{
	struct slot *s = &m->slots[m->num_slots++];
	const uint8_t *colon = memchr(field.p, ':', field.len);
	struct span value;

	s->bh = -1;
	if (field.len > DKIM_SIG_FIELD_MAX) {
		s->res = AUTH_PERMERROR;
		s->reason = "signature field too long";
		return;
	}
	s->field = malloc(field.len ? field.len : 1);
	if (s->field == NULL) {
		s->res = AUTH_TEMPERROR;
		s->reason = "out of memory";
		return;
	}
	memcpy(s->field, field.p, field.len);
	s->field_len = field.len;
	value = span_make(s->field + (colon - field.p) + 1, field.len - (size_t)(colon - field.p) - 1);
	s->res = dkim_sig_parse(&s->sig, &s->reason, value);
	fill_names(s);
	if (s->res != AUTH_NONE) {
		return;
	}
	if (m->o.now != 0 && dkim_sig_expired(&s->sig, m->o.now)) {
		s->res = AUTH_PERMERROR;
		s->reason = "signature expired (x=)"; /* §6.1.1 */
		return;
	}
	memcpy(s->key_name, s->sig.s.p, s->sig.s.len);
	memcpy(s->key_name + s->sig.s.len, "._domainkey.", 12);
	memcpy(s->key_name + s->sig.s.len + 12, s->sig.d.p, s->sig.d.len);
	s->key_name[s->sig.s.len + 12 + s->sig.d.len] = '\0'; /* lengths checked by dkim_sig_parse */
	s->key_wanted = true;
	*out_sig = (int)(m->num_slots - 1);
}

int dkim_msg_header(struct dkim_msg *m, struct span field, int *out_sig)
{
	struct span name = dkim_hdr_name(field);

	*out_sig = -1;
	if (m->headers_done) {
		return 0;
	}
	if (!m->hdr_overflow) {
		if (m->num_fields == m->cap_fields) {
			size_t ncap = m->cap_fields ? m->cap_fields * 2 : 32;
			struct field_ref *nf;

			if (ncap > DKIM_HDR_FIELDS_MAX) {
				ncap = DKIM_HDR_FIELDS_MAX;
			}
			if (m->num_fields == ncap) {
				m->hdr_overflow = true;
				goto sig;
			}
			nf = realloc(m->fields, ncap * sizeof(*nf));
			if (nf == NULL) {
				return -ENOMEM;
			}
			m->fields = nf;
			m->cap_fields = ncap;
		}
		int rc = bb_append(&m->hdrs, field.p, field.len);

		if (rc == -E2BIG) {
			m->hdr_overflow = true;
		} else if (rc != 0) {
			return rc;
		} else {
			m->fields[m->num_fields].off = (uint32_t)(m->hdrs.len - field.len);
			m->fields[m->num_fields].len = (uint32_t)field.len;
			m->num_fields++;
		}
	}
sig:
	if (span_eq_ci(name, "dkim-signature")) {
		if (m->num_slots == m->o.max_sigs) {
			m->num_skipped++;
		} else {
			new_sig(m, field, out_sig);
		}
	}
	return 0;
}

const char *dkim_msg_key_name(const struct dkim_msg *m, unsigned sig)
{
	return sig < m->num_slots ? m->slots[sig].key_name : "";
}

void dkim_msg_key_answer(struct dkim_msg *m, unsigned sig, const struct dns_txt_answer *a)
{
	struct slot *s;

	if (sig >= m->num_slots || !m->slots[sig].key_wanted || m->slots[sig].key_done) {
		return;
	}
	s = &m->slots[sig];
	s->key_done = true;
	switch (a->status) {
	case DNS_OK: {
		const char *first_reason = NULL;

		for (unsigned i = 0; i < a->num_records; i++) {
			const char *why = NULL;

			if (dkim_key_parse(&s->key, &why, a->rec[i]) == AUTH_NONE) {
				s->key_res = AUTH_NONE;
				s->key_reason = NULL;
				return; /* the first usable record wins */
			}
			if (first_reason == NULL) {
				first_reason = why;
			}
		}
		s->key_res = AUTH_PERMERROR; /* §6.1.2: key syntax error */
		s->key_reason = first_reason ? first_reason : "key record syntax error";
		return;
	}
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		s->key_res = AUTH_PERMERROR;
		s->key_reason = "no key for signature"; /* §6.1.2 */
		return;
	case DNS_TOO_BIG:
		s->key_res = AUTH_PERMERROR;
		s->key_reason = "key record too large";
		return;
	case DNS_MALFORMED:
		s->key_res = AUTH_PERMERROR;
		s->key_reason = "malformed key record";
		return;
	case DNS_TIMEOUT:
		s->key_res = AUTH_TEMPERROR;
		s->key_reason = "key lookup timed out";
		return;
	case DNS_SERVFAIL:
		s->key_res = AUTH_TEMPERROR;
		s->key_reason = "key lookup failed (SERVFAIL)";
		return;
	default:
		s->key_res = AUTH_TEMPERROR;
		s->key_reason = "key lookup failed";
		return;
	}
}

static void body_sink(void *arg, const uint8_t *p, size_t len)
{
	struct bodyhash *h = arg;

	if (h->has_l) {
		uint64_t done = h->canon.num_out; /* bytes already emitted before this call */
		uint64_t room = h->l > done ? h->l - done : 0;

		if (room < len) {
			len = (size_t)room; /* l=: only the first l canonical octets count (§3.5) */
		}
	}
	if (len > 0) {
		dkim_sha256_update(&h->sha, p, len);
	}
}

void dkim_msg_headers_end(struct dkim_msg *m)
{
	if (m->headers_done) {
		return;
	}
	m->headers_done = true;
	for (unsigned i = 0; i < m->num_slots; i++) {
		struct slot *s = &m->slots[i];
		unsigned k;

		if (s->res != AUTH_NONE) {
			continue;
		}
		for (k = 0; k < m->num_bh; k++) {
			if (m->bh[k].c == s->sig.bc && m->bh[k].has_l == s->sig.has_l &&
			    (!s->sig.has_l || m->bh[k].l == s->sig.l)) {
				break;
			}
		}
		if (k == m->num_bh) {
			struct bodyhash *h = &m->bh[m->num_bh++];

			h->c = s->sig.bc;
			h->has_l = s->sig.has_l;
			h->l = s->sig.l;
			dkim_sha256_init(&h->sha);
			dkim_body_canon_init(&h->canon, h->c, body_sink, h);
		}
		s->bh = (int)k;
	}
}

void dkim_msg_body(struct dkim_msg *m, const uint8_t *p, size_t len)
{
	if (!m->headers_done) {
		dkim_msg_headers_end(m);
	}
	if (m->body_done) {
		return;
	}
	for (unsigned k = 0; k < m->num_bh; k++) {
		dkim_body_canon_update(&m->bh[k].canon, p, len);
	}
}

void dkim_msg_body_end(struct dkim_msg *m)
{
	if (!m->headers_done) {
		dkim_msg_headers_end(m);
	}
	if (m->body_done) {
		return;
	}
	m->body_done = true;
	for (unsigned k = 0; k < m->num_bh; k++) {
		dkim_body_canon_final(&m->bh[k].canon);
		dkim_sha256_final(&m->bh[k].sha, m->bh[k].digest);
	}
}

unsigned dkim_msg_num_sigs(const struct dkim_msg *m)
{
	return m->num_slots;
}

unsigned dkim_msg_num_skipped(const struct dkim_msg *m)
{
	return m->num_skipped;
}

unsigned dkim_msg_keys_pending(const struct dkim_msg *m)
{
	unsigned n = 0;

	for (unsigned i = 0; i < m->num_slots; i++) {
		n += m->slots[i].key_wanted && !m->slots[i].key_done;
	}
	return n;
}

static void sha_sink(void *arg, const uint8_t *p, size_t len)
{
	dkim_sha256_update(arg, p, len);
}

static bool eq_ci(struct span a, struct span b)
{
	if (a.len != b.len) {
		return false;
	}
	for (size_t i = 0; i < a.len; i++) {
		uint8_t x = a.p[i], y = b.p[i];

		if (x >= 'A' && x <= 'Z') {
			x += 32;
		}
		if (y >= 'A' && y <= 'Z') {
			y += 32;
		}
		if (x != y) {
			return false;
		}
	}
	return true;
}

/*
 * header_digest hashes the signed header fields (§5.4.2: for each name in
 * h=, the last not yet used instance, from the bottom; a name with no
 * instance left contributes nothing, which is how over-signing works) and
 * the signature field itself with b='s value deleted and no CRLF (§3.7).
 */
static bool header_digest(const struct dkim_msg *m, const struct slot *s, uint8_t out[DKIM_SHA256_LEN])
{
	const struct dkim_sig *g = &s->sig;
	struct dkim_sha256 sha;
	uint8_t *copy;
	size_t cut_off, cut_len;

	dkim_sha256_init(&sha);
	for (unsigned j = 0; j < g->num_h; j++) {
		unsigned skip = 0;

		for (unsigned e = 0; e < j; e++) {
			skip += eq_ci(g->h[e], g->h[j]);
		}
		for (size_t f = m->num_fields; f-- > 0;) {
			struct span field = span_make(m->hdrs.p + m->fields[f].off, m->fields[f].len);

			if (!eq_ci(dkim_hdr_name(field), g->h[j])) {
				continue;
			}
			if (skip-- == 0) {
				dkim_hdr_canon(g->hc, field, true, sha_sink, &sha);
				break;
			}
		}
	}
	cut_off = (size_t)(g->b_raw.p - s->field);
	cut_len = g->b_raw.len;
	copy = malloc(s->field_len ? s->field_len : 1);
	if (copy == NULL) {
		return false;
	}
	memcpy(copy, s->field, cut_off);
	memcpy(copy + cut_off, s->field + cut_off + cut_len, s->field_len - cut_off - cut_len);
	dkim_hdr_canon(g->hc, span_make(copy, s->field_len - cut_len), false, sha_sink, &sha);
	free(copy);
	dkim_sha256_final(&sha, out);
	return true;
}

static void evaluate(struct dkim_msg *m, struct slot *s)
{
	const struct bodyhash *h;
	uint8_t digest[DKIM_SHA256_LEN];
	const char *why = NULL;

	if (s->res != AUTH_NONE) {
		return;
	}
	if (m->hdr_overflow) {
		s->res = AUTH_PERMERROR;
		s->reason = "header section too large to verify";
		return;
	}
	if (!s->key_done) {
		s->res = AUTH_TEMPERROR;
		s->reason = "no answer for the key lookup";
		return;
	}
	if (s->key_res != AUTH_NONE) {
		s->res = s->key_res;
		s->reason = s->key_reason;
		return;
	}
	s->out.testing = s->key.testing;
	if ((s->res = dkim_key_check(&s->key, &s->sig, &s->reason)) != AUTH_NONE) {
		return;
	}
	if (s->bh < 0 || !m->body_done) {
		s->res = AUTH_TEMPERROR;
		s->reason = "message body incomplete";
		return;
	}
	h = &m->bh[s->bh];
	if (s->sig.has_l && s->sig.l > h->canon.num_out) {
		s->res = AUTH_FAIL;
		s->reason = "l= is longer than the body";
		return;
	}
	if (s->sig.bh_len != DKIM_SHA256_LEN || memcmp(s->sig.bh, h->digest, DKIM_SHA256_LEN) != 0) {
		s->res = AUTH_FAIL;
		s->reason = "body hash did not verify"; /* §6.1.3 */
		return;
	}
	if (!header_digest(m, s, digest)) {
		s->res = AUTH_TEMPERROR;
		s->reason = "out of memory";
		return;
	}
	s->res = dkim_crypto_verify(s->sig.alg, s->key.p, s->key.p_len, digest, s->sig.b, s->sig.b_len, &s->key_bits,
				    &why);
	s->reason = why;
	s->out.key_bits = s->key_bits;
}

size_t dkim_msg_results(struct dkim_msg *m, struct dkim_result *out, size_t max)
{
	if (!m->evaluated) {
		m->evaluated = true;
		for (unsigned i = 0; i < m->num_slots; i++) {
			struct slot *s = &m->slots[i];

			evaluate(m, s);
			s->out.res = s->res;
			s->out.reason = s->res == AUTH_PASS ? NULL : s->reason;
		}
	}
	for (unsigned i = 0; i < m->num_slots && i < max; i++) {
		out[i] = m->slots[i].out;
	}
	return m->num_slots;
}
