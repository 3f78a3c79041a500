/*
 * test_spf.c - the SPF record parser and macro expander (pure): RFC 7208
 * §7.4's macro examples, syntax errors the suite relies on, dual CIDR,
 * domain-end rules, and domain truncation. The evaluation itself is run
 * against a real DNS server by tests/integ/test_spf.py (203 cases).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "verify/spf.h"

static struct spf_macro_env env_74(void)
{
	/* RFC 7208 §7.4: strong-bad@email.example.com from 192.0.2.3 */
	struct spf_macro_env e = {
		.sender = "strong-bad@email.example.com",
		.local = "strong-bad",
		.sender_domain = "email.example.com",
		.domain = "email.example.com",
		.helo = "mx.example.org",
		.receiver = "mx.example.net",
		.now = 1000,
		.ip = { 192, 0, 2, 3 },
	};

	return e;
}

static void expect_exp(const struct spf_macro_env *e, const char *in, const char *want, unsigned flags)
{
	char out[SPF_EXPAND_MAX];
	size_t len, pos;

	cr_assert_eq(spf_macro_expand(out, sizeof(out), &len, &pos, e, span_cstr(in), flags), SPF_MACRO_OK, "%s", in);
	cr_expect(len == strlen(want) && memcmp(out, want, len) == 0, "%s: got %.*s want %s", in, (int)len, out, want);
}

Test(spf_macro, rfc7208_section_7_4_examples)
{
	struct spf_macro_env e = env_74();

	expect_exp(&e, "%{s}", "strong-bad@email.example.com", 0);
	expect_exp(&e, "%{o}", "email.example.com", 0);
	expect_exp(&e, "%{d}", "email.example.com", 0);
	expect_exp(&e, "%{d4}", "email.example.com", 0);
	expect_exp(&e, "%{d3}", "email.example.com", 0);
	expect_exp(&e, "%{d2}", "example.com", 0);
	expect_exp(&e, "%{d1}", "com", 0);
	expect_exp(&e, "%{dr}", "com.example.email", 0);
	expect_exp(&e, "%{d2r}", "example.email", 0);
	expect_exp(&e, "%{l}", "strong-bad", 0);
	expect_exp(&e, "%{l-}", "strong.bad", 0);
	expect_exp(&e, "%{lr}", "strong-bad", 0);
	expect_exp(&e, "%{lr-}", "bad.strong", 0);
	expect_exp(&e, "%{l1r-}", "strong", 0);
	expect_exp(&e, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com", 0);
	expect_exp(&e, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com", 0);
	expect_exp(&e, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com", 0);
	expect_exp(&e, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com", 0);
	expect_exp(&e, "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net", 0);
	expect_exp(&e, "%%%_%-", "% %20", 0);
	expect_exp(&e, "%{c} at %{r} %{t}", "192.0.2.3 at mx.example.net 1000", SPF_MACRO_EXP);
	expect_exp(&e, "%{L}", "strong-bad", 0);
	expect_exp(&e, "%{S}", "strong-bad%40email.example.com", 0);
}

Test(spf_macro, ipv6_nibbles)
{
	struct spf_macro_env e = env_74();
	static const uint8_t ip[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0xcb, [14] = 0x01 };

	memcpy(e.ip, ip, 16);
	e.ipv6 = true;
	expect_exp(&e, "%{ir}.%{v}._spf.%{d2}",
		   "B.C.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com", 0);
	expect_exp(&e, "%{c}", "2001:db8::1cb", SPF_MACRO_EXP);
}

Test(spf_macro, syntax_errors)
{
	static const char *const bad[] = { "%", "%{", "%{s", "%{x}", "%{s0}", "%(ir)", "foo%.bar", "a b",
					   "%{c}", "%{r}", "%{t}", "%{s:}", "a\x01" };
	struct spf_macro_env e = env_74();
	char out[256];
	size_t len, pos;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(spf_macro_expand(out, sizeof(out), &len, &pos, &e, span_cstr(bad[i]), 0), SPF_MACRO_SYNTAX,
			     "%s", bad[i]);
		cr_expect_eq(spf_macro_expand(NULL, 0, &len, &pos, NULL, span_cstr(bad[i]), 0), SPF_MACRO_SYNTAX, "%s",
			     bad[i]);
	}
	cr_expect_eq(spf_macro_expand(out, 4, &len, &pos, &e, span_cstr("%{s}"), 0), SPF_MACRO_TOO_LONG);
	cr_expect_eq(spf_macro_expand(out, sizeof(out), &len, &pos, &e, span_cstr("see %{c}"), SPF_MACRO_EXP),
		     SPF_MACRO_OK);
	cr_expect(spf_macro_uses_p(span_cstr("x.%{p}.y")));
	cr_expect(!spf_macro_uses_p(span_cstr("x.%%{p}.y")));
}

Test(spf_macro, domain_truncated_from_the_left)
{
	struct spf_macro_env e = env_74();
	char l63[64], in[400], out[SPF_EXPAND_MAX];
	size_t len, pos;

	memset(l63, 'a', 63);
	l63[63] = '\0';
	snprintf(in, sizeof(in), "%s.%s.%s.%s.example.com", l63, l63, l63, l63);
	cr_assert_eq(spf_macro_expand(out, sizeof(out), &len, &pos, &e, span_cstr(in), SPF_MACRO_DOMAIN), SPF_MACRO_OK);
	cr_expect(len <= SPF_DOMAIN_MAX);
	cr_expect(len > 12 && memcmp(out + len - 12, ".example.com", 12) == 0);
	cr_expect(out[0] == 'a');
}

static enum auth_res parse(const char *rec, struct spf_record *r)
{
	const char *reason;
	size_t pos;

	return spf_record_parse(r, &reason, &pos, span_cstr(rec));
}

Test(spf_record, accepts)
{
	static const char *const good[] = {
		"v=spf1", "v=spf1 -all", "V=SpF1 ~ALL", "v=spf1 a mx ptr -all", "v=spf1 a:foo.example.com/24//64",
		"v=spf1 a//0 mx/0 -all ", "v=spf1  ip4:1.2.3.4/32 ip6:Cafe:Babe:8000::/33",
		"v=spf1 a:foo:bar/baz.example.com", "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all",
		"v=spf1 include:%{d2}.x.example.com exists:%{ir}.%{v}.bl.example -all",
		"v=spf1 a:foo.example.xn--zckzah -all", "v=spf1 redirect=_spf.example.com", "v=spf1 default=pass",
		"v=spf1 exp=%{d}", "v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
	};
	struct spf_record r;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cr_expect_eq(parse(good[i], &r), AUTH_NONE, "%s", good[i]);
	}
	cr_assert_eq(parse("v=spf1 a include:x.example mx ptr exists:y.example ip4:1.2.3.4 ?all redirect=z.example", &r),
		     AUTH_NONE);
	cr_expect_eq(r.num_terms, 7);
	cr_expect_eq(r.num_lookups, 5);
	cr_expect(r.has_redirect && !r.has_exp);
}

Test(spf_record, rejects)
{
	static const char *const bad[] = {
		"v=spf1 -all.", "v=spf1 -all:foobar", "v=spf1 -all/8", "v=spf1 =all", "v=spf1 1up=foo",
		"v=spf1 include", "v=spf1 include:", "v=spf1 a:", "v=spf1 ptr/0 -all", "v=spf1 ptr:", "v=spf1 exists",
		"v=spf1 exists:mail.example.com/24", "v=spf1 a/33 -all", "v=spf1 a//129 -all", "v=spf1 a/24/64 -all",
		"v=spf1 ip4:1.2.3.4/032 -all", "v=spf1 ip4:1.2.3", "v=spf1 ip4:1.2.3.4//32", "v=spf1 ip4",
		"v=spf1 ip6::CAFE::BABE", "v=spf1 ip6:::1.1.1.1/129", "v=spf1 a:abc.123", "v=spf1 a:example.-com",
		"v=spf1 a:museum", "v=spf1 a:museum.", "v=spf1 mx:example.com:8080", "v=spf1 a:ctrl.example.com\rptr",
		"v=spf1 redirect:t2.example.com", "v=spf1 redirect=a.example redirect=b.example",
		"v=spf1 exp=a.example exp=b.example", "v=spf1 exp= -all", "v=spf1 foo=%abc", "v=spf1 moo.cow/far_out=man",
		"v=spf1 a:\xef\xbb\xbfgarbage.example.net -all", "v=spf1 -ip4:1.2.3.4 moo", "v=spf1 ?all redirect=",
	};
	struct spf_record r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(parse(bad[i], &r), AUTH_PERMERROR, "%s", bad[i]);
	}
}

Test(spf_record, terms_and_cidrs)
{
	struct spf_record r;
	struct spf_term t;
	struct span c;

	cr_assert_eq(parse("v=spf1 ~a:foo.example.com/24//64 x=y -ip6:2001:db8::/32 mx//0", &r), AUTH_NONE);
	c = r.terms;
	cr_assert(spf_term_next(&c, &t));
	cr_expect_eq(t.mech, SPF_M_A);
	cr_expect_eq(t.qual, AUTH_SOFTFAIL);
	cr_expect(span_eq_ci(t.domain, "foo.example.com"));
	cr_expect_eq(t.cidr4, 24);
	cr_expect_eq(t.cidr6, 64);
	cr_assert(spf_term_next(&c, &t));
	cr_expect_eq(t.mech, SPF_M_IP6);
	cr_expect_eq(t.qual, AUTH_FAIL);
	cr_expect_eq(t.cidr6, 32);
	cr_expect(t.ip[0] == 0x20 && t.ip[1] == 0x01 && t.ip[2] == 0x0d && t.ip[3] == 0xb8);
	cr_assert(spf_term_next(&c, &t));
	cr_expect_eq(t.mech, SPF_M_MX);
	cr_expect_eq(t.cidr4, 32);
	cr_expect_eq(t.cidr6, 0);
	cr_expect(!spf_term_next(&c, &t));
	cr_expect(spf_record_is_spf(span_cstr("v=spf1")));
	cr_expect(!spf_record_is_spf(span_cstr("v=spf10")));
	cr_expect(!spf_record_is_spf(span_cstr("v=spf1\t-all")));
}

Test(spf_record, domain_ok)
{
	cr_expect(spf_domain_ok(span_cstr("example.com")));
	cr_expect(spf_domain_ok(span_cstr("example.com.")));
	cr_expect(!spf_domain_ok(span_cstr("example")));
	cr_expect(!spf_domain_ok(span_cstr("a..example.com")));
	cr_expect(!spf_domain_ok(span_cstr("")));
	cr_expect(!spf_domain_ok(
		span_cstr("a123456789012345678901234567890123456789012345678901234567890123.example.com")));
}
