/*
 * reply.h - the one table of SMTP replies: code, RFC 3463 enhanced status
 * and text. Nothing else in oceanmx formats a reply code
 * [OpenSMTPD smtp_reply + esc_code].
 *
 * Texts may hold one "%s", replaced by a caller-given detail (our hostname,
 * a message id, a byte count). Enhanced status codes are omitted where
 * RFC 2034 §3 says so (greeting, HELO/EHLO reply) and on 354.
 * Replies are appended to a byte builder and end in CRLF.
 */
#ifndef OMX_REPLY_H
#define OMX_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/bb.h"

enum smtp_reply {
	SMTP_R_GREETING = 0,     /* 220 %s ESMTP oceanmx */
	SMTP_R_EARLY_TALKER,     /* 554 5.5.0 client spoke before the greeting */
	SMTP_R_HELO,             /* 250 %s (hostname) */
	SMTP_R_EHLO,             /* 250-%s, then extension lines */
	SMTP_R_OK,               /* 250 2.0.0 Ok (RSET, NOOP) */
	SMTP_R_MAIL_OK,          /* 250 2.1.0 Ok */
	SMTP_R_RCPT_OK,          /* 250 2.1.5 Ok */
	SMTP_R_DATA_GO,          /* 354 */
	SMTP_R_QUEUED,           /* 250 2.0.0 Ok: queued as %s */
	SMTP_R_BDAT_CHUNK,       /* 250 2.0.0 %s octets received */
	SMTP_R_BYE,              /* 221 2.0.0 Bye */
	SMTP_R_VRFY,             /* 252 2.5.0 */
	SMTP_R_HELP,             /* 214 2.0.0 (multi-line) */
	SMTP_R_UNKNOWN_CMD,      /* 500 5.5.1 */
	SMTP_R_LINE_TOO_LONG,    /* 500 5.5.2 command line too long */
	SMTP_R_LINE_RUNAWAY,     /* 500 5.5.2 a line with no end in sight: closing */
	SMTP_R_CMD_BARE_LF,      /* 500 5.5.2 command not ended by CRLF */
	SMTP_R_CMD_BAD_CHAR,     /* 500 5.5.2 NUL or bare CR in command */
	SMTP_R_SYNTAX,           /* 501 5.5.4 generic argument syntax */
	SMTP_R_SYNTAX_NOARG,     /* 501 5.5.4 command takes no argument */
	SMTP_R_SYNTAX_HELO,      /* 501 5.5.4 Syntax: EHLO/HELO hostname */
	SMTP_R_SYNTAX_MAIL,      /* 501 5.5.4 Syntax: MAIL FROM:<address> */
	SMTP_R_SYNTAX_RCPT,      /* 501 5.5.4 Syntax: RCPT TO:<address> */
	SMTP_R_SYNTAX_VRFY,      /* 501 5.5.4 Syntax: VRFY address */
	SMTP_R_SYNTAX_BDAT,      /* 501 5.5.4 Syntax: BDAT count [LAST] (chunk swallowed) */
	SMTP_R_SYNTAX_BDAT_FATAL,/* 501 5.5.4 count unreadable: closing (cannot resync) */
	SMTP_R_BAD_SENDER,       /* 553 5.1.7 */
	SMTP_R_BAD_RCPT,         /* 553 5.1.3 */
	SMTP_R_SENDER_TOO_LONG,  /* 501 5.1.7 RFC 5321 §4.5.3.1.10 "Path too long" */
	SMTP_R_RCPT_TOO_LONG,    /* 501 5.1.3 */
	SMTP_R_NEED_UTF8,        /* 553 5.6.7 non-ASCII address without SMTPUTF8 (RFC 6531 §3.5) */
	SMTP_R_PARAM_UNKNOWN,    /* 555 5.5.4 */
	SMTP_R_PARAM_SYNTAX,     /* 501 5.5.4 */
	SMTP_R_NOT_IMPL,         /* 502 5.5.1 */
	SMTP_R_EXPN,             /* 502 5.5.1 EXPN: no mailing lists here */
	SMTP_R_SEQ_HELO,         /* 503 5.5.1 send EHLO/HELO first */
	SMTP_R_SEQ_NESTED,       /* 503 5.5.1 nested MAIL */
	SMTP_R_SEQ_MAIL,         /* 503 5.5.1 need MAIL first */
	SMTP_R_SEQ_RCPT,         /* 503 5.5.1 need RCPT first */
	SMTP_R_NO_VALID_RCPT,    /* 554 5.5.1 all recipients were rejected */
	SMTP_R_SEQ_BINARY,       /* 503 5.5.1 DATA with BODY=BINARYMIME (RFC 3030 §3) */
	SMTP_R_SEQ_DATA_BDAT,    /* 503 5.5.1 DATA after BDAT */
	SMTP_R_SEQ_BDAT_FAILED,  /* 503 5.5.1 BDAT after a failed chunk */
	SMTP_R_SEQ_BDAT_OPEN,    /* 503 5.5.1 RCPT while a BDAT transfer is open */
	SMTP_R_RELAY_DENIED,     /* 550 5.7.1 */
	SMTP_R_TOO_MANY_RCPTS,   /* 452 4.5.3 */
	SMTP_R_RATE_MAIL,        /* 451 4.7.1 --max-message-rate reached for this client */
	SMTP_R_SIZE_EXCEEDED,    /* 552 5.3.4 */
	SMTP_R_SIZE_EXCEEDED_CLOSE, /* 552 5.3.4 BDAT count beyond the limit: closing */
	SMTP_R_DATA_BARE,        /* 550 5.5.2 bare CR or LF in message data */
	SMTP_R_DATA_LINE_LONG,   /* 500 5.5.2 text line too long in message data */
	SMTP_R_COMMIT_TEMPFAIL,  /* 451 4.3.0 */
	SMTP_R_COMMIT_NOSPACE,   /* 452 4.3.1 */
	SMTP_R_POLICY_REJECT,    /* 550 5.7.1 DMARC p=reject, when enforced */
	SMTP_R_SINK_TEMPFAIL,    /* 451 4.3.0 a sync sink's consumer said retry: %s its reason */
	SMTP_R_SINK_REJECT,      /* 550 5.7.1 a sync sink's consumer refused: %s its reason */
	SMTP_R_SPAM_REJECT,      /* 550 5.7.1 spam score above --spam-reject-score */
	SMTP_R_SPAM_TEMPFAIL,    /* 451 4.7.1 rspamd's action is --spam-tempfail-action */
	SMTP_R_SPAM_UNAVAIL,     /* 451 4.7.1 the spam check failed, --rspamd-fail tempfail */
	SMTP_R_MILTER_REJECT,    /* 550 5.7.1 a milter rejected the message: %s its text or ours */
	SMTP_R_MILTER_TEMPFAIL,  /* 451 4.7.1 a milter deferred it, or failed with default tempfail: %s */
	SMTP_R_TOO_MANY_ERRORS,  /* 421 4.7.0 */
	SMTP_R_TIMEOUT,          /* 421 4.4.2 */
	SMTP_R_SHUTDOWN,         /* 421 4.3.2 */
	SMTP_R_TOO_MANY_CONN,    /* 421 4.7.0 */
	SMTP_R_LOCAL_ERROR,      /* 421 4.3.0 out of memory: closing */
	SMTP_R_DNSBL,            /* 554 5.7.1 the client is listed by a --dnsbl zone (with --dnsbl-reject): closing */
	SMTP_R_TLS_READY,        /* 220 2.0.0 Ready to start TLS (RFC 3207 §4) */
	SMTP_R_TLS_ACTIVE,       /* 503 5.5.1 STARTTLS inside TLS */
	SMTP_R_TLS_IN_TX,        /* 503 5.5.1 STARTTLS inside a mail transaction */
	SMTP_R_TLS_REQUIRED,     /* 530 5.7.0 MAIL before STARTTLS with --tls-required on */
	SMTP_R_TLS_RATE,         /* 454 4.7.0 --max-tls-rate reached for this client */
	SMTP_R_COUNT             /* sentinel */
};

/* Flags of a table entry. */
#define REPLY_F_BAD   0x1u /* a client protocol error: counts toward smtp_cfg.max_bad_cmds */
#define REPLY_F_CLOSE 0x2u /* the session closes after this reply */

struct reply_def {
	uint16_t code;    /* 220..554 */
	const char *esc;  /* RFC 3463 "x.y.z", or NULL (greeting, EHLO, 354) */
	const char *text; /* may contain one "%s" */
	uint32_t flags;   /* REPLY_F_* */
};

/*
 * REPLY_DETAIL_MAX bounds a detail made of outside text (a consumer's
 * reason), terminator included: with our words around it the line stays
 * far below the 512 octets of RFC 5321 §4.5.3.1.5.
 */
#define REPLY_DETAIL_MAX 201

/*
 * reply_clean copies the first line of `in[0..in_len)` into `out` (a
 * string of at most out_len - 1 bytes) so it can be a reply's detail: it
 * stops at the first CR or LF (a reply is one line; no smuggled replies),
 * turns every byte that is not printable ASCII into '?', squeezes runs of
 * spaces and drops them at both ends. Returns the length written; `out` is
 * always terminated (out_len > 0). Pure.
 */
size_t reply_clean(char *out, size_t out_len, const char *in, size_t in_len);

/* reply_for returns the table entry for `r` (static storage). */
const struct reply_def *reply_for(enum smtp_reply r);

/* reply_name returns the enum name without prefix ("QUEUED"), for logs. */
const char *reply_name(enum smtp_reply r);

/*
 * reply_append appends "CODE ESC TEXT\r\n" to `out`; a "%s" in the text is
 * replaced by `detail` (NULL gives ""). `detail` is borrowed and must hold
 * no CR or LF. Returns 0, -ENOMEM or -E2BIG (`out` unchanged on failure).
 */
__attribute__((warn_unused_result)) int reply_append(struct bb *out, enum smtp_reply r, const char *detail);

/*
 * reply_append_lines appends a multi-line reply: the first line is the table
 * text (with `detail`), then each of `lines[0..num_lines)` verbatim, all
 * "CODE-" but the last "CODE " (RFC 5321 §4.2.1), each with the enhanced
 * status when the entry has one (RFC 2034 §3). Returns as reply_append.
 */
__attribute__((warn_unused_result)) int reply_append_lines(struct bb *out, enum smtp_reply r, const char *detail,
							   const char *const *lines, size_t num_lines);

#endif
