/*
 * rspamd_client.h - one thread that asks rspamd (HTTP, POST URL/checkv2)
 * for the verdicts of the verify pool's messages, many in flight at once
 * on one libcurl multi handle (the thread and the loop: core/curl_loop.h), so a
 * slow rspamd delays only the messages it is checking: the workers and the
 * shards never wait for it.
 *
 * Life of a request (the verify pool's job owns the struct):
 *   fill body, body_len, ctx, reply, done, arg
 *   rspamd_client_submit(cl, req)      any thread; the client borrows
 *                                      body, ctx and reply until done
 *   done(arg, req) on the client thread: req->ok, and either *req->reply
 *   (ok) or req->error; the last touch of req by the client.
 */
#ifndef OMX_RSPAMD_CLIENT_H
#define OMX_RSPAMD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../verify/rspamd.h"
#include "bb.h"
#include "curl_loop.h"

struct rspamd_client;
struct rspamd_req;

typedef void rspamd_done_fn(void *arg, struct rspamd_req *req);

struct rspamd_req {
	struct curl_job job;         /* the client's (core/curl_loop.h) */
	const uint8_t *body;         /* the message as rspamd gets it; borrowed */
	size_t body_len;
	const struct bb *ctx;        /* protocol headers, "Name: value" strings each NUL-terminated; borrowed */
	struct rspamd_reply *reply;  /* caller storage for the verdict */
	rspamd_done_fn *done;
	void *arg;
	/* results, set by the client before done */
	bool ok;
	char error[96];              /* why not ok: "timeout", "connect: ...", "HTTP 500", "reply: syntax" */
	/* the client's */
	const struct rspamd_client *cl;
	struct curl_slist *hdrs;
	struct bb resp;
};

/*
 * rspamd_client_start loads libcurl and starts the thread for `url` (the
 * base, e.g. http://127.0.0.1:11333, "/checkv2" appended; or unix:PATH, the
 * UNIX socket of rspamd's bind_socket = "PATH"), with a whole-
 * request deadline of timeout_ms. NULL with *out_err (malloc'd). Main thread.
 */
struct rspamd_client *rspamd_client_start(const char *url, uint32_t timeout_ms, char **out_err);

/* rspamd_client_submit queues req (see above). Any thread. */
void rspamd_client_submit(struct rspamd_client *cl, struct rspamd_req *req);

/*
 * rspamd_client_stop answers everything queued or in flight (each within
 * its deadline), then joins and frees. NULL does nothing. Main thread,
 * once nothing submits any more.
 */
void rspamd_client_stop(struct rspamd_client *cl);

#endif
