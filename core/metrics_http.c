/*
 * metrics_http.c - the --metrics listener: one dedicated, low-priority
 * thread ("omx-metrics") with a poll() loop over the listening socket, at
 * most METRICS_HTTP_CONNS_MAX scraper connections and a stop eventfd.
 *
 * Why a thread of its own and not a shard's ring (DESIGN.md suggests the
 * ring): the shards' completion loop, its user_data packing and its conn
 * table are built around SMTP sessions and the spool transaction, and are
 * being rewritten; an HTTP connection type there would add states to every
 * path for a request that comes once a second. Here the shards are not
 * touched at all: they never block on, wait for or lock anything the
 * scraper holds. The scraper reads their counters with relaxed atomic
 * loads (metrics.h), and its only lock (the registry) is never taken by a
 * shard. The thread runs at nice +10, so under load it yields to the
 * shards. Measured with bench/metrics_cost.sh: one scrape (accept, parse,
 * render 9.5 KB for 2 shards, send, close) costs ~95 µs of this thread's
 * CPU, ~0.01% of a core at one scrape a second; W1 with and without
 * scraping every second differs by less than this machine's run-to-run
 * noise (bench/README.md).
 *
 * Each exchange is bounded: the request head (HTTP_REQ_HEAD_MAX octets),
 * the time (METRICS_HTTP_TIMEOUT_MS from accept to the last response
 * byte, so a slow client cannot hold a slot), and the number of exchanges
 * at once (one more is answered 503 and closed). Every response carries
 * Connection: close and the connection is closed after it.
 */
#include "metrics_http.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "thread.h"

#define METRICS_NICE 10

struct mconn {
	int fd;               /* -1: free slot */
	int64_t deadline_ms;
	bool writing;
	size_t in_len;
	uint8_t in[HTTP_REQ_HEAD_MAX];
	struct bb out;
	size_t out_off;
};

struct metrics_http {
	int listen_fd;
	int stop_fd;
	pthread_t thread;
	struct mconn conns[METRICS_HTTP_CONNS_MAX];
	uint64_t num_served, num_busy;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int status(struct bb *out, int code, const char *reason, const char *ctype, const char *extra,
		  size_t body_len)
{
	return bb_printf(out,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n"
			 "Cache-Control: no-store\r\n\r\n",
			 code, reason, ctype, body_len, extra);
}

static int simple(struct bb *out, int code, const char *reason, const char *extra, const char *body, bool head)
{
	size_t n = strlen(body);

	if (status(out, code, reason, "text/plain; charset=utf-8", extra, n) != 0) {
		return -ENOMEM;
	}
	return head ? 0 : bb_append(out, body, n);
}

int metrics_http_respond(struct bb *out, enum http_parse rc, const struct http_req *req)
{
	bool head;

	if (rc != HTTP_PARSE_OK) {
		return simple(out, 400, "Bad Request", "", "bad request\n", false);
	}
	if (req->method == HTTP_M_OTHER) {
		return simple(out, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", "method not allowed\n", false);
	}
	head = req->method == HTTP_M_HEAD;
	if (span_eq(req->path, span_cstr("/metrics"))) {
		struct bb body;
		int r;

		bb_init(&body, 0);
		if (metrics_render(&body) != 0) {
			bb_fini(&body);
			return simple(out, 500, "Internal Server Error", "", "out of memory\n", head);
		}
		r = status(out, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", body.len);
		if (r == 0 && !head) {
			r = bb_append(out, body.p, body.len);
		}
		bb_fini(&body);
		return r == 0 ? 0 : -ENOMEM;
	}
	if (span_eq(req->path, span_cstr("/healthz"))) {
		return simple(out, 200, "OK", "", "ok\n", head);
	}
	if (span_eq(req->path, span_cstr("/readyz"))) {
		const char *why = "not ready";
		char body[160];

		if (metrics_ready(&why)) {
			return simple(out, 200, "OK", "", "ready\n", head);
		}
		snprintf(body, sizeof(body), "not ready: %s\n", why);
		return simple(out, 503, "Service Unavailable", "", body, head);
	}
	return simple(out, 404, "Not Found", "", "not found\n", head);
}

static void mconn_close(struct mconn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
	}
	c->fd = -1;
	c->in_len = 0;
	c->writing = false;
	c->out_off = 0;
	bb_reset(&c->out, 1);
}

/* mconn_write sends what the socket takes; closes when done or broken. */
static void mconn_write(struct metrics_http *m, struct mconn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t k = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;
		}
		if (k <= 0) {
			mconn_close(c);
			return;
		}
		c->out_off += (size_t)k;
	}
	m->num_served++;
	shutdown(c->fd, SHUT_WR);
	/* Bytes after the head (a body we never read) would make close send a
	 * reset, which can destroy the answer before the client reads it. */
	(void)recv(c->fd, c->in, sizeof(c->in), MSG_DONTWAIT);
	mconn_close(c);
}

static void mconn_read(struct metrics_http *m, struct mconn *c)
{
	struct http_req req;
	enum http_parse rc;
	size_t used;
	ssize_t k;

	k = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
	if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		return;
	}
	if (k <= 0) {
		mconn_close(c); /* gone before a whole request */
		return;
	}
	c->in_len += (size_t)k;
	rc = http_req_parse(&req, &used, c->in, c->in_len);
	if (rc == HTTP_PARSE_MORE) {
		return;
	}
	if (metrics_http_respond(&c->out, rc, &req) != 0) {
		mconn_close(c);
		return;
	}
	c->writing = true;
	mconn_write(m, c);
}

static void do_accept(struct metrics_http *m, int64_t now)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n"
				   "Retry-After: 1\r\n\r\nbusy\n";

	for (;;) {
		int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct mconn *c = NULL;

		if (fd < 0) {
			return; /* EAGAIN, or a transient error: poll tells us again */
		}
		for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX && c == NULL; i++) {
			if (m->conns[i].fd < 0) {
				c = &m->conns[i];
			}
		}
		if (c == NULL) {
			char scratch[HTTP_REQ_HEAD_MAX];

			/* Best effort, never waiting: take what the client already sent
			 * (so closing does not reset the connection under our answer),
			 * and let the socket buffer take the answer. */
			(void)recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT);
			(void)send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			shutdown(fd, SHUT_WR);
			m->num_busy++;
			close(fd);
			continue;
		}
		c->fd = fd;
		c->deadline_ms = now + METRICS_HTTP_TIMEOUT_MS;
	}
}

static void *metrics_main(void *arg)
{
	struct metrics_http *m = arg;
	struct pollfd pfd[2 + METRICS_HTTP_CONNS_MAX];

	/* Lower only this thread (Linux nice is per thread). */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), METRICS_NICE);
	for (;;) {
		int64_t now = mono_ms(), wait = 1000;
		unsigned n = 2, idx[METRICS_HTTP_CONNS_MAX];

		pfd[0] = (struct pollfd){ .fd = m->stop_fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = m->listen_fd, .events = POLLIN };
		for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++) {
			struct mconn *c = &m->conns[i];

			if (c->fd < 0) {
				continue;
			}
			if (now >= c->deadline_ms) {
				mconn_close(c); /* slow client: no answer */
				continue;
			}
			if (c->deadline_ms - now < wait) {
				wait = c->deadline_ms - now;
			}
			idx[n - 2] = i;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = c->writing ? POLLOUT : POLLIN };
		}
		if (poll(pfd, n, (int)wait) < 0 && errno != EINTR) {
			log_line(LOG_ERR, "metrics", "poll error=\"%s\"", strerror(errno));
			break;
		}
		if (pfd[0].revents != 0) {
			break;
		}
		now = mono_ms();
		for (unsigned k = 2; k < n; k++) {
			struct mconn *c = &m->conns[idx[k - 2]];

			if (pfd[k].revents == 0 || c->fd < 0) {
				continue;
			}
			if (c->writing) {
				mconn_write(m, c);
			} else {
				mconn_read(m, c);
			}
		}
		if (pfd[1].revents & POLLIN) {
			do_accept(m, now);
		}
	}
	return NULL;
}

struct metrics_http *metrics_http_start(const struct sockaddr_storage *addr, socklen_t addr_len, char **out_err)
{
	struct metrics_http *m = calloc(1, sizeof(*m));
	int one = 1;

	if (m == NULL) {
		*out_err = strdup("metrics: out of memory");
		return NULL;
	}
	m->stop_fd = -1;
	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++) {
		m->conns[i].fd = -1;
		bb_init(&m->conns[i].out, 0);
	}
	m->listen_fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->listen_fd < 0) {
		goto fail;
	}
	setsockopt(m->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->ss_family == AF_INET6) {
		setsockopt(m->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(m->listen_fd, (const struct sockaddr *)addr, addr_len) != 0 || listen(m->listen_fd, 64) != 0) {
		goto fail;
	}
	m->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (m->stop_fd < 0) {
		goto fail;
	}
	if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
		errno = EAGAIN;
		goto fail;
	}
	thread_name(m->thread, "omx-metrics", -1);
	return m;
fail:
	if (asprintf(out_err, "%s", strerror(errno)) < 0) {
		*out_err = NULL;
	}
	if (m->listen_fd >= 0) {
		close(m->listen_fd);
	}
	if (m->stop_fd >= 0) {
		close(m->stop_fd);
	}
	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++) {
		bb_fini(&m->conns[i].out);
	}
	free(m);
	return NULL;
}

void metrics_http_stop(struct metrics_http *m)
{
	uint64_t one = 1;

	if (m == NULL) {
		return;
	}
	if (write(m->stop_fd, &one, sizeof(one)) == sizeof(one)) {
		pthread_join(m->thread, NULL);
	} else {
		pthread_cancel(m->thread);
		pthread_join(m->thread, NULL);
	}
	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++) {
		mconn_close(&m->conns[i]);
		bb_fini(&m->conns[i].out);
	}
	close(m->listen_fd);
	close(m->stop_fd);
	log_line(LOG_INFO, "metrics", "metrics.stop served=%llu busy=%llu", (unsigned long long)m->num_served,
		 (unsigned long long)m->num_busy);
	free(m);
}
