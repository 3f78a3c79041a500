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
#include "privs.h"
#include "shard.h"
#include "spool.h"
#include "tls.h"
#include "vpool.h"

#define OMX_VERSION "0.1.0"

static int64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

struct found_list {
	struct spool_ref *refs;
	size_t num, cap;
	struct spool_log *log;
	bool oom;
};

static void on_found(void *arg, const struct spool_found *f)
{
	struct found_list *fl = arg;

	if (fl->num == fl->cap) {
		size_t cap = fl->cap ? fl->cap * 2 : 1024;
		struct spool_ref *n = realloc(fl->refs, cap * sizeof(*n));

		if (n == NULL) {
			fl->oom = true; /* still in the log: delivered after the next start */
			return;
		}
		fl->refs = n;
		fl->cap = cap;
	}
	fl->refs[fl->num++] = (struct spool_ref){ .log = fl->log, .seg = f->seg, .off = f->off, .len = f->len,
						   .slot = f->slot, .done = f->done };
	memcpy(fl->refs[fl->num - 1].id, f->id, sizeof(f->id));
}

/*
 * recover_spool scans every shard's log (spool_log_recover: valid records
 * up to the first torn one of each segment) and queues each record some
 * sink still owes to the worker of its log, then makes sure each serving
 * shard has a free segment to start with. Logs of shards that no longer
 * exist (fewer --shards than before) are delivered by worker i % n.
 */
static int recover_spool(struct spool_log **logs, unsigned num_logs, struct deliver **workers, unsigned n)
{
	struct found_list fl = { 0 };
	uint32_t records = 0;
	int64_t t0 = real_ms();
	int rc;

	for (unsigned i = 0; i < num_logs; i++) {
		uint32_t r = 0;

		fl.log = logs[i];
		if ((rc = spool_log_recover(logs[i], on_found, &fl, &r)) != 0) {
			log_line(LOG_ERR, "main", "spool.recover shard=%u error=\"%s\"", i, strerror(-rc));
			free(fl.refs);
			return rc;
		}
		records += r;
		if (deliver_add_log(workers[i % n], logs[i]) != 0) {
			free(fl.refs);
			return -ENOMEM;
		}
	}
	for (size_t k = 0; k < fl.num; k++) {
		unsigned w = fl.refs[k].log->shard % n;

		if (deliver_enqueue(workers[w], &fl.refs[k]) != 0) {
			fl.oom = true;
		}
	}
	if (fl.oom) {
		log_line(LOG_WARN, "main", "spool.recover error=\"out of memory\" (the rest is delivered after a restart)");
	}
	for (unsigned i = 0; i < n && i < num_logs; i++) {
		bool none;

		/* Under the lock: the workers are running and may recycle now. */
		pthread_mutex_lock(&logs[i]->mu);
		none = logs[i]->num_free == 0;
		pthread_mutex_unlock(&logs[i]->mu);
		if (none && (rc = spool_log_make_segment(logs[i])) != 0) {
			/* Served anyway: 452 4.3.1 until the worker can make one. */
			log_line(LOG_WARN, "main", "spool.segment shard=%u error=\"%s\"", i, strerror(-rc));
		}
	}
	log_line(LOG_NOTICE, "main", "spool.recover records=%u pending=%zu ms=%lld", records, fl.num,
		 (long long)(real_ms() - t0));
	free(fl.refs);
	return 0;
}

/*
 * tls_load builds a certificate store from the configured pairs, logging
 * each pair's names. NULL (after printing or logging why) on error.
 */
static struct tls_store *tls_load(const struct cfg *cfg, bool to_log)
{
	char *err = NULL;
	struct tls_store *st = tls_store_new((const char *const *)cfg->tls_certs, (const char *const *)cfg->tls_keys,
					     cfg->num_tls_certs, &err);

	if (st == NULL) {
		if (to_log) {
			log_line(LOG_ERR, "main", "tls.reload error=\"%s\" (the previous certificates stay)",
				 err ? err : "cannot load");
		} else {
			fprintf(stderr, "oceanmx: %s\n", err ? err : "tls: cannot load the certificates");
		}
		free(err);
		return NULL;
	}
	for (unsigned i = 0; i < cfg->num_tls_certs; i++) {
		char names[512];

		if (tls_store_describe(st, i, names, sizeof(names))) {
			log_line(LOG_NOTICE, "main", "tls.cert file=%s names=%s key=\"%s\"%s", cfg->tls_certs[i], names,
				 tls_store_key_kind(st, i), i == 0 ? " default=yes" : "");
		}
	}
	return st;
}

/* configure_sinks configures every --sink into sinks[]; EXIT_OK or EXIT_CONFIG (printed). */
static int configure_sinks(const struct cfg *cfg, const struct sink_ctx *sctx, struct sink *sinks,
			   unsigned *num_sinks)
{
	char *err = NULL;

	for (unsigned i = 0; i < cfg->num_sinks; i++) {
		if (sink_configure(&sinks[i], sctx, cfg->sinks[i], &err) != 0) {
			fprintf(stderr, "oceanmx: %s\n", err ? err : "sink configuration failed");
			free(err);
			return EXIT_CONFIG;
		}
		(*num_sinks)++;
	}
	return EXIT_OK;
}

/* The command line, kept for a SIGHUP reload (which reads -c FILE again). */
static int saved_argc, saved_first;
static char **saved_argv;

/*
 * The recipient domains the shards check, swapped by SIGHUP: the sessions'
 * smtp_cfg points at this holder, whose list is read with one atomic load.
 * A replaced list is kept (retired) until exit, since a shard may still be
 * reading it; reloads are rare.
 */
#define RETIRED_MAX 64
struct domain_holder {
	_Atomic(const struct domain_list *) cur; /* NULL: any domain */
	struct domain_list *retired[RETIRED_MAX];
	unsigned num_retired;
};

static bool domain_holder_match(const void *arg, struct span dom)
{
	const struct domain_holder *h = arg;
	const struct domain_list *dl = atomic_load_explicit(&h->cur, memory_order_acquire);

	return dl == NULL || domain_list_match(dl, dom);
}

/* changed_restart lists (into out) the options that differ and only a restart applies. */
static void changed_restart(const struct cfg *a, const struct cfg *b, char *out, size_t cap)
{
	size_t n = 0;

#define CHANGED(cond, name)                                                                                 \
	do {                                                                                                \
		if ((cond) && n < cap) {                                                                    \
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", name);                \
		}                                                                                           \
	} while (0)
	CHANGED(a->num_listen != b->num_listen, "listen");
	for (unsigned i = 0; i < a->num_listen && i < b->num_listen; i++) {
		CHANGED(strcmp(a->listen[i].text, b->listen[i].text) != 0 || a->listen[i].proxy != b->listen[i].proxy,
			"listen");
	}
	CHANGED(a->num_sinks != b->num_sinks, "sink");
	for (unsigned i = 0; i < a->num_sinks && i < b->num_sinks; i++) {
		CHANGED(strcmp(a->sinks[i], b->sinks[i]) != 0, "sink");
	}
	CHANGED(a->shards != b->shards, "shards");
	CHANGED(strcmp(a->spool_dir, b->spool_dir) != 0, "spool");
	CHANGED(strcmp(a->hostname, b->hostname) != 0, "hostname");
	CHANGED(a->max_msg_size != b->max_msg_size || a->max_rcpts != b->max_rcpts || a->max_bad_cmds != b->max_bad_cmds ||
			a->max_cmd_line != b->max_cmd_line || a->max_text_line != b->max_text_line,
		"message limits");
	CHANGED(a->timeout_cmd != b->timeout_cmd || a->timeout_data != b->timeout_data ||
			a->timeout_commit != b->timeout_commit || a->timeout_session != b->timeout_session,
		"timeouts");
	CHANGED(a->dkim != b->dkim || a->spf != b->spf || a->dmarc != b->dmarc || a->arc != b->arc ||
			a->dmarc_enforce != b->dmarc_enforce,
		"verification");
	CHANGED((a->num_tls_certs == 0) != (b->num_tls_certs == 0) || a->tls_required != b->tls_required, "tls on/off");
	CHANGED(a->num_milters != b->num_milters || a->milter_timeout_ms != b->milter_timeout_ms ||
			a->milter_connect_timeout_ms != b->milter_connect_timeout_ms ||
			a->milter_default_action != b->milter_default_action,
		"milter");
	for (unsigned i = 0; i < a->num_milters && i < b->num_milters; i++) {
		CHANGED(strcmp(a->milters[i], b->milters[i]) != 0, "milter");
	}
	CHANGED((a->max_conn_rate == 0 && a->max_msg_rate == 0 && a->max_tls_rate == 0) !=
			(b->max_conn_rate == 0 && b->max_msg_rate == 0 && b->max_tls_rate == 0) ||
			(a->max_msg_rate == 0) != (b->max_msg_rate == 0) || (a->max_tls_rate == 0) != (b->max_tls_rate == 0),
		"rates on/off");
#undef CHANGED
	if (n == 0 && cap > 0) {
		out[0] = '\0';
	}
}

/*
 * reload reads the configuration again (SIGHUP) and applies what can
 * change safely while mail flows: the log level, the TLS certificates,
 * the recipient domains, the connection caps and rates. A file with an
 * error changes nothing. What needs a restart is named in the log.
 */
static void reload(const struct cfg *cur, struct shard_global *g, struct domain_holder *dh)
{
	struct cfg nc;
	char *err = NULL, restart[512];
	struct domain_list *dl = NULL;

	cfg_init(&nc);
	if (cfg_parse_args(&nc, saved_argc, saved_argv, saved_first, &err) != 0 || cfg_finish(&nc, &err) != 0 ||
	    (nc.domains != NULL && domain_list_parse(&dl, nc.domains) != 0)) {
		log_line(LOG_ERR, "main", "config.reload error=\"%s\" (the running configuration stays)",
			 err ? err : "domains: not a list of domain names");
		free(err);
		cfg_fini(&nc);
		return;
	}
	if (nc.num_tls_certs > 0 && g->tls != NULL) {
		struct tls_store *st = tls_load(&nc, true); /* keeps the old ones and says why on error */

		if (st != NULL) {
			tls_holder_set(g->tls, st);
			log_line(LOG_NOTICE, "main", "tls.reload certificates=%u", nc.num_tls_certs);
		}
	}
	if (dh->num_retired < RETIRED_MAX) {
		struct domain_list *old = (struct domain_list *)atomic_exchange_explicit(&dh->cur, dl, memory_order_acq_rel);

		if (old != NULL) {
			dh->retired[dh->num_retired++] = old;
		}
	} else {
		domain_list_free(dl);
		log_line(LOG_WARN, "main", "config.reload domains not changed (%d reloads: restart to change them)",
			 RETIRED_MAX);
	}
	limits_set(g->limits, nc.max_conns, nc.max_conns_per_ip);
	if (g->rates != NULL) {
		rate_set(g->rates, (const uint32_t[RATE_KINDS]){ nc.max_conn_rate, nc.max_msg_rate, nc.max_tls_rate });
	}
	atomic_store_explicit(&g->max_input_rate, nc.max_input_rate, memory_order_relaxed);
	__atomic_store_n(&log_level_current, (enum log_level)nc.log_level, __ATOMIC_RELAXED);
	changed_restart(cur, &nc, restart, sizeof(restart));
	log_line(LOG_NOTICE, "main",
		 "config.reload applied=log-level,tls-certs,domains,connection-limits,rates,input-rate%s%s",
		 restart[0] ? " restart_needed=" : "", restart);
	cfg_fini(&nc);
}

static int serve(struct cfg *cfg, bool check_only)
{
	struct sink sinks[CFG_SINK_MAX];
	struct sink_ctx sctx = { .hostname = cfg->hostname };
	struct domain_list *domains = NULL;
	static struct domain_holder dh; /* read by every shard; lives until exit */
	struct smtp_cfg scfg;
	struct shard_global g;
	struct deliver_global dg;
	struct deliver *workers[64] = { 0 };
	struct shard *shards[64] = { 0 };
	struct spool_dirs dirs = { -1, -1, -1 };
	struct metrics_core mc;
	struct metrics_http *mhttp = NULL;
	struct spool_log *logs[64] = { 0 };
	int listen_fds[64][CFG_LISTEN_MAX];
	bool listen_handed[64] = { false };
	unsigned num_logs = 0;
	int rc = EXIT_OK;
	unsigned num_sinks = 0, i;
	sigset_t set;
	char *err = NULL;

	memset(&g, 0, sizeof(g));
	memset(&mc, 0, sizeof(mc));
	for (i = 0; i < 64; i++) {
		for (unsigned k = 0; k < CFG_LISTEN_MAX; k++) {
			listen_fds[i][k] = -1;
		}
	}
	g.listen_fds = listen_fds;
	/* Serving, the sinks are configured after privileges are dropped, so
	 * the directories they make belong to --user. */
	if (check_only && (rc = configure_sinks(cfg, &sctx, sinks, &num_sinks)) != EXIT_OK) {
		goto out;
	}
	if (cfg->domains != NULL && domain_list_parse(&domains, cfg->domains) != 0) {
		fprintf(stderr, "oceanmx: domains: \"%s\" is not a list of domain names\n", cfg->domains);
		rc = EXIT_CONFIG;
		goto out;
	}
	if (cfg->num_tls_certs > 0) {
		struct tls_store *st = tls_load(cfg, false);

		if (st == NULL || (g.tls = tls_holder_new(st)) == NULL) {
			tls_store_unref(st);
			rc = EXIT_CONFIG;
			goto out;
		}
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
	scfg.mail_ok = cfg->max_msg_rate != 0 ? shard_mail_ok : NULL;
	scfg.tls_ok = cfg->max_tls_rate != 0 ? shard_tls_ok : NULL;
	scfg.tls_offered = g.tls != NULL;
	scfg.tls_required = cfg->tls_required;
	/* Sessions ask the holder, so SIGHUP can swap the list under them. */
	atomic_store(&dh.cur, domains);
	domains = NULL;
	scfg.domain_ok = domain_holder_match;
	scfg.domain_arg = &dh;

	if (!listen_addresses_free(cfg)) {
		rc = EXIT_STARTUP;
		goto out;
	}
	raise_nofile(cfg); /* as root, the hard limit can go up too */
	/* One SO_REUSEPORT socket per shard per address, bound now: port 25
	 * needs root, which is dropped next. */
	for (i = 0; i < cfg->shards && i < 64; i++) {
		for (unsigned k = 0; k < cfg->num_listen; k++) {
			int lrc = shard_listen(&cfg->listen[k], &listen_fds[i][k]);

			if (lrc != 0) {
				fprintf(stderr, "oceanmx: listen %s: %s\n", cfg->listen[k].text, strerror(-lrc));
				rc = EXIT_STARTUP;
				goto out;
			}
		}
	}
	if (privs_drop(cfg, &err) != 0) {
		fprintf(stderr, "oceanmx: %s\n", err ? err : "cannot drop privileges");
		free(err);
		rc = EXIT_STARTUP;
		goto out;
	}
	if ((rc = configure_sinks(cfg, &sctx, sinks, &num_sinks)) != EXIT_OK) {
		goto out;
	}
	if ((rc = spool_open(&dirs, cfg->spool_dir)) != 0 ||
	    (!check_only && (rc = spool_write_sinks(cfg->spool_dir, cfg->sinks, cfg->num_sinks)) != 0)) {
		fprintf(stderr, "oceanmx: spool %s: %s\n", cfg->spool_dir, strerror(-rc));
		rc = EXIT_STARTUP;
		goto out;
	}
	g.cfg = cfg;
	atomic_store_explicit(&g.max_input_rate, cfg->max_input_rate, memory_order_relaxed);
	g.smtp = &scfg;
	g.dirs = &dirs;
	g.limits = limits_new(cfg->max_conns, cfg->max_conns_per_ip);
	g.rates = NULL;
	if ((cfg->max_conn_rate != 0 || cfg->max_msg_rate != 0 || cfg->max_tls_rate != 0) &&
	    (g.rates = rate_new((const uint32_t[RATE_KINDS]){ cfg->max_conn_rate, cfg->max_msg_rate,
							      cfg->max_tls_rate })) == NULL) {
		rc = EXIT_STARTUP;
		goto out;
	}
	atomic_init(&g.stopping, false);
	dg.sinks = sinks;
	dg.num_sinks = num_sinks;
	dg.dirs = &dirs;
	dg.hostname = cfg->hostname;
	dg.retry_first_ms = (int64_t)cfg->sink_retry_first * 1000;
	dg.retry_max_ms = (int64_t)cfg->sink_retry_max * 1000;
	dg.max_age_us = (int64_t)cfg->sink_max_age * 1000000;
	dg.forward_after_ms = (int64_t)cfg->spool_forward_after * 1000;
	if (g.limits == NULL) {
		rc = EXIT_STARTUP;
		goto out;
	}
	num_logs = spool_shards_present(dirs.log);
	if (num_logs < cfg->shards) {
		num_logs = cfg->shards;
	}
	if (num_logs > 64) {
		fprintf(stderr, "oceanmx: spool %s: more than 64 shards' logs\n", cfg->spool_dir);
		rc = EXIT_STARTUP;
		goto out;
	}
	for (i = 0; i < num_logs; i++) {
		logs[i] = spool_log_new(dirs.log, i, cfg->spool_segment_size, cfg->spool_max_size / num_logs, num_sinks);
		if (logs[i] == NULL) {
			rc = EXIT_STARTUP;
			goto out;
		}
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
	if (cfg->dkim || cfg->spf || cfg->dmarc || cfg->arc || cfg->num_dnsbl_zones > 0 || cfg->rspamd != NULL ||
	    cfg->num_milters > 0) {
		struct milter_conf mconf[CFG_MILTER_MAX];
		struct vpool_cfg vc = {
			.rspamd_url = cfg->rspamd,
			.rspamd_timeout_ms = cfg->rspamd_timeout_ms,
			.milters = mconf,
			.num_milters = cfg->num_milters,
			.workers = cfg->verify_workers,
			.dns = cfg->dns,
			.dns_timeout_ms = cfg->dns_timeout_ms,
			.dns_cache_bytes = (size_t)cfg->dns_cache_size,
			.max_sigs = cfg->dkim_max_sigs,
			.dmarc = cfg->dmarc,
			.psl_path = cfg->psl,
		};

		for (unsigned m = 0; m < cfg->num_milters; m++) {
			/* Checked when the config was read; the flags' defaults are known only now. */
			if (milter_conf_parse(&mconf[m], cfg->milters[m], cfg->milter_timeout_ms, cfg->milter_connect_timeout_ms,
					      (enum milter_default)cfg->milter_default_action, &err) != 0) {
				fprintf(stderr, "oceanmx: %s\n", err ? err : "milter: invalid");
				free(err);
				rc = EXIT_STARTUP;
				goto stop;
			}
		}
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
	mc.shards = shards;
	mc.num_shards = cfg->shards < 64 ? cfg->shards : 64;
	mc.workers = workers;
	mc.num_workers = mc.num_shards;
	mc.sinks = sinks;
	mc.num_sinks = num_sinks;
	mc.vpool = g.vpool;
	mc.stopping = &g.stopping;
	mc.spool_fd = dirs.log;
	mc.logs = logs;
	mc.num_logs = num_logs;
	mc.version = OMX_VERSION;
	mc.start_unix = (int64_t)time(NULL);
	atomic_init(&mc.listening, false);
	if (recover_spool(logs, num_logs, workers, i) != 0 || (mhttp != NULL && metrics_core_register(&mc) != 0)) {
		rc = EXIT_STARTUP;
		goto stop;
	}
	for (i = 0; i < cfg->shards && i < 64; i++) {
		listen_handed[i] = true; /* shard_start takes them, failing or not */
		if ((shards[i] = shard_start(&g, i, workers[i], logs[i])) == NULL) {
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
			/* Files are read here, on the main thread; shards only take
			 * a reference to whichever TLS store is current at STARTTLS,
			 * and read the domain list through the holder. */
			reload(cfg, &g, &dh);
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
	for (i = 0; i < 64; i++) {
		shard_join(shards[i]);
	}
	/* /readyz said 503 (stopping) while the shards drained; the shards'
	 * counters stay readable until shard_free, after the endpoint stopped. */
	metrics_http_stop(mhttp);
	metrics_registry_clear();
	/* Shards are done (each waited for its verify jobs), so the pool is
	 * idle; its workers may still be waking a shard's inbox, so the shards
	 * are freed only once the pool has stopped. */
	vpool_stop(g.vpool);
	for (i = 0; i < 64; i++) {
		shard_free(shards[i]);
	}
	/* Shards are gone, so nothing more is queued: workers drain and stop. */
	for (i = 0; i < 64; i++) {
		deliver_stop(workers[i]);
	}
	if (rc == EXIT_OK) {
		log_line(LOG_NOTICE, "main", "stopped");
	}
	log_stop_async();
out:
	for (i = 0; i < 64; i++) {
		for (unsigned k = 0; k < CFG_LISTEN_MAX && !listen_handed[i]; k++) {
			if (listen_fds[i][k] >= 0) {
				close(listen_fds[i][k]);
			}
		}
	}
	for (i = 0; i < num_sinks; i++) {
		sink_unconfigure(&sinks[i]);
	}
	domain_list_free(domains);
	domain_list_free((struct domain_list *)atomic_load(&dh.cur));
	atomic_store(&dh.cur, NULL);
	for (i = 0; i < dh.num_retired; i++) {
		domain_list_free(dh.retired[i]);
	}
	dh.num_retired = 0;
	tls_holder_free(g.tls);
	limits_free(g.limits);
	rate_free(g.rates);
	for (i = 0; i < 64; i++) {
		spool_log_free(logs[i]);
	}
	spool_close(&dirs);
	return rc;
}

int cmd_parse(int argc, char **argv); /* core/cmd_parse.c */
int cmd_verify(int argc, char **argv); /* core/cmd_verify.c */
int cmd_spool(int argc, char **argv); /* core/spool_cmd.c */

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
		if (strcmp(a, "spool") == 0) {
			return cmd_spool(argc - 1, argv + 1);
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
	saved_argc = argc;
	saved_argv = argv;
	saved_first = first;
	log_format_current = (enum log_format)cfg.log_format;
	rc = serve(&cfg, check_only);
	cfg_fini(&cfg);
	return rc;
}
