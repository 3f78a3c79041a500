/*
 * dkim_hash.c - header selection, signature-field and body hashing shared
 * by DKIM and ARC (RFC 6376 §3.4, §3.5, §3.7, §5.4.2).
 */
#include "dkim_hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void dkim_hdrs_init(struct dkim_hdrs *h)
{
	memset(h, 0, sizeof(*h));
	/* whole fields up to DKIM_HDR_BYTES_MAX (checked in dkim_hdrs_add), then names of big ones */
	bb_init(&h->bytes, DKIM_HDR_BYTES_MAX + (size_t)DKIM_HDR_FIELDS_MAX * DKIM_HDR_NAME_KEEP);
}

void dkim_hdrs_fini(struct dkim_hdrs *h)
{
	free(h->fields); h->fields = NULL;
	bb_fini(&h->bytes);
	h->num_fields = h->cap_fields = 0;
	h->whole_bytes = 0;
}

/* new_ref makes room for one more field; NULL with h->overflow set past the bound, or on ENOMEM (*rc). */
static struct dkim_field_ref *new_ref(struct dkim_hdrs *h, int *rc)
{
	*rc = 0;
	if (h->overflow) {
		return NULL;
	}
	if (h->num_fields == h->cap_fields) {
		size_t ncap = h->cap_fields ? h->cap_fields * 2 : 32;
		struct dkim_field_ref *nf;

		if (ncap > DKIM_HDR_FIELDS_MAX) {
			ncap = DKIM_HDR_FIELDS_MAX;
		}
		if (h->num_fields == ncap) {
			h->overflow = true;
			return NULL;
		}
		nf = realloc(h->fields, ncap * sizeof(*nf));
		if (nf == NULL) {
			*rc = -ENOMEM;
			return NULL;
		}
		h->fields = nf;
		h->cap_fields = ncap;
	}
	return &h->fields[h->num_fields];
}

int dkim_hdrs_add(struct dkim_hdrs *h, struct span field)
{
	struct dkim_field_ref *r;
	int rc;

	if (field.len > DKIM_HDR_BYTES_MAX - h->whole_bytes) {
		return dkim_hdrs_add_big(h, field);
	}
	if ((r = new_ref(h, &rc)) == NULL) {
		return rc;
	}
	if ((rc = bb_append(&h->bytes, field.p, field.len)) != 0) {
		return rc;
	}
	r->off = (uint32_t)(h->bytes.len - field.len);
	r->len = (uint32_t)field.len;
	r->big = r->name_cut = false;
	h->whole_bytes += field.len;
	h->num_fields++;
	return 0;
}

int dkim_hdrs_add_big(struct dkim_hdrs *h, struct span head)
{
	struct dkim_field_ref *r;
	struct span name = dkim_hdr_name(head);
	bool cut = head.len == 0 || memchr(head.p, ':', head.len) == NULL;
	int rc;

	if (cut) {
		name = head; /* the colon was not seen: the whole head may be (part of) the name */
	}
	if (name.len > DKIM_HDR_NAME_KEEP) {
		name.len = DKIM_HDR_NAME_KEEP;
		cut = true;
	}
	if ((r = new_ref(h, &rc)) == NULL) {
		return rc;
	}
	if ((rc = bb_append(&h->bytes, name.p, name.len)) != 0) {
		return rc;
	}
	r->off = (uint32_t)(h->bytes.len - name.len);
	r->len = (uint32_t)name.len;
	r->big = true;
	r->name_cut = cut;
	h->num_fields++;
	return 0;
}

struct span dkim_hdrs_field(const struct dkim_hdrs *h, size_t i)
{
	return span_make(h->bytes.p + h->fields[i].off, h->fields[i].len);
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

static void sha_sink(void *arg, const uint8_t *p, size_t len)
{
	dkim_sha256_update(arg, p, len);
}

/* prefix_ci: `pre` is an ASCII case-insensitive prefix of `s`. */
static bool prefix_ci(struct span pre, struct span s)
{
	return pre.len <= s.len && eq_ci(pre, span_make(s.p, pre.len));
}

bool dkim_hdrs_hash_signed(const struct dkim_hdrs *h, enum dkim_canon c, const struct span *names, unsigned num_names,
			   struct dkim_sha256 *sha)
{
	for (unsigned j = 0; j < num_names; j++) {
		unsigned skip = 0;

		for (unsigned e = 0; e < j; e++) {
			skip += eq_ci(names[e], names[j]);
		}
		for (size_t f = h->num_fields; f-- > 0;) {
			const struct dkim_field_ref *r = &h->fields[f];
			struct span field = dkim_hdrs_field(h, f);

			if (r->name_cut) {
				if (prefix_ci(field, names[j])) {
					return false; /* may be this name: cannot tell which field is selected */
				}
				continue;
			}
			if (!eq_ci(r->big ? field : dkim_hdr_name(field), names[j])) {
				continue;
			}
			if (skip-- == 0) {
				if (r->big) {
					return false; /* selected, but not kept */
				}
				dkim_hdr_canon(c, field, true, sha_sink, sha);
				break;
			}
		}
	}
	return true;
}

bool dkim_hash_sig_field(enum dkim_canon c, struct span field, struct span b_raw, struct dkim_sha256 *sha)
{
	size_t cut_off = field.len, cut_len = 0;
	uint8_t *copy;

	if (b_raw.p != NULL && b_raw.p >= field.p && b_raw.p <= field.p + field.len &&
	    b_raw.len <= (size_t)(field.p + field.len - b_raw.p)) {
		cut_off = (size_t)(b_raw.p - field.p); /* else nothing to delete: b_raw is not in field */
		cut_len = b_raw.len;
	}
	/* Relaxed canonicalisation folds WSP runs across the cut, so the
	 * field is canonicalised whole, after the deletion. */
	copy = malloc(field.len ? field.len : 1);
	if (copy == NULL) {
		return false;
	}
	memcpy(copy, field.p, cut_off);
	memcpy(copy + cut_off, field.p + cut_off + cut_len, field.len - cut_off - cut_len);
	dkim_hdr_canon(c, span_make(copy, field.len - cut_len), false, sha_sink, sha);
	free(copy);
	return true;
}

static void body_sink(void *arg, const uint8_t *p, size_t len)
{
	struct dkim_bodyhash *h = arg;

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

void dkim_bodyhash_init(struct dkim_bodyhash *bh, enum dkim_canon c, bool has_l, uint64_t l)
{
	memset(bh, 0, sizeof(*bh));
	bh->c = c;
	bh->has_l = has_l;
	bh->l = l;
	dkim_sha256_init(&bh->sha);
	dkim_body_canon_init(&bh->canon, c, body_sink, bh);
}

void dkim_bodyhash_update(struct dkim_bodyhash *bh, const uint8_t *p, size_t len)
{
	dkim_body_canon_update(&bh->canon, p, len);
}

void dkim_bodyhash_final(struct dkim_bodyhash *bh)
{
	dkim_body_canon_final(&bh->canon);
	dkim_sha256_final(&bh->sha, bh->digest);
}

enum auth_res dkim_bodyhash_check(const struct dkim_bodyhash *bh, const struct dkim_sig *sig, const char **out_reason)
{
	*out_reason = NULL;
	if (sig->has_l && sig->l > bh->canon.num_out) {
		*out_reason = "l= is longer than the body";
		return AUTH_FAIL;
	}
	if (sig->bh_len != DKIM_SHA256_LEN || memcmp(sig->bh, bh->digest, DKIM_SHA256_LEN) != 0) {
		*out_reason = "body hash did not verify"; /* §6.1.3 */
		return AUTH_FAIL;
	}
	return AUTH_NONE;
}
