/* test_cfg.c - flags, config file, defaults and errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/milter_client.h"
#include "core/log.h"

static int parse(struct cfg *c, char **err, int argc, char **argv)
{
	cfg_init(c);
	*err = NULL;
	if (cfg_parse_args(c, argc, argv, 0, err) != 0) {
		return -1;
	}
	return cfg_finish(c, err);
}

Test(cfg, embedded_defaults)
{
	struct cfg c;
	char *err;

	cr_assert_eq(parse(&c, &err, 0, NULL), 0);
	cr_assert_eq(c.num_listen, 1);
	cr_assert_str_eq(c.listen[0].text, "127.0.0.1:2525");
	cr_assert_str_eq(c.spool_dir, "./var/spool");
	cr_assert_str_eq(c.sinks[0], "maildir:./var/maildir");
	cr_assert_null(c.domains);
	cr_assert_eq(c.timeout_cmd, 300);
	cr_assert_eq(c.timeout_data, 180);
	cr_assert_eq(c.timeout_commit, 600);
	cr_assert_gt(c.shards, 0);
	cfg_fini(&c);
}

Test(cfg, flags_and_suffixes)
{
	char *argv[] = { "--listen", "[::1]:2526", "--listen=127.0.0.1:25", "--max-message-size", "10M",
			 "--shards", "3", "--bare-lf", "normalise", "--domains", "a.test,b.test" };
	struct cfg c;
	char *err;

	cr_assert_eq(parse(&c, &err, 11, argv), 0, "%s", err ? err : "");
	cr_assert_eq(c.num_listen, 2);
	cr_assert_eq(c.max_msg_size, 10u << 20);
	cr_assert_eq(c.shards, 3);
	cr_assert_eq(c.bare_lf, SMTP_BARE_NORMALISE);
	cr_assert_str_eq(c.domains, "a.test,b.test");
	cfg_fini(&c);
}

Test(cfg, errors_name_the_key)
{
	char *bad[][2] = {
		{ "--shards", "lots" }, { "--listen", "nowhere" }, { "--frobnicate", "1" },
		{ "--max-command-line", "100" }, { "--bare-lf", "maybe" }, { "--log-level", "loud" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cfg c;
		char *err;

		cr_assert_neq(parse(&c, &err, 2, bad[i]), 0, "%s %s accepted", bad[i][0], bad[i][1]);
		cr_assert_not_null(err);
		cr_assert_not_null(strstr(err, bad[i][0] + 2), "error \"%s\" does not name %s", err, bad[i][0]);
		free(err);
		cfg_fini(&c);
	}
}

Test(cfg, file_then_flags_override)
{
	char path[] = "/tmp/omx-cfg-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	struct cfg c;
	char *err;

	fprintf(f, "# comment\nhostname mx.example.com\nshards = 2\nsink maildir:/tmp/a\nsink maildir:/tmp/b\n");
	fclose(f);
	char *argv[] = { "-c", path, "--shards", "4" };
	cr_assert_eq(parse(&c, &err, 4, argv), 0, "%s", err ? err : "");
	cr_assert_str_eq(c.hostname, "mx.example.com");
	cr_assert_eq(c.shards, 4);
	cr_assert_eq(c.num_sinks, 2);
	cfg_fini(&c);

	f = fopen(path, "w");
	fprintf(f, "shards 2\nbogus-key 1\n");
	fclose(f);
	char *argv2[] = { "-c", path };
	cr_assert_neq(parse(&c, &err, 2, argv2), 0);
	cr_assert_not_null(strstr(err, ":2: bogus-key: unknown key"), "%s", err);
	free(err);
	cfg_fini(&c);
	unlink(path);
}

/* Every option sets only its own field, whatever order they come in. */
Test(cfg, options_do_not_reset_others)
{
	char *argv[] = { "--dkim", "off", "--arc", "off", "--recv-buffers", "64", "--dns-timeout", "900",
			 "--bare-lf", "reject", "--spf", "off" };
	struct cfg c;
	char *err;

	cr_assert_eq(parse(&c, &err, 12, argv), 0, "%s", err ? err : "");
	cr_assert_not(c.dkim);
	cr_assert_not(c.arc);
	cr_assert_not(c.spf);
	cr_assert(c.dmarc);
	cr_assert_eq(c.recv_buffers, 64);
	cr_assert_eq(c.dns_timeout_ms, 900);
	cr_assert_eq(c.bare_lf, SMTP_BARE_REJECT);
	cfg_fini(&c);
}

Test(cfg, sink_retry_defaults_flags_and_order)
{
	struct cfg c;
	char *err;
	char *ok[] = { "--sink-retry-first", "1", "--sink-retry-max=4" };
	char *bad[] = { "--sink-retry-first", "60", "--sink-retry-max", "10" };
	char *zero[] = { "--sink-retry-first", "0" };

	cr_assert_eq(parse(&c, &err, 0, NULL), 0);
	cr_assert_eq(c.sink_retry_first, 30);
	cr_assert_eq(c.sink_retry_max, 900);
	cfg_fini(&c);
	cr_assert_eq(parse(&c, &err, 3, ok), 0, "%s", err ? err : "");
	cr_assert_eq(c.sink_retry_first, 1);
	cr_assert_eq(c.sink_retry_max, 4);
	cfg_fini(&c);
	cr_assert_eq(parse(&c, &err, 4, bad), -1);
	cr_assert_not_null(strstr(err, "sink-retry-max"), "%s", err);
	free(err);
	cfg_fini(&c);
	cr_assert_eq(parse(&c, &err, 2, zero), -1);
	cr_assert_not_null(strstr(err, "sink-retry-first"), "%s", err);
	free(err);
	cfg_fini(&c);
}

Test(cfg, metrics_and_log_format)
{
	struct cfg c;
	char *err;
	char *a1[] = { "--metrics", "[::1]:9100", "--log-format", "json" };
	char *a2[] = { "--metrics", "none" };
	char *a3[] = { "--metrics", "9025" };
	char *a4[] = { "--log-format", "xml" };

	cr_assert_eq(parse(&c, &err, 0, NULL), 0);
	cr_assert_str_eq(c.metrics.text, "127.0.0.1:9025");
	cr_assert(c.metrics_default && !c.metrics_off);
	cr_assert_eq(c.log_format, LOG_FMT_TEXT);
	cfg_fini(&c);
	cr_assert_eq(parse(&c, &err, 4, a1), 0);
	cr_assert_str_eq(c.metrics.text, "[::1]:9100");
	cr_assert(!c.metrics_default);
	cr_assert_eq(c.log_format, LOG_FMT_JSON);
	cfg_fini(&c);
	cr_assert_eq(parse(&c, &err, 2, a2), 0);
	cr_assert(c.metrics_off);
	cfg_fini(&c);
	cr_assert_neq(parse(&c, &err, 2, a3), 0);
	cr_assert(strstr(err, "metrics") != NULL, "%s", err);
	free(err);
	cfg_fini(&c);
	cr_assert_neq(parse(&c, &err, 2, a4), 0);
	cr_assert(strstr(err, "log-format") != NULL, "%s", err);
	free(err);
	cfg_fini(&c);
}

Test(cfg, milter_specs)
{
	char *ok[] = { "--milter", "unix:/run/milter.sock", "--milter", "inet:127.0.0.1:8891?timeout=2000&default-action=accept",
		       "--milter-timeout", "3000", "--milter-default-action", "reject" };
	char *bad[][2] = {
		{ "--milter", "tcp:127.0.0.1:1" },          { "--milter", "inet:127.0.0.1" },
		{ "--milter", "unix:" },                    { "--milter", "inet:127.0.0.1:8891?timeout=0" },
		{ "--milter", "unix:/x?default-action=drop" }, { "--milter", "unix:/x?speed=fast" },
		{ "--milter-default-action", "discard" },   { "--milter-timeout", "5" },
	};
	struct milter_conf mc;
	struct cfg c;
	char *err;

	cr_assert_eq(parse(&c, &err, 8, ok), 0, "%s", err ? err : "");
	cr_assert_eq(c.num_milters, 2);
	cr_assert_str_eq(c.milters[1], "inet:127.0.0.1:8891?timeout=2000&default-action=accept");
	cr_assert_eq(c.milter_timeout_ms, 3000);
	cr_assert_eq(c.milter_default_action, MILTER_DEF_REJECT);
	/* The spec's options win over the flags for that milter. */
	cr_assert_eq(milter_conf_parse(&mc, c.milters[1], c.milter_timeout_ms, c.milter_connect_timeout_ms,
				       (enum milter_default)c.milter_default_action, &err), 0);
	cr_assert_eq(mc.timeout_ms, 2000);
	cr_assert_eq(mc.connect_timeout_ms, MILTER_CONNECT_TIMEOUT_DEFAULT);
	cr_assert_eq(mc.def, MILTER_DEF_ACCEPT);
	cr_assert_str_eq(mc.name, "inet:127.0.0.1:8891");
	cfg_fini(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_neq(parse(&c, &err, 2, bad[i]), 0, "%s %s accepted", bad[i][0], bad[i][1]);
		cr_assert_not_null(err);
		cr_assert_not_null(strstr(err, bad[i][0] + 2), "error \"%s\" does not name %s", err, bad[i][0]);
		free(err);
		cfg_fini(&c);
	}
}
