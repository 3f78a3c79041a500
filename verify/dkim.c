/*
 * dkim.c - DKIM verification of one message (RFC 6376 §6).
 *
 * Ownership: struct dkim_msg owns a copy of every header field (hdrs), a
 * copy of each DKIM-Signature field (slot->field, which slot->sig borrows),
 * and a reference to each parsed key (shared, see dkim_keyrec.h). Nothing it returns outlives it but the results,
 * which are values. Body hashing is shared between signatures with the
 * same body canonicalisation and l= (the common two-signature case hashes
 * the body once).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"
#include "dkim_canon.h"
#include "dkim_crypto.h"
#include "dkim_hash.h"
#include "dkim_key.h"
#include "dkim_keyrec.h"

struct slot {
	uint8_t *field;            /* owned copy of the DKIM-Signature field */
	size_t field_len;
	struct dkim_sig sig;       /* borrows field */
	enum auth_res res;         /* AUTH_NONE until decided */
	const char *reason;
	bool key_wanted, key_done;
	enum auth_res key_res;     /* AUTH_NONE: key usable (kr) */
	const char *key_reason;
	struct dkim_keyrec *kr;    /* a reference, when key_done and usable */
	int bh;                    /* index into m->bh, or -1 */
	unsigned key_bits;
	char key_name[DKIM_NAME_MAX + 1];
	struct dkim_result out;
};

struct dkim_msg {
	struct dkim_opts o;
	struct dkim_hdrs hdrs;
	bool headers_done, body_done, evaluated;
	struct slot *slots;
	unsigned num_slots, num_skipped;
	struct dkim_bodyhash *bh;  /* o.max_sigs; each set up when used (no zeroing of the rest) */
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
	m->bh = malloc(m->o.max_sigs * sizeof(*m->bh));
	if (m->slots == NULL || m->bh == NULL) {
		free(m->slots);
		free(m->bh);
		free(m);
		return NULL;
	}
	dkim_hdrs_init(&m->hdrs);
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
		dkim_keyrec_unref(m->slots[i].kr); m->slots[i].kr = NULL;
	}
	free(m->slots); m->slots = NULL;
	free(m->bh); m->bh = NULL;
	dkim_hdrs_fini(&m->hdrs);
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
	int rc;

	*out_sig = -1;
	if (m->headers_done) {
		return 0;
	}
	if ((rc = dkim_hdrs_add(&m->hdrs, field)) != 0) {
		return rc;
	}
	if (span_eq_ci(dkim_hdr_name(field), "dkim-signature")) {
		if (m->num_slots == m->o.max_sigs) {
			m->num_skipped++;
		} else {
			new_sig(m, field, out_sig);
		}
	}
	return 0;
}

int dkim_msg_header_big(struct dkim_msg *m, struct span head, int *out_sig)
{
	int rc;

	*out_sig = -1;
	if (m->headers_done) {
		return 0;
	}
	if ((rc = dkim_hdrs_add_big(&m->hdrs, head)) != 0) {
		return rc;
	}
	if (head.len > 0 && span_eq_ci(dkim_hdr_name(head), "dkim-signature")) {
		if (m->num_slots == m->o.max_sigs) {
			m->num_skipped++;
		} else {
			struct slot *s = &m->slots[m->num_slots++];

			s->bh = -1;
			s->res = AUTH_PERMERROR; /* counted and reported, never looked at */
			s->reason = "signature field too long";
		}
	}
	return 0;
}

const char *dkim_msg_key_name(const struct dkim_msg *m, unsigned sig)
{
	return sig < m->num_slots ? m->slots[sig].key_name : "";
}

void dkim_msg_key_set(struct dkim_msg *m, unsigned sig, struct dkim_keyrec *kr)
{
	struct slot *s;

	if (sig >= m->num_slots || !m->slots[sig].key_wanted || m->slots[sig].key_done) {
		return;
	}
	s = &m->slots[sig];
	s->key_done = true;
	s->kr = dkim_keyrec_use(kr, &s->key_res, &s->key_reason);
}

void dkim_msg_key_answer(struct dkim_msg *m, unsigned sig, const struct dns_txt_answer *a)
{
	struct dkim_keyrec *kr;

	if (sig >= m->num_slots || !m->slots[sig].key_wanted || m->slots[sig].key_done) {
		return;
	}
	kr = dkim_keyrec_new(a);
	dkim_msg_key_set(m, sig, kr);
	dkim_keyrec_unref(kr);
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
			dkim_bodyhash_init(&m->bh[m->num_bh++], s->sig.bc, s->sig.has_l, s->sig.l);
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
		dkim_bodyhash_update(&m->bh[k], p, len);
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
		dkim_bodyhash_final(&m->bh[k]);
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

/*
 * header_digest hashes the signed header fields (h=, selected from the
 * bottom, §5.4.2) and the signature field itself with b='s value deleted
 * and no CRLF (§3.7).
 */
static enum auth_res header_digest(const struct dkim_msg *m, const struct slot *s, uint8_t out[DKIM_SHA256_LEN],
				   const char **out_reason)
{
	struct dkim_sha256 sha;

	dkim_sha256_init(&sha);
	if (!dkim_hdrs_hash_signed(&m->hdrs, s->sig.hc, s->sig.h, s->sig.num_h, &sha)) {
		/* Never a digest over a different header set: a signed field
		 * we did not keep makes the signature uncheckable. */
		*out_reason = "signed header field too large to verify";
		return AUTH_PERMERROR;
	}
	if (!dkim_hash_sig_field(s->sig.hc, span_make(s->field, s->field_len), s->sig.b_raw, &sha)) {
		*out_reason = "out of memory";
		return AUTH_TEMPERROR;
	}
	dkim_sha256_final(&sha, out);
	return AUTH_NONE;
}

static void evaluate(struct dkim_msg *m, struct slot *s)
{
	uint8_t digest[DKIM_SHA256_LEN];
	const char *why = NULL;

	if (s->res != AUTH_NONE) {
		return;
	}
	if (m->hdrs.overflow) {
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
	s->out.testing = s->kr->key.testing;
	if ((s->res = dkim_key_check(&s->kr->key, &s->sig, &s->reason)) != AUTH_NONE) {
		return;
	}
	if (s->bh < 0 || !m->body_done) {
		s->res = AUTH_TEMPERROR;
		s->reason = "message body incomplete";
		return;
	}
	if ((s->res = dkim_bodyhash_check(&m->bh[s->bh], &s->sig, &s->reason)) != AUTH_NONE) {
		return;
	}
	if ((s->res = header_digest(m, s, digest, &s->reason)) != AUTH_NONE) {
		return;
	}
	s->res = dkim_pubkey_verify(s->kr->pk, s->sig.alg, digest, s->sig.b, s->sig.b_len, &s->key_bits, &why);
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
