/*
 * metrics.c - the registry and the exposition writer; see metrics.h.
 *
 * The registry is a small array under one mutex that only registrants (the
 * main thread at start-up) and the scraper take; shards never do, their
 * counters are read with relaxed loads by the sources.
 */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define METRICS_SOURCES_MAX 32

struct reg_entry {
	metrics_source_fn *src;
	metrics_ready_fn *ready;
	void *arg;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry reg[METRICS_SOURCES_MAX];
static size_t num_reg;

void metrics_hist_observe(struct metrics_hist *h, const uint64_t *bounds, unsigned num_bounds, uint64_t v)
{
	unsigned i = 0;

	while (i < num_bounds && v > bounds[i]) {
		i++;
	}
	metrics_add(&h->b[i], 1);
	metrics_add(&h->count, 1);
	metrics_add(&h->sum, v);
}

static const char *const type_names[METRICS_TYPE_COUNT] = { "counter", "gauge", "histogram" };

int metrics_family(struct bb *out, const char *name, enum metrics_type type, const char *help)
{
	if (bb_printf(out, "# HELP %s ", name) != 0) {
		return -ENOMEM;
	}
	/* HELP text escapes only backslash and newline (format 0.0.4). */
	for (const char *p = help; *p != '\0'; p++) {
		int rc;

		if (*p == '\\') {
			rc = bb_append(out, "\\\\", 2);
		} else if (*p == '\n') {
			rc = bb_append(out, "\\n", 2);
		} else {
			rc = bb_append(out, p, 1);
		}
		if (rc != 0) {
			return -ENOMEM;
		}
	}
	return bb_printf(out, "\n# TYPE %s %s\n", name, type_names[type]) == 0 ? 0 : -ENOMEM;
}

int metrics_label_escape(struct bb *out, const char *v)
{
	for (const char *p = v; *p != '\0'; p++) {
		int rc;

		switch (*p) {
		case '\\':
			rc = bb_append(out, "\\\\", 2);
			break;
		case '"':
			rc = bb_append(out, "\\\"", 2);
			break;
		case '\n':
			rc = bb_append(out, "\\n", 2);
			break;
		default:
			rc = bb_append(out, p, 1);
			break;
		}
		if (rc != 0) {
			return -ENOMEM;
		}
	}
	return 0;
}

/* labels appends {k="v",...} from a NULL-terminated pair list; nothing when empty. */
static int labels(struct bb *out, va_list ap)
{
	const char *k = va_arg(ap, const char *);
	bool first = true;

	while (k != NULL) {
		const char *v = va_arg(ap, const char *);

		if (bb_printf(out, "%s%s=\"", first ? "{" : ",", k) != 0 || metrics_label_escape(out, v ? v : "") != 0 ||
		    bb_append(out, "\"", 1) != 0) {
			return -ENOMEM;
		}
		first = false;
		k = va_arg(ap, const char *);
	}
	if (!first && bb_append(out, "}", 1) != 0) {
		return -ENOMEM;
	}
	return 0;
}

int metrics_sample(struct bb *out, const char *name, uint64_t value, ...)
{
	va_list ap;
	int rc;

	if (bb_append_str(out, name) != 0) {
		return -ENOMEM;
	}
	va_start(ap, value);
	rc = labels(out, ap);
	va_end(ap);
	if (rc != 0 || bb_printf(out, " %llu\n", (unsigned long long)value) != 0) {
		return -ENOMEM;
	}
	return 0;
}

int metrics_sample_f(struct bb *out, const char *name, double value, ...)
{
	va_list ap;
	int rc;

	if (bb_append_str(out, name) != 0) {
		return -ENOMEM;
	}
	va_start(ap, value);
	rc = labels(out, ap);
	va_end(ap);
	if (rc != 0 || bb_printf(out, " %.9g\n", value) != 0) {
		return -ENOMEM;
	}
	return 0;
}

int metrics_hist_write(struct bb *out, const char *name, const struct metrics_hist *const *h, size_t num_h,
		       const uint64_t *bounds, unsigned num_bounds, double scale, const char *label,
		       const char *label_value)
{
	char n[128], le[32];
	uint64_t cum = 0, count = 0, sum = 0;

	for (unsigned i = 0; i <= num_bounds; i++) {
		for (size_t k = 0; k < num_h; k++) {
			cum += metrics_get(&h[k]->b[i]);
		}
		if (i < num_bounds) {
			snprintf(le, sizeof(le), "%.9g", (double)bounds[i] / scale);
		} else {
			snprintf(le, sizeof(le), "+Inf");
		}
		snprintf(n, sizeof(n), "%s_bucket", name);
		if (metrics_sample(out, n, cum, "le", le, label, label_value, (const char *)NULL) != 0) {
			return -ENOMEM;
		}
	}
	for (size_t k = 0; k < num_h; k++) {
		count += metrics_get(&h[k]->count);
		sum += metrics_get(&h[k]->sum);
	}
	/* The buckets were read before count: a racing observation can make
	 * count exceed +Inf by a little, never the other way; report +Inf's. */
	if (count > cum) {
		count = cum;
	}
	snprintf(n, sizeof(n), "%s_sum", name);
	if (metrics_sample_f(out, n, (double)sum / scale, label, label_value, (const char *)NULL) != 0) {
		return -ENOMEM;
	}
	snprintf(n, sizeof(n), "%s_count", name);
	return metrics_sample(out, n, count, label, label_value, (const char *)NULL);
}

/* ------------------------------------------------------------ registry */

static int reg_add(metrics_source_fn *src, metrics_ready_fn *ready, void *arg)
{
	int rc = 0;

	pthread_mutex_lock(&reg_mu);
	if (num_reg == METRICS_SOURCES_MAX) {
		rc = -ENOMEM;
	} else {
		reg[num_reg].src = src;
		reg[num_reg].ready = ready;
		reg[num_reg].arg = arg;
		num_reg++;
	}
	pthread_mutex_unlock(&reg_mu);
	return rc;
}

int metrics_source_add(metrics_source_fn *fn, void *arg)
{
	return reg_add(fn, NULL, arg);
}

int metrics_ready_add(metrics_ready_fn *fn, void *arg)
{
	return reg_add(NULL, fn, arg);
}

void metrics_registry_lock(void)
{
	pthread_mutex_lock(&reg_mu);
}

void metrics_registry_unlock(void)
{
	pthread_mutex_unlock(&reg_mu);
}

void metrics_registry_clear(void)
{
	pthread_mutex_lock(&reg_mu);
	num_reg = 0;
	pthread_mutex_unlock(&reg_mu);
}

int metrics_render(struct bb *out)
{
	int rc = 0;

	pthread_mutex_lock(&reg_mu);
	for (size_t i = 0; i < num_reg && rc == 0; i++) {
		if (reg[i].src != NULL) {
			rc = reg[i].src(reg[i].arg, out);
		}
	}
	pthread_mutex_unlock(&reg_mu);
	return rc;
}

bool metrics_ready(const char **out_why)
{
	bool ok = true;

	pthread_mutex_lock(&reg_mu);
	for (size_t i = 0; i < num_reg && ok; i++) {
		if (reg[i].ready != NULL) {
			ok = reg[i].ready(reg[i].arg, out_why);
		}
	}
	pthread_mutex_unlock(&reg_mu);
	return ok;
}
