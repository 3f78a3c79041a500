/*
 * test_sink_plugin.c - the plugin sink: load errors are configuration
 * errors (missing file, no omx_plugin symbol, wrong ABI), init failures
 * stop the worker, and deliver sees the envelope, our auth verdicts and the
 * parsed message (tests/sinks/fixture_plugin.c), its answer mapped to
 * sink_rc with its reason.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/sink.h"

#define FX_OK OMX_TEST_PLUGIN_DIR "/test_plugin_ok.so"
#define FX_BADABI OMX_TEST_PLUGIN_DIR "/test_plugin_badabi.so"

static const struct sink_ctx ctx = { .hostname = "mx.test" };

static char *configure_err(const char *spec)
{
	struct sink s;
	char *err = NULL;

	cr_assert_neq(sink_configure(&s, &ctx, spec, &err), 0, "%s accepted", spec);
	cr_assert_not_null(err);
	return err;
}

Test(plugin_conf, load_errors_are_config_errors)
{
	char *err = configure_err("plugin:/nonexistent/x.so");

	cr_assert(strstr(err, "cannot load") != NULL, "%s", err);
	free(err);
	err = configure_err("plugin:" FX_BADABI);
	cr_assert(strstr(err, "built for plugin ABI 999, this oceanmx has ABI 1") != NULL, "%s", err);
	free(err);
	err = configure_err("plugin:libm.so.6");
	cr_assert(strstr(err, "no \"omx_plugin\" symbol") != NULL, "%s", err);
	free(err);
	err = configure_err("plugin:?x");
	cr_assert(strstr(err, "missing path") != NULL, "%s", err);
	free(err);
}

Test(plugin_conf, init_failure_fails_the_worker)
{
	struct sink s;
	char *err = NULL;
	void *state = NULL;

	cr_assert_eq(sink_configure(&s, &ctx, "plugin:" FX_OK "?fail", &err), 0, "%s", err ? err : "");
	cr_assert_eq(s.ops->worker_init(s.conf, &state), -EINVAL);
	sink_unconfigure(&s);
}

struct result {
	enum sink_rc rc;
	char why[600];
};

static void on_done(void *arg, enum sink_rc rc, const char *why)
{
	struct result *r = arg;

	r->rc = rc;
	snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
}

static const char message[] =
	"Authentication-Results: mx.test;\r\n"
	"\tdkim=pass header.d=x.test header.s=s1 header.a=rsa-sha256;\r\n"
	"\tspf=pass smtp.mailfrom=ann@x.test;\r\n"
	"\tspf=none smtp.helo=client.test;\r\n"
	"\tdmarc=pass header.from=x.test policy.dmarc=reject\r\n"
	"Received: from client.test ([192.0.2.7]) by mx.test (oceanmx) with ESMTP id ABC; now\r\n"
	"From: Ann <ann@x.test>\r\nTo: bob@y.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
	"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\n"
	"abc\r\n--b--\r\n";

static struct result deliver(const char *args, char **out_summary)
{
	struct sink s;
	char spec[256], *err = NULL, *rcpts[] = { "bob@y.test", "carl@y.test" };
	void *state = NULL;
	struct msg_env env;
	struct sink_tx *tx;
	struct result res = { SINK_RC_COUNT, "" };
	size_t half = sizeof(message) / 2;

	snprintf(spec, sizeof(spec), "plugin:%s?%s", FX_OK, args);
	cr_assert_eq(sink_configure(&s, &ctx, spec, &err), 0, "%s", err ? err : "");
	cr_assert_eq(s.ops->worker_init(s.conf, &state), 0);
	memset(&env, 0, sizeof(env));
	strcpy(env.id, "ID0001");
	strcpy(env.client_ip, "192.0.2.7");
	env.helo = "client.test";
	env.mail_from = "ann@x.test";
	env.rcpts = rcpts;
	env.num_rcpts = 2;
	env.body = MSG_BODY_8BITMIME;
	env.size = 123;
	cr_assert_eq(s.ops->tx_begin(state, &tx, &env), 0);
	cr_assert_eq(s.ops->tx_write(tx, span_make(message, half)), 0);
	cr_assert_eq(s.ops->tx_write(tx, span_make(message + half, sizeof(message) - 1 - half)), 0);
	s.ops->tx_commit(tx, on_done, &res);

	void *h = dlopen(FX_OK, RTLD_NOW | RTLD_NOLOAD);
	const char *(*last)(void) = h ? (const char *(*)(void))dlsym(h, "fixture_last") : NULL;

	cr_assert_not_null(last);
	*out_summary = strdup(last());
	dlclose(h);
	s.ops->worker_fini(state);
	sink_unconfigure(&s);
	return res;
}

Test(plugin_tx, deliver_sees_envelope_auth_and_document)
{
	char *sum, want[1024];
	struct result r = deliver("ok", &sum);

	cr_assert_eq(r.rc, SINK_OK, "%s", r.why);
	snprintf(want, sizeof(want),
		 "id=ID0001 ip=192.0.2.7 helo=client.test from=ann@x.test rcpts=2:bob@y.test,carl@y.test body=8BITMIME "
		 "subject=caf\xc3\xa9 hfrom=ann@x.test text=hello dkim=1:pass:x.test spf=pass helo_spf=none "
		 "dmarc=pass:reject arc=none raw=%zu size=%zu "
		 "att=a.bin:3:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		 sizeof(message) - 1, sizeof(struct { size_t a; void *b, *c, *d, *e; size_t f; }));
	cr_assert_str_eq(sum, want);
	free(sum);
}

Test(plugin_tx, answers_map_to_sink_rc_with_reason)
{
	char *sum;
	struct result r = deliver("temp", &sum);

	cr_assert_eq(r.rc, SINK_TEMPFAIL);
	cr_assert_str_eq(r.why, "plugin fixture: busy, 'later'");
	free(sum);
	r = deliver("perm", &sum);
	cr_assert_eq(r.rc, SINK_PERMFAIL);
	cr_assert_str_eq(r.why, "plugin fixture: no thanks second line");
	free(sum);
}
