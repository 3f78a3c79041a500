/*
 * test_dkim_tag.c - tag-list, base64, quoted-printable, signature and key
 * record parsing (verify/dkim_tag.c, dkim_sig.c, dkim_key.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../verify/dkim_key.h"
#include "../../verify/dkim_tag.h"

static enum dkim_tag_rc parse(const char *s, struct dkim_tag *t, size_t *n)
{
	size_t pos;

	return dkim_tags_parse(t, DKIM_TAGS_MAX, n, &pos, span_cstr(s));
}

Test(dkim_tag, basic_fws_and_trailing_semicolon)
{
	struct dkim_tag t[DKIM_TAGS_MAX];
	size_t n;

	cr_assert_eq(parse(" v = 1 ;\r\n\ta=rsa-sha256;b= ab\r\n cd ; ", t, &n), DKIM_TAG_OK);
	cr_assert_eq(n, 3);
	cr_assert(span_eq(t[0].name, SPAN_LIT("v")) && span_eq(t[0].value, SPAN_LIT("1")));
	cr_assert(span_eq(t[2].value, SPAN_LIT("ab\r\n cd")));
	cr_assert(span_eq(t[2].raw, SPAN_LIT(" ab\r\n cd ")));
	cr_assert_eq(parse("", t, &n), DKIM_TAG_OK);
	cr_assert_eq(n, 0);
	cr_assert_eq(parse("k=", t, &n), DKIM_TAG_OK);
	cr_assert_eq(t[0].value.len, 0);
}

Test(dkim_tag, rejects)
{
	struct dkim_tag t[DKIM_TAGS_MAX];
	size_t n;

	cr_assert_eq(parse("a=1; a=2", t, &n), DKIM_TAG_DUP);
	cr_assert_eq(parse("k=rsa; t; p=x", t, &n), DKIM_TAG_SYNTAX);
	cr_assert_eq(parse("1a=x", t, &n), DKIM_TAG_SYNTAX);
	cr_assert_eq(parse("a=x;;b=y", t, &n), DKIM_TAG_SYNTAX);
	cr_assert_eq(parse("a=x\r\nb", t, &n), DKIM_TAG_SYNTAX);  /* CRLF not followed by WSP */
	cr_assert_eq(parse("a=x\ny", t, &n), DKIM_TAG_SYNTAX);    /* bare LF */
	cr_assert_eq(parse("a=\x01", t, &n), DKIM_TAG_SYNTAX);
}

Test(dkim_tag, too_many)
{
	char s[512] = "";
	struct dkim_tag t[DKIM_TAGS_MAX];
	size_t n;

	for (int i = 0; i < DKIM_TAGS_MAX + 1; i++) {
		char one[16];

		snprintf(one, sizeof(one), "t%d=1;", i);
		strcat(s, one);
	}
	cr_assert_eq(parse(s, t, &n), DKIM_TAG_TOO_MANY);
}

Test(dkim_tag, base64)
{
	uint8_t out[16];
	size_t n;

	cr_assert(dkim_b64_decode(out, sizeof(out), &n, span_cstr("Z2 9v\r\n ZA==")));
	cr_assert(n == 4 && memcmp(out, "good", 4) == 0);
	cr_assert(dkim_b64_decode(out, sizeof(out), &n, span_cstr("")) && n == 0);
	cr_assert(!dkim_b64_decode(out, sizeof(out), &n, span_cstr("Z29vZA")));   /* padding required */
	cr_assert(!dkim_b64_decode(out, sizeof(out), &n, span_cstr("Z2=9vZA="))); /* data after '=' */
	cr_assert(!dkim_b64_decode(out, sizeof(out), &n, span_cstr("Z29vZB=="))); /* non-canonical bits */
	cr_assert(!dkim_b64_decode(out, 3, &n, span_cstr("Z29vZA==")));           /* out_max */
	cr_assert(!dkim_b64_decode(out, sizeof(out), &n, span_cstr("Z29v*A==")));
}

Test(dkim_tag, quoted_printable)
{
	uint8_t out[32];
	size_t n;

	cr_assert(dkim_qp_decode(out, sizeof(out), &n, span_cstr("jlong=40messiah.edu")));
	cr_assert(n == 17 && memcmp(out, "jlong@messiah.edu", 17) == 0);
	cr_assert(!dkim_qp_decode(out, sizeof(out), &n, span_cstr("a=4")));
	cr_assert(!dkim_qp_decode(out, sizeof(out), &n, span_cstr("a=G0")));
}

#define SIG_OK "v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=sel; h=From : To:from; bh=Z29vZA==; b=Z29vZA=="

static enum auth_res sig(const char *s, struct dkim_sig *g, const char **why)
{
	return dkim_sig_parse(g, why, span_cstr(s));
}

Test(dkim_sig, parses_every_tag)
{
	static struct dkim_sig g;
	const char *why;

	cr_assert_eq(sig(SIG_OK "; i=joe=40sub.example.com; l=10; t=5; x=6; q=foo/bar:dns/txt; z=From:x", &g, &why),
		     AUTH_NONE, "%s", why);
	cr_assert_eq(g.alg, DKIM_ALG_RSA_SHA256);
	cr_assert(g.hc == DKIM_CANON_RELAXED && g.bc == DKIM_CANON_SIMPLE);
	cr_assert_eq(g.num_h, 3);
	cr_assert(span_eq(g.h[0], SPAN_LIT("From")) && span_eq(g.h[1], SPAN_LIT("To")));
	cr_assert(g.identity_len == 19 && memcmp(g.identity, "joe@sub.example.com", 19) == 0);
	cr_assert(g.has_l && g.l == 10 && g.t == 5 && g.x == 6);
	cr_assert(!dkim_sig_expired(&g, 6) && dkim_sig_expired(&g, 7));
	cr_assert(g.b_len == 4 && g.bh_len == 4);
}

Test(dkim_sig, rfc8301_and_strictness)
{
	static struct dkim_sig g;
	const char *why;

	cr_assert_eq(sig("v=1; a=rsa-sha1; d=e.com; s=s; h=from; bh=Z29vZA==; b=Z29vZA==", &g, &why), AUTH_PERMERROR);
	cr_assert(strstr(why, "RFC 8301") != NULL);
	cr_assert(span_eq(g.d, SPAN_LIT("e.com")), "names kept for the result");
	cr_assert_eq(sig("a=rsa-sha256; d=e.com; s=s; h=from; bh=Z29vZA==; b=Z29vZA==", &g, &why), AUTH_PERMERROR);
	cr_assert(strstr(why, "v=") != NULL);
	cr_assert_eq(sig(SIG_OK "; d=other.com", &g, &why), AUTH_PERMERROR); /* duplicate */
	cr_assert_eq(sig("v=1; a=rsa-sha256; d=e.com; s=s; h=to; bh=Z29vZA==; b=Z29vZA==", &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig(SIG_OK "; i=joe@example.org", &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig(SIG_OK "; i=joe@badexample.com", &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig(SIG_OK "; c=foobar", &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig(SIG_OK "; q=http", &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig(SIG_OK "; t=10; x=9", &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig(SIG_OK "; l=-1", &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig("v=1; a=ed25519-sha256; d=e..com; s=s; h=from; bh=Z29vZA==; b=Z29vZA==", &g, &why),
		     AUTH_PERMERROR);
	cr_assert_eq(sig("v=1; a=rsa-md5; d=e.com; s=s; h=from; bh=Z29vZA==; b=Z29vZA==", &g, &why), AUTH_PERMERROR);
}

static enum auth_res key(const char *s, struct dkim_key *k, const char **why)
{
	return dkim_key_parse(k, why, span_cstr(s));
}

Test(dkim_key, records)
{
	static struct dkim_key k;
	static struct dkim_sig g;
	const char *why;

	cr_assert_eq(key("v=DKIM1; k=ed25519; p=Z29vZA==", &k, &why), AUTH_NONE);
	cr_assert_eq(k.k, DKIM_KEY_ED25519);
	cr_assert_eq(key("v=DKIM1; s=email:web:fine; x1 = extra ; t = y:n:extra; h=md5:sha1; p=Z29vZA== ;", &k, &why),
		     AUTH_NONE);
	cr_assert(k.testing && !k.sha256_ok);
	cr_assert_eq(sig(SIG_OK, &g, &why), AUTH_NONE);
	cr_assert_eq(dkim_key_check(&k, &g, &why), AUTH_PERMERROR); /* h= without sha256 */
	cr_assert_eq(key("k=rsa; t=y; p=", &k, &why), AUTH_PERMERROR);
	cr_assert(strstr(why, "revoked") != NULL);
	cr_assert_eq(key("", &k, &why), AUTH_PERMERROR);
	cr_assert_eq(key("v=DKIM3; p=Z29vZA==", &k, &why), AUTH_PERMERROR);
	cr_assert_eq(key("p=Z29vZA==; v=DKIM1", &k, &why), AUTH_PERMERROR); /* v= not first */
	cr_assert_eq(key("k=foobar; p=Z29vZA==", &k, &why), AUTH_PERMERROR);
	cr_assert_eq(key("s=chat; p=Z29vZA==", &k, &why), AUTH_PERMERROR);
	cr_assert_eq(key("k=rsa; t; p=Z29vZA==", &k, &why), AUTH_PERMERROR);
	cr_assert_eq(key("p=Z29vZA==; p=Z29vZA==", &k, &why), AUTH_PERMERROR);
}

Test(dkim_key, oversized_key_refused_before_parsing)
{
	static char rec[4200];
	static struct dkim_key k;
	const char *why;

	strcpy(rec, "p=");
	for (int i = 0; i < 1000; i++) {
		strcat(rec, "AAAA"); /* 3000 octets decoded */
	}
	cr_assert_eq(key(rec, &k, &why), AUTH_PERMERROR);
	cr_assert(strstr(why, "too large") != NULL, "%s", why);
}

Test(dkim_key, strict_flag_and_ed25519_length)
{
	static struct dkim_key k;
	static struct dkim_sig g;
	const char *why;

	cr_assert_eq(key("t=s; p=Z29vZA==", &k, &why), AUTH_NONE);
	cr_assert_eq(sig(SIG_OK "; i=@sub.example.com", &g, &why), AUTH_NONE);
	cr_assert_eq(dkim_key_check(&k, &g, &why), AUTH_PERMERROR);
	cr_assert_eq(sig(SIG_OK "; i=@example.com", &g, &why), AUTH_NONE);
	cr_assert_eq(dkim_key_check(&k, &g, &why), AUTH_NONE);
	cr_assert_eq(key("k=ed25519; p=Z29vZA==", &k, &why), AUTH_NONE);
	cr_assert_eq(sig("v=1; a=ed25519-sha256; d=e.com; s=s; h=from; bh=Z29vZA==; b=Z29vZA==", &g, &why), AUTH_NONE);
	cr_assert_eq(dkim_key_check(&k, &g, &why), AUTH_PERMERROR); /* 4 octets, not 32 */
	cr_assert_eq(sig(SIG_OK, &g, &why), AUTH_NONE);
	cr_assert_eq(dkim_key_check(&k, &g, &why), AUTH_PERMERROR); /* ed25519 key, rsa signature */
}
