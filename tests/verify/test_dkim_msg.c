/*
 * test_dkim_msg.c - verify/dkim.c, the message-level verifier, with the
 * fake crypto seam (crypto_fake.c: a "signature" is the header digest
 * itself, the key is "good"). Checks h= selection from the bottom with
 * over-signing, b= deletion, body hash, l=, x=, key answers (raw, and
 * parsed once and shared: dkim_keyrec.h), the signature bound, and that
 * any split of the body gives the same result.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../verify/dkim.h"
#include "../../verify/dkim_keyrec.h"
#include "fake_sign.h"

static void sha_b64(char *out, const char *s)
{
	sha_b64n(out, s, strlen(s));
}

static const char *const FROM = "From: A <a@x.test>";
static const char *const SUBJ = "Subject:  Hi   there";
static const char *const TO = "To: b@y.test";

/* signature builds a DKIM-Signature over FROM and SUBJ (relaxed) with `tags` added. */
static void signature(char *out, size_t out_len, const char *canon_body, const char *tags)
{
	char bh[64], b[64], head[1024], input[2048];

	sha_b64(bh, canon_body);
	snprintf(head, sizeof(head),
		 "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=x.test; s=sel;\r\n\th=from:subject:from;%s bh=%s; b=",
		 tags, bh);
	snprintf(input, sizeof(input), "from:A <a@x.test>\r\nsubject:Hi there\r\n"
		 "dkim-signature:v=1; a=rsa-sha256; c=relaxed/relaxed; d=x.test; s=sel; h=from:subject:from;%s bh=%s; b=",
		 tags, bh);
	sha_b64(b, input);
	snprintf(out, out_len, "%s\r\n\t%s", head, b); /* a fold inside b= too */
}

static struct dns_txt_answer good_key;

/* run verifies headers[] + body (fed in pieces of `step` bytes) and returns the first result. */
static struct dkim_result run(const char *const *hdrs, size_t num, const char *body, size_t step,
			      const struct dns_txt_answer *ans, uint64_t now)
{
	struct dkim_opts o = { .now = now };
	struct dkim_msg *m = dkim_msg_new(&o);
	struct dkim_result r[4];
	size_t len = strlen(body);

	cr_assert_not_null(m);
	for (size_t i = 0; i < num; i++) {
		int sig;

		cr_assert_eq(dkim_msg_header(m, span_cstr(hdrs[i]), &sig), 0);
		if (sig >= 0) {
			cr_assert_str_eq(dkim_msg_key_name(m, (unsigned)sig), "sel._domainkey.x.test");
			if (ans != NULL) {
				dkim_msg_key_answer(m, (unsigned)sig, ans);
			}
		}
	}
	dkim_msg_headers_end(m);
	for (size_t at = 0; at < len; at += step) {
		dkim_msg_body(m, (const uint8_t *)body + at, at + step <= len ? step : len - at);
	}
	dkim_msg_body_end(m);
	cr_assert_eq(dkim_msg_results(m, r, 4), 1);
	dkim_msg_free(m);
	return r[0];
}

static void setup(void)
{
	key_answer(&good_key, DNS_OK, "v=DKIM1; k=rsa; p=Z29vZA==");
}

TestSuite(dkim_msg, .init = setup);

Test(dkim_msg, passes_and_any_split_agrees)
{
	char sig[2048];
	const char *body = "Hello  world \r\n\r\n\r\n";

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	const char *h[] = { sig, FROM, SUBJ, TO };
	for (size_t step = 1; step <= strlen(body); step++) {
		struct dkim_result r = run(h, 4, body, step, &good_key, 0);

		cr_assert_eq(r.res, AUTH_PASS, "step %zu: %s", step, r.reason);
	}
	struct dkim_result r = run(h, 4, body, 64, &good_key, 0);
	cr_assert_str_eq(r.domain, "x.test");
	cr_assert_str_eq(r.selector, "sel");
	cr_assert_str_eq(r.algorithm, "rsa-sha256");
	cr_assert_eq(strlen(r.b), DKIM_B_PREFIX);
	cr_assert_eq(r.identity[0], '\0');
}

Test(dkim_msg, oversigned_from_catches_an_added_from)
{
	char sig[2048];

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	const char *h[] = { sig, FROM, SUBJ, TO, "From: evil@attacker.test" };
	struct dkim_result r = run(h, 5, "Hello world\r\n", 99, &good_key, 0);

	cr_assert_eq(r.res, AUTH_FAIL);
	cr_assert_str_eq(r.reason, "signature did not verify");
}

Test(dkim_msg, changed_subject_and_body_fail)
{
	char sig[2048];

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	const char *h[] = { sig, FROM, "Subject: Hi there!", TO };
	cr_assert_eq(run(h, 4, "Hello world\r\n", 99, &good_key, 0).res, AUTH_FAIL);
	const char *h2[] = { sig, FROM, SUBJ, TO };
	struct dkim_result r = run(h2, 4, "Hello world!\r\n", 99, &good_key, 0);
	cr_assert_eq(r.res, AUTH_FAIL);
	cr_assert_str_eq(r.reason, "body hash did not verify");
	/* an unsigned header may change freely */
	const char *h3[] = { sig, FROM, SUBJ, "To: someone@else.test" };
	cr_assert_eq(run(h3, 4, "Hello world\r\n", 99, &good_key, 0).res, AUTH_PASS);
}

Test(dkim_msg, body_length_limit)
{
	char sig[2048];

	signature(sig, sizeof(sig), "Hello world\r\n", " l=13;");
	const char *h[] = { sig, FROM, SUBJ, TO };
	cr_assert_eq(run(h, 4, "Hello  world\r\nappended by a list\r\n", 5, &good_key, 0).res, AUTH_PASS);
	signature(sig, sizeof(sig), "Hello world\r\n", " l=100;");
	struct dkim_result r = run(h, 4, "Hello world\r\n", 5, &good_key, 0);
	cr_assert_eq(r.res, AUTH_FAIL);
}

Test(dkim_msg, expiry)
{
	char sig[2048];

	signature(sig, sizeof(sig), "Hello world\r\n", " t=100; x=200;");
	const char *h[] = { sig, FROM, SUBJ, TO };
	cr_assert_eq(run(h, 4, "Hello world\r\n", 99, &good_key, 150).res, AUTH_PASS);
	cr_assert_eq(run(h, 4, "Hello world\r\n", 99, &good_key, 201).res, AUTH_PERMERROR);
}

Test(dkim_msg, key_answers)
{
	char sig[2048];
	struct dns_txt_answer a;

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	const char *h[] = { sig, FROM, SUBJ, TO };
	key_answer(&a, DNS_NXDOMAIN, NULL);
	cr_assert_eq(run(h, 4, "Hello world\r\n", 99, &a, 0).res, AUTH_PERMERROR);
	key_answer(&a, DNS_TIMEOUT, NULL);
	cr_assert_eq(run(h, 4, "Hello world\r\n", 99, &a, 0).res, AUTH_TEMPERROR);
	key_answer(&a, DNS_SERVFAIL, NULL);
	cr_assert_eq(run(h, 4, "Hello world\r\n", 99, &a, 0).res, AUTH_TEMPERROR);
	cr_assert_eq(run(h, 4, "Hello world\r\n", 99, NULL, 0).res, AUTH_TEMPERROR); /* never answered */
	key_answer(&a, DNS_OK, "k=rsa; p=");
	struct dkim_result r = run(h, 4, "Hello world\r\n", 99, &a, 0);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	cr_assert(strstr(r.reason, "revoked") != NULL);
	key_answer(&a, DNS_OK, "v=DKIM1; k=rsa; t=y; p=Z29vZA==");
	r = run(h, 4, "Hello world\r\n", 99, &a, 0);
	cr_assert(r.res == AUTH_PASS && r.testing);
}

Test(dkim_msg, signature_bound)
{
	char sig[2048];
	struct dkim_opts o = { .max_sigs = 2 };
	struct dkim_msg *m = dkim_msg_new(&o);
	struct dkim_result r[4];
	int s;

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(dkim_msg_header(m, span_cstr(sig), &s), 0);
		cr_assert_eq(s, i < 2 ? i : -1);
	}
	cr_assert_eq(dkim_msg_num_sigs(m), 2);
	cr_assert_eq(dkim_msg_num_skipped(m), 1);
	cr_assert_eq(dkim_msg_keys_pending(m), 2);
	dkim_msg_body_end(m);
	cr_assert_eq(dkim_msg_results(m, r, 4), 2);
	dkim_msg_free(m);
}

Test(dkim_msg, broken_signature_keeps_its_names)
{
	const char *h[] = { "DKIM-Signature: v=1; a=rsa-sha1; d=x.test; s=sel; h=from; bh=Z29vZA==; b=Z29vZA==", FROM };
	struct dkim_opts o = { 0 };
	struct dkim_msg *m = dkim_msg_new(&o);
	struct dkim_result r[1];
	int s;

	cr_assert_eq(dkim_msg_header(m, span_cstr(h[0]), &s), 0);
	cr_assert_eq(s, -1, "no key lookup for a refused signature");
	cr_assert_eq(dkim_msg_header(m, span_cstr(h[1]), &s), 0);
	dkim_msg_body_end(m);
	cr_assert_eq(dkim_msg_results(m, r, 1), 1);
	cr_assert_eq(r[0].res, AUTH_PERMERROR);
	cr_assert_str_eq(r[0].domain, "x.test");
	cr_assert_str_eq(r[0].algorithm, "rsa-sha1");
	dkim_msg_free(m);
}

extern int crypto_fake_num_pubkeys; /* crypto_fake.c: live key handles */

/* run_kr is run() with a parsed key outcome given through dkim_msg_key_set (borrowed). */
static struct dkim_result run_kr(const char *const *hdrs, size_t num, const char *body, struct dkim_keyrec *kr)
{
	struct dkim_msg *m = dkim_msg_new(NULL);
	struct dkim_result r[4];

	cr_assert_not_null(m);
	for (size_t i = 0; i < num; i++) {
		int sig;

		cr_assert_eq(dkim_msg_header(m, span_cstr(hdrs[i]), &sig), 0);
		if (sig >= 0) {
			dkim_msg_key_set(m, (unsigned)sig, kr);
			dkim_msg_key_set(m, (unsigned)sig, NULL); /* a second answer is ignored */
		}
	}
	dkim_msg_headers_end(m);
	dkim_msg_body(m, (const uint8_t *)body, strlen(body));
	dkim_msg_body_end(m);
	cr_assert_eq(dkim_msg_results(m, r, 4), 1);
	dkim_msg_free(m);
	return r[0];
}

Test(dkim_msg, one_parsed_key_serves_many_messages)
{
	char sig[2048];
	struct dkim_keyrec *kr = dkim_keyrec_new(&good_key);
	struct dkim_msg *held = dkim_msg_new(NULL);
	int idx;

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	const char *h[] = { sig, FROM, SUBJ, TO };
	cr_assert_not_null(kr);
	cr_assert_eq(kr->res, AUTH_NONE);
	cr_assert_eq(crypto_fake_num_pubkeys, 1, "the key is parsed once, at dkim_keyrec_new");
	for (int i = 0; i < 3; i++) {
		struct dkim_result r = run_kr(h, 4, "Hello world\r\n", kr);

		cr_assert_eq(r.res, AUTH_PASS, "message %d: %s", i, r.reason);
	}
	/* A message still holding the key keeps it alive after the cache's reference goes. */
	cr_assert_eq(dkim_msg_header(held, span_cstr(sig), &idx), 0);
	cr_assert_eq(idx, 0);
	dkim_msg_key_set(held, 0, kr);
	dkim_keyrec_unref(kr);
	cr_assert_eq(crypto_fake_num_pubkeys, 1);
	dkim_msg_free(held);
	cr_assert_eq(crypto_fake_num_pubkeys, 0, "the last reference frees the key");
}

Test(dkim_msg, parsed_key_outcomes_that_are_not_keys)
{
	char sig[2048];
	struct dns_txt_answer a;
	struct dkim_keyrec *kr;
	struct dkim_result r;

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	const char *h[] = { sig, FROM, SUBJ, TO };
	key_answer(&a, DNS_NXDOMAIN, NULL);
	kr = dkim_keyrec_new(&a);
	cr_assert_not_null(kr);
	cr_assert_null(kr->pk);
	r = run_kr(h, 4, "Hello world\r\n", kr);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	cr_assert_str_eq(r.reason, "no key for signature");
	dkim_keyrec_unref(kr);
	key_answer(&a, DNS_OK, "v=DKIM1; p=YmFk"); /* "bad": parses as a record, unusable as a key */
	kr = dkim_keyrec_new(&a);
	r = run_kr(h, 4, "Hello world\r\n", kr);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	cr_assert_str_eq(r.reason, "fake: unusable key");
	dkim_keyrec_unref(kr);
	r = run_kr(h, 4, "Hello world\r\n", NULL);
	cr_assert_eq(r.res, AUTH_TEMPERROR);
	cr_assert_str_eq(r.reason, "out of memory");
	cr_assert_eq(crypto_fake_num_pubkeys, 0);
}

/* run_big is run() with the fields whose bit is set in `big` given as too large to keep (dkim_msg_header_big). */
static struct dkim_result run_big(const char *const *hdrs, size_t num, unsigned big)
{
	struct dkim_msg *m = dkim_msg_new(NULL);
	struct dkim_result r[4];
	const char *body = "Hello world\r\n";

	cr_assert_not_null(m);
	for (size_t i = 0; i < num; i++) {
		int sig;

		if (big & (1u << i)) {
			cr_assert_eq(dkim_msg_header_big(m, span_cstr(hdrs[i]), &sig), 0);
			cr_assert_eq(sig, -1);
			continue;
		}
		cr_assert_eq(dkim_msg_header(m, span_cstr(hdrs[i]), &sig), 0);
		if (sig >= 0) {
			dkim_msg_key_answer(m, (unsigned)sig, &good_key);
		}
	}
	dkim_msg_headers_end(m);
	dkim_msg_body(m, (const uint8_t *)body, strlen(body));
	dkim_msg_body_end(m);
	cr_assert_geq(dkim_msg_results(m, r, 4), 1);
	dkim_msg_free(m);
	return r[0];
}

/* Issue 13: a field too large to keep keeps its place; only a signature that selects it fails. */
Test(dkim_msg, a_field_too_large_to_keep)
{
	char sig[2048];
	struct dkim_result r;

	signature(sig, sizeof(sig), "Hello world\r\n", "");
	/* unsigned: skipped, still a pass */
	const char *h[] = { "Received: from huge", "X-Big: ...", sig, FROM, SUBJ, TO };
	r = run_big(h, 6, 1u << 0 | 1u << 1 | 1u << 5);
	cr_assert_eq(r.res, AUTH_PASS, "%s", r.reason);
	/* the signed From too large: never a digest over the other fields */
	r = run_big(h, 6, 1u << 3);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	cr_assert_str_eq(r.reason, "signed header field too large to verify");
	/* a second From (over-signed) that is too large still counts: the bottom one is selected */
	const char *h2[] = { sig, FROM, SUBJ, TO, "From: evil@attacker.test" };
	r = run_big(h2, 5, 1u << 4);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	/* a name cut before its colon ("Subj...") may be "subject": cannot tell, so permerror */
	const char *h3[] = { sig, FROM, SUBJ, "Subj", TO };
	r = run_big(h3, 5, 1u << 3);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	/* ... but one that cannot be a signed name does not matter */
	const char *h4[] = { sig, FROM, SUBJ, "X-Other-Very-Long-Name", TO };
	r = run_big(h4, 5, 1u << 3);
	cr_assert_eq(r.res, AUTH_PASS, "%s", r.reason);
	/* a DKIM-Signature field too large is a signature, permerror */
	const char *h5[] = { "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=sel; h=from; bh=",
			     FROM, SUBJ };
	r = run_big(h5, 3, 1u << 0);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	cr_assert_str_eq(r.reason, "signature field too long");
}
