/*
 * milter_client.c - milter conversations on a thread of their own; see
 * milter_client.h for what a conversation is and the decisions taken.
 *
 * Threads: submitters push onto a queue under a mutex and wake the thread
 * through an eventfd; the thread owns every socket and every request it
 * took until that request's done. One epoll watches the eventfd and the
 * sockets (level-triggered; EPOLLOUT only while bytes wait to be written).
 * Every request in flight has a deadline (connect, or the reply it waits
 * for, or the write that does not drain), so stop never waits longer than
 * the longest timeout per milter left in a chain.
 */
#include "milter_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../proto/msgdoc.h"
#include "thread.h"

/* Conversation stages, in protocol order (libmilter's callback order). */
enum milter_stage {
	MST_CONNECTING = 0, /* non-blocking connect in progress */
	MST_OPTNEG,         /* SMFIC_OPTNEG */
	MST_CONNECT,        /* SMFIC_CONNECT */
	MST_HELO,           /* SMFIC_HELO */
	MST_MAIL,           /* SMFIC_MAIL */
	MST_RCPT,           /* SMFIC_RCPT, one per recipient */
	MST_DATA,           /* SMFIC_DATA */
	MST_HEADER,         /* SMFIC_HEADER, one per field */
	MST_EOH,            /* SMFIC_EOH */
	MST_BODY,           /* SMFIC_BODY chunks */
	MST_EOB,            /* SMFIC_BODYEOB: modifications, then the final answer */
	MST_COUNT           /* sentinel */
};

static const char *stage_name(unsigned st)
{
	static const char *const n[MST_COUNT] = { "connect", "optneg", "conn", "helo", "mail", "rcpt",
						  "data",    "header", "eoh",  "body", "eom" };

	return st < MST_COUNT ? n[st] : "?";
}

struct milter_client {
	struct milter_conf *m;
	unsigned num;
	int ep, efd;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	struct milter_req *head, **tail; /* under mu */
	bool stop;                       /* under mu */
	struct milter_req *active;       /* client thread only, linked by next */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ config */

const char *milter_default_name(enum milter_default d)
{
	static const char *const n[MILTER_DEF_COUNT] = { "tempfail", "accept", "reject" };

	return (unsigned)d < MILTER_DEF_COUNT ? n[d] : "?";
}

bool milter_default_parse(const char *s, enum milter_default *out)
{
	for (unsigned d = 0; d < MILTER_DEF_COUNT; d++) {
		if (strcmp(s, milter_default_name((enum milter_default)d)) == 0) {
			*out = (enum milter_default)d;
			return true;
		}
	}
	return false;
}

const char *milter_verdict_name(enum milter_verdict v)
{
	static const char *const n[MILTER_V_COUNT] = { "none", "accept", "reject", "tempfail", "discard" };

	return (unsigned)v < MILTER_V_COUNT ? n[v] : "?";
}

static int conf_err(char **out_err, const char *spec, const char *why)
{
	if (asprintf(out_err, "milter %s: %s", spec, why) < 0) {
		*out_err = NULL;
	}
	return -EINVAL;
}

/* parse_ms reads a timeout in milliseconds, 1..3600000. */
static bool parse_ms(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 7) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v == 0 || v > 3600000) {
		return false;
	}
	*out = (uint32_t)v;
	return true;
}

/* conf_options reads "key=value&..." after '?'. */
static int conf_options(struct milter_conf *out, const char *spec, const char *q, char **out_err)
{
	while (*q != '\0') {
		size_t len = strcspn(q, "&");
		const char *eq = memchr(q, '=', len);
		char val[32];

		if (eq == NULL || (size_t)(q + len - eq - 1) >= sizeof(val)) {
			return conf_err(out_err, spec, "an option is key=value (timeout, connect-timeout, default-action)");
		}
		memcpy(val, eq + 1, (size_t)(q + len - eq - 1));
		val[q + len - eq - 1] = '\0';
		if ((size_t)(eq - q) == 7 && memcmp(q, "timeout", 7) == 0) {
			if (!parse_ms(val, strlen(val), &out->timeout_ms)) {
				return conf_err(out_err, spec, "timeout: milliseconds, 1 to 3600000");
			}
		} else if ((size_t)(eq - q) == 15 && memcmp(q, "connect-timeout", 15) == 0) {
			if (!parse_ms(val, strlen(val), &out->connect_timeout_ms)) {
				return conf_err(out_err, spec, "connect-timeout: milliseconds, 1 to 3600000");
			}
		} else if ((size_t)(eq - q) == 14 && memcmp(q, "default-action", 14) == 0) {
			if (!milter_default_parse(val, &out->def)) {
				return conf_err(out_err, spec, "default-action: accept, tempfail or reject");
			}
		} else {
			return conf_err(out_err, spec, "unknown option (timeout, connect-timeout, default-action)");
		}
		q += len;
		if (*q == '&') {
			q++;
		}
	}
	return 0;
}

int milter_conf_parse(struct milter_conf *out, const char *spec, uint32_t timeout_ms, uint32_t connect_timeout_ms,
		      enum milter_default def, char **out_err)
{
	const char *q = strchr(spec, '?');
	size_t alen = q ? (size_t)(q - spec) : strlen(spec);
	char addr[256];
	int rc;

	*out_err = NULL;
	memset(out, 0, sizeof(*out));
	out->timeout_ms = timeout_ms;
	out->connect_timeout_ms = connect_timeout_ms;
	out->def = def;
	if (alen >= sizeof(addr) || alen >= sizeof(out->name)) {
		return conf_err(out_err, spec, "too long");
	}
	memcpy(addr, spec, alen);
	addr[alen] = '\0';
	memcpy(out->name, addr, alen + 1);
	if (q != NULL && (rc = conf_options(out, spec, q + 1, out_err)) != 0) {
		return rc;
	}
	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
		size_t n = strlen(addr + 5);

		if (n == 0 || n >= sizeof(un->sun_path)) {
			return conf_err(out_err, spec, "unix: needs a socket path (at most 107 bytes)");
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, addr + 5, n + 1);
		out->sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		return 0;
	}
	if (strncmp(addr, "inet:", 5) == 0 || strncmp(addr, "inet6:", 6) == 0) {
		char *host = strchr(addr, ':') + 1, *port = strrchr(host, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res = NULL;
		uint32_t pnum;

		if (port == NULL || port == host || !parse_ms(port + 1, strlen(port + 1), &pnum) || pnum > 65535) {
			return conf_err(out_err, spec, "inet: needs HOST:PORT");
		}
		*port++ = '\0';
		if (host[0] == '[' && port - host >= 3 && port[-2] == ']') {
			host++;
			port[-2] = '\0';
		}
		if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL || res->ai_addrlen > sizeof(out->sa)) {
			if (res != NULL) {
				freeaddrinfo(res);
			}
			return conf_err(out_err, spec, "cannot resolve the host");
		}
		memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
		out->sa_len = res->ai_addrlen;
		freeaddrinfo(res);
		return 0;
	}
	return conf_err(out_err, spec, "expected unix:PATH or inet:HOST:PORT");
}

/* ------------------------------------------------------------ requests */

void milter_req_init(struct milter_req *req)
{
	memset(req, 0, sizeof(*req));
	req->fd = -1;
	bb_init(&req->fields, 0);
	bb_init(&req->out, 0);
	bb_init(&req->in, MILTER_PKT_MAX + 4);
	bb_init(&req->mods, 0);
}

void milter_req_fini(struct milter_req *req)
{
	bb_fini(&req->fields);
	bb_fini(&req->out);
	bb_fini(&req->in);
	bb_fini(&req->mods);
}

/*
 * field_end: the end of the header field starting at msg[pos] (after its
 * line end and continuation lines), or pos when msg[pos] starts the empty
 * line or a line that is no field (no colon): the body starts there.
 */
static size_t field_end(const uint8_t *msg, size_t len, size_t pos, size_t *out_colon)
{
	size_t i = pos;
	const uint8_t *nl, *colon;

	if (pos >= len || msg[pos] == '\r' || msg[pos] == '\n') {
		return pos;
	}
	nl = memchr(msg + pos, '\n', len - pos);
	colon = memchr(msg + pos, ':', (nl ? (size_t)(nl - msg) : len) - pos);
	if (colon == NULL) {
		return pos;
	}
	*out_colon = (size_t)(colon - msg);
	for (;;) {
		nl = memchr(msg + i, '\n', len - i);
		if (nl == NULL) {
			return len;
		}
		i = (size_t)(nl - msg) + 1;
		if (i >= len || (msg[i] != ' ' && msg[i] != '\t')) {
			return i;
		}
	}
}

/* body_start: the offset of the first body byte (after the empty line), msg_len without one. */
static size_t body_start(const uint8_t *msg, size_t len)
{
	size_t pos = 0, colon, end;

	while ((end = field_end(msg, len, pos, &colon)) > pos) {
		pos = end;
	}
	if (pos < len && msg[pos] == '\n') {
		return pos + 1;
	}
	if (pos + 1 < len && msg[pos] == '\r' && msg[pos + 1] == '\n') {
		return pos + 2;
	}
	return pos;
}

/* hdr_count: how many fields named `name` the message's header has. */
static uint32_t hdr_count(const struct milter_req *req, struct span name)
{
	size_t pos = 0, colon, end;
	uint32_t n = 0;

	while ((end = field_end(req->msg, req->body_off, pos, &colon)) > pos) {
		struct span f = span_trim_ws(span_make(req->msg + pos, colon - pos));

		if (f.len == name.len && strncasecmp((const char *)f.p, (const char *)name.p, f.len) == 0) {
			n++;
		}
		pos = end;
	}
	return n;
}

/* ------------------------------------------------------------ the thread */

static void conv_begin(struct milter_client *cl, struct milter_req *req);
static void pump(struct milter_client *cl, struct milter_req *req);

static void active_remove(struct milter_client *cl, struct milter_req *req)
{
	for (struct milter_req **pp = &cl->active; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == req) {
			*pp = req->next;
			req->next = NULL;
			return;
		}
	}
}

static void conv_close(struct milter_req *req)
{
	if (req->fd >= 0) {
		close(req->fd); /* leaves the epoll set with it */
		req->fd = -1;
	}
	req->events = 0;
	req->awaiting = false;
	bb_reset(&req->out, 1);
	bb_reset(&req->in, 1);
	req->out_off = 0;
}

static void logf_append(struct milter_req *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_append(struct milter_req *req, const char *fmt, ...)
{
	size_t n = strlen(req->log);
	va_list ap;

	if (n + 1 >= sizeof(req->log)) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(req->log + n, sizeof(req->log) - n, fmt, ap);
	va_end(ap);
}

/* finish hands the request back: the last touch. */
static void finish(struct milter_client *cl, struct milter_req *req)
{
	char head[64];

	conv_close(req);
	active_remove(cl, req);
	bb_reset(&req->mods, 1);
	if (req->verdict == MILTER_V_NONE && cl->num > 0) {
		req->verdict = MILTER_V_ACCEPT;
	}
	snprintf(head, sizeof(head), "milter=%s", milter_verdict_name(req->verdict));
	if (strlen(head) + strlen(req->log) + 1 < sizeof(req->log)) {
		memmove(req->log + strlen(head), req->log, strlen(req->log) + 1);
		memcpy(req->log, head, strlen(head));
	}
	if (req->chg_skipped > 0) {
		logf_append(req, " chg_skipped=%u", req->chg_skipped);
	}
	if (req->refused > 0) {
		logf_append(req, " refused=%u refused_cmds=%s", req->refused, req->refused_cmds);
	}
	req->done(req->arg, req);
}

/*
 * copy_text copies a reply's text as printable ASCII (anything else becomes
 * '?'); with one_line, line breaks and tabs become spaces and '"' becomes
 * '\'' too, so the text fits a quoted log value (a quarantine reason).
 */
static void copy_text(char *out, size_t out_len, struct span t, bool one_line)
{
	size_t n = t.len < out_len - 1 ? t.len : out_len - 1;

	for (size_t i = 0; i < n; i++) {
		uint8_t ch = t.p[i];

		if (ch == '\r' || ch == '\n' || ch == '\t') {
			out[i] = one_line ? ' ' : (char)ch;
		} else if (one_line && (ch == '"' || ch == '\\')) {
			out[i] = '\'';
		} else {
			out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
	}
	out[n] = '\0';
}

/*
 * milter_end ends the conversation with the current milter with `v`: an
 * accept keeps its modifications and goes on to the next milter; anything
 * else ends the chain.
 */
static void milter_end(struct milter_client *cl, struct milter_req *req, enum milter_verdict v)
{
	const struct milter_conf *m = &cl->m[req->midx];

	if (req->fd >= 0) {
		/* Best effort: a milter that reads it frees its state now. */
		bb_reset(&req->out, 0);
		req->out_off = 0;
		if (milter_put_cmd(&req->out, SMFIC_QUIT) == 0) {
			ssize_t w = send(req->fd, req->out.p, req->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);

			(void)w;
		}
	}
	conv_close(req);
	if (v == MILTER_V_ACCEPT) {
		if (bb_append_span(&req->fields, bb_span(&req->mods)) != 0) {
			logf_append(req, " error=\"out of memory: fields of %s dropped\"", m->name);
		}
		if (req->m_quarantined && !req->quarantined) {
			memcpy(req->quarantine, req->m_quarantine, sizeof(req->quarantine));
			req->quarantined = true;
			logf_append(req, " quarantine=\"%.80s\"", req->quarantine);
		}
		bb_reset(&req->mods, 0);
		req->midx++;
		conv_begin(cl, req);
		return;
	}
	req->verdict = v;
	logf_append(req, " by=\"%s\" stage=%s", m->name, stage_name(req->step));
	finish(cl, req);
}

/* fail applies the milter's default action after an error (`why`). */
static void fail(struct milter_client *cl, struct milter_req *req, const char *why)
{
	const struct milter_conf *m = &cl->m[req->midx];

	conv_close(req);
	logf_append(req, " error=\"%s: %s at %s\" default=%s", m->name, why, stage_name(req->step),
		    milter_default_name(m->def));
	bb_reset(&req->mods, 0);
	req->m_quarantined = false;
	req->why[0] = '\0';
	if (m->def == MILTER_DEF_ACCEPT) {
		req->midx++;
		conv_begin(cl, req);
		return;
	}
	req->verdict = m->def == MILTER_DEF_REJECT ? MILTER_V_REJECT : MILTER_V_TEMPFAIL;
	finish(cl, req);
}

static void set_events(struct milter_client *cl, struct milter_req *req, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = req };

	if (req->events != ev && epoll_ctl(cl->ep, EPOLL_CTL_MOD, req->fd, &e) == 0) {
		req->events = ev;
	}
}

/* conv_begin connects to the next milter of the chain, or finishes the request. */
static void conv_begin(struct milter_client *cl, struct milter_req *req)
{
	const struct milter_conf *m;
	struct epoll_event e = { .events = EPOLLOUT, .data.ptr = req };
	char why[96];

	if (req->midx >= cl->num) {
		finish(cl, req);
		return;
	}
	m = &cl->m[req->midx];
	req->stage = req->step = MST_CONNECTING;
	req->conn_gen++;
	req->skip_body = false;
	req->m_actions = req->m_proto = 0;
	req->m_quarantined = false;
	req->fd = socket(m->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (req->fd < 0) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		fail(cl, req, why);
		return;
	}
	if (connect(req->fd, (const struct sockaddr *)&m->sa, m->sa_len) != 0 && errno != EINPROGRESS) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		fail(cl, req, why);
		return;
	}
	if (epoll_ctl(cl->ep, EPOLL_CTL_ADD, req->fd, &e) != 0) {
		snprintf(why, sizeof(why), "epoll: %s", strerror(errno));
		fail(cl, req, why);
		return;
	}
	req->events = EPOLLOUT;
	req->deadline_ms = now_ms() + m->connect_timeout_ms;
}

/* macros appends SMFIC_MACRO for `cmd`. */
static int macros(struct milter_req *req, uint8_t cmd, const char *const *pairs, size_t num)
{
	return milter_put_macros(&req->out, cmd, pairs, num);
}

/*
 * build appends the packets of the next step to out and says whether a
 * reply is due (*out_expect). Returns 0, -ENOMEM, or 1 when there is no
 * step left before the end of message (never: EOB always expects).
 */
static int build(struct milter_client *cl, struct milter_req *req, bool *out_expect)
{
	const struct milter_env *env = req->env;
	uint32_t p = req->m_proto;
	char port[8];
	char client[MILTER_TEXT_MAX];
	int rc = 0;

	*out_expect = false;
	(void)cl;
	req->step = req->stage;
	switch (req->stage) {
	case MST_OPTNEG:
		*out_expect = true;
		req->stage = MST_CONNECT;
		return milter_put_optneg(&req->out, MILTER_VERSION, MILTER_OFFER_ACTIONS, MILTER_OFFER_PROTO);
	case MST_CONNECT: {
		const char *ip = env->client_ip ? env->client_ip : "";
		const char *pairs[] = { "j", env->hostname, "{daemon_name}", "oceanmx", "v", "oceanmx",
					"_", client, "{client_addr}", ip, "{client_name}", "unknown",
					"{client_port}", port };

		req->stage = MST_HELO;
		if (p & SMFIP_NOCONNECT) {
			return 0;
		}
		snprintf(port, sizeof(port), "%u", (unsigned)env->client_port);
		snprintf(client, sizeof(client), "unknown [%s]", ip);
		rc = macros(req, SMFIC_CONNECT, pairs, sizeof(pairs) / sizeof(pairs[0]) / 2);
		if (rc == 0) {
			rc = milter_put_connect(&req->out, "unknown", ip[0] == '\0' ? 'U' : strchr(ip, ':') ? '6' : '4',
						env->client_port, ip);
		}
		*out_expect = !(p & SMFIP_NR_CONN);
		return rc;
	}
	case MST_HELO: {
		const char *pairs[] = { "{tls_version}", env->tls_version, "{cipher}", env->cipher };
		struct span s = span_cstr(env->helo ? env->helo : "");

		req->stage = MST_MAIL;
		if (p & SMFIP_NOHELO) {
			return 0;
		}
		rc = env->tls_version ? macros(req, SMFIC_HELO, pairs, 2) : 0;
		if (rc == 0) {
			rc = milter_put_strs(&req->out, SMFIC_HELO, &s, 1);
		}
		*out_expect = !(p & SMFIP_NR_HELO);
		return rc;
	}
	case MST_MAIL: {
		const char *from = env->mail_from ? env->mail_from : "";
		const char *pairs[] = { "i", env->id, "{mail_addr}", from, "{mail_mailer}", "smtp" };
		char addr[MILTER_TEXT_MAX], body[32];
		struct span args[3];
		size_t n = 0;

		req->stage = MST_RCPT;
		req->pos = 0;
		if (p & SMFIP_NOMAIL) {
			return 0;
		}
		snprintf(addr, sizeof(addr), "<%s>", from);
		args[n++] = span_cstr(addr);
		if (env->body != NULL) {
			snprintf(body, sizeof(body), "BODY=%s", env->body);
			args[n++] = span_cstr(body);
		}
		if (env->smtputf8) {
			args[n++] = span_cstr("SMTPUTF8");
		}
		rc = macros(req, SMFIC_MAIL, pairs, 3);
		if (rc == 0) {
			rc = milter_put_strs(&req->out, SMFIC_MAIL, args, n);
		}
		*out_expect = !(p & SMFIP_NR_MAIL);
		return rc;
	}
	case MST_RCPT: {
		char addr[MILTER_TEXT_MAX];
		const char *pairs[2];
		struct span a;

		if ((p & SMFIP_NORCPT) || req->pos >= env->num_rcpts) {
			req->stage = MST_DATA;
			return 0;
		}
		pairs[0] = "{rcpt_addr}";
		pairs[1] = env->rcpts[req->pos];
		snprintf(addr, sizeof(addr), "<%s>", env->rcpts[req->pos]);
		a = span_cstr(addr);
		req->pos++;
		rc = macros(req, SMFIC_RCPT, pairs, 1);
		if (rc == 0) {
			rc = milter_put_strs(&req->out, SMFIC_RCPT, &a, 1);
		}
		*out_expect = !(p & SMFIP_NR_RCPT);
		return rc;
	}
	case MST_DATA: {
		const char *pairs[] = { "i", env->id };

		req->stage = MST_HEADER;
		req->pos = 0;
		if (p & SMFIP_NODATA) {
			return 0;
		}
		rc = macros(req, SMFIC_DATA, pairs, 1);
		if (rc == 0) {
			rc = milter_put_cmd(&req->out, SMFIC_DATA);
		}
		*out_expect = !(p & SMFIP_NR_DATA);
		return rc;
	}
	case MST_HEADER: {
		size_t colon = 0, end = (p & SMFIP_NOHDRS) ? req->pos
				     : field_end(req->msg, req->body_off, req->pos, &colon);
		struct span kv[2];
		struct bb v;

		if (end == req->pos) {
			req->stage = MST_EOH;
			return 0;
		}
		kv[0] = span_trim_ws(span_make(req->msg + req->pos, colon - req->pos));
		/* The value without the one space after the colon (no SMFIP_HDR_LEADSPC), lines joined by LF as
		 * Sendmail and Postfix pass them, without the final line end. */
		bb_init(&v, 0);
		for (size_t i = colon + 1; rc == 0 && i < end; i++) {
			uint8_t ch = req->msg[i];

			if (i == colon + 1 && (ch == ' ' || ch == '\t')) {
				continue;
			}
			if (ch == '\r' && i + 1 < end && req->msg[i + 1] == '\n') {
				continue;
			}
			rc = bb_append(&v, &ch, 1);
		}
		while (rc == 0 && v.len > 0 && v.p[v.len - 1] == '\n') {
			v.len--;
		}
		kv[1] = bb_span(&v);
		req->pos = end;
		if (rc == 0) {
			rc = milter_put_strs(&req->out, SMFIC_HEADER, kv, 2);
		}
		bb_fini(&v);
		*out_expect = !(p & SMFIP_NR_HDR);
		return rc;
	}
	case MST_EOH:
		req->stage = MST_BODY;
		req->pos = req->body_off;
		if (p & SMFIP_NOEOH) {
			return 0;
		}
		*out_expect = !(p & SMFIP_NR_EOH);
		return milter_put_cmd(&req->out, SMFIC_EOH);
	case MST_BODY: {
		size_t n = req->msg_len - req->pos;

		if ((p & SMFIP_NOBODY) || req->skip_body || n == 0) {
			req->stage = MST_EOB;
			return 0;
		}
		if (n > MILTER_CHUNK_MAX) {
			n = MILTER_CHUNK_MAX;
		}
		rc = milter_put_body(&req->out, span_make(req->msg + req->pos, n));
		req->pos += n;
		*out_expect = !(p & SMFIP_NR_BODY);
		return rc;
	}
	case MST_EOB: {
		const char *pairs[] = { "i", env->id };

		rc = macros(req, SMFIC_BODYEOB, pairs, 1);
		if (rc == 0) {
			rc = milter_put_cmd(&req->out, SMFIC_BODYEOB);
		}
		*out_expect = true;
		return rc;
	}
	default:
		return 1;
	}
}

/* pump writes what is queued, then builds steps until one needs a reply or the socket is full. */
static void pump(struct milter_client *cl, struct milter_req *req)
{
	const struct milter_conf *m = &cl->m[req->midx];
	char why[96];

	for (;;) {
		bool expect;
		int rc;

		while (req->out_off < req->out.len) {
			ssize_t w = send(req->fd, req->out.p + req->out_off, req->out.len - req->out_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				set_events(cl, req, EPOLLIN | EPOLLOUT);
				return;
			}
			if (w < 0 && errno == EINTR) {
				continue;
			}
			if (w <= 0) {
				snprintf(why, sizeof(why), "write: %s", w < 0 ? strerror(errno) : "closed");
				fail(cl, req, why);
				return;
			}
			req->out_off += (size_t)w;
		}
		bb_reset(&req->out, 0);
		req->out_off = 0;
		if (req->awaiting) {
			set_events(cl, req, EPOLLIN);
			return;
		}
		rc = build(cl, req, &expect);
		if (rc != 0) {
			fail(cl, req, rc == -E2BIG ? "a packet too large" : "out of memory");
			return;
		}
		if (expect) {
			req->awaiting = true;
			req->deadline_ms = now_ms() + m->timeout_ms;
		} else if (req->out.len > 0) {
			req->deadline_ms = now_ms() + m->timeout_ms; /* the write must drain in time */
		}
	}
}

/* verdict_field: a name whose client fields delivery removes once ours is on top (proto/msgdoc.h). */
static bool verdict_field(struct span name)
{
	char f[32];

	if (name.len + 1 >= sizeof(f)) {
		return false;
	}
	memcpy(f, name.p, name.len);
	f[name.len] = ':';
	return msgdoc_spam_field_name(span_make(f, name.len + 1));
}

/* on_mod keeps a modification of the end of message. */
static int on_mod(struct milter_req *req, const struct milter_reply *r)
{
	switch (r->act) {
	case MILTER_A_ADDHEADER:
	case MILTER_A_INSHEADER:
		if (!(req->m_actions & SMFIF_ADDHDRS)) {
			return -EPROTO;
		}
		return milter_field_write(&req->mods, r->name, r->value);
	case MILTER_A_CHGHEADER:
		if (!(req->m_actions & SMFIF_CHGHDRS)) {
			return -EPROTO;
		}
		if (r->index > 0 && r->index <= hdr_count(req, r->name)) {
			if (r->value.len > 0 && verdict_field(r->name)) {
				/* Ours on top; delivery removes the client's fields of this name. */
				return milter_field_write(&req->mods, r->name, r->value);
			}
			req->chg_skipped++; /* the client's field: not changed (see milter_client.h) */
			return 0;
		}
		return r->value.len == 0 ? 0 : milter_field_write(&req->mods, r->name, r->value);
	case MILTER_A_QUARANTINE:
		if (!(req->m_actions & SMFIF_QUARANTINE)) {
			return -EPROTO;
		}
		copy_text(req->m_quarantine, sizeof(req->m_quarantine), r->text, true);
		req->m_quarantined = true;
		return 0;
	default:
		return -EPROTO;
	}
}

/* on_reply acts on one reply packet; false when the request left this milter (ended or failed). */
static bool on_reply(struct milter_client *cl, struct milter_req *req, const struct milter_pkt *pkt)
{
	const struct milter_conf *m = &cl->m[req->midx];
	struct milter_reply r;
	char why[96];
	int rc;

	if (milter_reply_parse(&r, pkt) != MILTER_OK) {
		snprintf(why, sizeof(why), "bad reply '%c'", pkt->cmd >= 0x20 && pkt->cmd < 0x7f ? pkt->cmd : '?');
		fail(cl, req, why);
		return false;
	}
	if (r.act == MILTER_A_PROGRESS) {
		req->deadline_ms = now_ms() + m->timeout_ms;
		return true;
	}
	if (!req->awaiting) {
		fail(cl, req, "a reply nobody asked for");
		return false;
	}
	if (req->step == MST_OPTNEG) {
		if (r.act != MILTER_A_OPTNEG) {
			fail(cl, req, "no option negotiation");
			return false;
		}
		if ((r.actions & ~(uint32_t)MILTER_OFFER_ACTIONS) != 0) {
			logf_append(req, " refused_actions=0x%x", r.actions & ~(uint32_t)MILTER_OFFER_ACTIONS);
		}
		req->m_actions = r.actions & MILTER_OFFER_ACTIONS;
		req->m_proto = r.protocol & MILTER_OFFER_PROTO;
		req->awaiting = false;
		return true;
	}
	switch (r.act) {
	case MILTER_A_CONTINUE:
		if (req->step == MST_EOB) {
			milter_end(cl, req, MILTER_V_ACCEPT);
			return false;
		}
		req->awaiting = false;
		return true;
	case MILTER_A_SKIP:
		if (req->step == MST_EOB) {
			fail(cl, req, "skip at end of message");
			return false;
		}
		req->skip_body = true; /* only the body is skipped; other stages go on */
		req->awaiting = false;
		return true;
	case MILTER_A_ACCEPT:
		milter_end(cl, req, MILTER_V_ACCEPT);
		return false;
	case MILTER_A_REJECT:
	case MILTER_A_TEMPFAIL:
	case MILTER_A_REPLYCODE:
		copy_text(req->why, sizeof(req->why), r.text, false); /* the reply takes its first line, cleaned */
		milter_end(cl, req, r.code >= 500 ? MILTER_V_REJECT : MILTER_V_TEMPFAIL);
		return false;
	case MILTER_A_DISCARD:
		milter_end(cl, req, MILTER_V_DISCARD);
		return false;
	case MILTER_A_REFUSED:
		if (req->step != MST_EOB) {
			fail(cl, req, "modification before end of message");
			return false;
		}
		if (req->refused < sizeof(req->refused_cmds) - 1) {
			req->refused_cmds[req->refused] = (char)r.cmd; /* a letter of proto/milter.h: printable */
		}
		req->refused++; /* offered only so negotiation succeeds: never applied (proto/milter.h) */
		return true;
	case MILTER_A_ADDHEADER:
	case MILTER_A_INSHEADER:
	case MILTER_A_CHGHEADER:
	case MILTER_A_QUARANTINE:
		if (req->step != MST_EOB) {
			fail(cl, req, "modification before end of message");
			return false;
		}
		rc = on_mod(req, &r);
		if (rc != 0) {
			fail(cl, req, rc == -EPROTO ? "modification not negotiated" : "out of memory");
			return false;
		}
		return true;
	default:
		snprintf(why, sizeof(why), "reply '%c' not supported", r.cmd);
		fail(cl, req, why);
		return false;
	}
}

/* on_readable reads replies and acts on each. */
static void on_readable(struct milter_client *cl, struct milter_req *req)
{
	for (;;) {
		ssize_t n;
		struct milter_pkt pkt;
		size_t used;
		enum milter_rc rc;

		while ((rc = milter_pkt_next(&pkt, &used, bb_span(&req->in))) == MILTER_OK) {
			bool more = on_reply(cl, req, &pkt);

			if (!more) {
				return;
			}
			bb_consume(&req->in, used);
		}
		if (rc != MILTER_MORE) {
			fail(cl, req, milter_rc_name(rc));
			return;
		}
		if (bb_reserve(&req->in, 16384) != 0) {
			fail(cl, req, "out of memory");
			return;
		}
		n = recv(req->fd, req->in.p + req->in.len, req->in.alloc - req->in.len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		}
		if (n <= 0) {
			char why[96];

			snprintf(why, sizeof(why), "read: %s", n < 0 ? strerror(errno) : "closed");
			fail(cl, req, why);
			return;
		}
		req->in.len += (size_t)n;
	}
	pump(cl, req);
}

static void on_event(struct milter_client *cl, struct milter_req *req, uint32_t ev)
{
	if (req->stage == MST_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		char why[96];

		if (getsockopt(req->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
			err = errno;
		}
		if (err != 0) {
			snprintf(why, sizeof(why), "connect: %s", strerror(err));
			fail(cl, req, why);
			return;
		}
		req->stage = MST_OPTNEG;
		req->pos = 0;
		pump(cl, req);
		return;
	}
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		on_readable(cl, req);
		return;
	}
	if (ev & EPOLLOUT) {
		pump(cl, req);
	}
}

/* take_new starts every submitted request; returns the stop flag. */
static bool take_new(struct milter_client *cl)
{
	struct milter_req *list;
	bool stop;
	uint64_t v;

	if (read(cl->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing signalled */
	}
	pthread_mutex_lock(&cl->mu);
	list = cl->head;
	cl->head = NULL;
	cl->tail = &cl->head;
	stop = cl->stop;
	pthread_mutex_unlock(&cl->mu);
	while (list != NULL) {
		struct milter_req *req = list;

		list = req->next;
		req->next = cl->active;
		cl->active = req;
		req->body_off = body_start(req->msg, req->msg_len);
		conv_begin(cl, req);
	}
	return stop;
}

static void *client_main(void *arg)
{
	struct milter_client *cl = arg;

	for (;;) {
		struct epoll_event ev[64];
		uint32_t gens[64];
		uint64_t now = now_ms(), next = now + 1000;
		int n, timeout;
		bool stop = take_new(cl), again = true;

		/* Deadlines: a request that fails may start its next milter, so look again from the top. */
		while (again) {
			again = false;
			now = now_ms();
			for (struct milter_req *r = cl->active; r != NULL; r = r->next) {
				if (r->deadline_ms <= now) {
					fail(cl, r, r->stage == MST_CONNECTING ? "connect timeout" : "timeout");
					again = true;
					break;
				}
				if (r->deadline_ms < next) {
					next = r->deadline_ms;
				}
			}
		}
		if (stop && cl->active == NULL) {
			pthread_mutex_lock(&cl->mu);
			stop = cl->head == NULL; /* the last submit may have raced the flag */
			pthread_mutex_unlock(&cl->mu);
			if (stop) {
				break;
			}
			continue;
		}
		timeout = next > now ? (int)(next - now) : 0;
		n = epoll_wait(cl->ep, ev, 64, timeout);
		/* Each event's connection, noted while every request named in the batch is still ours. */
		for (int i = 0; i < n; i++) {
			gens[i] = ev[i].data.ptr != NULL ? ((struct milter_req *)ev[i].data.ptr)->conn_gen : 0;
		}
		for (int i = 0; i < n; i++) {
			struct milter_req *req = ev[i].data.ptr;

			if (req == NULL) {
				continue; /* the eventfd: take_new at the top */
			}
			/* A request finished by an earlier event of this batch is not in the active list any more;
			 * one that moved on to its next milter has a new connection. */
			bool live = false;

			for (struct milter_req *r = cl->active; r != NULL; r = r->next) {
				if (r == req) {
					live = true;
					break;
				}
			}
			if (live && req->fd >= 0 && req->conn_gen == gens[i]) {
				on_event(cl, req, ev[i].events);
			}
		}
	}
	return NULL;
}

struct milter_client *milter_client_start(const struct milter_conf *milters, unsigned num, char **out_err)
{
	struct milter_client *cl = calloc(1, sizeof(*cl));
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };

	*out_err = NULL;
	if (cl == NULL) {
		return NULL;
	}
	pthread_mutex_init(&cl->mu, NULL);
	cl->tail = &cl->head;
	cl->ep = epoll_create1(EPOLL_CLOEXEC);
	cl->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cl->m = calloc(num ? num : 1, sizeof(*cl->m));
	if (cl->ep < 0 || cl->efd < 0 || cl->m == NULL || epoll_ctl(cl->ep, EPOLL_CTL_ADD, cl->efd, &e) != 0) {
		goto fail;
	}
	memcpy(cl->m, milters, num * sizeof(*cl->m));
	cl->num = num;
	if (pthread_create(&cl->thread, NULL, client_main, cl) != 0) {
		goto fail;
	}
	cl->started = true;
	thread_name(cl->thread, "omx-milter", -1);
	return cl;
fail:
	if (asprintf(out_err, "milter client: cannot start: %s", strerror(errno ? errno : ENOMEM)) < 0) {
		*out_err = NULL;
	}
	milter_client_stop(cl);
	return NULL;
}

void milter_client_submit(struct milter_client *cl, struct milter_req *req)
{
	uint64_t one = 1;

	req->next = NULL;
	pthread_mutex_lock(&cl->mu);
	*cl->tail = req;
	cl->tail = &req->next;
	pthread_mutex_unlock(&cl->mu);
	if (write(cl->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the thread is awake anyway */
	}
}

void milter_client_stop(struct milter_client *cl)
{
	uint64_t one = 1;

	if (cl == NULL) {
		return;
	}
	if (cl->started) {
		pthread_mutex_lock(&cl->mu);
		cl->stop = true;
		pthread_mutex_unlock(&cl->mu);
		if (write(cl->efd, &one, sizeof(one)) < 0) {
			/* awake anyway */
		}
		pthread_join(cl->thread, NULL);
	}
	if (cl->ep >= 0) {
		close(cl->ep);
	}
	if (cl->efd >= 0) {
		close(cl->efd);
	}
	pthread_mutex_destroy(&cl->mu);
	free(cl->m); cl->m = NULL;
	free(cl);
}
