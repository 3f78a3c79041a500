/*
 * sink_stream.c - "unix:PATH[?OPTIONS]" and "tcp:HOST:PORT[?OPTIONS]": stream
 * every message to a consumer listening there, which answers each one
 * (wire format, a contract for consumers: docs/sinks.md; the answer
 * parser: sink_stream.h). Options: window=N (64) messages in flight per
 * connection, connections=N (1), timeout=S (30) per message, json=yes|no
 * (yes), inline_max=BYTES (65536, as the json sink).
 *
 * Per message: "MSG <id> <json_len> <raw_len>\n", the document (exactly the
 * json sink's ID.json, through sink_doc_write; large attachments have a
 * null path: the consumer has them in the raw bytes), the raw message as
 * the sinks receive it, "\n".
 *
 * Per delivery worker (sink.h life cycle): tx_write gathers the raw bytes
 * (and feeds the MIME parser with json=yes); tx_commit builds the frame
 * and queues it; flush sends the queue over up to `connections` sockets
 * with at most `window` unanswered per socket, reads the answers in any
 * order and calls done(). The worker blocks in flush, never longer than
 * the per-message timeout without progress.
 *
 * Invariants: every committed tx is on exactly one list (the worker's
 * queue or one connection's list, in send order) until its done() runs,
 * once; a tx with written bytes stays on its connection: if that
 * connection dies or one of its messages times out, every message on it
 * that was written is TEMPFAIL (the worker retries it, so the consumer may
 * see it twice and drops duplicates by id) and the rest go back to the
 * queue. Sockets connect lazily and reconnect with exponential backoff
 * (STREAM_BACKOFF_FIRST_MS doubling to STREAM_BACKOFF_MAX_MS); with no
 * socket up, queued messages wait at most the timeout, then TEMPFAIL.
 */
#include "sink_stream.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../core/bb.h"
#include "../core/log.h"
#include "../proto/message.h"
#include "../proto/msgdoc.h"
#include "sink.h"
#include "sink_doc.h"
#include "sink_query.h"

#define STREAM_WINDOW_DEFAULT      64
#define STREAM_WINDOW_MAX          100000
#define STREAM_CONNECTIONS_DEFAULT 1
#define STREAM_CONNECTIONS_MAX     64
#define STREAM_TIMEOUT_DEFAULT     30      /* seconds per message */
#define STREAM_TIMEOUT_MAX         86400
#define STREAM_INLINE_MAX_DEFAULT  65536   /* as the json sink */
#define STREAM_BACKOFF_FIRST_MS    100     /* first reconnect wait */
#define STREAM_BACKOFF_MAX_MS      5000    /* reconnect wait ceiling */
#define STREAM_QUEUE_MAX           (64u << 20) /* queued bytes before tx_commit sends */
#define STREAM_IOV_MAX             256     /* iovecs per sendmsg (4 per message) */
#define STREAM_POLL_MAX_MS         1000    /* re-check deadlines at least this often */

struct stream_conf {
	char *target;     /* "unix:PATH" or "tcp:HOST:PORT", for logs and reasons */
	bool is_unix;
	struct sockaddr_un sun;
	char *host, *port; /* tcp */
	uint32_t window, connections, timeout_s;
	bool json;
	size_t inline_max;
	char *authserv_id; /* our hostname: our A-R field fills the document's "auth" */
};

struct stream_conn {
	int fd;                     /* -1: not connected */
	unsigned idx;
	struct sink_tx *head, **tail; /* on this connection, in send order */
	struct sink_tx *unsent;     /* first on the list not completely written; NULL: all written */
	uint32_t num_txs;           /* on the list */
	int64_t next_try_ms;        /* no connect before (CLOCK_MONOTONIC ms) */
	uint32_t backoff_ms;        /* wait after the next failure; 0 once an answer came */
	bool failing;               /* the last connect failed: log only the first of a streak */
	size_t rlen;
	uint8_t rbuf[STREAM_REPLY_MAX];
};

struct stream_state {
	const struct stream_conf *conf;
	struct stream_conn *conns;
	struct sink_tx *queue, **queue_tail; /* committed, on no connection */
	size_t queued_bytes;
	int64_t down_since_ms;               /* 0, or since when the queue waits with no socket up */
	char last_err[160];                  /* why the last connect failed */
};

struct sink_tx {
	struct stream_state *st;
	struct sink_tx *next;
	const struct msg_env *env; /* borrowed until done() or tx_abort() */
	struct message *msg;       /* json=yes, until tx_commit */
	struct bb raw, doc;
	char head[128];            /* "MSG <id> <json_len> <raw_len>\n" */
	size_t head_len;
	size_t sent;               /* bytes of the frame written */
	int64_t deadline_ms;       /* set when its first byte is written */
	sink_done_fn *done;
	void *arg;
};

/* ------------------------------------------------------------ the answer parser */

const char *stream_answer_name(enum stream_answer a)
{
	switch (a) {
	case STREAM_ANS_OK: return "OK";
	case STREAM_ANS_RETRY: return "RETRY";
	case STREAM_ANS_REJECT: return "REJECT";
	case STREAM_ANS_COUNT: break;
	}
	return "?";
}

enum stream_parse stream_reply_parse(struct stream_reply *out, size_t *out_consumed, struct span in)
{
	static const char *const verbs[] = { "OK ", "RETRY ", "REJECT " };
	const uint8_t *lf = in.len > 0 ? memchr(in.p, '\n', in.len < STREAM_REPLY_MAX ? in.len : STREAM_REPLY_MAX)
				       : NULL;
	size_t line_len, i, id_start;

	*out_consumed = 0;
	memset(out, 0, sizeof(*out));
	if (lf == NULL) {
		return in.len >= STREAM_REPLY_MAX ? STREAM_PARSE_TOO_LONG : STREAM_PARSE_MORE;
	}
	*out_consumed = (size_t)(lf - in.p) + 1;
	line_len = (size_t)(lf - in.p);
	if (line_len > 0 && in.p[line_len - 1] == '\r') {
		line_len--;
	}
	for (i = 0; i < STREAM_ANS_COUNT; i++) {
		size_t n = strlen(verbs[i]);

		if (line_len >= n && memcmp(in.p, verbs[i], n) == 0) {
			break;
		}
	}
	if (i == STREAM_ANS_COUNT) {
		return STREAM_PARSE_SYNTAX;
	}
	out->kind = (enum stream_answer)i;
	id_start = strlen(verbs[i]);
	for (i = id_start; i < line_len && in.p[i] > 0x20 && in.p[i] < 0x7f; i++) {
	}
	if (i == id_start || i - id_start > MSG_ID_MAX - 1 || (i < line_len && in.p[i] != ' ')) {
		return STREAM_PARSE_SYNTAX;
	}
	out->id = span_make(in.p + id_start, i - id_start);
	if (i < line_len) {
		i++; /* the SP before the text */
	}
	out->text = span_make(in.p + i, line_len - i);
	for (; i < line_len; i++) {
		uint8_t c = in.p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			return STREAM_PARSE_SYNTAX;
		}
	}
	return STREAM_PARSE_OK;
}

/* ------------------------------------------------------------ configuration */

static void conf_free(struct stream_conf *c)
{
	if (c == NULL) {
		return;
	}
	free(c->target); c->target = NULL;
	free(c->host); c->host = NULL;
	free(c->port); c->port = NULL;
	free(c->authserv_id); c->authserv_id = NULL;
	free(c);
}

/* stream_options reads "key=value&..." into c; unknown keys are errors. */
static int stream_options(struct stream_conf *c, const char *opts, char **out_err)
{
	static const char known[] = "known: window=N, connections=N, timeout=SECONDS, json=yes|no, inline_max=BYTES";
	struct span cur = span_cstr(opts), key, val;
	bool has_val;

	while (sink_query_next(&cur, &key, &val, &has_val)) {
		uint64_t n;

		if (!has_val) {
			return sink_err(out_err, "%s: option \"%.*s\" has no value (%s)", c->target, (int)key.len,
				       (const char *)key.p, known);
		}
		if (span_eq(key, span_cstr("window"))) {
			if (!sink_query_uint(val, 1, STREAM_WINDOW_MAX, &n)) {
				return sink_err(out_err, "%s: window: \"%.*s\" is not a number in 1..%d", c->target,
					       (int)val.len, (const char *)val.p, STREAM_WINDOW_MAX);
			}
			c->window = (uint32_t)n;
		} else if (span_eq(key, span_cstr("connections"))) {
			if (!sink_query_uint(val, 1, STREAM_CONNECTIONS_MAX, &n)) {
				return sink_err(out_err, "%s: connections: \"%.*s\" is not a number in 1..%d", c->target,
					       (int)val.len, (const char *)val.p, STREAM_CONNECTIONS_MAX);
			}
			c->connections = (uint32_t)n;
		} else if (span_eq(key, span_cstr("timeout"))) {
			if (!sink_query_uint(val, 1, STREAM_TIMEOUT_MAX, &n)) {
				return sink_err(out_err, "%s: timeout: \"%.*s\" is not a number of seconds in 1..%d",
					       c->target, (int)val.len, (const char *)val.p, STREAM_TIMEOUT_MAX);
			}
			c->timeout_s = (uint32_t)n;
		} else if (span_eq(key, span_cstr("inline_max"))) {
			if (!sink_query_uint(val, 0, UINT64_MAX / 2, &n)) {
				return sink_err(out_err, "%s: inline_max: \"%.*s\" is not a number of bytes", c->target,
					       (int)val.len, (const char *)val.p);
			}
			c->inline_max = (size_t)n;
		} else if (span_eq(key, span_cstr("json"))) {
			if (!sink_query_bool(val, &c->json)) {
				return sink_err(out_err, "%s: json: \"%.*s\" is not yes or no", c->target, (int)val.len,
					       (const char *)val.p);
			}
		} else {
			return sink_err(out_err, "%s: unknown option \"%.*s\" (%s)", c->target, (int)key.len,
				       (const char *)key.p, known);
		}
	}
	return 0;
}

/* stream_address fills the socket address of c from "PATH" or "HOST:PORT" (addr[0..len)). */
static int stream_address(struct stream_conf *c, const char *addr, size_t len, char **out_err)
{
	const char *colon;
	size_t host_len;
	uint64_t port;

	if (c->is_unix) {
		if (len == 0 || len >= sizeof(c->sun.sun_path)) {
			return sink_err(out_err, "%s: the socket path must have 1 to %zu bytes", c->target,
				       sizeof(c->sun.sun_path) - 1);
		}
		c->sun.sun_family = AF_UNIX;
		memcpy(c->sun.sun_path, addr, len);
		return 0;
	}
	if (len > 0 && addr[0] == '[') { /* [v6]:port */
		const char *rb = memchr(addr, ']', len);

		if (rb == NULL || rb + 1 >= addr + len || rb[1] != ':') {
			return sink_err(out_err, "%s: not HOST:PORT ([ADDR]:PORT for IPv6)", c->target);
		}
		c->host = strndup(addr + 1, (size_t)(rb - addr - 1));
		colon = rb + 1;
		host_len = (size_t)(rb - addr - 1);
	} else {
		colon = memrchr(addr, ':', len);
		if (colon == NULL) {
			return sink_err(out_err, "%s: not HOST:PORT ([ADDR]:PORT for IPv6)", c->target);
		}
		host_len = (size_t)(colon - addr);
		c->host = strndup(addr, host_len);
	}
	if (c->host == NULL) {
		return sink_err(out_err, "%s: out of memory", c->target);
	}
	if (host_len == 0 || !sink_query_uint(span_make((const uint8_t *)colon + 1, (size_t)(addr + len - colon - 1)), 1, 65535, &port)) {
		return sink_err(out_err, "%s: not HOST:PORT with a port in 1..65535", c->target);
	}
	if (asprintf(&c->port, "%u", (unsigned)port) < 0) {
		c->port = NULL;
		return sink_err(out_err, "%s: out of memory", c->target);
	}
	return 0;
}

static int stream_configure(bool is_unix, const struct sink_ctx *ctx, const char *arg, void **out_conf,
			    char **out_err)
{
	struct stream_conf *c = calloc(1, sizeof(*c));
	const char *q = strchr(arg, '?');
	size_t addr_len = q ? (size_t)(q - arg) : strlen(arg);

	if (c == NULL) {
		return sink_err(out_err, "%s: out of memory", is_unix ? "unix" : "tcp");
	}
	c->is_unix = is_unix;
	c->window = STREAM_WINDOW_DEFAULT;
	c->connections = STREAM_CONNECTIONS_DEFAULT;
	c->timeout_s = STREAM_TIMEOUT_DEFAULT;
	c->json = true;
	c->inline_max = STREAM_INLINE_MAX_DEFAULT;
	if (asprintf(&c->target, "%s:%.*s", is_unix ? "unix" : "tcp", (int)addr_len, arg) < 0 ||
	    (c->authserv_id = strdup(ctx->hostname ? ctx->hostname : "localhost")) == NULL) {
		c->target = NULL;
		conf_free(c);
		return sink_err(out_err, "%s: out of memory", is_unix ? "unix" : "tcp");
	}
	if (stream_address(c, arg, addr_len, out_err) != 0 || (q != NULL && stream_options(c, q + 1, out_err) != 0)) {
		conf_free(c);
		return -1;
	}
	*out_conf = c;
	return 0;
}

static int stream_configure_unix(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	return stream_configure(true, ctx, arg, out_conf, out_err);
}

static int stream_configure_tcp(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	return stream_configure(false, ctx, arg, out_conf, out_err);
}

static void stream_unconfigure(void *conf)
{
	conf_free(conf);
}

/* ------------------------------------------------------------ connections */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t frame_len(const struct sink_tx *tx)
{
	return tx->head_len + tx->doc.len + tx->raw.len + 1;
}

static void tx_free(struct sink_tx *tx)
{
	message_free(tx->msg);
	bb_fini(&tx->raw);
	bb_fini(&tx->doc);
	free(tx);
}

/* tx_finish calls the tx's done() (its one call) and frees it. */
static void tx_finish(struct sink_tx *tx, enum sink_rc rc, const char *why)
{
	tx->done(tx->arg, rc, why);
	tx_free(tx);
}

static void backoff(struct stream_conn *c, int64_t now)
{
	c->backoff_ms = c->backoff_ms == 0 ? STREAM_BACKOFF_FIRST_MS
			: c->backoff_ms >= STREAM_BACKOFF_MAX_MS / 2 ? STREAM_BACKOFF_MAX_MS
			: c->backoff_ms * 2;
	c->next_try_ms = now + c->backoff_ms;
}

/*
 * conn_close closes c: its written messages complete as TEMPFAIL with
 * `why` (they are unanswered), the others go back to the front of the
 * queue in order; the next connect waits for the backoff.
 */
static void conn_close(struct stream_state *st, struct stream_conn *c, const char *why)
{
	struct sink_tx *tx, *next, *back = NULL, **back_tail = &back;
	char reason[200];

	close(c->fd);
	c->fd = -1;
	c->rlen = 0;
	snprintf(reason, sizeof(reason), "%s: %s", st->conf->target, why);
	for (tx = c->head; tx != NULL; tx = next) {
		next = tx->next;
		if (tx->sent > 0) {
			tx_finish(tx, SINK_TEMPFAIL, reason);
			continue;
		}
		tx->next = NULL;
		*back_tail = tx;
		back_tail = &tx->next;
		st->queued_bytes += frame_len(tx);
	}
	if (back != NULL) {
		*back_tail = st->queue;
		if (st->queue == NULL) {
			st->queue_tail = back_tail;
		}
		st->queue = back;
	}
	c->head = c->unsent = NULL;
	c->tail = &c->head;
	c->num_txs = 0;
	backoff(c, now_ms());
}

/* connect_fd connects a non-blocking socket to `sa`, waiting at most budget_ms. 0 or -errno. */
static int connect_fd(int *out_fd, const struct sockaddr *sa, socklen_t sa_len, int64_t budget_ms)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0, one = 1;
	socklen_t err_len = sizeof(err);

	if (fd < 0) {
		return -errno;
	}
	if (connect(fd, sa, sa_len) != 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (errno != EINPROGRESS) {
			err = -errno;
		} else if (poll(&p, 1, (int)(budget_ms > 0 ? budget_ms : 0)) != 1) {
			err = -ETIMEDOUT;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) {
			err = -errno;
		} else {
			err = -err;
		}
	}
	if (err != 0) {
		close(fd);
		return err;
	}
	if (sa->sa_family != AF_UNIX) {
		/* A batch ends with a short write; the consumer should not wait 40 ms for it. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	*out_fd = fd;
	return 0;
}

/* conn_open tries to connect c once (at most budget_ms); on failure sets the backoff. */
static void conn_open(struct stream_state *st, struct stream_conn *c, int64_t budget_ms)
{
	const struct stream_conf *cf = st->conf;
	int rc = -ENOENT;

	if (cf->is_unix) {
		rc = connect_fd(&c->fd, (const struct sockaddr *)&cf->sun, sizeof(cf->sun), budget_ms);
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res = NULL, *ai;
		int gai = getaddrinfo(cf->host, cf->port, &hints, &res);

		if (gai != 0) {
			snprintf(st->last_err, sizeof(st->last_err), "resolve %s: %s", cf->host, gai_strerror(gai));
			rc = 1;
		}
		for (ai = res; gai == 0 && ai != NULL; ai = ai->ai_next) {
			if ((rc = connect_fd(&c->fd, ai->ai_addr, ai->ai_addrlen, budget_ms)) == 0) {
				break;
			}
		}
		freeaddrinfo(res);
	}
	if (rc == 0) {
		log_line(c->failing ? LOG_NOTICE : LOG_INFO, "sink", "stream.connected sink=%s conn=%u", cf->target,
			 c->idx);
		c->failing = false;
		return;
	}
	c->fd = -1;
	if (rc < 0) {
		snprintf(st->last_err, sizeof(st->last_err), "connect: %s", strerror(-rc));
	}
	if (!c->failing) {
		log_line(LOG_WARN, "sink", "stream.connect sink=%s conn=%u error=\"%s\" (retrying with backoff)",
			 cf->target, c->idx, st->last_err);
	}
	c->failing = true;
	backoff(c, now_ms());
}

/* conn_send writes what c can take without blocking. 0, or -errno (the caller closes c). */
static int conn_send(struct stream_state *st, struct stream_conn *c, int64_t now)
{
	while (c->unsent != NULL) {
		struct iovec iov[STREAM_IOV_MAX];
		size_t n = 0;
		ssize_t w;

		for (struct sink_tx *tx = c->unsent; tx != NULL && n + 4 <= STREAM_IOV_MAX; tx = tx->next) {
			struct span parts[4] = {
				span_make(tx->head, tx->head_len), bb_span(&tx->doc), bb_span(&tx->raw),
				span_make("\n", 1),
			};
			size_t skip = tx->sent;

			for (size_t k = 0; k < 4; k++) {
				if (skip >= parts[k].len) {
					skip -= parts[k].len;
					continue;
				}
				iov[n].iov_base = (void *)(uintptr_t)(parts[k].p + skip);
				iov[n].iov_len = parts[k].len - skip;
				n++;
				skip = 0;
			}
		}
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };

		w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno == EINTR ? 0 : -errno;
		}
		/* w never passes what the iovecs hold, so c->unsent stays non-NULL while left > 0. */
		for (size_t left = (size_t)w; left > 0;) {
			struct sink_tx *tx = c->unsent;
			size_t room = frame_len(tx) - tx->sent, take = left < room ? left : room;

			if (tx->sent == 0) {
				tx->deadline_ms = now + (int64_t)st->conf->timeout_s * 1000;
			}
			tx->sent += take;
			left -= take;
			if (tx->sent == frame_len(tx)) {
				c->unsent = tx->next;
			}
		}
	}
	return 0;
}

/* conn_answer completes the written message the answer names. false: none (a protocol error). */
static bool conn_answer(struct stream_state *st, struct stream_conn *c, const struct stream_reply *r)
{
	struct sink_tx **pp, *tx;
	char why[200], text[160];

	for (pp = &c->head; *pp != NULL && *pp != c->unsent; pp = &(*pp)->next) {
		tx = *pp;
		if (strlen(tx->env->id) != r->id.len || memcmp(tx->env->id, r->id.p, r->id.len) != 0) {
			continue;
		}
		*pp = tx->next;
		if (c->tail == &tx->next) {
			c->tail = pp;
		}
		c->num_txs--;
		c->backoff_ms = 0; /* a healthy consumer: reconnect at once next time */
		if (r->kind == STREAM_ANS_OK) {
			tx_finish(tx, SINK_OK, NULL);
			return true;
		}
		log_escape(text, sizeof(text), r->text.p, r->text.len);
		snprintf(why, sizeof(why), "%s: %s %s", st->conf->target, stream_answer_name(r->kind),
			 text[0] ? text : "(no reason given)");
		tx_finish(tx, r->kind == STREAM_ANS_RETRY ? SINK_TEMPFAIL : SINK_PERMFAIL, why);
		return true;
	}
	return false;
}

/* conn_recv reads and handles answers. 0, or -1 after closing c. */
static int conn_recv(struct stream_state *st, struct stream_conn *c)
{
	ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, MSG_DONTWAIT);
	char why[160], esc[200];

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		return 0;
	}
	if (n <= 0) {
		snprintf(why, sizeof(why), "connection lost (%s)", n == 0 ? "closed by the consumer" : strerror(errno));
		log_line(LOG_WARN, "sink", "stream.lost sink=%s conn=%u unanswered=%u error=\"%s\"", st->conf->target,
			 c->idx, c->num_txs, why);
		conn_close(st, c, why);
		return -1;
	}
	c->rlen += (size_t)n;
	for (;;) {
		struct stream_reply r;
		size_t used;
		enum stream_parse pr = stream_reply_parse(&r, &used, span_make(c->rbuf, c->rlen));

		if (pr == STREAM_PARSE_MORE) {
			return 0;
		}
		if (pr == STREAM_PARSE_OK && conn_answer(st, c, &r)) {
			memmove(c->rbuf, c->rbuf + used, c->rlen - used);
			c->rlen -= used;
			continue;
		}
		log_escape(esc, sizeof(esc), c->rbuf, used ? used : c->rlen);
		snprintf(why, sizeof(why), "%s", pr == STREAM_PARSE_OK ? "answer for a message not in flight"
						 : pr == STREAM_PARSE_TOO_LONG ? "answer line too long"
						 : "unparseable answer");
		log_line(LOG_WARN, "sink", "stream.bad_answer sink=%s conn=%u error=\"%s\" line=\"%s\" unanswered=%u",
			 st->conf->target, c->idx, why, esc, c->num_txs);
		conn_close(st, c, why);
		return -1;
	}
}

/* ------------------------------------------------------------ worker state */

static int stream_worker_init(const void *conf, void **out_state)
{
	const struct stream_conf *cf = conf;
	struct stream_state *st = calloc(1, sizeof(*st));

	if (st == NULL || (st->conns = calloc(cf->connections, sizeof(*st->conns))) == NULL) {
		free(st);
		return -ENOMEM;
	}
	st->conf = cf;
	st->queue_tail = &st->queue;
	for (unsigned i = 0; i < cf->connections; i++) {
		st->conns[i].fd = -1;
		st->conns[i].idx = i;
		st->conns[i].tail = &st->conns[i].head;
	}
	*out_state = st;
	return 0;
}

static void stream_flush(void *state);

static void stream_worker_fini(void *state)
{
	struct stream_state *st = state;

	stream_flush(st); /* nothing is left after the worker's last flush; this keeps done() exactly once anyway */
	for (unsigned i = 0; i < st->conf->connections; i++) {
		if (st->conns[i].fd >= 0) {
			close(st->conns[i].fd);
		}
	}
	free(st->conns);
	free(st);
}

/* ------------------------------------------------------------ transactions */

static int stream_tx_begin(void *state, struct sink_tx **out_tx, const struct msg_env *env)
{
	struct stream_state *st = state;
	struct sink_tx *tx = calloc(1, sizeof(*tx));

	if (tx == NULL) {
		return -ENOMEM;
	}
	tx->st = st;
	tx->env = env;
	bb_init(&tx->raw, 0);
	bb_init(&tx->doc, 0);
	if (st->conf->json) {
		struct message_opts mo = { .keep_max = st->conf->inline_max };

		if ((tx->msg = message_new(&mo)) == NULL) {
			tx_free(tx);
			return -ENOMEM;
		}
	}
	*out_tx = tx;
	return 0;
}

static int stream_tx_write(struct sink_tx *tx, struct span bytes)
{
	int rc = bb_append_span(&tx->raw, bytes);

	return rc != 0 || tx->msg == NULL ? rc : message_feed(tx->msg, bytes.p, bytes.len);
}

static void stream_tx_abort(struct sink_tx *tx)
{
	tx_free(tx);
}

static void stream_tx_commit(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	struct stream_state *st = tx->st;
	int rc = 0, n;

	tx->done = done;
	tx->arg = arg;
	if (tx->msg != NULL) {
		struct msgdoc_opts o = { .inline_max = st->conf->inline_max, .authserv_id = st->conf->authserv_id };

		rc = sink_doc_write(&tx->doc, tx->msg, tx->env, &o);
		message_free(tx->msg);
		tx->msg = NULL;
	}
	n = snprintf(tx->head, sizeof(tx->head), "MSG %s %zu %zu\n", tx->env->id, tx->doc.len, tx->raw.len);
	if (rc != 0 || n < 0 || (size_t)n >= sizeof(tx->head)) {
		char why[200];

		snprintf(why, sizeof(why), "%s: document: %s", st->conf->target, strerror(rc ? -rc : EINVAL));
		tx_finish(tx, SINK_TEMPFAIL, why);
		return;
	}
	tx->head_len = (size_t)n;
	tx->next = NULL;
	*st->queue_tail = tx;
	st->queue_tail = &tx->next;
	st->queued_bytes += frame_len(tx);
	if (st->queued_bytes > STREAM_QUEUE_MAX) {
		stream_flush(st); /* bounds the memory of a batch of large messages */
	}
}

/* assign moves queued messages to connections with room in their window, the least busy first. */
static void assign(struct stream_state *st)
{
	const struct stream_conf *cf = st->conf;

	while (st->queue != NULL) {
		struct stream_conn *best = NULL;
		struct sink_tx *tx = st->queue;

		for (unsigned i = 0; i < cf->connections; i++) {
			struct stream_conn *c = &st->conns[i];

			if (c->fd >= 0 && c->num_txs < cf->window && (best == NULL || c->num_txs < best->num_txs)) {
				best = c;
			}
		}
		if (best == NULL) {
			return;
		}
		st->queue = tx->next;
		if (st->queue == NULL) {
			st->queue_tail = &st->queue;
		}
		st->queued_bytes -= frame_len(tx);
		tx->next = NULL;
		*best->tail = tx;
		best->tail = &tx->next;
		best->num_txs++;
		if (best->unsent == NULL) {
			best->unsent = tx;
		}
	}
}

/* check_idle closes connections the consumer closed (or wrote to) while nothing was in flight. */
static void check_idle(struct stream_state *st)
{
	for (unsigned i = 0; i < st->conf->connections; i++) {
		struct stream_conn *c = &st->conns[i];
		struct pollfd p = { .fd = c->fd, .events = POLLIN };

		if (c->fd >= 0 && c->num_txs == 0 && poll(&p, 1, 0) == 1) {
			conn_recv(st, c); /* EOF: closed and logged; data: not an answer to anything, closed */
		}
	}
}

/* fail_queue completes every queued message as TEMPFAIL (no socket came up in time). */
static void fail_queue(struct stream_state *st)
{
	char why[200];
	struct sink_tx *tx, *next;
	unsigned n = 0;

	snprintf(why, sizeof(why), "%s: %s", st->conf->target, st->last_err[0] ? st->last_err : "not connected");
	for (tx = st->queue; tx != NULL; tx = next) {
		next = tx->next;
		tx_finish(tx, SINK_TEMPFAIL, why);
		n++;
	}
	log_line(LOG_WARN, "sink", "stream.down sink=%s error=\"%s\" waited=%us tempfail=%u", st->conf->target,
		 st->last_err, st->conf->timeout_s, n);
	st->queue = NULL;
	st->queue_tail = &st->queue;
	st->queued_bytes = 0;
}

static void stream_flush(void *state)
{
	struct stream_state *st = state;
	const struct stream_conf *cf = st->conf;
	const int64_t timeout_ms = (int64_t)cf->timeout_s * 1000;

	if (st->queue == NULL) {
		return; /* every answer is awaited inside flush, so nothing is in flight either */
	}
	check_idle(st);
	for (;;) {
		int64_t now = now_ms(), wake = now + STREAM_POLL_MAX_MS;
		unsigned num_up = 0, num_busy = 0;
		struct pollfd fds[STREAM_CONNECTIONS_MAX];

		for (unsigned i = 0; st->queue != NULL && i < cf->connections; i++) {
			struct stream_conn *c = &st->conns[i];

			if (c->fd < 0 && now >= c->next_try_ms) {
				int64_t budget = st->down_since_ms ? st->down_since_ms + timeout_ms - now : timeout_ms;

				conn_open(st, c, budget);
				now = now_ms();
			}
		}
		assign(st);
		for (unsigned i = 0; i < cf->connections; i++) {
			struct stream_conn *c = &st->conns[i];

			num_up += c->fd >= 0;
			num_busy += c->num_txs > 0;
			if (c->fd < 0 && st->queue != NULL && c->next_try_ms < wake) {
				wake = c->next_try_ms;
			}
		}
		if (st->queue == NULL && num_busy == 0) {
			st->down_since_ms = 0;
			break;
		}
		if (num_up == 0) {
			if (st->down_since_ms == 0) {
				st->down_since_ms = now;
			}
			if (now >= st->down_since_ms + timeout_ms) {
				fail_queue(st);
				st->down_since_ms = 0;
				break;
			}
			if (st->down_since_ms + timeout_ms < wake) {
				wake = st->down_since_ms + timeout_ms;
			}
			poll(NULL, 0, (int)(wake > now ? wake - now : 0));
			continue;
		}
		st->down_since_ms = 0;
		/* Poll every connected socket: answers, room to write, a close. */
		unsigned nfds = 0;

		for (unsigned i = 0; i < cf->connections; i++) {
			struct stream_conn *c = &st->conns[i];

			if (c->fd < 0) {
				continue;
			}
			fds[nfds].fd = c->fd;
			fds[nfds].events = (short)(POLLIN | (c->unsent != NULL ? POLLOUT : 0));
			fds[nfds].revents = 0;
			nfds++;
			for (struct sink_tx *tx = c->head; tx != NULL && tx->sent > 0; tx = tx->next) {
				if (tx->deadline_ms < wake) {
					wake = tx->deadline_ms;
				}
			}
		}
		if (poll(fds, nfds, (int)(wake > now ? wake - now : 0)) < 0 && errno != EINTR) {
			log_line(LOG_ERR, "sink", "stream.poll sink=%s error=\"%s\"", cf->target, strerror(errno));
		}
		now = now_ms();
		for (unsigned i = 0, k = 0; i < cf->connections; i++) {
			struct stream_conn *c = &st->conns[i];
			int rc;

			if (c->fd < 0 || k >= nfds || fds[k].fd != c->fd) {
				continue;
			}
			short ev = fds[k++].revents;

			if ((ev & (POLLIN | POLLHUP | POLLERR)) && conn_recv(st, c) != 0) {
				continue;
			}
			if ((ev & POLLOUT) && (rc = conn_send(st, c, now)) != 0) {
				char why[160];

				snprintf(why, sizeof(why), "connection lost (send: %s)", strerror(-rc));
				log_line(LOG_WARN, "sink", "stream.lost sink=%s conn=%u unanswered=%u error=\"%s\"",
					 cf->target, c->idx, c->num_txs, why);
				conn_close(st, c, why);
				continue;
			}
			for (struct sink_tx *tx = c->head; tx != NULL && tx != c->unsent; tx = tx->next) {
				if (tx->sent > 0 && now >= tx->deadline_ms) {
					char why[160];

					snprintf(why, sizeof(why), "no answer within %us", cf->timeout_s);
					log_line(LOG_WARN, "sink", "stream.timeout sink=%s conn=%u id=%s unanswered=%u",
						 cf->target, c->idx, tx->env->id, c->num_txs);
					conn_close(st, c, why);
					break;
				}
			}
			/* A partly written message counts too: its deadline runs from its first byte. */
			if (c->fd >= 0 && c->unsent != NULL && c->unsent->sent > 0 && now >= c->unsent->deadline_ms) {
				char why[160];

				snprintf(why, sizeof(why), "not written within %us", cf->timeout_s);
				log_line(LOG_WARN, "sink", "stream.timeout sink=%s conn=%u id=%s unanswered=%u", cf->target,
					 c->idx, c->unsent->env->id, c->num_txs);
				conn_close(st, c, why);
			}
		}
	}
}

const struct sink_ops sink_unix_ops = {
	.name = "unix",
	.abi = SINK_ABI_VERSION,
	.configure = stream_configure_unix,
	.unconfigure = stream_unconfigure,
	.worker_init = stream_worker_init,
	.worker_fini = stream_worker_fini,
	.tx_begin = stream_tx_begin,
	.tx_write = stream_tx_write,
	.tx_commit = stream_tx_commit,
	.tx_abort = stream_tx_abort,
	.flush = stream_flush,
};

const struct sink_ops sink_tcp_ops = {
	.name = "tcp",
	.abi = SINK_ABI_VERSION,
	.configure = stream_configure_tcp,
	.unconfigure = stream_unconfigure,
	.worker_init = stream_worker_init,
	.worker_fini = stream_worker_fini,
	.tx_begin = stream_tx_begin,
	.tx_write = stream_tx_write,
	.tx_commit = stream_tx_commit,
	.tx_abort = stream_tx_abort,
	.flush = stream_flush,
};
