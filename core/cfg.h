/*
 * cfg.h - the server configuration: one immutable struct built by the main
 * thread from embedded defaults, then an optional config file (-c), then
 * command-line flags. Every flag has a config-file key of the same name
 * (without the leading dashes). Shards and workers hold a const pointer.
 */
#ifndef OMX_CFG_H
#define OMX_CFG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "../proto/smtp_sess.h"
#include "limits.h"

#define CFG_LISTEN_MAX 16
#define CFG_SINK_MAX   7 /* = SPOOL_SINK_BITS: each sink has its done bit in the spool */
#define CFG_CIDR_MAX   64 /* --proxy-trusted blocks */
#define CFG_TLS_MAX    16 /* --tls-cert/--tls-key pairs (TLS_CERTS_MAX) */
#define CFG_METRICS_DEFAULT "127.0.0.1:9025"

/* How the spool makes a batch of messages durable before their 250. */
enum spool_sync {
	SPOOL_SYNC_FSYNC = 0,  /* one fdatasync per segment a batch touched, via the ring (default) */
	SPOOL_SYNC_SYNCFS,     /* one syncfs() per batch on a sync thread */
	SPOOL_SYNC_COUNT       /* sentinel */
};

struct cfg_listen {
	char *text;                   /* as given, for logs */
	bool proxy;                   /* --listen-proxy: connections begin with a PROXY header */
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

#define CFG_MILTER_MAX 8 /* MILTER_MAX */

struct cfg {
	struct cfg_listen listen[CFG_LISTEN_MAX];
	unsigned num_listen;
	struct ip_cidr proxy_trusted[CFG_CIDR_MAX]; /* who may send PROXY headers */
	unsigned num_proxy_trusted;
	char *hostname;
	char *user;                   /* --user: NULL = "oceanmx" when it exists (see core/privs.h) */
	unsigned shards;              /* 0 = one per online CPU */
	char *spool_dir;
	char *sinks[CFG_SINK_MAX];
	unsigned num_sinks;
	char *domains;                /* NULL = any domain */
	uint32_t sink_retry_first;    /* seconds before the first retry after a sink's TEMPFAIL */
	uint32_t sink_retry_max;      /* seconds, the ceiling of the doubling backoff */
	uint32_t sink_max_age;        /* seconds after arrival when a TEMPFAIL becomes a dead letter */
	uint32_t spool_forward_after; /* seconds a record waits for a sink before it is copied forward; 0 = never */
	uint64_t max_msg_size;
	uint32_t max_rcpts;
	uint32_t max_conns;
	uint32_t max_conns_per_ip;    /* 0 = unlimited */
	uint32_t max_conn_rate;       /* connections per minute per client (IPv6: /64); 0 = off */
	uint32_t max_msg_rate;        /* MAIL commands per minute per client; 0 = off */
	uint32_t max_tls_rate;        /* new (not resumed) TLS sessions per minute per client; 0 = off */
	uint64_t max_input_rate;      /* bytes per second one connection may send; 0 = off */
	char *dnsbl;                  /* --dnsbl as given (zones, comma separated); NULL = off */
	char *dnsbl_zones[8];         /* split by cfg_finish (VPOOL_DNSBL_MAX) */
	unsigned num_dnsbl_zones;
	bool dnsbl_reject;            /* 554 5.7.1 at connect when listed (else annotate only) */
	uint32_t max_bad_cmds;
	uint32_t max_cmd_line;
	uint32_t max_text_line;
	uint32_t timeout_cmd;         /* seconds, RFC 5321 §4.5.3.2; per whole command line */
	uint32_t timeout_session;     /* seconds a connection may last; 0 = unlimited */
	uint32_t timeout_data;
	uint32_t timeout_commit;
	uint32_t greet_delay_ms;
	uint32_t shutdown_timeout;
	uint32_t recv_buffers;        /* provided buffers per shard (power of two) */
	uint32_t recv_buffer_size;    /* bytes each */
	enum smtp_bare_policy bare_lf;
	enum spool_sync spool_sync;
	uint64_t spool_segment_size;  /* bytes per log segment */
	uint64_t spool_max_size;      /* all segments of all shards together */
	bool dkim;                    /* verify DKIM signatures (default on) */
	bool spf;                     /* check SPF for MAIL FROM and HELO (default on) */
	bool dmarc;                   /* evaluate DMARC (default on) */
	bool arc;                     /* validate ARC chains (default on) */
	bool dmarc_enforce;           /* p=reject answers 550 5.7.1 (default off: annotate) */
	char *psl;                    /* Public Suffix List path; NULL = Debian's */
	bool dkim_temperror_tempfail; /* answer 451 when a signature's verdict is temperror */
	uint32_t dkim_max_sigs;       /* signatures verified per message */
	uint32_t verify_workers;      /* 0 = one per online CPU */
	char *dns;                    /* upstream resolver ADDR[:PORT]; NULL = /etc/resolv.conf */
	uint32_t dns_timeout_ms;
	uint64_t dns_cache_size;      /* bytes of DNS answers kept by the verify pool */
	char *tls_certs[CFG_TLS_MAX]; /* PEM chains, the first the default; paired by order */
	unsigned num_tls_certs;
	char *tls_keys[CFG_TLS_MAX];  /* PEM private keys, one per chain */
	unsigned num_tls_keys;
	bool tls_required;            /* MAIL before STARTTLS gets 530 5.7.0 */
	uint32_t timeout_tls;         /* seconds from STARTTLS to the end of the handshake */
	char *rspamd;                 /* --rspamd base URL; NULL = no spam check */
	uint32_t rspamd_timeout_ms;   /* whole request (default 5000) */
	bool rspamd_fail_tempfail;    /* a failed check answers 451 4.7.1 (default open: annotate) */
	bool spam_reject_on;          /* --spam-reject-score given */
	double spam_reject_score;     /* a score above it answers 550 5.7.1 */
	char *spam_tempfail_action;   /* rspamd action answered 451 4.7.1; NULL = off */
	char *milters[CFG_MILTER_MAX]; /* --milter specs in order (core/milter_client.h) */
	unsigned num_milters;
	uint32_t milter_timeout_ms;   /* each reply (default 10000) */
	uint32_t milter_connect_timeout_ms; /* default 5000 */
	int milter_default_action;    /* enum milter_default: tempfail (default), accept, reject */
	int log_level;
	int log_format;               /* enum log_format: text (default) or json */
	struct cfg_listen metrics;    /* --metrics ADDR:PORT (text NULL: the default) */
	bool metrics_off;             /* --metrics none */
	bool metrics_default;         /* metrics is CFG_METRICS_DEFAULT, not asked for */
	char *config_file;            /* -c, if any */
};

/* cfg_init fills the embedded defaults (see `oceanmx --help`). */
void cfg_init(struct cfg *c);
void cfg_fini(struct cfg *c);

/*
 * cfg_parse_args applies argv[first..argc) (flags of `serve`), reading a
 * -c/--config file first wherever it appears. On error returns -1 and sets
 * *out_err to a malloc'd "where: key: message" string.
 */
int cfg_parse_args(struct cfg *c, int argc, char **argv, int first, char **out_err);

/*
 * cfg_parse_text applies config-file text (the format of -c FILE) from
 * memory; `name` stands for the file in errors. Same errors as -c.
 */
int cfg_parse_text(struct cfg *c, const char *text, size_t len, const char *name, char **out_err);

/* cfg_finish fills values that depend on others (hostname, listen default). */
int cfg_finish(struct cfg *c, char **out_err);

/* cfg_usage prints the --help text to `f`. */
void cfg_usage(FILE *f);

#endif
