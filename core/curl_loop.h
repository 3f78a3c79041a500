/*
 * curl_loop.h - one libcurl multi handle and the loop that drives it, shared
 * by the webhook sink (sinks/sink_http.c: driven by its delivery worker) and
 * the rspamd client (core/rspamd_client.c: on a thread of its own).
 *
 * A request is a struct curl_job embedded in the caller's own struct (the
 * caller finds its struct again with container_of). The loop owns the easy
 * handles: it hands start() a clean one to configure, runs it, calls done()
 * once it is over, then takes the handle back for the next request (reset,
 * so the multi handle's connection cache and TLS sessions survive while no
 * pointer into the caller's memory does).
 *
 * Two ways to drive it, never both on one loop:
 *   owner-driven  curl_loop_add() + curl_loop_run() on the thread that made
 *                 it; start() and done() run on that thread.
 *   threaded      curl_loop_start(), then curl_loop_submit() from any thread;
 *                 start() and done() run on the loop's thread, which is the
 *                 only one to touch libcurl; curl_loop_stop() drains.
 * Deadlines are the caller's (CURLOPT_TIMEOUT_MS in start()): with one set,
 * every request ends, so curl_loop_stop() waits at most one deadline.
 * libcurl itself comes from core/curl_loader.h.
 */
#ifndef OMX_CURL_LOOP_H
#define OMX_CURL_LOOP_H

#include <stddef.h>

#include "curl_loader.h"

struct curl_loop;
struct curl_job;

/*
 * curl_start_fn configures `e` (a reset easy handle) for job: URL, body,
 * headers, deadline, callbacks. It must not set CURLOPT_PRIVATE (the loop's).
 * CURLE_OK to run it; anything else ends the job (see curl_loop_add and
 * curl_loop_submit). e is the loop's: do not keep it past done().
 */
typedef CURLcode curl_start_fn(struct curl_job *job, CURL *e);

/*
 * curl_done_fn reports the end of a job: `result` is the transfer's (or the
 * reason it never ran), `e` its easy handle for CURLINFO_* (NULL if the
 * job never ran), valid during the call only. Called exactly once per job
 * that started; the loop does not touch job after it (done may free it).
 */
typedef void curl_done_fn(struct curl_job *job, CURL *e, CURLcode result);

struct curl_job {
	struct curl_job *next; /* the loop's submit queue */
	curl_start_fn *start;
	curl_done_fn *done;
};

/* CURL_SETOPT sets one option on e unless an earlier one failed: rc keeps the first failure. */
#define CURL_SETOPT(C, rc, e, opt, val)                                                                \
	do {                                                                                           \
		if ((rc) == CURLE_OK) {                                                                \
			(rc) = (C)->easy_setopt((e), (opt), (val));                                    \
		}                                                                                      \
	} while (0)

/* CURL_JOB_OWNER finds the struct of type `type` whose member `member` is job. */
#define CURL_JOB_OWNER(job, type, member) ((type *)(void *)((char *)(job) - offsetof(type, member)))

/*
 * curl_loop_new makes a loop on a new multi handle. max_connects: the
 * connection cache's size (CURLMOPT_MAXCONNECTS; 0: libcurl's default);
 * max_idle: easy handles kept for reuse. NULL on ENOMEM.
 */
struct curl_loop *curl_loop_new(const struct curl_api *C, long max_connects, size_t max_idle);

/* curl_loop_free frees a loop with no job in flight (stopped, if threaded). NULL does nothing. */
void curl_loop_free(struct curl_loop *l);

/*
 * curl_loop_add starts job now (owner-driven). 0: done() follows from
 * curl_loop_run; -ENOMEM (no easy handle) or -EINVAL (start() or libcurl
 * refused): done() is not called, the job is the caller's again.
 */
int curl_loop_add(struct curl_loop *l, struct curl_job *job);

/* curl_loop_running counts the jobs added and not yet done. Owner (or loop) thread. */
unsigned curl_loop_running(const struct curl_loop *l);

/*
 * curl_loop_run lets libcurl work once and calls done() for every job that
 * ended. If none ended and some still run, it then waits up to timeout_ms
 * (0: does not wait) for their sockets or timers. Owner-driven only.
 */
void curl_loop_run(struct curl_loop *l, int timeout_ms);

/*
 * curl_loop_set_post sets what every POST of ours has in common on e: url
 * (http and https only, never a redirect), the body (borrowed until done),
 * the header list (borrowed), our User-Agent, no signals, a deadline of
 * timeout_ms for the whole request, and write_fn(..., arg) for the answer.
 * CURLE_OK or the first option refused. For a curl_start_fn.
 */
CURLcode curl_loop_set_post(const struct curl_api *C, CURL *e, const char *url, const void *body, size_t body_len,
			    struct curl_slist *hdrs, long timeout_ms, curl_write_callback write_fn, void *arg);

/* curl_loop_start starts the loop's thread, named `name`. 0 or -errno. Main thread. */
int curl_loop_start(struct curl_loop *l, const char *name);

/*
 * curl_loop_submit queues job for the loop's thread, which calls start()
 * there and done() once it is over; if it cannot start, done() comes at once
 * with the reason (CURLE_OUT_OF_MEMORY, start()'s code, or
 * CURLE_FAILED_INIT). The loop borrows job until done(). Any thread.
 */
void curl_loop_submit(struct curl_loop *l, struct curl_job *job);

/*
 * curl_loop_stop lets every job queued or in flight finish (each within its
 * deadline), then joins the thread. Main thread, once nothing submits.
 */
void curl_loop_stop(struct curl_loop *l);

#endif
