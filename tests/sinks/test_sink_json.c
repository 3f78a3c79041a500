/*
 * test_sink_json.c - the json sink: ID.eml and ID.json published at flush,
 * nothing half written left behind, a redelivery replaces both files, an
 * abort leaves nothing.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sinks/sink.h"

static char dir[64];
static struct sink sk;
static void *state;

static void setup(void)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	char spec[128], *err = NULL;

	strcpy(dir, "/tmp/omx-json-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(spec, sizeof(spec), "json:%s/out", dir);
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

static char *rcpts[] = { "a@x.test" };

static void env_make(struct msg_env *env, const char *id)
{
	memset(env, 0, sizeof(*env));
	snprintf(env->id, sizeof(env->id), "%s", id);
	env->received_us = 1764145800000000;
	env->mail_from = "s@z.test";
	env->rcpts = rcpts;
	env->num_rcpts = 1;
}

static void deliver(const char *id, const char *msg)
{
	struct msg_env env;
	struct sink_tx *tx;
	enum sink_rc rc = SINK_RC_COUNT;

	env_make(&env, id);
	cr_assert_eq(sk.ops->tx_begin(state, &tx, &env), 0);
	cr_assert_eq(sk.ops->tx_write(tx, span_cstr(msg)), 0);
	sk.ops->tx_commit(tx, on_done, &rc);
	cr_assert_eq(rc, SINK_RC_COUNT, "done() before flush");
	sk.ops->flush(state);
	cr_assert_eq(rc, SINK_OK);
}

/* names lists DIR/out as "a b c" (sorted by the caller's expectations: at most 8 names). */
static size_t names(char *out, size_t len)
{
	char p[128], got[8][256];
	DIR *d;
	struct dirent *e;
	size_t n = 0;

	snprintf(p, sizeof(p), "%s/out", dir);
	d = opendir(p);
	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			cr_assert_lt(n, 8);
			snprintf(got[n++], sizeof(got[0]), "%s", e->d_name);
		}
	}
	closedir(d);
	qsort(got, n, sizeof(got[0]), (int (*)(const void *, const void *))strcmp);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strncat(out, got[i], len - strlen(out) - 2);
		if (i + 1 < n) {
			strcat(out, " ");
		}
	}
	return n;
}

static char *slurp(const char *name)
{
	char p[256];
	FILE *f;
	static char buf[4096];
	size_t n;

	snprintf(p, sizeof(p), "%s/out/%s", dir, name);
	f = fopen(p, "rb");
	cr_assert_not_null(f, "%s", p);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

Test(sink_json, publishes_eml_and_json, .init = setup, .fini = teardown)
{
	char ls[512];

	deliver("ID1", "Subject: hi\r\n\r\nbody one\r\n");
	names(ls, sizeof(ls));
	cr_assert_str_eq(ls, "ID1.eml ID1.json");
	cr_assert_str_eq(slurp("ID1.eml"), "Subject: hi\r\n\r\nbody one\r\n");
	cr_assert(strstr(slurp("ID1.json"), "\"subject\":\"hi\"") != NULL, "%s", slurp("ID1.json"));
}

Test(sink_json, redelivery_replaces_both_files, .init = setup, .fini = teardown)
{
	char ls[512];

	deliver("ID2", "Subject: first\r\n\r\nold\r\n");
	deliver("ID2", "Subject: second\r\n\r\nnew\r\n");
	names(ls, sizeof(ls));
	cr_assert_str_eq(ls, "ID2.eml ID2.json", "no .tmp left: %s", ls);
	cr_assert_str_eq(slurp("ID2.eml"), "Subject: second\r\n\r\nnew\r\n");
	cr_assert(strstr(slurp("ID2.json"), "\"subject\":\"second\"") != NULL);
}

Test(sink_json, abort_leaves_nothing, .init = setup, .fini = teardown)
{
	struct msg_env env;
	struct sink_tx *tx;
	char ls[512];

	env_make(&env, "ID3");
	cr_assert_eq(sk.ops->tx_begin(state, &tx, &env), 0);
	cr_assert_eq(sk.ops->tx_write(tx, span_cstr("Subject: x\r\n\r\npartial")), 0);
	sk.ops->tx_abort(tx);
	cr_assert_eq(names(ls, sizeof(ls)), 0, "left: %s", ls);
}

/* raw=no: the document alone (another sink keeps the message); options are checked. */
Test(sink_json, raw_no_writes_the_document_only)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	struct sink s2;
	void *st2;
	char spec[160], *err = NULL, ls[512];
	struct msg_env env;
	struct sink_tx *tx;
	enum sink_rc rc = SINK_RC_COUNT;

	strcpy(dir, "/tmp/omx-json-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(spec, sizeof(spec), "json:%s/out?raw=yes&bogus=1", dir);
	cr_assert_neq(sink_configure(&s2, &ctx, spec, &err), 0);
	cr_assert(err != NULL && strstr(err, "bogus=1") != NULL, "%s", err ? err : "(null)");
	free(err);
	err = NULL;
	snprintf(spec, sizeof(spec), "json:%s/out?raw=no&inline_max=10", dir);
	cr_assert_eq(sink_configure(&s2, &ctx, spec, &err), 0, "%s", err ? err : "");
	cr_assert_eq(s2.ops->worker_init(s2.conf, &st2), 0);
	env_make(&env, "ID4");
	cr_assert_eq(s2.ops->tx_begin(st2, &tx, &env), 0);
	cr_assert_eq(s2.ops->tx_write(tx, span_cstr("Subject: doc only\r\n\r\nbody\r\n")), 0);
	s2.ops->tx_commit(tx, on_done, &rc);
	s2.ops->flush(st2);
	cr_assert_eq(rc, SINK_OK);
	names(ls, sizeof(ls));
	cr_assert_str_eq(ls, "ID4.json");
	cr_assert(strstr(slurp("ID4.json"), "\"subject\":\"doc only\"") != NULL);
	s2.ops->worker_fini(st2);
	sink_unconfigure(&s2);
	snprintf(spec, sizeof(spec), "rm -rf %s", dir);
	cr_assert_eq(system(spec), 0);
}
