/*
 * main.c - oceanmx-load: options, message set-up, worker threads, the
 * progress line and the final report (text or --json).
 *
 * Exit status: 0 when every message got its 250 and no connection
 * failed; 1 when anything failed (a reply, a connection, a fatal
 * condition such as a missing extension, or fewer messages delivered
 * than --messages asked for); 2 for a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dkim.h"
#include "load.h"
#include "tls.h"
#include "worker.h"

#define EXIT_USAGE 2

static volatile sig_atomic_t g_signals;

static const char usage_text[] =
	"usage: oceanmx-load [options] HOST:PORT\n"
	"\n"
	"Drives concurrent SMTP sessions against a server and reports messages/s,\n"
	"MiB/s, per-transaction latency percentiles, connection errors and reply\n"
	"codes. A message counts as delivered only after its 250.\n"
	"\n"
	"how much:\n"
	"  -c, --connections N      concurrent sessions (default 20)\n"
	"  -m, --messages M         messages in total (default 10000)\n"
	"  -d, --duration SECONDS   run for this long instead of --messages\n"
	"  -t, --threads N          threads, one io_uring ring each (default: CPUs, at most -c)\n"
	"  -R, --rate MSGS_PER_S    open loop: send at this fixed rate; latency counts from\n"
	"                           the intended send time (no coordinated omission)\n"
	"what:\n"
	"  -s, --size SPEC          message size in octets (k/M suffixes) or a weighted list:\n"
	"                           4096 | 1k:70,64k:25,1M:5 (default 4096)\n"
	"  -r, --recipients N       RCPT TO per message (default 1)\n"
	"      --mode data|bdat     DATA with PIPELINING (default) or BDAT LAST (CHUNKING)\n"
	"  -p, --per-connection N   messages per connection, then QUIT and reconnect\n"
	"                           (default 0: unlimited; 1 = connection churn)\n"
	"      --sender-domains N   vary MAIL FROM/From: over sN.<from domain> (default 1)\n"
	"      --from ADDR          sender (default load@load.test)\n"
	"      --to ADDR            recipient; with -r N>1 the local part gets 1..N\n"
	"                           (default rcpt@example.com)\n"
	"      --helo NAME          EHLO name (default load.test)\n"
	"      --no-chain           never send the next MAIL/RCPT/DATA in the same write as\n"
	"                           a message body (closed loop, DATA, PIPELINING do by default)\n"
	"DKIM:\n"
	"      --dkim rsa|ed25519   sign every message (rsa-sha256 2048-bit / ed25519-sha256)\n"
	"      --dkim-key FILE      PEM private key; created (and kept) if FILE does not exist\n"
	"      --dkim-dns FILE      write the DNS TXT records (zone file syntax) to FILE\n"
	"      --selector NAME      DKIM selector (default " DKIM_SELECTOR ")\n"
	"TLS:\n"
	"      --tls                STARTTLS in every session: EHLO, STARTTLS (the server must\n"
	"                           offer it, or the run fails), TLS handshake (SNI: HOST if\n"
	"                           it is a name), EHLO again, then the transactions inside\n"
	"                           TLS; a full handshake per session, no resumption\n"
	"      --tls-verify         check the server's certificate chain (system CAs) and that\n"
	"                           it names HOST; default: no check (self-signed is fine)\n"
	"      --tls-ca FILE        PEM trust anchors for that check (implies --tls-verify)\n"
	"other:\n"
	"      --timeout SECONDS    wait at most this long for any reply (default 30)\n"
	"      --max-errors N       stop after N connection errors (default 100; 0 = never)\n"
	"      --json               the report as one JSON object on stdout\n"
	"  -q, --quiet              no progress line\n"
	"      --print-message[=N]  write generated message N (default 0; size class *\n"
	"                           sender domains + domain) to stdout and exit\n"
	"  -h, --help\n";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "oceanmx-load: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(oceanmx-load --help for usage)\n");
	exit(EXIT_USAGE);
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
		usage_error("%s: '%s' is not a number in %llu..%llu", opt, s, (unsigned long long)min,
			    (unsigned long long)max);
	}
	return v;
}

static double parse_pos_double(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v > 0) || !isfinite(v)) {
		usage_error("%s: '%s' is not a positive number", opt, s);
	}
	return v;
}

/* parse_target resolves HOST:PORT or [V6]:PORT (numeric or by name). */
static void parse_target(struct load_opts *o, const char *s)
{
	char host[256];
	const char *port;
	struct addrinfo hints, *res = NULL;
	int rc;

	if (s[0] == '[') {
		const char *e = strchr(s, ']');

		if (e == NULL || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host)) {
			usage_error("bad target '%s' (want HOST:PORT or [IPV6]:PORT)", s);
		}
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = '\0';
		port = e + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (colon == NULL || (size_t)(colon - s) >= sizeof(host) || colon == s) {
			usage_error("bad target '%s' (want HOST:PORT)", s);
		}
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
		port = colon + 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		usage_error("cannot resolve '%s': %s", s, gai_strerror(rc));
	}
	o->host = strdup(host);
	if (o->host == NULL) {
		usage_error("out of memory");
	}
	memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
	o->addr_len = res->ai_addrlen;
	o->target = s;
	freeaddrinfo(res);
}

static void split_addr(const char *opt, const char *addr, const char **out_local, const char **out_domain)
{
	const char *at = strrchr(addr, '@');
	char *local;

	if (at == NULL || at == addr || at[1] == '\0' || strpbrk(addr, "<> \r\n") != NULL) {
		usage_error("%s: '%s' is not an address local@domain", opt, addr);
	}
	local = strndup(addr, (size_t)(at - addr));
	if (local == NULL) {
		usage_error("out of memory");
	}
	*out_local = local;
	*out_domain = at + 1;
}

static void on_signal(int sig)
{
	(void)sig;
	g_signals++;
	if (g_signals > 1) {
		_exit(130); /* second ^C: now */
	}
}

/* write_dns emits one zone-file record per sender domain. */
static void write_dns(FILE *f, const struct msgset *ms, const char *selector, const char *txt, unsigned limit)
{
	size_t len = strlen(txt);

	for (unsigned d = 0; d < ms->num_domains && d < limit; d++) {
		fprintf(f, "%s._domainkey.%s. IN TXT (", selector, ms->domains[d]);
		/* RFC 1035 character-strings hold at most 255 octets. */
		for (size_t i = 0; i < len; i += 250) {
			fprintf(f, " \"%.*s\"", (int)(len - i < 250 ? len - i : 250), txt + i);
		}
		fprintf(f, " )\n");
	}
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			fprintf(f, "\\%c", ch);
		} else if (ch < 0x20 || ch >= 0x7f) {
			fprintf(f, "\\u%04x", ch);
		} else {
			fputc(ch, f);
		}
	}
	fputc('"', f);
}

static void json_hist(FILE *f, const char *name, const struct hist *h)
{
	fprintf(f,
		"\"%s\":{\"count\":%llu,\"mean\":%.1f,\"min\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
		"\"p999\":%.1f,\"max\":%.1f}",
		name, (unsigned long long)h->count, hist_mean(h) / 1e3, h->count ? (double)h->min / 1e3 : 0.0,
		(double)hist_quantile(h, 0.5) / 1e3, (double)hist_quantile(h, 0.9) / 1e3,
		(double)hist_quantile(h, 0.99) / 1e3, (double)hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3);
}

static void fmt_dur(char *out, size_t len, uint64_t ns)
{
	if (ns < 1000000) {
		snprintf(out, len, "%.0f us", (double)ns / 1e3);
	} else if (ns < 1000000000ull) {
		snprintf(out, len, "%.2f ms", (double)ns / 1e6);
	} else {
		snprintf(out, len, "%.2f s", (double)ns / 1e9);
	}
}

int main(int argc, char **argv)
{
	enum {
		O_MODE = 256, O_DKIM, O_DKIM_KEY, O_DKIM_DNS, O_SELECTOR, O_SENDER_DOMAINS, O_FROM, O_TO, O_HELO,
		O_TLS, O_TLS_VERIFY, O_TLS_CA, O_TIMEOUT, O_MAX_ERRORS, O_JSON, O_PRINT, O_NO_CHAIN,
	};
	static const struct option longopts[] = {
		{ "connections", required_argument, NULL, 'c' },
		{ "messages", required_argument, NULL, 'm' },
		{ "duration", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 't' },
		{ "rate", required_argument, NULL, 'R' },
		{ "size", required_argument, NULL, 's' },
		{ "recipients", required_argument, NULL, 'r' },
		{ "per-connection", required_argument, NULL, 'p' },
		{ "mode", required_argument, NULL, O_MODE },
		{ "dkim", required_argument, NULL, O_DKIM },
		{ "dkim-key", required_argument, NULL, O_DKIM_KEY },
		{ "dkim-dns", required_argument, NULL, O_DKIM_DNS },
		{ "selector", required_argument, NULL, O_SELECTOR },
		{ "sender-domains", required_argument, NULL, O_SENDER_DOMAINS },
		{ "from", required_argument, NULL, O_FROM },
		{ "to", required_argument, NULL, O_TO },
		{ "helo", required_argument, NULL, O_HELO },
		{ "tls", no_argument, NULL, O_TLS },
		{ "tls-verify", no_argument, NULL, O_TLS_VERIFY },
		{ "tls-ca", required_argument, NULL, O_TLS_CA },
		{ "no-chain", no_argument, NULL, O_NO_CHAIN },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "max-errors", required_argument, NULL, O_MAX_ERRORS },
		{ "json", no_argument, NULL, O_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "print-message", optional_argument, NULL, O_PRINT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct load_run run; /* big (message set): keep it off the stack */
	struct load_opts *o = &run.o;
	struct msgspec spec[MSG_SIZES_MAX];
	unsigned num_spec = 0, sender_domains = 1;
	enum dkim_alg dkim = DKIM_NONE;
	const char *dkim_key = NULL, *dkim_dns = NULL, *selector = DKIM_SELECTOR, *from = "load@load.test";
	const char *to_domain = NULL;
	bool print_message = false, messages_set = false;
	struct lkey key;
	struct msgset_opts mo;
	struct dkim_signer signer;
	long print_index = -1;
	char err[256];
	struct worker *workers[LOAD_THREADS_MAX] = { NULL };
	pthread_t threads[LOAD_THREADS_MAX];
	struct load_stats tot;
	struct hist lat, setup, tls_hs;
	struct sigaction sa;
	sigset_t block, old;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	bool tty, ok;
	double elapsed;
	int64_t t_done, next_progress;
	const char *first_err = "", *tls_desc = "";
	int c;

	memset(&key, 0, sizeof(key));
	o->connections = 20;
	o->messages = 10000;
	o->mode = LOAD_MODE_DATA;
	o->recipients = 1;
	o->timeout = 30;
	o->max_errors = 100;
	o->helo = "load.test";
	o->to = "rcpt@example.com";
	spec[0].size = 4096;
	spec[0].weight = 1;
	num_spec = 1;

	while ((c = getopt_long(argc, argv, "c:m:d:t:R:s:r:p:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->connections = (unsigned)parse_u64("--connections", optarg, 1, LOAD_CONNS_MAX);
			break;
		case 'm':
			o->messages = parse_u64("--messages", optarg, 1, UINT64_MAX / 2);
			messages_set = true;
			break;
		case 'd':
			o->duration = parse_pos_double("--duration", optarg);
			break;
		case 't':
			o->threads = (unsigned)parse_u64("--threads", optarg, 1, LOAD_THREADS_MAX);
			break;
		case 'R':
			o->rate = parse_pos_double("--rate", optarg);
			break;
		case 's':
			if (!sizes_parse(optarg, spec, MSG_SIZES_MAX, &num_spec, err, sizeof(err))) {
				usage_error("--size: %s", err);
			}
			break;
		case 'r':
			o->recipients = (unsigned)parse_u64("--recipients", optarg, 1, LOAD_RCPTS_MAX);
			break;
		case 'p':
			o->per_connection = (unsigned)parse_u64("--per-connection", optarg, 0, UINT32_MAX);
			break;
		case O_MODE:
			if (strcmp(optarg, "data") == 0) {
				o->mode = LOAD_MODE_DATA;
			} else if (strcmp(optarg, "bdat") == 0) {
				o->mode = LOAD_MODE_BDAT;
			} else {
				usage_error("--mode: '%s' (want data or bdat)", optarg);
			}
			break;
		case O_DKIM:
			if (strcmp(optarg, "rsa") == 0) {
				dkim = DKIM_RSA;
			} else if (strcmp(optarg, "ed25519") == 0) {
				dkim = DKIM_ED25519;
			} else {
				usage_error("--dkim: '%s' (want rsa or ed25519)", optarg);
			}
			break;
		case O_DKIM_KEY:
			dkim_key = optarg;
			break;
		case O_DKIM_DNS:
			dkim_dns = optarg;
			break;
		case O_SELECTOR:
			selector = optarg;
			break;
		case O_SENDER_DOMAINS:
			sender_domains = (unsigned)parse_u64("--sender-domains", optarg, 1, MSG_DOMAINS_MAX);
			break;
		case O_FROM:
			from = optarg;
			break;
		case O_TO:
			o->to = optarg;
			break;
		case O_HELO:
			o->helo = optarg;
			break;
		case O_TLS:
			o->tls = true;
			break;
		case O_TLS_VERIFY:
			o->tls_verify = true;
			break;
		case O_TLS_CA:
			o->tls_ca = optarg;
			o->tls_verify = true;
			break;
		case O_NO_CHAIN:
			o->no_chain = true;
			break;
		case O_TIMEOUT:
			o->timeout = parse_pos_double("--timeout", optarg);
			break;
		case O_MAX_ERRORS:
			o->max_errors = parse_u64("--max-errors", optarg, 0, UINT64_MAX);
			break;
		case O_JSON:
			o->json = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case O_PRINT:
			print_message = true;
			print_index = optarg ? (long)parse_u64("--print-message", optarg, 0, 1u << 30) : 0;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return EXIT_USAGE;
		}
	}
	split_addr("--from", from, &o->from_local, &o->from_domain);
	{
		const char *to_local;

		split_addr("--to", o->to, &to_local, &to_domain);
		free((void *)(uintptr_t)to_local);
	}
	if (strpbrk(o->helo, " \r\n") != NULL || strpbrk(selector, " \r\n;") != NULL) {
		usage_error("--helo and --selector take a single word");
	}
	if (o->duration > 0 && messages_set) {
		usage_error("--messages and --duration exclude each other");
	}
	if (o->duration > 0) {
		o->messages = 0;
	}
	if (o->tls_verify && !o->tls) {
		usage_error("--tls-verify and --tls-ca need --tls");
	}
	if ((dkim_key != NULL || dkim_dns != NULL) && dkim == DKIM_NONE) {
		usage_error("--dkim-key and --dkim-dns need --dkim rsa|ed25519");
	}
	if (!print_message) {
		if (optind != argc - 1) {
			usage_error("want exactly one HOST:PORT");
		}
		parse_target(o, argv[optind]);
	} else {
		o->target = optind < argc ? argv[optind] : "-";
	}
	if (o->threads == 0) {
		o->threads = ncpu > 0 ? (unsigned)ncpu : 1;
	}
	if (o->threads > o->connections) {
		o->threads = o->connections;
	}
	if (o->threads > LOAD_THREADS_MAX) {
		o->threads = LOAD_THREADS_MAX;
	}

	/* Keys and messages. */
	if (dkim != DKIM_NONE) {
		struct stat stt;

		if (dkim_key != NULL && stat(dkim_key, &stt) == 0) {
			if (lkey_load(&key, dkim, dkim_key, err, sizeof(err)) != 0) {
				fprintf(stderr, "oceanmx-load: --dkim-key %s\n", err);
				return 1;
			}
		} else {
			if (lkey_generate(&key, dkim) != 0) {
				fprintf(stderr, "oceanmx-load: cannot generate a %s key\n", dkim_alg_name(dkim));
				return 1;
			}
			if (dkim_key != NULL && lkey_save(&key, dkim_key) != 0) {
				fprintf(stderr, "oceanmx-load: cannot write --dkim-key %s: %s\n", dkim_key, strerror(errno));
				return 1;
			}
		}
	}
	memset(&mo, 0, sizeof(mo));
	mo.from_local = o->from_local;
	mo.from_domain = o->from_domain;
	mo.to = o->to;
	mo.num_domains = sender_domains;
	mo.date = time(NULL);
	signer.key = &key;
	signer.selector = selector;
	signer.t = (uint64_t)mo.date;
	if (dkim != DKIM_NONE) {
		mo.sign = dkim_sign_cb;
		mo.sign_arg = &signer;
	}
	if (msgset_build(&run.ms, &mo, spec, num_spec, err, sizeof(err)) != 0) {
		fprintf(stderr, "oceanmx-load: %s\n", err);
		return 1;
	}
	if (dkim != DKIM_NONE) {
		struct bb txt;

		bb_init(&txt, 0);
		if (lkey_dns_txt(&key, &txt) != 0 || bb_append(&txt, "", 1) != 0) {
			fprintf(stderr, "oceanmx-load: cannot encode the public key\n");
			return 1;
		}
		if (dkim_dns != NULL) {
			FILE *f = fopen(dkim_dns, "w");

			if (f == NULL) {
				fprintf(stderr, "oceanmx-load: --dkim-dns %s: %s\n", dkim_dns, strerror(errno));
				return 1;
			}
			write_dns(f, &run.ms, selector, (const char *)txt.p, UINT32_MAX);
			fclose(f);
		}
		if (!print_message) {
			FILE *f = o->json ? stderr : stdout;

			fprintf(f, "DKIM %s: serve these TXT records to the verifier%s:\n", dkim_alg_name(dkim),
				run.ms.num_domains > 3 ? " (first 3; --dkim-dns FILE writes all)" : "");
			write_dns(f, &run.ms, selector, (const char *)txt.p, 3);
		}
		bb_fini(&txt);
	}
	if (print_message) {
		const struct lmsg *m;

		if ((size_t)print_index >= (size_t)run.ms.num_sizes * run.ms.num_domains) {
			usage_error("--print-message=%ld: there are %u sizes x %u sender domains", print_index,
				    run.ms.num_sizes, run.ms.num_domains);
		}
		m = &run.ms.msgs[print_index];

		fwrite(m->head.p, 1, m->head.len, stdout);
		fwrite(m->body, 1, m->body_len, stdout);
		msgset_fini(&run.ms);
		lkey_fini(&key);
		return 0;
	}

	/* Enough descriptors for every connection (plus closes in flight). */
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o->connections * 2 + 64) {
			rl.rlim_cur = (rlim_t)o->connections * 2 + 64;
			if (rl.rlim_cur > rl.rlim_max) {
				rl.rlim_cur = rl.rlim_max;
			}
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}

	if (o->tls) {
		struct ltls_opts to = { .host = o->host, .verify = o->tls_verify, .ca_file = o->tls_ca };

		run.tls_ctx = ltls_ctx_new(&to, err, sizeof(err));
		if (run.tls_ctx == NULL) {
			fprintf(stderr, "oceanmx-load: %s\n", err);
			return 1;
		}
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	run.t_start_ns = mono_ns();
	run.t_end_ns = o->duration > 0 ? run.t_start_ns + (int64_t)(o->duration * 1e9) : INT64_MAX;
	for (unsigned i = 0; i < o->threads; i++) {
		unsigned n = o->connections / o->threads + (i < o->connections % o->threads ? 1 : 0);

		workers[i] = worker_new(&run, i, o->threads, n, err, sizeof(err));
		if (workers[i] == NULL) {
			fprintf(stderr, "oceanmx-load: %s\n", err);
			return 1;
		}
	}
	/* Workers leave signals to the main thread. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	run.t_start_ns = mono_ns();
	if (o->duration > 0) {
		run.t_end_ns = run.t_start_ns + (int64_t)(o->duration * 1e9);
	}
	for (unsigned i = 0; i < o->threads; i++) {
		if (pthread_create(&threads[i], NULL, worker_main, workers[i]) != 0) {
			fprintf(stderr, "oceanmx-load: cannot start thread %u\n", i);
			return 1;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	tty = isatty(STDOUT_FILENO) && !o->json && !o->quiet;
	next_progress = run.t_start_ns + 1000000000LL;
	for (;;) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		bool all = true;
		int64_t now;

		for (unsigned i = 0; i < o->threads; i++) {
			all = all && worker_done(workers[i]);
		}
		if (all) {
			break;
		}
		if (g_signals > 0) {
			__atomic_store_n(&run.stop, 1, __ATOMIC_RELEASE);
		}
		nanosleep(&ts, NULL);
		now = mono_ns();
		if (tty && now >= next_progress) {
			struct load_stats s;
			uint64_t d = 0, f = 0, e = 0;
			double secs = (double)(now - run.t_start_ns) / 1e9;

			for (unsigned i = 0; i < o->threads; i++) {
				worker_stats_peek(workers[i], &s);
				d += s.delivered;
				f += s.failed;
				e += s.conn_errors;
			}
			printf("\r[%6.1fs] delivered %llu  %.0f msg/s  failed %llu  conn errors %llu   ", secs,
			       (unsigned long long)d, d / secs, (unsigned long long)f, (unsigned long long)e);
			fflush(stdout);
			next_progress += 1000000000LL;
		}
	}
	t_done = mono_ns();
	for (unsigned i = 0; i < o->threads; i++) {
		pthread_join(threads[i], NULL);
	}
	if (tty) {
		printf("\r%*s\r", 78, "");
	}

	/* Merge. */
	memset(&tot, 0, sizeof(tot));
	hist_init(&lat);
	hist_init(&setup);
	hist_init(&tls_hs);
	for (unsigned i = 0; i < o->threads; i++) {
		struct load_stats s;
		uint64_t *dst = (uint64_t *)&tot;
		const uint64_t *src = (const uint64_t *)&s;

		worker_stats_peek(workers[i], &s);
		for (size_t k = 0; k < sizeof(s) / sizeof(uint64_t); k++) {
			dst[k] += src[k];
		}
		hist_merge(&lat, worker_lat(workers[i]));
		hist_merge(&setup, worker_setup(workers[i]));
		hist_merge(&tls_hs, worker_tls_hs(workers[i]));
		if (tls_desc[0] == '\0') {
			tls_desc = worker_tls_desc(workers[i]);
		}
		if (first_err[0] == '\0') {
			first_err = worker_first_error(workers[i]);
		}
	}
	elapsed = (double)(t_done - run.t_start_ns) / 1e9;
	ok = !run.fatal && tot.failed == 0 && tot.conn_errors == 0 && tot.delivered > 0 &&
	     (o->messages == 0 || tot.delivered == o->messages);
	if (run.fatal && first_err[0] == '\0') {
		first_err = run.fatal_msg;
	}

	if (o->json) {
		FILE *f = stdout;

		fprintf(f, "{\"target\":");
		json_str(f, o->target);
		fprintf(f, ",\"mode\":\"%s\",\"loop\":\"%s\",\"rate\":%.3f,\"connections\":%u,\"threads\":%u,"
			   "\"per_connection\":%u,\"recipients\":%u,\"dkim\":\"%s\",\"sender_domains\":%u,\"sizes\":[",
			o->mode == LOAD_MODE_BDAT ? "bdat" : "data", o->rate > 0 ? "open" : "closed", o->rate,
			o->connections, o->threads, o->per_connection, o->recipients, dkim_alg_name(dkim), sender_domains);
		for (unsigned i = 0; i < num_spec; i++) {
			fprintf(f, "%s{\"size\":%zu,\"weight\":%u}", i ? "," : "", spec[i].size, spec[i].weight);
		}
		fprintf(f, "],\"messages\":{\"requested\":%llu,\"attempted\":%llu,\"delivered\":%llu,\"failed\":%llu},",
			(unsigned long long)o->messages, (unsigned long long)tot.attempted,
			(unsigned long long)tot.delivered, (unsigned long long)tot.failed);
		fprintf(f, "\"elapsed_s\":%.6f,\"msgs_per_s\":%.1f,\"mib_per_s\":%.3f,\"bytes_delivered\":%llu,", elapsed,
			elapsed > 0 ? tot.delivered / elapsed : 0.0,
			elapsed > 0 ? (double)tot.bytes / 1048576.0 / elapsed : 0.0, (unsigned long long)tot.bytes);
		json_hist(f, "latency_us", &lat);
		fputc(',', f);
		json_hist(f, "setup_latency_us", &setup);
		fprintf(f, ",\"connections_opened\":%llu,\"connection_errors\":%llu,"
			   "\"replies\":{\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu,\"invalid\":%llu},",
			(unsigned long long)tot.conn_opened, (unsigned long long)tot.conn_errors,
			(unsigned long long)tot.replies[2], (unsigned long long)tot.replies[3],
			(unsigned long long)tot.replies[4], (unsigned long long)tot.replies[5],
			(unsigned long long)tot.replies[0]);
		if (o->tls) {
			fprintf(f, "\"tls\":{\"handshakes\":%llu,\"failures\":%llu,\"verify\":%s,\"session\":",
				(unsigned long long)tot.tls_handshakes, (unsigned long long)tot.tls_errors,
				o->tls_verify ? "true" : "false");
			json_str(f, tls_desc);
			fputc(',', f);
			json_hist(f, "handshake_us", &tls_hs);
			fputs("},", f);
		} else {
			fputs("\"tls\":null,", f);
		}
		fprintf(f, "\"interrupted\":%s,\"first_error\":", g_signals ? "true" : "false");
		if (first_err[0] != '\0') {
			json_str(f, first_err);
		} else {
			fputs("null", f);
		}
		fprintf(f, ",\"ok\":%s}\n", ok ? "true" : "false");
	} else {
		char p50[32], p90[32], p99[32], p999[32], mx[32], s50[32], s99[32];

		fmt_dur(p50, sizeof(p50), hist_quantile(&lat, 0.5));
		fmt_dur(p90, sizeof(p90), hist_quantile(&lat, 0.9));
		fmt_dur(p99, sizeof(p99), hist_quantile(&lat, 0.99));
		fmt_dur(p999, sizeof(p999), hist_quantile(&lat, 0.999));
		fmt_dur(mx, sizeof(mx), lat.max);
		fmt_dur(s50, sizeof(s50), hist_quantile(&setup, 0.5));
		fmt_dur(s99, sizeof(s99), hist_quantile(&setup, 0.99));
		printf("oceanmx-load %s: %s, %u connections, %u threads, %s loop", o->target,
		       o->mode == LOAD_MODE_BDAT ? "BDAT" : "DATA", o->connections, o->threads,
		       o->rate > 0 ? "open" : "closed");
		if (o->rate > 0) {
			printf(" at %.0f msg/s", o->rate);
		}
		printf(", %u rcpt, %s%s%s\n", o->recipients, dkim == DKIM_NONE ? "unsigned" : dkim_alg_name(dkim),
		       o->per_connection ? "" : ", persistent sessions", o->tls ? ", STARTTLS" : "");
		printf("messages     attempted %llu, delivered %llu, failed %llu\n", (unsigned long long)tot.attempted,
		       (unsigned long long)tot.delivered, (unsigned long long)tot.failed);
		printf("throughput   %.1f msg/s, %.2f MiB/s over %.3f s\n", elapsed > 0 ? tot.delivered / elapsed : 0.0,
		       elapsed > 0 ? (double)tot.bytes / 1048576.0 / elapsed : 0.0, elapsed);
		printf("latency      p50 %s  p90 %s  p99 %s  p99.9 %s  max %s%s\n", p50, p90, p99, p999, mx,
		       o->rate > 0 ? "  (from intended send time)" : "");
		printf("sessions     opened %llu, errors %llu, setup p50 %s p99 %s\n",
		       (unsigned long long)tot.conn_opened, (unsigned long long)tot.conn_errors, s50, s99);
		printf("replies      2xx %llu  3xx %llu  4xx %llu  5xx %llu  invalid %llu\n",
		       (unsigned long long)tot.replies[2], (unsigned long long)tot.replies[3],
		       (unsigned long long)tot.replies[4], (unsigned long long)tot.replies[5],
		       (unsigned long long)tot.replies[0]);
		if (o->tls) {
			char h50[32], h99[32];

			fmt_dur(h50, sizeof(h50), hist_quantile(&tls_hs, 0.5));
			fmt_dur(h99, sizeof(h99), hist_quantile(&tls_hs, 0.99));
			printf("tls          handshakes %llu, failures %llu, p50 %s p99 %s, %s%s\n",
			       (unsigned long long)tot.tls_handshakes, (unsigned long long)tot.tls_errors, h50, h99,
			       tls_desc[0] ? tls_desc : "no session", o->tls_verify ? ", verified" : ", not verified");
		}
		if (first_err[0] != '\0') {
			printf("first error  %s\n", first_err);
		}
		if (g_signals) {
			printf("interrupted\n");
		}
		printf("result       %s\n", ok ? "OK" : "FAILED");
	}
	fflush(stdout);
	if (!ok && o->json && first_err[0] != '\0') {
		fprintf(stderr, "oceanmx-load: %s\n", first_err);
	}
	for (unsigned i = 0; i < o->threads; i++) {
		worker_free(workers[i]);
	}
	ltls_ctx_free(run.tls_ctx);
	msgset_fini(&run.ms);
	lkey_fini(&key);
	return ok ? 0 : 1;
}
