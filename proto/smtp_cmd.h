/*
 * smtp_cmd.h - SMTP command lines: framing, verb table, path and
 * MAIL/RCPT parameter parsing (RFC 5321 §4.1, RFC 1870, 6152, 3030, 6531).
 *
 * Pure: no I/O, no globals beyond const tables, no allocation except the
 * caller-owned carry builder given to smtp_line_next(). Every span result
 * points into the caller's input or the carry and is valid until the next
 * smtp_line_next() call or until the input is released.
 */
#ifndef OMX_SMTP_CMD_H
#define OMX_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/bb.h"
#include "../core/span.h"
#include "msg.h"

/* RFC 5321 §4.5.3.1.4: at least 512 octets per command line, CRLF included. */
#define SMTP_CMDLINE_MIN 512

/* Same values as smtp_sess.h (RFC 5321 §4.5.3.1.1-3); guarded so both may be included. */
/*
 * A line that runs this far past its limit without an LF is not from an SMTP
 * client: the session is closed instead of reading on (OpenSMTPD closes at
 * the first overlong line; we allow a slightly long one a 500 first).
 */
#define SMTP_LINE_RUNAWAY_MAX (64u * 1024u)
#ifndef SMTP_PATH_MAX
#define SMTP_PATH_MAX      256  /* §4.5.3.1.3, including <> */
#endif
#ifndef SMTP_LOCALPART_MAX
#define SMTP_LOCALPART_MAX 64   /* §4.5.3.1.1 */
#endif
#ifndef SMTP_DOMAIN_MAX
#define SMTP_DOMAIN_MAX    255  /* §4.5.3.1.2 */
#endif

/* Parser verdicts (STYLE §3). */
enum smtp_parse {
	SMTP_PARSE_MORE = 0,   /* need more input; everything given was consumed */
	SMTP_PARSE_OK,         /* a result is ready */
	SMTP_PARSE_TOO_LONG,   /* line over the limit; the rest up to LF is skipped */
	SMTP_PARSE_RUNAWAY,    /* the skipped line passed SMTP_LINE_RUNAWAY_MAX: give up on the peer */
	SMTP_PARSE_BARE_LF,    /* line ended by LF without CR (RFC 5321 §2.3.8) */
	SMTP_PARSE_BAD_CHAR,   /* NUL or bare CR inside a command line */
	SMTP_PARSE_UNKNOWN,    /* verb not in the table */
	SMTP_PARSE_SYNTAX,     /* malformed arguments */
	SMTP_PARSE_COUNT       /* sentinel */
};

const char *smtp_parse_name(enum smtp_parse p);

/* ---- framing ---------------------------------------------------------- */

/*
 * Line framer state: survives across input buffers. The carry holds a
 * partial line (bounded by `max`); it is released whenever it empties, so
 * an idle framer owns no memory.
 */
struct smtp_line {
	struct bb carry;   /* partial line, < max octets */
	size_t max;        /* octets per line including CRLF */
	bool skipping;     /* dropping an overlong line up to its LF */
	size_t skipped;    /* octets dropped of that line so far */
	bool carry_out;    /* the last line returned lives in carry */
};

/* smtp_line_init prepares `l` for lines of at most `max` octets (CRLF included). */
void smtp_line_init(struct smtp_line *l, size_t max);
/* smtp_line_fini frees the carry. */
void smtp_line_fini(struct smtp_line *l);
/* smtp_line_reset drops any partial line and releases the carry. */
void smtp_line_reset(struct smtp_line *l);
/* smtp_line_pending tells whether a partial line is held. */
bool smtp_line_pending(const struct smtp_line *l);

/*
 * smtp_line_next consumes from *in up to and including the next LF.
 * SMTP_PARSE_OK: *out_line is the line without its CRLF (borrowed from *in
 * or from the carry; valid until the next call). SMTP_PARSE_BARE_LF: the
 * line ended in LF alone (*out_line still set, without the LF). MORE: all of
 * *in was consumed. TOO_LONG: reported once, at the octet that passes the
 * limit; the framer then skips to the next LF on its own. -ENOMEM while
 * carrying is reported as TOO_LONG after releasing the carry. RUNAWAY: the
 * skipped line passed SMTP_LINE_RUNAWAY_MAX octets with no LF in sight;
 * reported once, the framer stays skipping (the caller closes).
 */
enum smtp_parse smtp_line_next(struct smtp_line *l, struct span *in, struct span *out_line);

/* ---- verbs -------------------------------------------------------------- */

enum smtp_verb_id {
	SMTP_V_HELO = 0,
	SMTP_V_EHLO,
	SMTP_V_MAIL,
	SMTP_V_RCPT,
	SMTP_V_DATA,
	SMTP_V_BDAT,
	SMTP_V_RSET,
	SMTP_V_NOOP,
	SMTP_V_QUIT,
	SMTP_V_VRFY,
	SMTP_V_EXPN,
	SMTP_V_HELP,
	SMTP_V_STARTTLS, /* RFC 3207; 502 when core offers no TLS */
	SMTP_V_AUTH,     /* never offered (DESIGN: no SMTP AUTH) */
	SMTP_V_ETRN,
	SMTP_V_TURN,
	SMTP_V_ATRN,
	SMTP_V_BURL,
	SMTP_V_SEND,
	SMTP_V_SOML,
	SMTP_V_SAML,
	SMTP_V_COUNT     /* sentinel */
};

/* Verb flags [OpenSMTPD commands[], Postfix smtpd_cmd_table]. */
#define SMTP_CF_PRE_TLS       0x01u /* allowed before STARTTLS when TLS is required */
#define SMTP_CF_NEEDS_HELO    0x02u /* 503 before EHLO/HELO */
#define SMTP_CF_LAST_IN_GROUP 0x04u /* RFC 2920 §3.1: client waits for the reply */
#define SMTP_CF_NO_ARG        0x08u /* "VERB" CRLF only: arguments give 501 */
#define SMTP_CF_NEEDS_ARG     0x10u /* arguments required: none gives 501 */
#define SMTP_CF_UNIMPL        0x20u /* recognised, not implemented: 502 */

struct smtp_verb {
	const char *name;
	enum smtp_verb_id id;
	uint32_t flags;
};

/* A tokenised command line. `args` is borrowed from the line, trimmed. */
struct smtp_cmd {
	const struct smtp_verb *verb;
	struct span args;
};

/* smtp_verb_for returns the table entry of `id` (static storage). */
const struct smtp_verb *smtp_verb_for(enum smtp_verb_id id);

/*
 * smtp_cmd_parse splits a framed line (no CRLF) into verb and arguments.
 * OK, BAD_CHAR (NUL or CR in the line), UNKNOWN (verb not in the table) or
 * SYNTAX (an argument where none is allowed, or none where required).
 * On UNKNOWN/SYNTAX, out->verb/args are still set when known.
 */
enum smtp_parse smtp_cmd_parse(struct smtp_cmd *out, struct span line);

/* ---- paths ------------------------------------------------------------ */

enum smtp_addr_err {
	SMTP_ADDR_OK = 0,
	SMTP_ADDR_SYNTAX,   /* not an RFC 5321 Path (or RFC 6531 UTF-8 path) */
	SMTP_ADDR_TOO_LONG, /* local part > 64, domain > 255 or path > 256 (§4.5.3.1) */
	SMTP_ADDR_COUNT     /* sentinel */
};

#define SMTP_PATH_ALLOW_NULL       0x1u /* "<>" allowed (reverse-path) */
#define SMTP_PATH_ALLOW_POSTMASTER 0x2u /* "<Postmaster>" allowed (RCPT, §4.1.1.3) */
#define SMTP_PATH_ALLOW_BARE       0x4u /* "a@b" without <> (as Postfix strict_rfc821_envelopes = no) */

struct smtp_path {
	struct span mailbox; /* local@domain as sent, no <>, no source route; empty for <> */
	struct span local;   /* local part as sent (quotes kept) */
	struct span domain;  /* domain or [address-literal]; empty for <> and <Postmaster> */
	bool is_null;        /* "<>" */
	bool is_postmaster;  /* "<Postmaster>" without domain */
	bool has_8bit;       /* holds UTF-8 (needs SMTPUTF8, RFC 6531 §3.3) */
};

/*
 * smtp_path_parse reads "<...>" from the front of *c. On success the
 * cursor is just after ">". Source routes (§4.1.2 A-d-l) are accepted and
 * dropped; 8-bit octets must be well-formed UTF-8. On failure *c is unmoved.
 */
enum smtp_addr_err smtp_path_parse(struct smtp_path *out, struct span *c, unsigned flags);

/* smtp_domain_valid checks an RFC 5321 Domain (UTF-8 labels allowed). */
bool smtp_domain_valid(struct span d);

/* ---- MAIL / RCPT ------------------------------------------------------ */

enum smtp_param_err {
	SMTP_PARAM_OK = 0,
	SMTP_PARAM_SYNTAX,   /* 501 5.5.4: malformed, duplicate or bad value */
	SMTP_PARAM_UNKNOWN,  /* 555 5.5.4 (RFC 5321 §4.1.1.11) */
	SMTP_PARAM_COUNT     /* sentinel */
};

struct smtp_mail_params {
	bool has_size;
	uint64_t size;       /* RFC 1870 SIZE= */
	enum msg_body body;  /* RFC 6152 / 3030 BODY= */
	bool smtputf8;       /* RFC 6531 SMTPUTF8 */
};

/*
 * smtp_mail_params_parse reads the SP-separated esmtp-params after the
 * MAIL path (RFC 5321 §4.1.2 Mail-parameters). Unknown keywords give
 * UNKNOWN, a bad value or a repeated keyword SYNTAX. SIZE accepts
 * 1..20 digits fitting in 64 bits.
 */
enum smtp_param_err smtp_mail_params_parse(struct smtp_mail_params *out, struct span params);

/* smtp_rcpt_params_parse: we advertise no RCPT extension, so any parameter is UNKNOWN. */
enum smtp_param_err smtp_rcpt_params_parse(struct span params);

/*
 * smtp_mail_arg_split splits "FROM:<path> params" (or "TO:") into the path
 * cursor position and returns false when `kw` ("FROM:" / "TO:") is missing.
 * Spaces after the colon are tolerated (common client bug).
 */
bool smtp_mail_arg_split(struct span *c, const char *kw);

/*
 * smtp_bdat_parse parses "count [LAST]". Returns OK; SYNTAX with
 * *out_count_ok true when the count was read but the rest is bad (the
 * chunk can still be skipped); SYNTAX with *out_count_ok false when the
 * count itself is unreadable (the stream cannot be resynchronised).
 */
enum smtp_parse smtp_bdat_parse(struct span args, uint64_t *out_count, bool *out_last, bool *out_count_ok);

/* smtp_helo_valid checks an EHLO/HELO argument: one token of 1..255 printable ASCII octets. */
bool smtp_helo_valid(struct span arg);

#endif
