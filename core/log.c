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
		char line[96];
		int k = snprintf(line, sizeof(line), "log.dropped lines=%llu (stderr too slow)\n",
				 (unsigned long long)lost);

		write_all_fd(line, (size_t)k);
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
