/*
 * milter.c - milter protocol v6 packets; see milter.h. Bounded: a length
 * field is checked against MILTER_PKT_MAX before anything is read, every
 * string is found with memchr inside its packet.
 */
#include "milter.h"

#include <errno.h>
#include <string.h>

const char *milter_rc_name(enum milter_rc rc)
{
	static const char *const n[MILTER_RC_COUNT] = { "ok", "more", "too long", "syntax" };

	return (unsigned)rc < MILTER_RC_COUNT ? n[rc] : "?";
}

const char *milter_act_name(enum milter_act a)
{
	static const char *const n[MILTER_A_COUNT] = {
		"continue",  "accept",    "reject",     "tempfail", "discard",    "replycode", "addheader", "insheader",
		"chgheader", "quarantine", "progress", "skip",     "optneg",     "setsymlist", "refused",   "shutdown",
	};

	return (unsigned)a < MILTER_A_COUNT ? n[a] : "?";
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum milter_rc milter_pkt_next(struct milter_pkt *out, size_t *out_consumed, struct span in)
{
	uint32_t len;

	*out_consumed = 0;
	if (in.len < 4) {
		return MILTER_MORE;
	}
	len = get_be32(in.p);
	if (len == 0) {
		return MILTER_SYNTAX; /* no command byte */
	}
	if (len > MILTER_PKT_MAX) {
		return MILTER_TOO_LONG;
	}
	if (in.len - 4 < len) {
		return MILTER_MORE;
	}
	out->cmd = in.p[4];
	out->data = span_make(in.p + 5, len - 1);
	*out_consumed = 4 + (size_t)len;
	return MILTER_OK;
}

/* take_str takes a NUL-terminated string off the front of c (without the NUL); false if there is no NUL. */
static bool take_str(struct span *c, struct span *out)
{
	if (!span_take_until(c, out, 0)) {
		return false;
	}
	return span_skip(c, 1);
}

static bool get_u32(struct span *c, uint32_t *out)
{
	if (c->len < 4) {
		return false;
	}
	*out = get_be32(c->p);
	return span_skip(c, 4);
}

/* valid_name: a field name per RFC 5322 §3.6.8 (printable ASCII but ':'), bounded. */
static bool valid_name(struct span n)
{
	if (n.len == 0 || n.len > MILTER_TEXT_MAX) {
		return false;
	}
	for (size_t i = 0; i < n.len; i++) {
		if (n.p[i] < 33 || n.p[i] > 126 || n.p[i] == ':') {
			return false;
		}
	}
	return true;
}

/* header_args reads name\0value\0 into out. */
static bool header_args(struct span *c, struct milter_reply *out)
{
	return take_str(c, &out->name) && take_str(c, &out->value) && valid_name(out->name) &&
	       out->value.len <= MILTER_PKT_MAX;
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* skip_status skips an RFC 3463 enhanced status code (class.subject.detail) and the spaces after it. */
static void skip_status(struct span *t)
{
	size_t i = 0;

	for (int part = 0; part < 3; part++) {
		size_t start = i;

		while (i < t->len && is_digit(t->p[i]) && i - start < 3) {
			i++;
		}
		if (i == start || (part < 2 && (i >= t->len || t->p[i] != '.'))) {
			return; /* not one: the text stays whole */
		}
		if (part < 2) {
			i++;
		}
	}
	if (i < t->len && t->p[i] != ' ') {
		return;
	}
	while (i < t->len && t->p[i] == ' ') {
		i++;
	}
	span_skip(t, i);
}

/* replycode reads "NNN[ -]text\0": a 4xx or 5xx code (RFC 5321 §4.2), the text without any enhanced status. */
static bool replycode(struct span *c, struct milter_reply *out)
{
	struct span s;

	if (!take_str(c, &s) || s.len < 3 || !is_digit(s.p[0]) || !is_digit(s.p[1]) || !is_digit(s.p[2]) ||
	    (s.p[0] != '4' && s.p[0] != '5') || (s.len > 3 && s.p[3] != ' ' && s.p[3] != '-')) {
		return false;
	}
	out->code = (unsigned)(s.p[0] - '0') * 100 + (unsigned)(s.p[1] - '0') * 10 + (unsigned)(s.p[2] - '0');
	span_skip(&s, s.len > 3 ? 4 : 3);
	skip_status(&s);
	out->text = s.len > MILTER_TEXT_MAX ? span_make(s.p, MILTER_TEXT_MAX) : s;
	return true;
}

enum milter_rc milter_reply_parse(struct milter_reply *out, const struct milter_pkt *pkt)
{
	struct span c = pkt->data;
	bool ok = true;

	memset(out, 0, sizeof(*out));
	out->cmd = pkt->cmd;
	switch (pkt->cmd) {
	case SMFIR_CONTINUE:
		out->act = MILTER_A_CONTINUE;
		break;
	case SMFIR_ACCEPT:
		out->act = MILTER_A_ACCEPT;
		break;
	case SMFIR_REJECT:
		out->act = MILTER_A_REJECT;
		out->code = 550;
		break;
	case SMFIR_TEMPFAIL:
		out->act = MILTER_A_TEMPFAIL;
		out->code = 451;
		break;
	case SMFIR_DISCARD:
		out->act = MILTER_A_DISCARD;
		break;
	case SMFIR_PROGRESS:
		out->act = MILTER_A_PROGRESS;
		break;
	case SMFIR_SKIP:
		out->act = MILTER_A_SKIP;
		break;
	case SMFIR_REPLYCODE:
		out->act = MILTER_A_REPLYCODE;
		ok = replycode(&c, out);
		break;
	case SMFIR_ADDHEADER:
		out->act = MILTER_A_ADDHEADER;
		ok = header_args(&c, out);
		break;
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		out->act = pkt->cmd == SMFIR_INSHEADER ? MILTER_A_INSHEADER : MILTER_A_CHGHEADER;
		ok = get_u32(&c, &out->index) && header_args(&c, out);
		break;
	case SMFIR_QUARANTINE:
		out->act = MILTER_A_QUARANTINE;
		ok = take_str(&c, &out->text);
		if (ok && out->text.len > MILTER_TEXT_MAX) {
			out->text.len = MILTER_TEXT_MAX;
		}
		break;
	case SMFIC_OPTNEG:
		out->act = MILTER_A_OPTNEG;
		ok = get_u32(&c, &out->version) && get_u32(&c, &out->actions) && get_u32(&c, &out->protocol) &&
		     out->version >= 2;
		break;
	case SMFIR_SETSYMLIST:
		out->act = MILTER_A_SETSYMLIST;
		break;
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
	case SMFIR_ADDRCPT_PAR:
	case SMFIR_REPLBODY:
	case SMFIR_CHGFROM:
		out->act = MILTER_A_REFUSED;
		break;
	case SMFIR_SHUTDOWN:
	case SMFIR_CONN_FAIL:
		out->act = MILTER_A_SHUTDOWN;
		break;
	default:
		ok = false;
		break;
	}
	return ok ? MILTER_OK : MILTER_SYNTAX;
}

/* ------------------------------------------------------------ writers */

/* pkt_open appends the length placeholder and the command; the caller fills data, then pkt_close. */
static int pkt_open(struct bb *out, uint8_t cmd, size_t *out_mark)
{
	static const uint8_t zero[4];
	size_t mark = out->len;
	int rc = bb_append(out, zero, sizeof(zero));

	if (rc == 0 && (rc = bb_append(out, &cmd, 1)) != 0) {
		out->len = mark;
	}
	*out_mark = mark;
	return rc;
}

static int pkt_close(struct bb *out, size_t mark, int rc)
{
	size_t len = out->len - mark - 4;

	if (rc == 0 && len > MILTER_PKT_MAX) {
		rc = -E2BIG;
	}
	if (rc != 0) {
		out->len = mark; /* nothing half-written */
		return rc;
	}
	out->p[mark] = (uint8_t)(len >> 24);
	out->p[mark + 1] = (uint8_t)(len >> 16);
	out->p[mark + 2] = (uint8_t)(len >> 8);
	out->p[mark + 3] = (uint8_t)len;
	return 0;
}

static int put_str(struct bb *out, struct span s)
{
	static const uint8_t nul;
	int rc = bb_append_span(out, s);

	return rc != 0 ? rc : bb_append(out, &nul, 1);
}

static int put_be32(struct bb *out, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	return bb_append(out, b, sizeof(b));
}

int milter_put_optneg(struct bb *out, uint32_t version, uint32_t actions, uint32_t protocol)
{
	size_t mark;
	int rc = pkt_open(out, SMFIC_OPTNEG, &mark);

	if (rc != 0) {
		return rc;
	}
	rc = put_be32(out, version);
	if (rc == 0) {
		rc = put_be32(out, actions);
	}
	if (rc == 0) {
		rc = put_be32(out, protocol);
	}
	return pkt_close(out, mark, rc);
}

int milter_put_cmd(struct bb *out, uint8_t cmd)
{
	size_t mark;
	int rc = pkt_open(out, cmd, &mark);

	return rc != 0 ? rc : pkt_close(out, mark, 0);
}

int milter_put_strs(struct bb *out, uint8_t cmd, const struct span *strs, size_t num)
{
	size_t mark;
	int rc = pkt_open(out, cmd, &mark);

	if (rc != 0) {
		return rc;
	}
	for (size_t i = 0; rc == 0 && i < num; i++) {
		rc = put_str(out, strs[i]);
	}
	return pkt_close(out, mark, rc);
}

int milter_put_macros(struct bb *out, uint8_t for_cmd, const char *const *pairs, size_t num_pairs)
{
	size_t mark;
	int rc = pkt_open(out, SMFIC_MACRO, &mark);

	if (rc != 0) {
		return rc;
	}
	rc = bb_append(out, &for_cmd, 1);
	for (size_t i = 0; rc == 0 && i < 2 * num_pairs; i++) {
		rc = put_str(out, span_cstr(pairs[i] != NULL ? pairs[i] : ""));
	}
	return pkt_close(out, mark, rc);
}

int milter_put_connect(struct bb *out, const char *hostname, char family, uint16_t port, const char *addr)
{
	size_t mark;
	uint8_t f = (uint8_t)family;
	int rc = pkt_open(out, SMFIC_CONNECT, &mark);

	if (rc != 0) {
		return rc;
	}
	rc = put_str(out, span_cstr(hostname));
	if (rc == 0) {
		rc = bb_append(out, &f, 1);
	}
	if (rc == 0 && family != 'U') {
		uint8_t p[2] = { (uint8_t)(port >> 8), (uint8_t)port };

		rc = bb_append(out, p, sizeof(p));
		if (rc == 0) {
			rc = put_str(out, span_cstr(addr));
		}
	}
	return pkt_close(out, mark, rc);
}

int milter_put_body(struct bb *out, struct span chunk)
{
	size_t mark;
	int rc;

	if (chunk.len > MILTER_CHUNK_MAX) {
		return -E2BIG;
	}
	rc = pkt_open(out, SMFIC_BODY, &mark);
	if (rc != 0) {
		return rc;
	}
	return pkt_close(out, mark, bb_append_span(out, chunk));
}

int milter_field_write(struct bb *out, struct span name, struct span value)
{
	size_t mark = out->len;
	int rc = bb_append_span(out, name);

	while (value.len > 0 && (value.p[value.len - 1] == '\n' || value.p[value.len - 1] == '\r')) {
		value.len--; /* no empty continuation line */
	}
	if (rc == 0) {
		rc = bb_append(out, ": ", 2);
	}
	for (size_t i = 0; rc == 0 && i < value.len; i++) {
		uint8_t ch = value.p[i];

		if (ch == '\r' && i + 1 < value.len && value.p[i + 1] == '\n') {
			continue; /* the LF writes the break */
		}
		if (ch == '\n' || ch == '\r') {
			/* RFC 5322 §2.2.3: a break only as folding, before white space. */
			bool wsp = i + 1 < value.len && (value.p[i + 1] == ' ' || value.p[i + 1] == '\t');

			rc = bb_append(out, wsp ? "\r\n" : "\r\n\t", wsp ? 2 : 3);
			continue;
		}
		if (ch < 32 && ch != '\t') {
			ch = '?';
		}
		rc = bb_append(out, &ch, 1);
	}
	if (rc == 0) {
		rc = bb_append(out, "\r\n", 2);
	}
	if (rc != 0) {
		out->len = mark;
	}
	return rc;
}
