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
