/* test_sink_maildir.c - the maildir sink writes tmp/ -> new/ with delivery fields. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sinks/sink.h"

static char dir[64];
static struct sink sk;
static void *state;

static void setup(void)
{
	struct sink_ctx ctx = { .hostname = "mx/one:test" };
	char spec[128], *err = NULL;

	strcpy(dir, "/tmp/omx-md-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(spec, sizeof(spec), "maildir:%s/box", dir);
	cr_assert_eq(sink_configure(&sk, &ctx, spec, &err), 0, "%s", err ? err : "");
	cr_assert_eq(sk.ops->worker_init(sk.conf, &state), 0);
}

static void teardown(void)
{
	char cmd[128];

	sk.ops->worker_fini(state);
	sink_unconfigure(&sk);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static void on_done(void *arg, enum sink_rc rc, const char *why)
{
	(void)why;
	*(enum sink_rc *)arg = rc;
}

static char *rcpts[] = { "a@x.test", "b@y.test" };

/* test_env: an envelope from s@z.test to the two rcpts, received at a fixed time. */
static void test_env(struct msg_env *env, const char *id)
{
	memset(env, 0, sizeof(*env));
	strcpy(env->id, id);
	env->received_us = 1764145800000000;
	env->mail_from = "s@z.test";
	env->rcpts = rcpts;
	env->num_rcpts = 2;
}

static void deliver(const char *msg)
{
	struct msg_env env;
	struct sink_tx *tx;
	enum sink_rc rc = SINK_RC_COUNT;

	test_env(&env, "ABCDEF0123456");
	cr_assert_eq(sk.ops->tx_begin(state, &tx, &env), 0);
	cr_assert_eq(sk.ops->tx_write(tx, span_cstr(msg)), 0);
	sk.ops->tx_commit(tx, on_done, &rc);
	cr_assert_eq(rc, SINK_RC_COUNT, "done() before flush");
	sk.ops->flush(state);
	cr_assert_eq(rc, SINK_OK);
}

static size_t count_files(const char *sub, char *out_name)
{
	char p[128];
	DIR *d;
	struct dirent *e;
	size_t n = 0;

	snprintf(p, sizeof(p), "%s/box/%s", dir, sub);
	d = opendir(p);
	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.') {
			n++;
			if (out_name) {
				strcpy(out_name, e->d_name);
			}
		}
	}
	closedir(d);
	return n;
}

Test(sink_maildir, delivers_with_envelope_fields, .init = setup, .fini = teardown)
{
	char name[256], p[512], buf[512];
	const char *msg = "Received: from x\r\n\r\nHi\r\n";
	const char *want = "Return-Path: <s@z.test>\r\nDelivered-To: <a@x.test>\r\nDelivered-To: <b@y.test>\r\n"
			   "Received: from x\r\n\r\nHi\r\n";
	FILE *f;
	size_t n;

	deliver(msg);
	cr_assert_eq(count_files("tmp", NULL), 0);
	cr_assert_eq(count_files("new", name), 1);
	cr_assert_str_eq(name, "1764145800.ABCDEF0123456.mx\\057one\\072test");
	snprintf(p, sizeof(p), "%s/box/new/%s", dir, name);
	f = fopen(p, "rb");
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	cr_assert_eq(n, strlen(want));
	cr_assert_eq(memcmp(buf, want, n), 0);
}

Test(sink_maildir, redelivery_replaces_not_duplicates, .init = setup, .fini = teardown)
{
	deliver("a\r\n");
	deliver("a\r\n");
	cr_assert_eq(count_files("new", NULL), 1);
}

Test(sink_maildir, abort_leaves_nothing, .init = setup, .fini = teardown)
{
	struct msg_env env;
	struct sink_tx *tx;

	memset(&env, 0, sizeof(env));
	strcpy(env.id, "X1");
	env.mail_from = "";
	cr_assert_eq(sk.ops->tx_begin(state, &tx, &env), 0);
	sk.ops->tx_abort(tx);
	cr_assert_eq(count_files("tmp", NULL), 0);
	cr_assert_eq(count_files("new", NULL), 0);
}

Test(sink_maildir, unknown_sink_is_a_clear_error)
{
	struct sink s;
	struct sink_ctx ctx = { .hostname = "h" };
	char *err = NULL;

	cr_assert_neq(sink_configure(&s, &ctx, "carrier-pigeon:/x", &err), 0);
	cr_assert_not_null(strstr(err, "unknown sink type"), "%s", err);
	free(err);
}

/* Pieces below and above the coalescing size arrive in order, byte-exact. */
Test(sink_maildir, pieces_of_every_size_arrive_in_order, .init = setup, .fini = teardown)
{
	static const size_t sizes[] = { 10, 30000, 30000, 5000, 200000, 7, 65536, 1 };
	struct msg_env env;
	struct sink_tx *tx;
	enum sink_rc rc = SINK_RC_COUNT;
	size_t total = 0, off, n;
	char name[256], p[512];
	uint8_t *want, *got;
	const char *hdr = "Return-Path: <s@z.test>\r\nDelivered-To: <a@x.test>\r\nDelivered-To: <b@y.test>\r\n";
	FILE *f;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		total += sizes[i];
	}
	want = malloc(strlen(hdr) + total);
	got = malloc(strlen(hdr) + total + 1);
	cr_assert(want != NULL && got != NULL);
	memcpy(want, hdr, strlen(hdr));
	for (size_t i = 0; i < total; i++) {
		want[strlen(hdr) + i] = (uint8_t)('a' + (i * 7 + i / 4096) % 26);
	}
	test_env(&env, "PIECES01");
	cr_assert_eq(sk.ops->tx_begin(state, &tx, &env), 0);
	off = strlen(hdr);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		cr_assert_eq(sk.ops->tx_write(tx, span_make(want + off, sizes[i])), 0);
		off += sizes[i];
	}
	sk.ops->tx_commit(tx, on_done, &rc);
	sk.ops->flush(state);
	cr_assert_eq(rc, SINK_OK);
	cr_assert_eq(count_files("new", name), 1);
	snprintf(p, sizeof(p), "%s/box/new/%s", dir, name);
	f = fopen(p, "rb");
	cr_assert_not_null(f);
	n = fread(got, 1, strlen(hdr) + total + 1, f);
	fclose(f);
	cr_assert_eq(n, strlen(hdr) + total);
	cr_assert_eq(memcmp(got, want, n), 0);
	free(want);
	free(got);
}
