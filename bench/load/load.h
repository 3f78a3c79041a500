/*
 * load.h - shared types of oceanmx-load: the run (options, messages,
 * global counters; read-only once the workers start, except the atomics)
 * and the per-worker statistics that main() merges into the report.
 */
#ifndef OMX_LOAD_LOAD_H
#define OMX_LOAD_LOAD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hist.h"
#include "msggen.h"

#define LOAD_RCPTS_MAX   1000
#define LOAD_THREADS_MAX 64
#define LOAD_CONNS_MAX   200000

enum load_mode {
	LOAD_MODE_DATA = 0, /* MAIL/RCPT/DATA pipelined (RFC 2920), then the body and "." */
	LOAD_MODE_BDAT,     /* MAIL/RCPT/BDAT n LAST + body in one write (RFC 3030) */
	LOAD_MODE_COUNT     /* sentinel */
};

struct load_opts {
	const char *target;        /* "HOST:PORT" as given */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	unsigned connections, threads;
	uint64_t messages;         /* 0 with --duration */
	double duration;           /* seconds; 0 with --messages */
	double rate;               /* msgs/s; 0 = closed loop */
	enum load_mode mode;
	unsigned recipients;
	unsigned per_connection;   /* 0 = unlimited */
	double timeout;            /* seconds to wait for any reply */
	uint64_t max_errors;       /* connection errors that end the run */
	bool tls, json, quiet;
	bool tls_verify;           /* --tls-verify / --tls-ca */
	const char *tls_ca;        /* --tls-ca FILE or NULL */
	const char *host;          /* HOST of the target (SNI, certificate name) */
	bool no_chain;             /* --no-chain: never send MAIL in the same write as a body */
	const char *helo, *from_local, *from_domain, *to;
};

/* Counters of one worker: single writer, read by main with relaxed loads. */
struct load_stats {
	uint64_t attempted, delivered, failed, bytes;
	uint64_t conn_opened, conn_errors;
	uint64_t tls_handshakes, tls_errors; /* --tls: completed / failed handshakes */
	uint64_t replies[6]; /* by first digit; [0] = unparseable */
};

struct ltls_ctx;

struct load_run {
	struct load_opts o;
	struct msgset ms;
	int64_t t_start_ns, t_end_ns; /* t_end_ns: --duration deadline */
	uint64_t claimed;             /* atomic: messages handed out (closed loop and open loop) */
	uint64_t conn_errors;         /* atomic: across workers, for --max-errors */
	int stop;                     /* atomic: 1 = no new messages (signal, fatal, error limit) */
	int fatal;                    /* atomic: 1 = the run cannot succeed (message in fatal_msg) */
	int no_chain;                 /* atomic: 1 = a server refused MAIL sent right after a body */
	struct ltls_ctx *tls_ctx;     /* --tls: the client context, shared by the workers */
	char fatal_msg[256];
};

#endif
