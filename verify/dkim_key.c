/*
 * dkim_key.c - DKIM key record parsing and key/signature fit
 * (RFC 6376 §3.6.1, §6.1.2; RFC 8463 §4). Pure.
 */
#include "dkim_key.h"

#include "dkim_tag.h"

#define PERM(why)                      \
	do {                           \
		*out_reason = (why);   \
		return AUTH_PERMERROR; \
	} while (0)

enum auth_res dkim_key_parse(struct dkim_key *out, const char **out_reason, struct span record)
{
	struct dkim_tag tags[DKIM_TAGS_MAX];
	const struct dkim_tag *t;
	size_t num = 0, err_pos = 0;
	enum dkim_tag_rc rc;
	struct span list, item;

	memset(out, 0, sizeof(*out));
	*out_reason = NULL;
	rc = dkim_tags_parse(tags, DKIM_TAGS_MAX, &num, &err_pos, record);
	if (rc != DKIM_TAG_OK) {
		PERM(rc == DKIM_TAG_DUP ? "duplicate tag in key record" : "key record syntax error");
	}
	if ((t = dkim_tag_find(tags, num, "v")) != NULL) {
		if (t != &tags[0]) {
			PERM("key record v= is not the first tag");
		}
		if (!span_eq(t->value, SPAN_LIT("DKIM1"))) {
			PERM("key record has an unsupported version");
		}
	}
	out->k = DKIM_KEY_RSA;
	if ((t = dkim_tag_find(tags, num, "k")) != NULL) {
		if (span_eq(t->value, SPAN_LIT("rsa"))) {
			out->k = DKIM_KEY_RSA;
		} else if (span_eq(t->value, SPAN_LIT("ed25519"))) {
			out->k = DKIM_KEY_ED25519;
		} else {
			PERM("key record has an unknown key type k=");
		}
	}
	out->sha256_ok = true;
	if ((t = dkim_tag_find(tags, num, "h")) != NULL) {
		out->sha256_ok = false;
		list = t->value;
		while (dkim_list_next(&list, &item)) {
			if (span_eq(item, SPAN_LIT("sha256"))) {
				out->sha256_ok = true; /* unknown hash names are ignored (§3.6.1) */
			}
		}
	}
	if ((t = dkim_tag_find(tags, num, "s")) != NULL) {
		bool email = false;

		list = t->value;
		while (dkim_list_next(&list, &item)) {
			if (span_eq(item, SPAN_LIT("*")) || span_eq(item, SPAN_LIT("email"))) {
				email = true;
			}
		}
		if (!email) {
			PERM("key record is not for email (s=)");
		}
	}
	if ((t = dkim_tag_find(tags, num, "t")) != NULL) {
		list = t->value;
		while (dkim_list_next(&list, &item)) {
			if (span_eq(item, SPAN_LIT("y"))) {
				out->testing = true;
			} else if (span_eq(item, SPAN_LIT("s"))) {
				out->strict = true;
			} /* unknown flags are ignored (§3.6.1) */
		}
	}
	if ((t = dkim_tag_find(tags, num, "p")) == NULL) {
		PERM("key record missing required tag p=");
	}
	if (t->value.len == 0) {
		PERM("key revoked (empty p=)");
	}
	if (!dkim_b64_decode(out->p, sizeof(out->p), &out->p_len, t->value)) {
		/* Either not base64, or larger than any key we accept. */
		size_t approx = t->value.len / 4 * 3;

		PERM(approx > DKIM_KEY_P_MAX ? "public key too large (over 4096 bits)" : "key record p= is not valid base64");
	}
	return AUTH_NONE;
}

enum auth_res dkim_key_from_answer(struct dkim_key *out, const char **out_reason, const struct dns_txt_answer *a)
{
	const char *first_reason = NULL;

	*out_reason = NULL;
	switch (a->status) {
	case DNS_OK:
		for (unsigned i = 0; i < a->num_records; i++) {
			const char *why = NULL;

			if (dkim_key_parse(out, &why, a->rec[i]) == AUTH_NONE) {
				return AUTH_NONE; /* the first usable record wins */
			}
			if (first_reason == NULL) {
				first_reason = why;
			}
		}
		PERM(first_reason ? first_reason : "key record syntax error"); /* §6.1.2: key syntax error */
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		PERM("no key for signature"); /* §6.1.2 */
	case DNS_TOO_BIG:
		PERM("key record too large");
	case DNS_MALFORMED:
		PERM("malformed key record");
	case DNS_TIMEOUT:
		*out_reason = "key lookup timed out";
		return AUTH_TEMPERROR;
	case DNS_SERVFAIL:
		*out_reason = "key lookup failed (SERVFAIL)";
		return AUTH_TEMPERROR;
	default:
		*out_reason = "key lookup failed";
		return AUTH_TEMPERROR;
	}
}

enum auth_res dkim_key_fits_alg(const struct dkim_key *key, enum dkim_alg alg, const char **out_reason)
{
	*out_reason = NULL;
	if (alg == DKIM_ALG_ED25519_SHA256 && key->k != DKIM_KEY_ED25519) {
		PERM("key type does not match the signature algorithm");
	}
	if (alg == DKIM_ALG_RSA_SHA256 && key->k != DKIM_KEY_RSA) {
		PERM("key type does not match the signature algorithm");
	}
	if (key->k == DKIM_KEY_ED25519 && key->p_len != 32) {
		PERM("ed25519 public key is not 32 octets (RFC 8463 section 4)");
	}
	if (!key->sha256_ok) {
		PERM("key record h= does not allow sha256");
	}
	return AUTH_NONE;
}

enum auth_res dkim_key_check(const struct dkim_key *key, const struct dkim_sig *sig, const char **out_reason)
{
	if (dkim_key_fits_alg(key, sig->alg, out_reason) != AUTH_NONE) {
		return AUTH_PERMERROR;
	}
	if (key->strict && sig->has_i) {
		/* t=s: the i= domain must be d= itself, not a subdomain */
		size_t at = 0;

		for (size_t k = 0; k < sig->identity_len; k++) {
			if (sig->identity[k] == '@') {
				at = k + 1;
			}
		}
		if (!(sig->identity_len - at == sig->d.len &&
		      dkim_domain_within(span_make(sig->identity + at, sig->identity_len - at), sig->d))) {
			PERM("key t=s requires i= domain to equal d=");
		}
	}
	return AUTH_NONE;
}
