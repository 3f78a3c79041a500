/*
 * reply.c - the SMTP reply table; see reply.h. Codes follow RFC 5321 §4.2,
 * enhanced codes RFC 3463 (registry: RFC 5248); texts are ours.
 */
#include "reply.h"

#include <errno.h>
#include <string.h>

#define R(id, c, e, t, f) [SMTP_R_##id] = { (c), (e), (t), (f) }

static const struct reply_def reply_tab[SMTP_R_COUNT] = {
	R(GREETING, 220, NULL, "%s ESMTP oceanmx", 0),
	/* RFC 5321 §3.1: 554 instead of 220 means no service; the client spoke first. */
	R(EARLY_TALKER, 554, "5.5.0", "Protocol error: data sent before greeting", REPLY_F_CLOSE),
	R(HELO, 250, NULL, "%s", 0),
	R(EHLO, 250, NULL, "%s", 0),
	R(OK, 250, "2.0.0", "Ok", 0),
	R(MAIL_OK, 250, "2.1.0", "Ok", 0),
	R(RCPT_OK, 250, "2.1.5", "Ok", 0),
	R(DATA_GO, 354, NULL, "End data with <CR><LF>.<CR><LF>", 0),
	R(QUEUED, 250, "2.0.0", "Ok: queued as %s", 0),
	R(BDAT_CHUNK, 250, "2.0.0", "%s octets received", 0),
	R(BYE, 221, "2.0.0", "Bye", REPLY_F_CLOSE),
	R(VRFY, 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery", 0),
	R(HELP, 214, "2.0.0", "oceanmx: commands HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP", 0),
	R(UNKNOWN_CMD, 500, "5.5.1", "Command unrecognized", REPLY_F_BAD),
	R(LINE_TOO_LONG, 500, "5.5.2", "Line too long", REPLY_F_BAD),
	/* SMTP_LINE_RUNAWAY_MAX octets past the limit and still no LF: reading
	 * on would only feed whoever sends it (a command or a DATA line). */
	R(LINE_RUNAWAY, 500, "5.5.2", "Line too long; closing connection", REPLY_F_BAD | REPLY_F_CLOSE),
	R(CMD_BARE_LF, 500, "5.5.2", "Command line must end with CRLF", REPLY_F_BAD),
	R(CMD_BAD_CHAR, 500, "5.5.2", "NUL or bare CR in command line", REPLY_F_BAD),
	R(SYNTAX, 501, "5.5.4", "Syntax error in parameters or arguments", REPLY_F_BAD),
	R(SYNTAX_NOARG, 501, "5.5.4", "Syntax error: no arguments allowed", REPLY_F_BAD),
	R(SYNTAX_HELO, 501, "5.5.4", "Syntax: EHLO hostname", REPLY_F_BAD),
	R(SYNTAX_MAIL, 501, "5.5.4", "Syntax: MAIL FROM:<address>", REPLY_F_BAD),
	R(SYNTAX_RCPT, 501, "5.5.4", "Syntax: RCPT TO:<address>", REPLY_F_BAD),
	R(SYNTAX_VRFY, 501, "5.5.4", "Syntax: VRFY address", REPLY_F_BAD),
	R(SYNTAX_BDAT, 501, "5.5.4", "Syntax: BDAT count [LAST]", REPLY_F_BAD),
	/* The chunk length is unknown, so its bytes cannot be skipped: never resync. */
	R(SYNTAX_BDAT_FATAL, 501, "5.5.4", "Syntax: BDAT count [LAST]; closing connection",
	  REPLY_F_BAD | REPLY_F_CLOSE),
	R(BAD_SENDER, 501, "5.1.7", "Bad sender address syntax", REPLY_F_BAD),
	R(BAD_RCPT, 501, "5.1.3", "Bad recipient address syntax", REPLY_F_BAD),
	R(SENDER_TOO_LONG, 501, "5.1.7", "Path too long", REPLY_F_BAD),
	R(RCPT_TOO_LONG, 501, "5.1.3", "Path too long", REPLY_F_BAD),
	R(NEED_UTF8, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8", 0),
	R(PARAM_UNKNOWN, 555, "5.5.4", "Unsupported MAIL/RCPT parameter", REPLY_F_BAD),
	R(PARAM_SYNTAX, 501, "5.5.4", "Bad MAIL/RCPT parameter syntax", REPLY_F_BAD),
	R(NOT_IMPL, 502, "5.5.1", "Command not implemented", REPLY_F_BAD),
	R(EXPN, 502, "5.5.1", "EXPN not supported", REPLY_F_BAD),
	R(SEQ_HELO, 503, "5.5.1", "Send EHLO or HELO first", REPLY_F_BAD),
	R(SEQ_NESTED, 503, "5.5.1", "Nested MAIL command", REPLY_F_BAD),
	R(SEQ_MAIL, 503, "5.5.1", "Need MAIL command first", REPLY_F_BAD),
	R(SEQ_RCPT, 503, "5.5.1", "Need RCPT command first", REPLY_F_BAD),
	R(NO_VALID_RCPT, 554, "5.5.1", "No valid recipients", 0),
	R(SEQ_BINARY, 503, "5.5.1", "DATA not allowed with BODY=BINARYMIME, use BDAT", REPLY_F_BAD),
	R(SEQ_DATA_BDAT, 503, "5.5.1", "DATA not allowed after BDAT", REPLY_F_BAD),
	R(SEQ_BDAT_FAILED, 503, "5.5.1", "Earlier BDAT failed, send RSET", REPLY_F_BAD),
	R(SEQ_BDAT_OPEN, 503, "5.5.1", "RCPT not allowed after BDAT", REPLY_F_BAD),
	R(RELAY_DENIED, 550, "5.7.1", "Relay not permitted: recipient domain not served here", 0),
	R(TOO_MANY_RCPTS, 452, "4.5.3", "Too many recipients", 0),
	/* RFC 3463 4.7.1: delivery not authorized (yet); temporary, so the sender slows down. */
	R(RATE_MAIL, 451, "4.7.1", "Too much mail from your address, try again later", 0),
	R(SIZE_EXCEEDED, 552, "5.3.4", "Message size exceeds fixed limit", 0),
	/* A BDAT chunk announced beyond the limit is refused before it arrives;
	 * reading megabytes only to discard them is what a hostile client wants. */
	R(SIZE_EXCEEDED_CLOSE, 552, "5.3.4", "Message size exceeds fixed limit; closing connection", REPLY_F_CLOSE),
	R(DATA_BARE, 550, "5.5.2", "Bare CR or LF in message data not allowed", 0),
	R(DATA_LINE_LONG, 500, "5.5.2", "Line too long in message data", 0),
	R(COMMIT_TEMPFAIL, 451, "4.3.0", "Local error in processing, try again later", 0),
	R(COMMIT_NOSPACE, 452, "4.3.1", "Insufficient system storage", 0),
	/* RFC 7489 §6.7: reject at the end of data; 5.7.1 "delivery not authorized". */
	R(POLICY_REJECT, 550, "5.7.1", "Rejected by the sender domain's DMARC policy", 0),
	/* A sink marked ?sync=yes answered inside the transaction (docs/sinks.md). */
	R(SINK_TEMPFAIL, 451, "4.3.0", "Not accepted now, try again later: %s", 0),
	R(SINK_REJECT, 550, "5.7.1", "Rejected: %s", 0),
	/* RFC 3463 5.7.1 / 4.7.1: delivery not authorized by our content policy (the spam filter). */
	R(SPAM_REJECT, 550, "5.7.1", "Message rejected as spam", 0),
	R(SPAM_TEMPFAIL, 451, "4.7.1", "Message deferred by the spam filter, try again later", 0),
	R(SPAM_UNAVAIL, 451, "4.7.1", "Spam check unavailable, try again later", 0),
	/* A milter's answer (--milter): its SMFIR_REPLYCODE text, first line, cleaned; the code class is its. */
	R(MILTER_REJECT, 550, "5.7.1", "%s", 0),
	R(MILTER_TEMPFAIL, 451, "4.7.1", "%s", 0),
	R(TOO_MANY_ERRORS, 421, "4.7.0", "%s Too many errors, closing connection", REPLY_F_CLOSE),
	R(TIMEOUT, 421, "4.4.2", "%s Timeout, closing connection", REPLY_F_CLOSE),
	R(SHUTDOWN, 421, "4.3.2", "%s Service shutting down, closing connection", REPLY_F_CLOSE),
	R(TOO_MANY_CONN, 421, "4.7.0", "%s Too many connections, try again later", REPLY_F_CLOSE),
	R(LOCAL_ERROR, 421, "4.3.0", "%s Local resource error, closing connection", REPLY_F_CLOSE),
	/* RFC 5321 §3.1: 554 instead of the greeting; RFC 3463 5.7.1 delivery not authorized. */
	R(DNSBL, 554, "5.7.1", "Service unavailable; client listed by %s", REPLY_F_CLOSE),
	/* RFC 3207 §4: 220 then the handshake; 501 for arguments is SYNTAX_NOARG. */
	R(TLS_READY, 220, "2.0.0", "Ready to start TLS", 0),
	R(TLS_ACTIVE, 503, "5.5.1", "TLS already active", REPLY_F_BAD),
	/* RFC 3207 §4.2 makes the server forget the transaction; refuse rather than drop it. */
	R(TLS_IN_TX, 503, "5.5.1", "STARTTLS not allowed during a mail transaction", REPLY_F_BAD),
	/* RFC 3207 §4: 530 5.7.0 to a command other than those allowed before STARTTLS. */
	R(TLS_REQUIRED, 530, "5.7.0", "Must issue a STARTTLS command first", REPLY_F_BAD),
	/* RFC 3207 §4's temporary refusal; the session goes on in clear. */
	R(TLS_RATE, 454, "4.7.0", "TLS not available due to temporary reason: too many new TLS sessions from your address", 0),
};

#undef R

#define N(id) [SMTP_R_##id] = #id
static const char *const reply_names[SMTP_R_COUNT] = {
	N(GREETING), N(EARLY_TALKER), N(HELO), N(EHLO), N(OK), N(MAIL_OK), N(RCPT_OK),
	N(DATA_GO), N(QUEUED), N(BDAT_CHUNK), N(BYE), N(VRFY), N(HELP), N(UNKNOWN_CMD),
	N(LINE_TOO_LONG), N(LINE_RUNAWAY), N(CMD_BARE_LF), N(CMD_BAD_CHAR), N(SYNTAX), N(SYNTAX_NOARG),
	N(SYNTAX_HELO), N(SYNTAX_MAIL), N(SYNTAX_RCPT), N(SYNTAX_VRFY), N(SYNTAX_BDAT),
	N(SYNTAX_BDAT_FATAL), N(BAD_SENDER), N(BAD_RCPT), N(SENDER_TOO_LONG), N(RCPT_TOO_LONG),
	N(NEED_UTF8), N(PARAM_UNKNOWN), N(PARAM_SYNTAX), N(NOT_IMPL), N(EXPN), N(SEQ_HELO),
	N(SEQ_NESTED), N(SEQ_MAIL), N(SEQ_RCPT), N(NO_VALID_RCPT), N(SEQ_BINARY),
	N(SEQ_DATA_BDAT), N(SEQ_BDAT_FAILED), N(SEQ_BDAT_OPEN), N(RELAY_DENIED), N(TOO_MANY_RCPTS), N(RATE_MAIL),
	N(SIZE_EXCEEDED), N(SIZE_EXCEEDED_CLOSE), N(DATA_BARE), N(DATA_LINE_LONG), N(COMMIT_TEMPFAIL),
	N(COMMIT_NOSPACE), N(POLICY_REJECT), N(SINK_TEMPFAIL), N(SINK_REJECT), N(SPAM_REJECT), N(SPAM_TEMPFAIL),
	N(SPAM_UNAVAIL), N(MILTER_REJECT), N(MILTER_TEMPFAIL), N(TOO_MANY_ERRORS), N(TIMEOUT),
	N(SHUTDOWN), N(TOO_MANY_CONN), N(LOCAL_ERROR), N(DNSBL), N(TLS_READY), N(TLS_ACTIVE), N(TLS_IN_TX), N(TLS_REQUIRED),
	N(TLS_RATE),
};
#undef N

const struct reply_def *reply_for(enum smtp_reply r)
{
	if ((unsigned)r >= SMTP_R_COUNT) {
		r = SMTP_R_LOCAL_ERROR;
	}
	return &reply_tab[r];
}

const char *reply_name(enum smtp_reply r)
{
	if ((unsigned)r >= SMTP_R_COUNT || reply_names[r] == NULL) {
		return "?";
	}
	return reply_names[r];
}

size_t reply_clean(char *out, size_t out_len, const char *in, size_t in_len)
{
	size_t n = 0;
	bool space = false;

	if (out_len == 0) {
		return 0;
	}
	for (size_t i = 0; i < in_len && in[i] != '\r' && in[i] != '\n'; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (ch == ' ' || ch == '\t') {
			space = n > 0; /* leading blanks are dropped, inner runs squeezed */
			continue;
		}
		if (n + (space ? 2 : 1) > out_len - 1) {
			break;
		}
		if (space) {
			out[n++] = ' ';
			space = false;
		}
		out[n++] = (ch > 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	out[n] = '\0';
	return n;
}

/* reply_line appends one line: "CODE" sep [ESC SP] text CRLF; with `subst`, "%s" becomes detail. */
static int reply_line(struct bb *out, const struct reply_def *d, char sep, const char *text, bool subst,
		      const char *detail)
{
	const char *pct = subst ? strstr(text, "%s") : NULL;
	char head[5];
	int rc;

	head[0] = (char)('0' + d->code / 100);
	head[1] = (char)('0' + d->code / 10 % 10);
	head[2] = (char)('0' + d->code % 10);
	head[3] = sep;
	head[4] = ' ';
	rc = bb_append(out, head, 4);
	if (rc == 0 && d->esc != NULL) {
		rc = bb_append_str(out, d->esc);
		if (rc == 0) {
			rc = bb_append(out, &head[4], 1);
		}
	}
	if (rc == 0 && pct != NULL) {
		rc = bb_append(out, text, (size_t)(pct - text));
		if (rc == 0 && detail != NULL) {
			rc = bb_append_str(out, detail);
		}
		if (rc == 0) {
			rc = bb_append_str(out, pct + 2);
		}
	} else if (rc == 0) {
		rc = bb_append_str(out, text);
	}
	if (rc == 0) {
		rc = bb_append(out, "\r\n", 2);
	}
	return rc;
}

int reply_append_lines(struct bb *out, enum smtp_reply r, const char *detail, const char *const *lines,
		       size_t num_lines)
{
	const struct reply_def *d = reply_for(r);
	size_t mark = out->len;
	int rc;

	rc = reply_line(out, d, num_lines ? '-' : ' ', d->text, true, detail);
	for (size_t i = 0; rc == 0 && i < num_lines; i++) {
		/* Continuation lines are fixed keywords: no substitution. */
		rc = reply_line(out, d, i + 1 < num_lines ? '-' : ' ', lines[i], false, NULL);
	}
	if (rc != 0) {
		out->len = mark; /* bb.h promise: unchanged on failure */
	}
	return rc;
}

int reply_append(struct bb *out, enum smtp_reply r, const char *detail)
{
	return reply_append_lines(out, r, detail, NULL, 0);
}
