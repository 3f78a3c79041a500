/*
 * test_sink_stream.c - the stream sink: the answer parser (table, every
 * split, limits), its options (strict, with defaults), and a flush against
 * a consumer thread on a unix socket that answers out of order (frames
 * byte-exact; OK, RETRY, REJECT, garbage, a lost connection, no consumer).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sinks/sink.h"
#include "sinks/sink_stream.h"

/* ------------------------------------------------------------ the parser */

struct parse_case {
	const char *in;
	enum stream_parse want;
	enum stream_answer kind;
	const char *id, *text;
	size_t consumed;
};

static const struct parse_case cases[] = {
	{ "OK 19C2A7F0E3D1A4B2000001\n", STREAM_PARSE_OK, STREAM_ANS_OK, "19C2A7F0E3D1A4B2000001", "", 26 },
	{ "OK a\r\n", STREAM_PARSE_OK, STREAM_ANS_OK, "a", "", 6 },
	{ "OK a stored in 3 ms\n", STREAM_PARSE_OK, STREAM_ANS_OK, "a", "stored in 3 ms", 20 },
	{ "RETRY a disk full\n", STREAM_PARSE_OK, STREAM_ANS_RETRY, "a", "disk full", 18 },
	{ "RETRY a\n", STREAM_PARSE_OK, STREAM_ANS_RETRY, "a", "", 8 },
	{ "REJECT x-1 no such user \xc3\xa9\tx\n", STREAM_PARSE_OK, STREAM_ANS_REJECT, "x-1", "no such user \xc3\xa9\tx", 29 },
	{ "REJECT a \n", STREAM_PARSE_OK, STREAM_ANS_REJECT, "a", "", 10 },
	{ "OK a\nOK b\n", STREAM_PARSE_OK, STREAM_ANS_OK, "a", "", 5 },
	{ "", STREAM_PARSE_MORE, 0, NULL, NULL, 0 },
	{ "OK a", STREAM_PARSE_MORE, 0, NULL, NULL, 0 },
	{ "\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 1 },
	{ "OK\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 3 },
	{ "OK \n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 4 },
	{ "ok a\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 5 },
	{ "OK  a\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 6 },
	{ "OK\ta\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 5 },
	{ "OKAY a\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 7 },
	{ "ACK a\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 6 },
	{ "OK a\tb\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 7 },
	{ "RETRY a bad\rtext\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 17 },
	{ "RETRY a nul\x01\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 13 },
	{ "OK 01234567890123456789012345678901\n", STREAM_PARSE_SYNTAX, 0, NULL, NULL, 36 }, /* 31 is the most */
	{ "OK 012345678901234567890123456789X\n", STREAM_PARSE_OK, STREAM_ANS_OK, "012345678901234567890123456789X", "", 35 },
};

Test(stream_reply, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_case *c = &cases[i];
		struct stream_reply r;
		size_t used = 99;
		enum stream_parse got = stream_reply_parse(&r, &used, span_cstr(c->in));

		cr_assert_eq(got, c->want, "case %zu %s: got %d want %d", i, c->in, got, c->want);
		cr_assert_eq(used, c->consumed, "case %zu: consumed %zu want %zu", i, used, c->consumed);
		if (got != STREAM_PARSE_OK) {
			continue;
		}
		cr_assert_eq(r.kind, c->kind, "case %zu", i);
		cr_assert(span_eq(r.id, span_cstr(c->id)), "case %zu: id %.*s", i, (int)r.id.len, r.id.p);
		cr_assert(span_eq(r.text, span_cstr(c->text)), "case %zu: text [%.*s]", i, (int)r.text.len, r.text.p);
	}
}

Test(stream_reply, every_prefix_is_more_until_the_newline)
{
	const char *line = "REJECT 19C2A7F0E3D1A4B2000001 user unknown\r\n";
	size_t len = strlen(line);

	for (size_t n = 0; n < len; n++) {
		struct stream_reply r;
		size_t used;

		cr_assert_eq(stream_reply_parse(&r, &used, span_make(line, n)), STREAM_PARSE_MORE, "prefix %zu", n);
		cr_assert_eq(used, 0);
	}
}

Test(stream_reply, line_limit)
{
	static char buf[STREAM_REPLY_MAX + 8];
	struct stream_reply r;
	size_t used;

	/* Exactly STREAM_REPLY_MAX bytes with the "\n": parsed. */
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "RETRY a ", 8);
	buf[STREAM_REPLY_MAX - 1] = '\n';
	cr_assert_eq(stream_reply_parse(&r, &used, span_make(buf, STREAM_REPLY_MAX)), STREAM_PARSE_OK);
	cr_assert_eq(used, STREAM_REPLY_MAX);
	cr_assert_eq(r.text.len, STREAM_REPLY_MAX - 9);
	/* One byte more: too long, whatever follows. */
	buf[STREAM_REPLY_MAX - 1] = 'x';
	buf[STREAM_REPLY_MAX] = '\n';
	cr_assert_eq(stream_reply_parse(&r, &used, span_make(buf, STREAM_REPLY_MAX + 1)), STREAM_PARSE_TOO_LONG);
	cr_assert_eq(stream_reply_parse(&r, &used, span_make(buf, STREAM_REPLY_MAX)), STREAM_PARSE_TOO_LONG);
	cr_assert_eq(stream_reply_parse(&r, &used, span_make(buf, STREAM_REPLY_MAX - 1)), STREAM_PARSE_MORE);
}

/* ------------------------------------------------------------ options */

static char *configure(const char *spec, struct sink *out)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	char *err = NULL;

	if (sink_configure(out, &ctx, spec, &err) != 0) {
		cr_assert_not_null(err, "%s: no error text", spec);
		return err;
	}
	sink_unconfigure(out);
	return NULL;
}

Test(stream_options, accepted)
{
	static const char *ok[] = {
		"unix:/run/consumer.sock",
		"unix:/tmp/c.sock?window=1&connections=4&timeout=5&json=no&inline_max=0",
		"unix:/tmp/c.sock?window=100000&json=yes",
		"tcp:127.0.0.1:9000",
		"tcp:localhost:9000?window=1000",
		"tcp:[::1]:9000?connections=64",
	};
	struct sink s;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *err = configure(ok[i], &s);

		cr_assert_null(err, "%s: %s", ok[i], err);
	}
}

Test(stream_options, rejected_with_a_clear_message)
{
	static const struct {
		const char *spec, *says;
	} bad[] = {
		{ "unix:", "socket path" },
		{ "unix:/tmp/c.sock?windw=4", "unknown option \"windw\"" },
		{ "unix:/tmp/c.sock?window", "has no value" },
		{ "unix:/tmp/c.sock?window=0", "window: \"0\" is not a number in 1..100000" },
		{ "unix:/tmp/c.sock?window=100001", "window" },
		{ "unix:/tmp/c.sock?window=4x", "window" },
		{ "unix:/tmp/c.sock?connections=65", "connections" },
		{ "unix:/tmp/c.sock?timeout=0", "timeout" },
		{ "unix:/tmp/c.sock?json=maybe", "json: \"maybe\" is not yes or no" },
		{ "unix:/tmp/c.sock?inline_max=-1", "inline_max" },
		{ "unix:/tmp/c.sock?sync=maybe", "sync: yes or no" }, /* sync= is the registry's (every sink's) */
		{ "tcp:127.0.0.1", "HOST:PORT" },
		{ "tcp::9000", "HOST:PORT" },
		{ "tcp:127.0.0.1:0", "port in 1..65535" },
		{ "tcp:127.0.0.1:65536", "port" },
		{ "tcp:[::1]9000", "HOST:PORT" },
	};
	struct sink s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *err = configure(bad[i].spec, &s);

		cr_assert_not_null(err, "%s was accepted", bad[i].spec);
		cr_assert_not_null(strstr(err, bad[i].says), "%s: \"%s\" does not say \"%s\"", bad[i].spec, err,
				   bad[i].says);
		free(err);
	}
}

/* ------------------------------------------------------------ flush against a consumer */

#define N_MSG 6

struct consumer {
	int lfd;
	char path[108];
	const char *mode; /* "mixed", "each", "garbage", "close", "none" */
	char frames[N_MSG][2048];
	size_t frame_len[N_MSG];
	int num_frames;
};

/* read_frame reads one "MSG id jl rl\n" + jl + rl + "\n" frame; its bytes into out. */
static ssize_t read_frame(FILE *f, char *out, size_t cap, char *id, size_t id_cap)
{
	char line[256];
	size_t jl, rl, n;

	if (fgets(line, sizeof(line), f) == NULL) {
		return -1;
	}
	cr_assert_eq(sscanf(line, "MSG %31s %zu %zu", id, &jl, &rl), 3, "bad header line %s", line);
	(void)id_cap;
	n = strlen(line);
	cr_assert_lt(n + jl + rl + 1, cap);
	memcpy(out, line, n);
	cr_assert_eq(fread(out + n, 1, jl + rl + 1, f), jl + rl + 1);
	cr_assert_eq(out[n + jl + rl], '\n');
	return (ssize_t)(n + jl + rl + 1);
}

static void *consumer_main(void *arg)
{
	struct consumer *c = arg;
	int fd = accept(c->lfd, NULL, NULL);
	FILE *f = fdopen(dup(fd), "r");
	char ids[N_MSG][32];
	int n = 0;

	cr_assert_geq(fd, 0);
	for (; n < N_MSG; n++) {
		ssize_t len = read_frame(f, c->frames[n], sizeof(c->frames[n]), ids[n], sizeof(ids[n]));

		if (len < 0) {
			break;
		}
		c->frame_len[n] = (size_t)len;
		if (strcmp(c->mode, "each") == 0) {
			char a[64];
			int alen = snprintf(a, sizeof(a), "OK %s\n", ids[n]);

			cr_assert_eq(write(fd, a, (size_t)alen), alen);
		}
		if (strcmp(c->mode, "close") == 0 && n == 2) {
			n++;
			break; /* three read, none answered: the connection drops */
		}
	}
	c->num_frames = n;
	if (strcmp(c->mode, "mixed") == 0) {
		/* Out of order: last first. m0 OK, m1 RETRY, m2 REJECT, the rest OK. */
		for (int i = n - 1; i >= 0; i--) {
			char a[128];
			int len = i == 1 ? snprintf(a, sizeof(a), "RETRY %s busy\n", ids[i])
				: i == 2 ? snprintf(a, sizeof(a), "REJECT %s no \"such\" user\r\n", ids[i])
				: snprintf(a, sizeof(a), "OK %s\n", ids[i]);

			cr_assert_eq(write(fd, a, (size_t)len), len);
		}
		char rest;
		cr_assert_eq(read(fd, &rest, 1), 0); /* the sink keeps the connection; closed at worker_fini */
	} else if (strcmp(c->mode, "garbage") == 0) {
		char a[64];
		int len = snprintf(a, sizeof(a), "OK %s\nHELLO\n", ids[0]);

		cr_assert_eq(write(fd, a, (size_t)len), len);
	}
	fclose(f);
	close(fd);
	return NULL;
}

static char *rcpts[] = { "a@x.test" };

struct result {
	enum sink_rc rc;
	char why[256];
	int calls;
};

static void on_done(void *arg, enum sink_rc rc, const char *why)
{
	struct result *r = arg;

	r->rc = rc;
	r->calls++;
	snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
}

/* run_batch configures spec (with %s for the socket path) and delivers N_MSG messages in one batch. */
static void run_batch(struct consumer *c, const char *opts, bool listen_too, struct result *res, struct msg_env *envs)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sink sk;
	pthread_t th;
	void *state;
	char spec[256], *err = NULL;

	snprintf(c->path, sizeof(c->path), "/tmp/omx-stream-test-%d.sock", (int)getpid());
	unlink(c->path);
	if (listen_too) {
		c->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		strcpy(sun.sun_path, c->path);
		cr_assert_eq(bind(c->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		cr_assert_eq(listen(c->lfd, 4), 0);
		cr_assert_eq(pthread_create(&th, NULL, consumer_main, c), 0);
	}
	snprintf(spec, sizeof(spec), "unix:%s%s", c->path, opts);
	cr_assert_eq(sink_configure(&sk, &ctx, spec, &err), 0, "%s", err ? err : "");
	cr_assert_eq(sk.ops->worker_init(sk.conf, &state), 0);
	for (int i = 0; i < N_MSG; i++) {
		struct sink_tx *tx;
		char body[128];

		memset(&envs[i], 0, sizeof(envs[i]));
		snprintf(envs[i].id, sizeof(envs[i].id), "ID%04d", i);
		envs[i].mail_from = "s@z.test";
		envs[i].rcpts = rcpts;
		envs[i].num_rcpts = 1;
		snprintf(body, sizeof(body), "Subject: m%d\r\n\r\nbody %d\r\n", i, i);
		cr_assert_eq(sk.ops->tx_begin(state, &tx, &envs[i]), 0);
		cr_assert_eq(sk.ops->tx_write(tx, span_make(body, 11)), 0);
		cr_assert_eq(sk.ops->tx_write(tx, span_cstr(body + 11)), 0);
		sk.ops->tx_commit(tx, on_done, &res[i]);
	}
	sk.ops->flush(state);
	sk.ops->worker_fini(state);
	sink_unconfigure(&sk);
	if (listen_too) {
		pthread_join(th, NULL);
		close(c->lfd);
	}
	unlink(c->path);
}

Test(stream_flush, frames_and_answers_in_any_order)
{
	static struct consumer c = { .mode = "mixed" };
	struct result res[N_MSG] = { 0 };
	struct msg_env envs[N_MSG];

	run_batch(&c, "?window=64", true, res, envs);
	cr_assert_eq(c.num_frames, N_MSG);
	for (int i = 0; i < N_MSG; i++) {
		char want[256], body[64];
		const char *doc = strchr(c.frames[i], '\n') + 1;

		cr_assert_eq(res[i].calls, 1, "m%d: done called %d times", i, res[i].calls);
		snprintf(body, sizeof(body), "Subject: m%d\r\n\r\nbody %d\r\n\n", i, i);
		cr_assert(c.frame_len[i] > strlen(body) &&
			  memcmp(c.frames[i] + c.frame_len[i] - strlen(body), body, strlen(body)) == 0,
			  "m%d: raw bytes differ", i);
		snprintf(want, sizeof(want), "MSG ID%04d ", i);
		cr_assert(strncmp(c.frames[i], want, strlen(want)) == 0, "m%d: header %.40s", i, c.frames[i]);
		cr_assert(strncmp(doc, "{\"schema\":\"oceanmx.message\"", 27) == 0, "m%d: document %.60s", i, doc);
		cr_assert_not_null(strstr(doc, "\"ID000"), "m%d: no envelope id", i);
	}
	cr_assert_eq(res[0].rc, SINK_OK);
	cr_assert_eq(res[1].rc, SINK_TEMPFAIL);
	cr_assert_not_null(strstr(res[1].why, "RETRY busy"), "%s", res[1].why);
	cr_assert_eq(res[2].rc, SINK_PERMFAIL);
	cr_assert_not_null(strstr(res[2].why, "REJECT no \\x22such\\x22 user"), "%s", res[2].why);
	for (int i = 3; i < N_MSG; i++) {
		cr_assert_eq(res[i].rc, SINK_OK, "m%d", i);
	}
}

Test(stream_flush, json_no_sends_raw_only_and_window_one)
{
	static struct consumer c = { .mode = "each" };
	struct result res[N_MSG] = { 0 };
	struct msg_env envs[N_MSG];

	run_batch(&c, "?window=1&json=no", true, res, envs);
	cr_assert_eq(c.num_frames, N_MSG);
	for (int i = 0; i < N_MSG; i++) {
		char want[128];
		int n = snprintf(want, sizeof(want), "MSG ID%04d 0 23\nSubject: m%d\r\n\r\nbody %d\r\n\n", i, i, i);

		cr_assert_eq(res[i].rc, SINK_OK, "m%d", i);
		cr_assert_eq(c.frame_len[i], (size_t)n);
		cr_assert(memcmp(c.frames[i], want, (size_t)n) == 0, "m%d: %.*s", i, n, c.frames[i]);
	}
}

Test(stream_flush, connection_lost_is_tempfail_for_the_unanswered, .timeout = 20)
{
	static struct consumer c = { .mode = "close" };
	struct result res[N_MSG] = { 0 };
	struct msg_env envs[N_MSG];

	run_batch(&c, "", true, res, envs);
	for (int i = 0; i < N_MSG; i++) {
		cr_assert_eq(res[i].calls, 1);
		cr_assert_eq(res[i].rc, SINK_TEMPFAIL, "m%d", i);
		cr_assert_not_null(strstr(res[i].why, "connection lost"), "%s", res[i].why);
	}
}

Test(stream_flush, garbage_closes_and_unanswered_are_tempfail, .timeout = 20)
{
	static struct consumer c = { .mode = "garbage" };
	struct result res[N_MSG] = { 0 };
	struct msg_env envs[N_MSG];

	run_batch(&c, "?timeout=5", true, res, envs);
	cr_assert_eq(res[0].rc, SINK_OK);
	for (int i = 1; i < N_MSG; i++) {
		cr_assert_eq(res[i].calls, 1);
		cr_assert_eq(res[i].rc, SINK_TEMPFAIL, "m%d", i);
		cr_assert_not_null(strstr(res[i].why, "unparseable answer"), "%s", res[i].why);
	}
}

Test(stream_flush, no_consumer_is_tempfail_after_the_timeout, .timeout = 20)
{
	static struct consumer c = { .mode = "none" };
	struct result res[N_MSG] = { 0 };
	struct msg_env envs[N_MSG];

	run_batch(&c, "?timeout=1", false, res, envs);
	for (int i = 0; i < N_MSG; i++) {
		cr_assert_eq(res[i].calls, 1);
		cr_assert_eq(res[i].rc, SINK_TEMPFAIL, "m%d", i);
		cr_assert_not_null(strstr(res[i].why, "connect:"), "%s", res[i].why);
	}
}
