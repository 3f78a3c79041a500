/* test_registry.c - the registry's generic options (sync=) and sink_why_said (sinks/registry.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sinks/sink.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/omx-reg-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* configure_ok configures "NAME:<dir>/REST" and tells whether <dir>/`sub` exists after. */
static bool configure_ok(const char *name, const char *rest, const char *sub, bool *out_sync)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	struct sink sk;
	char spec[256], path[256], *err = NULL;
	struct stat st;
	bool ok;

	snprintf(spec, sizeof(spec), "%s:%s/%s", name, dir, rest);
	if (sink_configure(&sk, &ctx, spec, &err) != 0) {
		free(err);
		return false;
	}
	*out_sync = sk.sync;
	cr_assert_str_eq(sk.spec, spec, "the spec is kept as given, for logs");
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	ok = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
	sink_unconfigure(&sk);
	return ok;
}

Test(registry, sync_is_taken_out_of_the_query, .init = setup, .fini = teardown)
{
	bool sync = false;

	/* The maildir sink takes its whole ARG as a directory: it must not see "?sync=yes". */
	cr_assert(configure_ok("maildir", "a?sync=yes", "a/new", &sync));
	cr_assert(sync);
	cr_assert(configure_ok("maildir", "b?sync=no", "b/new", &sync));
	cr_assert_not(sync);
	cr_assert(configure_ok("maildir", "c", "c/new", &sync));
	cr_assert_not(sync);
	/* The other options stay for the sink, in order. */
	cr_assert(configure_ok("json", "d?inline_max=10&sync=yes&raw=no", "d", &sync));
	cr_assert(sync);
	cr_assert(configure_ok("json", "e?sync=yes&&inline_max=10", "e", &sync));
	cr_assert(sync);
}

Test(registry, bad_sync_values_are_errors, .init = setup, .fini = teardown)
{
	struct sink_ctx ctx = { .hostname = "mx.test" };
	struct sink sk;
	char spec[256], *err = NULL;

	snprintf(spec, sizeof(spec), "maildir:%s/x?sync=maybe", dir);
	cr_assert_neq(sink_configure(&sk, &ctx, spec, &err), 0);
	cr_assert_not_null(strstr(err, "sync"), "%s", err);
	free(err); err = NULL;
	snprintf(spec, sizeof(spec), "maildir:%s/x?sync", dir);
	cr_assert_neq(sink_configure(&sk, &ctx, spec, &err), 0);
	free(err); err = NULL;
	/* The sink still checks its own keys. */
	snprintf(spec, sizeof(spec), "json:%s/x?sync=yes&bogus=1", dir);
	cr_assert_neq(sink_configure(&sk, &ctx, spec, &err), 0);
	free(err);
}

Test(registry, why_said_finds_the_consumers_words)
{
	cr_assert_str_eq(sink_why_said("unix:/run/app.sock: REJECT 5.1.1 no such mailbox"), "5.1.1 no such mailbox");
	cr_assert_str_eq(sink_why_said("tcp:127.0.0.1:7025: RETRY busy: later"), "busy: later");
	cr_assert_str_eq(sink_why_said("exec: exit 1: no such user"), "no such user");
	cr_assert_null(sink_why_said("unix:/x: REJECT (no reason given)"));
	cr_assert_null(sink_why_said("exec: killed after the timeout of 5s"));
	cr_assert_null(sink_why_said("unix:/run/app.sock: connection lost (closed by the consumer)"));
	cr_assert_null(sink_why_said("http 503"));
	cr_assert_null(sink_why_said(NULL));
}
