/*
 * arc.c - ARC chain validation (RFC 8617 §5.2) of one message.
 *
 * Header time: every field goes to the header store (AMS h= selection);
 * each ARC field is sorted into its set by instance, copied, parsed, and
 * its key lookup requested (once per distinct key name). Anything that
 * already decides the chain (a malformed or duplicate field, an instance
 * out of range, a cv= that is not allowed there) records the first
 * failure and stops further work. End of header: every instance 1..N must
 * have its three fields; body hashes are set up for the AMSes, newest
 * first. Result: the newest AMS, then every AS from newest to oldest, then
 * (on a passing chain) the older AMSes for oldest-pass.
 *
 * Ownership: struct arc_msg owns the header store, the copies of the ARC
 * fields (each set's parsed AMS and AS borrow them), the keys and the body
 * hashes. Nothing it returns outlives it but the result, a value.
 */
#include "arc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim_canon.h"
#include "dkim_crypto.h"
#include "dkim_hash.h"
#include "dkim_key.h"
#include "dkim_keyrec.h"
#include "dkim_tag.h"

enum arc_kind {
	ARC_AAR = 0, /* ARC-Authentication-Results (§4.1.1) */
	ARC_AMS,     /* ARC-Message-Signature (§4.1.2) */
	ARC_AS,      /* ARC-Seal (§4.1.3) */
	ARC_KIND_COUNT
};

static const char *const kind_name[ARC_KIND_COUNT] = {
	"ARC-Authentication-Results",
	"ARC-Message-Signature",
	"ARC-Seal",
};

struct arc_part {
	uint8_t *field;   /* owned copy of the whole field, NULL if not seen */
	size_t len;
	int key;          /* AMS, AS: index into m->keys, -1 */
};

struct arc_set {
	struct arc_part part[ARC_KIND_COUNT];
	struct dkim_sig ams;   /* borrows part[ARC_AMS].field */
	struct arc_seal seal;  /* borrows part[ARC_AS].field */
	int bh;                /* index into m->bh for the AMS body hash, -1: none */
};

struct arc_key {
	char name[DKIM_NAME_MAX + 1];
	bool done;
	enum auth_res res;     /* AUTH_NONE: usable (kr) */
	const char *reason;
	struct dkim_keyrec *kr; /* a reference, when done and usable */
};

struct arc_msg {
	struct arc_opts o;
	struct dkim_hdrs hdrs;
	struct arc_set *set[ARC_INSTANCES_MAX + 1]; /* by instance; [0] unused */
	unsigned max_instance;
	unsigned num_fields;         /* ARC fields seen */
	struct arc_key *keys;        /* o.max_keys, allocated at the first key */
	unsigned num_keys;
	struct dkim_bodyhash *bh;    /* ARC_BODYHASH_MAX, allocated at the end of the header */
	unsigned num_bh;
	bool headers_done, body_done, evaluated;
	struct arc_result res;       /* res.reason set early = the chain has failed */
};

/* ------------------------------------------------------------ parsers */

unsigned arc_instance_parse(struct span v)
{
	unsigned n = 0;

	if (v.len == 0 || v.len > 2) {
		return 0; /* 1*2DIGIT (§4.2.1) */
	}
	for (size_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9') {
			return 0;
		}
		n = n * 10 + (unsigned)(v.p[i] - '0');
	}
	return n >= 1 && n <= ARC_INSTANCES_MAX ? n : 0;
}

#define PERM(why)                          \
	do {                               \
		*out_reason = (why);       \
		return AUTH_PERMERROR;     \
	} while (0)

static bool parse_dec(struct span v, uint64_t *out)
{
	struct span c = v;

	return span_get_dec_u64(&c, out, UINT64_MAX) && c.len == 0;
}

enum auth_res arc_seal_parse(struct arc_seal *out, const char **out_reason, struct span value)
{
	struct dkim_tag tags[DKIM_TAGS_MAX];
	const struct dkim_tag *t;
	size_t num = 0, err_pos = 0;
	enum dkim_tag_rc rc;
	struct span a;

	memset(out, 0, sizeof(*out));
	*out_reason = NULL;
	rc = dkim_tags_parse(tags, DKIM_TAGS_MAX, &num, &err_pos, value);
	if (rc != DKIM_TAG_OK) {
		PERM(rc == DKIM_TAG_DUP ? "duplicate tag in ARC-Seal" : "ARC-Seal tag-list syntax error");
	}
	static const char *const required[] = { "i", "a", "b", "cv", "d", "s" };
	static const char *const missing[] = { "ARC-Seal missing required tag i=", "ARC-Seal missing required tag a=",
					       "ARC-Seal missing required tag b=", "ARC-Seal missing required tag cv=",
					       "ARC-Seal missing required tag d=", "ARC-Seal missing required tag s=" };
	for (size_t k = 0; k < sizeof(required) / sizeof(required[0]); k++) {
		if (dkim_tag_find(tags, num, required[k]) == NULL) {
			PERM(missing[k]);
		}
	}
	if (dkim_tag_find(tags, num, "h") != NULL) {
		PERM("ARC-Seal has an h= tag (RFC 8617 section 4.1.3)");
	}
	out->instance = arc_instance_parse(dkim_tag_find(tags, num, "i")->value);
	if (out->instance == 0) {
		PERM("ARC-Seal i= is not an instance 1..50");
	}
	a = dkim_tag_find(tags, num, "a")->value;
	out->alg = dkim_alg_from_name(a);
	if (out->alg == DKIM_ALG_RSA_SHA1) {
		PERM("rsa-sha1 signatures are not accepted (RFC 8301 section 3.1)");
	}
	if (out->alg == DKIM_ALG_UNKNOWN) {
		PERM("unsupported signature algorithm");
	}
	t = dkim_tag_find(tags, num, "cv");
	if (span_eq_ci(t->value, "none")) {
		out->cv = ARC_CV_NONE; /* ABNF literals are case-insensitive (§4.1.3 chain-status) */
	} else if (span_eq_ci(t->value, "pass")) {
		out->cv = ARC_CV_PASS;
	} else if (span_eq_ci(t->value, "fail")) {
		out->cv = ARC_CV_FAIL;
	} else {
		PERM("ARC-Seal cv= is not none, pass or fail");
	}
	out->d = dkim_tag_find(tags, num, "d")->value;
	out->s = dkim_tag_find(tags, num, "s")->value;
	if (!dkim_domain_ok(out->d)) {
		PERM("invalid d= domain");
	}
	if (!dkim_domain_ok(out->s) || out->s.len + out->d.len + sizeof("._domainkey.") - 1 > DKIM_NAME_MAX) {
		PERM("invalid s= selector");
	}
	t = dkim_tag_find(tags, num, "b");
	out->b_raw = t->raw;
	if (!dkim_b64_decode(out->b, sizeof(out->b), &out->b_len, t->value) || out->b_len == 0) {
		PERM("b= is not valid base64 or is too long");
	}
	if ((t = dkim_tag_find(tags, num, "t")) != NULL) {
		if (!parse_dec(t->value, &out->t)) {
			PERM("t= syntax error");
		}
		out->has_t = true;
	}
	return AUTH_NONE;
}

/* skip_cfws skips FWS and comments (RFC 5322 §3.2.2, nesting bounded); false on an unclosed comment. */
static bool skip_cfws(struct span *c)
{
	unsigned depth = 0;

	while (c->len > 0) {
		uint8_t x = c->p[0];

		if (depth > 0) {
			if (x == '\\' && c->len > 1) {
				span_skip(c, 2); /* quoted-pair */
				continue;
			}
			if (x == '(') {
				if (++depth > 8) {
					return false;
				}
			} else if (x == ')') {
				depth--;
			}
			span_skip(c, 1);
		} else if (x == ' ' || x == '\t' || x == '\r' || x == '\n') {
			span_skip(c, 1);
		} else if (x == '(') {
			depth = 1;
			span_skip(c, 1);
		} else {
			return true;
		}
	}
	return depth == 0;
}

unsigned arc_aar_instance(struct span value)
{
	struct span c = value, digits;
	size_t n = 0;

	if (!skip_cfws(&c) || c.len == 0 || c.p[0] != 'i') {
		return 0; /* %s"i": case-sensitive (§4.1.1) */
	}
	span_skip(&c, 1);
	if (!skip_cfws(&c) || c.len == 0 || c.p[0] != '=') {
		return 0;
	}
	span_skip(&c, 1);
	if (!skip_cfws(&c)) {
		return 0;
	}
	while (n < c.len && c.p[n] >= '0' && c.p[n] <= '9') {
		n++;
	}
	digits = span_make(c.p, n);
	span_skip(&c, n);
	if (!skip_cfws(&c) || c.len == 0 || c.p[0] != ';') {
		return 0;
	}
	return arc_instance_parse(digits);
}

/* ------------------------------------------------------------ message */

struct arc_msg *arc_msg_new(const struct arc_opts *o)
{
	struct arc_msg *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		return NULL;
	}
	if (o != NULL) {
		m->o = *o;
	}
	if (m->o.max_keys == 0) {
		m->o.max_keys = ARC_KEYS_DEFAULT;
	}
	if (m->o.max_keys > ARC_KEYS_HARD_MAX) {
		m->o.max_keys = ARC_KEYS_HARD_MAX;
	}
	dkim_hdrs_init(&m->hdrs);
	return m;
}

void arc_msg_free(struct arc_msg *m)
{
	if (m == NULL) {
		return;
	}
	for (unsigned i = 1; i <= ARC_INSTANCES_MAX; i++) {
		struct arc_set *s = m->set[i];

		if (s == NULL) {
			continue;
		}
		for (unsigned k = 0; k < ARC_KIND_COUNT; k++) {
			free(s->part[k].field); s->part[k].field = NULL;
		}
		free(s); m->set[i] = NULL;
	}
	for (unsigned k = 0; k < m->num_keys; k++) {
		dkim_keyrec_unref(m->keys[k].kr); m->keys[k].kr = NULL;
	}
	free(m->keys); m->keys = NULL;
	free(m->bh); m->bh = NULL;
	dkim_hdrs_fini(&m->hdrs);
	free(m);
}

/* fail records the first reason the chain fails (later ones are consequences). */
static void fail(struct arc_msg *m, const char *why, enum arc_kind kind, unsigned instance)
{
	if (m->res.reason != NULL) {
		return;
	}
	m->res.res = AUTH_FAIL;
	m->res.reason = why;
	m->res.fail_field = kind < ARC_KIND_COUNT ? kind_name[kind] : NULL;
	m->res.fail_instance = instance;
}

static bool failed(const struct arc_msg *m)
{
	return m->res.reason != NULL;
}

/* want_key returns the index of the key "s._domainkey.d", adding it (and *out_key) when new; -1 when full. */
static int want_key(struct arc_msg *m, struct span s, struct span d, int *out_key)
{
	char name[DKIM_NAME_MAX + 1];
	size_t n = s.len + 12 + d.len; /* <= DKIM_NAME_MAX, checked by the parsers */

	memcpy(name, s.p, s.len);
	memcpy(name + s.len, "._domainkey.", 12);
	memcpy(name + s.len + 12, d.p, d.len);
	name[n] = '\0';
	for (unsigned k = 0; k < m->num_keys; k++) {
		if (span_eq_ci(span_make(name, n), m->keys[k].name)) {
			return (int)k; /* DNS names compare case-insensitively */
		}
	}
	if (m->num_keys == m->o.max_keys) {
		return -1;
	}
	if (m->keys == NULL && (m->keys = calloc(m->o.max_keys, sizeof(*m->keys))) == NULL) {
		return -1;
	}
	memcpy(m->keys[m->num_keys].name, name, n + 1);
	*out_key = (int)m->num_keys;
	return (int)m->num_keys++;
}

/* field_instance finds the instance an AMS or AS claims, from its tag list; 0 if none. */
static unsigned field_instance(struct span value)
{
	struct dkim_tag tags[DKIM_TAGS_MAX];
	const struct dkim_tag *t;
	size_t num = 0, err_pos = 0;

	if (dkim_tags_parse(tags, DKIM_TAGS_MAX, &num, &err_pos, value) != DKIM_TAG_OK) {
		return 0;
	}
	t = dkim_tag_find(tags, num, "i");
	return t != NULL ? arc_instance_parse(t->value) : 0;
}

static void arc_field(struct arc_msg *m, enum arc_kind kind, struct span field, int *out_key)
{
	const uint8_t *colon = memchr(field.p, ':', field.len);
	struct span value = span_make(colon + 1, field.len - (size_t)(colon - field.p) - 1);
	struct arc_set *set;
	struct arc_part *part;
	const char *why = NULL;
	unsigned inst;
	int key;

	if (field.len > ARC_FIELD_MAX) {
		fail(m, "ARC header field too long", kind, 0);
		return;
	}
	inst = kind == ARC_AAR ? arc_aar_instance(value) : field_instance(value);
	if (inst == 0) {
		/* §5.2 step 2: a field that belongs to no valid instance breaks the chain */
		fail(m, kind == ARC_AAR ? "no valid i= at the start of ARC-Authentication-Results"
					: "no valid instance tag i= (1..50)", kind, 0);
		return;
	}
	if (m->set[inst] == NULL && (m->set[inst] = calloc(1, sizeof(*m->set[inst]))) == NULL) {
		fail(m, "out of memory", kind, inst);
		return;
	}
	set = m->set[inst];
	if (inst > m->max_instance) {
		m->max_instance = inst;
	}
	part = &set->part[kind];
	if (part->field != NULL) {
		fail(m, "more than one field of a kind in one ARC set", kind, inst); /* §4.2.1 */
		return;
	}
	part->key = -1;
	if ((part->field = malloc(field.len ? field.len : 1)) == NULL) {
		fail(m, "out of memory", kind, inst);
		return;
	}
	memcpy(part->field, field.p, field.len);
	part->len = field.len;
	value = span_make(part->field + (colon - field.p) + 1, value.len);
	if (kind == ARC_AAR) {
		return;
	}
	if (kind == ARC_AMS) {
		if (dkim_sig_parse_kind(&set->ams, &why, value, DKIM_SIG_ARC_AMS) != AUTH_NONE) {
			fail(m, why, kind, inst);
			return;
		}
		key = want_key(m, set->ams.s, set->ams.d, out_key);
	} else {
		if (arc_seal_parse(&set->seal, &why, value) != AUTH_NONE) {
			fail(m, why, kind, inst);
			return;
		}
		/* §5.2 steps 3-4: a cv=fail anywhere ends the chain; cv=none only in the first set. */
		if (set->seal.cv == ARC_CV_FAIL) {
			fail(m, "an ARC-Seal says cv=fail", kind, inst);
			return;
		}
		if ((inst == 1) != (set->seal.cv == ARC_CV_NONE)) {
			fail(m, inst == 1 ? "the first ARC-Seal is not cv=none" : "an ARC-Seal after the first is not cv=pass",
			     kind, inst);
			return;
		}
		key = want_key(m, set->seal.s, set->seal.d, out_key);
	}
	if (key < 0) {
		fail(m, "too many distinct ARC keys", kind, inst);
		return;
	}
	part->key = key;
}

static enum arc_kind kind_of(struct span name)
{
	if (span_eq_ci(name, "ARC-Seal")) {
		return ARC_AS;
	}
	if (span_eq_ci(name, "ARC-Message-Signature")) {
		return ARC_AMS;
	}
	if (span_eq_ci(name, "ARC-Authentication-Results")) {
		return ARC_AAR;
	}
	return ARC_KIND_COUNT;
}

int arc_msg_header(struct arc_msg *m, struct span field, int *out_key)
{
	enum arc_kind kind;
	int rc;

	*out_key = -1;
	if (m->headers_done) {
		return 0;
	}
	if ((rc = dkim_hdrs_add(&m->hdrs, field)) != 0) {
		return rc;
	}
	kind = kind_of(dkim_hdr_name(field));
	if (kind == ARC_KIND_COUNT) {
		return 0;
	}
	m->num_fields++;
	if (m->hdrs.overflow) {
		fail(m, "header section too large to verify", ARC_KIND_COUNT, 0);
	}
	if (!failed(m)) {
		arc_field(m, kind, field, out_key);
	}
	return 0;
}

int arc_msg_header_big(struct arc_msg *m, struct span head)
{
	enum arc_kind kind;
	int rc;

	if (m->headers_done) {
		return 0;
	}
	if ((rc = dkim_hdrs_add_big(&m->hdrs, head)) != 0) {
		return rc;
	}
	kind = head.len > 0 ? kind_of(dkim_hdr_name(head)) : ARC_KIND_COUNT;
	if (kind != ARC_KIND_COUNT) {
		m->num_fields++;
		fail(m, "ARC header field too long", kind, 0); /* as past ARC_FIELD_MAX */
	}
	return 0;
}

const char *arc_msg_key_name(const struct arc_msg *m, unsigned key)
{
	return key < m->num_keys ? m->keys[key].name : "";
}

void arc_msg_key_set(struct arc_msg *m, unsigned key, struct dkim_keyrec *kr)
{
	struct arc_key *k;

	if (key >= m->num_keys || m->keys[key].done) {
		return;
	}
	k = &m->keys[key];
	k->done = true;
	k->kr = dkim_keyrec_use(kr, &k->res, &k->reason);
}

void arc_msg_key_answer(struct arc_msg *m, unsigned key, const struct dns_txt_answer *a)
{
	struct dkim_keyrec *kr;

	if (key >= m->num_keys || m->keys[key].done) {
		return;
	}
	kr = dkim_keyrec_new(a);
	arc_msg_key_set(m, key, kr);
	dkim_keyrec_unref(kr);
}

unsigned arc_msg_num_keys(const struct arc_msg *m)
{
	return m->num_keys;
}

unsigned arc_msg_keys_pending(const struct arc_msg *m)
{
	unsigned n = 0;

	for (unsigned k = 0; k < m->num_keys; k++) {
		n += !m->keys[k].done;
	}
	return n;
}

/* body_hash_for finds or starts the body hash AMS `s` needs; -1 when the bound is reached. */
static int body_hash_for(struct arc_msg *m, const struct dkim_sig *g)
{
	for (unsigned k = 0; k < m->num_bh; k++) {
		const struct dkim_bodyhash *h = &m->bh[k];

		if (h->c == g->bc && h->has_l == g->has_l && (!g->has_l || h->l == g->l)) {
			return (int)k;
		}
	}
	if (m->num_bh == ARC_BODYHASH_MAX) {
		return -1;
	}
	dkim_bodyhash_init(&m->bh[m->num_bh], g->bc, g->has_l, g->l);
	return (int)m->num_bh++;
}

void arc_msg_headers_end(struct arc_msg *m)
{
	unsigned n = m->max_instance;

	if (m->headers_done) {
		return;
	}
	m->headers_done = true;
	m->res.num_sets = n;
	if (m->num_fields == 0 || failed(m)) {
		return;
	}
	if (m->hdrs.overflow) {
		fail(m, "header section too large to verify", ARC_KIND_COUNT, 0);
		return;
	}
	/* §5.2 step 2: instances 1..N, each with exactly one field of each kind. */
	for (unsigned i = 1; i <= n; i++) {
		for (unsigned k = 0; k < ARC_KIND_COUNT; k++) {
			if (m->set[i] == NULL || m->set[i]->part[k].field == NULL) {
				fail(m, "ARC set incomplete (a field, or a whole set, is missing)", (enum arc_kind)k, i);
				return;
			}
		}
	}
	if ((m->bh = calloc(ARC_BODYHASH_MAX, sizeof(*m->bh))) == NULL) {
		fail(m, "out of memory", ARC_KIND_COUNT, 0);
		return;
	}
	/* Newest first: it always gets a body hash; older ones while the bound allows (oldest-pass). */
	for (unsigned i = n; i >= 1; i--) {
		m->set[i]->bh = body_hash_for(m, &m->set[i]->ams);
	}
}

bool arc_msg_body_wanted(const struct arc_msg *m)
{
	return m->headers_done && !failed(m) && m->num_bh > 0;
}

void arc_msg_body(struct arc_msg *m, const uint8_t *p, size_t len)
{
	if (!m->headers_done) {
		arc_msg_headers_end(m);
	}
	if (m->body_done) {
		return;
	}
	for (unsigned k = 0; k < m->num_bh; k++) {
		dkim_bodyhash_update(&m->bh[k], p, len);
	}
}

void arc_msg_body_end(struct arc_msg *m)
{
	if (!m->headers_done) {
		arc_msg_headers_end(m);
	}
	if (m->body_done) {
		return;
	}
	m->body_done = true;
	for (unsigned k = 0; k < m->num_bh; k++) {
		dkim_bodyhash_final(&m->bh[k]);
	}
}

/* usable_key returns the parsed key of a part, or NULL with *why. */
static const struct dkim_keyrec *usable_key(const struct arc_msg *m, const struct arc_part *p, const char **why)
{
	const struct arc_key *k = &m->keys[p->key];

	if (!k->done) {
		*why = "no answer for the key lookup";
		return NULL;
	}
	if (k->res != AUTH_NONE) {
		*why = k->reason;
		return NULL;
	}
	return k->kr;
}

/* ams_verify checks AMS(i) as a DKIM signature would be (§5.2 step 4). AUTH_PASS, else a reason. */
static enum auth_res ams_verify(const struct arc_msg *m, unsigned i, const char **why)
{
	const struct arc_set *s = m->set[i];
	const struct dkim_sig *g = &s->ams;
	const struct dkim_keyrec *key;
	struct dkim_sha256 sha;
	uint8_t digest[DKIM_SHA256_LEN];
	unsigned bits;

	if ((key = usable_key(m, &s->part[ARC_AMS], why)) == NULL) {
		return AUTH_FAIL;
	}
	if (dkim_key_check(&key->key, g, why) != AUTH_NONE) {
		return AUTH_FAIL;
	}
	if (s->bh < 0) {
		*why = "body hash not computed (more AMS canonicalisations than hashed)";
		return AUTH_FAIL;
	}
	if (!m->body_done) {
		*why = "message body incomplete";
		return AUTH_FAIL;
	}
	if (dkim_bodyhash_check(&m->bh[s->bh], g, why) != AUTH_NONE) {
		return AUTH_FAIL;
	}
	dkim_sha256_init(&sha);
	if (!dkim_hdrs_hash_signed(&m->hdrs, g->hc, g->h, g->num_h, &sha)) {
		*why = "signed header field too large to verify"; /* never a digest over other fields */
		return AUTH_FAIL;
	}
	if (!dkim_hash_sig_field(g->hc, span_make(s->part[ARC_AMS].field, s->part[ARC_AMS].len), g->b_raw, &sha)) {
		*why = "out of memory";
		return AUTH_FAIL;
	}
	dkim_sha256_final(&sha, digest);
	if (dkim_pubkey_verify(key->pk, g->alg, digest, g->b, g->b_len, &bits, why) != AUTH_PASS) {
		return AUTH_FAIL;
	}
	*why = NULL;
	return AUTH_PASS;
}

static void sha_sink(void *arg, const uint8_t *p, size_t len)
{
	dkim_sha256_update(arg, p, len);
}

/*
 * seal_verify checks AS(i) (§5.1.1, §5.2 step 6): relaxed header
 * canonicalisation over the fields of sets 1..i in increasing instance
 * order, AAR, AMS, AS within each set, AS(i) last with b= deleted and no
 * CRLF.
 */
static enum auth_res seal_verify(const struct arc_msg *m, unsigned i, const char **why)
{
	const struct arc_set *s = m->set[i];
	const struct dkim_keyrec *key;
	struct dkim_sha256 sha;
	uint8_t digest[DKIM_SHA256_LEN];
	unsigned bits;

	if ((key = usable_key(m, &s->part[ARC_AS], why)) == NULL) {
		return AUTH_FAIL;
	}
	if (dkim_key_fits_alg(&key->key, s->seal.alg, why) != AUTH_NONE) {
		return AUTH_FAIL;
	}
	dkim_sha256_init(&sha);
	for (unsigned j = 1; j <= i; j++) {
		for (unsigned k = 0; k < ARC_KIND_COUNT; k++) {
			const struct arc_part *p = &m->set[j]->part[k];

			if (j == i && k == ARC_AS) {
				break;
			}
			dkim_hdr_canon(DKIM_CANON_RELAXED, span_make(p->field, p->len), true, sha_sink, &sha);
		}
	}
	if (!dkim_hash_sig_field(DKIM_CANON_RELAXED, span_make(s->part[ARC_AS].field, s->part[ARC_AS].len),
				 s->seal.b_raw, &sha)) {
		*why = "out of memory";
		return AUTH_FAIL;
	}
	dkim_sha256_final(&sha, digest);
	if (dkim_pubkey_verify(key->pk, s->seal.alg, digest, s->seal.b, s->seal.b_len, &bits, why) != AUTH_PASS) {
		return AUTH_FAIL;
	}
	*why = NULL;
	return AUTH_PASS;
}

static void evaluate(struct arc_msg *m)
{
	unsigned n = m->max_instance;
	const char *why = NULL;

	if (!m->headers_done) {
		arc_msg_headers_end(m);
	}
	if (m->num_fields == 0 || failed(m)) {
		return; /* none, or the failure already recorded */
	}
	/* §5.2 step 4: the newest AMS must verify. */
	if (ams_verify(m, n, &why) != AUTH_PASS) {
		fail(m, why, ARC_AMS, n);
		return;
	}
	/* §5.2 step 6: every AS, newest to oldest. */
	for (unsigned i = n; i >= 1; i--) {
		if (seal_verify(m, i, &why) != AUTH_PASS) {
			fail(m, why, ARC_AS, i);
			return;
		}
	}
	/* §5.2 step 5 (optional): oldest-pass, walking down until an AMS fails. */
	m->res.oldest_pass = 0;
	for (unsigned i = n - 1; i >= 1; i--) {
		if (ams_verify(m, i, &why) != AUTH_PASS) {
			m->res.oldest_pass = i + 1;
			break;
		}
	}
	m->res.res = AUTH_PASS;
}

void arc_msg_result(struct arc_msg *m, struct arc_result *out)
{
	if (!m->evaluated) {
		m->evaluated = true;
		evaluate(m);
		if (m->res.res == AUTH_FAIL && m->res.reason == NULL) {
			m->res.reason = "ARC chain did not validate"; /* not reached: every failure names itself */
		}
		if (m->res.res != AUTH_FAIL) {
			m->res.fail_field = NULL;
			m->res.fail_instance = 0;
		}
	}
	*out = m->res;
}

const char *arc_result_describe(char *buf, size_t len, const struct arc_result *r)
{
	if (len == 0) {
		return buf;
	}
	buf[0] = '\0';
	if (r->res != AUTH_FAIL || r->reason == NULL) {
		return buf;
	}
	if (r->fail_field != NULL && r->fail_instance > 0) {
		snprintf(buf, len, "%s i=%u: %s", r->fail_field, r->fail_instance, r->reason);
	} else if (r->fail_field != NULL) {
		snprintf(buf, len, "%s: %s", r->fail_field, r->reason);
	} else {
		snprintf(buf, len, "%s", r->reason);
	}
	return buf;
}
