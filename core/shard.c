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
 *        TX_BEGIN -> record header place, envelope + Received: buffered
 *        BODY     -> appended to tx->buf (a large body spills: streamed
 *                    through the ring into a segment of its own)
 *        TX_END   -> (verdict) -> record placed at the active segment's
 *                    tail, one write -> group fdatasync of the segment
 *                    -> 250 (smtp_sess_tx_done) -> delivery queue
 *   -> replies: one send in flight per connection (out -> sending)
 *
 * STARTTLS (core/tls.h): on SMTP_EV_STARTTLS the clear input still buffered
 * is dropped (CVE-2011-0411), the 220 moves to c->tout and from then on
 * c->tout is what goes to the socket: received ciphertext is fed to the TLS
 * session (copied out of the pbuf), decrypted plaintext goes through
 * conn_process like clear input, and replies in c->out are sealed into
 * c->tout at each flush. Paused input stays as ciphertext in the session's
 * read buffer (counted with c->pend for PEND_CANCEL).
 *
 * Invariants:
 *  - No blocking syscall after start-up: file and socket I/O go through
 *    the ring. (getpeername and setsockopt on new sockets are non-blocking.)
 *  - A pbuf is never held past the CQE that lent it: the session copies
 *    what it keeps, the spool tx copies body bytes into tx->buf.
 *  - A conn is freed only when no op of its own is in flight (c->inflight)
 *    and it has no tx, so a CQE never finds a freed conn; the generation in
 *    user_data is a second check.
 *  - 250 is sent only from the completion of the flush that covered the
 *    record and every record before it in its segment; with a "?sync=yes"
 *    sink, only once that sink took it too (the delivery worker's outcome,
 *    OP_SINKDONE; a late outcome for a conn gone is dropped).
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

#include "../proto/proxy.h"
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
/* In command state one smtp_sess_next() answers every pipelined command it
 * is given, and a reply can be 20 times its command (EHLO): commands are fed
 * in slices this long, so OUT_PAUSE is checked every ~40 KB of replies. */
#define CMD_SLICE       2048
#define PROXY_WAIT_MS   10000          /* a PROXY header must arrive this soon after accept */
#define LISTEN_BACKLOG  4096
#define SEG_WAIT_POLL_NS 5000000      /* 5 ms: how often txs waiting for a segment look again */
#define RATE_POLL_NS     2000000      /* 2 ms: how often conns paused by --max-input-rate look again */
#define DIRSYNC_MAX     8              /* SPOOL/q fsyncs in flight at once */

enum op {
	OP_NONE = 0, /* never used: a zero user_data is a bug */
	OP_ACCEPT,   /* idx = listener */
	OP_RECV,     /* multishot, conn */
	OP_SEND,     /* conn */
	OP_GREET,    /* greet-delay timeout, conn */
	OP_WRITE,    /* record bytes into a segment, tx */
	OP_RECHDR,   /* a spilled record's header, written last, tx */
	OP_DIRSYNC,  /* a batch's fdatasync of a segment, shard (idx = batch slot) */
	OP_WAKE,     /* eventfd read, shard */
	OP_SYNCDONE, /* eventfd read: the sync thread finished a syncfs, shard */
	OP_VDONE,    /* eventfd read: the verify pool finished jobs, shard */
	OP_SINKDONE, /* eventfd read: the delivery worker answered sync deliveries, shard */
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
	struct spool_tx *next_dir;  /* durability batch */
	struct spool_tx *next_fifo; /* append order in the shard's segments */
	struct spool_tx *next_wait; /* waiting for a free segment */
	char name[MSG_ID_MAX];
	struct bb buf;        /* record bytes not yet written (from the header placeholder) */
	struct bb wbuf;       /* bytes of the write in flight */
	struct spool_seg *seg; /* where the record goes; NULL until placed (or spilled) */
	uint64_t rec_off;     /* record offset in seg */
	uint64_t rec_len;     /* record length without padding, once placed */
	uint64_t off;         /* file offset of the next write */
	uint64_t head_len;    /* envelope text bytes */
	uint64_t msg_len;     /* message bytes so far (Received: + body) */
	uint32_t auth_len;
	uint32_t slot;
	uint32_t crc;         /* CRC-32C of the payload so far, for the trailer */
	uint8_t hdr[SPOOL_REC_HDR_LEN]; /* the record header, once placed */
	int err;              /* first error, -errno */
	bool spill;           /* streaming into a segment of its own */
	bool placed, hdr_written, synced;
	bool write_inflight, hdr_inflight, in_dir_list, in_fifo, seg_wait;
	uint64_t seg_ticket;  /* its place in line for a segment being made (spool_log_take) */
	bool ended;           /* auth block in: the record can be placed */
	bool body_done;       /* TX_END seen; waiting for the verifier's verdict */
	bool auth_tempfail;   /* --dkim-temperror tempfail and a temperror verdict */
	bool policy_reject;   /* --dmarc-enforce and the sender's DMARC policy says reject */
	enum smtp_commit spam_rc; /* the spam policy's answer instead of 250; SMTP_COMMIT_OK: none */
	char spam_log[112];   /* the verdict for the log line: score=.. action=".." or error=".." */
	enum smtp_commit milter_rc; /* the milters' answer instead of 250; SMTP_COMMIT_OK: none */
	bool milter_discard;  /* a milter said discard: answer 250, store nothing */
	char *milter_why;     /* the milter's reply text for milter_rc (malloc'd), or NULL */
	char milter_log[256]; /* milter=... for the log line; "" without --milter */
	struct vjob *vjob;    /* DKIM verification in the pool, until its verdict */
	bool aborted;         /* the session dropped it: clean up, no reply */
};

struct conn {
	struct shard *sh;     /* owner, for the session's mail_ok callback */
	uint32_t idx, gen;
	int fd;
	struct smtp_sess *sess;
	struct bb out;        /* replies being queued */
	struct bb sending;    /* replies of the send in flight */
	struct bb pend;       /* input received while paused (plaintext) */
	struct tls_conn *tls; /* after STARTTLS; NULL in clear */
	struct bb tout;       /* with tls: the bytes to send (the clear 220, then records) */
	bool tls_up;          /* the handshake completed */
	uint32_t inflight;    /* ops of this conn in flight */
	bool recv_armed, send_inflight, cancel_sent, send_cancel_sent;
	bool closing, io_done, counted;
	bool paused_commit, paused_io, paused_out, on_resume;
	bool paused_rate;     /* sent faster than --max-input-rate: unread until back within it */
	bool on_ratewait;
	struct conn *next_ratewait;
	int64_t in_tokens;    /* --max-input-rate bucket, bytes (below 0: owed) */
	int64_t in_ms;        /* when in_tokens was last refilled */
	bool proxy_wait;      /* --listen-proxy: no greeting until the PROXY header is read */
	bool dnsbl_wait;      /* --dnsbl: no greeting until the lists answered */
	struct vjob *dnsbl_job; /* the DNSBL lookups of this client, until they answer */
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
	char *commit_why;     /* a sync sink's reason for commit_rc (malloc'd), or NULL */
	bool sync_wait;       /* durable; the reply waits for the sync sinks' outcome */
	char sync_id[MSG_ID_MAX]; /* the message whose outcome sync_wait waits for */
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

	/* the log and group commit */
	struct spool_log *log;        /* this shard's segments (shared with its worker) */
	struct spool_seg *active;     /* records are appended here */
	uint64_t spill_bytes;         /* a body past this streams into a segment of its own */
	struct spool_tx *fifo, **fifo_tail; /* placed records in append order, not yet written */
	struct spool_tx *seg_waiters; /* waiting for a free segment */
	struct spool_tx *dir_wait;    /* written, waiting for the next batch flush */
	struct spool_tx *dir_batch[DIRSYNC_MAX]; /* covered by each flush in flight; NULL = free slot */
	unsigned dir_pending[DIRSYNC_MAX]; /* fdatasyncs of each batch still in flight */
	int dir_err[DIRSYNC_MAX];
	unsigned dir_inflight;
	struct conn *resume;      /* commits finished this iteration */
	struct conn *reap;        /* closed conns to release */
	struct conn *buf_wait;    /* conns waiting for receive buffers */
	struct conn *rate_wait;   /* conns paused by --max-input-rate */

	int wake_fd;
	uint64_t wake_buf;
	bool wake_armed;

	struct vpool_inbox inbox;   /* verify pool results */
	uint64_t vdone_buf;
	uint64_t sinkdone_buf;      /* deliver_sync_inbox's eventfd, read when a sink is ?sync=yes */
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
	uint64_t n_accept, n_refused, n_msgs, n_enobufs, n_fsync, n_dirsync, n_spill;
	uint64_t n_tls, n_tls_resumed, n_tls_fail;

	struct metrics_shard m;   /* written by this shard only; read by the metrics thread */

	uint8_t tls_plain[16384];   /* one record of decrypted input (RFC 8446 §5.1), lent to conn_process */
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
	return c->paused_commit || c->paused_io || c->paused_out || c->paused_rate || c->dnsbl_wait;
}

/* conn_backlog: input taken from the socket and not yet parsed (plaintext and ciphertext). */
static size_t conn_backlog(const struct conn *c)
{
	return c->pend.len + (c->tls != NULL ? tls_conn_buffered(c->tls) : 0);
}

/* conn_unsent: reply bytes the client has not taken yet. */
static size_t conn_unsent(const struct conn *c)
{
	return c->out.len + c->sending.len + c->tout.len;
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
static void conn_seal(struct shard *sh, struct conn *c);
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
static void conn_drop_dnsbl(struct conn *c);
static void conn_process(struct shard *sh, struct conn *c, struct span *in);
static void tx_kick(struct shard *sh, struct spool_tx *tx);
static void tx_check(struct shard *sh, struct spool_tx *tx);
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

/* input_rate is --max-input-rate now (bytes/s per connection; 0 = off): a reload may change it. */
static int64_t input_rate(const struct shard *sh)
{
	return (int64_t)atomic_load_explicit(&sh->g->max_input_rate, memory_order_relaxed);
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
	c->sh = sh;
	smtp_sess_set_owner(c->sess, c);
	c->idx = idx;
	c->gen = (uint32_t)(++sh->sess_counter);
	c->fd = fd;
	c->last_ms = sh->now_ms;
	c->cmd_ms = sh->now_ms;
	c->open_ms = sh->now_ms;
	c->in_tokens = input_rate(sh) * 1000; /* a second's burst */
	c->in_ms = sh->now_ms;
	c->auth_set = false;
	bb_init(&c->out, 0);
	bb_init(&c->sending, 0);
	bb_init(&c->pend, 0);
	bb_init(&c->tout, 0);
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
	    c->on_bufwait || c->on_ratewait) {
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
	conn_drop_dnsbl(c);
	free(c->commit_why); c->commit_why = NULL;
	smtp_sess_free(c->sess);
	bb_fini(&c->out);
	bb_fini(&c->sending);
	bb_fini(&c->pend);
	tls_conn_free(c->tls); c->tls = NULL;
	bb_fini(&c->tout);
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
	conn_drop_dnsbl(c);
	if (c->tx != NULL && !c->tx->ended && !c->tx->body_done) {
		tx_detach_abort(sh, c); /* mid-data: never acknowledged */
	}
	if (c->tls != NULL) {
		conn_seal(sh, c); /* the last replies (dropped mid-handshake), then the alert */
		if (c->tls_up) {
			tls_conn_close_notify(c->tls);
		}
	}
	if (!c->send_inflight && c->out.len == 0 && c->tout.len == 0) {
		conn_finish_io(sh, c);
	} else {
		conn_flush(sh, c);
	}
}

/* conn_fail drops a conn whose socket broke: nothing more can be sent. */
static void conn_fail(struct shard *sh, struct conn *c)
{
	bb_reset(&c->out, 1);
	bb_reset(&c->tout, 1);
	if (c->tls != NULL) {
		c->tls_up = false; /* no close_notify on a broken socket */
	}
	conn_close(sh, c);
	if (!c->send_inflight) {
		conn_finish_io(sh, c);
	}
}

/*
 * conn_seal moves the replies in c->out into c->tout: sealed into records
 * once the handshake is done; before it they cannot be sent at all (a 421
 * from a timeout in the middle of a handshake), so they are dropped.
 */
static void conn_seal(struct shard *sh, struct conn *c)
{
	char err[160];

	if (c->tls == NULL || c->out.len == 0) {
		return;
	}
	if (c->tls_up && tls_conn_write(c->tls, bb_span(&c->out), err, sizeof(err)) != 0) {
		log_line(LOG_INFO, c->who, "tls.fail reason=\"%s\"", err);
		c->out.len = 0;
		conn_fail(sh, c);
		return;
	}
	c->out.len = 0;
}

static void conn_flush(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe;
	struct bb *src = c->tls != NULL ? &c->tout : &c->out;
	struct bb t;

	conn_seal(sh, c);
	if (c->send_inflight || src->len == 0 || c->io_done) {
		return;
	}
	t = c->sending;
	c->sending = *src;
	*src = t;
	src->len = 0;
	sqe = sqe_get(sh);
	io_uring_prep_send(sqe, c->fd, c->sending.p, c->sending.len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, c->idx, c->gen));
	c->send_inflight = true;
	c->send_ms = sh->now_ms;
	c->inflight++;
}

static void conn_schedule_resume(struct shard *sh, struct conn *c);
static void conn_admit(struct shard *sh, struct conn *c);
static void conn_greet_start(struct shard *sh, struct conn *c);
static void proxy_input(struct shard *sh, struct conn *c, struct span in);

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
	if (c->paused_out && conn_unsent(c) < OUT_PAUSE / 2) {
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
	if (c->out.len > 0 || c->tout.len > 0) {
		conn_flush(sh, c);
		if (c->send_inflight) {
			return;
		}
	}
	/* Idle connections hold no buffers. */
	bb_reset(&c->sending, 1);
	bb_reset(&c->out, 1);
	bb_reset(&c->tout, 1);
	if (c->closing) {
		conn_finish_io(sh, c);
	} else {
		conn_maybe_free(sh, c);
	}
}

/* ------------------------------------------------------------ spool tx */

/*
 * A spool tx builds one record of the shard's log (core/spool.h) and owns
 * its ring ops (their user_data carries the tx pointer), so it can outlive
 * its connection's interest in it: an aborted tx is detached (tx->c = NULL)
 * and cleans up once its last op is back, while the connection goes on.
 *
 * The record (header placeholder, envelope text, Received:, body) is
 * buffered until TX_END; then the shard reserves its place at the tail of
 * the active segment and writes it with one write. A body past the spill
 * bound instead streams into a free segment of the tx's own as it arrives.
 * Writes into one segment may complete in any order, but a tx joins the
 * durability batch only when every record before it in the segment is
 * written (sh->fifo), so nothing acknowledged ever lies behind a torn
 * record. One fdatasync per segment touched (or one syncfs) then makes the
 * whole batch durable, and every tx in it gets its 250.
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
	free(tx->milter_why); tx->milter_why = NULL;
	free(tx);
}

static bool tx_busy(const struct spool_tx *tx)
{
	return tx->write_inflight || tx->hdr_inflight || tx->in_dir_list || tx->in_fifo || tx->seg_wait;
}

/* seg_release drops a record's hold on its segment; recycles it (on the worker) when that emptied it. */
static void seg_release(struct shard *sh, struct spool_seg *seg, bool spill)
{
	if (spill) {
		spool_log_seal(sh->log, seg); /* live is still 1: never empty here */
	}
	if (spool_log_unref(sh->log, seg)) {
		deliver_recycle(sh->deliver, sh->log, seg);
	}
}

/* tx_discard drops an unacknowledged record (its segment space is simply not used) and frees the tx. */
static void tx_discard(struct shard *sh, struct spool_tx *tx)
{
	if (tx->seg != NULL) {
		seg_release(sh, tx->seg, tx->spill);
		tx->seg = NULL;
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
	if (tx->vjob != NULL) {
		/* Now, not when the tx's spool writes settle: the milters' conversations end (SMFIC_ABORT) at once. */
		vjob_abandon(tx->vjob);
		tx->vjob = NULL;
	}
	if (!tx_busy(tx)) {
		tx_discard(sh, tx);
	}
}

/* conn_drop_vjob abandons checks started for a transaction that never sent data. */
static void conn_drop_vjob(struct conn *c)
{
	if (c->vjob != NULL) {
		vjob_abandon(c->vjob); /* it comes back through the inbox and is freed there */
		c->vjob = NULL;
	}
}

/* conn_drop_dnsbl abandons the DNSBL lookups of a conn that goes away before they answered. */
static void conn_drop_dnsbl(struct conn *c)
{
	if (c->dnsbl_job != NULL) {
		vjob_abandon(c->dnsbl_job); /* it comes back through the inbox and is freed there */
		c->dnsbl_job = NULL;
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
	if (sh->g->vpool == NULL ||
	    !(sh->g->cfg->dkim || sh->g->cfg->spf || sh->g->cfg->dmarc || sh->g->cfg->arc || sh->g->cfg->rspamd != NULL ||
	      sh->g->cfg->num_milters > 0) ||
	    (c->vjob = vjob_new(sh->g->vpool, &sh->inbox, sh->g->cfg->dkim, sh->g->cfg->arc)) == NULL) {
		/* no pool, or it runs only for --dnsbl */
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
	static const uint8_t zero_hdr[SPOOL_REC_HDR_LEN];
	struct msg_env *env = smtp_sess_env(c->sess);
	struct spool_tx *tx;
	size_t mark;

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
	bb_init(&tx->buf, 0);
	bb_init(&tx->wbuf, 0);
	env->received_us = real_us();
	spool_make_id(env->id, env->received_us, sh->idx, sh->seq++);
	memcpy(tx->name, env->id, sizeof(tx->name));
	/* The header's place; it is filled in when the record is placed. */
	if (bb_append(&tx->buf, zero_hdr, sizeof(zero_hdr)) != 0 || spool_head_format(&tx->buf, env) != 0) {
		tx->err = -ENOMEM;
	}
	tx->head_len = tx->buf.len - SPOOL_REC_HDR_LEN;
	mark = tx->buf.len;
	if (tx->err == 0 && smtp_trace_received(&tx->buf, env, sh->g->cfg->hostname) != 0) {
		tx->err = -ENOMEM;
	}
	tx->msg_len = tx->buf.len - mark;
	tx->crc = crc32c_update(0, tx->buf.p + SPOOL_REC_HDR_LEN, tx->buf.len - SPOOL_REC_HDR_LEN);
	if (c->vjob == NULL) {
		conn_start_vjob(sh, c); /* MAIL's attempt ran out of memory: try again */
	}
	if ((tx->vjob = c->vjob) != NULL) {
		c->vjob = NULL;
		vjob_set_owner(tx->vjob, tx);
		if (vjob_context(tx->vjob, env, sh->g->cfg->hostname) != 0) {
			log_line(LOG_WARN, c->who, "spam.context id=%s error=\"out of memory\"", env->id);
		}
	}
	log_line(LOG_INFO, c->who, "tx.begin id=%s rcpts=%zu tls=%s", env->id, env->num_rcpts,
		 env->tls.on ? env->tls.version : "no");
}

/* seg_wait_add parks a tx until its shard's log has a free segment (retried every loop). */
static void seg_wait_add(struct shard *sh, struct spool_tx *tx)
{
	if (!tx->seg_wait) {
		tx->seg_wait = true;
		tx->next_wait = sh->seg_waiters;
		sh->seg_waiters = tx;
	}
}

/*
 * seg_take takes a free segment for `state`; 0, -EAGAIN (one is being made:
 * wait) or -ENOSPC (--spool-max-size reached, or the disk is full).
 */
static int seg_take(struct shard *sh, struct spool_tx *tx, enum seg_state state, struct spool_seg **out)
{
	bool wake = false;
	int rc = spool_log_take(sh->log, state, out, &wake, &tx->seg_ticket);

	if (wake) {
		deliver_kick(sh->deliver);
	}
	return rc;
}

/* tx_spill_start moves a large body into a segment of its own; the tx waits if none is free yet. */
static void tx_spill_start(struct shard *sh, struct spool_tx *tx)
{
	int rc = seg_take(sh, tx, SEG_SPILL, &tx->seg);

	if (rc == -EAGAIN) {
		seg_wait_add(sh, tx);
		return;
	}
	if (rc != 0) {
		tx->err = tx->err ? tx->err : rc;
		return;
	}
	spool_log_ref(sh->log, tx->seg);
	tx->spill = true;
	tx->slot = 0;
	tx->rec_off = SPOOL_SEG_HDR_LEN;
	tx->off = tx->rec_off;
	sh->n_spill++;
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
	if (!tx->spill && !tx->seg_wait && tx->buf.len >= sh->spill_bytes) {
		tx_spill_start(sh, tx);
	}
	if (tx->spill && tx->buf.len >= WRITE_CHUNK) {
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

/*
 * sync_enqueue hands the durable record to the delivery worker's sync sinks
 * and leaves the conn waiting for their outcome (on_sinkdone). Without
 * memory the client gets 451; the record stays in the spool and is
 * delivered after the next start (a duplicate if the client resends).
 */
static void sync_enqueue(struct shard *sh, struct conn *c, const struct spool_ref *ref)
{
	if (deliver_enqueue_sync(sh->deliver, ref, c->idx, c->gen) != 0) {
		log_line(LOG_WARN, c->who, "deliver.enqueue id=%s error=\"out of memory\"", ref->id);
		commit_finish(sh, c, SMTP_COMMIT_TEMPFAIL);
		return;
	}
	c->sync_wait = true;
	memcpy(c->sync_id, ref->id, sizeof(c->sync_id) < sizeof(ref->id) ? sizeof(c->sync_id) : sizeof(ref->id));
	c->sync_id[sizeof(c->sync_id) - 1] = '\0';
}

/*
 * on_sinkdone takes the delivery worker's sync outcomes and answers the
 * waiting conns: 250, 451 4.3.0 or 550 5.7.1 with the consumer's words. An
 * outcome whose conn is gone (timed out by --timeout-commit, closed by the
 * client) is dropped: what the worker decided for the record stands.
 */
static void on_sinkdone(struct shard *sh)
{
	struct inbox_node *n = inbox_take(deliver_sync_inbox(sh->deliver)), *next;

	for (; n != NULL; n = next) {
		struct deliver_sync_res *r = (struct deliver_sync_res *)n; /* node is its first member */
		struct conn *c = conn_get(sh, r->conn_idx, r->conn_gen);

		next = n->next;
		if (c == NULL || !c->sync_wait || c->closing || strncmp(c->sync_id, r->id, sizeof(c->sync_id)) != 0) {
			log_line(LOG_NOTICE, sh->who, "deliver.sync id=%s result=%s answered=no reason=\"client gone\"", r->id,
				 sink_rc_name(r->rc));
			free(r);
			continue;
		}
		c->sync_wait = false;
		if (r->rc == SINK_OK) {
			sh->n_msgs++;
			log_line(LOG_INFO, c->who, "tx.commit id=%s sync=ok", r->id);
			commit_finish(sh, c, SMTP_COMMIT_OK);
		} else {
			free(c->commit_why);
			c->commit_why = r->said[0] ? strdup(r->said) : NULL; /* NULL: a generic text */
			log_line(LOG_INFO, c->who, "tx.refused id=%s sync=%s", r->id, sink_rc_name(r->rc));
			commit_finish(sh, c, r->rc == SINK_PERMFAIL ? SMTP_COMMIT_SINK_REJECT : SMTP_COMMIT_SINK_TEMPFAIL);
		}
		free(r);
	}
}

/*
 * tx_place gives an ended record its place: the tail of the active segment
 * (a new one when it does not fit), or its spill segment. It fills in the
 * header, appends the trailer and padding, and queues the record in the
 * segment's append order. False when it must wait for a segment or failed
 * (tx->err).
 */
static bool tx_place(struct shard *sh, struct spool_tx *tx)
{
	static const uint8_t zeros[SPOOL_REC_ALIGN];
	struct spool_rec_hdr h;
	uint8_t trl[SPOOL_REC_TRL_LEN];
	uint64_t payload = tx->head_len + tx->msg_len + tx->auth_len;
	uint64_t len = SPOOL_REC_HDR_LEN + payload + SPOOL_REC_TRL_LEN, padded = spool_rec_padded(len);
	int rc;

	if (!tx->spill && padded > sh->log->seg_size - SPOOL_SEG_HDR_LEN) {
		/* Larger than a segment's room (a huge envelope): it spills. */
		tx_spill_start(sh, tx);
		if (!tx->spill) {
			return false;
		}
	}
	if (!tx->spill) {
		struct spool_seg *a = sh->active;

		if (a == NULL || a->tail + padded > a->size) {
			struct spool_seg *n;

			rc = seg_take(sh, tx, SEG_ACTIVE, &n);
			if (rc == -EAGAIN) {
				seg_wait_add(sh, tx);
				return false;
			}
			if (rc != 0) {
				tx->err = rc;
				return false;
			}
			if (a != NULL && spool_log_seal(sh->log, a)) {
				deliver_recycle(sh->deliver, sh->log, a);
			}
			sh->active = a = n;
		}
		tx->seg = a;
		tx->slot = a->num_slots++;
		tx->rec_off = a->tail;
		tx->off = a->tail;
		a->tail += padded;
		spool_log_ref(sh->log, a);
		/* Acknowledged in offset order: see the section comment. */
		tx->in_fifo = true;
		tx->next_fifo = NULL;
		*sh->fifo_tail = tx;
		sh->fifo_tail = &tx->next_fifo;
	}
	memset(&h, 0, sizeof(h));
	h.gen = tx->seg->gen;
	h.slot = tx->slot;
	h.head_len = (uint32_t)tx->head_len;
	h.msg_len = tx->msg_len;
	h.auth_len = tx->auth_len;
	memcpy(h.id, tx->name, strnlen(tx->name, sizeof(h.id) - 1)); /* ids are 19 characters */
	spool_rec_hdr_encode(tx->hdr, &h);
	spool_rec_trailer_encode(trl, tx->hdr, tx->crc, payload);
	tx->rec_len = len;
	if (!tx->spill) {
		memcpy(tx->buf.p, tx->hdr, SPOOL_REC_HDR_LEN); /* still at the front of buf */
	}
	if (bb_append(&tx->buf, trl, sizeof(trl)) != 0 || bb_append(&tx->buf, zeros, (size_t)(padded - len)) != 0) {
		tx->err = -ENOMEM;
	}
	tx->placed = true;
	return true;
}

/*
 * fifo_drain moves the txs at the front of the append order whose records
 * are written into the durability batch. A record whose write failed
 * leaves a hole no scan gets past: its segment is sealed, and the records
 * behind it in that segment fail too (451; never acknowledged).
 */
static void fifo_drain(struct shard *sh)
{
	struct spool_tx *done = NULL, **done_tail = &done;

	while (sh->fifo != NULL && !sh->fifo->write_inflight &&
	       (sh->fifo->buf.len == 0 || sh->fifo->err != 0)) {
		struct spool_tx *tx = sh->fifo;

		sh->fifo = tx->next_fifo;
		if (sh->fifo == NULL) {
			sh->fifo_tail = &sh->fifo;
		}
		tx->in_fifo = false;
		if (tx->err == 0) {
			tx->in_dir_list = true;
			tx->next_dir = sh->dir_wait;
			sh->dir_wait = tx;
			continue;
		}
		for (struct spool_tx *t = sh->fifo; t != NULL; t = t->next_fifo) {
			if (t->seg == tx->seg && t->err == 0) {
				t->err = -EIO;
			}
		}
		if (sh->active == tx->seg) {
			sh->active = NULL;
			spool_log_seal(sh->log, tx->seg); /* never empty here: tx holds it */
		}
		tx->next_dir = NULL;
		*done_tail = tx;
		done_tail = &tx->next_dir;
	}
	while (done != NULL) {
		struct spool_tx *tx = done;

		done = tx->next_dir;
		tx->next_dir = NULL;
		tx_check(sh, tx);
	}
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
	if (tx->milter_rc != SMTP_COMMIT_OK) {
		log_line(LOG_INFO, c->who, "tx.%s id=%s reason=milter %s",
			 tx->milter_rc == SMTP_COMMIT_MILTER_REJECT ? "reject" : "tempfail", tx->name, tx->milter_log);
		free(c->commit_why);
		c->commit_why = tx->milter_why; /* NULL: a generic text */
		tx->milter_why = NULL;
		commit_finish(sh, c, tx->milter_rc);
		tx_discard(sh, tx);
		return;
	}
	if (tx->milter_discard) {
		/* The milter's discard: the client is told 250 (RFC 5321 allows
		 * dropping after acceptance; Postfix and Sendmail do the same). */
		log_line(LOG_INFO, c->who, "tx.discard id=%s reason=milter %s", tx->name, tx->milter_log);
		commit_finish(sh, c, SMTP_COMMIT_OK);
		tx_discard(sh, tx);
		return;
	}
	if (tx->spam_rc != SMTP_COMMIT_OK) {
		log_line(LOG_INFO, c->who, "tx.%s id=%s reason=spam %s",
			 tx->spam_rc == SMTP_COMMIT_SPAM_REJECT ? "reject" : "tempfail", tx->name, tx->spam_log);
		commit_finish(sh, c, tx->spam_rc);
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
	if (tx->synced) {
		struct spool_ref ref = { .log = sh->log, .seg = tx->seg, .off = tx->rec_off, .len = tx->rec_len,
					 .slot = tx->slot, .done = 0 };

		memcpy(ref.id, tx->hdr + 40, sizeof(ref.id));

		if (tx->spill) {
			spool_log_seal(sh->log, tx->seg); /* its one record is in; the worker recycles it */
		}
		/* The record's hold on its segment passes to the delivery item. */
		tx->seg = NULL;
		c->tx = NULL;
		if (deliver_has_sync(sh->deliver)) {
			log_line(LOG_INFO, c->who, "tx.durable id=%s size=%llu sync=wait%s%s%s%s", tx->name,
				 (unsigned long long)tx->msg_len, tx->spam_log[0] ? " spam " : "", tx->spam_log,
				 tx->milter_log[0] ? " " : "", tx->milter_log);
			tx_free(tx);
			sync_enqueue(sh, c, &ref);
			return;
		}
		if (deliver_enqueue(sh->deliver, &ref) != 0) {
			/* Still durable: the next start delivers it. */
			log_line(LOG_WARN, c->who, "deliver.enqueue id=%s error=\"out of memory\"", tx->name);
		}
		sh->n_msgs++;
		log_line(LOG_INFO, c->who, "tx.commit id=%s size=%llu%s%s%s%s", tx->name,
			 (unsigned long long)tx->msg_len, tx->spam_log[0] ? " spam " : "", tx->spam_log,
			 tx->milter_log[0] ? " " : "", tx->milter_log);
		tx_free(tx);
		commit_finish(sh, c, SMTP_COMMIT_OK);
		return;
	}
	tx_kick(sh, tx);
}

/* tx_kick issues the next spool op: placing the record, a write, the spill header, or joining the batch. */
static void tx_kick(struct shard *sh, struct spool_tx *tx)
{
	struct io_uring_sqe *sqe;
	struct bb t;

	if (tx->write_inflight || tx->hdr_inflight || tx->seg_wait || tx->err != 0 || tx->aborted) {
		return;
	}
	if (tx->ended && !tx->placed &&
	    (tx->policy_reject || tx->auth_tempfail || tx->spam_rc != SMTP_COMMIT_OK ||
	     tx->milter_rc != SMTP_COMMIT_OK || tx->milter_discard || !tx_place(sh, tx))) {
		if (!tx->seg_wait) {
			tx_check(sh, tx); /* rejected, or no room: answered now */
		}
		return;
	}
	if (tx->seg == NULL) {
		return; /* still buffering: the record is placed at its end */
	}
	if (tx->buf.len > 0 && (tx->ended || tx->buf.len >= WRITE_CHUNK)) {
		t = tx->wbuf;
		tx->wbuf = tx->buf;
		tx->buf = t;
		tx->buf.len = 0;
		sqe = sqe_get(sh);
		io_uring_prep_write(sqe, tx->seg->fd, tx->wbuf.p, (unsigned)tx->wbuf.len, tx->off);
		io_uring_sqe_set_data64(sqe, ud_tx(OP_WRITE, tx));
		tx->write_inflight = true;
		return;
	}
	if (!tx->ended || tx->buf.len != 0 || tx->in_fifo || tx->in_dir_list || tx->synced) {
		return;
	}
	if (tx->spill && !tx->hdr_written) {
		/* The body is in: now the header, which the trailer's CRC covers. */
		sqe = sqe_get(sh);
		io_uring_prep_write(sqe, tx->seg->fd, tx->hdr, SPOOL_REC_HDR_LEN, tx->rec_off);
		io_uring_sqe_set_data64(sqe, ud_tx(OP_RECHDR, tx));
		tx->hdr_inflight = true;
		return;
	}
	if (tx->spill) {
		tx->in_dir_list = true;
		tx->next_dir = sh->dir_wait;
		sh->dir_wait = tx;
	}
}

static void tx_end(struct shard *sh, struct conn *c)
{
	struct spool_tx *tx = c->tx;

	c->paused_commit = true;
	c->commit_ms = sh->now_ms;
	c->eod_us = mono_us();
	if (tx == NULL) {
		commit_finish(sh, c, SMTP_COMMIT_TEMPFAIL);
		return;
	}
	if (tx->vjob != NULL) {
		/* The record is placed once the verdict (its auth block) is in. */
		vjob_end(tx->vjob);
		tx->body_done = true;
		tx_kick(sh, tx);
		return;
	}
	tx->ended = true;
	tx_check(sh, tx);
}

/*
 * tx_spam appends rspamd's verdict to the auth block (X-Spam-*, see
 * verify/rspamd.h), notes it for the log line, and applies the spam
 * policy: --spam-reject-score (550 5.7.1), --spam-tempfail-action and
 * --rspamd-fail tempfail (451 4.7.1). Greylist is never enforced here.
 */
static void tx_spam(struct shard *sh, struct spool_tx *tx, const struct vjob *j)
{
	const struct cfg *cfg = sh->g->cfg;
	const struct rspamd_reply *r;
	const char *why;
	int st = vjob_spam(j, &r, &why);

	if (st == 0) {
		return;
	}
	if (rspamd_fields_write(&tx->buf, r, why) != 0) {
		tx->err = -ENOMEM;
		return;
	}
	if (r == NULL) {
		snprintf(tx->spam_log, sizeof(tx->spam_log), "error=\"%.80s\"", why);
		if (cfg->rspamd_fail_tempfail) {
			tx->spam_rc = SMTP_COMMIT_SPAM_UNAVAIL;
		}
		return;
	}
	snprintf(tx->spam_log, sizeof(tx->spam_log), "score=%.2f required=%.2f action=\"%s\"", r->score, r->required,
		 r->action);
	if (cfg->spam_reject_on && r->score > cfg->spam_reject_score) {
		tx->spam_rc = SMTP_COMMIT_SPAM_REJECT;
	} else if (cfg->spam_tempfail_action != NULL && strcmp(cfg->spam_tempfail_action, r->action) == 0) {
		tx->spam_rc = SMTP_COMMIT_SPAM_TEMPFAIL;
	}
}

/*
 * tx_milter applies the milters' answer (core/milter_client.h): a reject or
 * tempfail answers instead of 250 (with the milter's text), a discard
 * answers 250 and stores nothing, an accept puts the quarantine mark
 * (X-Milter-Quarantine, read back into the JSON "milter" section) and the
 * header fields the milters added into the auth block, on top of the
 * stored message. A job the milters did not see (out of memory) is
 * answered 451: a configured filter is never skipped silently.
 */
static void tx_milter(struct spool_tx *tx, const struct vjob *j)
{
	const struct milter_req *m = vjob_milter(j);
	int rc = 0;

	if (m == NULL) {
		snprintf(tx->milter_log, sizeof(tx->milter_log), "milter=tempfail error=\"not run: out of memory\"");
		tx->milter_rc = SMTP_COMMIT_MILTER_TEMPFAIL;
		return;
	}
	snprintf(tx->milter_log, sizeof(tx->milter_log), "%s", m->log);
	switch (m->verdict) {
	case MILTER_V_REJECT:
	case MILTER_V_TEMPFAIL:
		tx->milter_rc = m->verdict == MILTER_V_REJECT ? SMTP_COMMIT_MILTER_REJECT : SMTP_COMMIT_MILTER_TEMPFAIL;
		tx->milter_why = m->why[0] != '\0' ? strdup(m->why) : NULL;
		return;
	case MILTER_V_DISCARD:
		tx->milter_discard = true;
		return;
	default:
		break;
	}
	if (m->quarantined) {
		rc = milter_field_write(&tx->buf, span_cstr(MILTER_QUARANTINE_FIELD), span_cstr(m->quarantine));
	}
	if (rc == 0) {
		rc = bb_append_span(&tx->buf, bb_span(&m->fields));
	}
	if (rc != 0) {
		tx->err = -ENOMEM;
	}
}

/*
 * tx_verdict appends the finished job's Authentication-Results field (the
 * record's auth block), so the commit can go on.
 */
static void tx_verdict(struct shard *sh, struct spool_tx *tx, struct vjob *j)
{
	size_t mark = tx->buf.len;

	tx->vjob = NULL;
	if (tx->err == 0 && vjob_authres(j, &tx->buf, sh->g->cfg->hostname) != 0) {
		tx->err = -ENOMEM;
	}
	if (tx->err == 0) {
		tx_spam(sh, tx, j);
	}
	if (tx->err == 0 && sh->g->cfg->num_milters > 0) {
		tx_milter(tx, j);
	}
	if (tx->err == 0) {
		tx->auth_len = (uint32_t)(tx->buf.len - mark);
		tx->crc = crc32c_update(tx->crc, tx->buf.p + mark, tx->auth_len);
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
/*
 * conn_dnsbl_done takes the lists' answer for a conn waiting for it: a
 * listing goes into the envelope (JSON, spool) and the log; with
 * --dnsbl-reject it answers 554 5.7.1 naming the list and closes, else the
 * conn is greeted. A list that did not answer counts as not listing.
 */
static void conn_dnsbl_done(struct shard *sh, struct conn *c, struct vjob *j)
{
	struct msg_env *env = smtp_sess_env(c->sess);
	char addr[16];
	const char *zone = vjob_dnsbl_listed(j, addr);
	unsigned failed = vjob_dnsbl_failed(j);

	c->dnsbl_job = NULL;
	c->dnsbl_wait = false;
	if (failed > 0) {
		log_line(LOG_NOTICE, c->who, "dnsbl.fail zones=%u reason=\"no answer in time\" (not listed)", failed);
	}
	if (zone != NULL) {
		snprintf(env->dnsbl_zone, sizeof(env->dnsbl_zone), "%s", zone);
		snprintf(env->dnsbl_addr, sizeof(env->dnsbl_addr), "%s", addr);
		log_line(LOG_NOTICE, c->who, "dnsbl.listed client=%s zone=%s address=%s%s", env->client_ip, zone, addr,
			 sh->g->cfg->dnsbl_reject ? " action=reject" : "");
		if (sh->g->cfg->dnsbl_reject) {
			sh->n_refused++;
			metrics_add(&sh->m.conns_refused[METRICS_REFUSE_DNSBL], 1);
			if (smtp_sess_abort(c->sess, SMTP_ABORT_DNSBL, &c->out) != 0) {
				bb_reset(&c->out, 1);
			}
			count_replies(sh, c, 0);
			conn_close(sh, c);
			return;
		}
	}
	if (c->closing) {
		return;
	}
	if (c->pend.len > 0) {
		/* It talked before the greeting: the session, still before its
		 * greeting, answers the early talker (554) and closes. */
		conn_schedule_resume(sh, c);
		return;
	}
	conn_greet_start(sh, c);
}

static void on_vdone(struct shard *sh)
{
	struct vjob *j = vpool_inbox_take(&sh->inbox), *next;

	for (; j != NULL; j = next) {
		next = vjob_next(j);
		if (!vjob_abandoned(j) && vjob_is_dnsbl(j)) {
			conn_dnsbl_done(sh, vjob_owner(j), j);
		} else if (!vjob_abandoned(j)) {
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
		if (tx->spill && tx->off > tx->seg->size) {
			tx->seg->size = tx->off; /* grown past the standard size: truncated at recycling */
		}
		if (c != NULL && c->paused_io && tx->buf.len < TX_BUF_PAUSE / 2) {
			c->paused_io = false;
			conn_schedule_resume(sh, c); /* resume reading; not a commit */
		}
		if (tx->in_fifo) {
			if (tx->buf.len > 0 && tx->err == 0) {
				tx_kick(sh, tx); /* the rest of a short write */
				return;
			}
			fifo_drain(sh);
			return;
		}
		break;
	case OP_RECHDR:
		tx->hdr_inflight = false;
		if (res != SPOOL_REC_HDR_LEN) {
			tx->err = tx->err ? tx->err : (res < 0 ? res : -EIO);
		} else {
			tx->hdr_written = true;
		}
		break;
	default:
		break;
	}
	tx_check(sh, tx);
}

/* seg_waiters_retry gives the txs waiting for a segment another try. */
static void seg_waiters_retry(struct shard *sh)
{
	struct spool_tx *list = sh->seg_waiters;

	sh->seg_waiters = NULL;
	while (list != NULL) {
		struct spool_tx *tx = list;

		list = tx->next_wait;
		tx->next_wait = NULL;
		tx->seg_wait = false;
		if (tx->aborted || tx->err != 0) {
			tx_check(sh, tx);
		} else if (!tx->ended) {
			tx_spill_start(sh, tx);
			tx_check(sh, tx);
		} else {
			tx_kick(sh, tx);
		}
	}
}

/*
 * dirsync_submit makes the batch of records written since the last one
 * durable. With --spool-sync fsync (the default): one fdatasync through the
 * ring per segment the batch touched (usually one; the segments are
 * preallocated, so it writes data, not metadata). With syncfs: one syncfs()
 * on the sync thread. Several batches may be in flight, so a record never
 * waits for a flush that started before it was written.
 */
static void dirsync_submit(struct shard *sh)
{
	struct io_uring_sqe *sqe;
	unsigned slot;

	if (sh->seg_waiters != NULL) {
		seg_waiters_retry(sh);
	}
	if (sh->dir_wait == NULL) {
		return;
	}
	if (sh->g->cfg->spool_sync == SPOOL_SYNC_SYNCFS) {
		if (sh->dir_inflight != 0) {
			return;
		}
		sh->dir_batch[0] = sh->dir_wait;
		sh->dir_wait = NULL;
		sh->dir_pending[0] = 1;
		sh->dir_err[0] = 0;
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
	sh->dir_pending[slot] = 0;
	sh->dir_err[slot] = 0;
	for (struct spool_tx *tx = sh->dir_batch[slot]; tx != NULL; tx = tx->next_dir) {
		bool seen = false;

		for (struct spool_tx *p = sh->dir_batch[slot]; p != tx && !seen; p = p->next_dir) {
			seen = p->seg == tx->seg;
		}
		if (seen) {
			continue;
		}
		sqe = sqe_get(sh);
		io_uring_prep_fsync(sqe, tx->seg->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data64(sqe, ud_make(OP_DIRSYNC, slot, 0));
		sh->dir_pending[slot]++;
		sh->n_fsync++;
	}
	sh->dir_inflight++;
	sh->n_dirsync++;
}

static void on_dirsync(struct shard *sh, unsigned slot, int res)
{
	struct spool_tx *tx, *next;

	if (res < 0 && sh->dir_err[slot] == 0) {
		sh->dir_err[slot] = res;
	}
	if (--sh->dir_pending[slot] > 0) {
		return;
	}
	sh->dir_inflight--;
	for (tx = sh->dir_batch[slot]; tx != NULL; tx = next) {
		next = tx->next_dir;
		tx->next_dir = NULL;
		tx->in_dir_list = false;
		if (sh->dir_err[slot] < 0) {
			tx->err = tx->err ? tx->err : sh->dir_err[slot];
			if (sh->active == tx->seg) {
				/* After a failed flush nothing in the segment can be trusted. */
				sh->active = NULL;
				spool_log_seal(sh->log, tx->seg);
			}
		} else {
			tx->synced = true;
		}
		tx_check(sh, tx);
	}
	sh->dir_batch[slot] = NULL;
}

/* ------------------------------------------------------------ input */

/*
 * conn_start_tls runs at SMTP_EV_STARTTLS: the rest of the clear input is
 * dropped (the session did so with *in; c->pend is what *in spans when
 * resuming), the queued 220 moves to c->tout to go out in clear, and the
 * TLS session starts with a reference to the current certificates.
 */
static void conn_start_tls(struct shard *sh, struct conn *c, struct span *in)
{
	struct tls_store *st;

	span_skip(in, in->len);
	st = sh->g->tls != NULL ? tls_holder_get(sh->g->tls) : NULL;
	c->tls = st != NULL ? tls_conn_new(st, &c->tout) : NULL;
	tls_store_unref(st);
	if (c->tls == NULL || bb_append_span(&c->tout, bb_span(&c->out)) != 0) {
		log_line(LOG_WARN, c->who, "tls.fail reason=\"out of memory\"");
		conn_fail(sh, c);
		return;
	}
	c->out.len = 0;
	log_line(LOG_DEBUG, c->who, "tls.start");
}

static void conn_process(struct shard *sh, struct conn *c, struct span *in);

/* conn_tls_fail ends a TLS session that broke: its alert (if any) goes out, then the conn closes. */
static void conn_tls_fail(struct shard *sh, struct conn *c, const char *err)
{
	sh->n_tls_fail++;
	log_line(LOG_INFO, c->who, "tls.fail phase=%s reason=\"%s\"", c->tls_up ? "session" : "handshake", err);
	c->tls_up = false; /* no close_notify after a fatal alert */
	bb_reset(&c->out, 1);
	conn_close(sh, c);
}

/*
 * conn_tls_pump advances the handshake with the ciphertext fed so far, then
 * decrypts records into the session until it pauses or the input runs out.
 */
static void conn_tls_pump(struct shard *sh, struct conn *c)
{
	char err[200];

	if (!c->tls_up) {
		struct msg_tls info;

		switch (tls_conn_handshake(c->tls, err, sizeof(err))) {
		case TLS_OK:
			break;
		case TLS_WANT:
			conn_flush(sh, c);
			return;
		default:
			conn_tls_fail(sh, c, err);
			return;
		}
		c->tls_up = true;
		c->cmd_ms = sh->now_ms; /* the command timeout starts again */
		tls_conn_info(c->tls, &info);
		sh->n_tls++;
		sh->n_tls_resumed += tls_conn_resumed(c->tls);
		if (tls_conn_resumed(c->tls) && sh->g->smtp->tls_ok != NULL) {
			/* --max-tls-rate counts full handshakes only: what a resumption saved. */
			rate_give_back(sh->g->rates, &c->ipkey, sh->now_ms, RATE_TLS);
		}
		log_line(LOG_INFO, c->who, "tls.ok version=%s cipher=%s sni=%s resumed=%s", info.version, info.cipher,
			 info.sni[0] != '\0' ? info.sni : "-", tls_conn_resumed(c->tls) ? "yes" : "no");
		if (smtp_sess_tls_done(c->sess, &info) != 0) {
			conn_fail(sh, c);
			return;
		}
	}
	while (!c->closing && !conn_paused(c) && c->pend.len == 0) {
		struct span in;
		size_t n;

		switch (tls_conn_read(c->tls, sh->tls_plain, sizeof(sh->tls_plain), &n, err, sizeof(err))) {
		case TLS_OK:
			in = span_make(sh->tls_plain, n);
			conn_process(sh, c, &in);
			if (in.len > 0 && !c->closing && bb_append_span(&c->pend, in) != 0) {
				conn_fail(sh, c);
				return;
			}
			continue;
		case TLS_WANT:
			break;
		case TLS_CLOSED:
			conn_fail(sh, c); /* close_notify: as EOF */
			return;
		default:
			conn_tls_fail(sh, c, err);
			return;
		}
		break;
	}
	conn_flush(sh, c);
}

/* conn_tls_input takes ciphertext lent by a recv CQE (copied into the TLS session). */
static void conn_tls_input(struct shard *sh, struct conn *c, struct span in)
{
	if (tls_conn_feed(c->tls, in) != 0) {
		conn_fail(sh, c);
		return;
	}
	conn_tls_pump(sh, c);
	if (!c->closing && conn_backlog(c) > PEND_CANCEL) {
		cancel_recv(sh, c); /* re-armed on resume, as in clear */
	}
}

static void conn_process(struct shard *sh, struct conn *c, struct span *in)
{
	size_t out_before = c->out.len, mark;
	bool progress = false;

	while (!c->closing && !conn_paused(c)) {
		struct span body, slice = *in;
		enum smtp_ev ev;
		size_t used;

		if (conn_unsent(c) >= OUT_PAUSE) {
			/* The client is not reading its replies: stop taking its
			 * commands until it does (on_send resumes us), and stop
			 * reading now, not at PEND_CANCEL: its socket buffer could
			 * otherwise pour megabytes into c->pend meanwhile. */
			c->paused_out = true;
			cancel_recv(sh, c);
			break;
		}
		if (slice.len > CMD_SLICE && smtp_sess_phase(c->sess) == SMTP_PHASE_CMD) {
			slice.len = CMD_SLICE;
		}
		mark = c->out.len;
		used = slice.len;
		ev = smtp_sess_next(c->sess, &slice, &c->out, &body);
		used -= slice.len;
		in->p += used; /* body spans point into the same bytes */
		in->len -= used;
		count_replies(sh, c, mark);
		progress |= ev != SMTP_EV_NEED_INPUT;
		switch (ev) {
		case SMTP_EV_NEED_INPUT:
			if (used > 0 && in->len > 0) {
				continue; /* the slice is used up: the next one */
			}
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
		case SMTP_EV_STARTTLS:
			conn_start_tls(sh, c, in);
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
	if (c->proxy_wait) {
		proxy_input(sh, c, in);
		return;
	}
	if (c->tls != NULL) {
		conn_tls_input(sh, c, in);
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
	if (c->paused_commit && c->tx == NULL && !c->sync_wait) {
		const char *why = c->commit_why;
		int rc = 0;

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
			rc = smtp_sess_tx_done_why(c->sess, c->commit_rc, why, why ? strlen(why) : 0, &c->out);
			/* The message's answer, then whatever followed it (421 at shutdown). */
			code = rc == 0 ? reply_code_at(&c->out, &at) : 0;
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
			if (rc == 0) {
				count_replies(sh, c, at);
			}
			c->eod_us = 0;
		}
		free(c->commit_why); c->commit_why = NULL;
		if (rc != 0) {
			conn_fail(sh, c);
			return;
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
		if (c->tls != NULL && !c->closing) {
			conn_tls_pump(sh, c); /* records that arrived while paused */
		}
		if (!c->closing && !conn_paused(c) && conn_backlog(c) <= PEND_CANCEL) {
			arm_recv(sh, c);
		}
	}
	conn_flush(sh, c);
}

/*
 * --max-input-rate: a token bucket of bytes per connection (in thousandths
 * of a byte, so a slow rate loses nothing to rounding), refilled at the
 * rate and holding one second's worth. A connection past it is paused like
 * any other: its input waits in c->pend, the recv is cancelled beyond
 * PEND_CANCEL and TCP's window closes on the sender, until the bytes it
 * owes are earned back (ratewait_run, every RATE_POLL_NS while any waits).
 * The point is the CPU, not the bandwidth: every byte costs parsing, a
 * checksum, the spool and delivery, so a few clients sending large
 * messages flat out would otherwise take the machine from the others.
 */
static void input_refill(const struct shard *sh, struct conn *c)
{
	int64_t rate = input_rate(sh);
	int64_t el = sh->now_ms - c->in_ms;

	if (el > 0) {
		c->in_tokens += el >= 1000 ? rate * 1000 : el * rate; /* thousandths per ms = bytes per s */
		if (c->in_tokens > rate * 1000) {
			c->in_tokens = rate * 1000;
		}
		c->in_ms = sh->now_ms;
	}
}

/* input_account charges n received bytes to c's bucket, pausing it when that runs dry. */
static void input_account(struct shard *sh, struct conn *c, size_t n)
{
	if (input_rate(sh) == 0 || c->closing) {
		return;
	}
	input_refill(sh, c);
	c->in_tokens -= (int64_t)n * 1000;
	if (c->in_tokens < 0 && !c->paused_rate) {
		c->paused_rate = true;
		metrics_add(&sh->m.input_throttled, 1);
		if (!c->on_ratewait) {
			c->on_ratewait = true;
			c->next_ratewait = sh->rate_wait;
			sh->rate_wait = c;
		}
	}
}

/* ratewait_run resumes the conns paused by --max-input-rate that are back within it. */
static void ratewait_run(struct shard *sh)
{
	struct conn **pp = &sh->rate_wait;

	while (*pp != NULL) {
		struct conn *c = *pp;

		input_refill(sh, c);
		if (!c->closing && c->in_tokens < 0 && input_rate(sh) != 0) { /* 0: turned off by a reload */
			pp = &c->next_ratewait;
			continue;
		}
		*pp = c->next_ratewait;
		c->next_ratewait = NULL;
		c->on_ratewait = false;
		c->paused_rate = false;
		if (c->closing) {
			conn_maybe_free(sh, c);
		} else {
			conn_schedule_resume(sh, c);
		}
	}
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
			input_account(sh, c, (size_t)res);
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
	if (!c->recv_armed && !c->closing && !conn_paused(c) && conn_backlog(c) <= PEND_CANCEL) {
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
	log_line(LOG_INFO, c->who, "conn.open client=%s port=%u%s", smtp_sess_env(c->sess)->client_ip,
		 smtp_sess_env(c->sess)->client_port, cfg->listen[li].proxy ? " proxy=yes" : "");
	if (cfg->listen[li].proxy) {
		/* Only a trusted balancer may name clients: from anyone else
		 * a PROXY header would be a forged client address. */
		bool trusted = false;

		for (unsigned i = 0; i < cfg->num_proxy_trusted && !trusted; i++) {
			trusted = ip_cidr_match(&cfg->proxy_trusted[i], &c->ipkey);
		}
		if (!trusted) {
			sh->n_refused++;
			metrics_add(&sh->m.conns_refused[METRICS_REFUSE_PROXY], 1);
			log_line(LOG_NOTICE, c->who, "conn.refuse reason=\"not in --proxy-trusted\" client=%s",
				 smtp_sess_env(c->sess)->client_ip);
			c->io_done = false;
			conn_close(sh, c);
			return;
		}
		c->proxy_wait = true;
		arm_recv(sh, c);
		return;
	}
	conn_admit(sh, c);
}

/*
 * conn_admit applies the connection limits to the conn's client (the
 * socket's peer, or the one a PROXY header named) and greets it.
 */
static void conn_admit(struct shard *sh, struct conn *c)
{
	const struct cfg *cfg = sh->g->cfg;

	c->counted = limits_acquire(sh->g->limits, &c->ipkey);
	if (c->counted && sh->g->rates != NULL && !rate_ok(sh->g->rates, &c->ipkey, sh->now_ms, RATE_CONN)) {
		limits_release(sh->g->limits, &c->ipkey);
		c->counted = false;
		sh->n_refused++;
		metrics_add(&sh->m.conns_refused[METRICS_REFUSE_RATE], 1);
		log_line(LOG_INFO, c->who, "conn.refuse reason=\"connection rate\"");
		if (smtp_sess_abort(c->sess, SMTP_ABORT_TOO_MANY, &c->out) != 0) {
			bb_reset(&c->out, 1);
		}
		c->io_done = false;
		conn_close(sh, c);
		return;
	}
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
	if (cfg->num_dnsbl_zones > 0 && sh->g->vpool != NULL) {
		/* Ask the lists first (RFC 5782): the greeting, or 554, follows
		 * their answer, at most --dns-timeout later; what the client
		 * sends meanwhile waits in c->pend (an early talker is told so). */
		c->dnsbl_job = vjob_dnsbl_new(sh->g->vpool, &sh->inbox, smtp_sess_env(c->sess)->client_ip,
					      cfg->dnsbl_zones, cfg->num_dnsbl_zones, cfg->dns_timeout_ms);
		if (c->dnsbl_job != NULL) {
			sh->vjobs_live++;
			vjob_set_owner(c->dnsbl_job, c);
			c->dnsbl_wait = true;
			arm_recv(sh, c);
			return;
		}
		log_line(LOG_WARN, c->who, "dnsbl.fail reason=\"out of memory\" (not asked)");
	}
	conn_greet_start(sh, c);
}

/* conn_greet_start greets an admitted conn, now or after --greet-delay. */
static void conn_greet_start(struct shard *sh, struct conn *c)
{
	const struct cfg *cfg = sh->g->cfg;
	struct io_uring_sqe *sqe;

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
	c->cmd_ms = sh->now_ms;
	arm_recv(sh, c);
	conn_flush(sh, c);
}

/*
 * proxy_input collects the first bytes of a --listen-proxy connection in
 * c->pend until they hold a whole PROXY header (bounded: PROXY_HDR_MAX),
 * takes the client it names, and admits the connection; what follows the
 * header stays in c->pend for the session. A malformed header closes the
 * connection without a word: the peer is a balancer, not an SMTP client.
 */
static void proxy_input(struct shard *sh, struct conn *c, struct span in)
{
	struct proxy_hdr h;
	size_t used = 0;
	enum proxy_parse rc;

	if (bb_append_span(&c->pend, in) != 0) {
		conn_fail(sh, c);
		return;
	}
	rc = proxy_parse(&h, &used, bb_span(&c->pend));
	if (rc == PROXY_PARSE_MORE && c->pend.len < PROXY_HDR_MAX) {
		return;
	}
	if (rc != PROXY_PARSE_OK) {
		metrics_add(&c->sh->m.conns_refused[METRICS_REFUSE_PROXY], 1);
		log_line(LOG_NOTICE, c->who, "proxy.error reason=\"%s\"",
			 proxy_parse_name(rc == PROXY_PARSE_MORE ? PROXY_PARSE_TOO_LONG : rc));
		conn_fail(sh, c);
		return;
	}
	if (!h.local) {
		struct msg_env *env = smtp_sess_env(c->sess);

		snprintf(env->client_ip, sizeof(env->client_ip), "%s", h.src_ip);
		env->client_port = h.src_port;
		(void)ip_key_from_text(&c->ipkey, h.src_ip); /* the parser gave a valid address */
	}
	log_line(LOG_INFO, c->who, "proxy.client client=%s port=%u version=%u%s", smtp_sess_env(c->sess)->client_ip,
		 smtp_sess_env(c->sess)->client_port, h.version, h.local ? " local=yes" : "");
	bb_consume(&c->pend, used);
	c->proxy_wait = false;
	conn_admit(sh, c);
	if (c->pend.len > 0 && !c->closing) {
		conn_schedule_resume(sh, c); /* the client's first bytes came with the header */
	}
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
		if (c->proxy_wait) {
			if (sh->stopping || sh->now_ms - c->open_ms >= PROXY_WAIT_MS) {
				log_line(LOG_NOTICE, c->who, "proxy.error reason=\"no PROXY header in time\"");
				conn_fail(sh, c);
			}
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
		case SMTP_PHASE_TLS:
			/* From STARTTLS to the end of the handshake (--timeout-tls). */
			limit = cfg->timeout_tls;
			since = c->cmd_ms;
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
			if (phase == SMTP_PHASE_TLS) {
				sh->n_tls_fail++;
				log_line(LOG_INFO, c->who, "tls.fail phase=handshake reason=\"no handshake within %us\"",
					 (unsigned)limit);
			}
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
	/* Each shard sees the stop at its next loop turn: until this line a
	 * connection its listener takes is still greeted (then told 421). */
	log_line(LOG_NOTICE, sh->who, "shard.stopping conns=%u listeners=closed", sh->nconns);
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

static void arm_sinkdone(struct shard *sh)
{
	struct io_uring_sqe *sqe = sqe_get(sh);

	io_uring_prep_read(sqe, deliver_sync_inbox(sh->deliver)->efd, &sh->sinkdone_buf, sizeof(sh->sinkdone_buf), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SINKDONE, 0, 0));
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
		atomic_store(&sh->sync_result, syncfs(sh->g->dirs->log) == 0 ? 0 : -errno);
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
	case OP_SINKDONE:
		arm_sinkdone(sh);
		on_sinkdone(sh);
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
	case OP_WRITE:
	case OP_RECHDR:
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
	    sh->vjobs_live != 0 || sh->fifo != NULL || sh->seg_waiters != NULL) {
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
		if (sh->seg_waiters != NULL) {
			/* Transactions wait for a segment the worker is making: look
			 * again soon (it does not wake the ring) rather than in 1 s. */
			ts.tv_sec = 0;
			ts.tv_nsec = SEG_WAIT_POLL_NS;
		}
		if (sh->rate_wait != NULL) {
			ts.tv_sec = 0;
			ts.tv_nsec = RATE_POLL_NS;
		}
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
		if (sh->rate_wait != NULL) {
			ratewait_run(sh);
		}
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

int shard_listen(const struct cfg_listen *l, int *out_fd)
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
	for (unsigned i = 0; i < sh->num_listen; i++) {
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
	if (deliver_has_sync(sh->deliver)) {
		arm_sinkdone(sh);
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
			 "shard.stop accepted=%llu refused=%llu messages=%llu fsync=%llu batches=%llu spilled=%llu enobufs=%llu "
			 "tls=%llu tls_resumed=%llu tls_failed=%llu",
			 (unsigned long long)sh->n_accept, (unsigned long long)sh->n_refused,
			 (unsigned long long)sh->n_msgs, (unsigned long long)sh->n_fsync,
			 (unsigned long long)sh->n_dirsync, (unsigned long long)sh->n_spill, (unsigned long long)sh->n_enobufs,
			 (unsigned long long)sh->n_tls, (unsigned long long)sh->n_tls_resumed,
			 (unsigned long long)sh->n_tls_fail);
	}
	return NULL;
}

struct shard *shard_start(const struct shard_global *g, unsigned idx, struct deliver *d, struct spool_log *log)
{
	struct shard *sh = calloc(1, sizeof(*sh));
	int state;

	if (sh == NULL) {
		for (unsigned i = 0; i < g->cfg->num_listen; i++) {
			close(g->listen_fds[idx][i]);
		}
		return NULL;
	}
	/* The listeners were bound by main (before it dropped privileges):
	 * this shard owns its SO_REUSEPORT sockets from here, and its
	 * teardown closes them whatever happens. */
	for (unsigned i = 0; i < g->cfg->num_listen; i++) {
		sh->listen_fd[i] = g->listen_fds[idx][i];
	}
	sh->num_listen = g->cfg->num_listen;
	sh->idx = idx;
	sh->g = g;
	sh->deliver = d;
	sh->log = log;
	sh->fifo_tail = &sh->fifo;
	sh->spill_bytes = log->seg_size / 4 < SPOOL_SPILL_BYTES ? log->seg_size / 4 : SPOOL_SPILL_BYTES;
	sh->wake_fd = -1;
	sh->sync_req_fd = -1;
	sh->sync_done_fd = -1;
	sh->inbox.efd = -1;
	snprintf(sh->who, sizeof(sh->who), "s%u", idx);
	for (unsigned i = sh->num_listen; i < CFG_LISTEN_MAX; i++) {
		sh->listen_fd[i] = -1;
	}
	pthread_mutex_init(&sh->start_mu, NULL);
	pthread_cond_init(&sh->start_cv, NULL);
	if (pthread_create(&sh->thread, NULL, shard_main, sh) != 0) {
		for (unsigned i = 0; i < sh->num_listen; i++) {
			close(sh->listen_fd[i]);
		}
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

/* client_rate_ok takes a token of `kind` for the session's client, or logs the refusal. */
static bool client_rate_ok(struct conn *c, enum rate_kind kind, const char *refusal)
{
	struct shard *sh = c->sh;

	if (sh->g->rates == NULL || rate_ok(sh->g->rates, &c->ipkey, sh->now_ms, kind)) {
		return true;
	}
	log_line(LOG_INFO, c->who, "smtp.reject %s", refusal);
	return false;
}

bool shard_mail_ok(void *owner)
{
	return client_rate_ok(owner, RATE_MSG, "code=451 cmd=MAIL reason=\"message rate\"");
}

bool shard_tls_ok(void *owner)
{
	return client_rate_ok(owner, RATE_TLS, "code=454 cmd=STARTTLS reason=\"TLS session rate\"");
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
}

void shard_free(struct shard *sh)
{
	if (sh == NULL) {
		return;
	}
	shard_teardown(sh);
	pthread_mutex_destroy(&sh->start_mu);
	pthread_cond_destroy(&sh->start_cv);
	free(sh);
}

const struct metrics_shard *shard_metrics(const struct shard *sh)
{
	return &sh->m;
}
