/*
 * smtpc.c - incremental SMTP reply reader; see smtpc.h.
 */
#include "smtpc.h"

#include <string.h>

void smtpc_init(struct smtpc_rd *rd)
{
	rd->line_len = 0;
	rd->code = 0;
	rd->ext = 0;
	rd->last_text[0] = '\0';
}

static bool kw_is(struct span text, const char *kw)
{
	struct span t = text;

	if (!span_eat_ci(&t, kw)) {
		return false;
	}
	return t.len == 0 || t.p[0] == ' ';
}

/* line_done handles one complete line (without CRLF). */
static enum smtpc_rc line_done(struct smtpc_rd *rd, const uint8_t *p, size_t len, int *out_code)
{
	int code;
	bool last;
	struct span text;
	size_t n;

	/* "DDD" then " ", "-" or nothing (RFC 5321 §4.2: Reply-line). */
	if (len < 3 || p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9') {
		return SMTPC_SYNTAX;
	}
	if (len > 3 && p[3] != ' ' && p[3] != '-') {
		return SMTPC_SYNTAX;
	}
	code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	if (rd->code == 0) {
		rd->ext = 0;
	} else if (rd->code != code) {
		return SMTPC_SYNTAX;
	}
	rd->code = code;
	last = len == 3 || p[3] == ' ';
	text = len > 4 ? span_make(p + 4, len - 4) : span_make(p, 0);
	if (kw_is(text, "PIPELINING")) {
		rd->ext |= SMTPC_EXT_PIPELINING;
	} else if (kw_is(text, "CHUNKING")) {
		rd->ext |= SMTPC_EXT_CHUNKING;
	} else if (kw_is(text, "STARTTLS")) {
		rd->ext |= SMTPC_EXT_STARTTLS;
	} else if (kw_is(text, "8BITMIME")) {
		rd->ext |= SMTPC_EXT_8BITMIME;
	}
	if (!last) {
		return SMTPC_MORE;
	}
	n = text.len < sizeof(rd->last_text) - 1 ? text.len : sizeof(rd->last_text) - 1;
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = text.p[i];

		rd->last_text[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	rd->last_text[n] = '\0';
	*out_code = code;
	rd->code = 0;
	return SMTPC_REPLY;
}

enum smtpc_rc smtpc_read(struct smtpc_rd *rd, struct span *in, int *out_code)
{
	while (in->len > 0) {
		const uint8_t *nl = memchr(in->p, '\n', in->len);
		size_t take = nl ? (size_t)(nl - in->p) + 1 : in->len;
		enum smtpc_rc rc;
		size_t len;

		if (rd->line_len + take > SMTPC_LINE_MAX) {
			return SMTPC_SYNTAX;
		}
		memcpy(rd->line + rd->line_len, in->p, take);
		rd->line_len += take;
		span_skip(in, take);
		if (nl == NULL) {
			return SMTPC_MORE;
		}
		/* Strip LF and an optional CR: servers may send bare LF. */
		len = rd->line_len - 1;
		if (len > 0 && rd->line[len - 1] == '\r') {
			len--;
		}
		rd->line_len = 0;
		rc = line_done(rd, rd->line, len, out_code);
		if (rc != SMTPC_MORE) {
			return rc;
		}
	}
	return SMTPC_MORE;
}
