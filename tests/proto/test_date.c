/* test_date.c - RFC 5322 dates, obsolete forms, to ISO 8601 UTC. */
#include <criterion/criterion.h>

#include "proto/date.h"

static void check(const char *in, const char *want)
{
	int64_t t;
	char iso[DATE_ISO_LEN];

	if (want == NULL) {
		cr_assert(!date_parse(span_cstr(in), &t), "%s", in);
		return;
	}
	cr_assert(date_parse(span_cstr(in), &t), "%s", in);
	date_iso(iso, t);
	cr_assert_str_eq(iso, want, "%s", in);
}

Test(date, forms)
{
	check("Fri, 21 Nov 1997 09:55:06 -0600", "1997-11-21T15:55:06Z");
	check("Tue, 1 Jul 2003 10:52:37 +0200", "2003-07-01T08:52:37Z");
	check("21 Nov 97 09:55:06 GMT", "1997-11-21T09:55:06Z");
	check("Thu, 13 Feb 1969 23:32 -0330 (Newfoundland Time)", "1969-02-14T03:02:00Z");
	check("1 Jan 05 00:00:00 EST", "2005-01-01T05:00:00Z");
	check("Tue Jul  1 10:52:37 2003", "2003-07-01T10:52:37Z");
	check("Sat, 31 Dec 2016 23:59:60 +0000", "2016-12-31T23:59:59Z");
	check("Mon, 29 Feb 2016 12:00:00 +0100", "2016-02-29T11:00:00Z");
	check("garbage", NULL);
	check("32 Jan 2020 00:00:00", NULL);
}
