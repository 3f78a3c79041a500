/*
 * milter_client.c - milter conversations on a thread of their own; see
 * milter_client.h for what a conversation is and the decisions taken.
 *
 * Threads: begin, feed and end put news on the request under a mutex (a
 * chunk list whose buffers move in, and flags) and list the request as
 * ready; the eventfd is written only when the ready list was empty, so the
 * thread wakes once per batch. The thread owns every socket, every
 * request it took until that request's done, and the message bytes it
 * appended to req->msg (only it reads or grows them). One epoll watches
 * the eventfd and the sockets (level-triggered; EPOLLOUT only while bytes
 * wait to be written; EPOLLIN while a conversation idles for more bytes,
 * which has no deadline: the SMTP session bounds that wait). Every other
 * conversation has a deadline (connect, the reply it waits for, or the
 * write that does not drain), so stop never waits longer than the longest
 * timeout per milter. A request is done only once its end came and every
 * conversation ended; its events are looked up among the requests in
 * flight before they are read, so a finished one is never touched.
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
	struct milter_req *ready;        /* under mu: requests with news (begin, bytes, end), linked by qnext */
	bool stop;                       /* under mu */
	struct milter_req *active;       /* client thread only, linked by next */
};

/* A message's bytes on their way from milter_client_feed to the client thread. */
struct milter_chunk {
	struct milter_chunk *next;
	struct bb data;
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

int milter_req_init(struct milter_req *req, unsigned num)
{
	memset(req, 0, sizeof(*req));
	bb_init(&req->fields, 0);
	bb_init(&req->msg, 0);
	req->q_tail = &req->q_head;
	/* Room per request only for the milters configured: every message's
	 * verify job carries one, with --milter or not. */
	if (num > 0 && (req->conv = calloc(num, sizeof(*req->conv))) == NULL) {
		return -ENOMEM;
	}
	req->conv_alloc = num;
	for (unsigned i = 0; i < num; i++) {
		struct milter_conv *cv = &req->conv[i];

		cv->req = req;
		cv->midx = i;
		cv->fd = -1;
		bb_init(&cv->out, 0);
		bb_init(&cv->in, MILTER_PKT_MAX + 4);
		bb_init(&cv->mods, 0);
	}
	return 0;
}

unsigned milter_client_count(const struct milter_client *cl)
{
	return cl->num;
}

static void chunks_free(struct milter_chunk *c)
{
	while (c != NULL) {
		struct milter_chunk *next = c->next;

		bb_fini(&c->data);
		free(c);
		c = next;
	}
}

void milter_req_fini(struct milter_req *req)
{
	bb_fini(&req->fields);
	bb_fini(&req->msg);
	chunks_free(req->q_head);
	req->q_head = NULL;
	req->q_tail = &req->q_head;
	for (unsigned i = 0; i < req->conv_alloc; i++) {
		bb_fini(&req->conv[i].out);
		bb_fini(&req->conv[i].in);
		bb_fini(&req->conv[i].mods);
	}
	free(req->conv);
	req->conv = NULL;
	req->conv_alloc = 0;
}

#define FIELD_MORE SIZE_MAX /* field_end: the bytes so far do not tell yet */

/*
 * field_end: the end of the header field starting at msg[pos] (after its
 * line end and continuation lines), or pos when msg[pos] starts the empty
 * line or a line that is no field (no colon): the body starts there. While
 * the message is not `complete`, a field is whole only once the first byte
 * of the next line shows it is not continued (a field can span the chunks
 * the message arrives in): FIELD_MORE until then.
 */
static size_t field_end(const uint8_t *msg, size_t len, bool complete, size_t pos, size_t *out_colon)
{
	size_t i = pos;
	const uint8_t *nl, *colon;

	if (pos >= len) {
		return complete ? pos : FIELD_MORE;
	}
	if (msg[pos] == '\r' || msg[pos] == '\n') {
		return pos;
	}
	nl = memchr(msg + pos, '\n', len - pos);
	colon = memchr(msg + pos, ':', (nl ? (size_t)(nl - msg) : len) - pos);
	if (colon == NULL) {
		return nl == NULL && !complete ? FIELD_MORE : pos;
	}
	*out_colon = (size_t)(colon - msg);
	for (;;) {
		nl = memchr(msg + i, '\n', len - i);
		if (nl == NULL) {
			return complete ? len : FIELD_MORE;
		}
		i = (size_t)(nl - msg) + 1;
		if (i >= len) {
			return complete ? i : FIELD_MORE;
		}
		if (msg[i] != ' ' && msg[i] != '\t') {
			return i;
		}
	}
}

/* body_after: where the body starts when the header ended at `pos` (after the empty line); FIELD_MORE if unknown yet. */
static size_t body_after(const struct milter_req *req, size_t pos)
{
	const uint8_t *msg = req->msg.p;
	size_t len = req->msg.len;

	if (pos < len && msg[pos] == '\n') {
		return pos + 1;
	}
	if (pos + 1 < len && msg[pos] == '\r' && msg[pos + 1] == '\n') {
		return pos + 2;
	}
	if (pos + 1 == len && msg[pos] == '\r' && !req->complete) {
		return FIELD_MORE;
	}
	return pos;
}

/* hdr_count: how many fields named `name` the message's header has (the header is complete). */
static uint32_t hdr_count(const struct milter_req *req, struct span name)
{
	size_t pos = 0, colon, end;
	uint32_t n = 0;

	while ((end = field_end(req->msg.p, req->body_off, true, pos, &colon)) > pos) {
		struct span f = span_trim_ws(span_make(req->msg.p + pos, colon - pos));

		if (f.len == name.len && strncasecmp((const char *)f.p, (const char *)name.p, f.len) == 0) {
			n++;
		}
		pos = end;
	}
	return n;
}

/* ------------------------------------------------------------ the thread */

static void pump(struct milter_client *cl, struct milter_conv *cv);

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

static void conv_close(struct milter_conv *cv)
{
	if (cv->fd >= 0) {
		close(cv->fd); /* leaves the epoll set with it */
		cv->fd = -1;
	}
	cv->events = 0;
	cv->awaiting = false;
	bb_reset(&cv->out, 1);
	bb_reset(&cv->in, 1);
	cv->out_off = 0;
}

/* log_append appends to a log text of `cap` bytes; what does not fit is dropped. */
static void log_append(char *log, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void log_append(char *log, size_t cap, const char *fmt, ...)
{
	size_t n = strlen(log);
	va_list ap;

	if (n + 1 >= cap) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(log + n, cap - n, fmt, ap);
	va_end(ap);
}

#define REQ_LOG(req, ...) log_append((req)->log, sizeof((req)->log), __VA_ARGS__)
#define CONV_LOG(cv, ...) log_append((cv)->log, sizeof((cv)->log), __VA_ARGS__)

/*
 * combine sets the request's answer from its conversations' in --milter
 * order: the first reject, tempfail or discard decides; otherwise accept
 * with every accepting milter's fields in order and the first quarantine.
 */
static void combine(struct milter_client *cl, struct milter_req *req)
{
	req->verdict = cl->num > 0 ? MILTER_V_ACCEPT : MILTER_V_NONE;
	for (unsigned i = 0; i < req->num_conv; i++) {
		struct milter_conv *cv = &req->conv[i];

		REQ_LOG(req, "%s", cv->log);
		for (unsigned k = 0; k < cv->refused && req->refused < sizeof(req->refused_cmds) - 1; k++) {
			if (k < sizeof(cv->refused_cmds) - 1) {
				req->refused_cmds[req->refused] = cv->refused_cmds[k];
			}
			req->refused++;
		}
		req->chg_skipped += cv->chg_skipped;
		if (cv->v == MILTER_V_ACCEPT) {
			if (bb_append_span(&req->fields, bb_span(&cv->mods)) != 0) {
				REQ_LOG(req, " error=\"out of memory: fields of %s dropped\"", cl->m[i].name);
			}
			if (cv->m_quarantined && !req->quarantined) {
				memcpy(req->quarantine, cv->m_quarantine, sizeof(req->quarantine));
				req->quarantined = true;
				REQ_LOG(req, " quarantine=\"%.80s\"", req->quarantine);
			}
			continue;
		}
		if (cv->v == MILTER_V_NONE) {
			continue; /* cut short after an earlier decision: cannot happen before one */
		}
		req->verdict = cv->v;
		memcpy(req->why, cv->why, sizeof(req->why));
		if (!cv->failed) {
			REQ_LOG(req, " by=\"%s\" stage=%s", cl->m[i].name, stage_name(cv->step));
		}
		break;
	}
}

/* finish hands the request back: the last touch. */
static void finish(struct milter_client *cl, struct milter_req *req)
{
	char head[64];

	active_remove(cl, req);
	req->active = false;
	combine(cl, req);
	for (unsigned i = 0; i < req->num_conv; i++) {
		bb_reset(&req->conv[i].mods, 1);
	}
	bb_reset(&req->msg, 1);
	snprintf(head, sizeof(head), "milter=%s", milter_verdict_name(req->verdict));
	if (strlen(head) + strlen(req->log) + 1 < sizeof(req->log)) {
		memmove(req->log + strlen(head), req->log, strlen(req->log) + 1);
		memcpy(req->log, head, strlen(head));
	}
	if (req->chg_skipped > 0) {
		REQ_LOG(req, " chg_skipped=%u", req->chg_skipped);
	}
	if (req->refused > 0) {
		REQ_LOG(req, " refused=%u refused_cmds=%s", req->refused, req->refused_cmds);
	}
	req->done(req->arg, req);
}

/* req_check finishes the request once the message is complete (or aborted) and every conversation ended. */
static void req_check(struct milter_client *cl, struct milter_req *req)
{
	if (!req->complete) {
		return; /* the final answer is given at the end of data, as before streaming */
	}
	for (unsigned i = 0; i < req->num_conv; i++) {
		if (!req->conv[i].ended) {
			return;
		}
	}
	finish(cl, req);
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
 * conv_bye closes a conversation, first telling the milter (best effort,
 * never waiting: a milter that reads it frees its state now): SMFIC_ABORT
 * when the message was cut short, then SMFIC_QUIT. Nothing is said in the
 * middle of a packet not fully written.
 */
static void conv_bye(struct milter_conv *cv, bool abort)
{
	if (cv->fd >= 0 && cv->stage != MST_CONNECTING && cv->out_off == cv->out.len) {
		bb_reset(&cv->out, 0);
		cv->out_off = 0;
		if ((!abort || milter_put_cmd(&cv->out, SMFIC_ABORT) == 0) && milter_put_cmd(&cv->out, SMFIC_QUIT) == 0) {
			ssize_t w = send(cv->fd, cv->out.p, cv->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);

			(void)w;
		}
	}
	conv_close(cv);
}

/*
 * conv_end ends the conversation with `v`. Anything but an accept decides
 * for every milter after it in --milter order, so their conversations are
 * cut short (aborted) now; milters before it still run, since they come
 * first in the combination.
 */
static void conv_end(struct milter_client *cl, struct milter_conv *cv, enum milter_verdict v)
{
	struct milter_req *req = cv->req;

	(void)cl;
	conv_bye(cv, cv->step != MST_EOB || cv->failed); /* ABORT unless the milter answered the end of message */
	cv->ended = true;
	cv->v = v;
	if (v == MILTER_V_ACCEPT) {
		return;
	}
	for (unsigned i = cv->midx + 1; i < req->num_conv; i++) {
		struct milter_conv *later = &req->conv[i];

		if (!later->ended) {
			conv_bye(later, true);
			later->ended = true;
			later->v = MILTER_V_NONE;
		}
	}
}

/* fail applies the milter's default action after an error (`why`). */
static void fail(struct milter_client *cl, struct milter_conv *cv, const char *why)
{
	const struct milter_conf *m = &cl->m[cv->midx];

	CONV_LOG(cv, " error=\"%s: %s at %s\" default=%s", m->name, why, stage_name(cv->step),
		    milter_default_name(m->def));
	bb_reset(&cv->mods, 0);
	cv->m_quarantined = false;
	cv->why[0] = '\0';
	cv->failed = true;
	conv_end(cl, cv, m->def == MILTER_DEF_ACCEPT   ? MILTER_V_ACCEPT
			 : m->def == MILTER_DEF_REJECT ? MILTER_V_REJECT
						       : MILTER_V_TEMPFAIL);
}

static void set_events(struct milter_client *cl, struct milter_conv *cv, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = cv };

	if (cv->events != ev && epoll_ctl(cl->ep, EPOLL_CTL_MOD, cv->fd, &e) == 0) {
		cv->events = ev;
	}
}

/* conv_begin connects to the conversation's milter. */
static void conv_begin(struct milter_client *cl, struct milter_conv *cv)
{
	const struct milter_conf *m = &cl->m[cv->midx];
	struct epoll_event e = { .events = EPOLLOUT, .data.ptr = cv };
	char why[96];

	cv->stage = cv->step = MST_CONNECTING;
	cv->conn_gen++;
	cv->fd = socket(m->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (cv->fd < 0) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		fail(cl, cv, why);
		return;
	}
	if (connect(cv->fd, (const struct sockaddr *)&m->sa, m->sa_len) != 0 && errno != EINPROGRESS) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		fail(cl, cv, why);
		return;
	}
	if (epoll_ctl(cl->ep, EPOLL_CTL_ADD, cv->fd, &e) != 0) {
		snprintf(why, sizeof(why), "epoll: %s", strerror(errno));
		fail(cl, cv, why);
		return;
	}
	cv->events = EPOLLOUT;
	cv->deadline_ms = now_ms() + m->connect_timeout_ms;
}

/* macros appends SMFIC_MACRO for `cmd`. */
static int macros(struct milter_conv *cv, uint8_t cmd, const char *const *pairs, size_t num)
{
	return milter_put_macros(&cv->out, cmd, pairs, num);
}

#define BUILD_WAIT 2 /* build: the next step needs message bytes (or the end) not here yet */

/*
 * build appends the packets of the next step to out and says whether a
 * reply is due (*out_expect). Returns 0, -ENOMEM, -E2BIG, BUILD_WAIT, or 1
 * when there is no step left (never: EOB always expects).
 */
static int build(struct milter_conv *cv, bool *out_expect)
{
	struct milter_req *req = cv->req;
	const struct milter_env *env = req->env;
	uint32_t p = cv->m_proto;
	char port[8];
	char client[MILTER_TEXT_MAX];
	int rc = 0;

	*out_expect = false;
	cv->step = cv->stage;
	switch (cv->stage) {
	case MST_OPTNEG:
		*out_expect = true;
		cv->stage = MST_CONNECT;
		return milter_put_optneg(&cv->out, MILTER_VERSION, MILTER_OFFER_ACTIONS, MILTER_OFFER_PROTO);
	case MST_CONNECT: {
		const char *ip = env->client_ip ? env->client_ip : "";
		const char *pairs[] = { "j", env->hostname, "{daemon_name}", "oceanmx", "v", "oceanmx",
					"_", client, "{client_addr}", ip, "{client_name}", "unknown",
					"{client_port}", port };

		cv->stage = MST_HELO;
		if (p & SMFIP_NOCONNECT) {
			return 0;
		}
		snprintf(port, sizeof(port), "%u", (unsigned)env->client_port);
		snprintf(client, sizeof(client), "unknown [%s]", ip);
		rc = macros(cv, SMFIC_CONNECT, pairs, sizeof(pairs) / sizeof(pairs[0]) / 2);
		if (rc == 0) {
			rc = milter_put_connect(&cv->out, "unknown", ip[0] == '\0' ? 'U' : strchr(ip, ':') ? '6' : '4',
						env->client_port, ip);
		}
		*out_expect = !(p & SMFIP_NR_CONN);
		return rc;
	}
	case MST_HELO: {
		const char *pairs[] = { "{tls_version}", env->tls_version, "{cipher}", env->cipher };
		struct span s = span_cstr(env->helo ? env->helo : "");

		cv->stage = MST_MAIL;
		if (p & SMFIP_NOHELO) {
			return 0;
		}
		rc = env->tls_version ? macros(cv, SMFIC_HELO, pairs, 2) : 0;
		if (rc == 0) {
			rc = milter_put_strs(&cv->out, SMFIC_HELO, &s, 1);
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

		cv->stage = MST_RCPT;
		cv->pos = 0;
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
		rc = macros(cv, SMFIC_MAIL, pairs, 3);
		if (rc == 0) {
			rc = milter_put_strs(&cv->out, SMFIC_MAIL, args, n);
		}
		*out_expect = !(p & SMFIP_NR_MAIL);
		return rc;
	}
	case MST_RCPT: {
		char addr[MILTER_TEXT_MAX];
		const char *pairs[2];
		struct span a;

		if ((p & SMFIP_NORCPT) || cv->pos >= env->num_rcpts) {
			cv->stage = MST_DATA;
			return 0;
		}
		pairs[0] = "{rcpt_addr}";
		pairs[1] = env->rcpts[cv->pos];
		snprintf(addr, sizeof(addr), "<%s>", env->rcpts[cv->pos]);
		a = span_cstr(addr);
		cv->pos++;
		rc = macros(cv, SMFIC_RCPT, pairs, 1);
		if (rc == 0) {
			rc = milter_put_strs(&cv->out, SMFIC_RCPT, &a, 1);
		}
		*out_expect = !(p & SMFIP_NR_RCPT);
		return rc;
	}
	case MST_DATA: {
		const char *pairs[] = { "i", env->id };

		cv->stage = MST_HEADER;
		cv->pos = 0;
		if (p & SMFIP_NODATA) {
			return 0;
		}
		rc = macros(cv, SMFIC_DATA, pairs, 1);
		if (rc == 0) {
			rc = milter_put_cmd(&cv->out, SMFIC_DATA);
		}
		*out_expect = !(p & SMFIP_NR_DATA);
		return rc;
	}
	case MST_HEADER: {
		const uint8_t *msg = req->msg.p;
		size_t start = cv->pos, colon = 0, end = field_end(msg, req->msg.len, req->complete, start, &colon);
		struct span kv[2];
		struct bb v;

		if (end == FIELD_MORE) {
			return BUILD_WAIT;
		}
		if (end == start) {
			size_t body = body_after(req, start);

			if (body == FIELD_MORE) {
				return BUILD_WAIT;
			}
			req->body_off = body; /* the same for every conversation */
			cv->stage = MST_EOH;
			return 0;
		}
		cv->pos = end;
		if (p & SMFIP_NOHDRS) {
			return 0; /* the header is still walked: the body starts after it */
		}
		kv[0] = span_trim_ws(span_make(msg + start, colon - start));
		/* The value without the one space after the colon (no SMFIP_HDR_LEADSPC), lines joined by LF as
		 * Sendmail and Postfix pass them, without the final line end. */
		bb_init(&v, 0);
		for (size_t i = colon + 1; rc == 0 && i < end; i++) {
			uint8_t ch = msg[i];

			if (i == colon + 1 && (ch == ' ' || ch == '\t')) {
				continue;
			}
			if (ch == '\r' && i + 1 < end && msg[i + 1] == '\n') {
				continue;
			}
			rc = bb_append(&v, &ch, 1);
		}
		while (rc == 0 && v.len > 0 && v.p[v.len - 1] == '\n') {
			v.len--;
		}
		kv[1] = bb_span(&v);
		if (rc == 0) {
			rc = milter_put_strs(&cv->out, SMFIC_HEADER, kv, 2);
		}
		bb_fini(&v);
		*out_expect = !(p & SMFIP_NR_HDR);
		return rc;
	}
	case MST_EOH:
		cv->stage = MST_BODY;
		cv->pos = req->body_off;
		if (p & SMFIP_NOEOH) {
			return 0;
		}
		*out_expect = !(p & SMFIP_NR_EOH);
		return milter_put_cmd(&cv->out, SMFIC_EOH);
	case MST_BODY: {
		size_t n = req->msg.len - cv->pos;

		if ((p & SMFIP_NOBODY) || cv->skip_body || (n == 0 && req->complete)) {
			cv->stage = MST_EOB;
			return 0;
		}
		if (n == 0) {
			return BUILD_WAIT;
		}
		if (n > MILTER_CHUNK_MAX) {
			n = MILTER_CHUNK_MAX;
		}
		rc = milter_put_body(&cv->out, span_make(req->msg.p + cv->pos, n));
		cv->pos += n;
		*out_expect = !(p & SMFIP_NR_BODY);
		return rc;
	}
	case MST_EOB: {
		const char *pairs[] = { "i", env->id };

		if (!req->complete) {
			return BUILD_WAIT; /* the end of message is the end of data */
		}
		rc = macros(cv, SMFIC_BODYEOB, pairs, 1);
		if (rc == 0) {
			rc = milter_put_cmd(&cv->out, SMFIC_BODYEOB);
		}
		*out_expect = true;
		return rc;
	}
	default:
		return 1;
	}
}

/* pump writes what is queued, then builds steps until one needs a reply, the message bytes so far are sent, or the socket is full. */
static void pump(struct milter_client *cl, struct milter_conv *cv)
{
	const struct milter_conf *m = &cl->m[cv->midx];
	char why[96];

	if (cv->ended || cv->fd < 0 || cv->stage == MST_CONNECTING) {
		return;
	}
	for (;;) {
		bool expect;
		int rc;

		while (cv->out_off < cv->out.len) {
			ssize_t w = send(cv->fd, cv->out.p + cv->out_off, cv->out.len - cv->out_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				set_events(cl, cv, EPOLLIN | EPOLLOUT);
				return;
			}
			if (w < 0 && errno == EINTR) {
				continue;
			}
			if (w <= 0) {
				snprintf(why, sizeof(why), "write: %s", w < 0 ? strerror(errno) : "closed");
				fail(cl, cv, why);
				return;
			}
			cv->out_off += (size_t)w;
		}
		bb_reset(&cv->out, 0);
		cv->out_off = 0;
		if (cv->awaiting) {
			set_events(cl, cv, EPOLLIN);
			return;
		}
		rc = build(cv, &expect);
		if (rc == BUILD_WAIT) {
			/* Idle until the client's next bytes: no deadline, the SMTP session's own bounds the wait.
			 * EPOLLIN still reports a milter that closes or says something unasked. */
			cv->deadline_ms = UINT64_MAX;
			set_events(cl, cv, EPOLLIN);
			return;
		}
		if (rc != 0) {
			fail(cl, cv, rc == -E2BIG ? "a packet too large" : "out of memory");
			return;
		}
		if (expect) {
			cv->awaiting = true;
			cv->deadline_ms = now_ms() + m->timeout_ms;
		} else if (cv->out.len > 0) {
			cv->deadline_ms = now_ms() + m->timeout_ms; /* the write must drain in time */
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
static int on_mod(struct milter_conv *cv, const struct milter_reply *r)
{
	switch (r->act) {
	case MILTER_A_ADDHEADER:
	case MILTER_A_INSHEADER:
		if (!(cv->m_actions & SMFIF_ADDHDRS)) {
			return -EPROTO;
		}
		return milter_field_write(&cv->mods, r->name, r->value);
	case MILTER_A_CHGHEADER:
		if (!(cv->m_actions & SMFIF_CHGHDRS)) {
			return -EPROTO;
		}
		if (r->index > 0 && r->index <= hdr_count(cv->req, r->name)) {
			if (r->value.len > 0 && verdict_field(r->name)) {
				/* Ours on top; delivery removes the client's fields of this name. */
				return milter_field_write(&cv->mods, r->name, r->value);
			}
			cv->chg_skipped++; /* the client's field: not changed (see milter_client.h) */
			return 0;
		}
		return r->value.len == 0 ? 0 : milter_field_write(&cv->mods, r->name, r->value);
	case MILTER_A_QUARANTINE:
		if (!(cv->m_actions & SMFIF_QUARANTINE)) {
			return -EPROTO;
		}
		copy_text(cv->m_quarantine, sizeof(cv->m_quarantine), r->text, true);
		cv->m_quarantined = true;
		return 0;
	default:
		return -EPROTO;
	}
}

/* on_reply acts on one reply packet; false when the conversation ended (answered or failed). */
static bool on_reply(struct milter_client *cl, struct milter_conv *cv, const struct milter_pkt *pkt)
{
	const struct milter_conf *m = &cl->m[cv->midx];
	struct milter_reply r;
	char why[96];
	int rc;

	if (milter_reply_parse(&r, pkt) != MILTER_OK) {
		snprintf(why, sizeof(why), "bad reply '%c'", pkt->cmd >= 0x20 && pkt->cmd < 0x7f ? pkt->cmd : '?');
		fail(cl, cv, why);
		return false;
	}
	if (r.act == MILTER_A_PROGRESS) {
		cv->deadline_ms = now_ms() + m->timeout_ms;
		return true;
	}
	if (!cv->awaiting) {
		fail(cl, cv, "a reply nobody asked for");
		return false;
	}
	if (cv->step == MST_OPTNEG) {
		if (r.act != MILTER_A_OPTNEG) {
			fail(cl, cv, "no option negotiation");
			return false;
		}
		if ((r.actions & ~(uint32_t)MILTER_OFFER_ACTIONS) != 0) {
			CONV_LOG(cv, " refused_actions=0x%x", r.actions & ~(uint32_t)MILTER_OFFER_ACTIONS);
		}
		cv->m_actions = r.actions & MILTER_OFFER_ACTIONS;
		cv->m_proto = r.protocol & MILTER_OFFER_PROTO;
		cv->awaiting = false;
		return true;
	}
	switch (r.act) {
	case MILTER_A_CONTINUE:
		if (cv->step == MST_EOB) {
			conv_end(cl, cv, MILTER_V_ACCEPT);
			return false;
		}
		cv->awaiting = false;
		return true;
	case MILTER_A_SKIP:
		if (cv->step == MST_EOB) {
			fail(cl, cv, "skip at end of message");
			return false;
		}
		cv->skip_body = true; /* only the body is skipped; other stages go on */
		cv->awaiting = false;
		return true;
	case MILTER_A_ACCEPT:
		conv_end(cl, cv, MILTER_V_ACCEPT);
		return false;
	case MILTER_A_REJECT:
	case MILTER_A_TEMPFAIL:
	case MILTER_A_REPLYCODE:
		copy_text(cv->why, sizeof(cv->why), r.text, false); /* the reply takes its first line, cleaned */
		conv_end(cl, cv, r.code >= 500 ? MILTER_V_REJECT : MILTER_V_TEMPFAIL);
		return false;
	case MILTER_A_DISCARD:
		conv_end(cl, cv, MILTER_V_DISCARD);
		return false;
	case MILTER_A_REFUSED:
		if (cv->step != MST_EOB) {
			fail(cl, cv, "modification before end of message");
			return false;
		}
		if (cv->refused < sizeof(cv->refused_cmds) - 1) {
			cv->refused_cmds[cv->refused] = (char)r.cmd; /* a letter of proto/milter.h: printable */
		}
		cv->refused++; /* offered only so negotiation succeeds: never applied (proto/milter.h) */
		return true;
	case MILTER_A_ADDHEADER:
	case MILTER_A_INSHEADER:
	case MILTER_A_CHGHEADER:
	case MILTER_A_QUARANTINE:
		if (cv->step != MST_EOB) {
			fail(cl, cv, "modification before end of message");
			return false;
		}
		rc = on_mod(cv, &r);
		if (rc != 0) {
			fail(cl, cv, rc == -EPROTO ? "modification not negotiated" : "out of memory");
			return false;
		}
		return true;
	default:
		snprintf(why, sizeof(why), "reply '%c' not supported", r.cmd);
		fail(cl, cv, why);
		return false;
	}
}

/* on_readable reads replies and acts on each. */
static void on_readable(struct milter_client *cl, struct milter_conv *cv)
{
	for (;;) {
		ssize_t n;
		struct milter_pkt pkt;
		size_t used;
		enum milter_rc rc;

		while ((rc = milter_pkt_next(&pkt, &used, bb_span(&cv->in))) == MILTER_OK) {
			bool more = on_reply(cl, cv, &pkt);

			if (!more) {
				return;
			}
			bb_consume(&cv->in, used);
		}
		if (rc != MILTER_MORE) {
			fail(cl, cv, milter_rc_name(rc));
			return;
		}
		if (bb_reserve(&cv->in, 16384) != 0) {
			fail(cl, cv, "out of memory");
			return;
		}
		n = recv(cv->fd, cv->in.p + cv->in.len, cv->in.alloc - cv->in.len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		}
		if (n <= 0) {
			char why[96];

			snprintf(why, sizeof(why), "read: %s", n < 0 ? strerror(errno) : "closed");
			fail(cl, cv, why);
			return;
		}
		cv->in.len += (size_t)n;
	}
	pump(cl, cv);
}

static void on_event(struct milter_client *cl, struct milter_conv *cv, uint32_t ev)
{
	if (cv->stage == MST_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		char why[96];

		if (getsockopt(cv->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
			err = errno;
		}
		if (err != 0) {
			snprintf(why, sizeof(why), "connect: %s", strerror(err));
			fail(cl, cv, why);
			return;
		}
		cv->stage = MST_OPTNEG;
		cv->pos = 0;
		pump(cl, cv);
		return;
	}
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		on_readable(cl, cv);
		return;
	}
	if (ev & EPOLLOUT) {
		pump(cl, cv);
	}
}

/*
 * req_news applies what the request's submitter handed over: its start
 * (a conversation per milter, all at once), message bytes, the end, or an
 * abort; then every conversation goes on as far as the bytes allow.
 */
static void req_news(struct milter_client *cl, struct milter_req *req, struct milter_chunk *chunks, bool end,
		     bool abort, bool lost)
{
	if (!req->active) {
		req->active = true;
		req->next = cl->active;
		cl->active = req;
		req->num_conv = cl->num <= req->conv_alloc ? cl->num : req->conv_alloc; /* equal: vpool sized it */
		for (unsigned i = 0; i < req->num_conv; i++) {
			if (!req->conv[i].ended) { /* an earlier one failing to connect with default reject cuts it */
				conv_begin(cl, &req->conv[i]);
			}
		}
	}
	for (struct milter_chunk *c = chunks; c != NULL; c = c->next) {
		if (req->msg.p == NULL) {
			req->msg = c->data; /* the first buffer moves */
			bb_init(&c->data, 0);
		} else if (!req->lost && bb_append_span(&req->msg, bb_span(&c->data)) != 0) {
			lost = true;
		}
	}
	chunks_free(chunks);
	if (lost && !req->lost) {
		req->lost = true;
		for (unsigned i = 0; i < req->num_conv; i++) {
			if (!req->conv[i].ended) {
				fail(cl, &req->conv[i], "message bytes lost (out of memory)");
			}
		}
	}
	if (abort) {
		for (unsigned i = 0; i < req->num_conv; i++) {
			if (!req->conv[i].ended) {
				conv_bye(&req->conv[i], true);
				req->conv[i].ended = true;
				req->conv[i].v = MILTER_V_NONE;
			}
		}
	}
	if (end || abort) {
		req->complete = true;
	}
	for (unsigned i = 0; i < req->num_conv; i++) {
		pump(cl, &req->conv[i]);
	}
	req_check(cl, req);
}

/* take_news applies every request's news; returns the stop flag. */
static bool take_news(struct milter_client *cl)
{
	struct milter_req *list;
	bool stop;
	uint64_t v;

	if (read(cl->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing signalled */
	}
	pthread_mutex_lock(&cl->mu);
	list = cl->ready;
	cl->ready = NULL;
	stop = cl->stop;
	pthread_mutex_unlock(&cl->mu);
	/* The list is newest first; the order between requests does not matter. */
	while (list != NULL) {
		struct milter_req *req = list;
		struct milter_chunk *chunks;
		bool end, abort, lost;

		pthread_mutex_lock(&cl->mu);
		list = req->qnext;
		req->qnext = NULL;
		req->q_listed = false;
		chunks = req->q_head;
		req->q_head = NULL;
		req->q_tail = &req->q_head;
		end = req->q_end;
		abort = req->q_abort;
		lost = req->q_lost;
		req->q_end = req->q_abort = req->q_lost = false;
		pthread_mutex_unlock(&cl->mu);
		req_news(cl, req, chunks, end, abort, lost);
	}
	return stop;
}

/* conv_find: the conversation `ptr` names if it belongs to a request in flight (compared, never read). */
static struct milter_conv *conv_find(struct milter_client *cl, const void *ptr)
{
	for (struct milter_req *r = cl->active; r != NULL; r = r->next) {
		for (unsigned i = 0; i < r->num_conv; i++) {
			if ((const void *)&r->conv[i] == ptr) {
				return &r->conv[i];
			}
		}
	}
	return NULL;
}

static void *client_main(void *arg)
{
	struct milter_client *cl = arg;

	for (;;) {
		struct epoll_event ev[64];
		uint32_t gens[64];
		uint64_t now = now_ms(), next = now + 1000;
		int n, timeout;
		bool stop = take_news(cl);

		/* Deadlines: a failure may finish its request (gone once done), so look again from the top. */
	deadlines:
		now = now_ms();
		next = now + 1000;
		for (struct milter_req *r = cl->active; r != NULL; r = r->next) {
			for (unsigned i = 0; i < r->num_conv; i++) {
				struct milter_conv *cv = &r->conv[i];

				if (cv->ended) {
					continue;
				}
				if (cv->deadline_ms <= now) {
					fail(cl, cv, cv->stage == MST_CONNECTING ? "connect timeout" : "timeout");
					req_check(cl, r);
					goto deadlines;
				}
				if (cv->deadline_ms < next) {
					next = cv->deadline_ms;
				}
			}
		}
		if (stop && cl->active == NULL) {
			pthread_mutex_lock(&cl->mu);
			stop = cl->ready == NULL; /* the last news may have raced the flag */
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
			gens[i] = ev[i].data.ptr != NULL ? ((struct milter_conv *)ev[i].data.ptr)->conn_gen : 0;
		}
		for (int i = 0; i < n; i++) {
			struct milter_conv *cv;

			if (ev[i].data.ptr == NULL) {
				continue; /* the eventfd: take_news at the top */
			}
			/* A request finished by an earlier event of this batch is not in the active list any more. */
			cv = conv_find(cl, ev[i].data.ptr);
			if (cv != NULL && cv->fd >= 0 && !cv->ended && cv->conn_gen == gens[i]) {
				struct milter_req *req = cv->req;

				on_event(cl, cv, ev[i].events);
				req_check(cl, req);
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
	cl->ep = epoll_create1(EPOLL_CLOEXEC);
	cl->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cl->m = calloc(num ? num : 1, sizeof(*cl->m));
	if (num > MILTER_MAX || cl->ep < 0 || cl->efd < 0 || cl->m == NULL ||
	    epoll_ctl(cl->ep, EPOLL_CTL_ADD, cl->efd, &e) != 0) {
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

/*
 * post hands news to the client thread under its lock; the eventfd is
 * written only when the ready list was empty (the thread takes the whole
 * list at once), so a busy client is woken once per batch, not per chunk.
 */
static void post(struct milter_client *cl, struct milter_req *req, struct milter_chunk *c, bool end, bool abort,
		 bool lost)
{
	uint64_t one = 1;
	bool wake;

	pthread_mutex_lock(&cl->mu);
	if (c != NULL) {
		*req->q_tail = c;
		req->q_tail = &c->next;
	}
	req->q_end |= end;
	req->q_abort |= abort;
	req->q_lost |= lost;
	wake = cl->ready == NULL;
	if (!req->q_listed) {
		req->q_listed = true;
		req->qnext = cl->ready;
		cl->ready = req;
	}
	pthread_mutex_unlock(&cl->mu);
	if (wake && write(cl->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the thread is awake anyway */
	}
}

void milter_client_begin(struct milter_client *cl, struct milter_req *req)
{
	post(cl, req, NULL, false, false, false);
}

void milter_client_feed(struct milter_client *cl, struct milter_req *req, struct bb *data)
{
	struct milter_chunk *c;

	if (data->len == 0) {
		return;
	}
	c = malloc(sizeof(*c));
	if (c == NULL) {
		post(cl, req, NULL, false, false, true); /* the milters get their default action */
		return;
	}
	c->next = NULL;
	c->data = *data; /* the buffer moves */
	bb_init(data, 0);
	post(cl, req, c, false, false, false);
}

void milter_client_end(struct milter_client *cl, struct milter_req *req, bool abort)
{
	post(cl, req, NULL, !abort, abort, false);
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
