/*
 * sink_lmtp.c - "lmtp:unix:PATH[?timeout=S]" and "lmtp:HOST:PORT[?timeout=S]":
 * an LMTP client (RFC 2033) handing each message to a local delivery agent
 * (Dovecot's lmtp, Cyrus, ...).
 *
 * Each delivery worker keeps one connection, opened at its first message
 * (greeting, LHLO) and reused across messages; it is dropped on any I/O
 * error, timeout or unparseable reply, and opened again at the next message.
 * Per message: MAIL FROM (BODY=8BITMIME / SMTPUTF8 when the envelope says so
 * and the server offers them), RCPT TO per recipient, DATA; with PIPELINING
 * these go out in one write and their replies are read after it (RFC 2920).
 * The body is dot-stuffed as it streams through tx_write (RFC 5321
 * §4.5.2); after the final dot the server answers once per accepted
 * recipient (RFC 2033 §4.2). A transaction that ends before its data (MAIL
 * or every RCPT refused) is closed with RSET; one that must stop inside its
 * data is abandoned by closing the connection (RFC 5321 §4.1.1.4: no
 * delivery without the final dot). Every reply must come within `timeout`
 * seconds (default 60).
 *
 * Outcomes are per recipient (struct lmtp_rcpt) and reduced to the one
 * sink_rc the delivery layer takes per message (lmtp_rc_reduce): all OK ->
 * SINK_OK; any temporary failure -> SINK_TEMPFAIL (the whole message is
 * retried, so recipients that already have it get it again: at least once);
 * only permanent failures -> SINK_PERMFAIL. Each failed recipient is logged
 * with its reply ("lmtp.rcpt"), and the reason names them all.
 *
 * A retry goes only to the recipients that failed temporarily: when a
 * message ends TEMPFAIL, the worker remembers (struct lmtp_settled, by
 * message id) which recipients are settled, delivered or refused for good,
 * and its next attempt leaves them out of the envelope; refused ones stay
 * refused, so once no recipient is pending the message ends OK, or PERMFAIL
 * naming the refused ones (a dead letter). The memory is the worker's, not
 * the spool's: after a restart the retry goes to every recipient again (at
 * least once). Doing it durably needs the delivery layer to keep a
 * recipient set per message and sink in the spool and to take per-recipient
 * outcomes back (a done_rcpt(arg, index, rc, why) call).
 *
 * done() is called from tx_commit: LMTP's 250 after the data is the
 * server's durable acceptance, so there is nothing left for flush(). One
 * connection carries one transaction at a time, so a worker state has at
 * most one open tx (core/deliver.c runs begin/write/commit per message);
 * an overlapping tx_begin fails that tx instead of mixing the streams.
 */
#include "sink_lmtp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../core/bb.h"
#include "../core/log.h"
#include "sink_query.h"

#define LMTP_TIMEOUT_DEFAULT 60      /* seconds per reply */
#define LMTP_TIMEOUT_MAX 3600
#define LMTP_OUT_FLUSH (64 * 1024)   /* body bytes buffered before a write */
#define LMTP_WHY_MAX 160             /* reason kept per recipient */

/* ---------------------------------------------------------------- replies */

void lmtp_reply_parser_init(struct lmtp_reply_parser *p)
{
	memset(&p->cur, 0, sizeof(p->cur));
	p->line_len = 0;
	p->failed = false;
}

const char *lmtp_parse_name(enum lmtp_parse r)
{
	switch (r) {
	case LMTP_PARSE_MORE: return "more";
	case LMTP_PARSE_OK: return "ok";
	case LMTP_PARSE_SYNTAX: return "syntax";
	case LMTP_PARSE_TOO_LONG: return "too_long";
	case LMTP_PARSE_COUNT: break;
	}
	return "?";
}

/* get_num reads 1..3 digits as the part of an enhanced status code (RFC 3463 §2). */
static bool get_num(struct span *c, uint16_t *out)
{
	uint16_t v = 0;
	size_t n = 0;

	while (n < c->len && n < 4 && c->p[n] >= '0' && c->p[n] <= '9') {
		v = (uint16_t)(v * 10 + (c->p[n] - '0'));
		n++;
	}
	if (n == 0 || n > 3) {
		return false;
	}
	span_skip(c, n);
	*out = v;
	return true;
}

/*
 * eat_enhanced removes "class.subject.detail" and the spaces after it from
 * the start of `text` when present, its class matching the reply code's
 * first digit (RFC 3463 §2, RFC 2034 §4). The cursor is unchanged otherwise.
 */
static bool eat_enhanced(struct span *text, char code_class, uint8_t *out_class, uint16_t *out_subject,
			 uint16_t *out_detail)
{
	struct span c = *text;
	uint16_t cls, sub, det;

	if (!get_num(&c, &cls) || cls != (uint16_t)(code_class - '0') || !span_eat_ci(&c, ".") ||
	    !get_num(&c, &sub) || !span_eat_ci(&c, ".") || !get_num(&c, &det) ||
	    (c.len > 0 && c.p[0] != ' ')) {
		return false;
	}
	while (c.len > 0 && c.p[0] == ' ') {
		span_skip(&c, 1);
	}
	*text = c;
	*out_class = (uint8_t)cls;
	*out_subject = sub;
	*out_detail = det;
	return true;
}

static void text_append(struct lmtp_reply *r, struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (r->text_len == LMTP_REPLY_TEXT_MAX) {
			r->truncated = true;
			break;
		}
		uint8_t ch = s.p[i];

		r->text[r->text_len++] = (char)(ch == '\n' || (ch >= 0x20 && ch < 0x7f) ? ch : '?');
	}
	r->text[r->text_len] = '\0';
}

/* reply_line takes one line (no LF, no CR) into p->cur; LMTP_PARSE_OK when it was the last. */
static enum lmtp_parse reply_line(struct lmtp_reply_parser *p, struct span line)
{
	struct lmtp_reply *r = &p->cur;
	uint16_t code;
	bool last;
	struct span text;

	/* RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39. */
	if (line.len < 3 || line.p[0] < '2' || line.p[0] > '5' || line.p[1] < '0' || line.p[1] > '5' ||
	    line.p[2] < '0' || line.p[2] > '9') {
		return LMTP_PARSE_SYNTAX;
	}
	code = (uint16_t)((line.p[0] - '0') * 100 + (line.p[1] - '0') * 10 + (line.p[2] - '0'));
	if (line.len > 3 && line.p[3] != ' ' && line.p[3] != '-') {
		return LMTP_PARSE_SYNTAX;
	}
	last = line.len == 3 || line.p[3] == ' ';
	if (r->num_lines > 0 && code != r->code) {
		return LMTP_PARSE_SYNTAX; /* every line of a reply has its code (§4.2.1) */
	}
	if (r->num_lines == LMTP_REPLY_LINES_MAX) {
		return LMTP_PARSE_TOO_LONG;
	}
	text = line.len > 4 ? span_make(line.p + 4, line.len - 4) : span_make(line.p, 0);
	if (r->num_lines == 0) {
		r->code = code;
		(void)eat_enhanced(&text, (char)line.p[0], &r->enh_class, &r->enh_subject, &r->enh_detail);
	} else {
		uint8_t c8;
		uint16_t s16, d16;

		/* Continuation lines usually repeat the enhanced code: keep only the text. */
		if (r->enh_class != 0) {
			(void)eat_enhanced(&text, (char)line.p[0], &c8, &s16, &d16);
		}
		text_append(r, span_make("\n", 1));
	}
	text_append(r, text);
	r->num_lines++;
	return last ? LMTP_PARSE_OK : LMTP_PARSE_MORE;
}

enum lmtp_parse lmtp_reply_parse(struct lmtp_reply_parser *p, struct lmtp_reply *out, size_t *out_consumed,
				 const uint8_t *in, size_t len)
{
	size_t used = 0;

	*out_consumed = 0;
	if (p->failed) {
		return LMTP_PARSE_SYNTAX;
	}
	while (used < len) {
		size_t room = LMTP_REPLY_LINE_MAX - p->line_len;
		size_t avail = len - used < room ? len - used : room;
		const uint8_t *lf = memchr(in + used, '\n', avail);
		size_t take = lf ? (size_t)(lf - (in + used)) : avail;
		enum lmtp_parse rc;
		struct span line;

		memcpy(p->line + p->line_len, in + used, take);
		p->line_len += take;
		used += take;
		if (lf == NULL) {
			if (p->line_len == LMTP_REPLY_LINE_MAX) {
				p->failed = true;
				*out_consumed = used;
				return LMTP_PARSE_TOO_LONG;
			}
			break;
		}
		used++; /* the LF */
		line = span_make(p->line, p->line_len);
		if (line.len > 0 && line.p[line.len - 1] == '\r') {
			line.len--;
		}
		rc = reply_line(p, line);
		p->line_len = 0;
		if (rc == LMTP_PARSE_MORE) {
			continue;
		}
		*out_consumed = used;
		if (rc != LMTP_PARSE_OK) {
			p->failed = true;
			return rc;
		}
		*out = p->cur;
		memset(&p->cur, 0, sizeof(p->cur));
		return LMTP_PARSE_OK;
	}
	*out_consumed = used;
	return LMTP_PARSE_MORE;
}

bool lmtp_reply_has_keyword(const struct lmtp_reply *r, const char *kw)
{
	size_t kw_len = strlen(kw);
	const char *line = memchr(r->text, '\n', r->text_len); /* the first line is the greeting */

	while (line != NULL) {
		line++;
		if (strncasecmp(line, kw, kw_len) == 0 && (line[kw_len] == '\0' || line[kw_len] == '\n' ||
							   line[kw_len] == ' ')) {
			return true;
		}
		line = strchr(line, '\n');
	}
	return false;
}

enum sink_rc lmtp_reply_rc(const struct lmtp_reply *r)
{
	if (r->code >= 200 && r->code < 300) {
		return SINK_OK;
	}
	return r->code >= 400 && r->code < 500 ? SINK_TEMPFAIL : SINK_PERMFAIL;
}

enum sink_rc lmtp_rc_reduce(const enum sink_rc *rcs, size_t num)
{
	bool perm = false;

	for (size_t i = 0; i < num; i++) {
		if (rcs[i] == SINK_TEMPFAIL) {
			return SINK_TEMPFAIL;
		}
		perm |= rcs[i] != SINK_OK;
	}
	return perm ? SINK_PERMFAIL : SINK_OK;
}

/* ---------------------------------------------------------------- configuration */

struct lmtp_conf {
	char *target;      /* "unix:PATH" or "HOST:PORT", for reasons and logs */
	char *path;        /* unix socket, or NULL */
	char *host, *port; /* TCP, or NULL */
	int timeout_ms;
	char *lhlo;        /* our name in LHLO */
};

static void lmtp_unconfigure(void *conf)
{
	struct lmtp_conf *c = conf;

	if (c == NULL) {
		return;
	}
	free(c->target); c->target = NULL;
	free(c->path); c->path = NULL;
	free(c->host); c->host = NULL;
	free(c->port); c->port = NULL;
	free(c->lhlo); c->lhlo = NULL;
	free(c);
}

/* lmtp_options reads the query string (sinks/sink_query.h): timeout=1..LMTP_TIMEOUT_MAX seconds. */
static int lmtp_options(struct lmtp_conf *c, const char *opts, const char *arg, char **out_err)
{
	struct span cur = span_cstr(opts), key, val;
	bool has_val;
	uint64_t n;

	while (sink_query_next(&cur, &key, &val, &has_val)) {
		if (span_eq(key, span_cstr("timeout")) && has_val && sink_query_uint(val, 1, LMTP_TIMEOUT_MAX, &n)) {
			c->timeout_ms = (int)n * 1000;
		} else {
			return sink_err(out_err, "lmtp: bad option \"%.*s\" in \"%s\" (known: timeout=1..%d seconds)",
				       (int)(val.p + val.len - key.p), key.p, arg, LMTP_TIMEOUT_MAX);
		}
	}
	return 0;
}

static int lmtp_configure(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	static const char usage[] = "lmtp:unix:PATH[?timeout=S] or lmtp:HOST:PORT[?timeout=S]";
	struct lmtp_conf *c = calloc(1, sizeof(*c));
	const char *q = strchr(arg, '?');
	size_t tlen = q ? (size_t)(q - arg) : strlen(arg);

	if (c == NULL || (c->target = strndup(arg, tlen)) == NULL ||
	    (c->lhlo = strdup(ctx->hostname ? ctx->hostname : "localhost")) == NULL) {
		lmtp_unconfigure(c);
		return sink_err(out_err, "lmtp: out of memory");
	}
	c->timeout_ms = LMTP_TIMEOUT_DEFAULT * 1000;
	if (strncmp(c->target, "unix:", 5) == 0) {
		if (c->target[5] == '\0' || strlen(c->target + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			lmtp_unconfigure(c);
			return sink_err(out_err, "lmtp: \"%s\": socket path empty or too long (%s)", arg, usage);
		}
		c->path = strdup(c->target + 5);
	} else {
		/* HOST:PORT, HOST may be [IPv6]. */
		const char *colon = strrchr(c->target, ':');
		const char *h = c->target;
		size_t hlen = colon ? (size_t)(colon - h) : 0;

		if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
			h++;
			hlen -= 2;
		}
		if (colon == NULL || hlen == 0 || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
		    atoi(colon + 1) < 1 || atoi(colon + 1) > 65535) {
			lmtp_unconfigure(c);
			return sink_err(out_err, "lmtp: \"%s\": want unix:PATH or HOST:PORT (%s)", arg, usage);
		}
		c->host = strndup(h, hlen);
		c->port = strdup(colon + 1);
	}
	if ((c->path == NULL && (c->host == NULL || c->port == NULL))) {
		lmtp_unconfigure(c);
		return sink_err(out_err, "lmtp: out of memory");
	}
	if (q != NULL && lmtp_options(c, q + 1, arg, out_err) != 0) {
		lmtp_unconfigure(c);
		return -1;
	}
	*out_conf = c;
	return 0;
}

/* ---------------------------------------------------------------- connection */

/*
 * What an earlier attempt settled for a message that must be retried:
 * per recipient 0 (pending), 1 (delivered) or 2 (refused for good, `why`
 * the first such reason). A small ring per worker: a message whose entry
 * was pushed out is simply retried to every recipient.
 */
#define LMTP_SETTLED_MAX 128
struct lmtp_settled {
	char id[MSG_ID_MAX];       /* "" = free */
	size_t num_rcpts;
	uint8_t *state;            /* num_rcpts entries */
	char why[LMTP_WHY_MAX];
};

struct lmtp_state {
	const struct lmtp_conf *conf;
	struct lmtp_settled settled[LMTP_SETTLED_MAX];
	unsigned settled_next;     /* ring position of the next entry to reuse */
	int fd;                    /* -1 when not connected */
	bool pipelining, eightbit, smtputf8; /* what the server's LHLO reply offers */
	bool connect_failed;       /* in this batch: fail the rest fast (cleared by flush) */
	bool busy;                 /* a tx is open on this state */
	char connect_err[LMTP_WHY_MAX];
	struct lmtp_reply_parser rp;
	uint8_t in[4096];          /* received, not yet parsed: in[in_off..in_len) */
	size_t in_off, in_len;
	struct bb out;             /* to send */
};

/* One recipient's outcome; `why` is the server's reply or our error. */
struct lmtp_rcpt {
	bool skip;      /* settled at an earlier attempt: not in this envelope */
	enum sink_rc rc;
	bool accepted;  /* RCPT got 2xx: it has an answer coming after the data */
	bool final;     /* rc is its outcome */
	char why[LMTP_WHY_MAX];
};

struct sink_tx {
	struct lmtp_state *st;
	const struct msg_env *env;
	struct lmtp_rcpt *rcpts;   /* env->num_rcpts */
	size_t num_accepted;
	bool in_data;              /* DATA got 354: the body is going out */
	bool bol;                  /* the body so far ends at a line start (dot-stuffing) */
	bool failed;               /* the connection failed: unsettled recipients TEMPFAIL with err */
	bool owns;                 /* this tx set st->busy */
	char err[LMTP_WHY_MAX];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_close(struct lmtp_state *st)
{
	if (st->fd >= 0) {
		close(st->fd);
	}
	st->fd = -1;
	st->in_off = st->in_len = 0;
	bb_reset(&st->out, 0);
	lmtp_reply_parser_init(&st->rp);
}

/* fail_conn records why the connection broke in tx (first reason wins) and drops it. */
__attribute__((format(printf, 2, 3))) static int fail_conn(struct sink_tx *tx, const char *fmt, ...)
{
	if (!tx->failed) {
		va_list ap;
		int n = snprintf(tx->err, sizeof(tx->err), "lmtp %s: ", tx->st->conf->target);

		va_start(ap, fmt);
		if (n > 0 && (size_t)n < sizeof(tx->err)) {
			vsnprintf(tx->err + n, sizeof(tx->err) - (size_t)n, fmt, ap);
		}
		va_end(ap);
		tx->failed = true;
	}
	conn_close(tx->st);
	return -1;
}

/* out_send writes the whole output buffer (SO_SNDTIMEO bounds each write). 0 or -errno. */
static int out_send(struct lmtp_state *st)
{
	size_t off = 0;

	while (off < st->out.len) {
		ssize_t n = send(st->fd, st->out.p + off, st->out.len - off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		off += (size_t)n;
	}
	bb_reset(&st->out, 0);
	return 0;
}

/*
 * read_reply reads the next reply within the timeout. 0, or -ETIMEDOUT,
 * -ECONNRESET (closed by the server), -EPROTO (not a reply), -errno.
 */
static int read_reply(struct lmtp_state *st, struct lmtp_reply *out)
{
	int64_t deadline = now_ms() + st->conf->timeout_ms;

	for (;;) {
		if (st->in_off < st->in_len) {
			size_t used;
			enum lmtp_parse r = lmtp_reply_parse(&st->rp, out, &used, st->in + st->in_off,
							     st->in_len - st->in_off);

			st->in_off += used;
			if (r == LMTP_PARSE_OK) {
				return 0;
			}
			if (r != LMTP_PARSE_MORE) {
				return -EPROTO;
			}
		}
		st->in_off = st->in_len = 0;

		struct pollfd pfd = { .fd = st->fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		int rc = left > 0 ? poll(&pfd, 1, (int)left) : 0;

		if (rc < 0 && errno == EINTR) {
			continue;
		}
		if (rc < 0) {
			return -errno;
		}
		if (rc == 0) {
			return -ETIMEDOUT;
		}
		ssize_t n = recv(st->fd, st->in, sizeof(st->in), 0);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				continue;
			}
			return -errno;
		}
		if (n == 0) {
			return -ECONNRESET;
		}
		st->in_len = (size_t)n;
	}
}

static const char *io_error(int err)
{
	switch (err) {
	case -ETIMEDOUT: return "timeout waiting for the server";
	case -ECONNRESET: return "connection closed by the server";
	case -EPROTO: return "unparseable reply";
	default: return strerror(-err);
	}
}

/* connect_fd opens the socket (TCP: each address in turn, within the timeout). fd or -errno. */
static int connect_fd(const struct lmtp_conf *c)
{
	if (c->path != NULL) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			return -errno;
		}
		memcpy(sun.sun_path, c->path, strlen(c->path) + 1);
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		return fd;
	}

	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res, *ai;
	int err = -EHOSTUNREACH, gai = getaddrinfo(c->host, c->port, &hints, &res);

	if (gai != 0) {
		return gai == EAI_NONAME ? -EHOSTUNREACH : -EAGAIN;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		int one = 1, so_err = 0;
		socklen_t sl = sizeof(so_err);

		if (fd < 0) {
			err = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
			err = -errno;
			close(fd);
			continue;
		}
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int rc = poll(&pfd, 1, c->timeout_ms);

		if (rc <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) != 0 || so_err != 0) {
			err = rc == 0 ? -ETIMEDOUT : so_err != 0 ? -so_err : -errno;
			close(fd);
			continue;
		}
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		freeaddrinfo(res);
		return fd;
	}
	freeaddrinfo(res);
	return err;
}

/* conn_open connects, reads the greeting and sends LHLO (RFC 2033 §4.1). 0 or -1 (tx->err). */
static int conn_open(struct sink_tx *tx)
{
	struct lmtp_state *st = tx->st;
	struct lmtp_reply r;
	struct timeval tv = { .tv_sec = st->conf->timeout_ms / 1000 };
	int fd = connect_fd(st->conf), rc;

	if (fd < 0) {
		return fail_conn(tx, "connect: %s", strerror(-fd));
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	st->fd = fd;
	st->in_off = st->in_len = 0;
	lmtp_reply_parser_init(&st->rp);
	if ((rc = read_reply(st, &r)) != 0) {
		return fail_conn(tx, "greeting: %s", io_error(rc));
	}
	if (r.code != 220) {
		return fail_conn(tx, "greeting: %u %.100s", r.code, r.text);
	}
	bb_reset(&st->out, 0);
	if (bb_printf(&st->out, "LHLO %s\r\n", st->conf->lhlo) != 0) {
		return fail_conn(tx, "out of memory");
	}
	if ((rc = out_send(st)) != 0 || (rc = read_reply(st, &r)) != 0) {
		return fail_conn(tx, "LHLO: %s", io_error(rc));
	}
	if (r.code != 250) {
		return fail_conn(tx, "LHLO: %u %.100s", r.code, r.text);
	}
	st->pipelining = lmtp_reply_has_keyword(&r, "PIPELINING");
	st->eightbit = lmtp_reply_has_keyword(&r, "8BITMIME");
	st->smtputf8 = lmtp_reply_has_keyword(&r, "SMTPUTF8");
	return 0;
}

/* conn_alive: is the idle connection still usable (nothing to read, no hang-up)? */
static bool conn_alive(struct lmtp_state *st)
{
	struct pollfd pfd = { .fd = st->fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 0;
}

/* ---------------------------------------------------------------- transactions */

static void rcpt_set(struct lmtp_rcpt *r, enum sink_rc rc, const struct lmtp_reply *rep, const char *what)
{
	r->rc = rc;
	r->final = true;
	if (rc == SINK_OK) {
		r->why[0] = '\0';
	} else if (rep->enh_class != 0) {
		snprintf(r->why, sizeof(r->why), "%s %u %u.%u.%u %.120s", what, rep->code, rep->enh_class, rep->enh_subject,
			 rep->enh_detail, rep->text);
	} else {
		snprintf(r->why, sizeof(r->why), "%s %u %.120s", what, rep->code, rep->text);
	}
	for (char *p = r->why; *p != '\0'; p++) {
		*p = *p == '\n' ? ' ' : *p == '"' ? '\'' : *p; /* one log line, quotable */
	}
	/* The server's text must not set our retry delay (sink.h SINK_WHY_RETRY_AFTER). */
	for (char *p = r->why; (p = strstr(p, SINK_WHY_RETRY_AFTER)) != NULL;) {
		p += strlen(SINK_WHY_RETRY_AFTER) - 1;
		*p = ':';
	}
}

static bool needs_utf8(const struct msg_env *env)
{
	for (const char *p = env->mail_from ? env->mail_from : ""; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80) {
			return true;
		}
	}
	for (size_t i = 0; i < env->num_rcpts; i++) {
		for (const char *p = env->rcpts[i]; *p != '\0'; p++) {
			if ((unsigned char)*p >= 0x80) {
				return true;
			}
		}
	}
	return false;
}

/* rset ends a transaction that did not reach its data; a failure only drops the connection. */
static void rset(struct sink_tx *tx)
{
	struct lmtp_state *st = tx->st;
	struct lmtp_reply r;

	if (st->fd < 0) {
		return;
	}
	bb_reset(&st->out, 0);
	if (bb_append_str(&st->out, "RSET\r\n") != 0 || out_send(st) != 0 || read_reply(st, &r) != 0 || r.code != 250) {
		conn_close(st);
	}
}

/*
 * envelope sends MAIL, RCPT per recipient and DATA (pipelined when
 * offered) and reads their replies into tx->rcpts. Returns 0 when the
 * server answered (tx->in_data tells whether the body goes out), -1 when
 * the connection failed (tx->err); *out_answered tells whether any reply
 * was read (before that, a reused connection may simply have timed out).
 */
static int envelope(struct sink_tx *tx, bool *out_answered)
{
	struct lmtp_state *st = tx->st;
	const struct msg_env *env = tx->env;
	struct lmtp_reply r, mail;
	size_t n = env->num_rcpts;
	int rc;

	*out_answered = false;
	bb_reset(&st->out, 0);
	rc = bb_printf(&st->out, "MAIL FROM:<%s>%s%s\r\n", env->mail_from ? env->mail_from : "",
		       env->body != MSG_BODY_7BIT && st->eightbit ? " BODY=8BITMIME" : "",
		       env->smtputf8 && st->smtputf8 ? " SMTPUTF8" : "");
	if (st->pipelining) {
		for (size_t i = 0; rc == 0 && i < n; i++) {
			if (!tx->rcpts[i].skip) {
				rc = bb_printf(&st->out, "RCPT TO:<%s>\r\n", env->rcpts[i]);
			}
		}
		rc = rc != 0 ? rc : bb_append_str(&st->out, "DATA\r\n");
	}
	if (rc != 0) {
		return fail_conn(tx, "out of memory");
	}
	/* MAIL */
	if ((rc = out_send(st)) != 0 || (rc = read_reply(st, &mail)) != 0) {
		return fail_conn(tx, "MAIL: %s", io_error(rc));
	}
	*out_answered = true;
	if (mail.code / 100 != 2 && !st->pipelining) {
		for (size_t i = 0; i < n; i++) {
			if (!tx->rcpts[i].skip) {
				rcpt_set(&tx->rcpts[i], lmtp_reply_rc(&mail), &mail, "MAIL");
			}
		}
		rset(tx);
		return 0;
	}
	/* RCPT: one reply each; after a refused MAIL they only echo it (RFC 2920 §3.1). */
	for (size_t i = 0; i < n; i++) {
		if (tx->rcpts[i].skip) {
			continue;
		}
		if (!st->pipelining && ((rc = bb_printf(&st->out, "RCPT TO:<%s>\r\n", env->rcpts[i])) != 0 ||
					(rc = out_send(st)) != 0)) {
			return fail_conn(tx, "RCPT: %s", rc == -ENOMEM ? "out of memory" : io_error(rc));
		}
		if ((rc = read_reply(st, &r)) != 0) {
			return fail_conn(tx, "RCPT: %s", io_error(rc));
		}
		if (mail.code / 100 != 2) {
			rcpt_set(&tx->rcpts[i], lmtp_reply_rc(&mail), &mail, "MAIL");
		} else if (r.code / 100 == 2) {
			tx->rcpts[i].accepted = true;
			tx->num_accepted++;
		} else {
			rcpt_set(&tx->rcpts[i], lmtp_reply_rc(&r), &r, "RCPT");
		}
	}
	/* DATA */
	if (!st->pipelining) {
		if (tx->num_accepted == 0) {
			rset(tx);
			return 0;
		}
		if ((rc = bb_append_str(&st->out, "DATA\r\n")) != 0 || (rc = out_send(st)) != 0) {
			return fail_conn(tx, "DATA: %s", rc == -ENOMEM ? "out of memory" : io_error(rc));
		}
	}
	if ((rc = read_reply(st, &r)) != 0) {
		return fail_conn(tx, "DATA: %s", io_error(rc));
	}
	if (r.code == 354 && tx->num_accepted > 0) {
		tx->in_data = true;
		tx->bol = true;
		return 0;
	}
	if (r.code / 100 == 2 || r.code / 100 == 3) {
		return fail_conn(tx, "DATA: unexpected %u with %zu recipients accepted", r.code, tx->num_accepted);
	}
	for (size_t i = 0; i < n; i++) {
		if (tx->rcpts[i].accepted) {
			tx->rcpts[i].accepted = false;
			rcpt_set(&tx->rcpts[i], lmtp_reply_rc(&r), &r, "DATA");
		}
	}
	tx->num_accepted = 0;
	rset(tx);
	return 0;
}

static int lmtp_worker_init(const void *conf, void **out_state)
{
	struct lmtp_state *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		return -ENOMEM;
	}
	st->conf = conf;
	st->fd = -1;
	bb_init(&st->out, 0);
	lmtp_reply_parser_init(&st->rp);
	*out_state = st;
	return 0;
}

static void lmtp_worker_fini(void *state)
{
	struct lmtp_state *st = state;

	if (st->fd >= 0) {
		/* Polite close; the answer does not matter. */
		(void)send(st->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	conn_close(st);
	bb_fini(&st->out);
	for (unsigned i = 0; i < LMTP_SETTLED_MAX; i++) {
		free(st->settled[i].state); st->settled[i].state = NULL;
	}
	free(st);
}

/* settled_find: the entry for env's message, or NULL. */
static struct lmtp_settled *settled_find(struct lmtp_state *st, const struct msg_env *env)
{
	for (unsigned i = 0; i < LMTP_SETTLED_MAX; i++) {
		if (st->settled[i].id[0] != '\0' && strcmp(st->settled[i].id, env->id) == 0 &&
		    st->settled[i].num_rcpts == env->num_rcpts) {
			return &st->settled[i];
		}
	}
	return NULL;
}

/* settled_apply marks the recipients an earlier attempt settled: they stay out of this envelope. */
static void settled_apply(struct lmtp_state *st, struct sink_tx *tx)
{
	const struct lmtp_settled *e = settled_find(st, tx->env);

	for (size_t i = 0; e != NULL && i < e->num_rcpts; i++) {
		if (e->state[i] == 0) {
			continue;
		}
		tx->rcpts[i].skip = true;
		tx->rcpts[i].final = true;
		tx->rcpts[i].rc = e->state[i] == 1 ? SINK_OK : SINK_PERMFAIL;
		if (e->state[i] == 2) {
			snprintf(tx->rcpts[i].why, sizeof(tx->rcpts[i].why), "refused at an earlier attempt: %.120s", e->why);
		}
	}
}

/*
 * settled_keep remembers, for a message that will be retried (`retry`),
 * which recipients are settled; any other outcome ends the message here,
 * so its entry goes.
 */
static void settled_keep(struct lmtp_state *st, const struct sink_tx *tx, bool retry)
{
	struct lmtp_settled *e = settled_find(st, tx->env);
	size_t n = tx->env->num_rcpts;

	if (!retry) {
		if (e != NULL) {
			free(e->state); e->state = NULL;
			e->id[0] = '\0';
		}
		return;
	}
	if (e == NULL) {
		e = &st->settled[st->settled_next];
		st->settled_next = (st->settled_next + 1) % LMTP_SETTLED_MAX;
		free(e->state);
		if ((e->state = calloc(n ? n : 1, 1)) == NULL) {
			e->id[0] = '\0';
			return; /* the retry goes to every recipient */
		}
		snprintf(e->id, sizeof(e->id), "%s", tx->env->id);
		e->num_rcpts = n;
		e->why[0] = '\0';
	}
	for (size_t i = 0; i < n; i++) {
		const struct lmtp_rcpt *r = &tx->rcpts[i];

		if (r->rc == SINK_OK) {
			e->state[i] = 1;
		} else if (r->rc == SINK_PERMFAIL) {
			if (e->state[i] != 2 && e->why[0] == '\0') {
				snprintf(e->why, sizeof(e->why), "%s", r->why);
			}
			e->state[i] = 2;
		}
	}
}

static void tx_free(struct sink_tx *tx)
{
	if (tx->owns) {
		tx->st->busy = false;
	}
	free(tx->rcpts);
	free(tx);
}

static int lmtp_tx_begin(void *state, struct sink_tx **out_tx, const struct msg_env *env)
{
	struct lmtp_state *st = state;
	struct sink_tx *tx = calloc(1, sizeof(*tx));
	bool answered = false;

	if (tx == NULL || (tx->rcpts = calloc(env->num_rcpts ? env->num_rcpts : 1, sizeof(*tx->rcpts))) == NULL) {
		free(tx);
		return -ENOMEM;
	}
	tx->st = st;
	tx->env = env;
	*out_tx = tx;
	settled_apply(st, tx);
	if (st->busy) {
		tx->failed = true;
		snprintf(tx->err, sizeof(tx->err), "lmtp %s: overlapping transactions on one worker", st->conf->target);
		return 0;
	}
	st->busy = true;
	tx->owns = true;
	if (env->smtputf8 && !st->smtputf8 && st->fd >= 0 && needs_utf8(env)) {
		goto no_utf8;
	}
	if (st->fd >= 0 && !conn_alive(st)) {
		conn_close(st); /* the server closed it while idle (or said 421) */
	}
	if (st->fd >= 0) {
		if (envelope(tx, &answered) == 0 || answered) {
			return 0;
		}
		/* The reused connection died before answering: once more on a new one. */
		tx->failed = false;
	}
	if (st->connect_failed) {
		tx->failed = true;
		memcpy(tx->err, st->connect_err, sizeof(tx->err));
		return 0;
	}
	if (conn_open(tx) != 0) {
		st->connect_failed = true;
		memcpy(st->connect_err, tx->err, sizeof(tx->err));
		return 0;
	}
	if (env->smtputf8 && !st->smtputf8 && needs_utf8(env)) {
		goto no_utf8;
	}
	(void)envelope(tx, &answered);
	return 0;
no_utf8:
	/* RFC 6531 §3.4: an internationalised envelope cannot go to a server without SMTPUTF8. */
	for (size_t i = 0; i < env->num_rcpts; i++) {
		tx->rcpts[i].rc = SINK_PERMFAIL;
		tx->rcpts[i].final = true;
		snprintf(tx->rcpts[i].why, sizeof(tx->rcpts[i].why), "server does not offer SMTPUTF8");
	}
	return 0;
}

/* lmtp_tx_write dot-stuffs `bytes` into the output (RFC 5321 §4.5.2) and sends in 64 KiB writes. */
static int lmtp_tx_write(struct sink_tx *tx, struct span bytes)
{
	struct lmtp_state *st = tx->st;
	struct span c = bytes;
	int rc = 0;

	if (!tx->in_data || tx->failed) {
		return 0; /* nothing to send to (the reason is reported at commit) */
	}
	while (c.len > 0 && rc == 0) {
		const uint8_t *lf = memchr(c.p, '\n', c.len);
		size_t n = lf ? (size_t)(lf - c.p) + 1 : c.len;

		if (tx->bol && c.p[0] == '.') {
			rc = bb_append(&st->out, ".", 1);
		}
		rc = rc != 0 ? rc : bb_append(&st->out, c.p, n);
		tx->bol = lf != NULL;
		span_skip(&c, n);
		if (rc == 0 && st->out.len >= LMTP_OUT_FLUSH) {
			rc = out_send(st);
		}
	}
	if (rc != 0) {
		(void)fail_conn(tx, "data: %s", rc == -ENOMEM ? "out of memory" : io_error(rc));
	}
	return 0;
}

/* finish reduces the recipients' outcomes, logs the failed ones, and calls done. */
static void finish(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	const struct msg_env *env = tx->env;
	size_t n = env->num_rcpts, num_bad = 0;
	enum sink_rc stack_rcs[64], *rcs = n <= 64 ? stack_rcs : calloc(n, sizeof(*rcs));
	char why[512], who[64];
	size_t off;
	enum sink_rc rc;

	snprintf(who, sizeof(who), "lmtp %s", env->id);
	for (size_t i = 0; i < n; i++) {
		struct lmtp_rcpt *r = &tx->rcpts[i];

		if (!r->final) {
			r->rc = SINK_TEMPFAIL;
			snprintf(r->why, sizeof(r->why), "%s", tx->failed ? tx->err : "no answer");
		}
		if (rcs != NULL) {
			rcs[i] = r->rc;
		}
		if (r->rc != SINK_OK) {
			num_bad++;
			log_line(LOG_WARN, who, "lmtp.rcpt rcpt=<%s> result=%s reason=\"%s\"", env->rcpts[i],
				 sink_rc_name(r->rc), r->why);
		}
	}
	rc = rcs != NULL ? lmtp_rc_reduce(rcs, n) : SINK_TEMPFAIL;
	if (rcs != stack_rcs) {
		free(rcs);
	}
	settled_keep(tx->st, tx, rc == SINK_TEMPFAIL);
	if (rc == SINK_OK) {
		done(arg, SINK_OK, NULL);
		return;
	}
	/* The reason: the failures of the kind that decided (temporary ones for a TEMPFAIL). */
	off = (size_t)snprintf(why, sizeof(why), "lmtp: %zu of %zu recipients failed", num_bad, n);
	for (size_t i = 0; i < n && off < sizeof(why); i++) {
		if (tx->rcpts[i].rc == rc) {
			off += (size_t)snprintf(why + off, sizeof(why) - off, "; <%s> %s", env->rcpts[i], tx->rcpts[i].why);
		}
	}
	done(arg, rc, why);
}

static void lmtp_tx_commit(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	struct lmtp_state *st = tx->st;
	int rc = 0;

	if (tx->in_data && !tx->failed) {
		/* The message ends with CRLF, then the final dot (RFC 5321 §4.1.1.4). */
		if (!tx->bol) {
			rc = bb_append(&st->out, "\r\n", 2);
		}
		rc = rc != 0 ? rc : bb_append(&st->out, ".\r\n", 3);
		rc = rc != 0 ? rc : out_send(st);
		if (rc != 0) {
			(void)fail_conn(tx, "data: %s", rc == -ENOMEM ? "out of memory" : io_error(rc));
		}
		/* RFC 2033 §4.2: one reply per accepted recipient, in RCPT order. */
		for (size_t i = 0; !tx->failed && i < tx->env->num_rcpts; i++) {
			struct lmtp_reply r;

			if (!tx->rcpts[i].accepted) {
				continue;
			}
			if ((rc = read_reply(st, &r)) != 0) {
				(void)fail_conn(tx, "after data: %s", io_error(rc));
				break;
			}
			rcpt_set(&tx->rcpts[i], lmtp_reply_rc(&r), &r, "data");
		}
	}
	finish(tx, done, arg);
	tx_free(tx);
}

static void lmtp_tx_abort(struct sink_tx *tx)
{
	if (tx->in_data && !tx->failed) {
		/* Inside DATA the only way out is to drop the connection: the server
		 * delivers nothing without the final dot. */
		conn_close(tx->st);
	}
	tx_free(tx);
}

static void lmtp_flush(void *state)
{
	struct lmtp_state *st = state;

	st->connect_failed = false; /* the next batch tries to connect again */
}

const struct sink_ops sink_lmtp_ops = {
	.name = "lmtp",
	.abi = SINK_ABI_VERSION,
	.configure = lmtp_configure,
	.unconfigure = lmtp_unconfigure,
	.worker_init = lmtp_worker_init,
	.worker_fini = lmtp_worker_fini,
	.tx_begin = lmtp_tx_begin,
	.tx_write = lmtp_tx_write,
	.tx_commit = lmtp_tx_commit,
	.tx_abort = lmtp_tx_abort,
	.flush = lmtp_flush,
};
