/*
 * milter_client.h - one thread that runs the milter conversations (Sendmail
 * milter protocol v6, proto/milter.h) of the verify pool's messages, many
 * in flight at once on non-blocking sockets and one epoll, so a slow or
 * dead milter delays only the messages it is filtering: the workers and
 * the shards never wait for it.
 *
 * What a conversation is (decisions, documented in README "Milters"):
 *   - It streams: the verify pool starts it when the transaction's data
 *     begins (DATA or the first BDAT), with one new connection per message
 *     and milter (no reuse across the transactions of a session): OPTNEG,
 *     CONNECT, HELO, MAIL, each RCPT, DATA at once, then each HEADER, EOH
 *     and BODY chunks (at most 64 KiB each) as the message's bytes reach
 *     the pool's worker, so a milter's work overlaps the transfer; BODYEOB
 *     only once the message is complete, then QUIT; each step preceded by
 *     its macros, skipped or left unanswered as the milter negotiated.
 *   - Every milter gets its own conversation at the same time; each sees
 *     the message as received (not what another milter added). Their
 *     answers combine in --milter order at the end of data: the first
 *     reject, tempfail or discard in that order decides (an answer of
 *     that kind cuts the conversations of the milters after it short).
 *   - A reject or tempfail given at any stage (even at RCPT) is answered
 *     at the end of data, for the whole message: the recipients were
 *     already accepted.
 *   - Header fields a milter adds (ADDHEADER, INSHEADER at any index) go
 *     on top of the stored message with our Authentication-Results; a
 *     CHGHEADER of an occurrence the message does not have is an add (as
 *     libmilter defines it); changing a field the client sent is not
 *     applied in place (counted in the log line as chg_skipped=N), but for
 *     X-Spam-Flag, X-Spam-Score and X-Spam-Status the new value goes on
 *     top and delivery removes the client's fields of that name (as for
 *     rspamd's verdict), so a spam filter's verdict replaces a forged one;
 *     deleting a field the client sent is not applied either.
 *   - Body replacement, recipient and sender changes are offered at
 *     negotiation (libmilter needs every action a milter registered) but
 *     never applied: counted as refused=N in the log line.
 *   - Modifications count only when the final answer accepts the message.
 *   - A milter that can not be reached, times out (--milter-timeout per
 *     reply, SMFIR_PROGRESS restarts it; --milter-connect-timeout) or
 *     breaks the protocol gets its default action: accept (as if it were
 *     not there), tempfail (451 4.7.1) or reject (550 5.7.1).
 *
 * Life of a request (the verify pool's job owns the struct):
 *   milter_req_init(req, milter_client_count(cl)); fill env, done, arg
 *   milter_client_begin(cl, req)      the conversations start; the client
 *                                     borrows env (and req) until done
 *   milter_client_feed(cl, req, bb)   the message's bytes, in order; the
 *                                     client takes the buffer (no copy the
 *                                     caller could realloc under it)
 *   milter_client_end(cl, req, abort) the message is complete; or abort:
 *                                     nobody wants the answer, every open
 *                                     conversation gets SMFIC_ABORT, QUIT
 *   done(arg, req) on the client thread, exactly once and never before
 *   milter_client_end: the result fields are set; the last touch of req by
 *   the client. milter_req_fini(req) frees them.
 * begin, feed and end may come from different threads as long as each
 * happens after the one before (the pool's shard, then its worker).
 */
#ifndef OMX_MILTER_CLIENT_H
#define OMX_MILTER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../proto/milter.h"
#include "bb.h"

#define MILTER_MAX             8      /* --milter given at most this often */
#define MILTER_TIMEOUT_DEFAULT 10000u /* ms for each reply (Postfix milter_command_timeout is 30 s) */
#define MILTER_CONNECT_TIMEOUT_DEFAULT 5000u

/* What a milter that fails is taken to have said (Postfix milter_default_action). */
enum milter_default {
	MILTER_DEF_TEMPFAIL = 0, /* 451 4.7.1 (the default, like Postfix) */
	MILTER_DEF_ACCEPT,       /* go on as if the milter were not configured */
	MILTER_DEF_REJECT,       /* 550 5.7.1 */
	MILTER_DEF_COUNT         /* sentinel */
};

const char *milter_default_name(enum milter_default d);
/* milter_default_parse: "accept", "tempfail" or "reject"; false otherwise. */
bool milter_default_parse(const char *s, enum milter_default *out);

/* One --milter, parsed. */
struct milter_conf {
	char name[128];               /* the address as given (no options), for logs */
	struct sockaddr_storage sa;
	socklen_t sa_len;
	uint32_t timeout_ms;          /* each reply */
	uint32_t connect_timeout_ms;
	enum milter_default def;
};

/*
 * milter_conf_parse reads "unix:PATH" or "inet:HOST:PORT" (HOST an IPv4
 * or IPv6 literal, [v6] allowed, or a name resolved now), optionally
 * followed by "?timeout=MS&connect-timeout=MS&default-action=ACTION" that
 * override the given defaults for this milter. 0, or -EINVAL with
 * *out_err (malloc'd). Main thread (it may resolve a name).
 */
int milter_conf_parse(struct milter_conf *out, const char *spec, uint32_t timeout_ms, uint32_t connect_timeout_ms,
		      enum milter_default def, char **out_err);

/* What the milters are told about the transaction; strings borrowed, NULL means unknown. */
struct milter_env {
	const char *hostname;         /* macro j, and the authserv host */
	const char *client_ip;        /* SMFIC_CONNECT address, {client_addr} */
	uint16_t client_port;
	const char *helo;
	const char *mail_from;        /* without <>, "" for the null sender */
	const char *body;             /* BODY= value, NULL when 7BIT (not given) */
	bool smtputf8;
	const char *const *rcpts;     /* without <> */
	size_t num_rcpts;
	const char *id;               /* queue id, macro i */
	const char *tls_version;      /* {tls_version}, NULL in clear */
	const char *cipher;           /* {cipher} */
};

/* The combined answer of the milters. */
enum milter_verdict {
	MILTER_V_NONE = 0,  /* no milter answered (none ran) */
	MILTER_V_ACCEPT,    /* accept: add `fields` */
	MILTER_V_REJECT,    /* 550 5.7.1 (or the milter's text) */
	MILTER_V_TEMPFAIL,  /* 451 4.7.1 (or the milter's text) */
	MILTER_V_DISCARD,   /* answer 250 and store nothing */
	MILTER_V_COUNT      /* sentinel */
};

const char *milter_verdict_name(enum milter_verdict v);

struct milter_client;
struct milter_req;

typedef void milter_done_fn(void *arg, struct milter_req *req);

/* One milter's conversation within a request: the client thread's. */
struct milter_conv {
	struct milter_req *req;         /* the request it belongs to */
	unsigned midx;                  /* the milter, index into --milter */
	int fd;
	unsigned stage;                 /* the next step to build */
	unsigned step;                  /* the step last built (whose reply is due) */
	uint32_t conn_gen;              /* counts connections, so a stale event is told apart */
	uint32_t events;                /* epoll mask registered */
	uint64_t deadline_ms;           /* UINT64_MAX while it waits for the client's bytes */
	bool awaiting;                  /* a reply is due */
	bool skip_body;                 /* SMFIR_SKIP */
	bool ended;                     /* v holds its answer */
	bool failed;                    /* v is its default action */
	enum milter_verdict v;          /* NONE: cut short after an earlier milter decided */
	uint32_t m_actions, m_proto;    /* negotiated */
	size_t pos;                     /* RCPT index, or message offset of the next header / body byte */
	struct bb out, in;
	size_t out_off;
	struct bb mods;                 /* its fields, kept if the answer accepts */
	char why[MILTER_TEXT_MAX + 1];
	char m_quarantine[MILTER_TEXT_MAX + 1];
	bool m_quarantined;
	char log[160];                  /* its part of the log text */
	unsigned chg_skipped;
	unsigned refused;
	char refused_cmds[9];
};

struct milter_chunk;

struct milter_req {
	const struct milter_env *env; /* borrowed */
	milter_done_fn *done;
	void *arg;
	/* results, set by the client before done */
	enum milter_verdict verdict;
	char why[MILTER_TEXT_MAX + 1];  /* SMFIR_REPLYCODE text ("" for a generic reply) */
	struct bb fields;               /* header fields to put on top, each "Name: value\r\n" */
	char quarantine[MILTER_TEXT_MAX + 1]; /* SMFIR_QUARANTINE reason, "" when not held */
	bool quarantined;
	char log[256];                  /* key=value text for the transaction's log line */
	unsigned chg_skipped;
	unsigned refused;               /* body, recipient or sender changes not applied */
	char refused_cmds[9];           /* their reply letters (the first 8), for the log line */
	/* handed over, under the client's lock */
	struct milter_req *qnext;       /* the client's list of requests with news */
	bool q_listed;
	struct milter_chunk *q_head, **q_tail; /* bytes not taken yet */
	bool q_end, q_abort, q_lost;
	/* the client thread's */
	struct milter_req *next;        /* requests in flight */
	bool active;
	bool complete;                  /* end (or abort) taken */
	bool lost;                      /* bytes lost to an allocation failure */
	struct bb msg;                  /* the message so far: header, empty line, body */
	size_t body_off;                /* where the body starts, once a conversation passed the header */
	unsigned num_conv;
	unsigned conv_alloc;            /* conversations made room for (milter_req_init) */
	struct milter_conv *conv;       /* one per milter; NULL without milters */
};

/*
 * milter_req_init / milter_req_fini: caller storage for one request, with
 * room for `num` conversations (milter_client_count; 0: the request is
 * never begun, and costs nothing but the struct). 0 or -ENOMEM.
 */
int milter_req_init(struct milter_req *req, unsigned num);
void milter_req_fini(struct milter_req *req);

/* milter_client_count: how many milters cl talks to. */
unsigned milter_client_count(const struct milter_client *cl);

/*
 * milter_client_start starts the thread for `num` milters (copied). NULL
 * with *out_err (malloc'd). Main thread.
 */
struct milter_client *milter_client_start(const struct milter_conf *milters, unsigned num, char **out_err);

/* milter_client_begin starts req's conversations (see above). Any thread. */
void milter_client_begin(struct milter_client *cl, struct milter_req *req);

/*
 * milter_client_feed hands the next message bytes over: takes data's
 * buffer (data is left empty). On ENOMEM the milters get their default
 * action. Any thread, after begin, before end.
 */
void milter_client_feed(struct milter_client *cl, struct milter_req *req, struct bb *data);

/* milter_client_end: the message is complete (or, with abort, unwanted); see above. Any thread, last. */
void milter_client_end(struct milter_client *cl, struct milter_req *req, bool abort);

/*
 * milter_client_stop answers everything queued or in flight (each within
 * its deadlines; every begun request must have been ended), then joins
 * and frees. NULL does nothing. Main thread,
 * once nothing submits any more.
 */
void milter_client_stop(struct milter_client *cl);

#endif
