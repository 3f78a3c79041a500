/* test_smtp_sess.c - the session state machine (proto/smtp_sess.c), driven by whole dialogs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dialog.h"
#include "proto/reply.h"
#include "proto/smtp_sess.h"

static bool dom_ok(const void *arg, struct span d)
{
	(void)arg;
	return span_eq_ci(d, "example.org") || span_eq_ci(d, "[192.0.2.1]");
}

static struct smtp_cfg cfg_std(void)
{
	struct smtp_cfg c = {
		.hostname = "mx.test",
		.max_msg_size = 1000,
		.max_rcpts = 3,
		.max_bad_cmds = 20,
		.max_cmd_line = 512,
		.max_text_line = 1000,
		.bare_lf = SMTP_BARE_REJECT,
		.domain_ok = dom_ok,
		.domain_arg = NULL,
	};
	return c;
}

#define GREET "220 mx.test ESMTP oceanmx\r\n"
#define EHLO_REPLY                                                                                     \
	"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"           \
	"250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n"
#define ENV_OK "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\n"
#define ENV_OK_REPLY GREET EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"

/* replies_of returns a pointer to the replies and cuts the transcript there. */
static char *replies_of(char *t)
{
	char *ev = strstr(t, "\nEVENTS:\n");

	cr_assert_not_null(ev);
	*ev = '\0';
	return t + strlen("REPLIES:\n");
}

static const char *events_of(const char *t)
{
	const char *ev = strstr(t, "\nEVENTS:\n");

	cr_assert_not_null(ev);
	return ev + strlen("\nEVENTS:\n");
}

/* check runs `in` in every split and compares replies and (optionally) events exactly. */
static void check_cfg(const struct smtp_cfg *cfg, const char *in, const char *want_replies, const char *want_events)
{
	char *t = dialog_check(cfg, &dialog_default, in, strlen(in));
	const char *ev = events_of(t);

	if (want_events != NULL) {
		cr_assert_str_eq(ev, want_events, "events for input:\n%s\n--- got:\n%s", in, ev);
	}
	{
		const char *r = replies_of(t);

		cr_assert_str_eq(r, want_replies, "replies for input:\n%s\n--- got:\n%s", in, r);
	}
	free(t);
}

static void check_n(const struct smtp_cfg *cfg, const char *in, size_t len, const char *want_replies,
		    const char *want_events)
{
	char *t = dialog_check(cfg, &dialog_default, in, len);
	const char *ev = events_of(t);

	if (want_events != NULL) {
		cr_assert_str_eq(ev, want_events, "--- got:\n%s", ev);
	}
	{
		const char *r = replies_of(t);

		cr_assert_str_eq(r, want_replies, "--- got:\n%s", r);
	}
	free(t);
}

static void check(const char *in, const char *want_replies, const char *want_events)
{
	struct smtp_cfg cfg = cfg_std();

	check_cfg(&cfg, in, want_replies, want_events);
}

/* ---- greeting, HELO/EHLO ---------------------------------------------- */

Test(smtp_sess, greets_with_hostname)
{
	check("", GREET, "EOF phase=cmd in_tx=0 bad=0 msgs=0 rej=0\n");
}

Test(smtp_sess, early_talker_gets_554_and_close)
{
	struct smtp_cfg cfg = cfg_std();
	struct dialog_opts o = { .no_greet = true, .commit = SMTP_COMMIT_OK };
	char *t = dialog_check(&cfg, &o, "EHLO x\r\n", 8);

	cr_assert_str_eq(events_of(t), "CLOSE@53 consumed=0\nEOF phase=closed in_tx=0 bad=0 msgs=0 rej=0\n");
	cr_assert_str_eq(replies_of(t), "554 5.5.0 Protocol error: data sent before greeting\r\n");
	free(t);
}

Test(smtp_sess, no_input_before_greeting_is_fine)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;
	struct span in = { NULL, 0 }, body;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_GREETING);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_NEED_INPUT);
	cr_assert_eq(out.len, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_greet(s, &out), -EINVAL);
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_CMD);
	cr_assert_str_eq(smtp_sess_env(s)->client_ip, "192.0.2.1");
	cr_assert_eq(smtp_sess_env(s)->client_port, 25);
	smtp_sess_free(s);
	smtp_sess_free(NULL);
	bb_fini(&out);
}

Test(smtp_sess, ehlo_advertises_extensions)
{
	check("EHLO client.test\r\n", GREET EHLO_REPLY, NULL);
}

Test(smtp_sess, helo_single_line)
{
	check("HELO client.test\r\n", GREET "250 mx.test\r\n", NULL);
}

Test(smtp_sess, ehlo_helo_need_argument)
{
	check("EHLO\r\nHELO\r\nEHLO   \r\nHELO a b\r\n",
	      GREET "501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: EHLO hostname\r\n"
		    "501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: EHLO hostname\r\n",
	      NULL);
}

Test(smtp_sess, size_unlimited_advertises_bare_size)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.max_msg_size = 0;
	check_cfg(&cfg, "EHLO c\r\n",
		  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			"250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n",
		  NULL);
}

/* ---- a whole transaction ---------------------------------------------- */

Test(smtp_sess, data_transaction)
{
	check(ENV_OK "DATA\r\nSubject: x\r\n\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n",
	      ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n221 2.0.0 Bye\r\n",
	      "TX_BEGIN@219 from=<a@b.test> rcpts=1 body=7BIT utf8=0\n"
	      "TX_END@219 size=27 body=Subject: x\\r\\n\\r\\nhello\\r\\n.dot\\r\\n\n"
	      "CLOSE@263 consumed=103\n"
	      "EOF phase=closed in_tx=0 bad=0 msgs=1 rej=0\n");
}

Test(smtp_sess, envelope_is_exposed_at_tx_begin)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "2001:db8::1", 1);
	const char *in = "HELO c.test\r\nMAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<x@example.org>\r\n"
			 "RCPT TO:<Postmaster>\r\nDATA\r\n";
	struct span sp = span_cstr(in), body;
	struct bb out;
	const struct msg_env *env;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &sp, &out, &body), SMTP_EV_MAIL);
	cr_assert_eq(smtp_sess_next(s, &sp, &out, &body), SMTP_EV_TX_BEGIN);
	env = smtp_sess_env(s);
	cr_assert_str_eq(env->helo, "c.test");
	cr_assert_not(env->esmtp);
	cr_assert_str_eq(env->mail_from, "");
	cr_assert_eq(env->num_rcpts, 2);
	cr_assert_str_eq(env->rcpts[0], "x@example.org");
	cr_assert_str_eq(env->rcpts[1], "Postmaster");
	cr_assert_eq(env->body, MSG_BODY_8BITMIME);
	cr_assert(smtp_sess_in_tx(s));
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_DATA);
	cr_assert_eq(smtp_sess_next(s, &sp, &out, &body), SMTP_EV_NEED_INPUT);
	smtp_sess_free(s); /* mid-DATA free releases everything (ASan checks) */
	bb_fini(&out);
}

Test(smtp_sess, empty_message)
{
	check(ENV_OK "DATA\r\n.\r\n", ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n",
	      "TX_BEGIN@219 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_END@219 size=0 body=\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=1 rej=0\n");
}

Test(smtp_sess, many_transactions_pipelined)
{
	check(ENV_OK "DATA\r\none\r\n.\r\nMAIL FROM:<c@d.test>\r\nRCPT TO:<v@example.org>\r\nDATA\r\ntwo\r\n.\r\n"
		     "RSET\r\nNOOP\r\n",
	      ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n"
			   "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
			   "250 2.0.0 Ok: queued as ID2\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n",
	      "TX_BEGIN@219 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_END@219 size=5 body=one\\r\\n\n"
	      "TX_BEGIN@313 from=<c@d.test> rcpts=1 body=7BIT utf8=0\nTX_END@313 size=5 body=two\\r\\n\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=2 rej=0\n");
}

Test(smtp_sess, commit_failures)
{
	struct smtp_cfg cfg = cfg_std();
	struct dialog_opts o = { false, SMTP_COMMIT_TEMPFAIL };
	char *t = dialog_check(&cfg, &o, ENV_OK "DATA\r\nx\r\n.\r\n", strlen(ENV_OK "DATA\r\nx\r\n.\r\n"));

	cr_assert(strstr(t, "\r\n451 4.3.0 ") != NULL, "%s", t);
	free(t);
	o.commit = SMTP_COMMIT_NOSPACE;
	t = dialog_check(&cfg, &o, ENV_OK "DATA\r\nx\r\n.\r\n", strlen(ENV_OK "DATA\r\nx\r\n.\r\n"));
	cr_assert(strstr(t, "\r\n452 4.3.1 Insufficient system storage\r\n") != NULL, "%s", t);
	free(t);
}

Test(smtp_sess, tx_done_outside_commit_is_einval)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_tx_done(s, SMTP_COMMIT_OK, &out), -EINVAL);
	smtp_sess_free(s);
	bb_fini(&out);
}

/* ---- sequence errors -------------------------------------------------- */

Test(smtp_sess, sequence_errors)
{
	check("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\nDATA\r\nEHLO c\r\nRCPT TO:<u@example.org>\r\n"
	      "DATA\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nDATA\r\n",
	      GREET "503 5.5.1 Send EHLO or HELO first\r\n503 5.5.1 Send EHLO or HELO first\r\n"
		    "503 5.5.1 Send EHLO or HELO first\r\n" EHLO_REPLY
		    "503 5.5.1 Need MAIL command first\r\n503 5.5.1 Need MAIL command first\r\n"
		    "250 2.1.0 Ok\r\n503 5.5.1 Nested MAIL command\r\n503 5.5.1 Need RCPT command first\r\n",
	      NULL);
}

Test(smtp_sess, data_after_all_rcpts_rejected_is_554)
{
	check("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@elsewhere.test>\r\nDATA\r\n",
	      GREET EHLO_REPLY "250 2.1.0 Ok\r\n550 5.7.1 Relay not permitted: recipient domain not served here\r\n"
			       "554 5.5.1 No valid recipients\r\n",
	      NULL);
}

Test(smtp_sess, second_ehlo_resets_transaction)
{
	check(ENV_OK "EHLO again\r\nRCPT TO:<u@example.org>\r\nMAIL FROM:<x@y.test>\r\n",
	      ENV_OK_REPLY "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			   "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n"
			   "503 5.5.1 Need MAIL command first\r\n250 2.1.0 Ok\r\n",
	      NULL);
}

/* ---- MAIL / RCPT ------------------------------------------------------ */

Test(smtp_sess, mail_syntax_and_params)
{
	check("EHLO c\r\n"
	      "MAIL FROM:\r\n"                         /* no path */
	      "MAIL TO:<a@b.test>\r\n"                 /* wrong keyword */
	      "MAIL FROM:<a@@b>\r\n"                   /* bad address */
	      "MAIL FROM:<a@b.test>x\r\n"              /* junk after path */
	      "MAIL FROM:<a@b.test> FOO=1\r\n"         /* unknown param */
	      "MAIL FROM:<a@b.test> BODY=9BIT\r\n"     /* bad value */
	      "MAIL FROM:<a@b.test> SIZE=1001\r\n"     /* over the limit */
	      "MAIL FROM:<a@b.test> SIZE=x\r\n"        /* bad size */
	      "MAIL FROM:<a@b.test> SIZE=1 SIZE=1\r\n" /* duplicate */
	      "MAIL FROM:<\xc3\xa9@b.test>\r\n"       /* UTF-8 without SMTPUTF8 */
	      "MAIL FROM:<a@b.test>\r\n",
	      GREET EHLO_REPLY "501 5.5.4 Syntax: MAIL FROM:<address>\r\n501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
			       "501 5.1.7 Bad sender address syntax\r\n501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
			       "555 5.5.4 Unsupported MAIL/RCPT parameter\r\n"
			       "501 5.5.4 Bad MAIL/RCPT parameter syntax\r\n"
			       "552 5.3.4 Message size exceeds fixed limit\r\n"
			       "501 5.5.4 Bad MAIL/RCPT parameter syntax\r\n"
			       "501 5.5.4 Bad MAIL/RCPT parameter syntax\r\n"
			       "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n250 2.1.0 Ok\r\n",
	      NULL);
}

Test(smtp_sess, smtputf8_transaction)
{
	check("EHLO c\r\nMAIL FROM:<\xc3\xa9@b.test> SMTPUTF8 SIZE=10 BODY=8BITMIME\r\n"
	      "RCPT TO:<j\xc3\xb6@example.org>\r\nDATA\r\n\xe2\x82\xac\r\n.\r\n",
	      GREET EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
			       "250 2.0.0 Ok: queued as ID1\r\n",
	      "TX_BEGIN@219 from=<\xc3\xa9@b.test> rcpts=1 body=8BITMIME utf8=1\n"
	      "TX_END@219 size=5 body=\\xe2\\x82\\xac\\r\\n\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=1 rej=0\n");
}

Test(smtp_sess, rcpt_policy_and_limits)
{
	check("EHLO c\r\nMAIL FROM:<>\r\n"
	      "RCPT TO:<a@example.org>\r\n"
	      "RCPT TO:<a@other.test>\r\n"          /* relay */
	      "RCPT TO:<postmaster>\r\n"            /* always ok */
	      "RCPT TO:<b@[192.0.2.1]>\r\n"         /* literal in list */
	      "RCPT TO:<c@example.org>\r\n"         /* 4th: over max_rcpts 3 */
	      "RCPT TO:<c@example.org> NOTIFY=NEVER\r\n"
	      "RCPT TO: \r\n"
	      "RCPT TO:<c@exa_mple.org>\r\n"
	      "RCPT TO:<\xc3\xa9@example.org>\r\n",
	      GREET EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			       "550 5.7.1 Relay not permitted: recipient domain not served here\r\n"
			       "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Too many recipients\r\n"
			       "555 5.5.4 Unsupported MAIL/RCPT parameter\r\n"
			       "501 5.5.4 Syntax: RCPT TO:<address>\r\n501 5.1.3 Bad recipient address syntax\r\n"
			       "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n",
	      NULL);
}

/* Like Postfix's default, a space after the colon and a bare address are
 * accepted; a bare address ends at the first space, before parameters. */
Test(smtp_sess, bare_addresses_accepted)
{
	check("EHLO c\r\nMAIL FROM: a@b.test SIZE=10\r\nRCPT TO: c@example.org\r\nRCPT TO:postmaster\r\n"
	      "RCPT TO:d@example.org>\r\nRSET\r\nMAIL FROM:<a@b.test\r\n",
	      GREET EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
			       "501 5.1.3 Bad recipient address syntax\r\n250 2.0.0 Ok\r\n"
			       "501 5.1.7 Bad sender address syntax\r\n",
	      NULL);
}

Test(smtp_sess, path_length_limits)
{
	char in[2048], want[4096];
	char local65[66], dom[300];

	memset(local65, 'l', 65);
	local65[65] = '\0';
	/* 4 labels of 63 + dots = 255 octets */
	snprintf(dom, sizeof(dom), "%.63s.%.63s.%.63s.%.59sorg", local65, local65, local65, local65);
	snprintf(in, sizeof(in),
		 "EHLO c\r\nMAIL FROM:<%.64s@b.test>\r\nRSET\r\nMAIL FROM:<%s@b.test>\r\n"
		 "MAIL FROM:<a@%s>\r\nMAIL FROM:<a@%sx>\r\n",
		 local65, local65, dom, dom);
	snprintf(want, sizeof(want), GREET EHLO_REPLY "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n501 5.1.7 Path too long\r\n"
						      "501 5.1.7 Path too long\r\n501 5.1.7 Path too long\r\n");
	check(in, want, NULL);
}

Test(smtp_sess, source_route_is_dropped)
{
	char *t;
	struct smtp_cfg cfg = cfg_std();
	const char *in = "EHLO c\r\nMAIL FROM:<@relay.test,@r2.test:a@b.test>\r\nRCPT TO:<@x.test:u@example.org>\r\n"
			 "DATA\r\n.\r\n";

	t = dialog_check(&cfg, &dialog_default, in, strlen(in));
	cr_assert(strstr(t, "TX_BEGIN@219 from=<a@b.test> rcpts=1") != NULL, "%s", t);
	free(t);
}

/* ---- other commands --------------------------------------------------- */

Test(smtp_sess, misc_commands)
{
	check("NOOP\r\nNOOP anything\r\nVRFY bob\r\nVRFY\r\nEXPN list\r\nHELP\r\nFOO\r\nSTARTTLS\r\nAUTH PLAIN x\r\n"
	      "ETRN x\r\nTURN\r\nRSET x\r\nDATA x\r\nQUIT x\r\nrset\r\nQuit\r\nNOOP\r\n",
	      GREET "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
		    "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
		    "501 5.5.4 Syntax: VRFY address\r\n502 5.5.1 EXPN not supported\r\n"
		    "214-2.0.0 oceanmx: commands HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\r\n"
		    "214 2.0.0 See RFC 5321 and https://www.rfc-editor.org/\r\n"
		    "500 5.5.1 Command unrecognized\r\n502 5.5.1 Command not implemented\r\n"
		    "502 5.5.1 Command not implemented\r\n502 5.5.1 Command not implemented\r\n"
		    "502 5.5.1 Command not implemented\r\n501 5.5.4 Syntax error: no arguments allowed\r\n"
		    "501 5.5.4 Syntax error: no arguments allowed\r\n501 5.5.4 Syntax error: no arguments allowed\r\n"
		    "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n",
	      "CLOSE@670 consumed=133\nEOF phase=closed in_tx=0 bad=10 msgs=0 rej=0\n");
}

Test(smtp_sess, command_line_limits)
{
	char in[4096];
	char want[1024];
	size_t n;

	/* exactly 512 octets with CRLF is fine, 513 is too long; the stream stays in sync */
	n = (size_t)snprintf(in, sizeof(in), "NOOP ");
	memset(in + n, 'x', 505);
	n += 505;
	memcpy(in + n, "\r\n", 2);
	n += 2;
	n += (size_t)snprintf(in + n, sizeof(in) - n, "NOOP ");
	memset(in + n, 'y', 506);
	n += 506;
	{
		static const char tail[] = "\r\nNOOP\r\nNOOP\nNO\0OP\r\nNO\rOP\r\nNOOP\r\n";

		memcpy(in + n, tail, sizeof(tail) - 1);
		n += sizeof(tail) - 1;
	}
	snprintf(want, sizeof(want), GREET "250 2.0.0 Ok\r\n500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"
					   "500 5.5.2 Command line must end with CRLF\r\n"
					   "500 5.5.2 NUL or bare CR in command line\r\n"
					   "500 5.5.2 NUL or bare CR in command line\r\n250 2.0.0 Ok\r\n");
	{
		struct smtp_cfg cfg = cfg_std();
		char *t = dialog_check(&cfg, &dialog_default, in, n);

		cr_assert_str_eq(replies_of(t), want);
		free(t);
	}
}

Test(smtp_sess, too_many_bad_commands_closes)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.max_bad_cmds = 3;
	check_cfg(&cfg, "FOO\r\nBAR\r\nNOOP\r\nBAZ\r\nNOOP\r\n",
		  GREET "500 5.5.1 Command unrecognized\r\n500 5.5.1 Command unrecognized\r\n250 2.0.0 Ok\r\n"
			"500 5.5.1 Command unrecognized\r\n421 4.7.0 mx.test Too many errors, closing connection\r\n",
		  "CLOSE@192 consumed=21\nEOF phase=closed in_tx=0 bad=3 msgs=0 rej=0\n");
}

Test(smtp_sess, quit_mid_transaction_closes)
{
	check(ENV_OK "QUIT\r\n", ENV_OK_REPLY "221 2.0.0 Bye\r\n", NULL);
}

/* ---- DATA errors ------------------------------------------------------ */

Test(smtp_sess, bare_lf_rejected_then_session_continues)
{
	check(ENV_OK "DATA\r\nabc\ndef\r\n.\r\nNOOP\r\n",
	      ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Bare CR or LF in message data not allowed\r\n"
			   "250 2.0.0 Ok\r\n",
	      "TX_BEGIN@219 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@219\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=0 rej=1\n");
}

Test(smtp_sess, bare_cr_rejected)
{
	check(ENV_OK "DATA\r\nabc\rdef\r\n.\r\nMAIL FROM:<a@b.test>\r\n",
	      ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Bare CR or LF in message data not allowed\r\n"
			   "250 2.1.0 Ok\r\n",
	      NULL);
}

Test(smtp_sess, bare_lf_dot_never_ends_data)
{
	/* "\n.\n" and "\n.\r\n" are data; only the last CRLF.CRLF ends */
	check(ENV_OK "DATA\r\na\n.\nMAIL FROM:<evil@x>\r\nb\n.\r\nRCPT TO:<x@example.org>\r\n.\r\n",
	      ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Bare CR or LF in message data not allowed\r\n",
	      "TX_BEGIN@219 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@219\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=0 rej=1\n");
}

Test(smtp_sess, bare_lf_normalised)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.bare_lf = SMTP_BARE_NORMALISE;
	check_cfg(&cfg, ENV_OK "DATA\r\na\nb\rc\n.\r\n..d\r\n.\r\n",
		  ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n",
		  "TX_BEGIN@219 from=<a@b.test> rcpts=1 body=7BIT utf8=0\n"
		  "TX_END@219 size=16 body=a\\r\\nb\\r\\nc\\r\\n.\\r\\n.d\\r\\n\n"
		  "EOF phase=cmd in_tx=0 bad=0 msgs=1 rej=0\n");
}

Test(smtp_sess, data_size_exceeded)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.max_msg_size = 10;
	check_cfg(&cfg, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n0123456789\r\n.\r\nDATA\r\n",
		  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			"250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			"354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Message size exceeds fixed limit\r\n"
			"503 5.5.1 Need MAIL command first\r\n",
		  "TX_BEGIN@217 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@217\n"
		  "EOF phase=cmd in_tx=0 bad=1 msgs=0 rej=1\n");
	/* exactly at the limit is fine */
	check_cfg(&cfg, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n01234567\r\n.\r\n",
		  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			"250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n",
		  NULL);
}

Test(smtp_sess, data_text_line_too_long)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.max_text_line = 6; /* 4 octets + CRLF */
	check_cfg(&cfg, ENV_OK "DATA\r\n1234\r\n.1234\r\n12345\r\n.\r\n",
		  ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n500 5.5.2 Line too long in message data\r\n",
		  "TX_BEGIN@219 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@219\n"
		  "EOF phase=cmd in_tx=0 bad=0 msgs=0 rej=1\n");
}

Test(smtp_sess, binarymime_needs_bdat)
{
	check("EHLO c\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\nRCPT TO:<u@example.org>\r\nDATA\r\n",
	      GREET EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			       "503 5.5.1 DATA not allowed with BODY=BINARYMIME, use BDAT\r\n",
	      NULL);
}

/* ---- BDAT --------------------------------------------------------------- */

Test(smtp_sess, bdat_chunks)
{
	check(ENV_OK "BDAT 5\r\nab\r\ncBDAT 3 LAST\r\n\n.\nNOOP\r\n",
	      ENV_OK_REPLY "250 2.0.0 5 octets received\r\n250 2.0.0 Ok: queued as ID1\r\n250 2.0.0 Ok\r\n",
	      "TX_BEGIN@182 from=<a@b.test> rcpts=1 body=7BIT utf8=0\n"
	      "TX_END@211 size=8 body=ab\\r\\nc\\n.\\n\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=1 rej=0\n");
}

Test(smtp_sess, bdat_zero_last)
{
	check(ENV_OK "BDAT 0 LAST\r\nBDAT 0 LAST\r\n",
	      ENV_OK_REPLY "250 2.0.0 Ok: queued as ID1\r\n503 5.5.1 Need MAIL command first\r\n",
	      "TX_BEGIN@182 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_END@182 size=0 body=\n"
	      "EOF phase=cmd in_tx=0 bad=1 msgs=1 rej=0\n");
}

Test(smtp_sess, bdat_binarymime)
{
	static const char in[] = "EHLO c\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\nRCPT TO:<u@example.org>\r\n"
				 "BDAT 4 last\r\n\0\r\xff\n";
	struct smtp_cfg cfg = cfg_std();

	check_n(&cfg, in, sizeof(in) - 1,
	      GREET EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as ID1\r\n",
	      "TX_BEGIN@182 from=<a@b.test> rcpts=1 body=BINARYMIME utf8=0\n"
	      "TX_END@182 size=4 body=\\x00\\r\\xff\\n\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=1 rej=0\n");
}

Test(smtp_sess, bdat_out_of_sequence_swallows_chunk)
{
	check("BDAT 6\r\nNOOP\r\nEHLO c\r\nBDAT 6 LAST\r\nNOOP\r\nMAIL FROM:<a@b.test>\r\nBDAT 6\r\nNOOP\r\n"
	      "RCPT TO:<u@example.org>\r\nNOOP\r\n",
	      GREET "503 5.5.1 Send EHLO or HELO first\r\n" EHLO_REPLY "503 5.5.1 Need MAIL command first\r\n"
		    "250 2.1.0 Ok\r\n503 5.5.1 Need RCPT command first\r\n"
		    "503 5.5.1 Need MAIL command first\r\n250 2.0.0 Ok\r\n",
	      NULL);
}

Test(smtp_sess, data_after_bdat_and_rcpt_after_bdat)
{
	check(ENV_OK "BDAT 1\r\nxDATA\r\nRCPT TO:<v@example.org>\r\nBDAT 1 LAST\r\ny",
	      ENV_OK_REPLY "250 2.0.0 1 octets received\r\n503 5.5.1 DATA not allowed after BDAT\r\n"
			   "503 5.5.1 RCPT not allowed after BDAT\r\n250 2.0.0 Ok: queued as ID1\r\n",
	      "TX_BEGIN@182 from=<a@b.test> rcpts=1 body=7BIT utf8=0\n"
	      "TX_END@289 size=2 body=xy\n"
	      "EOF phase=cmd in_tx=0 bad=2 msgs=1 rej=0\n");
}

/* A chunk announced beyond the limit is refused before it is read, and the
 * connection closed: reading (and discarding) it is what a hostile client wants. */
Test(smtp_sess, bdat_size_exceeded_closes)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.max_msg_size = 10;
	check_cfg(&cfg,
		  "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\nBDAT 6\r\n123456BDAT 6\r\n123456"
		  "NOOP\r\n",
		  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			"250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			"250 2.0.0 6 octets received\r\n"
			"552 5.3.4 Message size exceeds fixed limit; closing connection\r\n",
		  "TX_BEGIN@180 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@273\n"
		  "CLOSE@273 consumed=77\nEOF phase=closed in_tx=0 bad=0 msgs=0 rej=1\n");
	/* A count no message could reach: 552 at once, nothing read after it. */
	check_cfg(&cfg, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\nBDAT 1000000000000 LAST\r\nxyz",
		  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			"250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			"552 5.3.4 Message size exceeds fixed limit; closing connection\r\n",
		  NULL);
}

Test(smtp_sess, bdat_bad_arguments)
{
	/* count readable: chunk swallowed, 501, tx failed; count unreadable: 501 and close */
	check(ENV_OK "BDAT 3 FIRST\r\nabcNOOP\r\nBDAT x\r\nNOOP\r\n",
	      ENV_OK_REPLY "501 5.5.4 Syntax: BDAT count [LAST]\r\n250 2.0.0 Ok\r\n"
			   "501 5.5.4 Syntax: BDAT count [LAST]; closing connection\r\n",
	      "CLOSE@290 consumed=91\nEOF phase=closed in_tx=0 bad=2 msgs=0 rej=0\n");
	check("BDAT\r\nNOOP\r\n", GREET "501 5.5.4 Syntax: BDAT count [LAST]; closing connection\r\n", NULL);
	check("BDAT 99999999999999999999999\r\n", GREET "501 5.5.4 Syntax: BDAT count [LAST]; closing connection\r\n",
	      NULL);
	check("BDAT 5\nabcde", GREET "501 5.5.4 Syntax: BDAT count [LAST]; closing connection\r\n", NULL);
}

Test(smtp_sess, rset_and_quit_abort_open_bdat)
{
	check(ENV_OK "BDAT 2\r\nabRSET\r\n",
	      ENV_OK_REPLY "250 2.0.0 2 octets received\r\n250 2.0.0 Ok\r\n",
	      "TX_BEGIN@182 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@225\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=0 rej=0\n");
	check(ENV_OK "BDAT 2\r\nabQUIT\r\n", ENV_OK_REPLY "250 2.0.0 2 octets received\r\n221 2.0.0 Bye\r\n",
	      "TX_BEGIN@182 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@226\nCLOSE@226 consumed=76\n"
	      "EOF phase=closed in_tx=1 bad=0 msgs=0 rej=0\n");
	check(ENV_OK "BDAT 2\r\nabEHLO d\r\n", ENV_OK_REPLY "250 2.0.0 2 octets received\r\n" EHLO_REPLY,
	      "TX_BEGIN@182 from=<a@b.test> rcpts=1 body=7BIT utf8=0\nTX_ABORT@338\n"
	      "EOF phase=cmd in_tx=0 bad=0 msgs=0 rej=0\n");
}

/* ---- shutdown / abort ------------------------------------------------- */

Test(smtp_sess, shutdown_idle_is_immediate)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;
	struct span in = SPAN_LIT("NOOP\r\n"), body;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert(smtp_sess_shutdown(s, &out));
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_CLOSE);
	cr_assert_eq(in.len, 6);
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_CLOSED);
	out.p[out.len] = 0;
	cr_assert_str_eq((char *)out.p, GREET "421 4.3.2 mx.test Service shutting down, closing connection\r\n");
	smtp_sess_free(s);
	bb_fini(&out);
}

Test(smtp_sess, shutdown_waits_for_transaction)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;
	struct span in = SPAN_LIT(ENV_OK "DATA\r\nx\r\n.\r\nNOOP\r\n"), body;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_MAIL);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_TX_BEGIN);
	cr_assert_not(smtp_sess_shutdown(s, &out));
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_BODY);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_TX_END);
	cr_assert_eq(smtp_sess_tx_done(s, SMTP_COMMIT_OK, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_CLOSE);
	cr_assert_eq(in.len, 6);
	cr_assert(bb_append(&out, "", 1) == 0);
	cr_assert_str_eq((char *)out.p, ENV_OK_REPLY "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as \r\n"
						  "421 4.3.2 mx.test Service shutting down, closing connection\r\n");
	smtp_sess_free(s);
	bb_fini(&out);
}

Test(smtp_sess, shutdown_after_mail_waits_for_rset)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;
	struct span in = SPAN_LIT(ENV_OK), in2 = SPAN_LIT("RSET\r\nNOOP\r\n"), body;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_MAIL);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_NEED_INPUT);
	cr_assert_not(smtp_sess_shutdown(s, &out));
	cr_assert_eq(smtp_sess_next(s, &in2, &out, &body), SMTP_EV_CLOSE);
	cr_assert_eq(in2.len, 6);
	smtp_sess_free(s);
	bb_fini(&out);
}

Test(smtp_sess, abort_reasons)
{
	static const struct {
		enum smtp_abort why;
		const char *want;
	} v[] = {
		{ SMTP_ABORT_TIMEOUT, "421 4.4.2 mx.test Timeout, closing connection\r\n" },
		{ SMTP_ABORT_SHUTDOWN, "421 4.3.2 mx.test Service shutting down, closing connection\r\n" },
		{ SMTP_ABORT_TOO_MANY, "421 4.7.0 mx.test Too many connections, try again later\r\n" },
	};
	struct smtp_cfg cfg = cfg_std();

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
		struct bb out;
		struct span in = SPAN_LIT("NOOP\r\n"), body;

		bb_init(&out, 0);
		cr_assert_eq(smtp_sess_abort(s, v[i].why, &out), 0);
		cr_assert(bb_append(&out, "", 1) == 0);
		cr_assert_str_eq((char *)out.p, v[i].want);
		cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_CLOSE);
		cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_CLOSED);
		smtp_sess_free(s);
		bb_fini(&out);
	}
}

Test(smtp_sess, abort_during_bdat_reports_tx_abort_first)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;
	struct span in = SPAN_LIT(ENV_OK "BDAT 10\r\nabc"), body;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_MAIL);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_TX_BEGIN);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_BODY);
	cr_assert_eq(body.len, 3);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_NEED_INPUT);
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_DATA);
	cr_assert_eq(smtp_sess_abort(s, SMTP_ABORT_TIMEOUT, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_TX_ABORT);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_CLOSE);
	smtp_sess_free(s);
	bb_fini(&out);
}

Test(smtp_sess, output_full_closes)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;
	struct span in = SPAN_LIT("NOOP\r\nNOOP\r\nNOOP\r\n"), body;

	bb_init(&out, 40);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_CLOSE);
	smtp_sess_free(s);
	bb_fini(&out);
}

Test(smtp_sess, names)
{
	for (int i = 0; i < SMTP_EV_COUNT; i++) {
		cr_assert_str_neq(smtp_ev_name((enum smtp_ev)i), "?");
	}
	for (int i = 0; i < SMTP_PHASE_COUNT; i++) {
		cr_assert_str_neq(smtp_phase_name((enum smtp_phase)i), "?");
	}
	cr_assert_str_eq(smtp_ev_name(SMTP_EV_COUNT), "?");
	cr_assert_str_eq(msg_body_name(MSG_BODY_BINARYMIME), "BINARYMIME");
	cr_assert_str_eq(msg_body_name(MSG_BODY_COUNT), "?");
}

/* A long mixed dialog: every split must give the same transcript. */
Test(smtp_sess, mixed_dialog_split_everywhere)
{
	struct smtp_cfg cfg = cfg_std();
	const char *in = "EHLO c.test\r\nFOO\r\nMAIL FROM:<a@b.test> SIZE=100\r\nRCPT TO:<x@example.org>\r\n"
			 "RCPT TO:<y@nope.test>\r\nDATA\r\nl1\r\n..l2\r\n.\r\r\n.x\r\n\r\n.\r\n"
			 "MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nBDAT 3\r\n\r\n.BDAT 0 LAST\r\n"
			 "MAIL FROM:<c@d>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nbad\nline\r\n.\r\nHELP\r\nQUIT\r\nNOOP\r\n";
	char *t = dialog_check(&cfg, &dialog_default, in, strlen(in));

	cr_assert(strstr(t, "TX_END@") != NULL);
	free(t);
}

/*
 * MAIL is reported once per accepted MAIL command, after its 250 is queued
 * and before anything later is parsed, so core can start SPF while RCPT and
 * DATA are still on the way; a refused MAIL reports nothing.
 */
Test(smtp_sess, mail_event_per_accepted_mail)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct span in = SPAN_LIT("EHLO c.test\r\nMAIL FROM:<bad\r\nMAIL FROM:<a@b.test>\r\nRSET\r\n"
				  "MAIL FROM:<>\r\nRCPT TO:<x@example.org>\r\n"),
		    body;
	struct bb out;
	size_t before;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_MAIL);
	cr_assert_str_eq(smtp_sess_env(s)->mail_from, "a@b.test");
	cr_assert_str_eq(smtp_sess_env(s)->helo, "c.test");
	cr_assert(bb_append(&out, "", 1) == 0);
	cr_assert(strstr((char *)out.p, "250 2.1.0") != NULL, "the 250 precedes the event");
	cr_assert(strncmp((const char *)in.p, "RSET", 4) == 0, "nothing after MAIL was parsed");
	out.len--;
	before = out.len;
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_MAIL);
	cr_assert_str_eq(smtp_sess_env(s)->mail_from, "");
	cr_assert(out.len > before);
	cr_assert_eq(smtp_sess_next(s, &in, &out, &body), SMTP_EV_NEED_INPUT);
	cr_assert_eq(smtp_sess_env(s)->num_rcpts, 1);
	smtp_sess_free(s);
	bb_fini(&out);
}

/* commit_why runs one transaction to TX_END and answers it with (rc, why); returns the replies after 354. */
static char *commit_why(enum smtp_commit rc, const char *why, size_t why_len)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	struct bb out;
	struct span in = SPAN_LIT(ENV_OK "DATA\r\nx\r\n.\r\n"), body;
	enum smtp_ev ev;
	char *t, *go;

	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	while ((ev = smtp_sess_next(s, &in, &out, &body)) != SMTP_EV_TX_END) {
		cr_assert_neq(ev, SMTP_EV_NEED_INPUT);
	}
	cr_assert_eq(smtp_sess_tx_done_why(s, rc, why, why_len, &out), 0);
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_CMD);
	cr_assert(bb_append(&out, "", 1) == 0);
	go = strstr((char *)out.p, "354 ");
	cr_assert_not_null(go);
	t = strdup(strstr(go, "\r\n") + 2);
	smtp_sess_free(s);
	bb_fini(&out);
	return t;
}

Test(smtp_sess, sink_outcomes_carry_the_consumers_words)
{
	char *t;

	t = commit_why(SMTP_COMMIT_SINK_REJECT, "no such user", 12);
	cr_assert_str_eq(t, "550 5.7.1 Rejected: no such user\r\n");
	free(t);
	t = commit_why(SMTP_COMMIT_SINK_TEMPFAIL, "busy\r\n250 2.0.0 Ok", 18);
	cr_assert_str_eq(t, "451 4.3.0 Not accepted now, try again later: busy\r\n", "one line only");
	free(t);
	t = commit_why(SMTP_COMMIT_SINK_REJECT, NULL, 0);
	cr_assert_str_eq(t, "550 5.7.1 Rejected: refused by the recipient's application\r\n");
	free(t);
	t = commit_why(SMTP_COMMIT_SINK_TEMPFAIL, " \r\n", 3);
	cr_assert_str_eq(t, "451 4.3.0 Not accepted now, try again later: temporary failure\r\n");
	free(t);
	/* Other outcomes ignore the reason. */
	t = commit_why(SMTP_COMMIT_TEMPFAIL, "secret", 6);
	cr_assert_null(strstr(t, "secret"), "%s", t);
	free(t);
}

Test(smtp_sess, sink_reason_is_bounded)
{
	char big[3000];
	char *t;

	memset(big, 'z', sizeof(big));
	t = commit_why(SMTP_COMMIT_SINK_REJECT, big, sizeof(big));
	cr_assert_lt(strlen(t), 512, "RFC 5321 4.5.3.1.5: a reply line is at most 512 octets");
	cr_assert_eq(strlen(t), strlen("550 5.7.1 Rejected: \r\n") + REPLY_DETAIL_MAX - 1);
	free(t);
}

/* ---- message rate (cfg.mail_ok) ---------------------------------------- */

static bool mail_ok_twice(void *owner)
{
	static int n; /* admits the 1st, 3rd, ... MAIL */

	(void)owner;
	return n++ % 2 == 0;
}

Test(smtp_sess, mail_refused_by_rate_answers_451)
{
	struct smtp_cfg cfg = cfg_std();
	struct smtp_sess *s;
	struct bb out;
	struct span in = SPAN_LIT("EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n"), body;

	cfg.mail_ok = mail_ok_twice;
	s = smtp_sess_new(&cfg, "192.0.2.1", 25);
	cr_assert_not_null(s);
	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	while (smtp_sess_next(s, &in, &out, &body) != SMTP_EV_NEED_INPUT) {
	}
	cr_assert(memmem(out.p, out.len, "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n"
					"451 4.7.1 Too much mail from your address, try again later\r\n",
			 strlen("250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n"
				"451 4.7.1 Too much mail from your address, try again later\r\n")) != NULL,
		  "replies: %.*s", (int)out.len, out.p);
	cr_assert_not(smtp_sess_in_tx(s), "the refused MAIL opened no transaction");
	bb_fini(&out);
	smtp_sess_free(s);
}

/* ---- STARTTLS (RFC 3207) ---------------------------------------------- */

#define EHLO_TLS_REPLY                                                                                 \
	"250-mx.test\r\n250-STARTTLS\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"           \
	"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n"

Test(smtp_sess, starttls_offered_only_when_configured)
{
	struct smtp_cfg cfg = cfg_std();

	check("EHLO c.test\r\nSTARTTLS\r\n", GREET EHLO_REPLY "502 5.5.1 Command not implemented\r\n", NULL);
	cfg.tls_offered = true;
	check_cfg(&cfg, "EHLO c.test\r\nSTARTTLS x\r\n", GREET EHLO_TLS_REPLY "501 5.5.4 Syntax error: no arguments allowed\r\n",
		  NULL);
}

/* CVE-2011-0411: what is pipelined behind STARTTLS in clear is never answered. */
Test(smtp_sess, starttls_drops_pipelined_plaintext)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.tls_offered = true;
	check_cfg(&cfg, "EHLO c.test\r\nSTARTTLS\r\nNOOP\r\nMAIL FROM:<a@b.test>\r\n",
		  GREET EHLO_TLS_REPLY "220 2.0.0 Ready to start TLS\r\n",
		  "STARTTLS@198\nEOF phase=tls in_tx=0 bad=0 msgs=0 rej=0\n");
}

Test(smtp_sess, starttls_refused_inside_a_transaction)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.tls_offered = true;
	check_cfg(&cfg, "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nSTARTTLS\r\nRSET\r\nSTARTTLS\r\n",
		  GREET EHLO_TLS_REPLY "250 2.1.0 Ok\r\n503 5.5.1 STARTTLS not allowed during a mail transaction\r\n"
				       "250 2.0.0 Ok\r\n220 2.0.0 Ready to start TLS\r\n",
		  NULL);
}

static bool tls_never(void *owner)
{
	(void)owner;
	return false;
}

/* --max-tls-rate: 454 (RFC 3207 §4), no STARTTLS event, and the session goes on in clear. */
Test(smtp_sess, starttls_refused_by_rate_answers_454)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.tls_offered = true;
	cfg.tls_ok = tls_never;
	check_cfg(&cfg, "EHLO c.test\r\nSTARTTLS\r\nMAIL FROM:<a@b.test>\r\n",
		  GREET EHLO_TLS_REPLY "454 4.7.0 TLS not available due to temporary reason: too many new TLS sessions "
				       "from your address\r\n250 2.1.0 Ok\r\n",
		  NULL);
}

Test(smtp_sess, tls_required_refuses_mail_in_clear)
{
	struct smtp_cfg cfg = cfg_std();

	cfg.tls_offered = true;
	cfg.tls_required = true;
	check_cfg(&cfg, "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nNOOP\r\n",
		  GREET EHLO_TLS_REPLY "530 5.7.0 Must issue a STARTTLS command first\r\n250 2.0.0 Ok\r\n", NULL);
}

/* feed runs the session over `in` until it needs input, expecting `want` as the only event. */
static enum smtp_ev feed(struct smtp_sess *s, const char *in, struct bb *out)
{
	struct span sp = span_make((const uint8_t *)in, strlen(in)), body;
	enum smtp_ev ev = smtp_sess_next(s, &sp, out, &body);

	return ev;
}

Test(smtp_sess, after_handshake_the_session_starts_again)
{
	struct smtp_cfg cfg = cfg_std();
	struct msg_tls tls = { .on = false, .version = "TLSv1.3", .cipher = "TLS_AES_128_GCM_SHA256", .sni = "mx.test" };
	struct smtp_sess *s;
	struct bb out;

	cfg.tls_offered = true;
	cfg.tls_required = true;
	s = smtp_sess_new(&cfg, "192.0.2.7", 40000);
	cr_assert_not_null(s);
	bb_init(&out, 0);
	cr_assert_eq(smtp_sess_greet(s, &out), 0);
	cr_assert_eq(smtp_sess_tls_done(s, &tls), -EINVAL, "not after STARTTLS");
	cr_assert_eq(feed(s, "EHLO c.test\r\nSTARTTLS\r\nNOOP\r\n", &out), SMTP_EV_STARTTLS);
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_TLS);
	cr_assert_eq(feed(s, "QUIT\r\n", &out), SMTP_EV_NEED_INPUT, "clear input is dropped until the handshake");
	cr_assert_eq(smtp_sess_tls_done(s, &tls), 0);
	cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_CMD);
	cr_assert(smtp_sess_env(s)->tls.on);
	cr_assert_str_eq(smtp_sess_env(s)->tls.cipher, "TLS_AES_128_GCM_SHA256");
	cr_assert_null(smtp_sess_env(s)->helo, "HELO forgotten (RFC 3207 §4.2)");
	bb_reset(&out, 0);
	/* No HELO any more: MAIL needs EHLO first; EHLO no longer offers STARTTLS; MAIL is allowed. */
	cr_assert_eq(feed(s, "MAIL FROM:<a@b.test>\r\nEHLO c2.test\r\nSTARTTLS\r\nMAIL FROM:<a@b.test>\r\n", &out),
		     SMTP_EV_MAIL);
	cr_assert_eq(feed(s, "", &out), SMTP_EV_NEED_INPUT);
	{
		const char *want = "503 5.5.1 Send EHLO or HELO first\r\n"
				   "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
				   "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 BINARYMIME\r\n"
				   "503 5.5.1 TLS already active\r\n250 2.1.0 Ok\r\n";

		cr_assert_eq(out.len, strlen(want), "%.*s", (int)out.len, (const char *)out.p);
		cr_assert(memcmp(out.p, want, out.len) == 0, "%.*s", (int)out.len, (const char *)out.p);
	}
	smtp_sess_free(s);
	bb_fini(&out);
}
