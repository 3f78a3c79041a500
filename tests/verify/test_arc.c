/*
 * test_arc.c - verify/arc.c, ARC chain validation, with the fake crypto
 * seam (crypto_fake.c: a "signature" is the digest itself, the key is
 * "good"). Chains are built here from the RFC 8617 rules written out by
 * hand (the AMS hashes its h= fields then itself without b=; the AS hashes
 * AAR, AMS, AS of every set up to its own, in instance order, itself last
 * without b=), with every field already in relaxed canonical form, so any
 * selection, ordering or canonicalisation mistake in the validator shows
 * as a fail. Also: instance collection and structure rules, cv= rules,
 * the parsers (ARC-Seal, instance, AAR prefix, the AMS kind of
 * dkim_sig_parse_kind), key bounds and answers, body splits.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../verify/arc.h"
#include "fake_sign.h"

#define NMAX ARC_INSTANCES_MAX


/* Header fields below the ARC sets, already in relaxed canonical form. */
static const char *const FROM = "from:A <a@x.test>";
static const char *const SUBJ = "subject:Hi there";
static const char *const TO = "to:b@y.test";
static const char *const BODY = "Hello world\r\n";

struct chain {
	unsigned n;
	char aar[NMAX + 1][128];
	char ams[NMAX + 1][512];
	char as[NMAX + 1][512];
};

/* seal_input appends the AS(i) hash input to buf (bounded by cap): sets 1..i, AS(i) without b= value. */
static size_t seal_input(char *buf, size_t cap, const struct chain *c, unsigned i, const char *as_head)
{
	size_t n = 0;

	for (unsigned j = 1; j <= i; j++) {
		n += (size_t)snprintf(buf + n, cap - n, "%s\r\n%s\r\n", c->aar[j], c->ams[j]);
		if (j < i) {
			n += (size_t)snprintf(buf + n, cap - n, "%s\r\n", c->as[j]);
		}
	}
	n += (size_t)snprintf(buf + n, cap - n, "%s", as_head);
	cr_assert_lt(n, cap);
	return n;
}

/*
 * build makes a valid chain of n sets (AMS over from:subject, c=relaxed/relaxed)
 * with selector sel<k> where k = (i-1) % nsel, so tests can vary the number of keys.
 */
static void build_l(struct chain *c, unsigned n, unsigned nsel, const unsigned *l)
{
	static char buf[NMAX * 1024];
	char bh[64], b[64], head[400], sel[16], ltag[16];

	memset(c, 0, sizeof(*c));
	c->n = n;
	for (unsigned i = 1; i <= n; i++) {
		size_t len;

		/* l=: the body hash covers the first l canonical octets only */
		ltag[0] = '\0';
		if (l != NULL && l[i] > 0) {
			snprintf(ltag, sizeof(ltag), " l=%u;", l[i]);
		}
		sha_b64n(bh, BODY, l != NULL && l[i] > 0 && l[i] < strlen(BODY) ? l[i] : strlen(BODY));
		snprintf(sel, sizeof(sel), "sel%u", (i - 1) % nsel);
		snprintf(c->aar[i], sizeof(c->aar[i]), "arc-authentication-results:i=%u; mx%u.test; spf=pass", i, i);
		snprintf(head, sizeof(head),
			 "arc-message-signature:i=%u; a=rsa-sha256; c=relaxed/relaxed; d=x.test; s=%s; h=from:subject;%s bh=%s; b=",
			 i, sel, ltag, bh);
		len = (size_t)snprintf(buf, sizeof(buf), "%s\r\n%s\r\n%s", FROM, SUBJ, head);
		sha_b64n(b, buf, len);
		snprintf(c->ams[i], sizeof(c->ams[i]), "%s%s", head, b);
		snprintf(head, sizeof(head), "arc-seal:i=%u; a=rsa-sha256; cv=%s; d=x.test; s=%s; t=12345; b=", i,
			 i == 1 ? "none" : "pass", sel);
		len = seal_input(buf, sizeof(buf), c, i, head);
		sha_b64n(b, buf, len);
		snprintf(c->as[i], sizeof(c->as[i]), "%s%s", head, b);
	}
}

static void build(struct chain *c, unsigned n, unsigned nsel)
{
	build_l(c, n, nsel, NULL);
}

struct run_opts {
	unsigned max_keys;
	size_t step;                       /* body piece size; 0: whole */
	const struct dns_txt_answer *ans;  /* NULL: never answered */
	unsigned num_keys_seen;            /* out */
};

static struct dns_txt_answer good_key;

/* run feeds fields[] (top to bottom) and body to a validator and returns its result. */
static struct arc_result run(const char *const *fields, size_t num, const char *body, struct run_opts *ro)
{
	struct arc_opts o = { .max_keys = ro ? ro->max_keys : 0 };
	struct arc_msg *m = arc_msg_new(&o);
	const struct dns_txt_answer *ans = ro ? ro->ans : &good_key;
	size_t step = ro && ro->step ? ro->step : strlen(body) + 1;
	struct arc_result r, r2;
	size_t len = strlen(body);
	unsigned keys = 0;

	cr_assert_not_null(m);
	for (size_t i = 0; i < num; i++) {
		int key;

		cr_assert_eq(arc_msg_header(m, span_cstr(fields[i]), &key), 0);
		if (key >= 0) {
			cr_assert_eq((unsigned)key, keys, "keys are numbered in order");
			keys++;
			cr_assert(strstr(arc_msg_key_name(m, (unsigned)key), "._domainkey.") != NULL);
			if (ans != NULL) {
				arc_msg_key_answer(m, (unsigned)key, ans);
			}
		}
	}
	cr_assert_eq(arc_msg_num_keys(m), keys);
	arc_msg_headers_end(m);
	for (size_t at = 0; at < len; at += step) {
		arc_msg_body(m, (const uint8_t *)body + at, at + step <= len ? step : len - at);
	}
	arc_msg_body_end(m);
	arc_msg_result(m, &r);
	arc_msg_result(m, &r2);
	cr_assert(memcmp(&r, &r2, sizeof(r)) == 0, "the result is computed once");
	if (ro != NULL) {
		ro->num_keys_seen = keys;
	}
	arc_msg_free(m);
	return r;
}

/* fields lays a chain out newest set first (AS, AMS, AAR), then From, Subject, To. */
static size_t fields(const char **out, const struct chain *c)
{
	size_t k = 0;

	for (unsigned i = c->n; i >= 1; i--) {
		out[k++] = c->as[i];
		out[k++] = c->ams[i];
		out[k++] = c->aar[i];
	}
	out[k++] = FROM;
	out[k++] = SUBJ;
	out[k++] = TO;
	return k;
}

static void setup(void)
{
	key_answer(&good_key, DNS_OK, "v=DKIM1; k=rsa; p=Z29vZA==");
}

TestSuite(arc, .init = setup);

Test(arc, chains_of_1_to_5_and_50_sets_pass)
{
	static struct chain c;
	const char *f[3 * NMAX + 3];
	static const unsigned sizes[] = { 1, 2, 3, 4, 5, 50 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct run_opts ro = { 0 };
		struct arc_result r;

		build(&c, sizes[s], 1);
		ro.ans = &good_key;
		r = run(f, fields(f, &c), BODY, &ro);
		cr_assert_eq(r.res, AUTH_PASS, "%u sets: %s (%s i=%u)", sizes[s], r.reason, r.fail_field, r.fail_instance);
		cr_assert_eq(r.num_sets, sizes[s]);
		cr_assert_eq(r.oldest_pass, 0);
		cr_assert_null(r.reason);
		cr_assert_eq(ro.num_keys_seen, 1, "one key name, looked up once");
	}
}

Test(arc, any_body_split_agrees)
{
	static struct chain c;
	const char *f[16];
	const char *body = "Hello  world \r\n\r\n\r\n"; /* relaxed: the same canonical body as BODY */

	build(&c, 2, 2);
	for (size_t step = 1; step <= strlen(body); step++) {
		struct run_opts ro = { .step = step, .ans = &good_key };
		struct arc_result r = run(f, fields(f, &c), body, &ro);

		cr_assert_eq(r.res, AUTH_PASS, "step %zu: %s", step, r.reason);
		cr_assert_eq(ro.num_keys_seen, 2);
	}
}

Test(arc, no_arc_fields_is_none)
{
	const char *f[] = { "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=sel; h=from; bh=AAAA; b=AAAA", FROM, SUBJ };
	struct arc_msg *m = arc_msg_new(NULL);
	struct arc_result r;
	int key;

	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(arc_msg_header(m, span_cstr(f[i]), &key), 0);
		cr_assert_eq(key, -1);
	}
	arc_msg_headers_end(m);
	cr_assert(!arc_msg_body_wanted(m), "no ARC: the body is not needed");
	arc_msg_body_end(m);
	arc_msg_result(m, &r);
	cr_assert_eq(r.res, AUTH_NONE);
	cr_assert_eq(r.num_sets, 0);
	cr_assert_null(r.reason);
	arc_msg_free(m);
}

Test(arc, relaxed_header_forms_and_arc_field_order_do_not_matter)
{
	static struct chain c;
	const char *f[16];
	char as2[600], aar1[256];
	size_t n;

	build(&c, 2, 1);
	n = fields(f, &c);
	/* relaxed canonicalisation: name case, WSP around the colon, folding, WSP runs */
	memcpy(as2, "ARC-Seal :  ", 12);
	memcpy(as2 + 12, c.as[2] + 9, strlen(c.as[2]) - 9 + 1); /* after "arc-seal:" */
	snprintf(aar1, sizeof(aar1), "ARC-Authentication-Results:\r\n\ti=1;   mx1.test;\r\n spf=pass ");
	f[0] = as2;
	f[5] = aar1;
	cr_assert_eq(run(f, n, BODY, NULL).res, AUTH_PASS);
	/* the AS hashes by instance, not by position: put the older set on top */
	const char *g[] = { c.aar[1], c.ams[1], c.as[1], c.as[2], c.ams[2], c.aar[2], FROM, SUBJ };
	struct arc_result r = run(g, 8, BODY, NULL);
	cr_assert_eq(r.res, AUTH_PASS, "%s", r.reason);
}

Test(arc, dkim_signatures_do_not_count)
{
	static struct chain c;
	const char *f[16];
	size_t n;

	build(&c, 1, 1);
	n = fields(f, &c);
	f[n++] = "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=sel; h=from; bh=AAAA; b=AAAA";
	f[n++] = "DKIM-Signature: broken";
	cr_assert_eq(run(f, n, BODY, NULL).res, AUTH_PASS);
}

static void expect_fail(const char *const *f, size_t n, const char *field, unsigned inst, const char *why_part)
{
	struct arc_result r = run(f, n, BODY, NULL);
	char text[ARC_REASON_MAX];

	cr_assert_eq(r.res, AUTH_FAIL, "want fail (%s)", why_part);
	cr_assert_not_null(r.reason);
	cr_assert(strstr(r.reason, why_part) != NULL, "reason \"%s\" lacks \"%s\"", r.reason, why_part);
	if (field != NULL) {
		cr_assert_str_eq(r.fail_field, field);
	} else {
		cr_assert_null(r.fail_field);
	}
	cr_assert_eq(r.fail_instance, inst, "instance %u, want %u (%s)", r.fail_instance, inst, r.reason);
	cr_assert_eq(r.oldest_pass, 0, "no oldest-pass on fail");
	arc_result_describe(text, sizeof(text), &r);
	cr_assert(strstr(text, r.reason) != NULL);
}

Test(arc, structure_missing_duplicate_and_out_of_range)
{
	static struct chain c;
	const char *f[16];
	size_t n;

	build(&c, 2, 1);
	n = fields(f, &c);
	/* a missing AAR(1) */
	const char *g1[] = { c.as[2], c.ams[2], c.aar[2], c.as[1], c.ams[1], FROM, SUBJ };
	expect_fail(g1, 7, "ARC-Authentication-Results", 1, "incomplete");
	/* a whole set missing: 2 without 1 */
	const char *g2[] = { c.as[2], c.ams[2], c.aar[2], FROM, SUBJ };
	expect_fail(g2, 5, "ARC-Authentication-Results", 1, "incomplete");
	/* a duplicate field, even identical */
	const char *g3[] = { c.as[2], c.ams[2], c.aar[2], c.as[1], c.ams[1], c.ams[1], c.aar[1], FROM };
	expect_fail(g3, 8, "ARC-Message-Signature", 1, "more than one");
	/* instances outside 1..50, or not numbers */
	const char *bad_i[] = { "ARC-Seal: i=0; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==",
				"ARC-Seal: i=51; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==",
				"ARC-Seal: i=blorp; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==",
				"ARC-Seal: a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==",
				"ARC-Message-Signature: i=; a=rsa-sha256; d=x.test; s=sel; h=from; bh=Z29vZA==; b=Z29vZA==",
				"ARC-Authentication-Results: i=1 mx.test; spf=pass",
				"ARC-Authentication-Results: mx.test; i=1; spf=pass" };
	for (size_t k = 0; k < sizeof(bad_i) / sizeof(bad_i[0]); k++) {
		f[n] = bad_i[k];
		struct arc_result r = run(f, n + 1, BODY, NULL);
		cr_assert_eq(r.res, AUTH_FAIL, "%s", bad_i[k]);
		cr_assert_eq(r.fail_instance, 0);
	}
}

Test(arc, cv_rules)
{
	static struct chain c;
	const char *f[16];
	char as[512];
	size_t n;

	build(&c, 2, 1);
	n = fields(f, &c);
	/* i=1 must say none, later ones pass; any fail ends the chain (these fail before any signature) */
	snprintf(as, sizeof(as), "arc-seal:i=1; a=rsa-sha256; cv=pass; d=x.test; s=sel; b=Z29vZA==");
	f[3] = as;
	expect_fail(f, n, "ARC-Seal", 1, "cv=none");
	n = fields(f, &c);
	snprintf(as, sizeof(as), "arc-seal:i=2; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==");
	f[0] = as;
	expect_fail(f, n, "ARC-Seal", 2, "cv=pass");
	snprintf(as, sizeof(as), "arc-seal:i=2; a=rsa-sha256; cv=fail; d=x.test; s=sel; b=Z29vZA==");
	expect_fail(f, n, "ARC-Seal", 2, "cv=fail");
	n = fields(f, &c);
	snprintf(as, sizeof(as), "arc-seal:i=1; a=rsa-sha256; cv=fail; d=x.test; s=sel; b=Z29vZA==");
	f[3] = as;
	expect_fail(f, n, "ARC-Seal", 1, "cv=fail");
	/* the cv= keywords are ABNF literals: case-insensitive */
	struct arc_seal s;
	const char *why;
	cr_assert_eq(arc_seal_parse(&s, &why, span_cstr("i=2; a=rsa-sha256; cv=Pass; d=x.test; s=sel; b=Z29vZA==")),
		     AUTH_NONE);
	cr_assert_eq(s.cv, ARC_CV_PASS);
}

Test(arc, tampering_breaks_the_right_signature)
{
	static struct chain c;
	const char *f[17];
	size_t n;

	build(&c, 2, 1);
	n = fields(f, &c);
	/* an AAR(1) changed after sealing: both seals cover it; the newest is checked first */
	const char *aar1 = "arc-authentication-results:i=1; mx1.test; spf=fail";
	f[5] = aar1;
	expect_fail(f, n, "ARC-Seal", 2, "signature did not verify");
	/* the body changed: the newest AMS fails first */
	n = fields(f, &c);
	struct arc_result r = run(f, n, "Hello world!\r\n", NULL);
	cr_assert_eq(r.res, AUTH_FAIL);
	cr_assert_str_eq(r.fail_field, "ARC-Message-Signature");
	cr_assert_eq(r.fail_instance, 2);
	cr_assert_str_eq(r.reason, "body hash did not verify");
	/* a From added on top of the signed one: h= picks the bottom one, still signed */
	const char *g[17] = { "from:evil@attacker.test" };
	memcpy(g + 1, f, n * sizeof(f[0]));
	cr_assert_eq(run(g, n + 1, BODY, NULL).res, AUTH_PASS);
	/* one added below it is the one h= selects */
	f[n] = "from:evil@attacker.test";
	expect_fail(f, n + 1, "ARC-Message-Signature", 2, "signature did not verify");
	/* the signed From changed */
	f[n - 3] = "from:evil@attacker.test";
	expect_fail(f, n, "ARC-Message-Signature", 2, "signature did not verify");
}

Test(arc, oldest_pass_walks_down_to_the_first_broken_ams)
{
	static struct chain c;
	const char *f[32];
	char ams[512];
	size_t n;

	build(&c, 4, 1);
	n = fields(f, &c);
	/* AMS(2) with another h=: not sealed wrong (the seals are recomputed below), just not verifying */
	snprintf(ams, sizeof(ams), "%s", c.ams[2]);
	ams[strlen(ams) - 3] = ams[strlen(ams) - 3] == 'A' ? 'B' : 'A';
	snprintf(c.ams[2], sizeof(c.ams[2]), "%s", ams);
	{
		/* re-seal 2..4 over the changed AMS(2) */
		static char buf[NMAX * 1024];
		char b[64], head[256];

		for (unsigned i = 2; i <= 4; i++) {
			size_t len;

			snprintf(head, sizeof(head), "arc-seal:i=%u; a=rsa-sha256; cv=pass; d=x.test; s=sel0; t=12345; b=",
				 i);
			len = seal_input(buf, sizeof(buf), &c, i, head);
			sha_b64n(b, buf, len);
			snprintf(c.as[i], sizeof(c.as[i]), "%s%s", head, b);
		}
	}
	n = fields(f, &c);
	struct arc_result r = run(f, n, BODY, NULL);
	cr_assert_eq(r.res, AUTH_PASS, "%s %s %u", r.reason, r.fail_field, r.fail_instance);
	cr_assert_eq(r.oldest_pass, 3, "AMS(4), AMS(3) verify, AMS(2) does not");
}

Test(arc, body_hashes_are_bounded_and_the_newest_always_has_one)
{
	static struct chain c;
	const char *f[32];
	/* six AMSes, each with its own l=: six body canonicalisations */
	static const unsigned l[] = { 0, 1, 2, 3, 4, 5, 6 };

	build_l(&c, 6, 1, l);
	struct arc_result r = run(f, fields(f, &c), BODY, NULL);
	cr_assert_eq(r.res, AUTH_PASS, "%s", r.reason);
	/* AMS(6..3) have the ARC_BODYHASH_MAX hashes; AMS(2) has none, so oldest-pass stops there */
	cr_assert_eq(ARC_BODYHASH_MAX, 4);
	cr_assert_eq(r.oldest_pass, 3);
	/* an l= beyond the body fails the newest AMS */
	static const unsigned long_l[] = { 0, 200 };
	build_l(&c, 1, 1, long_l);
	r = run(f, fields(f, &c), BODY, NULL);
	cr_assert_eq(r.res, AUTH_FAIL);
	cr_assert_str_eq(r.reason, "l= is longer than the body");
}

Test(arc, keys_bound_answers_and_never_answered)
{
	static struct chain c;
	const char *f[16];
	struct dns_txt_answer a;
	struct run_opts ro = { 0 };
	size_t n;

	build(&c, 3, 3); /* sel0, sel1, sel2 */
	n = fields(f, &c);
	ro.max_keys = 2;
	ro.ans = &good_key;
	struct arc_result r = run(f, n, BODY, &ro);
	cr_assert_eq(r.res, AUTH_FAIL);
	cr_assert_str_eq(r.reason, "too many distinct ARC keys");
	cr_assert_eq(ro.num_keys_seen, 2, "no lookup past the bound");
	ro.max_keys = 3;
	cr_assert_eq(run(f, n, BODY, &ro).res, AUTH_PASS);

	key_answer(&a, DNS_NXDOMAIN, NULL);
	ro.ans = &a;
	r = run(f, n, BODY, &ro);
	cr_assert(r.res == AUTH_FAIL && strcmp(r.reason, "no key for signature") == 0, "%s", r.reason);
	key_answer(&a, DNS_TIMEOUT, NULL);
	r = run(f, n, BODY, &ro);
	cr_assert(r.res == AUTH_FAIL && strstr(r.reason, "timed out") != NULL);
	key_answer(&a, DNS_OK, "v=DKIM1; k=rsa; p=");
	r = run(f, n, BODY, &ro);
	cr_assert(r.res == AUTH_FAIL && strstr(r.reason, "revoked") != NULL);
	key_answer(&a, DNS_OK, "v=DKIM1; k=ed25519; p=Z29vZA==");
	r = run(f, n, BODY, &ro);
	cr_assert(r.res == AUTH_FAIL && strstr(r.reason, "key type") != NULL, "%s", r.reason);
	ro.ans = NULL;
	r = run(f, n, BODY, &ro);
	cr_assert(r.res == AUTH_FAIL && strcmp(r.reason, "no answer for the key lookup") == 0);
}

Test(arc, key_lookups_are_asked_once_and_stop_after_a_failure)
{
	static struct chain c;
	struct arc_msg *m = arc_msg_new(NULL);
	int key;

	build(&c, 2, 1);
	cr_assert_eq(arc_msg_header(m, span_cstr(c.as[2]), &key), 0);
	cr_assert_eq(key, 0);
	cr_assert_str_eq(arc_msg_key_name(m, 0), "sel0._domainkey.x.test");
	cr_assert_eq(arc_msg_header(m, span_cstr(c.ams[2]), &key), 0);
	cr_assert_eq(key, -1, "same key name: no second lookup");
	cr_assert_eq(arc_msg_keys_pending(m), 1);
	arc_msg_key_answer(m, 0, &good_key);
	arc_msg_key_answer(m, 0, &good_key); /* a second answer is ignored */
	arc_msg_key_answer(m, 7, &good_key); /* so is an unknown key */
	cr_assert_eq(arc_msg_keys_pending(m), 0);
	cr_assert_eq(arc_msg_header(m, span_cstr("ARC-Seal: i=2; a=rsa-sha256; cv=pass; d=x.test; s=sel; b=Z29vZA=="),
				    &key), 0);
	cr_assert_eq(key, -1, "duplicate AS(2): the chain has failed");
	cr_assert_eq(arc_msg_header(m, span_cstr("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=y.test; s=z; b=Z29vZA=="),
				    &key), 0);
	cr_assert_eq(key, -1, "nothing more is looked up once the chain has failed");
	arc_msg_headers_end(m);
	cr_assert(!arc_msg_body_wanted(m));
	arc_msg_free(m);
	arc_msg_free(NULL);
}

Test(arc, result_before_the_body_ends)
{
	static struct chain c;
	const char *f[16];
	struct arc_msg *m = arc_msg_new(NULL);
	struct arc_result r;
	size_t n;
	int key;

	build(&c, 1, 1);
	n = fields(f, &c);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(arc_msg_header(m, span_cstr(f[i]), &key), 0);
		if (key >= 0) {
			arc_msg_key_answer(m, (unsigned)key, &good_key);
		}
	}
	arc_msg_headers_end(m);
	cr_assert(arc_msg_body_wanted(m));
	arc_msg_body(m, (const uint8_t *)BODY, 5);
	arc_msg_result(m, &r);
	cr_assert_eq(r.res, AUTH_FAIL);
	cr_assert_str_eq(r.reason, "message body incomplete");
	arc_msg_free(m);
}

Test(arc, instance_and_aar_prefix)
{
	cr_assert_eq(arc_instance_parse(span_cstr("1")), 1);
	cr_assert_eq(arc_instance_parse(span_cstr("50")), 50);
	cr_assert_eq(arc_instance_parse(span_cstr("07")), 7);
	cr_assert_eq(arc_instance_parse(span_cstr("51")), 0);
	cr_assert_eq(arc_instance_parse(span_cstr("0")), 0);
	cr_assert_eq(arc_instance_parse(span_cstr("001")), 0, "1*2DIGIT");
	cr_assert_eq(arc_instance_parse(span_cstr("")), 0);
	cr_assert_eq(arc_instance_parse(span_cstr("1a")), 0);
	cr_assert_eq(arc_instance_parse(span_cstr("-1")), 0);

	cr_assert_eq(arc_aar_instance(span_cstr(" i=1; mx.test; spf=pass")), 1);
	cr_assert_eq(arc_aar_instance(span_cstr("\r\n i = 12 ; mx.test")), 12);
	cr_assert_eq(arc_aar_instance(span_cstr(" (a (nested) comment) i=(c)3(c);x")), 3);
	cr_assert_eq(arc_aar_instance(span_cstr(" i=1 mx.test;")), 0, "no ; after the instance");
	cr_assert_eq(arc_aar_instance(span_cstr(" mx.test; i=1;")), 0, "i= must come first");
	cr_assert_eq(arc_aar_instance(span_cstr(" I=1;")), 0, "%%s\"i\"");
	cr_assert_eq(arc_aar_instance(span_cstr(" i=;")), 0);
	cr_assert_eq(arc_aar_instance(span_cstr(" i=squanch;")), 0);
	cr_assert_eq(arc_aar_instance(span_cstr(" (unclosed i=1;")), 0);
	cr_assert_eq(arc_aar_instance(span_cstr(" i=1")), 0);
}

Test(arc, seal_parser)
{
	struct arc_seal s;
	const char *why;

	cr_assert_eq(arc_seal_parse(&s, &why, span_cstr(" i=3; a=ed25519-sha256; cv=pass; d=x.test; s=sel;\r\n b=Z29v\r\n ZA==; t=99; zz=unknown;")),
		     AUTH_NONE);
	cr_assert_eq(s.instance, 3);
	cr_assert_eq(s.alg, DKIM_ALG_ED25519_SHA256);
	cr_assert_eq(s.b_len, 4);
	cr_assert(s.has_t && s.t == 99);
	cr_assert(span_eq(s.d, SPAN_LIT("x.test")));

	static const char *const bad[][2] = {
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==; h=from", "h= tag" },
		{ "i=1; a=rsa-sha1; cv=none; d=x.test; s=sel; b=Z29vZA==", "rsa-sha1" },
		{ "i=1; a=RSA-SHA256; cv=none; d=x.test; s=sel; b=Z29vZA==", "unsupported" },
		{ "i=1; a=; cv=none; d=x.test; s=sel; b=Z29vZA==", "unsupported" },
		{ "i=1; cv=none; d=x.test; s=sel; b=Z29vZA==", "a=" },
		{ "i=1; a=rsa-sha256; d=x.test; s=sel; b=Z29vZA==", "cv=" },
		{ "i=1; a=rsa-sha256; cv=:); d=x.test; s=sel; b=Z29vZA==", "cv=" },
		{ "i=1; a=rsa-sha256; cv=; d=x.test; s=sel; b=Z29vZA==", "cv=" },
		{ "i=1; a=rsa-sha256; cv=none; s=sel; b=Z29vZA==", "d=" },
		{ "i=1; a=rsa-sha256; cv=none; d=; s=sel; b=Z29vZA==", "d=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x..test; s=sel; b=Z29vZA==", "d=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; b=Z29vZA==", "s=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=; b=Z29vZA==", "s=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel", "b=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel; b=", "b=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA=!", "b=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==; t=", "t=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==; t=icecream", "t=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==; t=1 2", "t=" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel;; b=Z29vZA==", "syntax" },
		{ "i=1; a=rsa-sha256; cv=none; d=x.test; s=sel; == ; b=Z29vZA==", "syntax" },
		{ "i=1; a=rsa-sha256; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==", "duplicate" },
		{ "I=1; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==", "i=" },
		{ "i=60; a=rsa-sha256; cv=none; d=x.test; s=sel; b=Z29vZA==", "i=" },
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		why = NULL;
		cr_assert_eq(arc_seal_parse(&s, &why, span_cstr(bad[k][0])), AUTH_PERMERROR, "%s", bad[k][0]);
		cr_assert(why != NULL && strstr(why, bad[k][1]) != NULL, "%s: reason \"%s\" lacks \"%s\"", bad[k][0],
			  why, bad[k][1]);
	}
}

Test(arc, ams_kind_of_the_signature_parser)
{
	struct dkim_sig *g = malloc(sizeof(*g));
	const char *why;

	cr_assert_not_null(g);
	/* no v=, i= is the instance, h= empty or with empty names, no From needed */
	cr_assert_eq(dkim_sig_parse_kind(g, &why, span_cstr("i=1; a=rsa-sha256; d=x.test; s=sel; h=; bh=Z29vZA==; b=Z29vZA=="),
					 DKIM_SIG_ARC_AMS), AUTH_NONE, "%s", why);
	cr_assert_eq(g->num_h, 0);
	cr_assert(!g->has_i && span_eq(g->i, SPAN_LIT("1")));
	cr_assert_eq(g->hc, DKIM_CANON_SIMPLE, "no c=: simple/simple (RFC 6376 section 3.5)");
	cr_assert_eq(dkim_sig_parse_kind(g, &why, span_cstr("v=9; i=2; a=rsa-sha256; d=x.test; s=sel; h=to::subject; bh=Z29vZA==; b=Z29vZA=="),
					 DKIM_SIG_ARC_AMS), AUTH_NONE, "v= is ignored: %s", why);
	cr_assert_eq(g->num_h, 2);
	cr_assert_eq(dkim_sig_parse_kind(g, &why, span_cstr("i=1; a=rsa-sha256; d=x.test; s=sel; h=from:ARC-Seal; bh=Z29vZA==; b=Z29vZA=="),
					 DKIM_SIG_ARC_AMS), AUTH_PERMERROR);
	cr_assert(strstr(why, "ARC-Seal") != NULL);
	cr_assert_eq(dkim_sig_parse_kind(g, &why, span_cstr("a=rsa-sha256; d=x.test; s=sel; h=from; bh=Z29vZA==; b=Z29vZA=="),
					 DKIM_SIG_ARC_AMS), AUTH_PERMERROR);
	cr_assert(strstr(why, "i=") != NULL);
	cr_assert_eq(dkim_sig_parse_kind(g, &why, span_cstr("i=1; a=rsa-sha256; d=x.test; s=sel; bh=Z29vZA==; b=Z29vZA=="),
					 DKIM_SIG_ARC_AMS), AUTH_PERMERROR, "h= is still required");
	cr_assert_eq(dkim_sig_parse_kind(g, &why, span_cstr("i=1; a=rsa-sha256; c=; d=x.test; s=sel; h=from; bh=Z29vZA==; b=Z29vZA=="),
					 DKIM_SIG_ARC_AMS), AUTH_PERMERROR, "c= empty");
	/* the DKIM kind keeps its rules */
	cr_assert_eq(dkim_sig_parse(g, &why, span_cstr("v=1; a=rsa-sha256; d=x.test; s=sel; h=; bh=Z29vZA==; b=Z29vZA==")),
		     AUTH_PERMERROR);
	cr_assert_eq(dkim_sig_parse(g, &why, span_cstr("a=rsa-sha256; d=x.test; s=sel; h=from; bh=Z29vZA==; b=Z29vZA==")),
		     AUTH_PERMERROR);
	cr_assert_eq(dkim_sig_parse(g, &why, span_cstr("v=1; a=rsa-sha256; d=x.test; s=sel; h=from:arc-seal; bh=Z29vZA==; b=Z29vZA==")),
		     AUTH_NONE, "DKIM may sign ARC-Seal");
	free(g);
}

Test(arc, describe)
{
	struct arc_result r = { .res = AUTH_FAIL, .reason = "signature did not verify", .fail_field = "ARC-Seal",
				.fail_instance = 2 };
	char buf[ARC_REASON_MAX];

	cr_assert_str_eq(arc_result_describe(buf, sizeof(buf), &r), "ARC-Seal i=2: signature did not verify");
	r.fail_instance = 0;
	cr_assert_str_eq(arc_result_describe(buf, sizeof(buf), &r), "ARC-Seal: signature did not verify");
	r.fail_field = NULL;
	cr_assert_str_eq(arc_result_describe(buf, sizeof(buf), &r), "signature did not verify");
	r.res = AUTH_PASS;
	cr_assert_str_eq(arc_result_describe(buf, sizeof(buf), &r), "");
	struct arc_result shortr = { .res = AUTH_FAIL, .reason = "abcdef" };
	cr_assert_str_eq(arc_result_describe(buf, 4, &shortr), "abc");
}
