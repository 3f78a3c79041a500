/*
 * smtp_sess.h - the SMTP server session: an incremental, pure state machine.
 *
 * No I/O, no io_uring, no clock, no logging. The caller (core/shard) feeds
 * received bytes and gets back events; replies are appended to a caller
 * owned output builder that the caller flushes to the socket. The result is
 * identical for any split of the input: whole, byte by byte, or across
 * receive buffers.
 *
 * Loop shape (core):
 *
 *	struct span in = received_bytes;
 *	for (;;) {
 *		struct span body;
 *		switch (smtp_sess_next(s, &in, &out, &body)) {
 *		case SMTP_EV_NEED_INPUT: flush out; wait for more bytes; break;
 *		case SMTP_EV_MAIL:       start sender checks (optional); continue;
 *		case SMTP_EV_TX_BEGIN:   fill env id/time; open spool entry; continue;
 *		case SMTP_EV_BODY:       append body to spool entry; continue;
 *		case SMTP_EV_TX_ABORT:   drop spool entry; continue;
 *		case SMTP_EV_TX_END:     flush out, commit durably, later call
 *		                         smtp_sess_tx_done(), then resume with the
 *		                         unconsumed rest of `in` (copied if needed);
 *		case SMTP_EV_CLOSE:      flush out, close;
 *		}
 *	}
 *
 * Ownership: `in` is borrowed for the call; spans returned in *out_body
 * point into `in` or into static storage and are valid until `in`'s bytes
 * are released. The session copies whatever it must keep (partial lines,
 * HELO, addresses) into its own bounded storage.
 */
#ifndef OMX_SMTP_SESS_H
#define OMX_SMTP_SESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/bb.h"
#include "../core/span.h"
#include "msg.h"

/* RFC 5321 §4.5.3.1: limits the RFC fixes; configurable ones are in smtp_cfg. */
#define SMTP_PATH_MAX      256  /* §4.5.3.1.3, including <> */
#define SMTP_LOCALPART_MAX 64   /* §4.5.3.1.1 */
#define SMTP_DOMAIN_MAX    255  /* §4.5.3.1.2 */

/* What to do with a bare LF or bare CR inside DATA (CVE-2023-51764..6). */
enum smtp_bare_policy {
	SMTP_BARE_REJECT = 0, /* 550 5.5.2 at end of DATA, session continues (default) */
	SMTP_BARE_NORMALISE,  /* store as CRLF; never ends DATA */
	SMTP_BARE_COUNT       /* sentinel */
};

/*
 * Zero in a limit means: max_msg_size, max_text_line, max_bad_cmds: no
 * limit; max_rcpts: 100 (RFC 5321 §4.5.3.1.8); max_cmd_line: 512.
 * Debatable replies (table in proto/reply.c): early talker 554 5.5.0 then
 * CLOSE; text line over max_text_line 500 5.5.2 at the end of DATA; EXPN
 * 502 5.5.1; a BDAT whose count is readable but whose rest is not gets its
 * chunk skipped and 501 5.5.4; a BDAT whose count is unreadable (or a BDAT
 * line refused for bare LF / NUL) gets 501 5.5.4 and CLOSE, because its
 * chunk octets cannot be told apart from commands.
 */
struct smtp_cfg {
	const char *hostname;        /* our name in 220/250 and Received */
	uint64_t max_msg_size;       /* SIZE advertised; 552 5.3.4 beyond */
	uint32_t max_rcpts;          /* per transaction; 452 4.5.3 beyond */
	uint32_t max_bad_cmds;       /* errors before 421 4.7.0 and close */
	size_t max_cmd_line;         /* octets incl. CRLF; 500 5.5.2 beyond (RFC 5321 §4.5.3.1.4: >= 512) */
	size_t max_text_line;        /* octets incl. CRLF in DATA; 500 5.5.2 at end of DATA beyond */
	enum smtp_bare_policy bare_lf;
	/* Recipient domain policy: NULL accepts every domain. `dom` is not NUL-terminated. */
	bool (*domain_ok)(const void *arg, struct span dom);
	const void *domain_arg;
	/* Per-client admission of a new transaction, asked at MAIL FROM with
	 * the session's owner (smtp_sess_set_owner): false answers 451 4.7.1
	 * (core's message rate limit). NULL admits every MAIL. */
	bool (*mail_ok)(void *owner);
	/* Likewise at STARTTLS: false answers 454 4.7.0 (core's TLS session
	 * rate limit) and the session goes on in clear. NULL admits every one. */
	bool (*tls_ok)(void *owner);
	bool tls_offered;            /* core can run TLS: EHLO offers STARTTLS (RFC 3207) */
	bool tls_required;           /* MAIL before STARTTLS gets 530 5.7.0 */
};

/* Events returned by smtp_sess_next(). */
enum smtp_ev {
	SMTP_EV_NEED_INPUT = 0, /* all input consumed: flush output, feed more */
	SMTP_EV_MAIL,           /* MAIL FROM accepted (its 250 is queued): env->mail_from
	                           and env->helo are set, so checks of the sender (SPF)
	                           can start while recipients and data arrive. A new
	                           MAIL, TX_BEGIN or the end of the session follows;
	                           RSET does not report itself */
	SMTP_EV_TX_BEGIN,       /* message data starts (DATA accepted or first BDAT):
	                           the envelope is final; core fills env->id/received_us */
	SMTP_EV_BODY,           /* *out_body holds the next message bytes, unstuffed */
	SMTP_EV_TX_ABORT,       /* the transaction after TX_BEGIN is abandoned (size,
	                           bare LF, RSET in BDAT, ...): drop the spool entry. Inside
	                           DATA it comes as soon as the error is seen and the reply
	                           follows at <CRLF>.<CRLF>; otherwise the reply is queued */
	SMTP_EV_TX_END,         /* message complete; parsing pauses until smtp_sess_tx_done() */
	SMTP_EV_CLOSE,          /* flush output, then close the connection */
	SMTP_EV_STARTTLS,       /* STARTTLS accepted (its 220 is queued): flush the
	                           220 in clear, drop every input byte received so far
	                           (CVE-2011-0411: the rest of `in` too; the session
	                           drops whatever it is given from now on), then run
	                           the TLS handshake and call
	                           smtp_sess_tls_done(). Until then the session takes
	                           no input */
	SMTP_EV_COUNT           /* sentinel */
};

/* What the session is waiting for, so core applies the RFC 5321 §4.5.3.2 timeout. */
enum smtp_phase {
	SMTP_PHASE_GREETING = 0, /* before smtp_sess_greet() */
	SMTP_PHASE_CMD,          /* waiting for a command (5 min) */
	SMTP_PHASE_DATA,         /* inside DATA or a BDAT chunk (3 min per block) */
	SMTP_PHASE_COMMIT,       /* after TX_END, until smtp_sess_tx_done() (10 min) */
	SMTP_PHASE_CLOSED,       /* CLOSE was returned */
	SMTP_PHASE_TLS,          /* after STARTTLS, until smtp_sess_tls_done() (--timeout-tls) */
	SMTP_PHASE_COUNT         /* sentinel */
};

/* Outcome of the durable commit, reported by core. */
enum smtp_commit {
	SMTP_COMMIT_OK = 0,   /* 250 2.0.0 ... queued as <id> */
	SMTP_COMMIT_TEMPFAIL, /* 451 4.3.0 */
	SMTP_COMMIT_NOSPACE,  /* 452 4.3.1 */
	SMTP_COMMIT_REJECT,   /* 550 5.7.1: the sender's DMARC policy is reject (when enforced) */
	SMTP_COMMIT_SINK_TEMPFAIL, /* 451 4.3.0 with the reason of a ?sync=yes sink's consumer */
	SMTP_COMMIT_SINK_REJECT,   /* 550 5.7.1 with the reason of a ?sync=yes sink's consumer */
	SMTP_COMMIT_SPAM_REJECT,   /* 550 5.7.1: spam score above --spam-reject-score */
	SMTP_COMMIT_SPAM_TEMPFAIL, /* 451 4.7.1: rspamd's action is --spam-tempfail-action */
	SMTP_COMMIT_SPAM_UNAVAIL,  /* 451 4.7.1: the spam check failed and --rspamd-fail tempfail */
	SMTP_COMMIT_MILTER_REJECT, /* 550 5.7.1 with a milter's text (or a generic one) */
	SMTP_COMMIT_MILTER_TEMPFAIL, /* 451 4.7.1 with a milter's text (or a generic one) */
	SMTP_COMMIT_COUNT     /* sentinel */
};

/* Why core ends a session on its own. */
enum smtp_abort {
	SMTP_ABORT_TIMEOUT = 0, /* 421 4.4.2 */
	SMTP_ABORT_SHUTDOWN,    /* 421 4.3.2 */
	SMTP_ABORT_TOO_MANY,    /* 421 4.7.0 too many connections (total or per IP) */
	SMTP_ABORT_DNSBL,       /* 554 5.7.1 listed by a DNSBL zone (env->dnsbl_zone names it) */
	SMTP_ABORT_COUNT        /* sentinel */
};

struct smtp_sess; /* opaque; see smtp_sess_new() */

/*
 * smtp_sess_new allocates a session in SMTP_PHASE_GREETING. `cfg` is
 * borrowed and must outlive the session. `client_ip` is copied. Returns NULL
 * on allocation failure. The idle session is small (no buffers held).
 */
struct smtp_sess *smtp_sess_new(const struct smtp_cfg *cfg, const char *client_ip, uint16_t client_port);

/* smtp_sess_set_owner sets the pointer handed to cfg->mail_ok (borrowed). */
void smtp_sess_set_owner(struct smtp_sess *s, void *owner);

/* smtp_sess_free releases everything the session owns; NULL is a no-op. */
void smtp_sess_free(struct smtp_sess *s);

/* smtp_sess_greet queues the 220 greeting. 0 or -ENOMEM. */
int smtp_sess_greet(struct smtp_sess *s, struct bb *out);

/*
 * smtp_sess_next consumes from *in (advancing it) until an event occurs.
 * Replies go to `out`. With SMTP_EV_BODY, *out_body is set. Input given
 * before smtp_sess_greet() is an early talker: 554 and CLOSE. After
 * SMTP_EV_TX_END, further calls return SMTP_EV_NEED_INPUT without consuming
 * until smtp_sess_tx_done(). After SMTP_EV_CLOSE, nothing is consumed.
 */
enum smtp_ev smtp_sess_next(struct smtp_sess *s, struct span *in, struct bb *out, struct span *out_body);

/*
 * smtp_sess_tx_done reports the commit outcome of the message that ended with
 * SMTP_EV_TX_END, queues its reply and clears the transaction. If a shutdown
 * was requested meanwhile, 421 4.3.2 follows and the next call gives CLOSE.
 */
int smtp_sess_tx_done(struct smtp_sess *s, enum smtp_commit rc, struct bb *out);

/*
 * smtp_sess_tx_done_why is smtp_sess_tx_done with the reason outside code
 * gave for a SMTP_COMMIT_SINK_* or SMTP_COMMIT_MILTER_* outcome: `why[0..why_len)` is untrusted
 * text (borrowed); its first line goes into the reply, cleaned by
 * reply_clean (printable ASCII, at most REPLY_DETAIL_MAX - 1 bytes). An
 * empty reason gets a generic one. Other outcomes ignore `why`.
 */
int smtp_sess_tx_done_why(struct smtp_sess *s, enum smtp_commit rc, const char *why, size_t why_len,
			  struct bb *out);

/*
 * smtp_sess_shutdown asks the session to end: when no transaction is in
 * progress (phase CMD, no MAIL given) it queues 421 4.3.2 at once and returns
 * true (core flushes and closes); otherwise it returns false and the session
 * ends after the current transaction's reply.
 */
bool smtp_sess_shutdown(struct smtp_sess *s, struct bb *out);

/* smtp_sess_abort queues the 421 for `why`; the session is then closed. */
int smtp_sess_abort(struct smtp_sess *s, enum smtp_abort why, struct bb *out);

enum smtp_phase smtp_sess_phase(const struct smtp_sess *s);

/* smtp_sess_env returns the envelope; core may write id, received_us. */
struct msg_env *smtp_sess_env(struct smtp_sess *s);

/*
 * smtp_sess_tls_done reports a completed TLS handshake after SMTP_EV_STARTTLS:
 * `tls` is copied into env->tls and the session returns to its initial state
 * (RFC 3207 §4.2: the HELO and any transaction are forgotten; the client
 * starts again with EHLO; no new greeting). 0, or -EINVAL outside phase TLS.
 */
int smtp_sess_tls_done(struct smtp_sess *s, const struct msg_tls *tls);

/* smtp_sess_in_tx tells whether a transaction (MAIL accepted) is open. */
bool smtp_sess_in_tx(const struct smtp_sess *s);

const char *smtp_ev_name(enum smtp_ev ev);
const char *smtp_phase_name(enum smtp_phase ph);

/* Counters for logs/metrics, cumulative over the session. */
struct smtp_sess_stats {
	uint32_t bad_cmds;
	uint32_t messages; /* TX_END events */
	uint32_t rejected; /* transactions refused at end of data */
};
const struct smtp_sess_stats *smtp_sess_stats(const struct smtp_sess *s);

#endif
