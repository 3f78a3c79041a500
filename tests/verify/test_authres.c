/*
 * test_authres.c - verify/authres.c (RFC 8601) and verify/dns_txt.c.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../verify/arc.h"
#include "../../verify/authres.h"
#include "../../verify/dns.h"

Test(authres, writes_dkim_results)
{
	struct dkim_result r[2];
	struct bb b;
	const char *want = "Authentication-Results: mx.example.com;\r\n"
			   "\tdkim=pass\r\n"
			   "\t  header.d=example.com header.i=joe@example.com header.s=sel header.a=rsa-sha256 header.b=abcdEFGH;\r\n"
			   "\tdkim=permerror reason=\"rsa-sha1 \\\"x\\\"\"\r\n"
			   "\t  header.d=example.org header.s=s1 header.a=rsa-sha1 header.b=\"ab/+cd\"\r\n";

	memset(r, 0, sizeof(r));
	r[0].res = AUTH_PASS;
	strcpy(r[0].domain, "example.com");
	strcpy(r[0].identity, "joe@example.com");
	strcpy(r[0].selector, "sel");
	strcpy(r[0].algorithm, "rsa-sha256");
	strcpy(r[0].b, "abcdEFGH");
	r[1].res = AUTH_PERMERROR;
	r[1].reason = "rsa-sha1 \"x\"";
	strcpy(r[1].domain, "example.org");
	strcpy(r[1].selector, "s1");
	strcpy(r[1].algorithm, "rsa-sha1");
	strcpy(r[1].b, "ab/+cd");
	bb_init(&b, 0);
	cr_assert_eq(authres_write(&b, "mx.example.com", r, 2), 0);
	cr_assert(b.len == strlen(want) && memcmp(b.p, want, b.len) == 0, "got:\n%.*s", (int)b.len, (const char *)b.p);
	bb_reset(&b, 0);
	cr_assert_eq(authres_write(&b, "mx", NULL, 0), 0);
	cr_assert(b.len == strlen("Authentication-Results: mx;\r\n\tdkim=none\r\n"));
	bb_fini(&b);
}

Test(authres, control_characters_never_reach_the_header)
{
	struct dkim_result r;
	struct bb b;

	memset(&r, 0, sizeof(r));
	r.res = AUTH_FAIL;
	strcpy(r.domain, "a\r\nX-Injected: 1");
	bb_init(&b, 0);
	cr_assert_eq(authres_write(&b, "mx", &r, 1), 0);
	cr_assert_null(memmem(b.p, b.len, "\r\nX-Injected", 12));
	bb_fini(&b);
}

Test(authres, recognises_ours)
{
	cr_assert(authres_is_ours(span_cstr("Authentication-Results: mx.example.com; dkim=pass"), "mx.example.com"));
	cr_assert(authres_is_ours(span_cstr("authentication-results :\r\n (c) MX.Example.COM 1; none"), "mx.example.com"));
	cr_assert(authres_is_ours(span_cstr("Authentication-Results: \"mx.example.com\"; none"), "mx.example.com"));
	cr_assert(!authres_is_ours(span_cstr("Authentication-Results: mx.example.com.evil; none"), "mx.example.com"));
	cr_assert(!authres_is_ours(span_cstr("Authentication-Results: other.example; none"), "mx.example.com"));
	cr_assert(!authres_is_ours(span_cstr("ARC-Authentication-Results: i=1; mx.example.com; none"), "mx.example.com"));
	cr_assert(!authres_is_ours(span_cstr("Authentication-Results-X: mx.example.com"), "mx.example.com"));
}

Test(dns_txt, joins_strings_and_bounds_answers)
{
	static struct dns_txt_answer a;
	const uint8_t r1[] = "\x03" "abc" "\x02" "de";
	const uint8_t r2[] = "\x00";
	const uint8_t bad[] = "\x05" "ab";
	const uint8_t *rd[20];
	size_t rl[20];

	rd[0] = r1;
	rl[0] = 7;
	rd[1] = r2;
	rl[1] = 1;
	cr_assert_eq(dns_txt_from_rdata(&a, rd, rl, 2), DNS_OK);
	cr_assert_eq(a.num_records, 2);
	cr_assert(span_eq(a.rec[0], SPAN_LIT("abcde")) && a.rec[1].len == 0);
	rd[0] = bad;
	rl[0] = 3;
	cr_assert_eq(dns_txt_from_rdata(&a, rd, rl, 1), DNS_MALFORMED);
	cr_assert_eq(dns_txt_from_rdata(&a, rd, rl, 0), DNS_NODATA);
	for (int i = 0; i < 20; i++) {
		rd[i] = r1;
		rl[i] = 7;
	}
	cr_assert_eq(dns_txt_from_rdata(&a, rd, rl, 20), DNS_OK);
	cr_assert(a.num_records == DNS_TXT_RECORDS_MAX && a.num_ignored == 4);

	static uint8_t big[256 * 40];
	for (int i = 0; i < 40; i++) {
		big[i * 256] = 255;
		memset(big + i * 256 + 1, 'p', 255);
	}
	rd[0] = big;
	rl[0] = sizeof(big);
	cr_assert_eq(dns_txt_from_rdata(&a, rd, rl, 1), DNS_TOO_BIG);
	cr_assert(dns_status_transient(DNS_TIMEOUT) && !dns_status_transient(DNS_NXDOMAIN));
}

Test(authres, arc_entry_names_the_failed_field)
{
	struct arc_result a = { .res = AUTH_FAIL, .reason = "signature did not verify", .fail_field = "ARC-Seal",
				.fail_instance = 2, .num_sets = 2 };
	struct authres_in in = { .arc = &a };
	struct bb b;
	const char *want = "Authentication-Results: mx;\r\n\tarc=fail reason=\"ARC-Seal i=2: signature did not verify\"\r\n";

	bb_init(&b, 0);
	cr_assert_eq(authres_write_all(&b, "mx", &in), 0);
	cr_assert(b.len == strlen(want) && memcmp(b.p, want, b.len) == 0, "got:\n%.*s", (int)b.len, (const char *)b.p);
	bb_reset(&b, 0);
	a = (struct arc_result){ .res = AUTH_PASS, .num_sets = 3 };
	cr_assert_eq(authres_write_all(&b, "mx", &in), 0);
	want = "Authentication-Results: mx;\r\n\tarc=pass\r\n";
	cr_assert(b.len == strlen(want) && memcmp(b.p, want, b.len) == 0, "got:\n%.*s", (int)b.len, (const char *)b.p);
	bb_fini(&b);
}
