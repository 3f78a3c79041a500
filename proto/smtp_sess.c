/*
 * smtp_sess.c - the SMTP server session state machine; see smtp_sess.h.
 *
 * The session owns: the HELO copy, the envelope strings (MAIL FROM and the
 * recipients, heap copies bounded by the path limits and max_rcpts) and the
 * command-line carry (bounded by max_cmd_line, released when empty). Body
 * bytes are never copied: DATA and BDAT yield spans into the caller's input.
 *
 * Events that must reach core in order (TX_BEGIN before the body, TX_ABORT
 * before CLOSE) go through a tiny FIFO that smtp_sess_next() drains before
 * it consumes more input, so every split of the input yields the same
 * sequence of replies and events.
 */
#include "smtp_sess.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "smtp_cmd.h"
#include "smtp_data.h"

/* Internal state; smtp_sess_phase() maps it to the public phase. */
enum smtp_state {
	SMTP_ST_GREETING = 0, /* smtp_sess_greet() not called yet */
	SMTP_ST_CMD,          /* reading command lines */
	SMTP_ST_DATA,         /* inside DATA, up to <CRLF>.<CRLF> */
	SMTP_ST_BDAT,         /* inside a BDAT chunk (kept or swallowed) */
	SMTP_ST_COMMIT,       /* TX_END returned, waiting for smtp_sess_tx_done() */
	SMTP_ST_CLOSED,       /* CLOSE queued or returned */
	SMTP_ST_TLS,          /* STARTTLS accepted: input is dropped until smtp_sess_tls_done() */
	SMTP_ST_COUNT         /* sentinel */
};

#define SMTP_EVQ_MAX 4 /* at most MAIL, TX_BEGIN, TX_ABORT or STARTTLS, then CLOSE, per command */

struct smtp_sess {
	const struct smtp_cfg *cfg;
	enum smtp_state st;
	struct smtp_line line;   /* command framing + carry */
	struct smtp_data data;   /* DATA unstuffer */
	struct smtp_bdat bdat;   /* current BDAT chunk */
	bool bdat_last;          /* current chunk is BDAT ... LAST */
	enum smtp_reply bdat_reply; /* reply after a swallowed chunk; SMTP_R_COUNT if kept */
	uint64_t bdat_count;     /* octets of the current chunk, for its 250 */
	uint64_t bdat_size;      /* octets accepted in this transaction's chunks */
	bool helo_done;          /* EHLO/HELO accepted */
	bool in_mail;            /* MAIL accepted: a transaction is open */
	bool rcpt_tried;         /* RCPT was given in this transaction (554 vs 503) */
	bool tx_begun;           /* TX_BEGIN returned, no TX_END/TX_ABORT yet */
	bool bdat_used;          /* a chunk was accepted in this transaction */
	bool bdat_failed;        /* a chunk failed: BDAT gets 503 until RSET/MAIL/EHLO */
	bool shutdown_req;       /* smtp_sess_shutdown() was deferred */
	bool fatal;              /* out of memory or output full: close */
	bool tls_active;         /* a TLS handshake completed on this connection */
	enum smtp_ev evq[SMTP_EVQ_MAX];
	uint8_t evq_head, evq_len;
	size_t rcpts_alloc;
	struct msg_env env;
	struct smtp_sess_stats stats;
	void *owner;             /* for cfg->mail_ok; borrowed */
};

/* ---- helpers ---------------------------------------------------------- */

static const char *host(const struct smtp_sess *s)
{
	return s->cfg->hostname != NULL ? s->cfg->hostname : "localhost";
}

static void ev_push(struct smtp_sess *s, enum smtp_ev ev)
{
	if (s->evq_len < SMTP_EVQ_MAX) {
		s->evq[(s->evq_head + s->evq_len) % SMTP_EVQ_MAX] = ev;
		s->evq_len++;
	}
}

static enum smtp_ev ev_pop(struct smtp_sess *s)
{
	enum smtp_ev ev = s->evq[s->evq_head];

	s->evq_head = (uint8_t)((s->evq_head + 1) % SMTP_EVQ_MAX);
	s->evq_len--;
	return ev;
}

static char *span_dup(struct span sp)
{
	char *p = malloc(sp.len + 1);

	if (p != NULL) {
		if (sp.len != 0) {
			memcpy(p, sp.p, sp.len);
		}
		p[sp.len] = '\0';
	}
	return p;
}

/* tx_abort_if_begun tells core to drop the spool entry of an open message. */
static void tx_abort_if_begun(struct smtp_sess *s)
{
	if (s->tx_begun) {
		s->tx_begun = false;
		ev_push(s, SMTP_EV_TX_ABORT);
	}
}

/* tx_clear forgets the transaction (RFC 5321 §4.1.1.5); HELO state stays. */
static void tx_clear(struct smtp_sess *s)
{
	free(s->env.mail_from); s->env.mail_from = NULL;
	for (size_t i = 0; i < s->env.num_rcpts; i++) {
		free(s->env.rcpts[i]); s->env.rcpts[i] = NULL;
	}
	free(s->env.rcpts); s->env.rcpts = NULL;
	s->env.num_rcpts = 0;
	s->rcpts_alloc = 0;
	s->env.body = MSG_BODY_7BIT;
	s->env.smtputf8 = false;
	s->env.size = 0;
	s->env.id[0] = '\0';
	s->env.received_us = 0;
	s->in_mail = false;
	s->rcpt_tried = false;
	s->bdat_used = false;
	s->bdat_size = 0;
}

static void sess_close(struct smtp_sess *s)
{
	if (s->st == SMTP_ST_CLOSED) {
		return;
	}
	tx_abort_if_begun(s);
	ev_push(s, SMTP_EV_CLOSE);
	s->st = SMTP_ST_CLOSED;
	smtp_line_reset(&s->line);
}

/*
 * reply queues `r`, counts protocol errors (REPLY_F_BAD) toward
 * max_bad_cmds and closes after REPLY_F_CLOSE replies.
 */
static void reply(struct smtp_sess *s, struct bb *out, enum smtp_reply r, const char *detail)
{
	const struct reply_def *d = reply_for(r);

	if (reply_append(out, r, detail) != 0) {
		s->fatal = true;
		return;
	}
	if (d->flags & REPLY_F_BAD) {
		s->stats.bad_cmds++;
	}
	if (d->flags & REPLY_F_CLOSE) {
		sess_close(s);
		return;
	}
	if ((d->flags & REPLY_F_BAD) && s->cfg->max_bad_cmds != 0 && s->stats.bad_cmds >= s->cfg->max_bad_cmds) {
		reply(s, out, SMTP_R_TOO_MANY_ERRORS, host(s)); /* closes */
	}
}

/* fail ends the session after a resource error, trying to say so first. */
static void fail(struct smtp_sess *s, struct bb *out)
{
	s->fatal = false;
	if (s->st != SMTP_ST_CLOSED && reply_append(out, SMTP_R_LOCAL_ERROR, host(s)) != 0) {
		/* the output is full or memory is gone: close without a reply */
	}
	sess_close(s);
}

/* ---- commands --------------------------------------------------------- */

/* EHLO keywords, in advertised order, after STARTTLS when core offers it and TLS is not on yet. */
#define EXT_SIZE 0x1u
static const struct {
	const char *kw;
	unsigned flags;
} ehlo_exts[] = {
	{ "PIPELINING", 0 },          /* RFC 2920 */
	{ "SIZE", EXT_SIZE },         /* RFC 1870 */
	{ "8BITMIME", 0 },            /* RFC 6152 */
	{ "SMTPUTF8", 0 },            /* RFC 6531 */
	{ "ENHANCEDSTATUSCODES", 0 }, /* RFC 2034 */
	{ "CHUNKING", 0 },            /* RFC 3030 */
	{ "BINARYMIME", 0 },          /* RFC 3030: BODY=BINARYMIME is accepted, so say so */
};
#define EHLO_EXT_NUM (sizeof(ehlo_exts) / sizeof(ehlo_exts[0]))

static void cmd_helo(struct smtp_sess *s, struct bb *out, const struct smtp_cmd *cmd)
{
	bool esmtp = cmd->verb->id == SMTP_V_EHLO;
	char *helo;

	if (!smtp_helo_valid(cmd->args)) {
		reply(s, out, SMTP_R_SYNTAX_HELO, NULL);
		return;
	}
	helo = span_dup(cmd->args);
	if (helo == NULL) {
		s->fatal = true;
		return;
	}
	/* RFC 5321 §4.1.4: EHLO/HELO resets the transaction. */
	tx_abort_if_begun(s);
	tx_clear(s);
	s->bdat_failed = false;
	free(s->env.helo); s->env.helo = helo;
	s->env.esmtp = esmtp;
	s->helo_done = true;
	if (!esmtp) {
		reply(s, out, SMTP_R_HELO, host(s));
		return;
	}
	{
		const char *lines[EHLO_EXT_NUM + 1];
		char size_line[32];
		size_t n = 0;

		if (s->cfg->tls_offered && !s->tls_active) {
			lines[n++] = "STARTTLS"; /* RFC 3207 §4 */
		}
		for (size_t i = 0; i < EHLO_EXT_NUM; i++) {
			lines[n] = ehlo_exts[i].kw;
			if ((ehlo_exts[i].flags & EXT_SIZE) && s->cfg->max_msg_size != 0) {
				snprintf(size_line, sizeof(size_line), "SIZE %llu",
					 (unsigned long long)s->cfg->max_msg_size);
				lines[n] = size_line;
			}
			n++;
		}
		if (reply_append_lines(out, SMTP_R_EHLO, host(s), lines, n) != 0) {
			s->fatal = true;
		}
	}
}

static void cmd_mail(struct smtp_sess *s, struct bb *out, const struct smtp_cmd *cmd)
{
	struct span c = cmd->args;
	struct smtp_path path;
	struct smtp_mail_params prm;
	enum smtp_addr_err ae;
	enum smtp_param_err pe;
	char *from;

	if (s->cfg->tls_required && !s->tls_active) {
		reply(s, out, SMTP_R_TLS_REQUIRED, NULL); /* RFC 3207 §4 */
		return;
	}
	if (s->in_mail) {
		reply(s, out, SMTP_R_SEQ_NESTED, NULL);
		return;
	}
	if (!smtp_mail_arg_split(&c, "FROM:") || c.len == 0) {
		reply(s, out, SMTP_R_SYNTAX_MAIL, NULL);
		return;
	}
	ae = smtp_path_parse(&path, &c, SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_BARE);
	if (ae != SMTP_ADDR_OK) {
		reply(s, out, ae == SMTP_ADDR_TOO_LONG ? SMTP_R_SENDER_TOO_LONG : SMTP_R_BAD_SENDER, NULL);
		return;
	}
	if (c.len != 0 && c.p[0] != ' ') {
		reply(s, out, SMTP_R_SYNTAX_MAIL, NULL);
		return;
	}
	pe = smtp_mail_params_parse(&prm, c);
	if (pe != SMTP_PARAM_OK) {
		reply(s, out, pe == SMTP_PARAM_UNKNOWN ? SMTP_R_PARAM_UNKNOWN : SMTP_R_PARAM_SYNTAX, NULL);
		return;
	}
	/* RFC 1870 §6.2: refuse a declared size over the limit at once. */
	if (prm.has_size && s->cfg->max_msg_size != 0 && prm.size > s->cfg->max_msg_size) {
		reply(s, out, SMTP_R_SIZE_EXCEEDED, NULL);
		return;
	}
	if (path.has_8bit && !prm.smtputf8) {
		reply(s, out, SMTP_R_NEED_UTF8, NULL); /* RFC 6531 §3.5 */
		return;
	}
	if (s->cfg->mail_ok != NULL && !s->cfg->mail_ok(s->owner)) {
		reply(s, out, SMTP_R_RATE_MAIL, NULL);
		return;
	}
	from = span_dup(path.mailbox);
	if (from == NULL) {
		s->fatal = true;
		return;
	}
	tx_clear(s);
	s->env.mail_from = from;
	s->env.body = prm.body;
	s->env.smtputf8 = prm.smtputf8;
	s->in_mail = true;
	s->bdat_failed = false;
	reply(s, out, SMTP_R_MAIL_OK, NULL);
	ev_push(s, SMTP_EV_MAIL);
}

/* max_rcpts: 0 in the config means the RFC 5321 §4.5.3.1.8 minimum of 100. */
static size_t max_rcpts(const struct smtp_cfg *cfg)
{
	return cfg->max_rcpts != 0 ? cfg->max_rcpts : 100;
}

static void cmd_rcpt(struct smtp_sess *s, struct bb *out, const struct smtp_cmd *cmd)
{
	const struct smtp_cfg *cfg = s->cfg;
	struct span c = cmd->args;
	struct smtp_path path;
	enum smtp_addr_err ae;
	enum smtp_param_err pe;
	char *rcpt;

	if (!s->in_mail) {
		reply(s, out, SMTP_R_SEQ_MAIL, NULL);
		return;
	}
	if (s->bdat_used) {
		reply(s, out, SMTP_R_SEQ_BDAT_OPEN, NULL);
		return;
	}
	s->rcpt_tried = true;
	if (!smtp_mail_arg_split(&c, "TO:") || c.len == 0) {
		reply(s, out, SMTP_R_SYNTAX_RCPT, NULL);
		return;
	}
	ae = smtp_path_parse(&path, &c, SMTP_PATH_ALLOW_POSTMASTER | SMTP_PATH_ALLOW_BARE);
	if (ae != SMTP_ADDR_OK) {
		reply(s, out, ae == SMTP_ADDR_TOO_LONG ? SMTP_R_RCPT_TOO_LONG : SMTP_R_BAD_RCPT, NULL);
		return;
	}
	if (c.len != 0 && c.p[0] != ' ') {
		reply(s, out, SMTP_R_SYNTAX_RCPT, NULL);
		return;
	}
	pe = smtp_rcpt_params_parse(c);
	if (pe != SMTP_PARAM_OK) {
		reply(s, out, pe == SMTP_PARAM_UNKNOWN ? SMTP_R_PARAM_UNKNOWN : SMTP_R_PARAM_SYNTAX, NULL);
		return;
	}
	if (path.has_8bit && !s->env.smtputf8) {
		reply(s, out, SMTP_R_NEED_UTF8, NULL);
		return;
	}
	/* RFC 5321 §4.5.3.1.10: 452 beyond our limit; the client retries later. */
	if (s->env.num_rcpts >= max_rcpts(cfg)) {
		reply(s, out, SMTP_R_TOO_MANY_RCPTS, NULL);
		return;
	}
	/* RFC 5321 §4.5.1: <Postmaster> is always accepted. */
	if (!path.is_postmaster && cfg->domain_ok != NULL && !cfg->domain_ok(cfg->domain_arg, path.domain)) {
		reply(s, out, SMTP_R_RELAY_DENIED, NULL);
		return;
	}
	if (s->env.num_rcpts == s->rcpts_alloc) {
		size_t n = s->rcpts_alloc ? s->rcpts_alloc * 2 : 4;
		char **v;

		if (n > max_rcpts(cfg)) {
			n = max_rcpts(cfg);
		}
		v = realloc(s->env.rcpts, n * sizeof(*v));
		if (v == NULL) {
			s->fatal = true;
			return;
		}
		s->env.rcpts = v;
		s->rcpts_alloc = n;
	}
	rcpt = span_dup(path.mailbox);
	if (rcpt == NULL) {
		s->fatal = true;
		return;
	}
	s->env.rcpts[s->env.num_rcpts++] = rcpt;
	reply(s, out, SMTP_R_RCPT_OK, NULL);
}

/* no_rcpt_reply: RFC 5321 §3.3 allows 503 or 554 when no RCPT succeeded. */
static enum smtp_reply no_rcpt_reply(const struct smtp_sess *s)
{
	return s->rcpt_tried ? SMTP_R_NO_VALID_RCPT : SMTP_R_SEQ_RCPT;
}

static void cmd_data(struct smtp_sess *s, struct bb *out)
{
	if (!s->in_mail) {
		reply(s, out, SMTP_R_SEQ_MAIL, NULL);
		return;
	}
	if (s->bdat_used) {
		reply(s, out, SMTP_R_SEQ_DATA_BDAT, NULL); /* RFC 3030 §2 */
		return;
	}
	if (s->env.num_rcpts == 0) {
		reply(s, out, no_rcpt_reply(s), NULL);
		return;
	}
	if (s->env.body == MSG_BODY_BINARYMIME) {
		reply(s, out, SMTP_R_SEQ_BINARY, NULL); /* RFC 3030 §3 */
		return;
	}
	reply(s, out, SMTP_R_DATA_GO, NULL);
	if (s->fatal) {
		return;
	}
	smtp_data_init(&s->data, s->cfg->bare_lf, s->cfg->max_text_line, s->cfg->max_msg_size);
	s->st = SMTP_ST_DATA;
	s->tx_begun = true;
	ev_push(s, SMTP_EV_TX_BEGIN);
}

/*
 * bdat_fail_tx: a chunk of an open transaction is lost or refused, so the
 * message cannot be complete: drop it; later chunks get 503 (RFC 3030 §2).
 */
static void bdat_fail_tx(struct smtp_sess *s)
{
	if (s->in_mail) {
		tx_abort_if_begun(s);
		tx_clear(s);
		s->bdat_failed = true;
	}
}

static void cmd_bdat(struct smtp_sess *s, struct bb *out, struct span args)
{
	uint64_t count;
	bool last, count_ok;
	enum smtp_reply err = SMTP_R_COUNT;

	if (smtp_bdat_parse(args, &count, &last, &count_ok) != SMTP_PARSE_OK) {
		if (!count_ok) {
			/* The chunk length is unknown: its octets would be read as commands. */
			bdat_fail_tx(s);
			reply(s, out, SMTP_R_SYNTAX_BDAT_FATAL, NULL);
			return;
		}
		err = SMTP_R_SYNTAX_BDAT;
	} else if (!s->helo_done) {
		err = SMTP_R_SEQ_HELO;
	} else if (s->bdat_failed) {
		err = SMTP_R_SEQ_BDAT_FAILED;
	} else if (!s->in_mail) {
		err = SMTP_R_SEQ_MAIL;
	} else if (s->env.num_rcpts == 0) {
		err = no_rcpt_reply(s);
	} else if (s->cfg->max_msg_size != 0 &&
		   (s->bdat_size > s->cfg->max_msg_size || count > s->cfg->max_msg_size - s->bdat_size)) {
		/* Known before a single octet is read: refuse and close rather
		 * than read (and discard) a chunk that may be gigabytes long. */
		s->stats.rejected++;
		bdat_fail_tx(s);
		reply(s, out, SMTP_R_SIZE_EXCEEDED_CLOSE, NULL);
		return;
	}
	s->bdat_count = count;
	s->bdat_last = last;
	s->bdat_reply = err;
	s->st = SMTP_ST_BDAT;
	if (err != SMTP_R_COUNT) {
		bdat_fail_tx(s);
		smtp_bdat_init(&s->bdat, count, true);
		return;
	}
	smtp_bdat_init(&s->bdat, count, false);
	if (!s->bdat_used) {
		s->bdat_used = true;
		s->tx_begun = true;
		ev_push(s, SMTP_EV_TX_BEGIN);
	}
}

static void cmd_rset(struct smtp_sess *s, struct bb *out)
{
	tx_abort_if_begun(s);
	tx_clear(s);
	s->bdat_failed = false;
	reply(s, out, SMTP_R_OK, NULL);
}

/*
 * cmd_starttls: RFC 3207 §4. The 220 is queued and core is told; from here
 * on the session drops its input (smtp_sess_next, SMTP_ST_TLS), so nothing
 * pipelined behind STARTTLS in clear is ever read as a command after the
 * handshake (CVE-2011-0411).
 */
static void cmd_starttls(struct smtp_sess *s, struct bb *out)
{
	if (!s->cfg->tls_offered) {
		reply(s, out, SMTP_R_NOT_IMPL, NULL);
		return;
	}
	if (s->tls_active) {
		reply(s, out, SMTP_R_TLS_ACTIVE, NULL);
		return;
	}
	if (s->in_mail) {
		reply(s, out, SMTP_R_TLS_IN_TX, NULL);
		return;
	}
	if (s->cfg->tls_ok != NULL && !s->cfg->tls_ok(s->owner)) {
		reply(s, out, SMTP_R_TLS_RATE, NULL);
		return;
	}
	reply(s, out, SMTP_R_TLS_READY, NULL);
	if (s->fatal || s->st == SMTP_ST_CLOSED) {
		return;
	}
	s->st = SMTP_ST_TLS;
	smtp_line_reset(&s->line);
	ev_push(s, SMTP_EV_STARTTLS);
}

static void cmd_help(struct smtp_sess *s, struct bb *out)
{
	static const char *const lines[] = { "See RFC 5321 and https://www.rfc-editor.org/" };

	if (reply_append_lines(out, SMTP_R_HELP, NULL, lines, 1) != 0) {
		s->fatal = true;
	}
}

/* syntax_reply picks the 501 text for a verb whose arguments are wrong. */
static enum smtp_reply syntax_reply(enum smtp_verb_id id)
{
	switch (id) {
	case SMTP_V_HELO:
	case SMTP_V_EHLO:
		return SMTP_R_SYNTAX_HELO;
	case SMTP_V_MAIL:
		return SMTP_R_SYNTAX_MAIL;
	case SMTP_V_RCPT:
		return SMTP_R_SYNTAX_RCPT;
	case SMTP_V_VRFY:
		return SMTP_R_SYNTAX_VRFY;
	case SMTP_V_DATA:
	case SMTP_V_RSET:
	case SMTP_V_QUIT:
	case SMTP_V_STARTTLS: /* RFC 3207 §4: 501 */
		return SMTP_R_SYNTAX_NOARG;
	default:
		return SMTP_R_SYNTAX;
	}
}

/* looks_like_bdat: a rejected line that starts "BDAT " may announce a chunk. */
static bool looks_like_bdat(struct span line)
{
	return span_eat_ci(&line, "BDAT ");
}

/* do_line handles one framed command line. */
static void do_line(struct smtp_sess *s, struct bb *out, enum smtp_parse fr, struct span line)
{
	struct smtp_cmd cmd;
	enum smtp_parse pr;

	if (fr == SMTP_PARSE_TOO_LONG) {
		reply(s, out, SMTP_R_LINE_TOO_LONG, NULL);
		return;
	}
	if (fr == SMTP_PARSE_RUNAWAY) {
		reply(s, out, SMTP_R_LINE_RUNAWAY, NULL); /* closes */
		return;
	}
	if (fr == SMTP_PARSE_BARE_LF) {
		/* A refused BDAT line would leave its chunk to be read as commands. */
		reply(s, out, looks_like_bdat(line) ? SMTP_R_SYNTAX_BDAT_FATAL : SMTP_R_CMD_BARE_LF, NULL);
		return;
	}
	pr = smtp_cmd_parse(&cmd, line);
	switch (pr) {
	case SMTP_PARSE_OK:
		break;
	case SMTP_PARSE_BAD_CHAR:
		reply(s, out, looks_like_bdat(line) ? SMTP_R_SYNTAX_BDAT_FATAL : SMTP_R_CMD_BAD_CHAR, NULL);
		return;
	case SMTP_PARSE_SYNTAX:
		reply(s, out, syntax_reply(cmd.verb->id), NULL);
		return;
	default:
		reply(s, out, SMTP_R_UNKNOWN_CMD, NULL);
		return;
	}
	if (cmd.verb->flags & SMTP_CF_UNIMPL) {
		reply(s, out, cmd.verb->id == SMTP_V_EXPN ? SMTP_R_EXPN : SMTP_R_NOT_IMPL, NULL);
		return;
	}
	if ((cmd.verb->flags & SMTP_CF_NEEDS_HELO) && !s->helo_done) {
		reply(s, out, SMTP_R_SEQ_HELO, NULL);
		return;
	}
	switch (cmd.verb->id) {
	case SMTP_V_HELO:
	case SMTP_V_EHLO:
		cmd_helo(s, out, &cmd);
		break;
	case SMTP_V_MAIL:
		cmd_mail(s, out, &cmd);
		break;
	case SMTP_V_RCPT:
		cmd_rcpt(s, out, &cmd);
		break;
	case SMTP_V_DATA:
		cmd_data(s, out);
		break;
	case SMTP_V_BDAT:
		cmd_bdat(s, out, cmd.args);
		break;
	case SMTP_V_RSET:
		cmd_rset(s, out);
		break;
	case SMTP_V_NOOP:
		reply(s, out, SMTP_R_OK, NULL);
		break;
	case SMTP_V_QUIT:
		reply(s, out, SMTP_R_BYE, NULL);
		break;
	case SMTP_V_VRFY:
		reply(s, out, SMTP_R_VRFY, NULL); /* RFC 5321 §3.5.3 */
		break;
	case SMTP_V_HELP:
		cmd_help(s, out);
		break;
	case SMTP_V_STARTTLS:
		cmd_starttls(s, out);
		break;
	default:
		reply(s, out, SMTP_R_NOT_IMPL, NULL);
		break;
	}
}

/* maybe_shutdown ends a deferred shutdown once no transaction is open. */
static void maybe_shutdown(struct smtp_sess *s, struct bb *out)
{
	if (s->shutdown_req && s->st == SMTP_ST_CMD && !s->in_mail) {
		reply(s, out, SMTP_R_SHUTDOWN, host(s));
	}
}

/* ---- API -------------------------------------------------------------- */

void smtp_sess_set_owner(struct smtp_sess *s, void *owner)
{
	s->owner = owner;
}

struct smtp_sess *smtp_sess_new(const struct smtp_cfg *cfg, const char *client_ip, uint16_t client_port)
{
	struct smtp_sess *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	s->cfg = cfg;
	s->st = SMTP_ST_GREETING;
	smtp_line_init(&s->line, cfg->max_cmd_line ? cfg->max_cmd_line : SMTP_CMDLINE_MIN);
	s->bdat_reply = SMTP_R_COUNT;
	snprintf(s->env.client_ip, sizeof(s->env.client_ip), "%s", client_ip ? client_ip : "");
	s->env.client_port = client_port;
	s->env.body = MSG_BODY_7BIT;
	return s;
}

void smtp_sess_free(struct smtp_sess *s)
{
	if (s == NULL) {
		return;
	}
	tx_clear(s);
	free(s->env.helo); s->env.helo = NULL;
	smtp_line_fini(&s->line);
	free(s);
}

int smtp_sess_greet(struct smtp_sess *s, struct bb *out)
{
	int rc;

	if (s->st != SMTP_ST_GREETING) {
		return -EINVAL;
	}
	rc = reply_append(out, SMTP_R_GREETING, host(s));
	if (rc == 0) {
		s->st = SMTP_ST_CMD;
	}
	return rc;
}

enum smtp_ev smtp_sess_next(struct smtp_sess *s, struct span *in, struct bb *out, struct span *out_body)
{
	for (;;) {
		enum smtp_data_rc drc;
		enum smtp_parse fr;
		struct span line;

		if (s->fatal) {
			fail(s, out);
		}
		if (s->evq_len != 0) {
			return ev_pop(s);
		}
		switch (s->st) {
		case SMTP_ST_CLOSED:
			return SMTP_EV_CLOSE;
		case SMTP_ST_COMMIT:
			return SMTP_EV_NEED_INPUT; /* paused until smtp_sess_tx_done() */
		case SMTP_ST_TLS:
			/* CVE-2011-0411: what followed STARTTLS in clear is dropped. */
			span_skip(in, in->len);
			return SMTP_EV_NEED_INPUT;
		case SMTP_ST_GREETING:
			if (in->len == 0) {
				return SMTP_EV_NEED_INPUT;
			}
			reply(s, out, SMTP_R_EARLY_TALKER, NULL); /* pre-greeting traffic */
			continue;
		case SMTP_ST_CMD:
			fr = smtp_line_next(&s->line, in, &line);
			if (fr == SMTP_PARSE_MORE) {
				return SMTP_EV_NEED_INPUT;
			}
			do_line(s, out, fr, line);
			if (s->line.carry_out) {
				smtp_line_reset(&s->line); /* the line was copied where needed */
			}
			maybe_shutdown(s, out);
			continue;
		case SMTP_ST_DATA:
			drc = smtp_data_next(&s->data, in, out_body);
			switch (drc) {
			case SMTP_DATA_MORE:
				return SMTP_EV_NEED_INPUT;
			case SMTP_DATA_BODY:
				return SMTP_EV_BODY;
			case SMTP_DATA_ERROR:
				/* Stop storing at once; the reply waits for <CRLF>.<CRLF>, */
				tx_abort_if_begun(s);
				if (s->data.err == SMTP_DATA_ERR_RUNAWAY) {
					/* unless the line has no end in sight: say so and close. */
					s->stats.rejected++;
					tx_clear(s);
					reply(s, out, SMTP_R_LINE_RUNAWAY, NULL);
				}
				continue;
			default:
				break;
			}
			if (s->data.err != SMTP_DATA_ERR_NONE) {
				static const enum smtp_reply why[SMTP_DATA_ERR_COUNT] = {
					[SMTP_DATA_ERR_NONE] = SMTP_R_LOCAL_ERROR,
					[SMTP_DATA_ERR_BARE] = SMTP_R_DATA_BARE,
					[SMTP_DATA_ERR_LINE] = SMTP_R_DATA_LINE_LONG,
					[SMTP_DATA_ERR_SIZE] = SMTP_R_SIZE_EXCEEDED,
					[SMTP_DATA_ERR_RUNAWAY] = SMTP_R_LINE_RUNAWAY,
				};

				s->stats.rejected++;
				tx_abort_if_begun(s);
				tx_clear(s);
				s->st = SMTP_ST_CMD;
				reply(s, out, why[s->data.err], NULL);
				maybe_shutdown(s, out);
				continue;
			}
			s->env.size = s->data.size;
			s->tx_begun = false;
			s->st = SMTP_ST_COMMIT;
			s->stats.messages++;
			return SMTP_EV_TX_END;
		case SMTP_ST_BDAT:
			drc = smtp_bdat_next(&s->bdat, in, out_body);
			if (drc == SMTP_DATA_MORE) {
				return SMTP_EV_NEED_INPUT;
			}
			if (drc == SMTP_DATA_BODY) {
				s->bdat_size += out_body->len;
				return SMTP_EV_BODY;
			}
			s->st = SMTP_ST_CMD;
			if (s->bdat_reply != SMTP_R_COUNT) {
				enum smtp_reply r = s->bdat_reply;

				s->bdat_reply = SMTP_R_COUNT;
				reply(s, out, r, NULL);
				maybe_shutdown(s, out);
				continue;
			}
			if (s->bdat_last) {
				s->env.size = s->bdat_size;
				s->tx_begun = false;
				s->st = SMTP_ST_COMMIT;
				s->stats.messages++;
				return SMTP_EV_TX_END;
			}
			{
				char num[24];

				snprintf(num, sizeof(num), "%llu", (unsigned long long)s->bdat_count);
				reply(s, out, SMTP_R_BDAT_CHUNK, num);
			}
			continue;
		default:
			return SMTP_EV_CLOSE;
		}
	}
}

int smtp_sess_tx_done(struct smtp_sess *s, enum smtp_commit rc, struct bb *out)
{
	return smtp_sess_tx_done_why(s, rc, NULL, 0, out);
}

int smtp_sess_tx_done_why(struct smtp_sess *s, enum smtp_commit rc, const char *why, size_t why_len,
			  struct bb *out)
{
	char clean[REPLY_DETAIL_MAX];
	const char *detail = s->env.id;
	enum smtp_reply r;
	int err;

	if (s->st != SMTP_ST_COMMIT) {
		return -EINVAL;
	}
	switch (rc) {
	case SMTP_COMMIT_OK:
		r = SMTP_R_QUEUED;
		break;
	case SMTP_COMMIT_NOSPACE:
		r = SMTP_R_COMMIT_NOSPACE;
		break;
	case SMTP_COMMIT_REJECT:
		r = SMTP_R_POLICY_REJECT;
		break;
	case SMTP_COMMIT_SPAM_REJECT:
		r = SMTP_R_SPAM_REJECT;
		break;
	case SMTP_COMMIT_SPAM_TEMPFAIL:
		r = SMTP_R_SPAM_TEMPFAIL;
		break;
	case SMTP_COMMIT_SPAM_UNAVAIL:
		r = SMTP_R_SPAM_UNAVAIL;
		break;
	case SMTP_COMMIT_SINK_TEMPFAIL:
	case SMTP_COMMIT_SINK_REJECT:
		r = rc == SMTP_COMMIT_SINK_REJECT ? SMTP_R_SINK_REJECT : SMTP_R_SINK_TEMPFAIL;
		if (why == NULL || reply_clean(clean, sizeof(clean), why, why_len) == 0) {
			snprintf(clean, sizeof(clean), "%s",
				 rc == SMTP_COMMIT_SINK_REJECT ? "refused by the recipient's application" : "temporary failure");
		}
		detail = clean;
		break;
	case SMTP_COMMIT_MILTER_REJECT:
	case SMTP_COMMIT_MILTER_TEMPFAIL:
		r = rc == SMTP_COMMIT_MILTER_REJECT ? SMTP_R_MILTER_REJECT : SMTP_R_MILTER_TEMPFAIL;
		if (why == NULL || reply_clean(clean, sizeof(clean), why, why_len) == 0) {
			snprintf(clean, sizeof(clean), "%s",
				 rc == SMTP_COMMIT_MILTER_REJECT ? "Message rejected by the content filter"
								 : "Message deferred by the content filter, try again later");
		}
		detail = clean;
		break;
	default:
		r = SMTP_R_COMMIT_TEMPFAIL;
		break;
	}
	err = reply_append(out, r, detail);
	tx_clear(s);
	s->st = SMTP_ST_CMD;
	if (err != 0) {
		s->fatal = true; /* the next smtp_sess_next() closes */
		return err;
	}
	maybe_shutdown(s, out);
	return s->fatal ? -ENOMEM : 0;
}

bool smtp_sess_shutdown(struct smtp_sess *s, struct bb *out)
{
	if (s->st == SMTP_ST_CLOSED) {
		return true;
	}
	if (s->st == SMTP_ST_GREETING || s->st == SMTP_ST_TLS || (s->st == SMTP_ST_CMD && !s->in_mail)) {
		reply(s, out, SMTP_R_SHUTDOWN, host(s));
		sess_close(s); /* even when the reply did not fit */
		return true;
	}
	s->shutdown_req = true;
	return false;
}

int smtp_sess_abort(struct smtp_sess *s, enum smtp_abort why, struct bb *out)
{
	static const enum smtp_reply r[SMTP_ABORT_COUNT] = {
		[SMTP_ABORT_TIMEOUT] = SMTP_R_TIMEOUT,
		[SMTP_ABORT_SHUTDOWN] = SMTP_R_SHUTDOWN,
		[SMTP_ABORT_TOO_MANY] = SMTP_R_TOO_MANY_CONN,
		[SMTP_ABORT_DNSBL] = SMTP_R_DNSBL,
	};
	int rc = 0;

	if (s->st != SMTP_ST_CLOSED) {
		/* The DNSBL reply names the zone, which core set in env->dnsbl_zone. */
		rc = reply_append(out, (unsigned)why < SMTP_ABORT_COUNT ? r[why] : SMTP_R_SHUTDOWN,
				  why == SMTP_ABORT_DNSBL ? s->env.dnsbl_zone : host(s));
		sess_close(s);
	}
	return rc;
}

enum smtp_phase smtp_sess_phase(const struct smtp_sess *s)
{
	switch (s->st) {
	case SMTP_ST_GREETING:
		return SMTP_PHASE_GREETING;
	case SMTP_ST_CMD:
		return SMTP_PHASE_CMD;
	case SMTP_ST_DATA:
	case SMTP_ST_BDAT:
		return SMTP_PHASE_DATA;
	case SMTP_ST_COMMIT:
		return SMTP_PHASE_COMMIT;
	case SMTP_ST_TLS:
		return SMTP_PHASE_TLS;
	default:
		return SMTP_PHASE_CLOSED;
	}
}

struct msg_env *smtp_sess_env(struct smtp_sess *s)
{
	return &s->env;
}

int smtp_sess_tls_done(struct smtp_sess *s, const struct msg_tls *tls)
{
	if (s->st != SMTP_ST_TLS) {
		return -EINVAL;
	}
	/* RFC 3207 §4.2: discard any knowledge obtained from the client. */
	tx_clear(s);
	free(s->env.helo); s->env.helo = NULL;
	s->env.esmtp = false;
	s->helo_done = false;
	s->bdat_failed = false;
	s->env.tls = *tls;
	s->env.tls.on = true;
	s->tls_active = true;
	s->st = SMTP_ST_CMD;
	return 0;
}

bool smtp_sess_in_tx(const struct smtp_sess *s)
{
	return s->in_mail;
}

const char *smtp_ev_name(enum smtp_ev ev)
{
	static const char *const names[SMTP_EV_COUNT] = {
		[SMTP_EV_NEED_INPUT] = "need-input", [SMTP_EV_MAIL] = "mail",
		[SMTP_EV_TX_BEGIN] = "tx-begin",
		[SMTP_EV_BODY] = "body",             [SMTP_EV_TX_ABORT] = "tx-abort",
		[SMTP_EV_TX_END] = "tx-end",         [SMTP_EV_CLOSE] = "close",
		[SMTP_EV_STARTTLS] = "starttls",
	};

	return (unsigned)ev < SMTP_EV_COUNT ? names[ev] : "?";
}

const char *smtp_phase_name(enum smtp_phase ph)
{
	static const char *const names[SMTP_PHASE_COUNT] = {
		[SMTP_PHASE_GREETING] = "greeting", [SMTP_PHASE_CMD] = "cmd",
		[SMTP_PHASE_DATA] = "data",         [SMTP_PHASE_COMMIT] = "commit",
		[SMTP_PHASE_CLOSED] = "closed",     [SMTP_PHASE_TLS] = "tls",
	};

	return (unsigned)ph < SMTP_PHASE_COUNT ? names[ph] : "?";
}

const struct smtp_sess_stats *smtp_sess_stats(const struct smtp_sess *s)
{
	return &s->stats;
}
