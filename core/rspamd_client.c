/*
 * rspamd_client.c - rspamd's HTTP protocol on a thread of its own; see
 * rspamd_client.h.
 *
 * Threads: submitters push onto a queue under a mutex and wake the thread
 * with curl_multi_wakeup; the thread owns the multi handle and every easy
 * handle, so libcurl is used from that thread only. Connections stay open
 * in the multi handle's cache between requests (HTTP/1.1 keep-alive).
 * A request's deadline (CURLOPT_TIMEOUT_MS) covers connect, send and
 * reply, so stop never waits longer than one deadline.
 */
#include "rspamd_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_loader.h"
#include "log.h"
#include "thread.h"

struct rspamd_client {
	const struct curl_api *C;
	CURLM *multi;
	char *url;                    /* base + "/checkv2" */
	uint32_t timeout_ms;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	struct rspamd_req *head, **tail; /* under mu */
	bool stop;                    /* under mu */
	unsigned running;             /* client thread only */
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct rspamd_req *req = arg;
	size_t n = size * nmemb;

	if (req->resp.len + n > RSPAMD_REPLY_MAX || bb_append(&req->resp, p, n) != 0) {
		return 0; /* too long or no memory: curl ends the transfer with an error */
	}
	return n;
}

static void finish(struct rspamd_client *cl, struct rspamd_req *req, CURLcode result)
{
	const struct curl_api *C = cl->C;
	long status = 0;

	req->ok = false;
	if (result != CURLE_OK) {
		snprintf(req->error, sizeof(req->error), "%s",
			 result == CURLE_OPERATION_TIMEDOUT ? "timeout" : C->easy_strerror(result));
	} else if (C->easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status), status != 200) {
		snprintf(req->error, sizeof(req->error), "HTTP %ld", status);
	} else {
		size_t pos;
		enum rspamd_rc rc = rspamd_reply_parse(req->reply, &pos, req->resp.p, req->resp.len);

		if (rc == RSPAMD_OK) {
			req->ok = true;
		} else {
			snprintf(req->error, sizeof(req->error), "reply: %s at %zu", rspamd_rc_name(rc), pos);
		}
	}
	if (req->easy != NULL) {
		C->multi_remove_handle(cl->multi, req->easy);
		C->easy_cleanup(req->easy);
		req->easy = NULL;
	}
	C->slist_free_all(req->hdrs);
	req->hdrs = NULL;
	bb_fini(&req->resp);
	req->done(req->arg, req); /* the last touch */
}

/* start hands req to the multi handle, or finishes it with the reason it could not start. */
static void start(struct rspamd_client *cl, struct rspamd_req *req)
{
	const struct curl_api *C = cl->C;
	CURLcode rc = CURLE_OK;
	CURL *e = C->easy_init();

	bb_init(&req->resp, 0);
	req->easy = e;
	req->hdrs = C->slist_append(NULL, "Expect:"); /* no 100-continue round trip */
	for (size_t off = 0; req->hdrs != NULL && req->ctx != NULL && off < req->ctx->len;) {
		const char *h = (const char *)req->ctx->p + off;
		struct curl_slist *l = C->slist_append(req->hdrs, h);

		if (l == NULL) {
			C->slist_free_all(req->hdrs);
			req->hdrs = NULL;
			break;
		}
		req->hdrs = l;
		off += strlen(h) + 1;
	}
	if (e == NULL || req->hdrs == NULL) {
		finish(cl, req, CURLE_OUT_OF_MEMORY);
		return;
	}
#define SET(opt, val)                                                                                  \
	do {                                                                                           \
		if (rc == CURLE_OK) {                                                                  \
			rc = C->easy_setopt(e, (opt), (val));                                          \
		}                                                                                      \
	} while (0)
	SET(CURLOPT_URL, cl->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_POSTFIELDS, (const char *)req->body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	SET(CURLOPT_HTTPHEADER, req->hdrs);
	SET(CURLOPT_USERAGENT, "oceanmx");
	SET(CURLOPT_TIMEOUT_MS, (long)cl->timeout_ms);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, req);
	SET(CURLOPT_PRIVATE, req);
#undef SET
	if (rc != CURLE_OK || C->multi_add_handle(cl->multi, e) != CURLM_OK) {
		finish(cl, req, rc != CURLE_OK ? rc : CURLE_FAILED_INIT);
		return;
	}
	cl->running++;
}

static void *client_main(void *arg)
{
	struct rspamd_client *cl = arg;
	const struct curl_api *C = cl->C;

	for (;;) {
		struct rspamd_req *list;
		bool stop;
		int still, left;
		CURLMsg *m;

		pthread_mutex_lock(&cl->mu);
		list = cl->head;
		cl->head = NULL;
		cl->tail = &cl->head;
		stop = cl->stop;
		pthread_mutex_unlock(&cl->mu);
		while (list != NULL) {
			struct rspamd_req *req = list;

			list = req->next;
			req->next = NULL;
			start(cl, req);
		}
		C->multi_perform(cl->multi, &still);
		while ((m = C->multi_info_read(cl->multi, &left)) != NULL) {
			struct rspamd_req *req = NULL;

			if (m->msg != CURLMSG_DONE) {
				continue;
			}
			CURLcode result = m->data.result; /* m is invalid after remove_handle */

			C->easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&req);
			cl->running--;
			finish(cl, req, result);
		}
		if (stop && cl->running == 0) {
			pthread_mutex_lock(&cl->mu);
			stop = cl->head == NULL; /* the last submit may have raced the flag */
			pthread_mutex_unlock(&cl->mu);
			if (stop) {
				break;
			}
			continue;
		}
		C->multi_poll(cl->multi, NULL, 0, 1000, NULL);
	}
	return NULL;
}

struct rspamd_client *rspamd_client_start(const char *url, uint32_t timeout_ms, char **out_err)
{
	struct rspamd_client *cl = calloc(1, sizeof(*cl));
	size_t n = strlen(url);

	*out_err = NULL;
	if (cl == NULL) {
		return NULL;
	}
	pthread_mutex_init(&cl->mu, NULL);
	cl->tail = &cl->head;
	cl->timeout_ms = timeout_ms;
	while (n > 0 && url[n - 1] == '/') {
		n--;
	}
	if (asprintf(&cl->url, "%.*s/checkv2", (int)n, url) < 0) {
		cl->url = NULL;
		goto fail;
	}
	if ((cl->C = curl_loader_load(out_err)) == NULL) {
		goto fail;
	}
	if ((cl->multi = cl->C->multi_init()) == NULL) {
		goto fail;
	}
	if (pthread_create(&cl->thread, NULL, client_main, cl) != 0) {
		goto fail;
	}
	cl->started = true;
	thread_name(cl->thread, "omx-rspamd", -1);
	return cl;
fail:
	if (*out_err == NULL && asprintf(out_err, "rspamd client: cannot start") < 0) {
		*out_err = NULL;
	}
	rspamd_client_stop(cl);
	return NULL;
}

void rspamd_client_submit(struct rspamd_client *cl, struct rspamd_req *req)
{
	req->next = NULL;
	pthread_mutex_lock(&cl->mu);
	*cl->tail = req;
	cl->tail = &req->next;
	pthread_mutex_unlock(&cl->mu);
	cl->C->multi_wakeup(cl->multi);
}

void rspamd_client_stop(struct rspamd_client *cl)
{
	if (cl == NULL) {
		return;
	}
	if (cl->started) {
		pthread_mutex_lock(&cl->mu);
		cl->stop = true;
		pthread_mutex_unlock(&cl->mu);
		cl->C->multi_wakeup(cl->multi);
		pthread_join(cl->thread, NULL);
	}
	if (cl->multi != NULL) {
		cl->C->multi_cleanup(cl->multi);
		cl->multi = NULL;
	}
	pthread_mutex_destroy(&cl->mu);
	free(cl->url); cl->url = NULL;
	free(cl);
}
