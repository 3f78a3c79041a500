/*
 * test_curl_loop.c - core/curl_loop.c: done() exactly once per job, in both
 * ways of driving the loop, against a tiny HTTP server on loopback and a
 * refused port; a job whose start() fails; stop draining what was queued.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/curl_loop.h"

#define NUM_JOBS 40

struct tjob {
	struct curl_job job;
	char url[64];
	long status;
	CURLcode result;
	atomic_int num_done;
	bool fail_start;
};

static const struct curl_api *C;
static atomic_int total_done;

static size_t discard(char *p, size_t size, size_t nmemb, void *arg)
{
	(void)p;
	(void)arg;
	return size * nmemb;
}

static CURLcode tstart(struct curl_job *job, CURL *e)
{
	struct tjob *t = CURL_JOB_OWNER(job, struct tjob, job);

	if (t->fail_start) {
		return CURLE_BAD_FUNCTION_ARGUMENT;
	}
	return curl_loop_set_post(C, e, t->url, "hi", 2, NULL, 5000, discard, t);
}

static void tdone(struct curl_job *job, CURL *e, CURLcode result)
{
	struct tjob *t = CURL_JOB_OWNER(job, struct tjob, job);

	t->result = result;
	if (e != NULL && result == CURLE_OK) {
		C->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &t->status);
	}
	atomic_fetch_add(&t->num_done, 1);
	atomic_fetch_add(&total_done, 1);
}

/* The server: answers every connection with 200 and closes it, like rspamd. */
struct srv {
	int fd;
	int port;
	pthread_t thread;
	int num_answers;
};

static void *srv_main(void *arg)
{
	struct srv *s = arg;

	for (int i = 0; i < s->num_answers; i++) {
		char buf[4096];
		size_t len = 0;
		int c = accept(s->fd, NULL, NULL);

		if (c < 0) {
			break;
		}
		while (len < sizeof(buf) - 1) {
			ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);

			if (n <= 0) {
				break;
			}
			len += (size_t)n;
			buf[len] = '\0';
			if (strstr(buf, "\r\n\r\nhi") != NULL) {
				break;
			}
		}
		static const char ans[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

		(void)!write(c, ans, sizeof(ans) - 1);
		close(c);
	}
	return NULL;
}

static void srv_start(struct srv *s, int num_answers)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);

	s->num_answers = num_answers;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(s->fd >= 0);
	cr_assert_eq(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s->fd, 128), 0);
	cr_assert_eq(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
	s->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
	pthread_join(s->thread, NULL);
	close(s->fd);
}

/* refused_port: a loopback port nobody listens on (bound, then closed). */
static int refused_port(void)
{
	struct srv s = {0};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);

	s.fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(s.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(s.fd, (struct sockaddr *)&a, &alen), 0);
	close(s.fd);
	return ntohs(a.sin_port);
}

static void setup(void)
{
	char *err = NULL;

	C = curl_loader_load(&err);
	if (C == NULL) {
		cr_skip_test("libcurl not loadable: %s", err ? err : "?");
	}
	atomic_store(&total_done, 0);
}

static struct tjob *jobs_new(int n, const char *path, int port)
{
	struct tjob *t = calloc((size_t)n, sizeof(*t));

	cr_assert_not_null(t);
	for (int i = 0; i < n; i++) {
		snprintf(t[i].url, sizeof(t[i].url), "http://127.0.0.1:%d%s", port, path);
		t[i].job.start = tstart;
		t[i].job.done = tdone;
	}
	return t;
}

Test(curl_loop, threaded_answers_each_job_once, .init = setup)
{
	struct srv s;
	struct tjob *t;
	struct curl_loop *l = curl_loop_new(C, 0, 8);

	srv_start(&s, NUM_JOBS);
	t = jobs_new(NUM_JOBS, "/checkv2", s.port);
	cr_assert_not_null(l);
	cr_assert_eq(curl_loop_start(l, "test-curl"), 0);
	for (int i = 0; i < NUM_JOBS; i++) {
		curl_loop_submit(l, &t[i].job);
	}
	curl_loop_stop(l); /* drains: every job is done when it returns */
	cr_assert_eq(atomic_load(&total_done), NUM_JOBS);
	for (int i = 0; i < NUM_JOBS; i++) {
		cr_assert_eq(atomic_load(&t[i].num_done), 1, "job %d done %d times", i, atomic_load(&t[i].num_done));
		cr_assert_eq(t[i].result, CURLE_OK, "job %d: %s", i, C->easy_strerror(t[i].result));
		cr_assert_eq(t[i].status, 200);
	}
	curl_loop_free(l);
	srv_stop(&s);
	free(t);
}

struct submitter {
	struct curl_loop *l;
	struct tjob *t;
	int n;
};

static void *submit_main(void *arg)
{
	struct submitter *sb = arg;

	for (int i = 0; i < sb->n; i++) {
		curl_loop_submit(sb->l, &sb->t[i].job);
	}
	return NULL;
}

Test(curl_loop, threaded_submit_from_two_threads_refused, .init = setup)
{
	struct tjob *t = jobs_new(NUM_JOBS, "/", refused_port());
	struct curl_loop *l = curl_loop_new(C, 0, 4);
	struct submitter a = {l, t, NUM_JOBS / 2}, b = {l, t + NUM_JOBS / 2, NUM_JOBS - NUM_JOBS / 2};
	pthread_t ta, tb;

	cr_assert_not_null(l);
	cr_assert_eq(curl_loop_start(l, "test-curl"), 0);
	pthread_create(&ta, NULL, submit_main, &a);
	pthread_create(&tb, NULL, submit_main, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	curl_loop_stop(l);
	cr_assert_eq(atomic_load(&total_done), NUM_JOBS);
	for (int i = 0; i < NUM_JOBS; i++) {
		cr_assert_eq(atomic_load(&t[i].num_done), 1);
		cr_assert_eq(t[i].result, CURLE_COULDNT_CONNECT, "job %d: %s", i, C->easy_strerror(t[i].result));
	}
	curl_loop_free(l);
	free(t);
}

Test(curl_loop, threaded_start_failure_is_done_at_once, .init = setup)
{
	struct tjob *t = jobs_new(1, "/", 1);
	struct curl_loop *l = curl_loop_new(C, 0, 4);

	t[0].fail_start = true;
	cr_assert_eq(curl_loop_start(l, "test-curl"), 0);
	curl_loop_submit(l, &t[0].job);
	curl_loop_stop(l);
	cr_assert_eq(atomic_load(&t[0].num_done), 1);
	cr_assert_eq(t[0].result, CURLE_BAD_FUNCTION_ARGUMENT);
	curl_loop_free(l);
	free(t);
}

Test(curl_loop, owner_driven_runs_until_all_done, .init = setup)
{
	struct srv s;
	struct tjob *t;
	struct curl_loop *l = curl_loop_new(C, 4, 4);
	struct tjob bad = {0};

	srv_start(&s, 8);
	t = jobs_new(8, "/hook", s.port);
	cr_assert_not_null(l);
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(curl_loop_add(l, &t[i].job), 0);
	}
	bad.job.start = tstart;
	bad.job.done = tdone;
	bad.fail_start = true;
	cr_assert_eq(curl_loop_add(l, &bad.job), -EINVAL); /* refused: done() is not called */
	cr_assert_eq(curl_loop_running(l), 8);
	while (curl_loop_running(l) > 0) {
		curl_loop_run(l, 1000);
	}
	cr_assert_eq(atomic_load(&total_done), 8);
	cr_assert_eq(atomic_load(&bad.num_done), 0);
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(atomic_load(&t[i].num_done), 1);
		cr_assert_eq(t[i].status, 200);
	}
	curl_loop_free(l);
	srv_stop(&s);
	free(t);
}
