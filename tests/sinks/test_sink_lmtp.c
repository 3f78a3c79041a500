/*
 * test_sink_lmtp.c - the LMTP sink: its reply parser (whole, byte by byte,
 * at every two-way split), capability lookup, the per-recipient reduction,
 * spec parsing, and a whole transaction against a scripted server thread on
 * a unix socket (pipelined envelope, dot-stuffing, per-recipient replies).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/bb.h"
#include "sinks/sink_lmtp.h"
#include "tests/support/guard.h"

/* parse_all parses `in` fed in pieces of `step` bytes (0: whole); returns the replies. */
static size_t parse_all(const char *in, size_t len, size_t split, struct lmtp_reply *out, size_t max,
			enum lmtp_parse *out_last)
{
	struct lmtp_reply_parser p;
	size_t n = 0, pos = 0;
	enum lmtp_parse r = LMTP_PARSE_MORE;
	size_t bounds[2] = { split ? split : len, len };

	lmtp_reply_parser_init(&p);
	for (int piece = 0; piece < 2; piece++) {
		while (pos < bounds[piece]) {
			size_t used;

			r = lmtp_reply_parse(&p, &out[n < max ? n : max - 1], &used, (const uint8_t *)in + pos,
					     bounds[piece] - pos);
			cr_assert_leq(used, bounds[piece] - pos);
			pos += used;
			if (r == LMTP_PARSE_OK) {
				n++;
			} else if (r != LMTP_PARSE_MORE) {
				*out_last = r;
				return n;
			}
		}
	}
	*out_last = r;
	return n;
}

static size_t parse_bytewise(const char *in, size_t len, struct lmtp_reply *out, size_t max, enum lmtp_parse *last)
{
	struct lmtp_reply_parser p;
	size_t n = 0;

	lmtp_reply_parser_init(&p);
	*last = LMTP_PARSE_MORE;
	for (size_t i = 0; i < len; i++) {
		size_t used;
		enum lmtp_parse r = lmtp_reply_parse(&p, &out[n < max ? n : max - 1], &used, (const uint8_t *)in + i, 1);

		cr_assert_eq(used, 1);
		*last = r;
		if (r == LMTP_PARSE_OK) {
			n++;
		} else if (r != LMTP_PARSE_MORE) {
			return n;
		}
	}
	return n;
}

static void same_reply(const struct lmtp_reply *a, const struct lmtp_reply *b)
{
	cr_assert_eq(a->code, b->code);
	cr_assert_eq(a->enh_class, b->enh_class);
	cr_assert_eq(a->enh_subject, b->enh_subject);
	cr_assert_eq(a->enh_detail, b->enh_detail);
	cr_assert_eq(a->num_lines, b->num_lines);
	cr_assert_str_eq(a->text, b->text);
}

/* check_splits: whole, byte by byte and every two-way split give the same replies. */
static size_t check_splits(const char *in, struct lmtp_reply *out, size_t max, enum lmtp_parse *last)
{
	size_t len = strlen(in);
	const char *gin = (const char *)guard_copy(in, len);
	size_t n = parse_all(gin, len, 0, out, max, last);
	struct lmtp_reply other[8];
	enum lmtp_parse l2;

	cr_assert_leq(max, 8);
	cr_assert_eq(parse_bytewise(gin, len, other, max, &l2), n, "bytewise: different count");
	cr_assert_eq(l2, *last);
	for (size_t i = 0; i < n; i++) {
		same_reply(&out[i], &other[i]);
	}
	for (size_t s = 1; s < len; s++) {
		cr_assert_eq(parse_all(gin, len, s, other, max, &l2), n, "split at %zu: different count", s);
		cr_assert_eq(l2, *last);
		for (size_t i = 0; i < n; i++) {
			same_reply(&out[i], &other[i]);
		}
	}
	guard_release((const uint8_t *)gin, len);
	return n;
}

Test(lmtp_reply, single_line_with_enhanced_code)
{
	struct lmtp_reply r[4];
	enum lmtp_parse last;

	cr_assert_eq(check_splits("250 2.1.5 OK\r\n", r, 4, &last), 1);
	cr_assert_eq(r[0].code, 250);
	cr_assert_eq(r[0].enh_class, 2);
	cr_assert_eq(r[0].enh_subject, 1);
	cr_assert_eq(r[0].enh_detail, 5);
	cr_assert_str_eq(r[0].text, "OK");
	cr_assert_eq(lmtp_reply_rc(&r[0]), SINK_OK);
}

Test(lmtp_reply, multi_line_lhlo_and_keywords)
{
	struct lmtp_reply r[4];
	enum lmtp_parse last;

	cr_assert_eq(check_splits("250-vm\r\n250-8BITMIME\r\n250-SIZE 1000\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n",
				  r, 4, &last), 1);
	cr_assert_eq(r[0].num_lines, 5);
	cr_assert_eq(r[0].enh_class, 0);
	cr_assert_str_eq(r[0].text, "vm\n8BITMIME\nSIZE 1000\nENHANCEDSTATUSCODES\nPIPELINING");
	cr_assert(lmtp_reply_has_keyword(&r[0], "pipelining"));
	cr_assert(lmtp_reply_has_keyword(&r[0], "8BITMIME"));
	cr_assert(lmtp_reply_has_keyword(&r[0], "SIZE"));
	cr_assert_not(lmtp_reply_has_keyword(&r[0], "SMTPUTF8"));
	cr_assert_not(lmtp_reply_has_keyword(&r[0], "vm"), "the first line is not a keyword");
	cr_assert_not(lmtp_reply_has_keyword(&r[0], "8BIT"), "prefix of a keyword");
}

Test(lmtp_reply, pipelined_replies_one_at_a_time)
{
	struct lmtp_reply r[8];
	enum lmtp_parse last;

	cr_assert_eq(check_splits("250 2.1.0 OK\r\n550 5.1.1 <x@y> User doesn't exist\r\n"
				  "450-4.2.0 busy\r\n450-4.2.0 try\r\n450 4.2.0 later\r\n354 OK\r\n", r, 8, &last), 4);
	cr_assert_eq(last, LMTP_PARSE_OK);
	cr_assert_eq(r[1].code, 550);
	cr_assert_eq(lmtp_reply_rc(&r[1]), SINK_PERMFAIL);
	cr_assert_str_eq(r[1].text, "<x@y> User doesn't exist");
	cr_assert_eq(r[2].num_lines, 3);
	cr_assert_str_eq(r[2].text, "busy\ntry\nlater", "enhanced code repeated on continuation lines is dropped");
	cr_assert_eq(lmtp_reply_rc(&r[2]), SINK_TEMPFAIL);
	cr_assert_eq(r[3].code, 354);
	cr_assert_eq(r[3].enh_class, 0);
}

Test(lmtp_reply, bare_code_and_bare_lf)
{
	struct lmtp_reply r[4];
	enum lmtp_parse last;

	cr_assert_eq(check_splits("221\n250-a\n250 b\n", r, 4, &last), 2);
	cr_assert_eq(r[0].code, 221);
	cr_assert_str_eq(r[0].text, "");
	cr_assert_str_eq(r[1].text, "a\nb");
}

Test(lmtp_reply, enhanced_code_must_match_class)
{
	struct lmtp_reply r[4];
	enum lmtp_parse last;

	cr_assert_eq(check_splits("250 5.1.1 odd\r\n451 4.3.0x no\r\n550 5.1234.1 no\r\n", r, 4, &last), 3);
	cr_assert_eq(r[0].enh_class, 0);
	cr_assert_str_eq(r[0].text, "5.1.1 odd");
	cr_assert_eq(r[1].enh_class, 0);
	cr_assert_eq(r[2].enh_class, 0);
}

Test(lmtp_reply, control_octets_are_replaced)
{
	struct lmtp_reply r[2];
	enum lmtp_parse last;

	cr_assert_eq(check_splits("550 bad\x01\x7f\xc3\xa9 text\r\n", r, 2, &last), 1);
	cr_assert_str_eq(r[0].text, "bad???? text");
}

Test(lmtp_reply, syntax_errors)
{
	static const char *const bad[] = {
		"hello\r\n", "25\r\n", "650 x\r\n", "160 x\r\n", "2x0 x\r\n", "250_x\r\n", "250-a\r\n251 b\r\n", "\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lmtp_reply r[2];
		enum lmtp_parse last;

		cr_assert_eq(check_splits(bad[i], r, 2, &last), 0, "%s", bad[i]);
		cr_assert_eq(last, LMTP_PARSE_SYNTAX, "%s: %s", bad[i], lmtp_parse_name(last));
	}
}

Test(lmtp_reply, limits)
{
	char *in = malloc(LMTP_REPLY_LINE_MAX * 2);
	struct lmtp_reply r[2];
	enum lmtp_parse last;
	struct bb b;

	memset(in, 'a', LMTP_REPLY_LINE_MAX * 2);
	memcpy(in, "250 ", 4);
	cr_assert_eq(parse_all(in, LMTP_REPLY_LINE_MAX * 2, 0, r, 2, &last), 0);
	cr_assert_eq(last, LMTP_PARSE_TOO_LONG);
	/* A line of exactly the limit (with CRLF) is fine. */
	memcpy(in + LMTP_REPLY_LINE_MAX - 2, "\r\n", 2);
	cr_assert_eq(parse_all(in, LMTP_REPLY_LINE_MAX, 0, r, 2, &last), 1);
	cr_assert(r[0].truncated);
	cr_assert_eq(r[0].text_len, LMTP_REPLY_TEXT_MAX);
	free(in);

	bb_init(&b, 0);
	for (int i = 0; i < LMTP_REPLY_LINES_MAX + 1; i++) {
		cr_assert_eq(bb_append_str(&b, "250-x\r\n"), 0);
	}
	cr_assert_eq(bb_append_str(&b, "250 x\r\n"), 0);
	cr_assert_eq(parse_all((const char *)b.p, b.len, 0, r, 2, &last), 0);
	cr_assert_eq(last, LMTP_PARSE_TOO_LONG);
	bb_fini(&b);
}

Test(lmtp_reply, error_is_sticky)
{
	struct lmtp_reply_parser p;
	struct lmtp_reply r;
	size_t used;

	lmtp_reply_parser_init(&p);
	cr_assert_eq(lmtp_reply_parse(&p, &r, &used, (const uint8_t *)"xyz\r\n", 5), LMTP_PARSE_SYNTAX);
	cr_assert_eq(lmtp_reply_parse(&p, &r, &used, (const uint8_t *)"250 ok\r\n", 8), LMTP_PARSE_SYNTAX);
	cr_assert_eq(used, 0);
}

Test(lmtp_rc, reduce_per_recipient)
{
	enum sink_rc ok[] = { SINK_OK, SINK_OK };
	enum sink_rc mixed[] = { SINK_OK, SINK_PERMFAIL, SINK_TEMPFAIL };
	enum sink_rc perm[] = { SINK_OK, SINK_PERMFAIL };

	cr_assert_eq(lmtp_rc_reduce(ok, 2), SINK_OK);
	cr_assert_eq(lmtp_rc_reduce(mixed, 3), SINK_TEMPFAIL);
	cr_assert_eq(lmtp_rc_reduce(perm, 2), SINK_PERMFAIL);
}

Test(lmtp_conf, specs)
{
	static const char *const good[] = { "lmtp:unix:/run/dovecot/lmtp", "lmtp:127.0.0.1:24", "lmtp:[::1]:24?timeout=5",
					    "lmtp:localhost:2424?timeout=1" };
	static const char *const bad[] = { "lmtp:", "lmtp:unix:", "lmtp:host", "lmtp:host:", "lmtp:host:99999",
					   "lmtp:host:24?timeout=0", "lmtp:host:24?timeout=x", "lmtp:host:24?window=3", "lmtp:host:24?timeout",
					   "lmtp::24" };
	struct sink_ctx ctx = { .hostname = "mx.test" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct sink s;
		char *err = NULL;

		cr_assert_eq(sink_configure(&s, &ctx, good[i], &err), 0, "%s: %s", good[i], err ? err : "");
		sink_unconfigure(&s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sink s;
		char *err = NULL;

		cr_assert_neq(sink_configure(&s, &ctx, bad[i], &err), 0, "%s accepted", bad[i]);
		cr_assert_not_null(err);
		free(err);
	}
}

/* ---------------------------------------------------------------- scripted server */

struct fake {
	char path[108];
	int lfd;
	pthread_t th;
	const char *data_replies;  /* sent after the final dot */
	char got[8192];            /* everything the client sent */
	size_t got_len;
};

static bool got_has(const struct fake *f, const char *s)
{
	return memmem(f->got, f->got_len, s, strlen(s)) != NULL;
}

/* fake_main: one connection; PIPELINING offered; answers every command block as a pipelining server. */
static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	size_t scanned = 0, accepted = 0;
	bool in_data = false;

	if (fd < 0) {
		return NULL;
	}
	dprintf(fd, "220 fake ready\r\n");
	for (;;) {
		ssize_t n = read(fd, f->got + f->got_len, sizeof(f->got) - 1 - f->got_len);

		if (n <= 0) {
			break;
		}
		f->got_len += (size_t)n;
		f->got[f->got_len] = '\0';
		for (;;) {
			char *line = f->got + scanned, *lf = strstr(line, "\r\n");

			if (lf == NULL) {
				break;
			}
			scanned = (size_t)(lf + 2 - f->got);
			if (in_data) {
				if (lf == line + 1 && line[0] == '.') {
					in_data = false;
					dprintf(fd, "%s", f->data_replies);
				}
			} else if (strncmp(line, "LHLO", 4) == 0) {
				dprintf(fd, "250-fake\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n");
			} else if (strncmp(line, "MAIL", 4) == 0) {
				accepted = 0;
				dprintf(fd, "250 2.1.0 OK\r\n");
			} else if (strncmp(line, "RCPT TO:<later", 14) == 0) {
				dprintf(fd, "450 4.2.1 busy retry_after=86400s\r\n");
			} else if (strncmp(line, "RCPT TO:<nobody", 15) == 0) {
				dprintf(fd, "550 5.1.1 no such user\r\n");
			} else if (strncmp(line, "RCPT", 4) == 0) {
				accepted++;
				dprintf(fd, "250 2.1.5 OK\r\n");
			} else if (strncmp(line, "DATA", 4) == 0 && accepted == 0) {
				dprintf(fd, "554 5.5.1 No valid recipients\r\n");
			} else if (strncmp(line, "DATA", 4) == 0) {
				dprintf(fd, "354 go\r\n");
				in_data = true;
			} else if (strncmp(line, "QUIT", 4) == 0) {
				dprintf(fd, "221 bye\r\n");
			} else {
				dprintf(fd, "250 OK\r\n");
			}
		}
	}
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, const char *data_replies)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	signal(SIGPIPE, SIG_IGN); /* the client may hang up before our last reply */
	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/omx-lmtp-test.%d.sock", (int)getpid());
	unlink(f->path);
	f->data_replies = data_replies;
	f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sun.sun_path, f->path);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	cr_assert_eq(listen(f->lfd, 1), 0);
	cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
	unlink(f->path);
}

struct result {
	enum sink_rc rc;
	char why[512];
};

static void on_done(void *arg, enum sink_rc rc, const char *why)
{
	struct result *r = arg;

	r->rc = rc;
	snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
}

static struct result deliver_opts(struct fake *f, const char *opts, char **rcpts, size_t num_rcpts,
				  const char *const *chunks)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	struct sink s;
	struct msg_env env;
	struct sink_tx *tx;
	struct result res = { SINK_RC_COUNT, "" };
	char spec[160], *err = NULL;
	void *state;

	snprintf(spec, sizeof(spec), "lmtp:unix:%s?%s", f->path, opts);
	cr_assert_eq(sink_configure(&s, &ctx, spec, &err), 0, "%s", err ? err : "");
	cr_assert_eq(s.ops->worker_init(s.conf, &state), 0);
	memset(&env, 0, sizeof(env));
	strcpy(env.id, "ABCDEF0123456");
	env.mail_from = "s@z.test";
	env.rcpts = rcpts;
	env.num_rcpts = num_rcpts;
	env.body = MSG_BODY_8BITMIME;
	cr_assert_eq(s.ops->tx_begin(state, &tx, &env), 0);
	for (size_t i = 0; chunks[i] != NULL; i++) {
		cr_assert_eq(s.ops->tx_write(tx, span_cstr(chunks[i])), 0);
	}
	s.ops->tx_commit(tx, on_done, &res);
	s.ops->flush(state);
	s.ops->worker_fini(state);
	sink_unconfigure(&s);
	return res;
}

static struct result deliver(struct fake *f, char **rcpts, size_t num_rcpts, const char *const *chunks)
{
	return deliver_opts(f, "timeout=5", rcpts, num_rcpts, chunks);
}

Test(lmtp_tx, pipelined_dot_stuffed_all_ok)
{
	struct fake f;
	char *rcpts[] = { "a@x.test", "b@x.test" };
	/* A dot at a line start split across writes, one at the very start, no final CRLF. */
	const char *chunks[] = { ".starts\r\nSubject: x\r\n\r\nline\r\n", ".", "dot\r\n..two\r\nend", NULL };
	struct result r;

	fake_start(&f, "250 2.0.0 <a@x.test> Saved\r\n250 2.0.0 <b@x.test> Saved\r\n");
	r = deliver(&f, rcpts, 2, chunks);
	fake_stop(&f);
	cr_assert_eq(r.rc, SINK_OK, "%s", r.why);
	cr_assert(got_has(&f, "LHLO mx.test\r\nMAIL FROM:<s@z.test> BODY=8BITMIME\r\nRCPT TO:<a@x.test>\r\n"
			  "RCPT TO:<b@x.test>\r\nDATA\r\n"), "%s", f.got);
	cr_assert(got_has(&f, "DATA\r\n..starts\r\nSubject: x\r\n\r\nline\r\n..dot\r\n...two\r\nend\r\n.\r\n"), "%s",
		  f.got);
}

Test(lmtp_tx, one_temporary_failure_retries_the_message)
{
	struct fake f;
	char *rcpts[] = { "a@x.test", "nobody@x.test", "b@x.test" };
	const char *chunks[] = { "Subject: x\r\n\r\nhi\r\n", NULL };
	struct result r;

	fake_start(&f, "250 2.0.0 ok\r\n452 4.2.2 Mailbox full\r\n");
	r = deliver(&f, rcpts, 3, chunks);
	fake_stop(&f);
	cr_assert_eq(r.rc, SINK_TEMPFAIL, "%s", r.why);
	cr_assert(strstr(r.why, "2 of 3 recipients failed; <b@x.test> data 452 4.2.2 Mailbox full") != NULL, "%s",
		  r.why);
}

Test(lmtp_tx, only_permanent_failures_fail_the_message)
{
	struct fake f;
	char *rcpts[] = { "a@x.test", "nobody@x.test" };
	const char *chunks[] = { "Subject: x\r\n\r\nhi\r\n", NULL };
	struct result r;

	fake_start(&f, "250 2.0.0 ok\r\n");
	r = deliver(&f, rcpts, 2, chunks);
	fake_stop(&f);
	cr_assert_eq(r.rc, SINK_PERMFAIL, "%s", r.why);
	cr_assert(strstr(r.why, "<nobody@x.test> RCPT 550 5.1.1 no such user") != NULL, "%s", r.why);
}

Test(lmtp_tx, every_recipient_refused_then_rset)
{
	struct fake f;
	char *rcpts[] = { "nobody@x.test" };
	const char *chunks[] = { "Subject: x\r\n\r\nhi\r\n", NULL };
	struct result r;

	fake_start(&f, "");
	r = deliver(&f, rcpts, 1, chunks);
	fake_stop(&f);
	cr_assert_eq(r.rc, SINK_PERMFAIL, "%s", r.why);
	cr_assert(got_has(&f, "RSET\r\n"), "%s", f.got);
	cr_assert_not(got_has(&f, "hi\r\n"), "no body after a refused DATA");
}

Test(lmtp_tx, server_down_is_temporary)
{
	struct fake f;
	char *rcpts[] = { "a@x.test" };
	const char *chunks[] = { "x\r\n", NULL };
	struct result r;

	memset(&f, 0, sizeof(f));
	snprintf(f.path, sizeof(f.path), "/tmp/omx-lmtp-absent.%d.sock", (int)getpid());
	r = deliver(&f, rcpts, 1, chunks);
	cr_assert_eq(r.rc, SINK_TEMPFAIL);
	cr_assert(strstr(r.why, "connect: No such file or directory") != NULL, "%s", r.why);
}

Test(lmtp_tx, silent_server_times_out_as_temporary)
{
	struct fake f;
	char *rcpts[] = { "a@x.test" };
	const char *chunks[] = { "Subject: x\r\n\r\nhi\r\n", NULL };
	struct result r;

	fake_start(&f, ""); /* no reply after the final dot */
	r = deliver_opts(&f, "timeout=1", rcpts, 1, chunks);
	fake_stop(&f);
	cr_assert_eq(r.rc, SINK_TEMPFAIL, "%s", r.why);
	cr_assert(strstr(r.why, "after data: timeout waiting for the server") != NULL, "%s", r.why);
}

Test(lmtp_tx, overlapping_transactions_fail_instead_of_mixing)
{
	struct fake f;
	struct sink_ctx ctx = { .hostname = "mx.test" };
	struct sink s;
	struct msg_env env;
	struct sink_tx *a, *b;
	struct result ra = { SINK_RC_COUNT, "" }, rb = { SINK_RC_COUNT, "" };
	char spec[160], *err = NULL, *rcpts[] = { "a@x.test" };
	void *state;

	fake_start(&f, "250 2.0.0 ok\r\n");
	snprintf(spec, sizeof(spec), "lmtp:unix:%s?timeout=5", f.path);
	cr_assert_eq(sink_configure(&s, &ctx, spec, &err), 0, "%s", err ? err : "");
	cr_assert_eq(s.ops->worker_init(s.conf, &state), 0);
	memset(&env, 0, sizeof(env));
	strcpy(env.id, "ABC");
	env.mail_from = "s@z.test";
	env.rcpts = rcpts;
	env.num_rcpts = 1;
	cr_assert_eq(s.ops->tx_begin(state, &a, &env), 0);
	cr_assert_eq(s.ops->tx_begin(state, &b, &env), 0);
	cr_assert_eq(s.ops->tx_write(a, span_cstr("x\r\n")), 0);
	cr_assert_eq(s.ops->tx_write(b, span_cstr("y\r\n")), 0);
	s.ops->tx_commit(b, on_done, &rb);
	s.ops->tx_commit(a, on_done, &ra);
	s.ops->worker_fini(state);
	sink_unconfigure(&s);
	fake_stop(&f);
	cr_assert_eq(ra.rc, SINK_OK, "%s", ra.why);
	cr_assert_eq(rb.rc, SINK_TEMPFAIL);
	cr_assert(strstr(rb.why, "overlapping") != NULL, "%s", rb.why);
	cr_assert_not(got_has(&f, "y\r\n"), "the second tx wrote into the first");
}

Test(lmtp_tx, server_text_cannot_set_the_retry_delay)
{
	struct fake f;
	char *rcpts[] = { "later@x.test" };
	const char *chunks[] = { "x\r\n", NULL };
	struct result r;

	fake_start(&f, "");
	r = deliver(&f, rcpts, 1, chunks);
	fake_stop(&f);
	cr_assert_eq(r.rc, SINK_TEMPFAIL, "%s", r.why);
	cr_assert(strstr(r.why, "busy retry_after:86400s") != NULL, "%s", r.why);
	cr_assert(strstr(r.why, SINK_WHY_RETRY_AFTER) == NULL, "%s", r.why);
}

/* A retry goes only to the recipients that failed temporarily; refused ones stay refused. */
Test(lmtp_tx, retry_goes_only_to_the_pending_recipients)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	struct fake f;
	char *rcpts[] = { "a@x.test", "nobody@x.test", "b@x.test" };
	const char *body = "Subject: x\r\n\r\nhi\r\n";
	struct result r1 = { SINK_RC_COUNT, "" }, r2 = { SINK_RC_COUNT, "" };
	struct sink s;
	struct msg_env env;
	struct sink_tx *tx;
	char spec[160], *err = NULL, *second;
	void *state;

	/* Every final dot gets these replies: a 250 for the first accepted
	 * recipient, a 452 for the second (if any). */
	fake_start(&f, "250 2.0.0 ok\r\n452 4.2.2 Mailbox full\r\n");
	snprintf(spec, sizeof(spec), "lmtp:unix:%s?timeout=5", f.path);
	cr_assert_eq(sink_configure(&s, &ctx, spec, &err), 0, "%s", err ? err : "");
	cr_assert_eq(s.ops->worker_init(s.conf, &state), 0);
	memset(&env, 0, sizeof(env));
	strcpy(env.id, "RETRY0123456");
	env.mail_from = "s@z.test";
	env.rcpts = rcpts;
	env.num_rcpts = 3;
	cr_assert_eq(s.ops->tx_begin(state, &tx, &env), 0);
	cr_assert_eq(s.ops->tx_write(tx, span_cstr(body)), 0);
	s.ops->tx_commit(tx, on_done, &r1);
	cr_assert_eq(r1.rc, SINK_TEMPFAIL, "%s", r1.why);
	/* The retry, on the same worker and connection: only b@x.test is asked. */
	cr_assert_eq(s.ops->tx_begin(state, &tx, &env), 0);
	cr_assert_eq(s.ops->tx_write(tx, span_cstr(body)), 0);
	s.ops->tx_commit(tx, on_done, &r2);
	s.ops->worker_fini(state);
	sink_unconfigure(&s);
	fake_stop(&f);
	second = memmem(f.got + 1, f.got_len - 1, "MAIL FROM:", 10);
	cr_assert_not_null(second, "%s", f.got);
	second = memmem(second + 1, f.got_len - (size_t)(second + 1 - f.got), "MAIL FROM:", 10);
	cr_assert_not_null(second, "no second transaction: %s", f.got);
	cr_assert(strncmp(second, "MAIL FROM:<s@z.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n", 48) == 0,
		  "the retry's envelope: %.80s", second);
	/* a@x.test has it, b@x.test now too, nobody@x.test was refused for good: a dead letter naming it */
	cr_assert_eq(r2.rc, SINK_PERMFAIL, "%s", r2.why);
	cr_assert(strstr(r2.why, "<nobody@x.test> refused at an earlier attempt: RCPT 550 5.1.1") != NULL, "%s", r2.why);
}
