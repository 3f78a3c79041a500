/*
 * sink_http.c - "http://URL" and "https://URL": each message POSTed to a
 * webhook receiver, many at once.
 *
 * Options (taken out of the URL's query string; the receiver's own
 * parameters stay in it): secret_file=PATH (HMAC key, read at configure),
 * raw=yes|no (multipart/form-data with the document and the raw message;
 * default no: the document alone as application/json), concurrency=N
 * (requests in flight per delivery worker, default 16), timeout=S (per
 * request, connection included, default 30), ca_file=PATH (https: trust
 * these CAs instead of the system's).
 *
 * Each request carries Oceanmx-Message-Id and Idempotency-Key (the queue
 * id, stable across redeliveries) and, with a secret, Stripe's signature
 * scheme: Oceanmx-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>.
 * 2xx is delivered; 408, 429, 5xx, 1xx/3xx, timeouts and connection or TLS
 * errors are TEMPFAIL (a Retry-After is named in the reason); other 4xx
 * PERMFAIL with the start of the receiver's answer (sink_http_reply.h).
 *
 * Flow on a delivery worker: tx_write parses the message (sink_doc) and,
 * with raw=yes, keeps its bytes; tx_commit builds the body and headers and
 * queues the request, starting it at once while fewer than `concurrency`
 * run; flush drives the worker's curl multi handle until every request of
 * the batch has its answer, calling done() as each finishes. A tx owns its
 * body until then (curl borrows it). Redirects are never followed; only
 * http and https are allowed. The multi handle, its loop and the reuse of
 * easy handles (they keep their TLS sessions) are core/curl_loop.h's, driven
 * here by the delivery worker; libcurl is loaded by core/curl_loader.h (why there).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/bb.h"
#include "sink.h"
#include "../core/curl_loop.h"
#include "sink_doc.h"
#include "sink_http_reply.h"
#include "sink_query.h"
#include "sink_text.h"

#define HTTP_CONCURRENCY_DEFAULT 16
#define HTTP_CONCURRENCY_MAX 1024
#define HTTP_TIMEOUT_DEFAULT 30
#define HTTP_TIMEOUT_MAX 3600
#define HTTP_SECRET_MAX 4096
#define HTTP_REPLY_KEEP 512 /* bytes of the receiver's answer kept for the reason */

struct http_conf {
	const struct curl_api *curl;
	char *url;          /* without our options */
	uint8_t *secret;    /* NULL: requests are not signed */
	size_t secret_len;
	char *ca_file;      /* NULL: the system's CAs */
	char *authserv_id;  /* our hostname, for the document's "auth" */
	bool raw;
	unsigned concurrency;
	unsigned timeout_s;
};

struct sink_tx {
	struct http_state *st;
	struct sink_tx *next;
	const struct msg_env *env;
	struct sink_doc doc;
	struct bb raw;            /* raw=yes: the message as stored */
	struct bb body;           /* the request body, borrowed by curl while it runs */
	struct curl_slist *hdrs;
	struct curl_job job;      /* in the loop while it runs */
	sink_done_fn *done;
	void *arg;
	int err;                  /* building the request failed: -errno */
	char retry_after[64];     /* the field's value, "" if none */
	uint8_t reply[HTTP_REPLY_KEEP];
	size_t reply_len;
	char errbuf[CURL_ERROR_SIZE];
};

struct http_state {
	const struct http_conf *conf;
	const struct curl_api *curl;
	struct curl_loop *loop;
	struct sink_tx *waiting, **waiting_tail; /* committed, not started */
};

static void conf_free(struct http_conf *c)
{
	if (c == NULL) {
		return;
	}
	if (c->secret != NULL) {
		sodium_memzero(c->secret, c->secret_len);
	}
	free(c->secret); c->secret = NULL;
	free(c->url); c->url = NULL;
	free(c->ca_file); c->ca_file = NULL;
	free(c->authserv_id); c->authserv_id = NULL;
	free(c);
}

/* read_secret loads the HMAC key: the file's bytes without trailing white space. */
static int read_secret(struct http_conf *c, const char *path, char **out_err)
{
	uint8_t buf[HTTP_SECRET_MAX + 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	size_t len = 0;

	if (fd < 0) {
		return sink_err(out_err, "http: secret_file %s: %s", path, strerror(errno));
	}
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			int e = errno;

			close(fd);
			return sink_err(out_err, "http: secret_file %s: %s", path, strerror(e));
		}
		len += (size_t)n;
	}
	close(fd);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t')) {
		len--;
	}
	if (len == 0 || len > HTTP_SECRET_MAX) {
		sodium_memzero(buf, sizeof(buf));
		return sink_err(out_err, "http: secret_file %s: %s", path,
			       len == 0 ? "empty" : "longer than 4096 bytes");
	}
	if ((c->secret = malloc(len)) == NULL) {
		sodium_memzero(buf, sizeof(buf));
		return sink_err(out_err, "http: out of memory");
	}
	memcpy(c->secret, buf, len);
	c->secret_len = len;
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

/*
 * http_options takes our options out of the query string `q` (after '?')
 * into c, and appends every other parameter to `kept` for the receiver.
 */
static int http_options(struct http_conf *c, const char *q, struct bb *kept, const char *spec, char **out_err)
{
	struct span cur = span_cstr(q), key, val;
	bool has_val;
	uint64_t n;

	while (sink_query_next(&cur, &key, &val, &has_val)) {
		if (span_eq(key, span_cstr("secret_file")) && val.len > 0) {
			char *path = strndup((const char *)val.p, val.len);
			int rc = path ? read_secret(c, path, out_err) : sink_err(out_err, "http: out of memory");

			free(path);
			if (rc != 0) {
				return -1;
			}
		} else if (span_eq(key, span_cstr("ca_file")) && val.len > 0) {
			free(c->ca_file);
			if ((c->ca_file = strndup((const char *)val.p, val.len)) == NULL) {
				return sink_err(out_err, "http: out of memory");
			}
			if (access(c->ca_file, R_OK) != 0) {
				return sink_err(out_err, "http: ca_file %s: %s", c->ca_file, strerror(errno));
			}
		} else if (span_eq(key, span_cstr("raw"))) {
			if (!sink_query_bool(val, &c->raw)) {
				return sink_err(out_err, "http: raw: want yes or no in \"%s\"", spec);
			}
		} else if (span_eq(key, span_cstr("concurrency"))) {
			if (!sink_query_uint(val, 1, HTTP_CONCURRENCY_MAX, &n)) {
				return sink_err(out_err, "http: concurrency: want 1..%d in \"%s\"", HTTP_CONCURRENCY_MAX, spec);
			}
			c->concurrency = (unsigned)n;
		} else if (span_eq(key, span_cstr("timeout"))) {
			if (!sink_query_uint(val, 1, HTTP_TIMEOUT_MAX, &n)) {
				return sink_err(out_err, "http: timeout: want 1..%d seconds in \"%s\"", HTTP_TIMEOUT_MAX, spec);
			}
			c->timeout_s = (unsigned)n;
		} else if (span_eq(key, span_cstr("secret_file")) || span_eq(key, span_cstr("ca_file"))) {
			return sink_err(out_err, "http: %.*s: missing path in \"%s\"", (int)key.len, key.p, spec);
		} else {
			/* the receiver's own parameter: kept as written */
			if ((kept->len > 0 && bb_append(kept, "&", 1) != 0) || bb_append_span(kept, key) != 0 ||
			    (has_val && (bb_append(kept, "=", 1) != 0 || bb_append_span(kept, val) != 0))) {
				return sink_err(out_err, "http: out of memory");
			}
		}
	}
	return 0;
}

/* configure: arg is "//HOST[:PORT]/PATH[?QUERY]" (after "http:" or "https:"). */
static int http_configure_scheme(const char *scheme, const struct sink_ctx *ctx, const char *arg, void **out_conf,
				 char **out_err)
{
	struct http_conf *c = calloc(1, sizeof(*c));
	const char *q = strchr(arg, '?'), *hash = strchr(arg, '#');
	size_t base_len = q ? (size_t)(q - arg) : strlen(arg);
	char spec[512];
	struct bb kept, url;
	int rc = -1;

	snprintf(spec, sizeof(spec), "%s:%s", scheme, arg);
	bb_init(&kept, 0);
	bb_init(&url, 0);
	if (c == NULL) {
		return sink_err(out_err, "http: out of memory");
	}
	c->concurrency = HTTP_CONCURRENCY_DEFAULT;
	c->timeout_s = HTTP_TIMEOUT_DEFAULT;
	if (strncmp(arg, "//", 2) != 0 || base_len <= 2 || arg[2] == '/' || hash != NULL) {
		sink_err(out_err, "%s: want %s://HOST[:PORT][/PATH][?OPTIONS], without a #fragment", spec, scheme);
		goto out;
	}
	if (q != NULL && http_options(c, q + 1, &kept, spec, out_err) != 0) {
		goto out;
	}
	if (bb_printf(&url, "%s:%.*s", scheme, (int)base_len, arg) != 0 ||
	    (kept.len > 0 && (bb_append(&url, "?", 1) != 0 || bb_append_span(&url, bb_span(&kept)) != 0)) ||
	    bb_append(&url, "", 1) != 0) {
		sink_err(out_err, "http: out of memory");
		goto out;
	}
	c->url = (char *)url.p;
	url.p = NULL;
	if ((c->authserv_id = strdup(ctx->hostname ? ctx->hostname : "localhost")) == NULL) {
		sink_err(out_err, "http: out of memory");
		goto out;
	}
	if (sodium_init() < 0) {
		sink_err(out_err, "http: libsodium initialisation failed");
		goto out;
	}
	if ((c->curl = curl_loader_load(out_err)) == NULL) {
		goto out;
	}
	*out_conf = c;
	c = NULL;
	rc = 0;
out:
	bb_fini(&kept);
	bb_fini(&url);
	conf_free(c);
	return rc;
}

static int http_configure(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	return http_configure_scheme("http", ctx, arg, out_conf, out_err);
}

static int https_configure(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	return http_configure_scheme("https", ctx, arg, out_conf, out_err);
}

static void http_unconfigure(void *conf)
{
	conf_free(conf);
}

static int http_worker_init(const void *conf, void **out_state)
{
	const struct http_conf *c = conf;
	struct http_state *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		return -ENOMEM;
	}
	st->conf = c;
	st->curl = c->curl;
	st->waiting_tail = &st->waiting;
	if ((st->loop = curl_loop_new(c->curl, (long)c->concurrency, c->concurrency)) == NULL) {
		free(st);
		return -ENOMEM;
	}
	*out_state = st;
	return 0;
}

static void http_worker_fini(void *state)
{
	struct http_state *st = state;

	curl_loop_free(st->loop);
	free(st);
}

static void tx_free(struct sink_tx *tx)
{
	sink_doc_fini(&tx->doc);
	bb_fini(&tx->raw);
	bb_fini(&tx->body);
	if (tx->hdrs != NULL) {
		tx->st->curl->slist_free_all(tx->hdrs);
	}
	free(tx);
}

static int http_tx_begin(void *state, struct sink_tx **out_tx, const struct msg_env *env)
{
	struct http_state *st = state;
	struct sink_tx *tx = calloc(1, sizeof(*tx));

	if (tx == NULL) {
		return -ENOMEM;
	}
	tx->st = st;
	tx->env = env;
	bb_init(&tx->raw, 0);
	bb_init(&tx->body, 0);
	if (sink_doc_init(&tx->doc) != 0) {
		tx_free(tx);
		return -ENOMEM;
	}
	*out_tx = tx;
	return 0;
}

static int http_tx_write(struct sink_tx *tx, struct span bytes)
{
	int rc = tx->st->conf->raw ? bb_append_span(&tx->raw, bytes) : 0;

	return rc != 0 ? rc : sink_doc_feed(&tx->doc, bytes);
}

static void http_tx_abort(struct sink_tx *tx)
{
	tx_free(tx);
}

/* build_multipart wraps the document (in tx->body) and the raw message into a form. */
static int build_multipart(struct sink_tx *tx, char *out_ctype, size_t ctype_size)
{
	struct bb form;
	char boundary[8 + 33];
	uint8_t rnd[16];
	int rc;

	/* A random boundary that occurs in neither part (RFC 2046 §5.1.1). */
	do {
		randombytes_buf(rnd, sizeof(rnd));
		memcpy(boundary, "oceanmx-", 8);
		sodium_bin2hex(boundary + 8, 33, rnd, sizeof(rnd));
	} while (memmem(tx->body.p, tx->body.len, boundary, strlen(boundary)) != NULL ||
		 memmem(tx->raw.p, tx->raw.len, boundary, strlen(boundary)) != NULL);
	snprintf(out_ctype, ctype_size, "Content-Type: multipart/form-data; boundary=%s", boundary);
	bb_init(&form, 0);
	rc = bb_printf(&form,
		       "--%s\r\nContent-Disposition: form-data; name=\"message\"\r\n"
		       "Content-Type: application/json\r\n\r\n",
		       boundary);
	rc = rc ? rc : bb_append_span(&form, bb_span(&tx->body));
	rc = rc ? rc
		: bb_printf(&form,
			    "\r\n--%s\r\nContent-Disposition: form-data; name=\"raw\"; filename=\"%s.eml\"\r\n"
			    "Content-Type: message/rfc822\r\n\r\n",
			    boundary, tx->env->id);
	rc = rc ? rc : bb_append_span(&form, bb_span(&tx->raw));
	rc = rc ? rc : bb_printf(&form, "\r\n--%s--\r\n", boundary);
	if (rc != 0) {
		bb_fini(&form);
		return rc;
	}
	bb_fini(&tx->body);
	tx->body = form;
	bb_reset(&tx->raw, 1);
	return 0;
}

/* append_header adds one "Name: value" line; 0 or -ENOMEM. */
static int append_header(struct sink_tx *tx, const char *line)
{
	struct curl_slist *l = tx->st->curl->slist_append(tx->hdrs, line);

	if (l == NULL) {
		return -ENOMEM;
	}
	tx->hdrs = l;
	return 0;
}

/* build_request makes the body and the header list of tx. 0 or -errno. */
static int build_request(struct sink_tx *tx)
{
	const struct http_conf *c = tx->st->conf;
	char ctype[128] = "Content-Type: application/json", line[256];
	int rc = sink_doc_finish(&tx->doc, &tx->body, tx->env, c->authserv_id);

	sink_doc_fini(&tx->doc); /* the parse is done: free it before the request runs */
	if (rc == 0 && c->raw) {
		rc = build_multipart(tx, ctype, sizeof(ctype));
	}
	rc = rc ? rc : append_header(tx, ctype);
	if (rc == 0 && c->secret != NULL) {
		/* Stripe's scheme: HMAC-SHA256 over "<t>.<body>", the time in the header. */
		crypto_auth_hmacsha256_state h;
		uint8_t mac[crypto_auth_hmacsha256_BYTES];
		char t[24], hex[2 * sizeof(mac) + 1];

		snprintf(t, sizeof(t), "%lld", (long long)time(NULL));
		crypto_auth_hmacsha256_init(&h, c->secret, c->secret_len);
		crypto_auth_hmacsha256_update(&h, (const uint8_t *)t, strlen(t));
		crypto_auth_hmacsha256_update(&h, (const uint8_t *)".", 1);
		crypto_auth_hmacsha256_update(&h, tx->body.p, tx->body.len);
		crypto_auth_hmacsha256_final(&h, mac);
		sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
		snprintf(line, sizeof(line), "Oceanmx-Signature: t=%s,v1=%s", t, hex);
		rc = append_header(tx, line);
	}
	if (rc == 0) {
		snprintf(line, sizeof(line), "Oceanmx-Message-Id: %s", tx->env->id);
		rc = append_header(tx, line);
	}
	if (rc == 0) {
		snprintf(line, sizeof(line), "Idempotency-Key: %s", tx->env->id);
		rc = append_header(tx, line);
	}
	/* No "Expect: 100-continue" round trip for large bodies. */
	return rc ? rc : append_header(tx, "Expect:");
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink_tx *tx = arg;
	size_t n = size * nmemb, room = sizeof(tx->reply) - tx->reply_len;

	memcpy(tx->reply + tx->reply_len, p, n < room ? n : room);
	tx->reply_len += n < room ? n : room;
	return n; /* read on, so the connection stays reusable */
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink_tx *tx = arg;
	struct span line = span_make(p, size * nmemb), v;

	if (line.len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		tx->retry_after[0] = '\0'; /* a new response (after a 1xx) */
		tx->reply_len = 0;
	} else if (sink_http_header_value(line, "Retry-After", &v)) {
		size_t n = v.len < sizeof(tx->retry_after) - 1 ? v.len : sizeof(tx->retry_after) - 1;

		memcpy(tx->retry_after, v.p, n);
		tx->retry_after[n] = '\0';
	}
	return size * nmemb;
}

/* start_one configures e for tx's request (curl_loop's start). */
static CURLcode start_one(struct curl_job *job, CURL *e)
{
	struct sink_tx *tx = CURL_JOB_OWNER(job, struct sink_tx, job);
	const struct curl_api *C = tx->st->curl;
	const struct http_conf *c = tx->st->conf;
	CURLcode rc;

	tx->errbuf[0] = '\0';
	rc = curl_loop_set_post(C, e, c->url, tx->body.p, tx->body.len, tx->hdrs, (long)c->timeout_s * 1000, on_body,
				tx);
#define SET(opt, val) CURL_SETOPT(C, rc, e, opt, val)
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, tx);
	SET(CURLOPT_ERRORBUFFER, tx->errbuf);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file != NULL) {
		SET(CURLOPT_CAINFO, c->ca_file);
	}
#undef SET
	return rc;
}

/* finish_one answers done() for a request curl is through with, and frees tx (curl_loop's done). */
static void finish_one(struct curl_job *job, CURL *e, CURLcode result)
{
	struct sink_tx *tx = CURL_JOB_OWNER(job, struct sink_tx, job);
	const struct curl_api *C = tx->st->curl;
	char why[512], text[SINK_TEXT_MAX + 1], ra[64] = "";
	enum sink_rc rc;
	long status = 0;
	uint64_t secs;

	if (tx->retry_after[0] != '\0' &&
	    sink_http_retry_after(span_cstr(tx->retry_after), (int64_t)time(NULL), &secs)) {
		snprintf(ra, sizeof(ra), "; retry_after=%llus", (unsigned long long)secs);
	}
	if (result != CURLE_OK) {
		rc = SINK_TEMPFAIL;
		snprintf(why, sizeof(why), "http: %s%s%s", C->easy_strerror(result), tx->errbuf[0] ? ": " : "",
			 tx->errbuf);
	} else {
		C->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		rc = sink_http_status_rc(status);
		sink_text_line(text, sizeof(text), span_make(tx->reply, tx->reply_len));
		snprintf(why, sizeof(why), "http %ld%s%s%s", status, text[0] ? ": " : "", text, ra);
	}
	tx->done(tx->arg, rc, rc == SINK_OK ? NULL : why);
	tx_free(tx);
}

/*
 * pump starts waiting requests while slots are free, lets curl work, and
 * finishes those that are done. With `wait`, it returns only when no
 * request is waiting or running; without, it does one non-blocking round.
 */
static void pump(struct http_state *st, bool wait)
{
	for (;;) {
		while (st->waiting != NULL && curl_loop_running(st->loop) < st->conf->concurrency) {
			struct sink_tx *tx = st->waiting;
			int rc;

			st->waiting = tx->next;
			if (st->waiting == NULL) {
				st->waiting_tail = &st->waiting;
			}
			tx->job.start = start_one;
			tx->job.done = finish_one;
			if ((rc = curl_loop_add(st->loop, &tx->job)) != 0) {
				char why[128];

				snprintf(why, sizeof(why), "http: cannot start the request: %s", strerror(-rc));
				tx->done(tx->arg, SINK_TEMPFAIL, why);
				tx_free(tx);
			}
		}
		if (curl_loop_running(st->loop) == 0) {
			return;
		}
		curl_loop_run(st->loop, wait ? 1000 : 0);
		if (!wait) {
			return;
		}
	}
}

static void http_tx_commit(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	struct http_state *st = tx->st;
	int rc = build_request(tx);

	tx->done = done;
	tx->arg = arg;
	if (rc != 0) {
		char why[128];

		snprintf(why, sizeof(why), "http: cannot build the request: %s", strerror(-rc));
		done(arg, SINK_TEMPFAIL, why);
		tx_free(tx);
		return;
	}
	tx->next = NULL;
	*st->waiting_tail = tx;
	st->waiting_tail = &tx->next;
	pump(st, false); /* the first requests go out while the batch is still being read */
}

static void http_flush(void *state)
{
	pump(state, true);
}

const struct sink_ops sink_http_ops = {
	.name = "http",
	.abi = SINK_ABI_VERSION,
	.configure = http_configure,
	.unconfigure = http_unconfigure,
	.worker_init = http_worker_init,
	.worker_fini = http_worker_fini,
	.tx_begin = http_tx_begin,
	.tx_write = http_tx_write,
	.tx_commit = http_tx_commit,
	.tx_abort = http_tx_abort,
	.flush = http_flush,
};

const struct sink_ops sink_https_ops = {
	.name = "https",
	.abi = SINK_ABI_VERSION,
	.configure = https_configure,
	.unconfigure = http_unconfigure,
	.worker_init = http_worker_init,
	.worker_fini = http_worker_fini,
	.tx_begin = http_tx_begin,
	.tx_write = http_tx_write,
	.tx_commit = http_tx_commit,
	.tx_abort = http_tx_abort,
	.flush = http_flush,
};
