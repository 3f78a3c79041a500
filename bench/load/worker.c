/*
 * worker.c - the oceanmx-load engine: one thread, one io_uring ring,
 * a fixed array of connection slots driven as SMTP clients.
 *
 * Each connection runs "scripts": a list of commands whose replies are
 * checked in order (greeting + EHLO; [RSET] MAIL RCPT... DATA + body;
 * QUIT). Commands go out in groups: with PIPELINING everything up to a
 * group end (DATA, the body, BDAT LAST, EHLO, QUIT) shares one sendmsg;
 * without it, one command per round trip. A message counts as delivered
 * only when the reply to its body is 2xx.
 *
 * io_uring use: connect, one multishot recv per connection into a
 * provided-buffer ring (replies are copied into the connection's reader,
 * so each buffer goes back at once), one sendmsg in flight per
 * connection, cancel-by-fd and close on teardown. Waits use
 * io_uring_submit_and_wait_timeout, bounded by the next intended send
 * time (open loop), the --duration deadline and a 100 ms tick.
 *
 * Invariants:
 *  - A slot is reused only when none of its ops is in flight (inflight
 *    == 0), so no CQE refers to a reused slot; the generation in
 *    user_data is a second check.
 *  - Counters in struct load_stats have one writer (this thread) and are
 *    updated with relaxed atomic stores for the progress line.
 */
#include "worker.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "smtpc.h"
#include "tls.h"

#define RING_ENTRIES 1024
#define PBUF_SIZE    4096
#define PBUF_GROUP   0
#define TICK_NS      (100 * 1000 * 1000LL)
#define IOV_MAX_TX   6
#define TLS_RBUF     16384 /* plaintext out of SSL_read per call (one record) */

enum op {
	OP_NONE = 0, /* never used: a zero user_data is a bug */
	OP_CONNECT,  /* conn */
	OP_RECV,     /* multishot, conn */
	OP_SEND,     /* conn */
	OP_IGNORE,   /* cancel, close: result not needed */
	OP_COUNT     /* sentinel */
};

/* Commands of a script, with the reply each expects. */
enum cmd {
	CMD_GREET = 0, /* nothing sent: the 220 greeting */
	CMD_EHLO,      /* 250 */
	CMD_RSET,      /* 250, after a failed transaction */
	CMD_MAIL,      /* 2xx */
	CMD_RCPT,      /* 2xx */
	CMD_DATA,      /* 354 */
	CMD_DOT,       /* the body and ".": 2xx */
	CMD_BDAT,      /* "BDAT n LAST" and the body: 2xx */
	CMD_QUIT,      /* 221 */
	CMD_STARTTLS,  /* 220 (RFC 3207) */
	CMD_COUNT      /* sentinel */
};

static const char *const cmd_names[CMD_COUNT] = {
	"greeting", "EHLO", "RSET", "MAIL", "RCPT", "DATA", "end of data", "BDAT", "QUIT", "STARTTLS",
};

/* --tls: where a session is on its way to TLS (RFC 3207). */
enum tls_st {
	TLS_OFF = 0, /* plaintext: no --tls, or before STARTTLS */
	TLS_REQ,     /* STARTTLS sent, waiting for its 220 */
	TLS_HS,      /* handshake running: socket bytes are ciphertext from here on */
	TLS_ON,      /* established: commands and replies go through the session */
	TLS_ST_COUNT /* sentinel */
};

enum cstate {
	CS_FREE = 0,   /* slot unused */
	CS_CONNECTING, /* connect in flight */
	CS_HELLO,      /* greeting + EHLO script */
	CS_READY,      /* idle between transactions (open loop waits here) */
	CS_TX,         /* transaction script */
	CS_QUIT,       /* QUIT script */
	CS_CLOSING,    /* waiting for its ops to end */
	CS_COUNT       /* sentinel */
};

struct lconn {
	uint32_t idx, gen;
	int fd;
	enum cstate st;
	uint32_t inflight;
	bool recv_armed, send_inflight;
	bool pipelining, chunking;
	bool tx_failed, need_rset;
	bool on_idle, on_bufwait;
	unsigned msgs; /* transactions started on this connection */
	struct smtpc_rd rd;

	/* current script */
	enum cmd cmds[LOAD_RCPTS_MAX + 8];
	uint32_t off[LOAD_RCPTS_MAX + 8], len[LOAD_RCPTS_MAX + 8]; /* text in cmdbuf */
	unsigned num_cmds, next_send, next_reply;
	char *cmdbuf;
	size_t cmdbuf_cap, cmdbuf_len;
	const struct lmsg *msg;
	/* A chained transaction: its MAIL/RCPT/DATA went out with the previous
	 * body (RFC 2920 §3.1: message content may start a group). */
	bool chained;
	bool chain_tx;  /* the current transaction was sent chained */
	bool abandon;   /* the server refused chaining: give the message back */
	const struct lmsg *chain_msg;
	int64_t chain_t;

	/* the send in flight: mh (plaintext), or tls_mh (ciphertext) with
	 * mh then holding the plaintext not yet encrypted */
	struct iovec iov[IOV_MAX_TX];
	struct msghdr mh;
	struct msghdr *send_mh; /* the one given to the send in flight */

	/* --tls */
	struct ltls *tls; /* per slot, NULL without --tls */
	enum tls_st tls_st;
	struct iovec tls_iov;
	struct msghdr tls_mh;
	int64_t t_tls;    /* the 220 to STARTTLS: handshake start */

	int64_t t_tx;   /* transaction start (closed loop) or intended time (open loop) */
	int64_t t_conn; /* connect start */
	int64_t last;   /* last progress, for --timeout */
	struct lconn *next_idle, *next_free, *next_bufwait;
};

struct worker {
	struct load_run *run;
	const struct load_opts *o;
	unsigned idx, num;
	pthread_t th;
	struct io_uring ring;
	bool ring_ok;

	struct io_uring_buf_ring *br;
	size_t br_bytes;
	uint8_t *bufs;
	unsigned nbufs, returned;

	struct lconn *conns;
	unsigned nconns, nactive;
	struct lconn *idle, *freel, *bufwait;
	uint64_t rng;
	int64_t now;

	/* open loop: message k of this worker is due at t0 + k * interval */
	double interval;
	int64_t t0;
	uint64_t k_due, k_disp;
	bool sched_done;

	struct load_stats st;
	struct hist lat, setup, tls_hs;
	uint8_t *tls_rbuf;  /* TLS_RBUF, with --tls */
	char tls_desc[80];  /* version and cipher of the first session */
	char first_err[256];
	int done;
};

static const char dot_crlf[] = ".\r\n";

int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline uint64_t ud_make(enum op op, uint32_t idx, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(idx & 0xffffff) << 32) | gen;
}

#define STAT_ADD(w, field, n) __atomic_store_n(&(w)->st.field, (w)->st.field + (n), __ATOMIC_RELAXED)

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static struct io_uring_sqe *sqe_get(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	while (sqe == NULL) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

static void note_error(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_error(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->first_err[0] != '\0') {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(w->first_err, sizeof(w->first_err), fmt, ap);
	va_end(ap);
}

static void run_fatal(struct worker *w, const char *msg)
{
	struct load_run *r = w->run;
	int expect = 0;

	if (__atomic_compare_exchange_n(&r->fatal, &expect, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		snprintf(r->fatal_msg, sizeof(r->fatal_msg), "%s", msg);
	}
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
}

static bool stopping(const struct worker *w)
{
	return __atomic_load_n(&w->run->stop, __ATOMIC_ACQUIRE) != 0;
}

/* ---------------------------------------------------------------- pbuf */

static void pbuf_return(struct worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * PBUF_SIZE, PBUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(w->nbufs), (int)w->returned);
	w->returned++;
}

static void arm_recv(struct worker *w, struct lconn *c);
static void conn_maybe_release(struct worker *w, struct lconn *c);

static void pbuf_flush(struct worker *w)
{
	if (w->returned == 0) {
		return;
	}
	io_uring_buf_ring_advance(w->br, (int)w->returned);
	w->returned = 0;
	while (w->bufwait != NULL) {
		struct lconn *c = w->bufwait;

		w->bufwait = c->next_bufwait;
		c->on_bufwait = false;
		if (c->st == CS_CLOSING) {
			conn_maybe_release(w, c);
		} else {
			arm_recv(w, c);
		}
	}
}

static int pbuf_setup(struct worker *w)
{
	struct io_uring_buf_reg reg;
	int rc;

	w->br_bytes = w->nbufs * sizeof(struct io_uring_buf);
	w->br = mmap(NULL, w->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->br == MAP_FAILED) {
		w->br = NULL;
		return -ENOMEM;
	}
	w->bufs = mmap(NULL, (size_t)w->nbufs * PBUF_SIZE, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->bufs == MAP_FAILED) {
		w->bufs = NULL;
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)w->br;
	reg.ring_entries = w->nbufs;
	reg.bgid = PBUF_GROUP;
	rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (rc != 0) {
		return rc;
	}
	io_uring_buf_ring_init(w->br);
	for (unsigned i = 0; i < w->nbufs; i++) {
		pbuf_return(w, i);
	}
	io_uring_buf_ring_advance(w->br, (int)w->returned);
	w->returned = 0;
	return 0;
}

/* ---------------------------------------------------------------- conns */

static void arm_recv(struct worker *w, struct lconn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->st == CS_CLOSING || c->st == CS_FREE) {
		return;
	}
	sqe = sqe_get(w);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = PBUF_GROUP;
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, c->idx, c->gen));
	c->recv_armed = true;
	c->inflight++;
}

static void slot_release(struct worker *w, struct lconn *c)
{
	struct io_uring_sqe *sqe = sqe_get(w);

	io_uring_prep_close(sqe, c->fd);
	io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	c->fd = -1;
	c->st = CS_FREE;
	c->gen++;
	if (c->tls != NULL) {
		ltls_end(c->tls);
	}
	c->tls_st = TLS_OFF;
	c->msg = NULL;
	c->next_free = w->freel;
	w->freel = c;
	w->nactive--;
}

static void conn_maybe_release(struct worker *w, struct lconn *c)
{
	if (c->st == CS_CLOSING && c->inflight == 0 && !c->on_bufwait) {
		slot_release(w, c);
	}
}

/*
 * conn_end tears a connection down. `why` non-NULL makes it a connection
 * error (counted; a transaction in progress fails). Every op of the
 * connection is cancelled; the slot is released when the last ends.
 */
static void conn_end(struct worker *w, struct lconn *c, const char *why)
{
	struct io_uring_sqe *sqe;

	if (c->st == CS_CLOSING || c->st == CS_FREE) {
		return;
	}
	if (c->st == CS_TX) {
		STAT_ADD(w, failed, c->chained ? 2 : 1);
	}
	c->chained = false;
	if (why != NULL) {
		char hs[256];
		uint64_t n;

		if (c->tls_st == TLS_HS) {
			/* Every failure before the session is up is a handshake failure. */
			STAT_ADD(w, tls_errors, 1);
			snprintf(hs, sizeof(hs), "TLS handshake: %s", why);
			why = hs;
		}
		note_error(w, "%s", why);
		STAT_ADD(w, conn_errors, 1);
		n = __atomic_add_fetch(&w->run->conn_errors, 1, __ATOMIC_RELAXED);
		if (w->o->max_errors != 0 && n >= w->o->max_errors) {
			char msg[256];

			snprintf(msg, sizeof(msg), "%llu connection errors (--max-errors); first: %.180s",
				 (unsigned long long)n, why);
			run_fatal(w, msg);
		}
	}
	c->st = CS_CLOSING;
	if (c->inflight > 0) {
		sqe = sqe_get(w);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	}
	conn_maybe_release(w, c);
}

static void conn_connect(struct worker *w, struct lconn *c)
{
	struct io_uring_sqe *sqe;
	int one = 1;
	int fd = socket(w->o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1) {
		char msg[128];

		snprintf(msg, sizeof(msg), "socket: %s", strerror(errno));
		note_error(w, "%s", msg);
		run_fatal(w, msg);
		c->next_free = w->freel;
		w->freel = c;
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->st = CS_CONNECTING;
	c->inflight = 0;
	c->recv_armed = c->send_inflight = false;
	c->pipelining = c->chunking = false;
	c->tx_failed = c->need_rset = false;
	c->tls_st = TLS_OFF;
	c->msgs = 0;
	c->num_cmds = c->next_send = c->next_reply = 0;
	smtpc_init(&c->rd);
	c->t_conn = c->last = w->now;
	w->nactive++;
	sqe = sqe_get(w);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&w->o->addr, w->o->addr_len);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, c->idx, c->gen));
	c->inflight++;
	STAT_ADD(w, conn_opened, 1);
}

/* ---------------------------------------------------------------- scripts */

static void script_reset(struct lconn *c)
{
	c->num_cmds = c->next_send = c->next_reply = 0;
	c->cmdbuf_len = 0;
}

static void script_add(struct lconn *c, enum cmd cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void script_add(struct lconn *c, enum cmd cmd, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	c->cmds[c->num_cmds] = cmd;
	c->off[c->num_cmds] = (uint32_t)c->cmdbuf_len;
	if (fmt != NULL) {
		va_start(ap, fmt);
		n = vsnprintf(c->cmdbuf + c->cmdbuf_len, c->cmdbuf_cap - c->cmdbuf_len, fmt, ap);
		va_end(ap);
		/* cmdbuf_cap is computed from the longest script at start-up. */
		if (n < 0 || (size_t)n >= c->cmdbuf_cap - c->cmdbuf_len) {
			abort();
		}
	}
	c->len[c->num_cmds] = (uint32_t)n;
	c->cmdbuf_len += (size_t)n;
	c->num_cmds++;
}

static bool group_end(const struct lconn *c, enum cmd cmd)
{
	if (!c->pipelining) {
		return true;
	}
	/* RFC 2920 §3.1: EHLO, DATA, QUIT end a group; message content may
	 * start one (maybe_chain puts the next MAIL/RCPT/DATA after it). */
	if (cmd == CMD_DOT) {
		return !c->chained;
	}
	return cmd != CMD_RSET && cmd != CMD_MAIL && cmd != CMD_RCPT;
}

static void maybe_chain(struct worker *w, struct lconn *c);
static void add_tx_cmds(struct worker *w, struct lconn *c, const struct lmsg *m);

static void send_submit(struct worker *w, struct lconn *c, struct msghdr *mh)
{
	struct io_uring_sqe *sqe = sqe_get(w);

	io_uring_prep_sendmsg(sqe, c->fd, mh, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, c->idx, c->gen));
	c->send_mh = mh;
	c->send_inflight = true;
	c->inflight++;
}

/* mh_advance moves mh past n sent octets; true when some are left. */
static bool mh_advance(struct msghdr *mh, size_t n)
{
	while (mh->msg_iovlen > 0 && n >= mh->msg_iov[0].iov_len) {
		n -= mh->msg_iov[0].iov_len;
		mh->msg_iov++;
		mh->msg_iovlen--;
	}
	if (mh->msg_iovlen == 0) {
		return false;
	}
	mh->msg_iov[0].iov_base = (uint8_t *)mh->msg_iov[0].iov_base + n;
	mh->msg_iov[0].iov_len -= n;
	return true;
}

/*
 * tls_out encrypts more of the plaintext waiting in c->mh (at most about
 * LTLS_OUT_BATCH octets, so a long body is encrypted as it goes out) and
 * sends the pending ciphertext. True when the caller must wait: a send is
 * in flight, or the connection failed.
 */
static bool tls_out(struct worker *w, struct lconn *c)
{
	struct iovec *iov = c->mh.msg_iov;
	size_t num_iov = c->mh.msg_iovlen;
	const uint8_t *p;
	size_t len;
	char err[200];

	if (c->send_inflight) {
		return true;
	}
	if (num_iov > 0 && ltls_write(c->tls, &iov, &num_iov, LTLS_OUT_BATCH, err, sizeof(err)) != 0) {
		conn_end(w, c, err);
		return true;
	}
	c->mh.msg_iov = iov;
	c->mh.msg_iovlen = num_iov;
	if (!ltls_take_out(c->tls, &p, &len)) {
		return false;
	}
	c->tls_iov.iov_base = (void *)(uintptr_t)p;
	c->tls_iov.iov_len = len;
	memset(&c->tls_mh, 0, sizeof(c->tls_mh));
	c->tls_mh.msg_iov = &c->tls_iov;
	c->tls_mh.msg_iovlen = 1;
	send_submit(w, c, &c->tls_mh);
	return true;
}

/*
 * pump sends the next group of the script once every reply to the
 * previous group has arrived and no send is in flight.
 */
static void pump(struct worker *w, struct lconn *c)
{
	unsigned niov = 0;

	if (c->send_inflight || c->next_reply != c->next_send || c->next_send >= c->num_cmds ||
	    (c->st != CS_HELLO && c->st != CS_TX && c->st != CS_QUIT)) {
		return;
	}
	if (c->cmds[c->next_send] == CMD_GREET) {
		c->next_send++; /* nothing to send: wait for the greeting */
		return;
	}
	if (c->cmds[c->next_send] == CMD_DOT && c->st == CS_TX) {
		maybe_chain(w, c);
	}
	for (;;) {
		enum cmd cmd = c->cmds[c->next_send];

		if (c->len[c->next_send] > 0) {
			char *p = c->cmdbuf + c->off[c->next_send];

			if (niov > 0 && (char *)c->iov[niov - 1].iov_base + c->iov[niov - 1].iov_len == p) {
				c->iov[niov - 1].iov_len += c->len[c->next_send];
			} else {
				c->iov[niov].iov_base = p;
				c->iov[niov].iov_len = c->len[c->next_send];
				niov++;
			}
		}
		if (cmd == CMD_DOT || cmd == CMD_BDAT) {
			c->iov[niov].iov_base = c->msg->head.p;
			c->iov[niov].iov_len = c->msg->head.len;
			niov++;
			c->iov[niov].iov_base = (void *)(uintptr_t)c->msg->body;
			c->iov[niov].iov_len = c->msg->body_len;
			niov++;
			if (cmd == CMD_DOT) {
				/* Bodies end with CRLF and no line starts with '.': no stuffing. */
				c->iov[niov].iov_base = (void *)(uintptr_t)dot_crlf;
				c->iov[niov].iov_len = 3;
				niov++;
			}
		}
		c->next_send++;
		if (group_end(c, cmd) || c->next_send >= c->num_cmds) {
			break;
		}
	}
	memset(&c->mh, 0, sizeof(c->mh));
	c->mh.msg_iov = c->iov;
	c->mh.msg_iovlen = niov;
	c->last = w->now;
	if (c->tls_st == TLS_ON) {
		tls_out(w, c);
		return;
	}
	send_submit(w, c, &c->mh);
}

static bool claim_closed(struct worker *w);

/*
 * maybe_chain: in closed loop with PIPELINING and DATA, when the body of
 * one message is about to go out, the next transaction's MAIL/RCPT/DATA
 * join it in the same write, so a persistent session needs one round
 * trip per message (RFC 2920 §3.1). A server that answers 503 to such a
 * MAIL turns chaining off for the run (on_reply). The script is
 * compacted first: every command before the body has its reply.
 */
static void maybe_chain(struct worker *w, struct lconn *c)
{
	const struct lmsg *m;

	if (!c->pipelining || c->chained || w->o->rate > 0 || w->o->mode != LOAD_MODE_DATA || w->o->no_chain ||
	    __atomic_load_n(&w->run->no_chain, __ATOMIC_RELAXED) ||
	    c->next_send + 1 != c->num_cmds || (w->o->per_connection != 0 && c->msgs >= w->o->per_connection) ||
	    !claim_closed(w)) {
		return;
	}
	m = msgset_pick(&w->run->ms, rng_next(&w->rng), rng_next(&w->rng));
	script_reset(c);
	script_add(c, CMD_DOT, NULL);
	add_tx_cmds(w, c, m);
	c->chained = true;
	c->chain_msg = m;
	c->chain_t = w->now;
	c->msgs++;
	STAT_ADD(w, attempted, 1);
}

static void start_quit(struct worker *w, struct lconn *c)
{
	c->st = CS_QUIT;
	script_reset(c);
	script_add(c, CMD_QUIT, "QUIT\r\n");
	pump(w, c);
}

/* add_tx_cmds appends the commands of one transaction for message m. */
static void add_tx_cmds(struct worker *w, struct lconn *c, const struct lmsg *m)
{
	const struct load_opts *o = w->o;
	const char *at = strchr(o->to, '@');

	script_add(c, CMD_MAIL, "MAIL FROM:<%s@%s>\r\n", w->run->ms.from_local, w->run->ms.domains[m->domain]);
	if (o->recipients == 1 || at == NULL) {
		for (unsigned i = 0; i < o->recipients; i++) {
			script_add(c, CMD_RCPT, "RCPT TO:<%s>\r\n", o->to);
		}
	} else {
		for (unsigned i = 0; i < o->recipients; i++) {
			script_add(c, CMD_RCPT, "RCPT TO:<%.*s%u%s>\r\n", (int)(at - o->to), o->to, i + 1, at);
		}
	}
	if (o->mode == LOAD_MODE_BDAT) {
		script_add(c, CMD_BDAT, "BDAT %zu LAST\r\n", m->size);
	} else {
		script_add(c, CMD_DATA, "DATA\r\n");
		script_add(c, CMD_DOT, NULL);
	}
}

static void start_tx(struct worker *w, struct lconn *c, int64_t t_intended)
{
	const struct lmsg *m = msgset_pick(&w->run->ms, rng_next(&w->rng), rng_next(&w->rng));

	c->st = CS_TX;
	c->msg = m;
	c->msgs++;
	c->tx_failed = false;
	c->chained = c->chain_tx = c->abandon = false;
	c->t_tx = t_intended;
	STAT_ADD(w, attempted, 1);
	script_reset(c);
	if (c->need_rset) {
		script_add(c, CMD_RSET, "RSET\r\n");
		c->need_rset = false;
	}
	add_tx_cmds(w, c, m);
	pump(w, c);
}

/* ------------------------------------------------------------ scheduling */

/* claim_closed hands out one message in closed loop; false when done. */
static bool claim_closed(struct worker *w)
{
	const struct load_opts *o = w->o;

	if (stopping(w)) {
		return false;
	}
	if (o->messages != 0) {
		return __atomic_fetch_add(&w->run->claimed, 1, __ATOMIC_RELAXED) < o->messages;
	}
	return w->now < w->run->t_end_ns;
}

static bool open_loop(const struct worker *w)
{
	return w->o->rate > 0;
}

static bool backlog(const struct worker *w)
{
	return w->k_disp < w->k_due;
}

/* work_left: should a free slot (re)connect? */
static bool work_left(const struct worker *w)
{
	const struct load_opts *o = w->o;

	if (open_loop(w)) {
		return backlog(w) || (!w->sched_done && !stopping(w));
	}
	if (stopping(w)) {
		return false;
	}
	if (o->messages != 0) {
		return __atomic_load_n(&w->run->claimed, __ATOMIC_RELAXED) < o->messages;
	}
	return w->now < w->run->t_end_ns;
}

/* conn_ready decides what a connection does between transactions. */
static void conn_ready(struct worker *w, struct lconn *c)
{
	c->st = CS_READY;
	c->msg = NULL;
	if (w->o->per_connection != 0 && c->msgs >= w->o->per_connection) {
		start_quit(w, c);
		return;
	}
	if (!open_loop(w)) {
		if (claim_closed(w)) {
			start_tx(w, c, w->now);
		} else {
			start_quit(w, c);
		}
		return;
	}
	if (backlog(w)) {
		start_tx(w, c, w->t0 + (int64_t)((double)w->k_disp * w->interval));
		w->k_disp++;
	} else if (w->sched_done || stopping(w)) {
		start_quit(w, c);
	} else if (!c->on_idle) {
		c->on_idle = true;
		c->next_idle = w->idle;
		w->idle = c;
	}
}

/* schedule advances the open-loop clock and hands due messages to idle conns. */
static void schedule(struct worker *w)
{
	const struct load_opts *o = w->o;

	while (!w->sched_done) {
		int64_t t = w->t0 + (int64_t)((double)w->k_due * w->interval);

		if (stopping(w)) {
			w->sched_done = true;
			break;
		}
		if (t > w->now) {
			break;
		}
		if (o->messages != 0) {
			if (__atomic_fetch_add(&w->run->claimed, 1, __ATOMIC_RELAXED) >= o->messages) {
				w->sched_done = true;
				break;
			}
		} else if (t >= w->run->t_end_ns) {
			w->sched_done = true;
			break;
		}
		w->k_due++;
	}
	while (w->idle != NULL && (backlog(w) || w->sched_done || stopping(w))) {
		struct lconn *c = w->idle;

		w->idle = c->next_idle;
		c->on_idle = false;
		if (c->st == CS_READY) {
			conn_ready(w, c);
		}
	}
}

/* ---------------------------------------------------------------- replies */

static bool reply_ok(enum cmd cmd, int code)
{
	switch (cmd) {
	case CMD_GREET:
	case CMD_STARTTLS:
		return code == 220;
	case CMD_EHLO:
	case CMD_RSET:
		return code == 250;
	case CMD_DATA:
		return code == 354;
	case CMD_QUIT:
		return code == 221;
	default:
		return code >= 200 && code < 300;
	}
}

/* tx_finish counts the transaction whose final reply just arrived. */
static void tx_finish(struct worker *w, struct lconn *c)
{
	if (c->abandon) {
		/* Not the message's fault: hand it out again (unchained). */
		c->abandon = false;
		c->need_rset = true;
		STAT_ADD(w, attempted, (uint64_t)-1);
		if (w->o->messages != 0) {
			__atomic_fetch_sub(&w->run->claimed, 1, __ATOMIC_RELAXED);
		}
		return;
	}
	if (c->tx_failed) {
		STAT_ADD(w, failed, 1);
		c->need_rset = true;
	} else {
		uint64_t lat = w->now > c->t_tx ? (uint64_t)(w->now - c->t_tx) : 0;

		hist_record(&w->lat, lat);
		STAT_ADD(w, bytes, c->msg->size);
		STAT_ADD(w, delivered, 1);
	}
}

/* ---------------------------------------------------------------- TLS */

/*
 * tls_step runs after the plaintext EHLO (send STARTTLS) and after the
 * 220 to STARTTLS (start the handshake; the ClientHello goes out).
 */
static void tls_step(struct worker *w, struct lconn *c)
{
	char err[200];

	if (c->tls_st == TLS_OFF) {
		if ((c->rd.ext & SMTPC_EXT_STARTTLS) == 0) {
			static const char msg[] = "--tls: the server does not offer STARTTLS in its EHLO reply";

			/* Every session would fail the same way. */
			run_fatal(w, msg);
			conn_end(w, c, msg);
			return;
		}
		c->tls_st = TLS_REQ;
		script_reset(c);
		script_add(c, CMD_STARTTLS, "STARTTLS\r\n");
		pump(w, c);
		return;
	}
	c->tls_st = TLS_HS;
	c->t_tls = w->now;
	/* RFC 3207 §4.2: forget everything the server said before TLS. */
	smtpc_init(&c->rd);
	c->pipelining = c->chunking = false;
	script_reset(c);
	c->mh.msg_iovlen = 0;
	if (ltls_begin(c->tls, w->run->tls_ctx, err, sizeof(err)) != 0 ||
	    ltls_handshake(c->tls, err, sizeof(err)) == LTLS_ERROR) {
		conn_end(w, c, err);
		return;
	}
	tls_out(w, c);
}

static void tls_established(struct worker *w, struct lconn *c)
{
	c->tls_st = TLS_ON;
	hist_record(&w->tls_hs, (uint64_t)(w->now - c->t_tls));
	STAT_ADD(w, tls_handshakes, 1);
	if (w->tls_desc[0] == '\0') {
		ltls_describe(c->tls, w->tls_desc, sizeof(w->tls_desc));
	}
	/* RFC 3207 §4.2: EHLO again; its extensions are the ones that count. */
	script_reset(c);
	script_add(c, CMD_EHLO, "EHLO %s\r\n", w->o->helo);
	pump(w, c);
}

static void on_data(struct worker *w, struct lconn *c, const uint8_t *p, size_t len);

/*
 * tls_in takes ciphertext from the socket: handshake, then the replies
 * inside.
 *
 * Records without application data (a TLS 1.3 NewSessionTicket after our
 * Finished + EHLO) are ACKed at once (TCP_QUICKACK): a server that writes
 * without TCP_NODELAY (Postfix's smtpd) holds its next small write, the
 * EHLO reply, under Nagle's algorithm until that ACK, and our delayed ACK
 * would add about 40 ms to every session's setup.
 */
static void tls_in(struct worker *w, struct lconn *c, const uint8_t *p, size_t len)
{
	bool was_on = c->tls_st == TLS_ON;
	size_t got = 0;
	char err[200];

	c->last = w->now;
	if (ltls_feed(c->tls, p, len) != 0) {
		conn_end(w, c, "out of memory for TLS input");
		return;
	}
	if (c->tls_st == TLS_HS) {
		enum ltls_rc rc = ltls_handshake(c->tls, err, sizeof(err));

		if (rc == LTLS_ERROR) {
			conn_end(w, c, err);
			return;
		}
		if (rc == LTLS_WANT) {
			tls_out(w, c);
			return;
		}
		tls_established(w, c);
		if (c->st == CS_CLOSING) {
			return;
		}
	}
	for (;;) {
		size_t n = 0;
		enum ltls_rc rc = ltls_read(c->tls, w->tls_rbuf, TLS_RBUF, &n, err, sizeof(err));

		if (rc == LTLS_WANT) {
			break;
		}
		if (rc == LTLS_CLOSED) {
			conn_end(w, c, "the server closed the TLS session (close_notify)");
			return;
		}
		if (rc == LTLS_ERROR) {
			conn_end(w, c, err);
			return;
		}
		got += n;
		on_data(w, c, w->tls_rbuf, n);
		if (c->st == CS_CLOSING || c->st == CS_FREE) {
			return;
		}
	}
	if (got == 0 && was_on) {
		int one = 1;

		setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	}
	if (ltls_pending(c->tls)) {
		tls_out(w, c); /* e.g. an answer to a KeyUpdate */
	}
}

static void script_done(struct worker *w, struct lconn *c)
{
	switch (c->st) {
	case CS_HELLO:
		if (w->o->tls && c->tls_st != TLS_ON) {
			tls_step(w, c);
			return;
		}
		hist_record(&w->setup, (uint64_t)(w->now - c->t_conn));
		if (w->o->mode == LOAD_MODE_BDAT && !c->chunking) {
			run_fatal(w, "--mode bdat: server does not offer CHUNKING");
			conn_end(w, c, NULL);
			return;
		}
		conn_ready(w, c);
		return;
	case CS_TX:
		tx_finish(w, c);
		c->st = CS_READY; /* counted: conn_end must not fail it again */
		conn_ready(w, c);
		return;
	case CS_QUIT:
		conn_end(w, c, NULL);
		return;
	default:
		return;
	}
}

static void on_reply(struct worker *w, struct lconn *c, int code)
{
	enum cmd cmd;

	STAT_ADD(w, replies[code / 100 <= 5 ? code / 100 : 0], 1);
	if (c->next_reply >= c->next_send) {
		char msg[200];

		snprintf(msg, sizeof(msg), "unexpected reply %d %s", code, c->rd.last_text);
		conn_end(w, c, msg);
		return;
	}
	cmd = c->cmds[c->next_reply++];
	c->last = w->now;
	if (!reply_ok(cmd, code)) {
		char msg[240];

		snprintf(msg, sizeof(msg), "%s: %d %s", cmd_names[cmd], code, c->rd.last_text);
		if (code == 421 || cmd == CMD_GREET || cmd == CMD_EHLO || cmd == CMD_RSET || cmd == CMD_QUIT ||
		    cmd == CMD_STARTTLS) {
			/* The session cannot go on (RFC 5321 §3.8: 421 closes it). */
			conn_end(w, c, msg);
			return;
		}
		if (cmd == CMD_MAIL && code == 503 && c->chain_tx) {
			/* Some servers (Haraka) refuse MAIL pipelined after the end
			 * of data, though RFC 2920 §3.1 allows it: stop chaining
			 * for the whole run and send this message again. */
			__atomic_store_n(&w->run->no_chain, 1, __ATOMIC_RELAXED);
			c->abandon = true;
		} else {
			note_error(w, "%s", msg);
		}
		c->tx_failed = true;
		if (cmd == CMD_DATA) {
			/* No 354: the body must not be sent; the transaction is over. */
			c->num_cmds = c->next_send;
		}
	}
	if (cmd == CMD_DOT && c->chained && c->next_reply < c->num_cmds) {
		/* The chained transaction's replies follow: this one is over. */
		tx_finish(w, c);
		c->chained = false;
		c->msg = c->chain_msg;
		c->t_tx = c->chain_t;
		c->tx_failed = false;
		c->chain_tx = true;
	}
	if (cmd == CMD_EHLO) {
		c->pipelining = (c->rd.ext & SMTPC_EXT_PIPELINING) != 0;
		c->chunking = (c->rd.ext & SMTPC_EXT_CHUNKING) != 0;
	}
	if (c->next_reply == c->num_cmds) {
		script_done(w, c);
	} else {
		pump(w, c);
	}
}

static void on_data(struct worker *w, struct lconn *c, const uint8_t *p, size_t len)
{
	struct span in = span_make(p, len);

	while (in.len > 0 && (c->st == CS_HELLO || c->st == CS_TX || c->st == CS_QUIT || c->st == CS_READY)) {
		int code = 0;
		enum smtpc_rc rc = smtpc_read(&c->rd, &in, &code);

		if (rc == SMTPC_MORE) {
			break;
		}
		if (rc == SMTPC_SYNTAX) {
			STAT_ADD(w, replies[0], 1);
			conn_end(w, c, "reply syntax error");
			return;
		}
		on_reply(w, c, code);
		if (c->tls_st == TLS_HS) {
			/* From the 220 to STARTTLS on, the socket carries TLS: any
			 * plaintext after it was not sent by a conforming server. */
			if (in.len > 0) {
				conn_end(w, c, "plaintext after the 220 to STARTTLS");
			}
			return;
		}
	}
}

/* ---------------------------------------------------------------- CQEs */

static void on_recv(struct worker *w, struct lconn *c, const struct io_uring_cqe *cqe)
{
	bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (cqe->res > 0 && c->st != CS_CLOSING) {
			if (c->tls_st >= TLS_HS) {
				tls_in(w, c, w->bufs + (size_t)bid * PBUF_SIZE, (size_t)cqe->res);
			} else {
				on_data(w, c, w->bufs + (size_t)bid * PBUF_SIZE, (size_t)cqe->res);
			}
		}
		pbuf_return(w, bid);
	}
	if (more) {
		return;
	}
	c->recv_armed = false;
	c->inflight--;
	if (c->st == CS_CLOSING) {
		conn_maybe_release(w, c);
		return;
	}
	if (cqe->res == -ENOBUFS) {
		/* Backpressure, not an error: re-arm once buffers come back. */
		if (!c->on_bufwait) {
			c->on_bufwait = true;
			c->next_bufwait = w->bufwait;
			w->bufwait = c;
		}
		return;
	}
	if (cqe->res == 0) {
		conn_end(w, c, "connection closed by the server");
	} else if (cqe->res < 0) {
		char msg[128];

		snprintf(msg, sizeof(msg), "recv: %s", strerror(-cqe->res));
		conn_end(w, c, msg);
	} else {
		arm_recv(w, c); /* multishot ended with data: re-arm */
	}
}

static void on_send(struct worker *w, struct lconn *c, int res)
{
	c->inflight--;
	c->send_inflight = false;
	if (c->st == CS_CLOSING) {
		conn_maybe_release(w, c);
		return;
	}
	if (res < 0) {
		char msg[128];

		snprintf(msg, sizeof(msg), "send: %s", strerror(-res));
		conn_end(w, c, msg);
		return;
	}
	/* A short send: move the iovecs past what went out and go on. */
	if (mh_advance(c->send_mh, (size_t)res)) {
		send_submit(w, c, c->send_mh);
		return;
	}
	if (c->tls_st >= TLS_HS) {
		/* More of the group, or what SSL queued meanwhile (the ClientHello,
		 * if the 220 to STARTTLS was handled before this completion). */
		if (c->send_mh == &c->tls_mh) {
			ltls_sent(c->tls);
		}
		if (tls_out(w, c)) {
			return;
		}
	}
	pump(w, c);
}

static void on_connect(struct worker *w, struct lconn *c, int res)
{
	c->inflight--;
	if (c->st == CS_CLOSING) {
		conn_maybe_release(w, c);
		return;
	}
	if (res < 0) {
		char msg[128];

		snprintf(msg, sizeof(msg), "connect to %s: %s", w->o->target, strerror(-res));
		conn_end(w, c, msg);
		return;
	}
	c->st = CS_HELLO;
	c->last = w->now;
	arm_recv(w, c);
	script_reset(c);
	script_add(c, CMD_GREET, NULL);
	script_add(c, CMD_EHLO, "EHLO %s\r\n", w->o->helo);
	pump(w, c);
}

static void handle_cqe(struct worker *w, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum op op = (enum op)(ud >> 56);
	uint32_t idx = (uint32_t)(ud >> 32) & 0xffffff, gen = (uint32_t)ud;
	struct lconn *c;

	if (op == OP_IGNORE || op == OP_NONE || op >= OP_COUNT) {
		return;
	}
	c = idx < w->nconns ? &w->conns[idx] : NULL;
	if (c == NULL || c->gen != gen || c->st == CS_FREE) {
		/* Cannot happen (slots outlive their ops); still return a lent buffer. */
		if (op == OP_RECV && (cqe->flags & IORING_CQE_F_BUFFER)) {
			pbuf_return(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		}
		return;
	}
	switch (op) {
	case OP_CONNECT:
		on_connect(w, c, cqe->res);
		break;
	case OP_RECV:
		on_recv(w, c, cqe);
		break;
	case OP_SEND:
		on_send(w, c, cqe->res);
		break;
	default:
		break;
	}
}

/* check_timeouts ends connections that waited longer than --timeout. */
static void check_timeouts(struct worker *w)
{
	int64_t limit = (int64_t)(w->o->timeout * 1e9);

	for (unsigned i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];
		bool waiting = c->st == CS_CONNECTING || c->tls_st == TLS_HS ||
			       ((c->st == CS_HELLO || c->st == CS_TX || c->st == CS_QUIT) &&
				(c->next_reply < c->next_send || c->send_inflight));

		if (waiting && w->now - c->last > limit) {
			char msg[128];

			if (c->tls_st == TLS_HS) {
				snprintf(msg, sizeof(msg), "no progress within %.0f s", w->o->timeout);
			} else {
				snprintf(msg, sizeof(msg), "no reply within %.0f s (%s)", w->o->timeout,
					 c->st == CS_CONNECTING ? "connect" : cmd_names[c->cmds[c->next_reply < c->num_cmds ? c->next_reply : 0]]);
			}
			conn_end(w, c, msg);
		}
	}
}

static void connect_free_slots(struct worker *w)
{
	while (w->freel != NULL && work_left(w)) {
		struct lconn *c = w->freel;

		w->freel = c->next_free;
		conn_connect(w, c);
		if (stopping(w) && __atomic_load_n(&w->run->fatal, __ATOMIC_ACQUIRE)) {
			break;
		}
	}
}

/*
 * ring_setup creates the ring and its buffer ring. It runs on the worker
 * thread itself: a SINGLE_ISSUER ring belongs to the thread that created
 * it (any other thread gets -EEXIST from io_uring_enter).
 */
static int ring_setup(struct worker *w, char *err, size_t err_len)
{
	struct io_uring_params p;
	int rc;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = 8192;
	rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	if (rc < 0) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
		p.cq_entries = 8192;
		rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	if (rc < 0) {
		snprintf(err, err_len, "io_uring_queue_init: %s", strerror(-rc));
		return -1;
	}
	w->ring_ok = true;
	w->nbufs = 64;
	while (w->nbufs < 2 * w->nconns && w->nbufs < 8192) {
		w->nbufs *= 2;
	}
	rc = pbuf_setup(w);
	if (rc != 0) {
		snprintf(err, err_len, "provided buffer ring: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

void *worker_main(void *arg)
{
	struct worker *w = arg;
	int64_t next_scan;

	if (ring_setup(w, w->first_err, sizeof(w->first_err)) != 0) {
		run_fatal(w, w->first_err);
		__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
		return NULL;
	}
	w->now = mono_ns();
	/* Open loop: workers are staggered by 1/rate so the sum is even. */
	w->t0 = w->run->t_start_ns + (w->o->rate > 0 ? (int64_t)(1e9 * w->idx / w->o->rate) : 0);
	next_scan = w->now + TICK_NS;
	connect_free_slots(w);
	for (;;) {
		struct __kernel_timespec ts;
		struct io_uring_cqe *cqe;
		int64_t wait = TICK_NS;
		unsigned head, n = 0;

		if (open_loop(w) && !w->sched_done) {
			int64_t t = w->t0 + (int64_t)((double)w->k_due * w->interval) - w->now;

			if (t < wait) {
				wait = t > 0 ? t : 0;
			}
		}
		if (w->o->messages == 0 && w->run->t_end_ns > w->now && w->run->t_end_ns - w->now < wait) {
			wait = w->run->t_end_ns - w->now;
		}
		if (w->nactive == 0 && !work_left(w)) {
			break;
		}
		ts.tv_sec = wait / 1000000000LL;
		ts.tv_nsec = wait % 1000000000LL;
		if (wait == 0) {
			io_uring_submit(&w->ring);
			io_uring_get_events(&w->ring);
		} else {
			int rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);

			if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
				char msg[128];

				snprintf(msg, sizeof(msg), "io_uring_enter: %s", strerror(-rc));
				note_error(w, "%s", msg);
				run_fatal(w, msg);
				break;
			}
		}
		w->now = mono_ns();
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		pbuf_flush(w);
		if (open_loop(w)) {
			schedule(w);
		}
		if (w->now >= next_scan) {
			next_scan = w->now + TICK_NS;
			check_timeouts(w);
		}
		connect_free_slots(w);
	}
	io_uring_submit(&w->ring); /* the last closes */
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ---------------------------------------------------------------- set-up */

struct worker *worker_new(struct load_run *run, unsigned idx, unsigned num, unsigned num_conns, char *err,
			  size_t err_len)
{
	struct worker *w = calloc(1, sizeof(*w));
	size_t cap;

	if (w == NULL) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	w->run = run;
	w->o = &run->o;
	w->idx = idx;
	w->num = num;
	w->rng = 0x9E3779B97F4A7C15ull * (idx + 1);
	hist_init(&w->lat);
	hist_init(&w->setup);
	hist_init(&w->tls_hs);
	if (run->o.rate > 0) {
		/* Each worker sends rate/num messages per second, staggered. */
		w->interval = 1e9 * (double)num / run->o.rate;
		w->k_due = w->k_disp = 0;
	}
	w->nconns = num_conns;
	w->conns = calloc(num_conns, sizeof(*w->conns));
	/* The longest script: RSET, MAIL, every RCPT, BDAT/DATA (+ EHLO/QUIT). */
	cap = 512 + strlen(run->o.helo) + strlen(run->o.from_local) + strlen(run->o.from_domain) + 64 +
	      (size_t)run->o.recipients * (strlen(run->o.to) + 24);
	if (w->conns == NULL) {
		goto nomem;
	}
	for (unsigned i = 0; i < num_conns; i++) {
		struct lconn *c = &w->conns[i];

		c->idx = i;
		c->gen = 1;
		c->fd = -1;
		c->cmdbuf_cap = cap;
		c->cmdbuf = malloc(cap);
		if (c->cmdbuf == NULL) {
			goto nomem;
		}
		if (run->o.tls && (c->tls = ltls_new()) == NULL) {
			goto nomem;
		}
	}
	if (run->o.tls && (w->tls_rbuf = malloc(TLS_RBUF)) == NULL) {
		goto nomem;
	}
	for (unsigned i = num_conns; i > 0; i--) {
		w->conns[i - 1].next_free = w->freel;
		w->freel = &w->conns[i - 1];
	}
	return w;
nomem:
	snprintf(err, err_len, "out of memory");
	worker_free(w);
	return NULL;
}

void worker_free(struct worker *w)
{
	if (w == NULL) {
		return;
	}
	if (w->ring_ok) {
		io_uring_queue_exit(&w->ring);
	}
	for (unsigned i = 0; w->conns != NULL && i < w->nconns; i++) {
		if (w->conns[i].fd >= 0) {
			close(w->conns[i].fd);
		}
		free(w->conns[i].cmdbuf);
		ltls_free(w->conns[i].tls);
	}
	free(w->conns);
	free(w->tls_rbuf);
	if (w->br != NULL) {
		munmap(w->br, w->br_bytes);
	}
	if (w->bufs != NULL) {
		munmap(w->bufs, (size_t)w->nbufs * PBUF_SIZE);
	}
	free(w);
}

bool worker_done(const struct worker *w)
{
	return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE) != 0;
}

void worker_stats_peek(const struct worker *w, struct load_stats *out)
{
	const uint64_t *src = (const uint64_t *)&w->st;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++) {
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	}
}

const struct hist *worker_lat(const struct worker *w)
{
	return &w->lat;
}

const struct hist *worker_setup(const struct worker *w)
{
	return &w->setup;
}

const struct hist *worker_tls_hs(const struct worker *w)
{
	return &w->tls_hs;
}

const char *worker_tls_desc(const struct worker *w)
{
	return w->tls_desc;
}

const char *worker_first_error(const struct worker *w)
{
	return w->first_err;
}
