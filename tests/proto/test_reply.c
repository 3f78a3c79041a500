/* test_reply.c - the reply table (proto/reply.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/reply.h"

static char *render(struct bb *b)
{
	cr_assert(bb_append(b, "", 1) == 0);
	b->len--;
	return (char *)b->p;
}

Test(reply, table_is_complete_and_consistent)
{
	for (int i = 0; i < SMTP_R_COUNT; i++) {
		const struct reply_def *d = reply_for((enum smtp_reply)i);

		cr_assert(d->code >= 200 && d->code <= 599, "%s: code %u", reply_name((enum smtp_reply)i), d->code);
		cr_assert_not_null(d->text, "%d", i);
		cr_assert_str_neq(reply_name((enum smtp_reply)i), "?");
		if (d->esc != NULL) {
			/* RFC 3463 §2: the class digit matches the reply's first digit */
			cr_assert_eq(d->esc[0] - '0', d->code / 100, "%s", reply_name((enum smtp_reply)i));
			cr_assert(d->esc[1] == '.' && strchr(d->esc + 2, '.') != NULL);
		}
		/* the text must not smuggle a line break */
		cr_assert_null(strpbrk(d->text, "\r\n"));
		/* closing replies are 221, 421 or 5xx */
		if (d->flags & REPLY_F_CLOSE) {
			cr_assert(d->code == 221 || d->code == 421 || d->code >= 500);
		}
	}
	cr_assert_str_eq(reply_name(SMTP_R_COUNT), "?");
	cr_assert_eq(reply_for(SMTP_R_COUNT), reply_for(SMTP_R_LOCAL_ERROR));
}

Test(reply, formats_single_line)
{
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(reply_append(&b, SMTP_R_GREETING, "mx.example"), 0);
	cr_assert_eq(reply_append(&b, SMTP_R_QUEUED, "ABC-1"), 0);
	cr_assert_eq(reply_append(&b, SMTP_R_OK, "ignored"), 0);
	cr_assert_eq(reply_append(&b, SMTP_R_DATA_GO, NULL), 0);
	cr_assert_eq(reply_append(&b, SMTP_R_TIMEOUT, NULL), 0);
	cr_assert_str_eq(render(&b), "220 mx.example ESMTP oceanmx\r\n250 2.0.0 Ok: queued as ABC-1\r\n250 2.0.0 Ok\r\n"
				     "354 End data with <CR><LF>.<CR><LF>\r\n421 4.4.2  Timeout, closing connection\r\n");
	bb_fini(&b);
}

Test(reply, formats_multi_line)
{
	static const char *const lines[] = { "PIPELINING", "SIZE 10" };
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(reply_append_lines(&b, SMTP_R_EHLO, "mx", lines, 2), 0);
	cr_assert_eq(reply_append_lines(&b, SMTP_R_HELP, NULL, lines, 1), 0);
	cr_assert_str_eq(render(&b), "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
				     "214-2.0.0 oceanmx: commands HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\r\n"
				     "214 2.0.0 PIPELINING\r\n");
	bb_fini(&b);
}

Test(reply, failure_leaves_builder_unchanged)
{
	static const char *const lines[] = { "PIPELINING", "SIZE 10" };
	struct bb b;

	bb_init(&b, 20);
	cr_assert_eq(reply_append(&b, SMTP_R_OK, NULL), 0);
	cr_assert_eq(reply_append_lines(&b, SMTP_R_EHLO, "mx", lines, 2), -E2BIG);
	cr_assert_eq(b.len, 14);
	bb_fini(&b);
}

Test(reply, clean_keeps_one_printable_line)
{
	char out[REPLY_DETAIL_MAX];

	cr_assert_eq(reply_clean(out, sizeof(out), "no such user", 12), 12);
	cr_assert_str_eq(out, "no such user");
	/* Only the first line: a CR or LF would end our reply and start one of the consumer's. */
	reply_clean(out, sizeof(out), "bad\r\n250 2.0.0 Ok", 18);
	cr_assert_str_eq(out, "bad");
	reply_clean(out, sizeof(out), "a\nb", 3);
	cr_assert_str_eq(out, "a");
	/* Non-printable and non-ASCII bytes become '?'; blanks squeezed and trimmed. */
	reply_clean(out, sizeof(out), "  caf\xc3\xa9 \x01x\t\t y  ", 16);
	cr_assert_str_eq(out, "caf?? ?x y");
	cr_assert_eq(reply_clean(out, sizeof(out), "\r\nhidden", 8), 0);
	cr_assert_str_eq(out, "");
	/* A NUL is not an end: the length is. */
	reply_clean(out, sizeof(out), "a\0b", 3);
	cr_assert_str_eq(out, "a?b");
}

Test(reply, clean_is_bounded)
{
	char big[2000], out[REPLY_DETAIL_MAX], tiny[4];

	memset(big, 'x', sizeof(big));
	cr_assert_eq(reply_clean(out, sizeof(out), big, sizeof(big)), REPLY_DETAIL_MAX - 1);
	cr_assert_eq(strlen(out), REPLY_DETAIL_MAX - 1);
	cr_assert_eq(reply_clean(tiny, sizeof(tiny), "ab cd", 5), 2, "never a trailing space at the cut");
	cr_assert_str_eq(tiny, "ab");
	cr_assert_eq(reply_clean(tiny, 0, "ab", 2), 0);
}

Test(reply, sink_replies_carry_the_detail)
{
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(reply_append(&b, SMTP_R_SINK_REJECT, "no such user"), 0);
	cr_assert_eq(reply_append(&b, SMTP_R_SINK_TEMPFAIL, "busy"), 0);
	cr_assert_str_eq(render(&b), "550 5.7.1 Rejected: no such user\r\n"
				     "451 4.3.0 Not accepted now, try again later: busy\r\n");
	bb_fini(&b);
}
