/* test_limits.c - connection admission caps. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "core/limits.h"

static struct ip_key key4(uint32_t a)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct ip_key k;

	memset(&ss, 0, sizeof(ss));
	s4->sin_family = AF_INET;
	s4->sin_addr.s_addr = htonl(a);
	ip_key_from_sockaddr(&k, &ss);
	return k;
}

Test(limits, per_ip_cap_then_release)
{
	struct conn_limits *l = limits_new(100, 3);
	struct ip_key a = key4(0x7f000001), b = key4(0x7f000002);

	for (int i = 0; i < 3; i++) {
		cr_assert(limits_acquire(l, &a));
	}
	cr_assert_not(limits_acquire(l, &a), "fourth connection from one address admitted");
	cr_assert(limits_acquire(l, &b), "another address refused");
	limits_release(l, &a);
	cr_assert(limits_acquire(l, &a));
	limits_free(l);
}

Test(limits, total_cap)
{
	struct conn_limits *l = limits_new(5, 0);

	for (uint32_t i = 0; i < 5; i++) {
		struct ip_key k = key4(i);

		cr_assert(limits_acquire(l, &k));
	}
	struct ip_key k = key4(99);

	cr_assert_not(limits_acquire(l, &k));
	limits_free(l);
}

/* Many addresses colliding in a small table, released in a scrambled order:
 * every count must survive backward-shift deletion. */
Test(limits, counts_survive_deletions)
{
	enum { N = 500 };
	struct conn_limits *l = limits_new(N * 2, 2);

	for (uint32_t i = 0; i < N; i++) {
		struct ip_key k = key4(i * 7919);

		cr_assert(limits_acquire(l, &k));
		cr_assert(limits_acquire(l, &k));
	}
	for (uint32_t j = 0; j < N; j++) {
		uint32_t i = (j * 37) % N;
		struct ip_key k = key4(i * 7919);

		if (i % 2 == 0) {
			limits_release(l, &k);
			limits_release(l, &k);
		}
	}
	for (uint32_t i = 0; i < N; i++) {
		struct ip_key k = key4(i * 7919);

		if (i % 2 == 0) {
			cr_assert(limits_acquire(l, &k), "released address %u still counted", i);
		} else {
			cr_assert_not(limits_acquire(l, &k), "address %u lost its count", i);
		}
	}
	limits_free(l);
}

/* ---- address blocks (--proxy-trusted) ----------------------------------- */

static bool in_block(const char *cidr, const char *ip)
{
	struct ip_cidr c;
	struct ip_key k;

	cr_assert(ip_cidr_parse(&c, cidr), "parse %s", cidr);
	cr_assert(ip_key_from_text(&k, ip), "address %s", ip);
	return ip_cidr_match(&c, &k);
}

Test(ip_cidr, matches_ipv4_and_ipv6_blocks)
{
	cr_assert(in_block("127.0.0.0/8", "127.0.0.3"));
	cr_assert_not(in_block("127.0.0.0/8", "128.0.0.1"));
	cr_assert(in_block("10.1.2.3/8", "10.200.0.1"), "host bits are cleared");
	cr_assert(in_block("192.0.2.7", "192.0.2.7"));
	cr_assert_not(in_block("192.0.2.7", "192.0.2.8"));
	cr_assert(in_block("192.0.2.0/25", "192.0.2.127"));
	cr_assert_not(in_block("192.0.2.0/25", "192.0.2.128"));
	cr_assert(in_block("0.0.0.0/0", "203.0.113.1"));
	cr_assert_not(in_block("0.0.0.0/0", "2001:db8::1"), "an IPv4 block never holds IPv6");
	cr_assert(in_block("::ffff:192.0.2.0/120", "192.0.2.9"), "v4-mapped written as IPv6");
	cr_assert(in_block("2001:db8::/32", "2001:db8:ffff::1"));
	cr_assert_not(in_block("2001:db8::/33", "2001:db8:8000::1"));
	cr_assert(in_block("::1", "::1"));
	cr_assert(in_block("::/0", "2001:db8::1"));
}

Test(ip_cidr, refuses_malformed_blocks)
{
	static const char *const bad[] = { "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/8x",
					   "10.0.0.0/-1", "example.org", "10.0.0/8", "1.2.3.4/ 8" };
	struct ip_cidr c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_not(ip_cidr_parse(&c, bad[i]), "accepted \"%s\"", bad[i]);
	}
}

/* ---- rates (--max-connection-rate, --max-message-rate, --max-tls-rate) --- */

static struct ip_key key_text(const char *ip)
{
	struct ip_key k;

	cr_assert(ip_key_from_text(&k, ip));
	return k;
}

Test(rate, burst_then_refill_per_minute)
{
	struct rate_limits *r = rate_new((const uint32_t[RATE_KINDS]){ 3, 0, 0 });
	struct ip_key a = key_text("192.0.2.1"), b = key_text("192.0.2.2");
	int64_t t = 1000000;

	for (int i = 0; i < 3; i++) {
		cr_assert(rate_ok(r, &a, t, RATE_CONN), "burst connection %d", i);
	}
	cr_assert_not(rate_ok(r, &a, t, RATE_CONN), "the 4th in the same minute");
	cr_assert(rate_ok(r, &b, t, RATE_CONN), "another address has its own bucket");
	cr_assert_not(rate_ok(r, &a, t + 19999, RATE_CONN), "a token takes 20 s at 3/min");
	cr_assert(rate_ok(r, &a, t + 20000, RATE_CONN));
	cr_assert_not(rate_ok(r, &a, t + 20000, RATE_CONN));
	cr_assert(rate_ok(r, &a, t, RATE_MSG), "message rate off");
	rate_free(r);
}

Test(rate, ipv6_counted_per_64)
{
	struct rate_limits *r = rate_new((const uint32_t[RATE_KINDS]){ 0, 2, 0 });
	struct ip_key a = key_text("2001:db8:1:2::1"), b = key_text("2001:db8:1:2:ffff::9"),
		      c = key_text("2001:db8:1:3::1");

	cr_assert(rate_ok(r, &a, 5000, RATE_MSG));
	cr_assert(rate_ok(r, &b, 5000, RATE_MSG));
	cr_assert_not(rate_ok(r, &a, 5000, RATE_MSG), "one /64 shares one bucket");
	cr_assert(rate_ok(r, &c, 5000, RATE_MSG), "the next /64 has its own");
	cr_assert(rate_ok(r, &a, 5000, RATE_CONN), "connection rate off");
	rate_free(r);
}

Test(rate, tls_token_given_back_never_above_the_cap)
{
	struct rate_limits *r = rate_new((const uint32_t[RATE_KINDS]){ 0, 0, 2 });
	struct ip_key a = key_text("198.51.100.7");

	cr_assert(rate_ok(r, &a, 1000, RATE_TLS));
	cr_assert(rate_ok(r, &a, 1000, RATE_TLS));
	cr_assert_not(rate_ok(r, &a, 1000, RATE_TLS), "the 3rd new session in the same minute");
	rate_give_back(r, &a, 1000, RATE_TLS); /* the 2nd was resumed */
	cr_assert(rate_ok(r, &a, 1000, RATE_TLS), "a resumed session costs nothing");
	cr_assert_not(rate_ok(r, &a, 1000, RATE_TLS));
	rate_give_back(r, &a, 1000, RATE_TLS);
	rate_give_back(r, &a, 1000, RATE_TLS);
	rate_give_back(r, &a, 1000, RATE_TLS);
	cr_assert(rate_ok(r, &a, 1000, RATE_TLS));
	cr_assert(rate_ok(r, &a, 1000, RATE_TLS));
	cr_assert_not(rate_ok(r, &a, 1000, RATE_TLS), "given back tokens never exceed the burst");
	cr_assert(rate_ok(r, &a, 1000, RATE_CONN), "connection rate off");
	rate_free(r);
}

Test(rate, bounded_table_forgets_oldest)
{
	struct rate_limits *r = rate_new((const uint32_t[RATE_KINDS]){ 1, 0, 0 });
	struct ip_key first = key4(1);

	cr_assert(rate_ok(r, &first, 1000, RATE_CONN));
	cr_assert_not(rate_ok(r, &first, 1000, RATE_CONN));
	/* Far more addresses than the table holds: memory stays bounded and
	 * every new address gets its burst. */
	for (uint32_t i = 2; i < 300000; i++) {
		struct ip_key k = key4(i);

		cr_assert(rate_ok(r, &k, 2000 + i / 1000, RATE_CONN));
	}
	rate_free(r);
}
