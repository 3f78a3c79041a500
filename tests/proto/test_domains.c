/* test_domains.c - recipient domain list (proto/domains.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>

#include "proto/domains.h"

Test(domains, exact_and_subdomain_matching)
{
	struct domain_list *dl = NULL;

	cr_assert_eq(domain_list_parse(&dl, " Example.COM,example.org\t.Sub.Example.NET , [192.0.2.1]\n"), 0);
	cr_assert_eq(domain_list_count(dl), 4);
	cr_assert(domain_list_match(dl, SPAN_LIT("example.com")));
	cr_assert(domain_list_match(dl, SPAN_LIT("EXAMPLE.com")));
	cr_assert(domain_list_match(dl, SPAN_LIT("example.org")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT("a.example.com")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT("example.co")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT("xexample.com")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT("sub.example.net")));
	cr_assert(domain_list_match(dl, SPAN_LIT("a.sub.example.net")));
	cr_assert(domain_list_match(dl, SPAN_LIT("b.A.SUB.example.net")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT(".sub.example.net")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT("asub.example.net")));
	cr_assert(domain_list_match(dl, SPAN_LIT("[192.0.2.1]")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT("[192.0.2.2]")));
	cr_assert_not(domain_list_match(dl, SPAN_LIT("")));
	cr_assert_not(domain_list_match(NULL, SPAN_LIT("example.com")));
	domain_list_free(dl);
	domain_list_free(NULL);
}

Test(domains, rejects_bad_lists)
{
	struct domain_list *dl = (struct domain_list *)0x1;

	cr_assert_eq(domain_list_parse(&dl, ""), -EINVAL);
	cr_assert_eq(domain_list_parse(&dl, " , ,"), -EINVAL);
	cr_assert_eq(domain_list_parse(&dl, "a..b"), -EINVAL);
	cr_assert_eq(domain_list_parse(&dl, "ok.example,bad_domain"), -EINVAL);
	cr_assert_eq(domain_list_parse(&dl, "."), -EINVAL);
	cr_assert_eq(domain_list_parse(&dl, ".[1.2.3.4]"), -EINVAL);
	cr_assert_eq(domain_list_parse(&dl, "[]"), -EINVAL);
	cr_assert_eq(dl, (struct domain_list *)0x1, "untouched on failure");
}

Test(domains, many_entries_binary_search)
{
	char spec[64 * 16];
	size_t n = 0;
	struct domain_list *dl = NULL;

	for (int i = 0; i < 50; i++) {
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, "d%02d.example,", 49 - i);
	}
	cr_assert_eq(domain_list_parse(&dl, spec), 0);
	for (int i = 0; i < 50; i++) {
		char name[32];

		snprintf(name, sizeof(name), "D%02d.EXAMPLE", i);
		cr_assert(domain_list_match(dl, span_cstr(name)), "%s", name);
	}
	cr_assert_not(domain_list_match(dl, SPAN_LIT("d50.example")));
	domain_list_free(dl);
}
