/* test_metrics.c - the exposition writer, the registry and the endpoint's routes (core/metrics*.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "core/metrics.h"
#include "core/metrics_http.h"
#include "core/metrics_shard.h"

static char *str(struct bb *b)
{
	cr_assert_eq(bb_append(b, "", 1), 0);
	return (char *)b->p;
}

Test(metrics, family_and_labels_escaped)
{
	struct bb b;

	bb_init(&b, 0);
	cr_assert_eq(metrics_family(&b, "oceanmx_x_total", METRICS_COUNTER, "a \\ b\nc"), 0);
	cr_assert_eq(metrics_sample(&b, "oceanmx_x_total", 7, "sink", "a\"b\\c\nd", "index", "0", (const char *)NULL), 0);
	cr_assert_eq(metrics_sample(&b, "oceanmx_x_total", 18446744073709551615ull, (const char *)NULL), 0);
	cr_assert_str_eq(str(&b), "# HELP oceanmx_x_total a \\\\ b\\nc\n"
				  "# TYPE oceanmx_x_total counter\n"
				  "oceanmx_x_total{sink=\"a\\\"b\\\\c\\nd\",index=\"0\"} 7\n"
				  "oceanmx_x_total 18446744073709551615\n");
	bb_fini(&b);
}

Test(metrics, histogram_is_cumulative_and_summed)
{
	static const uint64_t bounds[3] = { 1000, 10000, 100000 };
	static struct metrics_hist h1, h2;
	const struct metrics_hist *hs[2] = { &h1, &h2 };
	struct bb b;

	metrics_hist_observe(&h1, bounds, 3, 500);
	metrics_hist_observe(&h1, bounds, 3, 1000);   /* le is inclusive */
	metrics_hist_observe(&h2, bounds, 3, 50000);
	metrics_hist_observe(&h2, bounds, 3, 5000000); /* +Inf only */
	bb_init(&b, 0);
	cr_assert_eq(metrics_hist_write(&b, "t_seconds", hs, 2, bounds, 3, 1e6, NULL, NULL), 0);
	cr_assert_str_eq(str(&b), "t_seconds_bucket{le=\"0.001\"} 2\n"
				  "t_seconds_bucket{le=\"0.01\"} 2\n"
				  "t_seconds_bucket{le=\"0.1\"} 3\n"
				  "t_seconds_bucket{le=\"+Inf\"} 4\n"
				  "t_seconds_sum 5.0515\n"
				  "t_seconds_count 4\n");
	bb_fini(&b);
}

Test(metrics, owner_counters)
{
	_Atomic uint64_t c = 0;
	static struct metrics_shard m;

	metrics_add(&c, 2);
	metrics_add(&c, 3);
	cr_assert_eq(metrics_get(&c), 5);
	metrics_set(&c, 1);
	cr_assert_eq(metrics_get(&c), 1);
	metrics_shard_code(m.replies, 250);
	metrics_shard_code(m.replies, 599);
	metrics_shard_code(m.replies, 600); /* out of range: ignored */
	metrics_shard_code(m.replies, 199);
	cr_assert_eq(metrics_get(&m.replies[50]), 1);
	cr_assert_eq(metrics_get(&m.replies[399]), 1);
}

static int src_a(void *arg, struct bb *out)
{
	(void)arg;
	return bb_append_str(out, "a 1\n");
}

static int src_b(void *arg, struct bb *out)
{
	return bb_printf(out, "b %d\n", *(int *)arg);
}

static bool not_ready(void *arg, const char **why)
{
	if (*(int *)arg) {
		*why = "testing";
		return false;
	}
	return true;
}

static const char *respond(const char *req, struct bb *b)
{
	struct http_req r;
	size_t used;
	enum http_parse rc = http_req_parse(&r, &used, (const uint8_t *)req, strlen(req));

	bb_reset(b, 0);
	cr_assert_eq(metrics_http_respond(b, rc, &r), 0);
	return str(b);
}

Test(metrics, registry_and_routes)
{
	static int val = 42, veto = 0;
	struct bb b;

	metrics_registry_clear();
	cr_assert_eq(metrics_source_add(src_a, NULL), 0);
	cr_assert_eq(metrics_source_add(src_b, &val), 0);
	cr_assert_eq(metrics_ready_add(not_ready, &veto), 0);
	bb_init(&b, 0);
	cr_assert_str_eq(respond("GET /metrics HTTP/1.1\r\n\r\n", &b),
			 "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
			 "Content-Length: 9\r\nConnection: close\r\nCache-Control: no-store\r\n\r\na 1\nb 42\n");
	cr_assert(strstr(respond("HEAD /metrics HTTP/1.1\r\n\r\n", &b), "Content-Length: 9\r\n") != NULL);
	cr_assert(strstr(respond("HEAD /metrics HTTP/1.1\r\n\r\n", &b), "\r\n\r\n")[4] == '\0', "HEAD has no body");
	cr_assert(strncmp(respond("GET /healthz HTTP/1.1\r\n\r\n", &b), "HTTP/1.1 200 OK\r\n", 17) == 0);
	cr_assert(strstr(respond("GET /healthz HTTP/1.1\r\n\r\n", &b), "\r\n\r\nok\n") != NULL);
	cr_assert(strncmp(respond("GET /readyz HTTP/1.1\r\n\r\n", &b), "HTTP/1.1 200 OK\r\n", 17) == 0);
	veto = 1;
	cr_assert(strncmp(respond("GET /readyz HTTP/1.1\r\n\r\n", &b), "HTTP/1.1 503 ", 13) == 0);
	cr_assert(strstr(str(&b), "not ready: testing\n") != NULL);
	cr_assert(strncmp(respond("GET /nope HTTP/1.1\r\n\r\n", &b), "HTTP/1.1 404 ", 13) == 0);
	cr_assert(strncmp(respond("GET /metrics/ HTTP/1.1\r\n\r\n", &b), "HTTP/1.1 404 ", 13) == 0);
	cr_assert(strncmp(respond("DELETE /metrics HTTP/1.1\r\n\r\n", &b), "HTTP/1.1 405 ", 13) == 0);
	cr_assert(strstr(str(&b), "Allow: GET, HEAD\r\n") != NULL);
	cr_assert(strncmp(respond("hello\r\n\r\n", &b), "HTTP/1.1 400 ", 13) == 0);
	cr_assert(strstr(str(&b), "Connection: close\r\n") != NULL);
	metrics_registry_clear();
	bb_fini(&b);
}
