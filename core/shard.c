/*
 * shard.c - the per-core engine: one thread, one io_uring ring.
 *
 * Owns: the ring, the provided-buffer ring (receive pool), the listening
 * sockets, every connection (struct conn) accepted here with its SMTP
 * session, and each connection's spool transaction (struct spool_tx).
 *
 * Data path per connection:
 *   multishot accept -> conn_new -> greeting -> multishot recv (pbuf)
 *   -> conn_process: smtp_sess_next() events
 *        TX_BEGIN -> openat SPOOL/q/<id> (O_EXCL), head + Received: buffered
 *        BODY     -> appended to tx->buf, written in chunks through the ring
 *        TX_END   -> trailer, last write, fdatasync(file) + group fsync(dir)
 *                    -> 250 (smtp_sess_tx_done) -> delivery queue
 *   -> replies: one send in flight per connection (out -> sending)
 *
 * Invariants:
 *  - No blocking syscall after start-up: file and socket I/O go through
 *    the ring. (getpeername and setsockopt on new sockets are non-blocking.)
 *  - A pbuf is never held past the CQE that lent it: the session copies
 *    what it keeps, the spool tx copies body bytes into tx->buf.
 *  - A conn is freed only when no op of its own is in flight (c->inflight)
 *    and it has no tx, so a CQE never finds a freed conn; the generation in
 *    user_data is a second check.
 *  - 250 is sent only from the completion of both fsyncs of that message.
 */
#include "shard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../proto/smtp_trace.h"
#include "crc32c.h"
#include "log.h"
#include "metrics_shard.h"
#include "thread.h"
#include "spool.h"
#include "uring_compat.h"

#define RING_ENTRIES    1024
#define PBUF_GROUP      0
#define WRITE_CHUNK     (128u * 1024)  /* spool write size while body streams */
#define TX_BUF_PAUSE    (4u << 20)     /* stop reading a client when this much awaits the disk */
#define PEND_CANCEL     (64u * 1024)   /* input held while paused before the recv is cancelled */
/* Replies not yet taken by the client before we stop reading its commands:
 * a client that pipelines without reading would otherwise make us buffer
 * its replies without bound (EHLO turns 8 bytes into ~150). */
#define OUT_PAUSE       (32u * 1024)
#define SEND_STALL_MS   5000           /* a closing conn's send without progress is cancelled */
#define LISTEN_BACKLOG  4096
#define DIRSYNC_MAX     8              /* SPOOL/q fsyncs in flight at once */

enum op {
	OP_NONE = 0, /* never used: a zero user_data is a bug */
	OP_ACCEPT,   /* idx = listener */
	OP_RECV,     /* multishot, conn */
	OP_SEND,     /* conn */
	OP_GREET,    /* greet-delay timeout, conn */
	OP_OPEN,     /* spool file openat, conn */
	OP_WRITE,    /* spool write, conn */
	OP_FSYNC,    /* spool file fdatasync, tx */
	OP_RENAME,   /* reused spool file: SPOOL/free/<slot> -> SPOOL/q/<id>, tx */
	OP_DIRSYNC,  /* SPOOL/q fsync for a batch, shard */
	OP_WAKE,     /* eventfd read, shard */
	OP_SYNCDONE, /* eventfd read: the sync thread finished a syncfs, shard */
	OP_VDONE,    /* eventfd read: the verify pool finished jobs, shard */
	OP_IGNORE,   /* cancel, close, unlink: result not needed */
	OP_COUNT     /* sentinel */
};

static inline uint64_t ud_make(enum op op, uint32_t idx, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(idx & 0xffffff) << 32) | gen;
}

struct conn;
struct tx_snap;

struct spool_tx {
	struct conn *c;       /* owner; NULL once detached (aborted) */
	struct spool_tx *next_dir; /* batch-sync wait list */
	int fd;               /* -1 until openat completes */
	char name[MSG_ID_MAX];
	struct bb buf;        /* bytes waiting to be written */
	struct bb wbuf;       /* bytes of the write in flight */
	uint64_t off;         /* file offset of the next write */
	uint64_t msg_len;     /* message bytes so far (Received: + body) */
	uint32_t crc;         /* CRC-32C of those bytes, for the trailer */
	int err;              /* first error, -errno */
	bool open_inflight, write_inflight, fsync_inflight, rename_inflight, in_dir_list;
	bool reuse;           /* writing a reused file at SPOOL/free/<slot> */
	bool renamed;         /* ... and it is at SPOOL/q/<name> now */
	char slot[MSG_ID_MAX];
	bool ended;           /* trailer appended: no more bytes */
	bool body_done;       /* TX_END seen; waiting for the verifier's verdict */
	bool auth_tempfail;   /* --dkim-temperror tempfail and a temperror verdict */
	bool policy_reject;   /* --dmarc-enforce and the sender's DMARC policy says reject */
	struct vjob *vjob;    /* DKIM verification in the pool, until its verdict */
	bool aborted;         /* the session dropped it: clean up, no reply */
	bool data_synced, dir_synced;
};

struct conn {
	uint32_t idx, gen;
	int fd;
	struct smtp_sess *sess;
	struct bb out;        /* replies being queued */
	struct bb sending;    /* replies of the send in flight */
	struct bb pend;       /* input received while paused */
	uint32_t inflight;    /* ops of this conn in flight */
	bool recv_armed, send_inflight, cancel_sent, send_cancel_sent;
	bool closing, io_done, counted;
	bool paused_commit, paused_io, paused_out, on_resume;
	bool greet_pending;
	struct __kernel_timespec greet_ts;
	int64_t last_ms;      /* last input, for the DATA block timeout */
	int64_t cmd_ms;       /* when the session last completed a command: the
	                         command timeout counts from here, not from the
	                         last byte, so dribbling never holds a conn */
	int64_t open_ms;      /* accepted, for --timeout-session */
	int64_t send_ms;      /* the send in flight was submitted or progressed */
	int64_t commit_ms;    /* when TX_END was seen */
	enum smtp_commit commit_rc;
	struct ip_key ipkey;
	struct spool_tx *tx;
	struct vjob *vjob;        /* checks started at MAIL FROM, until TX_BEGIN takes them */
	struct conn *next_resume; /* commit finished, resume input */
	struct conn *next_reap;   /* released at the end of the loop iteration */
	struct conn *next_bufwait; /* recv ended with -ENOBUFS: re-arm when buffers return */
	bool on_bufwait;
	bool on_reap;
	char who[32];             /* "s0 0123456789abcdef" */
	/* metrics and the tx.done log line */
	int64_t mail_us;          /* MAIL FROM accepted (CLOCK_MONOTONIC µs) */
	int64_t eod_us;           /* end of data (TX_END) */
	bool eod_abort;           /* data dropped inside DATA: the next final reply is the message's */
	bool auth_set;            /* auth holds this transaction's verdict */
	struct vjob_brief auth;
	struct tx_snap *abort_snap; /* the envelope of data dropped inside DATA, for its tx.done line */
};

struct shard {
	unsigned idx;
	char who[8];
	const struct shard_global *g;
	struct deliver *deliver;
	pthread_t thread;
	struct io_uring ring;
	bool ring_ok;

	int listen_fd[CFG_LISTEN_MAX];
	bool accept_armed[CFG_LISTEN_MAX];
	unsigned num_listen;

	/* provided-buffer ring */
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	uint8_t *buf_base;
	uint32_t pbuf_size, pbuf_count; /* --recv-buffer-size, --recv-buffers */
	uint32_t *buf_off;            /* consumed bytes per buffer (incremental mode) */
	bool pbuf_inc;
	unsigned pbuf_returned;       /* adds since the last advance */

	/* connections */
	struct conn **conns;
	uint32_t conns_cap, nconns;
	uint32_t *free_idx;
	uint32_t num_free;
	uint64_t sess_counter;
	uint64_t id_salt;     /* random per run: session ids never repeat across restarts */

	/* group commit */
	struct spool_tx *dir_wait;    /* ready, waiting for the next batch sync */
	struct spool_tx *dir_batch[DIRSYNC_MAX]; /* covered by each sync in flight; NULL = free slot */
	unsigned dir_inflight;
	struct conn *resume;      /* commits finished this iteration */
	struct conn *reap;        /* closed conns to release */
	struct conn *buf_wait;    /* conns waiting for receive buffers */

	int wake_fd;
	uint64_t wake_buf;
	bool wake_armed;

	struct vpool_inbox inbox;   /* verify pool results */
	uint64_t vdone_buf;
	uint32_t vjobs_live;        /* jobs created and not yet freed */

	/* --spool-sync syncfs: one syncfs() per batch, on a thread of its own
	 * (it blocks), requested and answered through two eventfds. */
	pthread_t sync_thread;
	bool sync_thread_ok;
	int sync_req_fd, sync_done_fd;
	uint64_t sync_req_val, sync_done_buf;
	_Atomic int sync_result;    /* 0 or -errno of the last syncfs */
	atomic_bool sync_stop;

	bool stopping;
	int64_t stop_deadline_ms;
	int64_t now_ms;
	uint32_t seq;

	/* start-up hand-shake with the main thread */
	pthread_mutex_t start_mu;
	pthread_cond_t start_cv;
	int start_state; /* 0 pending, 1 ok, -1 failed */

	/* counters (shard-local; logged at exit) */
	uint64_t n_accept, n_refused, n_msgs, n_enobufs, n_fsync, n_dirsync;
	struct metrics_shard m;   /* written by this shard only; read by the metrics thread */
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* sqe_get never fails: a full SQ is submitted to make room. */
static struct io_uring_sqe *sqe_get(struct shard *sh)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);

	while (sqe == NULL) {
		io_uring_submit(&sh->ring);
		sqe = io_uring_get_sqe(&sh->ring);
	}
	return sqe;
}

/* ---------------------------------------------------------------- pbuf */

static uint8_t *pbuf_addr(struct shard *sh, unsigned bid)
{
	return sh->buf_base + (size_t)bid * sh->pbuf_size;
}

static void pbuf_return(struct shard *sh, unsigned bid)
{
	if (sh->buf_off[bid] != 0) {
		metrics_set(&sh->m.pbuf_partial, metrics_get(&sh->m.pbuf_partial) - 1);
	}
	sh->buf_off[bid] = 0;
	io_uring_buf_ring_add(sh->br, pbuf_addr(sh, bid), sh->pbuf_size, (unsigned short)bid,
			      io_uring_buf_ring_mask(sh->pbuf_count), (int)sh->pbuf_returned);
	sh->pbuf_returned++;
}

static void arm_recv(struct shard *sh, struct conn *c);
static void conn_maybe_free(struct shard *sh, struct conn *c);

/* conn_paused tells whether the conn's input waits (commit, disk, or the client's unread replies). */
static bool conn_paused(const struct conn *c)
{
	return c->paused_commit || c->paused_io || c->paused_out;
}

/* bufwait_rearm re-arms the receives that ran out of buffers. */
static void bufwait_rearm(struct shard *sh)
{
	while (sh->buf_wait != NULL) {
		struct conn *c = sh->buf_wait;

		sh->buf_wait = c->next_bufwait;
		c->next_bufwait = NULL;
		c->on_bufwait = false;
		metrics_set(&sh->m.pbuf_waiters, metrics_get(&sh->m.pbuf_waiters) - 1);
		if (c->closing) {
			conn_maybe_free(sh, c);
		} else if (!conn_paused(c)) {
			arm_recv(sh, c);
		}
	}
}

/*
 * pbuf_flush publishes the returned buffers with one tail update, then
 * lets the connections that hit -ENOBUFS read again: only now is there
 * something to read into.
 */
static void pbuf_flush(struct shard *sh)
{
	if (sh->pbuf_returned) {
		io_uring_buf_ring_advance(sh->br, (int)sh->pbuf_returned);
		sh->pbuf_returned = 0;
		bufwait_rearm(sh);
	}
}

static int pbuf_setup(struct shard *sh)
{
	struct io_uring_buf_reg reg;
	int rc;

	sh->pbuf_size = sh->g->cfg->recv_buffer_size;
	sh->pbuf_count = sh->g->cfg->recv_buffers;
	sh->buf_off = calloc(sh->pbuf_count, sizeof(*sh->buf_off));
	if (sh->buf_off == NULL) {
		return -ENOMEM;
	}
	sh->br_bytes = sh->pbuf_count * sizeof(struct io_uring_buf);
	sh->br = mmap(NULL, sh->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (sh->br == MAP_FAILED) {
		sh->br = NULL;
		return -ENOMEM;
	}
	sh->buf_base = mmap(NULL, (size_t)sh->pbuf_count * sh->pbuf_size, PROT_READ | PROT_WRITE,
			    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (sh->buf_base == MAP_FAILED) {
		sh->buf_base = NULL;
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)sh->br;
	reg.ring_entries = sh->pbuf_count;
	reg.bgid = PBUF_GROUP;
	/* Incremental consumption (6.12+): small reads share one buffer. liburing
	 * 2.3 ignores the flags argument, so the flag goes in the field it
	 * still calls `pad` (IO_URING.md §2). Fall back without it. */
	reg.pad = IOU_PBUF_RING_INC;
	rc = io_uring_register_buf_ring(&sh->ring, &reg, 0);
	sh->pbuf_inc = rc == 0;
	if (rc != 0) {
		reg.pad = 0;
		rc = io_uring_register_buf_ring(&sh->ring, &reg, 0);
		if (rc != 0) {
			return rc;
		}
	}
	io_uring_buf_ring_init(sh->br);
	for (unsigned i = 0; i < sh->pbuf_count; i++) {
		pbuf_return(sh, i);
	}
	pbuf_flush(sh);
	metrics_set(&sh->m.pbuf_total, sh->pbuf_count);
	return 0;
}

/* ---------------------------------------------------------------- conns */

static struct conn *conn_get(struct shard *sh, uint32_t idx, uint32_t gen)
{
	struct conn *c = idx < sh->conns_cap ? sh->conns[idx] : NULL;

	return (c != NULL && c->gen == gen) ? c : NULL;
}

static void conn_flush(struct shard *sh, struct conn *c);
static void conn_close(struct shard *sh, struct conn *c);

/*
 * reply_code_at returns the code of the first final reply line ("NNN " or
 * "NNN" alone) in out[from..), or 0; *io_from moves past that line.
 */
static unsigned reply_code_at(const struct bb *out, size_t *io_from)
{
	size_t i = *io_from;

	while (i < out->len) {
		const uint8_t *p = out->p + i, *lf = memchr(p, '\n', out->len - i);
		size_t n = lf != NULL ? (size_t)(lf - p) + 1 : out->len - i;

		i += n;
		if (n >= 4 && p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
		    (p[3] == ' ' || p[3] == '\r' || p[3] == '\n')) {
			*io_from = i;
			return (unsigned)(p[0] - '0') * 100 + (unsigned)(p[1] - '0') * 10 + (unsigned)(p[2] - '0');
		}
	}
	*io_from = i;
	return 0;
}

static const char *disposition(unsigned code)
{
	return code / 100 == 2 ? "accepted" : code / 100 == 4 ? "tempfail" : "rejected";
}

static const char *brief_res(bool on, enum auth_res r)
{
	return on ? auth_res_name(r) : "-";
}

/* What the tx.done line says about the envelope, taken while the session still has it. */
struct tx_snap {
	char id[MSG_ID_MAX];
	char client[MSG_IP_MAX];
	char helo[128], from[300]; /* escaped client text */
	size_t rcpts;
	uint64_t size;
};

static void tx_snap_take(struct tx_snap *t, const struct msg_env *env)
{
	memcpy(t->id, env->id[0] ? env->id : "-", env->id[0] ? sizeof(t->id) : 2);
	snprintf(t->client, sizeof(t->client), "%s", env->client_ip);
	log_escape(t->helo, sizeof(t->helo), (const uint8_t *)(env->helo ? env->helo : ""),
		   env->helo ? strlen(env->helo) : 0);
	log_escape(t->from, sizeof(t->from), (const uint8_t *)(env->mail_from ? env->mail_from : ""),
		   env->mail_from ? strlen(env->mail_from) : 0);
	t->rcpts = env->num_rcpts;
	t->size = env->size;
}

/* tx_log writes the one summary line of a finished transaction. */
static void tx_log(const struct conn *c, const struct tx_snap *t, unsigned code, int64_t now_us)
{
	const struct vjob_brief *a = &c->auth;
	bool on = c->auth_set;

	log_line(LOG_INFO, c->who,
		 "tx.done id=%s client=%s helo=\"%s\" mail_from=\"%s\" rcpts=%zu size=%llu dkim=%s spf=%s dmarc=%s "
		 "arc=%s disposition=%s code=%u duration_ms=%lld commit_ms=%lld",
		 t->id, t->client, t->helo, t->from, t->rcpts, (unsigned long long)t->size,
		 brief_res(on && a->dkim_on, a->dkim), brief_res(on && a->spf_mfrom_on, a->spf_mfrom),
		 brief_res(on && a->dmarc_on, a->dmarc), brief_res(on && a->arc_on, a->arc), disposition(code), code,
		 (long long)(c->mail_us ? (now_us - c->mail_us) / 1000 : 0),
		 (long long)(c->eod_us ? (now_us - c->eod_us) / 1000 : 0));
}

/*
 * count_replies counts the final reply lines appended to c->out since
 * `from`. After data dropped inside DATA (eod_abort), the first of them is
 * that message's answer.
 */
static void count_replies(struct shard *sh, struct conn *c, size_t from)
{
	unsigned code;

	while ((code = reply_code_at(&c->out, &from)) != 0) {
		metrics_shard_code(sh->m.replies, code);
		if (c->eod_abort) {
			c->eod_abort = false;
			metrics_shard_code(sh->m.messages, code);
			if (c->abort_snap != NULL) {
				tx_log(c, c->abort_snap, code, mono_us());
				free(c->abort_snap); c->abort_snap = NULL;
			}
		}
	}
}
static void conn_drop_vjob(struct conn *c);
static void conn_process(struct shard *sh, struct conn *c, struct span *in);
static void tx_kick(struct shard *sh, struct spool_tx *tx);
static void tx_detach_abort(struct shard *sh, struct conn *c);

static void arm_recv(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->closing) {
		return;
	}
	sqe = sqe_get(sh);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = PBUF_GROUP;
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, c->idx, c->gen));
	c->recv_armed = true;
	c->cancel_sent = false;
	c->inflight++;
}

static void cancel_recv(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->recv_armed || c->cancel_sent) {
		return;
	}
	sqe = sqe_get(sh);
	io_uring_prep_cancel64(sqe, ud_make(OP_RECV, c->idx, c->gen), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	c->cancel_sent = true;
}

static struct conn *conn_new(struct shard *sh, int fd, const struct sockaddr_storage *sa)
{
	char ip[MSG_IP_MAX] = "?";
	uint16_t port = 0;
	struct conn *c;
	uint32_t idx;

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		/* Show v4-mapped peers of a dual-stack listener as plain IPv4. */
		if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, ':') == NULL) {
			memmove(ip, ip + 7, strlen(ip + 7) + 1);
		}
	}
	if (sh->num_free == 0) {
		uint32_t ncap = sh->conns_cap ? sh->conns_cap * 2 : 256;
		struct conn **nc = realloc(sh->conns, ncap * sizeof(*nc));
		uint32_t *nf = realloc(sh->free_idx, ncap * sizeof(*nf));

		if (nc != NULL) {
			sh->conns = nc;
		}
		if (nf != NULL) {
			sh->free_idx = nf;
		}
		if (nc == NULL || nf == NULL || ncap > 0xffffff) {
			return NULL;
		}
		for (uint32_t i = ncap; i > sh->conns_cap; i--) {
			sh->conns[i - 1] = NULL;
			sh->free_idx[sh->num_free++] = i - 1;
		}
		sh->conns_cap = ncap;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return NULL;
	}
	c->sess = smtp_sess_new(sh->g->smtp, ip, port);
	if (c->sess == NULL) {
		free(c);
		return NULL;
	}
	idx = sh->free_idx[--sh->num_free];
	c->idx = idx;
	c->gen = (uint32_t)(++sh->sess_counter);
	c->fd = fd;
	c->last_ms = sh->now_ms;
	c->cmd_ms = sh->now_ms;
	c->open_ms = sh->now_ms;
	c->auth_set = false;
	bb_init(&c->out, 0);
	bb_init(&c->sending, 0);
	bb_init(&c->pend, 0);
	ip_key_from_sockaddr(&c->ipkey, sa);
	/* Session ids: shard in the top byte, a counter scrambled below it
	 * (an odd multiplier is a bijection, so unique per run), and a random
	 * per-run salt so ids do not repeat across restarts. */
	snprintf(c->who, sizeof(c->who), "%s %016llx", sh->who,
		 (unsigned long long)(((uint64_t)sh->idx << 56) ^
				      (((sh->sess_counter * 0x9E3779B97F4A7C15ull) ^ sh->id_salt) >> 8)));
	sh->conns[idx] = c;
	sh->nconns++;
	metrics_set(&sh->m.conns_open, sh->nconns);
	return c;
}

/*
 * conn_maybe_free queues a closing conn for release once nothing refers to
 * it. The release itself happens in reap() at the end of the loop
 * iteration, so no handler ever touches a conn freed under it.
 */
static void conn_maybe_free(struct shard *sh, struct conn *c)
{
	if (!c->closing || !c->io_done || c->inflight != 0 || c->tx != NULL || c->on_resume || c->on_reap ||
	    c->on_bufwait) {
		return;
	}
	c->on_reap = true;
	c->next_reap = sh->reap;
	sh->reap = c;
}

static void conn_release(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe;

	sqe = sqe_get(sh);
	io_uring_prep_close(sqe, c->fd);
	io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	if (c->counted) {
		limits_release(sh->g->limits, &c->ipkey);
	}
	log_line(LOG_INFO, c->who, "conn.close");
	free(c->abort_snap); c->abort_snap = NULL;
	conn_drop_vjob(c);
	smtp_sess_free(c->sess);
	bb_fini(&c->out);
	bb_fini(&c->sending);
	bb_fini(&c->pend);
	sh->conns[c->idx] = NULL;
	sh->free_idx[sh->num_free++] = c->idx;
	sh->nconns--;
	metrics_set(&sh->m.conns_open, sh->nconns);
	free(c);
}

static void reap(struct shard *sh)
{
	while (sh->reap != NULL) {
		struct conn *c = sh->reap;

		sh->reap = c->next_reap;
		conn_release(sh, c);
	}
}

/* conn_finish_io stops reading once the last reply is out. */
static void conn_finish_io(struct shard *sh, struct conn *c)
{
	c->io_done = true;
	cancel_recv(sh, c);
	conn_maybe_free(sh, c);
}

static void conn_close(struct shard *sh, struct conn *c)
{
	if (c->closing) {
		return;
	}
	c->closing = true;
	conn_drop_vjob(c);
	if (c->tx != NULL && !c->tx->ended && !c->tx->body_done) {
		tx_detach_abort(sh, c); /* mid-data: never acknowledged */
	}
	if (!c->send_inflight && c->out.len == 0) {
		conn_finish_io(sh, c);
	} else {
		conn_flush(sh, c);
	}
}

/* conn_fail drops a conn whose socket broke: nothing more can be sent. */
static void conn_fail(struct shard *sh, struct conn *c)
{
	bb_reset(&c->out, 1);
	conn_close(sh, c);
	if (!c->send_inflight) {
		conn_finish_io(sh, c);
	}
}

static void conn_flush(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe;
	struct bb t;

	if (c->send_inflight || c->out.len == 0 || c->io_done) {
		return;
	}
	t = c->sending;
	c->sending = c->out;
	c->out = t;
	c->out.len = 0;
	sqe = sqe_get(sh);
	io_uring_prep_send(sqe, c->fd, c->sending.p, c->sending.len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, c->idx, c->gen));
	c->send_inflight = true;
	c->send_ms = sh->now_ms;
	c->inflight++;
}

static void conn_schedule_resume(struct shard *sh, struct conn *c);

/*
 * conn_cancel_send gives up on a send the client does not take (it stopped
 * reading): the send completes with -ECANCELED, which fails the conn. The
 * socket is then reset rather than closed gracefully, so the kernel drops
 * the unsent bytes instead of retrying them for minutes.
 */
static void conn_cancel_send(struct shard *sh, struct conn *c, const char *why)
{
	struct io_uring_sqe *sqe;
	const struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (!c->send_inflight || c->send_cancel_sent) {
		return;
	}
	log_line(LOG_INFO, c->who, "conn.send_cancel reason=\"%s\" unsent=%zu", why, c->sending.len + c->out.len);
	(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)); /* non-blocking */
	sqe = sqe_get(sh);
	io_uring_prep_cancel64(sqe, ud_make(OP_SEND, c->idx, c->gen), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	c->send_cancel_sent = true;
}

/* out_drained resumes reading a conn paused for unread replies once they are mostly gone. */
static void out_drained(struct shard *sh, struct conn *c)
{
	if (c->paused_out && c->out.len + c->sending.len < OUT_PAUSE / 2) {
		c->paused_out = false;
		conn_schedule_resume(sh, c);
	}
}

static void on_send(struct shard *sh, struct conn *c, int res)
{
	struct io_uring_sqe *sqe;

	c->send_inflight = false;
	c->send_cancel_sent = false;
	c->inflight--;
	if (res < 0) {
		log_line(LOG_INFO, c->who, "conn.send error=\"%s\"", strerror(-res));
		c->sending.len = 0;
		conn_fail(sh, c);
		return;
	}
	c->send_ms = sh->now_ms;
	if ((size_t)res < c->sending.len) {
		bb_consume(&c->sending, (size_t)res);
		sqe = sqe_get(sh);
		io_uring_prep_send(sqe, c->fd, c->sending.p, c->sending.len, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, c->idx, c->gen));
		c->send_inflight = true;
		c->inflight++;
		out_drained(sh, c);
		return;
	}
	c->sending.len = 0;
	out_drained(sh, c);
	if (c->out.len > 0) {
		conn_flush(sh, c);
		return;
	}
	/* Idle connections hold no buffers. */
	bb_reset(&c->sending, 1);
	bb_reset(&c->out, 1);
	if (c->closing) {
		conn_finish_io(sh, c);
	} else {
		conn_maybe_free(sh, c);
	}
}

/* ------------------------------------------------------------ spool tx */

/*
 * A spool tx owns its file and its ring ops (their user_data carries the tx
 * pointer), so it can outlive its connection's interest in it: an aborted
 * tx is detached (tx->c = NULL) and removes itself once its last op is back,
 * while the connection goes on with the next transaction.
 */
static inline uint64_t ud_tx(enum op op, const struct spool_tx *tx)
{
	return ((uint64_t)op << 56) | (uint64_t)(uintptr_t)tx; /* user pointers fit in 56 bits */
}

static void tx_free(struct spool_tx *tx)
{
	if (tx->vjob != NULL) {
		/* The verdict is not wanted any more; the job comes back through
		 * the inbox and is freed there. */
		vjob_abandon(tx->vjob);
		tx->vjob = NULL;
	}
	bb_fini(&tx->buf);
	bb_fini(&tx->wbuf);
	free(tx);
}

static bool tx_busy(const struct spool_tx *tx)
{
	return tx->open_inflight || tx->write_inflight || tx->fsync_inflight || tx->rename_inflight ||
	       tx->in_dir_list;
}

static void close_quiet(struct shard *sh, int fd)
{
	struct io_uring_sqe *sqe = sqe_get(sh);

	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* tx_discard closes and removes an unacknowledged spool file and frees the tx. */
static void tx_discard(struct shard *sh, struct spool_tx *tx)
{
	struct io_uring_sqe *sqe;

	if (tx->fd >= 0 && tx->reuse && !tx->renamed) {
		/* Still a free file: back to the pool, or away when the pool is
		 * full or the disk is (its blocks are better freed now). */
		bool nospace = tx->err == -ENOSPC || tx->err == -EDQUOT;
		/* A rejected or aborted large message must not go back at full
		 * size: the pool only keeps small files (as spool_retire does). */
		bool big = tx->off > SPOOL_REUSE_MAX_BYTES;

		close_quiet(sh, tx->fd);
		if (nospace || big || !spool_pool_put(deliver_pool(sh->deliver), tx->slot)) {
			sqe = sqe_get(sh);
			io_uring_prep_unlinkat(sqe, sh->g->dirs->free, tx->slot, 0);
			io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			io_uring_submit(&sh->ring);
		}
	} else if (tx->fd >= 0) {
		close_quiet(sh, tx->fd);
		sqe = sqe_get(sh);
		io_uring_prep_unlinkat(sqe, sh->g->dirs->q, tx->name, 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		/* unlinkat reads the name at submission: submit before freeing it. */
		io_uring_submit(&sh->ring);
	}
	if (tx->c != NULL) {
		tx->c->tx = NULL;
	}
	tx_free(tx);
}

/* tx_detach_abort drops the connection's unfinished tx; it cleans up when idle. */
static void tx_detach_abort(struct shard *sh, struct conn *c)
{
	struct spool_tx *tx = c->tx;

	c->tx = NULL;
	if (tx == NULL) {
		return;
	}
	tx->c = NULL;
	tx->aborted = true;
	if (!tx_busy(tx)) {
		tx_discard(sh, tx);
	}
}

/* tx_open opens a reused file (truncating it) or creates the file in SPOOL/q. */
static void tx_open(struct shard *sh, struct spool_tx *tx)
{
	struct io_uring_sqe *sqe = sqe_get(sh);

	if (tx->reuse) {
		io_uring_prep_openat(sqe, sh->g->dirs->free, tx->slot, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);
	} else {
		io_uring_prep_openat(sqe, sh->g->dirs->q, tx->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	io_uring_sqe_set_data64(sqe, ud_tx(OP_OPEN, tx));
	/* openat reads the path at submission; the names live until tx_free. */
	tx->open_inflight = true;
}

/* conn_drop_vjob abandons checks started for a transaction that never sent data. */
static void conn_drop_vjob(struct conn *c)
{
	if (c->vjob != NULL) {
		vjob_abandon(c->vjob); /* it comes back through the inbox and is freed there */
		c->vjob = NULL;
	}
}

/*
 * conn_start_vjob starts the verify job of the transaction MAIL FROM just
 * opened: SPF needs only the envelope, so its DNS overlaps RCPT, DATA and
 * the transfer of the message (RFC 7208 §2.4 checks at MAIL FROM). The job
 * waits on the conn until TX_BEGIN gives it the message bytes.
 */
static void conn_start_vjob(struct shard *sh, struct conn *c)
{
	const struct msg_env *env = smtp_sess_env(c->sess);

	conn_drop_vjob(c); /* RSET and a new MAIL: the old sender is gone */
	if (sh->g->vpool == NULL || (c->vjob = vjob_new(sh->g->vpool, &sh->inbox, sh->g->cfg->dkim, sh->g->cfg->arc)) == NULL) {
		return;
	}
	sh->vjobs_live++;
	metrics_set(&sh->m.verify_jobs, sh->vjobs_live);
	if (sh->g->cfg->spf && vjob_spf(c->vjob, env->client_ip, env->mail_from, env->helo, sh->g->cfg->hostname,
					 sh->g->cfg->dns_timeout_ms) != 0) {
		log_line(LOG_WARN, c->who, "spf.start error=\"out of memory\"");
	}
}

static void tx_begin(struct shard *sh, struct conn *c)
{
	struct msg_env *env = smtp_sess_env(c->sess);
	struct spool_tx *tx;
	size_t head_len;

	if (c->tx != NULL) {
		log_line(LOG_ERR, c->who, "bug: TX_BEGIN with a transaction open");
		tx_detach_abort(sh, c);
	}
	tx = calloc(1, sizeof(*tx));
	if (tx == NULL) {
		/* Without a tx the body is dropped; TX_END answers 451. */
		return;
	}
	c->tx = tx;
	tx->c = c;
	tx->fd = -1;
	bb_init(&tx->buf, 0);
	bb_init(&tx->wbuf, 0);
	env->received_us = real_us();
	spool_make_id(env->id, env->received_us, sh->idx, sh->seq++);
	memcpy(tx->name, env->id, sizeof(tx->name));
	if (spool_head_format(&tx->buf, env) != 0) {
		tx->err = -ENOMEM;
	}
	head_len = tx->buf.len;
	if (tx->err == 0 && smtp_trace_received(&tx->buf, env, sh->g->cfg->hostname) != 0) {
		tx->err = -ENOMEM;
	}
	tx->msg_len = tx->buf.len - head_len;
	tx->crc = crc32c_update(0, tx->buf.p + head_len, tx->msg_len);
	tx->reuse = spool_pool_get(deliver_pool(sh->deliver), tx->slot);
	tx_open(sh, tx);
	if (c->vjob == NULL) {
		conn_start_vjob(sh, c); /* MAIL's attempt ran out of memory: try again */
	}
	if ((tx->vjob = c->vjob) != NULL) {
		c->vjob = NULL;
		vjob_set_owner(tx->vjob, tx);
	}
	log_line(LOG_INFO, c->who, "tx.begin id=%s rcpts=%zu", env->id, env->num_rcpts);
}

static void tx_append(struct shard *sh, struct conn *c, struct span body)
{
	struct spool_tx *tx = c->tx;

	if (tx == NULL || tx->err != 0) {
		return;
	}
	if (bb_append_span(&tx->buf, body) != 0) {
		tx->err = -ENOMEM;
		return;
	}
	tx->msg_len += body.len;
	tx->crc = crc32c_update(tx->crc, body.p, body.len);
	if (tx->vjob != NULL) {
		vjob_feed(tx->vjob, body.p, body.len);
	}
	if (tx->buf.len >= WRITE_CHUNK) {
		tx_kick(sh, tx);
	}
	if (tx->buf.len >= TX_BUF_PAUSE && !c->paused_io) {
		/* The disk is behind this client: stop reading it for a while. */
		c->paused_io = true;
	}
}

/* conn_schedule_resume runs conn_resume at the end of this loop iteration. */
static void conn_schedule_resume(struct shard *sh, struct conn *c)
{
	if (!c->on_resume) {
		c->on_resume = true;
		c->next_resume = sh->resume;
		sh->resume = c;
	}
}

static void commit_finish(struct shard *sh, struct conn *c, enum smtp_commit rc)
{
	c->commit_rc = rc;
	conn_schedule_resume(sh, c);
}

/* tx_check settles a tx once none of its ops are in flight. */
static void tx_check(struct shard *sh, struct spool_tx *tx)
{
	struct conn *c = tx->c;

	if (tx_busy(tx)) {
		return;
	}
	if (tx->aborted || c == NULL) {
		tx_discard(sh, tx);
		return;
	}
	if (!tx->ended) {
		tx_kick(sh, tx);
		return;
	}
	if (tx->policy_reject) {
		log_line(LOG_INFO, c->who, "tx.reject id=%s reason=\"dmarc policy reject\"", tx->name);
		commit_finish(sh, c, SMTP_COMMIT_REJECT);
		tx_discard(sh, tx);
		return;
	}
	if (tx->auth_tempfail) {
		log_line(LOG_INFO, c->who, "tx.tempfail id=%s reason=\"dkim temperror\"", tx->name);
		commit_finish(sh, c, SMTP_COMMIT_TEMPFAIL);
		tx_discard(sh, tx);
		return;
	}
	if (tx->err != 0) {
		log_line(LOG_WARN, c->who, "spool.error id=%s error=\"%s\"", tx->name, strerror(-tx->err));
		commit_finish(sh, c, (tx->err == -ENOSPC || tx->err == -EDQUOT) ? SMTP_COMMIT_NOSPACE
										 : SMTP_COMMIT_TEMPFAIL);
		tx_discard(sh, tx);
		return;
	}
	if (tx->data_synced && tx->dir_synced) {
		close_quiet(sh, tx->fd);
		if (deliver_enqueue(sh->deliver, tx->name) != 0) {
			/* Still durable: the next start delivers it. */
			log_line(LOG_WARN, c->who, "deliver.enqueue id=%s error=\"out of memory\"", tx->name);
		}
		sh->n_msgs++;
		log_line(LOG_INFO, c->who, "tx.commit id=%s size=%llu", tx->name,
			 (unsigned long long)tx->msg_len);
		c->tx = NULL;
		tx_free(tx);
		commit_finish(sh, c, SMTP_COMMIT_OK);
		return;
	}
	tx_kick(sh, tx);
}

/* tx_kick issues the next spool op: a write, or joining the durability batch. */
static void tx_kick(struct shard *sh, struct spool_tx *tx)
{
	struct io_uring_sqe *sqe;
	struct bb t;

	if (tx->fd < 0 || tx->write_inflight || tx->err != 0 || tx->aborted) {
		return;
	}
	if (tx->buf.len > 0 && (tx->ended || tx->body_done || tx->buf.len >= WRITE_CHUNK)) {
		t = tx->wbuf;
		tx->wbuf = tx->buf;
		tx->buf = t;
		tx->buf.len = 0;
		sqe = sqe_get(sh);
		io_uring_prep_write(sqe, tx->fd, tx->wbuf.p, (unsigned)tx->wbuf.len, tx->off);
		io_uring_sqe_set_data64(sqe, ud_tx(OP_WRITE, tx));
		tx->write_inflight = true;
		return;
	}
	if (!tx->ended || tx->buf.len != 0 || tx->fsync_inflight || tx->data_synced || tx->in_dir_list ||
	    tx->rename_inflight) {
		return;
	}
	if (tx->reuse && !tx->renamed) {
		/* Complete in the page cache: give it its name in SPOOL/q. The
		 * batch sync below makes both directories durable with it. */
		sqe = sqe_get(sh);
		io_uring_prep_renameat(sqe, sh->g->dirs->free, tx->slot, sh->g->dirs->q, tx->name, 0);
		io_uring_sqe_set_data64(sqe, ud_tx(OP_RENAME, tx));
		tx->rename_inflight = true;
		return;
	}
	/* Every byte is in the page cache. The file's directory entry exists
	 * since openat completed; the next batch sync makes it durable. */
	tx->in_dir_list = true;
	tx->next_dir = sh->dir_wait;
	sh->dir_wait = tx;
	if (sh->g->cfg->spool_sync == SPOOL_SYNC_FSYNC) {
		sqe = sqe_get(sh);
		io_uring_prep_fsync(sqe, tx->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data64(sqe, ud_tx(OP_FSYNC, tx));
		tx->fsync_inflight = true;
		sh->n_fsync++;
	}
}

static void tx_end(struct shard *sh, struct conn *c)
{
	struct spool_tx *tx = c->tx;
	char trailer[SPOOL_TRAILER_LEN + 1];

	c->paused_commit = true;
	c->commit_ms = sh->now_ms;
	c->eod_us = mono_us();
	if (tx == NULL) {
		commit_finish(sh, c, SMTP_COMMIT_TEMPFAIL);
		return;
	}
	if (tx->vjob != NULL) {
		/* The trailer waits for the verdict, which goes before it. */
		vjob_end(tx->vjob);
		tx->body_done = true;
		tx_kick(sh, tx);
		return;
	}
	spool_trailer_format(trailer, tx->msg_len, tx->crc, 0);
	if (tx->err == 0 && bb_append(&tx->buf, trailer, SPOOL_TRAILER_LEN) != 0) {
		tx->err = -ENOMEM;
	}
	tx->ended = true;
	tx_check(sh, tx);
}

/*
 * tx_verdict appends the finished job's Authentication-Results field (the
 * spool's auth block) and the trailer, so the commit can go on.
 */
static void tx_verdict(struct shard *sh, struct spool_tx *tx, struct vjob *j)
{
	char trailer[SPOOL_TRAILER_LEN + 1];
	size_t mark = tx->buf.len;
	uint32_t auth_len = 0;

	tx->vjob = NULL;
	if (tx->err == 0 && vjob_authres(j, &tx->buf, sh->g->cfg->hostname) != 0) {
		tx->err = -ENOMEM;
	}
	if (tx->err == 0) {
		auth_len = (uint32_t)(tx->buf.len - mark);
		tx->crc = crc32c_update(tx->crc, tx->buf.p + mark, auth_len);
		spool_trailer_format(trailer, tx->msg_len, tx->crc, auth_len);
		if (bb_append(&tx->buf, trailer, SPOOL_TRAILER_LEN) != 0) {
			tx->err = -ENOMEM;
		}
	}
	if (sh->g->cfg->dkim_temperror_tempfail && vjob_worst(j) == AUTH_TEMPERROR) {
		tx->auth_tempfail = true;
	}
	if (sh->g->cfg->dmarc_enforce && vjob_dmarc_reject(j)) {
		tx->policy_reject = true;
	}
	tx->ended = true;
	tx->body_done = false;
	tx_check(sh, tx);
}

/* vjob_count counts a verdict and keeps it on the conn for the tx.done line. */
static void vjob_count(struct shard *sh, const struct spool_tx *tx, const struct vjob *j)
{
	struct vjob_brief b;

	vjob_brief(j, &b);
	if (b.dkim_on) {
		bool any = false;

		for (unsigned r = 0; r < AUTH_RES_COUNT; r++) {
			metrics_add(&sh->m.dkim[r], b.dkim_count[r]);
			any |= b.dkim_count[r] != 0;
		}
		if (!any) {
			metrics_add(&sh->m.dkim[AUTH_NONE], 1); /* unsigned */
		}
	}
	if (b.spf_mfrom_on) {
		metrics_add(&sh->m.spf_mfrom[b.spf_mfrom], 1);
	}
	if (b.spf_helo_on) {
		metrics_add(&sh->m.spf_helo[b.spf_helo], 1);
	}
	if (b.dmarc_on) {
		metrics_add(&sh->m.dmarc[b.dmarc], 1);
	}
	if (b.arc_on) {
		metrics_add(&sh->m.arc[b.arc], 1);
	}
	if (tx->c != NULL) {
		tx->c->auth = b;
		tx->c->auth_set = true;
	}
}

/* on_vdone takes the pool's finished jobs: verdicts for live txs, the rest freed. */
static void on_vdone(struct shard *sh)
{
	struct vjob *j = vpool_inbox_take(&sh->inbox), *next;

	for (; j != NULL; j = next) {
		next = vjob_next(j);
		if (!vjob_abandoned(j)) {
			vjob_count(sh, vjob_owner(j), j);
			tx_verdict(sh, vjob_owner(j), j);
		}
		vjob_free(j);
		sh->vjobs_live--;
		metrics_set(&sh->m.verify_jobs, sh->vjobs_live);
	}
}

static void on_tx_op(struct shard *sh, struct spool_tx *tx, enum op op, int res)
{
	struct conn *c = tx->c;

	switch (op) {
	case OP_OPEN:
		tx->open_inflight = false;
		if (res < 0 && tx->reuse) {
			/* The free file is gone (removed by hand?): create one instead. */
			tx->reuse = false;
			tx_open(sh, tx);
			return;
		}
		if (res < 0) {
			tx->err = tx->err ? tx->err : res;
		} else {
			tx->fd = res;
		}
		break;
	case OP_WRITE:
		tx->write_inflight = false;
		if (res < 0) {
			tx->err = tx->err ? tx->err : res;
		} else if (res == 0) {
			tx->err = tx->err ? tx->err : -EIO;
		} else {
			tx->off += (uint64_t)res;
			bb_consume(&tx->wbuf, (size_t)res);
			if (tx->wbuf.len > 0) {
				/* Short write: put the rest back in front of what waits. */
				struct bb t = tx->wbuf;

				if (bb_append_span(&t, bb_span(&tx->buf)) == 0) {
					bb_fini(&tx->buf);
					tx->buf = t;
					bb_init(&tx->wbuf, 0);
				} else {
					tx->err = -ENOMEM;
				}
			}
		}
		if (c != NULL && c->paused_io && tx->buf.len < TX_BUF_PAUSE / 2) {
			c->paused_io = false;
			conn_schedule_resume(sh, c); /* resume reading; not a commit */
		}
		break;
	case OP_RENAME:
		tx->rename_inflight = false;
		if (res < 0) {
			tx->err = tx->err ? tx->err : res;
		} else {
			tx->renamed = true;
		}
		break;
	case OP_FSYNC:
		tx->fsync_inflight = false;
		if (res < 0) {
			tx->err = tx->err ? tx->err : res;
		} else {
			tx->data_synced = true;
		}
		break;
	default:
		break;
	}
	tx_check(sh, tx);
}

/*
 * dirsync_submit makes the batch of txs that became ready since the last
 * one durable. With --spool-sync syncfs, one syncfs() on the sync thread
 * covers data, inodes and directory entries, one at a time (it covers all
 * that was written before it started). With fsync, each tx has its own
 * fdatasync in flight and the batch shares one SPOOL/q fsync; several may
 * be in flight, so a tx never waits for a sync that started before it was
 * ready.
 */
static void dirsync_submit(struct shard *sh)
{
	struct io_uring_sqe *sqe;
	unsigned slot;

	if (sh->dir_wait == NULL) {
		return;
	}
	if (sh->g->cfg->spool_sync == SPOOL_SYNC_SYNCFS) {
		if (sh->dir_inflight != 0) {
			return;
		}
		sh->dir_batch[0] = sh->dir_wait;
		sh->dir_wait = NULL;
		sh->sync_req_val = 1;
		sqe = sqe_get(sh);
		io_uring_prep_write(sqe, sh->sync_req_fd, &sh->sync_req_val, sizeof(sh->sync_req_val), 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		sh->dir_inflight++;
		sh->n_dirsync++;
		return;
	}
	if (sh->dir_inflight == DIRSYNC_MAX) {
		return;
	}
	for (slot = 0; sh->dir_batch[slot] != NULL; slot++) {
	}
	sh->dir_batch[slot] = sh->dir_wait;
	sh->dir_wait = NULL;
	sqe = sqe_get(sh);
	io_uring_prep_fsync(sqe, sh->g->dirs->q, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_DIRSYNC, slot, 0));
	sh->dir_inflight++;
	sh->n_dirsync++;
}

static void on_dirsync(struct shard *sh, unsigned slot, int res)
{
	struct spool_tx *tx, *next;

	sh->dir_inflight--;
	for (tx = sh->dir_batch[slot]; tx != NULL; tx = next) {
		next = tx->next_dir;
		tx->next_dir = NULL;
		tx->in_dir_list = false;
		if (res < 0) {
			tx->err = tx->err ? tx->err : res;
		} else {
			tx->dir_synced = true;
			if (sh->g->cfg->spool_sync == SPOOL_SYNC_SYNCFS) {
				tx->data_synced = true; /* syncfs covered the data too */
			}
		}
		tx_check(sh, tx);
	}
	sh->dir_batch[slot] = NULL;
}

/* ------------------------------------------------------------ input */

static void conn_process(struct shard *sh, struct conn *c, struct span *in)
{
	size_t out_before = c->out.len, mark;
	bool progress = false;

	while (!c->closing && !conn_paused(c)) {
		struct span body;
		enum smtp_ev ev;

		if (c->out.len + c->sending.len >= OUT_PAUSE) {
			/* The client is not reading its replies: stop taking its
			 * commands until it does (on_send resumes us). */
			c->paused_out = true;
			break;
		}
		mark = c->out.len;
		ev = smtp_sess_next(c->sess, in, &c->out, &body);
		count_replies(sh, c, mark);
		progress |= ev != SMTP_EV_NEED_INPUT;
		switch (ev) {
		case SMTP_EV_NEED_INPUT:
			goto out;
		case SMTP_EV_MAIL:
			metrics_add(&sh->m.tx_started, 1);
			c->mail_us = mono_us();
			c->auth_set = false;
			conn_start_vjob(sh, c);
			break;
		case SMTP_EV_TX_BEGIN:
			tx_begin(sh, c);
			break;
		case SMTP_EV_BODY:
			tx_append(sh, c, body);
			break;
		case SMTP_EV_TX_ABORT:
			metrics_add(&sh->m.tx_aborted, 1);
			if (smtp_sess_phase(c->sess) == SMTP_PHASE_DATA) {
				/* The reply comes at the final dot: it is this message's. */
				c->eod_abort = true;
				c->eod_us = mono_us();
				if (LOG_ENABLED(LOG_INFO) && c->abort_snap == NULL &&
				    (c->abort_snap = malloc(sizeof(*c->abort_snap))) != NULL) {
					tx_snap_take(c->abort_snap, smtp_sess_env(c->sess));
				}
			}
			tx_detach_abort(sh, c);
			break;
		case SMTP_EV_TX_END:
			conn_flush(sh, c);
			tx_end(sh, c);
			goto out;
		case SMTP_EV_CLOSE:
			conn_close(sh, c);
			goto out;
		case SMTP_EV_COUNT:
			goto out;
		}
	}
out:
	if (progress || c->out.len != out_before) {
		c->cmd_ms = sh->now_ms; /* a command (or data) was completed */
	}
	conn_flush(sh, c);
}

/* conn_input takes bytes lent by a recv CQE; whatever is not parsed now is copied. */
static void conn_input(struct shard *sh, struct conn *c, struct span in)
{
	c->last_ms = sh->now_ms;
	if (c->closing) {
		return;
	}
	if (!conn_paused(c) && c->pend.len == 0) {
		conn_process(sh, c, &in);
	}
	if (in.len > 0 && !c->closing) {
		if (bb_append_span(&c->pend, in) != 0) {
			conn_fail(sh, c);
			return;
		}
		if (c->pend.len > PEND_CANCEL) {
			/* A client pipelining far ahead of our commit: stop reading
			 * it until we caught up (re-armed on resume). */
			cancel_recv(sh, c);
		}
	}
}

/* conn_resume runs after a commit (or disk backpressure) finished. */
static void conn_resume(struct shard *sh, struct conn *c)
{
	struct span in;

	c->on_resume = false;
	if (c->paused_commit && (c->tx == NULL)) {
		c->paused_commit = false;
		c->cmd_ms = sh->now_ms;
		if (!c->closing) {
			const struct msg_env *env = smtp_sess_env(c->sess);
			size_t at = c->out.len;
			uint64_t size = env->size;
			int64_t now_us = mono_us();
			struct tx_snap snap;
			unsigned code;

			if (LOG_ENABLED(LOG_INFO)) {
				tx_snap_take(&snap, env);
			}
			if (smtp_sess_tx_done(c->sess, c->commit_rc, &c->out) != 0) {
				conn_fail(sh, c);
				return;
			}
			/* The message's answer, then whatever followed it (421 at shutdown). */
			code = reply_code_at(&c->out, &at);
			if (code != 0) {
				metrics_shard_code(sh->m.replies, code);
				metrics_shard_code(sh->m.messages, code);
				metrics_hist_observe(&sh->m.tx_latency_us, metrics_lat_bounds_us, METRICS_LAT_BOUNDS,
						     (uint64_t)(now_us - c->eod_us));
				if (code == 250) {
					metrics_hist_observe(&sh->m.msg_size, metrics_size_bounds, METRICS_SIZE_BOUNDS,
							     size);
				}
				if (LOG_ENABLED(LOG_INFO)) {
					tx_log(c, &snap, code, now_us);
				}
			}
			count_replies(sh, c, at);
			c->eod_us = 0;
		}
	}
	if (c->closing) {
		conn_maybe_free(sh, c);
		return;
	}
	if (!conn_paused(c)) {
		in = bb_span(&c->pend);
		conn_process(sh, c, &in);
		bb_consume(&c->pend, c->pend.len - in.len);
		if (c->pend.len == 0) {
			bb_reset(&c->pend, 1);
		}
		if (!c->closing && !conn_paused(c) && c->pend.len <= PEND_CANCEL) {
			arm_recv(sh, c);
		}
	}
	conn_flush(sh, c);
}

static void on_recv(struct shard *sh, struct conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;

	if (!more) {
		c->recv_armed = false;
		c->inflight--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *p = pbuf_addr(sh, bid) + (sh->pbuf_inc ? sh->buf_off[bid] : 0);

		if (res > 0) {
			metrics_add(&sh->m.bytes_received, (uint64_t)res);
			conn_input(sh, c, span_make(p, (size_t)res));
		}
		if (sh->pbuf_inc && (cqe->flags & IORING_CQE_F_BUF_MORE)) {
			if (sh->buf_off[bid] == 0 && res > 0) {
				metrics_add(&sh->m.pbuf_partial, 1);
			}
			sh->buf_off[bid] += (uint32_t)(res > 0 ? res : 0);
		} else {
			pbuf_return(sh, bid);
		}
	}
	if (res == 0) {
		/* EOF: the client is gone. A commit in flight still completes. */
		conn_fail(sh, c);
	} else if (res == -ENOBUFS) {
		/* Backpressure: the pool is empty. Data waits in the socket (the
		 * TCP window closes by itself); pbuf_flush() re-arms this recv
		 * once buffers came back. */
		sh->n_enobufs++;
		metrics_add(&sh->m.enobufs, 1);
		if (!c->recv_armed && !c->on_bufwait && !c->closing) {
			metrics_add(&sh->m.pbuf_waiters, 1);
			c->on_bufwait = true;
			c->next_bufwait = sh->buf_wait;
			sh->buf_wait = c;
		}
		conn_maybe_free(sh, c);
		return;
	} else if (res < 0 && res != -ECANCELED) {
		log_line(LOG_INFO, c->who, "conn.recv error=\"%s\"", strerror(-res));
		conn_fail(sh, c);
	}
	if (!c->recv_armed && !c->closing && !conn_paused(c) && c->pend.len <= PEND_CANCEL) {
		arm_recv(sh, c);
	}
	conn_maybe_free(sh, c);
}

/* ------------------------------------------------------------ accept */

static void arm_accept(struct shard *sh, unsigned i)
{
	struct io_uring_sqe *sqe = sqe_get(sh);

	io_uring_prep_multishot_accept(sqe, sh->listen_fd[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, i, 0));
	sh->accept_armed[i] = true;
}

static void on_accept(struct shard *sh, unsigned li, struct io_uring_cqe *cqe)
{
	const struct cfg *cfg = sh->g->cfg;
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);
	struct conn *c;
	int fd = cqe->res;
	struct io_uring_sqe *sqe;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		sh->accept_armed[li] = false;
		if (!sh->stopping && sh->listen_fd[li] >= 0) {
			arm_accept(sh, li);
		}
	}
	if (fd < 0) {
		if (fd != -ECANCELED) {
			log_line(LOG_WARN, sh->who, "accept error=\"%s\"", strerror(-fd));
		}
		return;
	}
	if (sh->stopping) {
		metrics_add(&sh->m.conns_refused[METRICS_REFUSE_SHUTDOWN], 1);
		close(fd);
		return;
	}
	sh->n_accept++;
	metrics_add(&sh->m.conns_accepted, 1);
	memset(&sa, 0, sizeof(sa));
	/* Multishot accept shares one address buffer across completions, so the
	 * peer is asked for per socket (IO_URING.md §3.6, option 2). */
	if (getpeername(fd, (struct sockaddr *)&sa, &sl) != 0) {
		metrics_add(&sh->m.conns_refused[METRICS_REFUSE_PEER], 1);
		close(fd);
		return;
	}
	c = conn_new(sh, fd, &sa);
	if (c == NULL) {
		metrics_add(&sh->m.conns_refused[METRICS_REFUSE_MEMORY], 1);
		log_line(LOG_WARN, sh->who, "accept error=\"out of memory\"");
		close(fd);
		return;
	}
	log_line(LOG_INFO, c->who, "conn.open client=%s port=%u", smtp_sess_env(c->sess)->client_ip,
		 smtp_sess_env(c->sess)->client_port);
	c->counted = limits_acquire(sh->g->limits, &c->ipkey);
	if (!c->counted) {
		sh->n_refused++;
		metrics_add(&sh->m.conns_refused[METRICS_REFUSE_LIMIT], 1);
		log_line(LOG_INFO, c->who, "conn.refuse reason=\"connection limit\"");
		if (smtp_sess_abort(c->sess, SMTP_ABORT_TOO_MANY, &c->out) != 0) {
			bb_reset(&c->out, 1);
		}
		count_replies(sh, c, 0);
		c->io_done = false;
		conn_close(sh, c);
		return;
	}
	if (cfg->greet_delay_ms > 0) {
		c->greet_ts.tv_sec = cfg->greet_delay_ms / 1000;
		c->greet_ts.tv_nsec = (long long)(cfg->greet_delay_ms % 1000) * 1000000;
		sqe = sqe_get(sh);
		io_uring_prep_timeout(sqe, &c->greet_ts, 0, 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_GREET, c->idx, c->gen));
		c->greet_pending = true;
		c->inflight++;
		/* The timespec is read at submission; c lives until inflight == 0. */
	} else if (smtp_sess_greet(c->sess, &c->out) != 0) {
		conn_fail(sh, c);
		return;
	}
	count_replies(sh, c, 0);
	arm_recv(sh, c);
	conn_flush(sh, c);
}

static void on_greet(struct shard *sh, struct conn *c)
{
	c->inflight--;
	c->greet_pending = false;
	if (!c->closing) {
		size_t mark = c->out.len;

		if (smtp_sess_greet(c->sess, &c->out) != 0) {
			conn_fail(sh, c);
		}
		count_replies(sh, c, mark);
		conn_flush(sh, c);
	}
	conn_maybe_free(sh, c);
}

/* ------------------------------------------------------------ timers */

/*
 * closing_send_check: a closing conn's last replies may never be read. A
 * send that made no progress for SEND_STALL_MS, or any send at the end of
 * the shutdown grace, is cancelled, so the conn and its buffers go.
 */
static void closing_send_check(struct shard *sh, struct conn *c)
{
	if (c->send_inflight && (sh->now_ms - c->send_ms >= SEND_STALL_MS ||
				 (sh->stopping && sh->now_ms >= sh->stop_deadline_ms))) {
		conn_cancel_send(sh, c, "client not reading");
	}
}

static void tick(struct shard *sh)
{
	const struct cfg *cfg = sh->g->cfg;

	bufwait_rearm(sh); /* never strand a connection on the wait list */
	for (uint32_t i = 0; i < sh->conns_cap; i++) {
		struct conn *c = sh->conns[i];
		int64_t limit, since;
		size_t mark;
		enum smtp_phase phase;

		if (c == NULL) {
			continue;
		}
		if (c->closing) {
			closing_send_check(sh, c);
			continue;
		}
		phase = smtp_sess_phase(c->sess);
		switch (phase) {
		case SMTP_PHASE_DATA:
			/* RFC 5321 §4.5.3.2.5: per block of data, so any progress counts. */
			limit = cfg->timeout_data;
			since = c->last_ms;
			break;
		case SMTP_PHASE_COMMIT:
			limit = cfg->timeout_commit;
			since = c->commit_ms;
			break;
		default:
			/* A whole command must arrive within the limit, and its reply
			 * must be taken: while paused for unread replies no command
			 * completes, so that times out too. */
			limit = cfg->timeout_cmd;
			since = c->cmd_ms;
			break;
		}
		if (cfg->timeout_session != 0 && phase != SMTP_PHASE_COMMIT &&
		    sh->now_ms - c->open_ms >= (int64_t)cfg->timeout_session * 1000) {
			log_line(LOG_INFO, c->who, "conn.timeout phase=%s reason=\"session too long\"", smtp_phase_name(phase));
			mark = c->out.len;
			if (smtp_sess_abort(c->sess, SMTP_ABORT_TIMEOUT, &c->out) != 0) {
				bb_reset(&c->out, 1);
			}
			count_replies(sh, c, mark);
			conn_close(sh, c);
		} else if (sh->stopping && sh->now_ms >= sh->stop_deadline_ms) {
			log_line(LOG_INFO, c->who, "conn.shutdown phase=%s", smtp_phase_name(smtp_sess_phase(c->sess)));
			mark = c->out.len;
			if (smtp_sess_abort(c->sess, SMTP_ABORT_SHUTDOWN, &c->out) != 0) {
				bb_reset(&c->out, 1);
			}
			count_replies(sh, c, mark);
			conn_close(sh, c);
		} else if (sh->now_ms - since >= limit * 1000) {
			log_line(LOG_INFO, c->who, "conn.timeout phase=%s", smtp_phase_name(smtp_sess_phase(c->sess)));
			mark = c->out.len;
			if (smtp_sess_abort(c->sess, SMTP_ABORT_TIMEOUT, &c->out) != 0) {
				bb_reset(&c->out, 1);
			}
			count_replies(sh, c, mark);
			conn_close(sh, c);
		}
		if (c->closing) {
			closing_send_check(sh, c);
		}
	}
}

static void begin_shutdown(struct shard *sh)
{
	sh->stopping = true;
	sh->stop_deadline_ms = sh->now_ms + (int64_t)sh->g->cfg->shutdown_timeout * 1000;
	for (unsigned i = 0; i < sh->num_listen; i++) {
		if (sh->accept_armed[i]) {
			struct io_uring_sqe *sqe = sqe_get(sh);

			io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, i, 0), 0);
			io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		}
		/* The accept request holds its own file reference until cancelled. */
		close(sh->listen_fd[i]);
		sh->listen_fd[i] = -1;
	}
	for (uint32_t i = 0; i < sh->conns_cap; i++) {
		struct conn *c = sh->conns[i];

		size_t mark = c != NULL ? c->out.len : 0;

		if (c != NULL && !c->closing && smtp_sess_shutdown(c->sess, &c->out)) {
			count_replies(sh, c, mark);
			conn_close(sh, c);
		}
	}
}

/* ------------------------------------------------------------ loop */

static void arm_wake(struct shard *sh)
{
	struct io_uring_sqe *sqe = sqe_get(sh);

	io_uring_prep_read(sqe, sh->wake_fd, &sh->wake_buf, sizeof(sh->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_WAKE, 0, 0));
	sh->wake_armed = true;
}

static void arm_vdone(struct shard *sh)
{
	struct io_uring_sqe *sqe = sqe_get(sh);

	io_uring_prep_read(sqe, sh->inbox.efd, &sh->vdone_buf, sizeof(sh->vdone_buf), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_VDONE, 0, 0));
}

static void arm_syncdone(struct shard *sh)
{
	struct io_uring_sqe *sqe = sqe_get(sh);

	io_uring_prep_read(sqe, sh->sync_done_fd, &sh->sync_done_buf, sizeof(sh->sync_done_buf), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SYNCDONE, 0, 0));
}

/*
 * sync_main is the shard's sync thread: one syncfs(2) of the spool's
 * filesystem per request. syncfs writes back every dirty page and inode and
 * flushes the device cache once, so a whole batch of messages (data, inodes,
 * directory entries) costs one device flush, where per-file fsyncs cost one
 * each on a filesystem without a journal to merge them.
 */
static void *sync_main(void *arg)
{
	struct shard *sh = arg;

	for (;;) {
		uint64_t v, one = 1;

		if (read(sh->sync_req_fd, &v, sizeof(v)) != sizeof(v) && errno == EINTR) {
			continue;
		}
		if (atomic_load(&sh->sync_stop)) {
			break;
		}
		atomic_store(&sh->sync_result, syncfs(sh->g->dirs->q) == 0 ? 0 : -errno);
		if (write(sh->sync_done_fd, &one, sizeof(one)) != sizeof(one)) {
			log_line(LOG_ERR, sh->who, "sync.post error=\"%s\"", strerror(errno));
		}
	}
	return NULL;
}

static void handle_cqe(struct shard *sh, struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	enum op op = (enum op)(ud >> 56);
	uint32_t idx = (uint32_t)(ud >> 32) & 0xffffff, gen = (uint32_t)ud;
	struct conn *c;

	switch (op) {
	case OP_ACCEPT:
		on_accept(sh, idx, cqe);
		return;
	case OP_DIRSYNC:
		on_dirsync(sh, idx, cqe->res);
		return;
	case OP_VDONE:
		arm_vdone(sh);
		on_vdone(sh);
		return;
	case OP_SYNCDONE:
		arm_syncdone(sh);
		on_dirsync(sh, 0, atomic_load(&sh->sync_result));
		return;
	case OP_WAKE:
		sh->wake_armed = false;
		if (!atomic_load(&sh->g->stopping)) {
			arm_wake(sh);
		}
		return;
	case OP_OPEN:
	case OP_WRITE:
	case OP_FSYNC:
	case OP_RENAME:
		on_tx_op(sh, (struct spool_tx *)(uintptr_t)(ud & ((1ull << 56) - 1)), op, cqe->res);
		return;
	case OP_IGNORE:
	case OP_NONE:
	case OP_COUNT:
		return;
	default:
		break;
	}
	c = conn_get(sh, idx, gen);
	if (c == NULL) {
		/* Cannot happen (conns outlive their ops); still return a lent buffer. */
		if (op == OP_RECV && (cqe->flags & IORING_CQE_F_BUFFER) &&
		    !(sh->pbuf_inc && (cqe->flags & IORING_CQE_F_BUF_MORE))) {
			pbuf_return(sh, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		}
		log_line(LOG_ERR, sh->who, "bug: completion op=%d for a freed connection", (int)op);
		return;
	}
	switch (op) {
	case OP_RECV:
		on_recv(sh, c, cqe);
		break;
	case OP_SEND:
		on_send(sh, c, cqe->res);
		break;
	case OP_GREET:
		on_greet(sh, c);
		break;
	default:
		break;
	}
}

static void run_resumes(struct shard *sh)
{
	while (sh->resume != NULL) {
		struct conn *c = sh->resume;

		sh->resume = c->next_resume;
		c->next_resume = NULL;
		conn_resume(sh, c);
	}
}

static bool shard_done(struct shard *sh)
{
	if (!sh->stopping || sh->nconns != 0 || sh->dir_inflight != 0 || sh->dir_wait != NULL ||
	    sh->vjobs_live != 0) {
		return false;
	}
	/* A listener stays open while its accept request holds it: wait for
	 * the cancellation, or new clients would hang in its backlog. */
	for (unsigned i = 0; i < sh->num_listen; i++) {
		if (sh->accept_armed[i]) {
			return false;
		}
	}
	return true;
}

static void shard_loop(struct shard *sh)
{
	int64_t next_tick = mono_ms() + 1000;

	while (!shard_done(sh)) {
		struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int rc;

		pbuf_flush(sh);
		dirsync_submit(sh);
		rc = io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
			log_line(LOG_ERR, sh->who, "ring.wait error=\"%s\"", strerror(-rc));
		}
		sh->now_ms = mono_ms();
		io_uring_for_each_cqe(&sh->ring, head, cqe) {
			handle_cqe(sh, cqe);
			n++;
		}
		io_uring_cq_advance(&sh->ring, n);
		run_resumes(sh);
		if (!sh->stopping && atomic_load(&sh->g->stopping)) {
			begin_shutdown(sh);
			tick(sh);
		}
		if (sh->now_ms >= next_tick) {
			next_tick = sh->now_ms + 1000;
			tick(sh);
		}
		run_resumes(sh);
		reap(sh);
	}
	/* The last closes were only queued: submit them before the ring goes,
	 * or their sockets would stay open until the whole process exits. */
	io_uring_submit(&sh->ring);
}

/* ------------------------------------------------------------ set-up */

static int listen_one(const struct cfg_listen *l, int *out_fd)
{
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0) {
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    /* Accepted sockets inherit TCP_NODELAY: replies are already batched
	     * per input, so Nagle would only add delayed-ACK stalls. */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	if (l->addr.ss_family == AF_INET6) {
		/* "[::]:25" is IPv6 only; list "0.0.0.0:25" too for IPv4. */
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	*out_fd = fd;
	return 0;
}

static int shard_setup(struct shard *sh)
{
	const struct cfg *cfg = sh->g->cfg;
	struct io_uring_params p;
	int rc;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = RING_ENTRIES * 8;
	rc = io_uring_queue_init_params(RING_ENTRIES, &sh->ring, &p);
	if (rc < 0) {
		/* Older kernels: no DEFER_TASKRUN; COOP_TASKRUN still avoids IPIs. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
		p.cq_entries = RING_ENTRIES * 8;
		rc = io_uring_queue_init_params(RING_ENTRIES, &sh->ring, &p);
	}
	if (rc < 0) {
		log_line(LOG_ERR, sh->who, "ring.init error=\"%s\"", strerror(-rc));
		return rc;
	}
	sh->ring_ok = true;
	if (getrandom(&sh->id_salt, sizeof(sh->id_salt), 0) != (ssize_t)sizeof(sh->id_salt)) {
		sh->id_salt = (uint64_t)real_us(); /* still differs from the last run */
	}
	if ((rc = pbuf_setup(sh)) != 0) {
		log_line(LOG_ERR, sh->who, "pbuf.init error=\"%s\"", strerror(-rc));
		return rc;
	}
	for (unsigned i = 0; i < cfg->num_listen; i++) {
		if ((rc = listen_one(&cfg->listen[i], &sh->listen_fd[i])) != 0) {
			log_line(LOG_ERR, sh->who, "listen addr=%s error=\"%s\"", cfg->listen[i].text, strerror(-rc));
			return rc;
		}
		sh->num_listen++;
		arm_accept(sh, i);
	}
	sh->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (sh->wake_fd < 0) {
		return -errno;
	}
	arm_wake(sh);
	if (sh->g->vpool != NULL) {
		if ((rc = vpool_inbox_init(&sh->inbox)) != 0) {
			return rc;
		}
		arm_vdone(sh);
	}
	if (cfg->spool_sync == SPOOL_SYNC_SYNCFS) {
		sh->sync_req_fd = eventfd(0, EFD_CLOEXEC);
		sh->sync_done_fd = eventfd(0, EFD_CLOEXEC);
		if (sh->sync_req_fd < 0 || sh->sync_done_fd < 0) {
			return -errno;
		}
		if (pthread_create(&sh->sync_thread, NULL, sync_main, sh) != 0) {
			return -EAGAIN;
		}
		thread_name(sh->sync_thread, "omx-sync", sh->idx);
		sh->sync_thread_ok = true;
		arm_syncdone(sh);
	}
	io_uring_submit(&sh->ring);
	log_line(LOG_NOTICE, sh->who, "shard.ready listeners=%u pbuf=%ux%u incremental=%s", sh->num_listen,
		 sh->pbuf_count, sh->pbuf_size, sh->pbuf_inc ? "yes" : "no");
	return 0;
}

static void shard_teardown(struct shard *sh)
{
	if (sh->sync_thread_ok) {
		uint64_t one = 1;

		atomic_store(&sh->sync_stop, true);
		if (write(sh->sync_req_fd, &one, sizeof(one)) == sizeof(one)) {
			pthread_join(sh->sync_thread, NULL);
		}
		sh->sync_thread_ok = false;
	}
	if (sh->sync_req_fd >= 0) {
		close(sh->sync_req_fd);
	}
	vpool_inbox_fini(&sh->inbox);
	if (sh->sync_done_fd >= 0) {
		close(sh->sync_done_fd);
	}
	for (unsigned i = 0; i < sh->num_listen; i++) {
		if (sh->listen_fd[i] >= 0) {
			close(sh->listen_fd[i]);
		}
	}
	if (sh->ring_ok) {
		io_uring_queue_exit(&sh->ring);
	}
	if (sh->wake_fd >= 0) {
		close(sh->wake_fd);
	}
	if (sh->br != NULL) {
		munmap(sh->br, sh->br_bytes);
	}
	if (sh->buf_base != NULL) {
		munmap(sh->buf_base, (size_t)sh->pbuf_count * sh->pbuf_size);
	}
	free(sh->buf_off); sh->buf_off = NULL;
	free(sh->conns); sh->conns = NULL;
	free(sh->free_idx); sh->free_idx = NULL;
}

static void *shard_main(void *arg)
{
	struct shard *sh = arg;
	int rc;

	/* The ring is created here: SINGLE_ISSUER binds it to its creator. */
	sh->now_ms = mono_ms();
	rc = shard_setup(sh);
	pthread_mutex_lock(&sh->start_mu);
	sh->start_state = rc == 0 ? 1 : -1;
	pthread_cond_signal(&sh->start_cv);
	pthread_mutex_unlock(&sh->start_mu);
	if (rc == 0) {
		shard_loop(sh);
		log_line(LOG_NOTICE, sh->who,
			 "shard.stop accepted=%llu refused=%llu messages=%llu fsync=%llu dirsync=%llu enobufs=%llu",
			 (unsigned long long)sh->n_accept, (unsigned long long)sh->n_refused,
			 (unsigned long long)sh->n_msgs, (unsigned long long)sh->n_fsync,
			 (unsigned long long)sh->n_dirsync, (unsigned long long)sh->n_enobufs);
	}
	return NULL;
}

struct shard *shard_start(const struct shard_global *g, unsigned idx, struct deliver *d)
{
	struct shard *sh = calloc(1, sizeof(*sh));
	int state;

	if (sh == NULL) {
		return NULL;
	}
	sh->idx = idx;
	sh->g = g;
	sh->deliver = d;
	sh->wake_fd = -1;
	sh->sync_req_fd = -1;
	sh->sync_done_fd = -1;
	sh->inbox.efd = -1;
	snprintf(sh->who, sizeof(sh->who), "s%u", idx);
	for (unsigned i = 0; i < CFG_LISTEN_MAX; i++) {
		sh->listen_fd[i] = -1;
	}
	pthread_mutex_init(&sh->start_mu, NULL);
	pthread_cond_init(&sh->start_cv, NULL);
	if (pthread_create(&sh->thread, NULL, shard_main, sh) != 0) {
		free(sh);
		return NULL;
	}
	thread_name(sh->thread, "omx-shard", sh->idx);
	pthread_mutex_lock(&sh->start_mu);
	while (sh->start_state == 0) {
		pthread_cond_wait(&sh->start_cv, &sh->start_mu);
	}
	state = sh->start_state;
	pthread_mutex_unlock(&sh->start_mu);
	if (state < 0) {
		pthread_join(sh->thread, NULL);
		shard_teardown(sh);
		free(sh);
		return NULL;
	}
	return sh;
}

void shard_wake(struct shard *sh)
{
	uint64_t one = 1;

	if (write(sh->wake_fd, &one, sizeof(one)) < 0) {
		/* The 1 s tick notices the stop flag anyway. */
		return;
	}
}

void shard_join(struct shard *sh)
{
	if (sh == NULL) {
		return;
	}
	pthread_join(sh->thread, NULL);
	shard_teardown(sh);
	pthread_mutex_destroy(&sh->start_mu);
	pthread_cond_destroy(&sh->start_cv);
	free(sh);
}

const struct metrics_shard *shard_metrics(const struct shard *sh)
{
	return &sh->m;
}
