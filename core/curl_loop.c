/*
 * curl_loop.c - one libcurl multi handle and its loop; see curl_loop.h.
 *
 * Threaded mode: submitters push onto a queue under a mutex and wake the
 * thread with curl_multi_wakeup (the one libcurl call that any thread may
 * make); the thread owns the multi handle and every easy handle. The thread
 * ends once stop is set, nothing runs and the queue is empty.
 */
#include "curl_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "thread.h"

struct curl_loop {
	const struct curl_api *C;
	CURLM *multi;
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

struct curl_loop *curl_loop_new(const struct curl_api *C, long max_connects, size_t max_idle)
{
	struct curl_loop *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		return NULL;
	}
	l->C = C;
	l->max_idle = max_idle;
	l->tail = &l->head;
	pthread_mutex_init(&l->mu, NULL);
	if ((max_idle > 0 && (l->idle = calloc(max_idle, sizeof(*l->idle))) == NULL) ||
	    (l->multi = C->multi_init()) == NULL) {
		curl_loop_free(l);
		return NULL;
	}
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
		l->C->multi_cleanup(l->multi);
		l->multi = NULL;
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

/* perform lets libcurl work and finishes the jobs that ended; true if any did. */
static bool perform(struct curl_loop *l)
{
	const struct curl_api *C = l->C;
	bool finished = false;
	int still, left;
	CURLMsg *m;

	C->multi_perform(l->multi, &still);
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

void curl_loop_run(struct curl_loop *l, int timeout_ms)
{
	if (!perform(l) && l->running > 0 && timeout_ms > 0) {
		l->C->multi_poll(l->multi, NULL, 0, timeout_ms, NULL);
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
		perform(l);
		if (stop && l->running == 0) {
			pthread_mutex_lock(&l->mu);
			stop = l->head == NULL; /* the last submit may have raced the flag */
			pthread_mutex_unlock(&l->mu);
			if (stop) {
				break;
			}
			continue;
		}
		l->C->multi_poll(l->multi, NULL, 0, 1000, NULL);
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
	int rc = pthread_create(&l->thread, NULL, loop_main, l);

	if (rc != 0) {
		return -rc;
	}
	l->started = true;
	thread_name(l->thread, name, -1);
	return 0;
}

void curl_loop_submit(struct curl_loop *l, struct curl_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&l->mu);
	*l->tail = job;
	l->tail = &job->next;
	pthread_mutex_unlock(&l->mu);
	l->C->multi_wakeup(l->multi);
}

void curl_loop_stop(struct curl_loop *l)
{
	if (l == NULL || !l->started) {
		return;
	}
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_mutex_unlock(&l->mu);
	l->C->multi_wakeup(l->multi);
	pthread_join(l->thread, NULL);
	l->started = false;
}
