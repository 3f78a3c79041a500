/* test_smtp_trace.c - the Received: header (proto/smtp_trace.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/smtp_trace.h"

static char *rcpt_one[] = { "u@example.org" };
static char *rcpt_two[] = { "u@example.org", "v@example.org" };

static char *render(struct bb *b)
{
	cr_assert(bb_append(b, "", 1) == 0);
	return (char *)b->p;
}

Test(smtp_trace, esmtp_one_recipient)
{
	struct msg_env env = { .received_us = 1795681800123456LL, .client_port = 1, .helo = "client.example",
			       .esmtp = true, .mail_from = "a@b", .rcpts = rcpt_one, .num_rcpts = 1 };
	struct bb b;

	strcpy(env.id, "19C2A7F0E3D1A4B2-0001");
	strcpy(env.client_ip, "192.0.2.7");
	bb_init(&b, 0);
	cr_assert_eq(smtp_trace_received(&b, &env, "mx.test"), 0);
	cr_assert_str_eq(render(&b), "Received: from client.example ([192.0.2.7])\r\n"
				     "\tby mx.test (oceanmx) with ESMTP id 19C2A7F0E3D1A4B2-0001\r\n"
				     "\tfor <u@example.org>;\r\n"
				     "\tThu, 26 Nov 2026 08:30:00 +0000\r\n");
	bb_fini(&b);
}

Test(smtp_trace, smtp_ipv6_two_recipients_no_id)
{
	struct msg_env env = { .received_us = 0, .helo = "[IPv6:2001:db8::1]", .esmtp = false,
			       .rcpts = rcpt_two, .num_rcpts = 2 };
	struct bb b;

	strcpy(env.client_ip, "2001:db8::1");
	bb_init(&b, 0);
	cr_assert_eq(smtp_trace_received(&b, &env, "mx.test"), 0);
	cr_assert_str_eq(render(&b), "Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n"
				     "\tby mx.test (oceanmx) with SMTP;\r\n"
				     "\tThu, 1 Jan 1970 00:00:00 +0000\r\n");
	bb_fini(&b);
}

Test(smtp_trace, utf8smtp_and_sanitised_helo)
{
	struct msg_env env = { .received_us = -1, .helo = "evil(x)\\", .esmtp = true, .smtputf8 = true };
	struct bb b;

	strcpy(env.client_ip, "192.0.2.9");
	bb_init(&b, 0);
	cr_assert_eq(smtp_trace_received(&b, &env, "mx.test"), 0);
	cr_assert_str_eq(render(&b), "Received: from evil?x?? ([192.0.2.9])\r\n"
				     "\tby mx.test (oceanmx) with UTF8SMTP;\r\n"
				     "\tWed, 31 Dec 1969 23:59:59 +0000\r\n");
	bb_fini(&b);
}

Test(smtp_trace, no_helo_and_builder_full)
{
	struct msg_env env = { .received_us = 0 };
	struct bb b;

	strcpy(env.client_ip, "192.0.2.9");
	bb_init(&b, 0);
	cr_assert_eq(smtp_trace_received(&b, &env, "mx.test"), 0);
	cr_assert(strstr(render(&b), "from unknown ([192.0.2.9])") != NULL);
	bb_fini(&b);
	bb_init(&b, 30);
	cr_assert_eq(smtp_trace_received(&b, &env, "mx.test"), -E2BIG);
	cr_assert_eq(b.len, 0);
	bb_fini(&b);
}
