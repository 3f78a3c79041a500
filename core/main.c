/*
 * main.c - the only wiring layer: configuration, spool recovery, delivery
 * workers, shards, signals. Threads: N shards + N delivery workers + this
 * one, which only waits for signals.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../proto/domains.h"
#include "../sinks/sink.h"
#include "cfg.h"
#include "deliver.h"
#include "limits.h"
#include "log.h"
#include "metrics.h"
#include "metrics_core.h"
#include "metrics_http.h"
#include "shard.h"
#include "spool.h"
#include "vpool.h"

#define OMX_VERSION "0.1.0"
#define SPOOL_REUSE_PER_WORKER 4096 /* spool files kept for reuse, per shard */

enum exit_code {
	EXIT_OK = 0,
	EXIT_CONFIG = 1,  /* bad configuration: nothing started */
	EXIT_STARTUP = 2, /* could not start (ports, spool, rings) */
};

/*
 * raise_nofile makes room for max-connections descriptors plus spool files:
 * the soft limit goes to the hard one, and as root the hard one goes up too.
 */
static void raise_nofile(const struct cfg *cfg)
{
	rlim_t want = (rlim_t)cfg->max_conns + 1024; /* sockets, plus spool files and listeners */
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		return;
	}
	if (rl.rlim_max < want) {
		struct rlimit up = { want, want };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
			return;
		}
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		log_line(LOG_WARN, "main", "limit.nofile soft=%llu below %llu needed for max-connections=%u",
			 (unsigned long long)rl.rlim_cur, (unsigned long long)want, cfg->max_conns);
	}
}

/*
 * listen_addresses_free checks that nobody listens on our addresses yet.
 * Shards bind with SO_REUSEPORT, which would silently share a port with a
 * second oceanmx of the same user; a plain bind first refuses that.
 */
static bool listen_addresses_free(const struct cfg *cfg)
{
	for (unsigned i = 0; i < cfg->num_listen; i++) {
		const struct cfg_listen *l = &cfg->listen[i];
		int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

		if (fd < 0) {
			fprintf(stderr, "oceanmx: listen %s: %s\n", l->text, strerror(errno));
			return false;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (l->addr.ss_family == AF_INET6) {
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		}
		if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) != 0) {
			fprintf(stderr, "oceanmx: listen %s: %s%s\n", l->text, strerror(errno),
				errno == EADDRINUSE ? " (is another oceanmx or MTA running?)" : "");
			close(fd);
			return false;
		}
		close(fd);
	}
	return true;
}

/*
 * recover_spool hands every committed spool file to a delivery worker and
 * removes the rest: a file without its trailer was never acknowledged. Then
 * it gives the files in SPOOL/free back to the workers' pools. A file that
 * shows in both q/ and free/ (a rename whose old name was not yet durable
 * at a crash) belongs to q/: its free/ name is dropped.
 */
static void recover_spool(const struct spool_dirs *dirs, struct deliver **workers, unsigned n)
{
	int fd = dup(dirs->q);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	unsigned requeued = 0, dropped = 0, next = 0, reused = 0, i;
	ino_t *inos = NULL;
	size_t num_inos = 0, cap_inos = 0;

	if (d == NULL) {
		if (fd >= 0) {
			close(fd);
		}
		log_line(LOG_ERR, "main", "spool.recover error=\"%s\"", strerror(errno));
		return;
	}
	while ((e = readdir(d)) != NULL) {
		struct spool_entry ent;
		int rc;

		if (e->d_name[0] == '.') {
			continue;
		}
		if (num_inos == cap_inos) {
			ino_t *ni = realloc(inos, (cap_inos = cap_inos ? cap_inos * 2 : 256) * sizeof(*ni));

			if (ni == NULL) {
				break;
			}
			inos = ni;
		}
		inos[num_inos++] = e->d_ino;
		rc = spool_load(&ent, dirs->q, e->d_name);
		if (rc == 0) {
			spool_entry_fini(&ent);
			if (deliver_enqueue(workers[next++ % n], e->d_name) == 0) {
				requeued++;
			}
		} else if (rc == -EINVAL) {
			unlinkat(dirs->q, e->d_name, 0);
			dropped++;
		} else {
			log_line(LOG_WARN, "main", "spool.recover file=%s error=\"%s\"", e->d_name, strerror(-rc));
		}
	}
	closedir(d);

	fd = dup(dirs->free);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	while (d != NULL && (e = readdir(d)) != NULL) {
		bool in_q = false;
		struct stat st;

		if (e->d_name[0] == '.') {
			continue;
		}
		for (size_t k = 0; k < num_inos && !in_q; k++) {
			in_q = inos[k] == e->d_ino;
		}
		/* Only small files are worth keeping (an older build could leave
		 * large ones here after an aborted message). */
		if (!in_q && (fstatat(dirs->free, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
			      (uint64_t)st.st_size > SPOOL_REUSE_MAX_BYTES)) {
			unlinkat(dirs->free, e->d_name, 0);
			continue;
		}
		for (i = 0; !in_q && i < n; i++) {
			if (spool_pool_put(deliver_pool(workers[(next + i) % n]), e->d_name)) {
				break;
			}
		}
		if (in_q || i == n) {
			unlinkat(dirs->free, e->d_name, 0);
		} else {
			next++;
			reused++;
		}
	}
	if (d != NULL) {
		closedir(d);
	} else if (fd >= 0) {
		close(fd);
	}
	free(inos);
	if (requeued || dropped) {
		log_line(LOG_NOTICE, "main", "spool.recover requeued=%u dropped_unacknowledged=%u", requeued, dropped);
	}
	log_line(LOG_INFO, "main", "spool.recover reusable=%u", reused);
}

static int serve(struct cfg *cfg, bool check_only)
{
	struct sink sinks[CFG_SINK_MAX];
	struct sink_ctx sctx = { .hostname = cfg->hostname };
	struct domain_list *domains = NULL;
	struct smtp_cfg scfg;
	struct shard_global g;
	struct deliver_global dg;
	struct deliver *workers[64] = { 0 };
	struct shard *shards[64] = { 0 };
	struct spool_dirs dirs = { -1, -1, -1 };
	struct metrics_core mc;
	struct metrics_http *mhttp = NULL;
	int rc = EXIT_OK;
	unsigned num_sinks = 0, i;
	sigset_t set;
	char *err = NULL;

	memset(&g, 0, sizeof(g));
	memset(&mc, 0, sizeof(mc));
	for (i = 0; i < cfg->num_sinks; i++) {
		if (sink_configure(&sinks[i], &sctx, cfg->sinks[i], &err) != 0) {
			fprintf(stderr, "oceanmx: %s\n", err ? err : "sink configuration failed");
			free(err);
			rc = EXIT_CONFIG;
			goto out;
		}
		num_sinks++;
	}
	if (cfg->domains != NULL && domain_list_parse(&domains, cfg->domains) != 0) {
		fprintf(stderr, "oceanmx: domains: \"%s\" is not a list of domain names\n", cfg->domains);
		rc = EXIT_CONFIG;
		goto out;
	}
	if (check_only) {
		printf("oceanmx: configuration ok\n");
		goto out;
	}

	memset(&scfg, 0, sizeof(scfg));
	scfg.hostname = cfg->hostname;
	scfg.max_msg_size = cfg->max_msg_size;
	scfg.max_rcpts = cfg->max_rcpts;
	scfg.max_bad_cmds = cfg->max_bad_cmds;
	scfg.max_cmd_line = cfg->max_cmd_line;
	scfg.max_text_line = cfg->max_text_line;
	scfg.bare_lf = cfg->bare_lf;
	if (domains != NULL) {
		scfg.domain_ok = domain_list_match;
		scfg.domain_arg = domains;
	}

	if (!listen_addresses_free(cfg)) {
		rc = EXIT_STARTUP;
		goto out;
	}
	raise_nofile(cfg);
	if ((rc = spool_open(&dirs, cfg->spool_dir)) != 0) {
		fprintf(stderr, "oceanmx: spool %s: %s\n", cfg->spool_dir, strerror(-rc));
		rc = EXIT_STARTUP;
		goto out;
	}
	g.cfg = cfg;
	g.smtp = &scfg;
	g.dirs = &dirs;
	g.limits = limits_new(cfg->max_conns, cfg->max_conns_per_ip);
	atomic_init(&g.stopping, false);
	dg.sinks = sinks;
	dg.num_sinks = num_sinks;
	dg.dirs = &dirs;
	dg.hostname = cfg->hostname;
	dg.reuse_cap = SPOOL_REUSE_PER_WORKER;
	dg.retry_first_ms = (int64_t)cfg->sink_retry_first * 1000;
	dg.retry_max_ms = (int64_t)cfg->sink_retry_max * 1000;
	if (g.limits == NULL) {
		rc = EXIT_STARTUP;
		goto out;
	}

	/* Signals go to this thread only (sigwait); every thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	log_start_async();
	if (!cfg->metrics_off) {
		mhttp = metrics_http_start(&cfg->metrics.addr, cfg->metrics.addr_len, &err);
		if (mhttp == NULL && !cfg->metrics_default) {
			fprintf(stderr, "oceanmx: metrics %s: %s\n", cfg->metrics.text, err ? err : "cannot listen");
			free(err);
			rc = EXIT_STARTUP;
			goto stop;
		}
		if (mhttp == NULL) {
			/* Only the default address: another server may hold it. */
			log_line(LOG_WARN, "main", "metrics.off addr=%s error=\"%s\" (use --metrics ADDR:PORT or none)",
				 cfg->metrics.text, err ? err : "cannot listen");
			free(err);
			err = NULL;
		}
	}
	if (cfg->dkim || cfg->spf || cfg->dmarc || cfg->arc) {
		struct vpool_cfg vc = {
			.workers = cfg->verify_workers,
			.dns = cfg->dns,
			.dns_timeout_ms = cfg->dns_timeout_ms,
			.max_sigs = cfg->dkim_max_sigs,
			.dmarc = cfg->dmarc,
			.psl_path = cfg->psl,
		};

		g.vpool = vpool_start(&vc, &err);
		if (g.vpool == NULL) {
			fprintf(stderr, "oceanmx: %s\n", err ? err : "verify pool: cannot start");
			free(err);
			rc = EXIT_STARTUP;
			goto stop;
		}
	}
	for (i = 0; i < cfg->shards && i < 64; i++) {
		if ((workers[i] = deliver_start(&dg, i)) == NULL) {
			rc = EXIT_STARTUP;
			goto stop;
		}
	}
	recover_spool(&dirs, workers, i);
	mc.shards = shards;
	mc.num_shards = cfg->shards < 64 ? cfg->shards : 64;
	mc.workers = workers;
	mc.num_workers = mc.num_shards;
	mc.sinks = sinks;
	mc.num_sinks = num_sinks;
	mc.vpool = g.vpool;
	mc.stopping = &g.stopping;
	mc.spool_fd = dirs.q;
	mc.version = OMX_VERSION;
	mc.start_unix = (int64_t)time(NULL);
	atomic_init(&mc.listening, false);
	if (mhttp != NULL && metrics_core_register(&mc) != 0) {
		rc = EXIT_STARTUP;
		goto stop;
	}
	for (i = 0; i < cfg->shards && i < 64; i++) {
		if ((shards[i] = shard_start(&g, i, workers[i])) == NULL) {
			rc = EXIT_STARTUP;
			goto stop;
		}
	}
	atomic_store(&mc.listening, true);
	log_line(LOG_NOTICE, "main", "start version=%s hostname=%s shards=%u listen=%s spool=%s sink=%s metrics=%s",
		 OMX_VERSION, cfg->hostname, cfg->shards, cfg->listen[0].text, cfg->spool_dir, cfg->sinks[0],
		 mhttp != NULL ? cfg->metrics.text : "none");
	for (;;) {
		int sig = 0;

		if (sigwait(&set, &sig) != 0) {
			continue;
		}
		if (sig == SIGHUP) {
			log_line(LOG_NOTICE, "main", "signal=HUP ignored (reload is not supported yet)");
			continue;
		}
		log_line(LOG_NOTICE, "main", "stop signal=%s shutdown_timeout=%us", sig == SIGTERM ? "TERM" : "INT",
			 cfg->shutdown_timeout);
		break;
	}
stop:
	atomic_store(&g.stopping, true);
	for (i = 0; i < 64; i++) {
		if (shards[i] != NULL) {
			shard_wake(shards[i]);
		}
	}
	/* /readyz answers 503 (stopping) while the shards drain; each shard
	 * leaves the metrics' reach before it is freed. */
	for (i = 0; i < 64; i++) {
		struct shard *sh = shards[i];

		metrics_registry_lock();
		shards[i] = NULL;
		metrics_registry_unlock();
		shard_join(sh);
	}
	metrics_http_stop(mhttp);
	metrics_registry_clear();
	/* Shards are gone (each waited for its verify jobs), so the pool is idle. */
	vpool_stop(g.vpool);
	/* Shards are gone, so nothing more is queued: workers drain and stop. */
	for (i = 0; i < 64; i++) {
		deliver_stop(workers[i]);
	}
	if (rc == EXIT_OK) {
		log_line(LOG_NOTICE, "main", "stopped");
	}
	log_stop_async();
out:
	for (i = 0; i < num_sinks; i++) {
		sink_unconfigure(&sinks[i]);
	}
	domain_list_free(domains);
	limits_free(g.limits);
	spool_close(&dirs);
	return rc;
}

int cmd_parse(int argc, char **argv); /* core/cmd_parse.c */
int cmd_verify(int argc, char **argv); /* core/cmd_verify.c */

int main(int argc, char **argv)
{
	struct cfg cfg;
	bool check_only = false;
	int first = 1, rc;
	char *err = NULL;

	if (argc > 1) {
		const char *a = argv[1];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0) {
			cfg_usage(stdout);
			return EXIT_OK;
		}
		if (strcmp(a, "--version") == 0 || strcmp(a, "version") == 0) {
			printf("oceanmx %s\n", OMX_VERSION);
			return EXIT_OK;
		}
		if (strcmp(a, "parse") == 0) {
			return cmd_parse(argc - 1, argv + 1);
		}
		if (strcmp(a, "verify") == 0) {
			return cmd_verify(argc - 1, argv + 1);
		}
		if (strcmp(a, "serve") == 0) {
			first = 2;
		} else if (strcmp(a, "check-config") == 0) {
			first = 2;
			check_only = true;
		} else if (a[0] != '-') {
			fprintf(stderr, "oceanmx: unknown command \"%s\" (see oceanmx --help)\n", a);
			return EXIT_CONFIG;
		}
	}
	for (int i = first; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			cfg_usage(stdout);
			return EXIT_OK;
		}
	}
	cfg_init(&cfg);
	if (cfg_parse_args(&cfg, argc, argv, first, &err) != 0 || cfg_finish(&cfg, &err) != 0) {
		fprintf(stderr, "oceanmx: %s\n", err ? err : "configuration error");
		free(err);
		cfg_fini(&cfg);
		return EXIT_CONFIG;
	}
	log_level_current = (enum log_level)cfg.log_level;
	log_format_current = (enum log_format)cfg.log_format;
	rc = serve(&cfg, check_only);
	cfg_fini(&cfg);
	return rc;
}
