/* test_addr.c - address lists (RFC 5322 §3.4, obsolete §4.4, RFC 6532). */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/addr.h"

static struct addr_list parse(const char *s)
{
	struct addr_list l;

	cr_assert_eq(addr_list_parse(&l, span_cstr(s)), 0);
	return l;
}

Test(addr, mailboxes_groups_comments)
{
	struct addr_list l = parse("\"Doe, John\" <john+news@Example.COM>, ann@x.test (Ann Other),"
				   " team: a@t.test, B <b@t.test>;, =?utf-8?q?J=C3=B6rg?= <jorg@x.test>,"
				   " <@relay.test:route@x.test>, \"quoted local\"@x.test, undisclosed-recipients:;");

	cr_assert_eq(l.num, 7);
	cr_assert_str_eq(l.items[0].name, "Doe, John");
	cr_assert_str_eq(l.items[0].email, "john+news@Example.COM");
	cr_assert_str_eq(l.items[0].local, "john+news");
	cr_assert_str_eq(l.items[0].domain, "Example.COM");
	cr_assert_str_eq(l.items[0].detail, "news");
	cr_assert_str_eq(l.items[1].name, "Ann Other");
	cr_assert_str_eq(l.items[1].email, "ann@x.test");
	cr_assert_null(l.items[1].detail);
	cr_assert_str_eq(l.items[2].group, "team");
	cr_assert_str_eq(l.items[2].email, "a@t.test");
	cr_assert_str_eq(l.items[3].name, "B");
	cr_assert_str_eq(l.items[3].group, "team");
	cr_assert_null(l.items[4].group);
	cr_assert_str_eq(l.items[4].name, "J\xc3\xb6rg");
	cr_assert_str_eq(l.items[5].email, "route@x.test");
	cr_assert_str_eq(l.items[6].email, "\"quoted local\"@x.test");
	cr_assert_str_eq(l.items[6].local, "quoted local");
	cr_assert_eq(l.num_invalid, 0);
	addr_list_fini(&l);
}

Test(addr, utf8_and_broken)
{
	struct addr_list l = parse("Jürgen <jürgen@bücher.example>, not an address, ,, <>");

	cr_assert_geq(l.num, 2);
	cr_assert_str_eq(l.items[0].name, "Jürgen");
	cr_assert_str_eq(l.items[0].domain, "bücher.example");
	cr_assert(l.items[1].invalid);
	cr_assert_gt(l.num_invalid, 0);
	addr_list_fini(&l);
}
