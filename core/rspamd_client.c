/*
 * rspamd_client.c - rspamd's HTTP protocol on a thread of its own; see
 * rspamd_client.h. The thread, the queue and the multi handle are
 * core/curl_loop.h's: this file builds each request and reads its answer.
 *
 * rspamd 3.4's workers answer every request with "Connection: close" (its
 * HTTP server writes it whatever the request asks), so each check is a new
 * connection; the loop would keep them if rspamd did. A request's deadline
 * (CURLOPT_TIMEOUT_MS) covers connect, send and reply, so stop never waits
 * longer than one deadline.
 */
#include "rspamd_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_loop.h"

/* Easy handles kept for reuse: more than the checks usually in flight at once. */
#define RSPAMD_IDLE_MAX 64

struct rspamd_client {
	const struct curl_api *C;
	struct curl_loop *loop;
	char *url;                    /* base + "/checkv2" */
	char *unix_path;              /* "unix:PATH": rspamd's UNIX socket; NULL: TCP */
	uint32_t timeout_ms;
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

/* req_done reads the answer (or the reason there is none) and hands req back. Client thread. */
static void req_done(struct curl_job *job, CURL *e, CURLcode result)
{
	struct rspamd_req *req = CURL_JOB_OWNER(job, struct rspamd_req, job);
	const struct curl_api *C = req->cl->C;
	long status = 0;

	req->ok = false;
	if (result != CURLE_OK) {
		snprintf(req->error, sizeof(req->error), "%s",
			 result == CURLE_OPERATION_TIMEDOUT ? "timeout" : C->easy_strerror(result));
	} else if (C->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status), status != 200) {
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
	if (req->hdrs != NULL) {
		C->slist_free_all(req->hdrs);
		req->hdrs = NULL;
	}
	bb_fini(&req->resp);
	req->done(req->arg, req); /* the last touch */
}

/* req_start builds req's request on e. Client thread. */
static CURLcode req_start(struct curl_job *job, CURL *e)
{
	struct rspamd_req *req = CURL_JOB_OWNER(job, struct rspamd_req, job);
	const struct rspamd_client *cl = req->cl;
	const struct curl_api *C = cl->C;

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
	if (req->hdrs == NULL) {
		return CURLE_OUT_OF_MEMORY;
	}
	CURLcode rc = curl_loop_set_post(C, e, cl->url, req->body, req->body_len, req->hdrs, (long)cl->timeout_ms,
					 on_body, req);

	if (rc == CURLE_OK && cl->unix_path != NULL) {
		rc = C->easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, cl->unix_path);
	}
	return rc;
}

struct rspamd_client *rspamd_client_start(const char *url, uint32_t timeout_ms, char **out_err)
{
	struct rspamd_client *cl = calloc(1, sizeof(*cl));
	size_t n = strlen(url);

	*out_err = NULL;
	if (cl == NULL) {
		return NULL;
	}
	cl->timeout_ms = timeout_ms;
	if (strncmp(url, "unix:", 5) == 0) {
		/* rspamd's bind_socket = "/PATH": no TCP handshake and teardown per check (rspamd closes each). */
		if (url[5] == '\0' || (cl->unix_path = strdup(url + 5)) == NULL) {
			if (url[5] == '\0' && asprintf(out_err, "rspamd: want unix:PATH") < 0) {
				*out_err = NULL;
			}
			goto fail;
		}
		url = "http://localhost";
		n = strlen(url);
	}
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
	if ((cl->loop = curl_loop_new(cl->C, 0, RSPAMD_IDLE_MAX)) == NULL) {
		goto fail;
	}
	if (curl_loop_start(cl->loop, "omx-rspamd") != 0) {
		goto fail;
	}
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
	req->cl = cl;
	req->hdrs = NULL;
	bb_init(&req->resp, 0);
	req->job.start = req_start;
	req->job.done = req_done;
	curl_loop_submit(cl->loop, &req->job);
}

void rspamd_client_stop(struct rspamd_client *cl)
{
	if (cl == NULL) {
		return;
	}
	curl_loop_stop(cl->loop);
	curl_loop_free(cl->loop);
	cl->loop = NULL;
	free(cl->url); cl->url = NULL;
	free(cl->unix_path); cl->unix_path = NULL;
	free(cl);
}
