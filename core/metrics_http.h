/*
 * metrics_http.h - the HTTP/1.1 listener of --metrics: GET /metrics
 * (Prometheus text format 0.0.4), /healthz and /readyz.
 */
#ifndef OMX_METRICS_HTTP_H
#define OMX_METRICS_HTTP_H

#include <stdbool.h>
#include <sys/socket.h>

#include "bb.h"
#include "http_req.h"

#define METRICS_HTTP_CONNS_MAX  8    /* scrapers served at once; more are answered 503 and closed */
#define METRICS_HTTP_TIMEOUT_MS 5000 /* a whole exchange (request in, response out) */

struct metrics_http;

/*
 * metrics_http_start binds `addr` and starts the metrics thread. NULL with
 * *out_err (malloc'd) when the address cannot be bound. Main thread.
 */
struct metrics_http *metrics_http_start(const struct sockaddr_storage *addr, socklen_t addr_len, char **out_err);

/* metrics_http_stop closes the listener, drops open exchanges, joins and frees. NULL is a no-op. */
void metrics_http_stop(struct metrics_http *m);

/*
 * metrics_http_respond builds the whole response (status line, fields,
 * body; Connection: close) to a parsed head: the route table of the
 * endpoint, pure but for metrics_render()/metrics_ready(). `rc` is the
 * parser's result (SYNTAX and TOO_LONG answer 400). 0 or -ENOMEM.
 */
int metrics_http_respond(struct bb *out, enum http_parse rc, const struct http_req *req);

#endif
