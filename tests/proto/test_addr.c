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

/* parse_n parses n bytes (they may hold NUL). */
static struct addr_list parse_n(const char *s, size_t n)
{
	struct addr_list l;

	cr_assert_eq(addr_list_parse(&l, span_make(s, n)), 0);
	return l;
}

#define FFFD "\xef\xbf\xbd"

Test(addr, nul_in_display_name_is_replaced_not_cut)
{
	static const char in[] = "Ann\0Other <ann@x.test>, \"Bo\0b\" <bob@x.test>, =?utf-8?q?C=00D?= <cd@x.test>";
	struct addr_list l = parse_n(in, sizeof(in) - 1);

	cr_assert_eq(l.num, 3);
	cr_assert_str_eq(l.items[0].name, "Ann" FFFD "Other");
	cr_assert_str_eq(l.items[0].email, "ann@x.test");
	cr_assert_not(l.items[0].invalid);
	cr_assert_str_eq(l.items[1].name, "Bo" FFFD "b");
	cr_assert_not(l.items[1].invalid);
	cr_assert_str_eq(l.items[2].name, "C" FFFD "D"); /* an encoded word that decodes to NUL */
	cr_assert_eq(l.num_invalid, 0);
	cr_assert_eq(l.num_nul, 3);
	addr_list_fini(&l);
}

Test(addr, nul_in_address_makes_it_invalid_never_a_shorter_one)
{
	/* Cut at the NUL, these would read as the valid a@x.test, b@y.test and evil.test. */
	static const char in[] = "<a@x.test\0.evil>, b@y.test\0, c@evil.test\0.y.test, d\0@z.test, \"e\0\"@q.test, f@ok.test";
	struct addr_list l = parse_n(in, sizeof(in) - 1);

	cr_assert_eq(l.num, 6);
	cr_assert_str_eq(l.items[0].email, "a@x.test" FFFD ".evil");
	cr_assert_str_eq(l.items[0].domain, "x.test" FFFD ".evil");
	cr_assert_str_eq(l.items[1].email, "b@y.test" FFFD);
	cr_assert_str_eq(l.items[2].domain, "evil.test" FFFD ".y.test");
	cr_assert_str_eq(l.items[3].local, "d" FFFD);
	cr_assert_str_eq(l.items[4].local, "e" FFFD);
	for (size_t i = 0; i < 5; i++) {
		cr_assert(l.items[i].invalid, "item %zu", i);
	}
	cr_assert_str_eq(l.items[5].email, "f@ok.test");
	cr_assert_not(l.items[5].invalid);
	cr_assert_eq(l.num_invalid, 5);
	cr_assert_eq(l.num_nul, 5);
	addr_list_fini(&l);
}

Test(addr, nul_in_group_name_and_split_path)
{
	static const char in[] = "te\0am: a@t.test;";
	struct addr_list l = parse_n(in, sizeof(in) - 1);
	struct addr_item it;

	cr_assert_eq(l.num, 1);
	cr_assert_str_eq(l.items[0].group, "te" FFFD "am");
	cr_assert_not(l.items[0].invalid);
	addr_list_fini(&l);
	cr_assert_eq(addr_split(&it, span_make("u+t\0g@x.test", 12)), 0);
	cr_assert(it.invalid);
	cr_assert_str_eq(it.email, "u+t" FFFD "g@x.test");
	cr_assert_str_eq(it.detail, "t" FFFD "g");
	addr_item_fini(&it);
}
