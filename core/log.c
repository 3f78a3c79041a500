/*
 * log.c - see log.h.
 *
 * Once log_start_async() ran, a thread never writes to stderr itself: it
 * copies the formatted line into a ring of its own (single producer), and
 * the logger thread drains every ring to stderr. A full ring drops the line
 * and counts it, so a slow stderr reader can never stall a shard.
 */
#include "log.h"
#include "thread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_current = LOG_NOTICE;
enum log_format log_format_current = LOG_FMT_TEXT;

static const char *const level_names[LOG_LEVEL_COUNT] = {
	"err", "warn", "notice", "info", "debug",
};

int log_parse_level(const char *name)
{
	for (int i = 0; i < LOG_LEVEL_COUNT; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			return i;
		}
	}
	return -1;
}

int log_parse_format(const char *name)
{
	if (strcmp(name, "text") == 0) {
		return LOG_FMT_TEXT;
	}
	if (strcmp(name, "json") == 0) {
		return LOG_FMT_JSON;
	}
	return -1;
}

/* ------------------------------------------------------------ JSON lines */

/* A bounded writer that always leaves room to close the object: `lim` keeps
 * 4 octets back for a closing quote, '}', '\n' and the NUL. */
struct jw {
	char *p;
	size_t len, lim;
	bool full;
};

static bool jw_raw(struct jw *w, const char *s, size_t n)
{
	if (w->full || w->len + n > w->lim) {
		w->full = true;
		return false;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
	return true;
}

/* jw_str writes s[0..n) as a JSON string; cut short (still closed) when full. */
static void jw_str(struct jw *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	if (!jw_raw(w, "\"", 1)) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[6];
		size_t k;

		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			k = 2;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(e, "\\u00", 4);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			k = 6;
		} else {
			e[0] = (char)c; /* UTF-8 passes; log text is ASCII (log_escape) */
			k = 1;
		}
		if (!jw_raw(w, e, k)) {
			break;
		}
	}
	w->p[w->len++] = '"'; /* reserved */
}

static void jw_field(struct jw *w, const char *key, size_t key_len, const char *v, size_t v_len, bool raw)
{
	if (!jw_raw(w, ",", 1)) {
		return;
	}
	jw_str(w, key, key_len);
	if (!jw_raw(w, ":", 1)) {
		return;
	}
	if (raw) {
		jw_raw(w, v, v_len);
	} else {
		jw_str(w, v, v_len);
	}
}

/* is_json_int: -?(0|[1-9][0-9]*), at most 18 digits (exact in every JSON reader's int64). */
static bool is_json_int(const char *v, size_t n)
{
	size_t i = 0;

	if (n > 0 && v[0] == '-') {
		i = 1;
	}
	if (i == n || n - i > 18 || (v[i] == '0' && n - i > 1)) {
		return false;
	}
	for (; i < n; i++) {
		if (v[i] < '0' || v[i] > '9') {
			return false;
		}
	}
	return true;
}

size_t log_json_format(char *out, size_t out_len, const char *ts, const char *level, const char *who,
		       const char *msg)
{
	struct jw w = { out, 0, out_len >= 8 ? out_len - 4 : 0, out_len < 8 };
	const char *p = msg, *end = msg + strlen(msg);
	const char *ev;

	if (out_len < 8) {
		if (out_len > 0) {
			out[0] = '\0';
		}
		return 0;
	}
	jw_raw(&w, "{", 1);
	jw_str(&w, "ts", 2);
	jw_raw(&w, ":", 1);
	jw_str(&w, ts, strlen(ts));
	jw_field(&w, "level", 5, level, strlen(level), false);
	jw_field(&w, "who", 3, who, strlen(who), false);
	while (p < end && *p == ' ') {
		p++;
	}
	ev = p;
	while (p < end && *p != ' ') {
		p++;
	}
	jw_field(&w, "event", 5, ev, (size_t)(p - ev), false);
	while (p < end && !w.full) {
		const char *k, *v;
		size_t klen, vlen;
		bool quoted = false;

		while (p < end && *p == ' ') {
			p++;
		}
		if (p == end) {
			break;
		}
		k = p;
		while (p < end && *p != ' ' && *p != '=' && *p != '"') {
			p++;
		}
		klen = (size_t)(p - k);
		if (p == end || *p != '=' || klen == 0) {
			/* Not key=value: the rest is free text. */
			jw_field(&w, "msg", 3, k, (size_t)(end - k), false);
			break;
		}
		p++;
		if (p < end && *p == '"') {
			const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));

			quoted = true;
			v = p + 1;
			vlen = q != NULL ? (size_t)(q - v) : (size_t)(end - v);
			p = q != NULL ? q + 1 : end;
		} else {
			v = p;
			while (p < end && *p != ' ') {
				p++;
			}
			vlen = (size_t)(p - v);
		}
		jw_field(&w, k, klen, v, vlen, !quoted && is_json_int(v, vlen));
	}
	w.p[w.len++] = '}';
	w.p[w.len++] = '\n';
	w.p[w.len] = '\0';
	return w.len;
}

#define LOG_RING_SIZE (256u * 1024) /* per logging thread */
#define LOG_DRAIN_NS  (20 * 1000 * 1000)

struct log_ring {
	_Atomic size_t head;        /* next byte the logger writes (consumer) */
	_Atomic size_t tail;        /* end of the bytes queued (producer) */
	_Atomic uint64_t dropped;   /* lines lost to a full ring */
	struct log_ring *next;      /* registry, under rings_mu */
	char buf[LOG_RING_SIZE];
};

static pthread_mutex_t rings_mu = PTHREAD_MUTEX_INITIALIZER;
static struct log_ring *rings;
static _Thread_local struct log_ring *my_ring;
static atomic_bool async_on, logger_stop;
static pthread_t logger;

static void write_all_fd(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(STDERR_FILENO, p, n);

		if (k <= 0) {
			return; /* nowhere to report a failing stderr */
		}
		p += k;
		n -= (size_t)k;
	}
}

/* ring_put queues one line; false if it does not fit. Producer side only. */
static bool ring_put(struct log_ring *r, const char *p, size_t n)
{
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	size_t off = t % LOG_RING_SIZE, first;

	if (n > LOG_RING_SIZE - (t - h)) {
		return false;
	}
	first = n < LOG_RING_SIZE - off ? n : LOG_RING_SIZE - off;
	memcpy(r->buf + off, p, first);
	memcpy(r->buf, p + first, n - first);
	atomic_store_explicit(&r->tail, t + n, memory_order_release);
	return true;
}

static void ring_drain(struct log_ring *r)
{
	size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t lost;

	while (h < t) {
		size_t off = h % LOG_RING_SIZE, n = t - h;

		if (n > LOG_RING_SIZE - off) {
			n = LOG_RING_SIZE - off;
		}
		write_all_fd(r->buf + off, n);
		h += n;
	}
	atomic_store_explicit(&r->head, h, memory_order_release);
	lost = atomic_exchange_explicit(&r->dropped, 0, memory_order_relaxed);
	if (lost > 0) {
		char line[256], msg[96];
		int k = snprintf(msg, sizeof(msg), "log.dropped lines=%llu reason=\"stderr too slow\"",
				 (unsigned long long)lost);

		if (log_format_current == LOG_FMT_JSON) {
			write_all_fd(line, log_json_format(line, sizeof(line), "", "warn", "log", msg));
		} else {
			msg[k] = '\n';
			write_all_fd(msg, (size_t)k + 1);
		}
	}
}

static void drain_all(void)
{
	pthread_mutex_lock(&rings_mu);
	for (struct log_ring *r = rings; r != NULL; r = r->next) {
		ring_drain(r);
	}
	pthread_mutex_unlock(&rings_mu);
}

static void *logger_main(void *arg)
{
	struct timespec ts = { 0, LOG_DRAIN_NS };

	(void)arg;
	while (!atomic_load(&logger_stop)) {
		drain_all();
		nanosleep(&ts, NULL);
	}
	drain_all();
	return NULL;
}

void log_start_async(void)
{
	if (atomic_load(&async_on)) {
		return;
	}
	atomic_store(&logger_stop, false);
	if (pthread_create(&logger, NULL, logger_main, NULL) == 0) {
		thread_name(logger, "omx-log", -1);
		atomic_store(&async_on, true);
	}
}

void log_stop_async(void)
{
	struct log_ring *r, *next;

	if (!atomic_load(&async_on)) {
		return;
	}
	atomic_store(&async_on, false);
	atomic_store(&logger_stop, true);
	pthread_join(logger, NULL);
	drain_all();
	pthread_mutex_lock(&rings_mu);
	for (r = rings; r != NULL; r = next) {
		next = r->next;
		free(r);
	}
	rings = NULL;
	pthread_mutex_unlock(&rings_mu);
	my_ring = NULL;
}

/* emit hands a finished line to this thread's ring, or to stderr directly. */
static void emit(const char *line, size_t n)
{
	if (!atomic_load_explicit(&async_on, memory_order_acquire)) {
		write_all_fd(line, n); /* one write per line: atomic for pipes up to PIPE_BUF */
		return;
	}
	if (my_ring == NULL) {
		struct log_ring *r = calloc(1, sizeof(*r));

		if (r == NULL) {
			return;
		}
		pthread_mutex_lock(&rings_mu);
		r->next = rings;
		rings = r;
		pthread_mutex_unlock(&rings_mu);
		my_ring = r;
	}
	if (!ring_put(my_ring, line, n)) {
		atomic_fetch_add_explicit(&my_ring->dropped, 1, memory_order_relaxed);
	}
}

void log_line_impl(enum log_level lvl, const char *who, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	if (log_format_current == LOG_FMT_JSON) {
		char msg[2048], json[4096];

		snprintf(line + n, sizeof(line) - n, ".%03ldZ", ts.tv_nsec / 1000000);
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		emit(json, log_json_format(json, sizeof(json), line, level_names[lvl], who, msg));
		return;
	}
	k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s ", ts.tv_nsec / 1000000,
		     level_names[lvl], who);
	if (k > 0) {
		n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
	}
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (k > 0) {
		n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
	}
	line[n++] = '\n';
	emit(line, n);
}

char *log_escape(char *out, size_t out_len, const uint8_t *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (out_len == 0) {
		return out;
	}
	for (size_t i = 0; i < len && o + 4 < out_len; i++) {
		uint8_t c = p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}
