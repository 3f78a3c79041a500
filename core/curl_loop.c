/*
 * curl_loop.c - one libcurl multi handle and its loop; see curl_loop.h.
 *
 * The loop uses libcurl's socket interface: libcurl tells us (sock_cb) which
 * sockets to watch for what, and (timer_cb) when its next timeout is due; we
 * keep the sockets in an epoll set and call curl_multi_socket_action for
 * the one that is ready or for the timeout. Each event costs the work of its
 * own transfer, where curl_multi_perform + curl_multi_poll walk every
 * transfer and every socket on each wakeup.
 *
 * Threaded mode: submitters push onto a queue under a mutex and wake the
 * thread through an eventfd in the same epoll set, only when the queue was
 * empty (a non-empty queue is already due to be taken); the thread owns the
 * multi handle and every easy handle. It ends once stop is set, nothing runs
 * and the queue is empty.
 */
#include "curl_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"

#define LOOP_EVENTS 64          /* epoll events taken per wait */
#define LOOP_WAIT_MAX_MS 1000   /* the longest wait, whatever libcurl's timer says */

struct curl_loop {
	const struct curl_api *C;
	CURLM *multi;
	int epfd;                     /* libcurl's sockets (and wakefd) */
	int wakefd;                   /* threaded: eventfd for submitters; -1 otherwise */
	int64_t timer_at;             /* libcurl's next timeout, CLOCK_MONOTONIC ms; -1: none */
	unsigned running;             /* jobs in the multi handle; owner or loop thread */
	CURL **idle;                  /* reset easy handles kept for reuse */
	size_t num_idle, max_idle;
	/* threaded mode */
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	struct curl_job *head, **tail; /* under mu */
	bool stop;                     /* under mu */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sock_cb: libcurl's CURLMOPT_SOCKETFUNCTION; keeps s in the epoll set as asked. */
static int sock_cb(CURL *e, curl_socket_t s, int what, void *arg, void *socketp)
{
	struct curl_loop *l = arg;
	struct epoll_event ev = {.data.fd = s};

	(void)e;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, s, NULL); /* ENOENT/EBADF: already gone with its close */
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT &&
	    epoll_ctl(l->epfd, EPOLL_CTL_ADD, s, &ev) != 0) {
		return -1; /* libcurl fails the transfer */
	}
	return 0;
}

/* timer_cb: libcurl's CURLMOPT_TIMERFUNCTION; -1 deletes the timer. */
static int timer_cb(CURLM *m, long timeout_ms, void *arg)
{
	struct curl_loop *l = arg;

	(void)m;
	l->timer_at = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	return 0;
}

struct curl_loop *curl_loop_new(const struct curl_api *C, long max_connects, size_t max_idle)
{
	struct curl_loop *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		return NULL;
	}
	l->C = C;
	l->max_idle = max_idle;
	l->tail = &l->head;
	l->wakefd = -1;
	l->timer_at = -1;
	pthread_mutex_init(&l->mu, NULL);
	if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (max_idle > 0 && (l->idle = calloc(max_idle, sizeof(*l->idle))) == NULL) ||
	    (l->multi = C->multi_init()) == NULL) {
		curl_loop_free(l);
		return NULL;
	}
	C->multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	C->multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
	C->multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	C->multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
	if (max_connects > 0) {
		C->multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, max_connects);
	}
	return l;
}

void curl_loop_free(struct curl_loop *l)
{
	if (l == NULL) {
		return;
	}
	for (size_t i = 0; i < l->num_idle; i++) {
		l->C->easy_cleanup(l->idle[i]);
	}
	if (l->multi != NULL) {
		l->C->multi_cleanup(l->multi); /* closes the cached connections: sock_cb still needs epfd */
		l->multi = NULL;
	}
	if (l->wakefd >= 0) {
		close(l->wakefd);
	}
	if (l->epfd >= 0) {
		close(l->epfd);
	}
	pthread_mutex_destroy(&l->mu);
	free(l->idle); l->idle = NULL;
	free(l);
}

/* easy_get returns a reset easy handle, reused or new; NULL on ENOMEM. */
static CURL *easy_get(struct curl_loop *l)
{
	return l->num_idle > 0 ? l->idle[--l->num_idle] : l->C->easy_init();
}

/*
 * easy_put takes e back. The reset drops every pointer into the last job's
 * memory (buffers, header list, callbacks) but keeps the TLS session cache;
 * connections live in the multi handle's cache either way.
 */
static void easy_put(struct curl_loop *l, CURL *e)
{
	if (e == NULL) {
		return;
	}
	if (l->num_idle < l->max_idle) {
		l->C->easy_reset(e);
		l->idle[l->num_idle++] = e;
	} else {
		l->C->easy_cleanup(e);
	}
}

/* begin hands job to the multi handle: CURLE_OK, or why not with *out_e the handle (or NULL). */
static CURLcode begin(struct curl_loop *l, struct curl_job *job, CURL **out_e)
{
	const struct curl_api *C = l->C;
	CURL *e = easy_get(l);
	CURLcode rc;

	*out_e = e;
	if (e == NULL) {
		return CURLE_OUT_OF_MEMORY;
	}
	rc = job->start(job, e);
	if (rc == CURLE_OK) {
		rc = C->easy_setopt(e, CURLOPT_PRIVATE, job);
	}
	if (rc != CURLE_OK) {
		return rc;
	}
	if (C->multi_add_handle(l->multi, e) != CURLM_OK) {
		return CURLE_FAILED_INIT;
	}
	l->running++;
	return CURLE_OK;
}

int curl_loop_add(struct curl_loop *l, struct curl_job *job)
{
	CURL *e;
	CURLcode rc = begin(l, job, &e);

	if (rc == CURLE_OK) {
		return 0;
	}
	easy_put(l, e);
	return e == NULL ? -ENOMEM : -EINVAL;
}

unsigned curl_loop_running(const struct curl_loop *l)
{
	return l->running;
}

/* finish_done finishes the jobs that ended; true if any did. */
static bool finish_done(struct curl_loop *l)
{
	const struct curl_api *C = l->C;
	bool finished = false;
	int left;
	CURLMsg *m;

	while ((m = C->multi_info_read(l->multi, &left)) != NULL) {
		struct curl_job *job = NULL;
		CURL *e = m->easy_handle;

		if (m->msg != CURLMSG_DONE) {
			continue;
		}
		CURLcode result = m->data.result; /* m is invalid after remove_handle */

		C->easy_getinfo(e, CURLINFO_PRIVATE, (char **)&job);
		C->multi_remove_handle(l->multi, e);
		l->running--;
		job->done(job, e, result); /* the last touch of job */
		easy_put(l, e);
		finished = true;
	}
	return finished;
}

/*
 * step waits up to wait_ms (capped by libcurl's timer) for sockets, hands
 * each ready one and a due timeout to libcurl, then finishes the jobs that
 * ended; true if any did.
 */
static bool step(struct curl_loop *l, int wait_ms)
{
	const struct curl_api *C = l->C;
	struct epoll_event evs[LOOP_EVENTS];
	int still, n;

	if (l->timer_at >= 0) {
		int64_t due = l->timer_at - now_ms();

		if (due < wait_ms) {
			wait_ms = due < 0 ? 0 : (int)due;
		}
	}
	n = epoll_wait(l->epfd, evs, LOOP_EVENTS, wait_ms);
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd, mask = 0;
		uint32_t ev = evs[i].events;

		if (fd == l->wakefd) {
			uint64_t v;

			(void)!read(fd, &v, sizeof(v));
			continue;
		}
		mask |= ev & EPOLLIN ? CURL_CSELECT_IN : 0;
		mask |= ev & EPOLLOUT ? CURL_CSELECT_OUT : 0;
		mask |= ev & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0;
		C->multi_socket_action(l->multi, fd, mask, &still);
	}
	if (l->timer_at >= 0 && l->timer_at <= now_ms()) {
		l->timer_at = -1; /* the call sets the next one */
		C->multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &still);
	}
	return finish_done(l);
}

void curl_loop_run(struct curl_loop *l, int timeout_ms)
{
	if (!step(l, 0) && l->running > 0 && timeout_ms > 0) {
		step(l, timeout_ms);
	}
}

static void *loop_main(void *arg)
{
	struct curl_loop *l = arg;

	for (;;) {
		struct curl_job *list;
		bool stop;

		pthread_mutex_lock(&l->mu);
		list = l->head;
		l->head = NULL;
		l->tail = &l->head;
		stop = l->stop;
		pthread_mutex_unlock(&l->mu);
		while (list != NULL) {
			struct curl_job *job = list;
			CURL *e;
			CURLcode rc;

			list = job->next;
			job->next = NULL;
			if ((rc = begin(l, job, &e)) != CURLE_OK) {
				job->done(job, NULL, rc);
				easy_put(l, e);
			}
		}
		if (stop && l->running == 0) {
			pthread_mutex_lock(&l->mu);
			stop = l->head == NULL; /* the last submit may have raced the flag */
			pthread_mutex_unlock(&l->mu);
			if (stop) {
				break;
			}
			continue;
		}
		step(l, LOOP_WAIT_MAX_MS);
	}
	return NULL;
}

CURLcode curl_loop_set_post(const struct curl_api *C, CURL *e, const char *url, const void *body, size_t body_len,
			    struct curl_slist *hdrs, long timeout_ms, curl_write_callback write_fn, void *arg)
{
	CURLcode rc = CURLE_OK;

#define SET(opt, val) CURL_SETOPT(C, rc, e, opt, val)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_POSTFIELDS, (const char *)body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_USERAGENT, "oceanmx");
	SET(CURLOPT_TIMEOUT_MS, timeout_ms);
	SET(CURLOPT_WRITEFUNCTION, write_fn);
	SET(CURLOPT_WRITEDATA, arg);
#undef SET
	return rc;
}

int curl_loop_start(struct curl_loop *l, const char *name)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int rc;

	if ((l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		return -errno;
	}
	ev.data.fd = l->wakefd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0) {
		return -errno;
	}
	if ((rc = pthread_create(&l->thread, NULL, loop_main, l)) != 0) {
		return -rc;
	}
	l->started = true;
	thread_name(l->thread, name, -1);
	return 0;
}

/* wake ends the loop thread's wait. Any thread. */
static void wake(struct curl_loop *l)
{
	uint64_t one = 1;

	(void)!write(l->wakefd, &one, sizeof(one));
}

void curl_loop_submit(struct curl_loop *l, struct curl_job *job)
{
	bool was_empty;

	job->next = NULL;
	pthread_mutex_lock(&l->mu);
	was_empty = l->head == NULL; /* else the thread has not taken the queue yet: it will see job too */
	*l->tail = job;
	l->tail = &job->next;
	pthread_mutex_unlock(&l->mu);
	if (was_empty) {
		wake(l);
	}
}

void curl_loop_stop(struct curl_loop *l)
{
	if (l == NULL || !l->started) {
		return;
	}
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_mutex_unlock(&l->mu);
	wake(l);
	pthread_join(l->thread, NULL);
	l->started = false;
}
