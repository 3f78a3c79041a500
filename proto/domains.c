/*
 * domains.c - recipient domain list; see domains.h.
 *
 * The list owns one string pool (lower-cased names, NUL-separated) and two
 * sorted arrays pointing into it: exact names and ".parent" names (stored
 * without the dot). A lookup is one binary search plus one per label.
 */
#include "domains.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_cmd.h"

struct dl_ent {
	const char *name; /* lower case, NUL-terminated */
	size_t len;
};

struct domain_list {
	struct dl_ent *exact;
	size_t num_exact;
	struct dl_ent *sub; /* ".example.org" stored as "example.org" */
	size_t num_sub;
	char *pool;
};

static uint8_t lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static bool is_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* cmp_span compares a span (folded to lower case) with an entry. */
static int cmp_span(struct span s, const struct dl_ent *e)
{
	size_t n = s.len < e->len ? s.len : e->len;

	for (size_t i = 0; i < n; i++) {
		uint8_t a = lower(s.p[i]), b = (uint8_t)e->name[i];

		if (a != b) {
			return a < b ? -1 : 1;
		}
	}
	return s.len == e->len ? 0 : (s.len < e->len ? -1 : 1);
}

static int cmp_ent(const void *a, const void *b)
{
	const struct dl_ent *x = a, *y = b;

	return cmp_span(span_make(x->name, x->len), y);
}

static bool find(const struct dl_ent *v, size_t n, struct span s)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_span(s, &v[mid]);

		if (c == 0) {
			return true;
		}
		if (c < 0) {
			hi = mid;
		} else {
			lo = mid + 1;
		}
	}
	return false;
}

static bool entry_valid(struct span name)
{
	if (name.len == 0 || name.len > SMTP_DOMAIN_MAX) {
		return false;
	}
	if (name.p[0] == '[') {
		if (name.len < 3 || name.p[name.len - 1] != ']') {
			return false;
		}
		for (size_t i = 1; i + 1 < name.len; i++) {
			if (name.p[i] < 0x21 || name.p[i] > 0x7e || name.p[i] == '[' || name.p[i] == ']') {
				return false;
			}
		}
		return true;
	}
	return smtp_domain_valid(name);
}

void domain_list_free(struct domain_list *dl)
{
	if (dl == NULL) {
		return;
	}
	free(dl->exact); dl->exact = NULL;
	free(dl->sub); dl->sub = NULL;
	free(dl->pool); dl->pool = NULL;
	free(dl);
}

int domain_list_parse(struct domain_list **out_list, const char *spec)
{
	size_t slen = strlen(spec), n = 0, pos = 0;
	struct domain_list *dl = NULL;
	int rc = -ENOMEM;

	/* Upper bound on entries: one per separator run + 1. */
	for (size_t i = 0; i < slen; i++) {
		if (!is_sep(spec[i]) && (i == 0 || is_sep(spec[i - 1]))) {
			n++;
		}
	}
	if (n == 0) {
		return -EINVAL;
	}
	dl = calloc(1, sizeof(*dl));
	if (dl == NULL) {
		goto out;
	}
	dl->pool = malloc(slen + 1);
	dl->exact = calloc(n, sizeof(*dl->exact));
	dl->sub = calloc(n, sizeof(*dl->sub));
	if (dl->pool == NULL || dl->exact == NULL || dl->sub == NULL) {
		goto out;
	}
	rc = -EINVAL;
	while (pos < slen) {
		size_t start, len;
		bool sub;
		char *name;

		while (pos < slen && is_sep(spec[pos])) {
			pos++;
		}
		if (pos == slen) {
			break;
		}
		start = pos;
		while (pos < slen && !is_sep(spec[pos])) {
			pos++;
		}
		sub = spec[start] == '.';
		if (sub) {
			start++;
		}
		len = pos - start;
		if (!entry_valid(span_make(spec + start, len)) || (sub && spec[start] == '[')) {
			goto out;
		}
		name = dl->pool + start;
		for (size_t i = 0; i < len; i++) {
			name[i] = (char)lower((uint8_t)spec[start + i]);
		}
		name[len] = '\0'; /* the separator (or the end) is overwritten, never the name */
		if (sub) {
			dl->sub[dl->num_sub++] = (struct dl_ent){ name, len };
		} else {
			dl->exact[dl->num_exact++] = (struct dl_ent){ name, len };
		}
	}
	qsort(dl->exact, dl->num_exact, sizeof(*dl->exact), cmp_ent);
	qsort(dl->sub, dl->num_sub, sizeof(*dl->sub), cmp_ent);
	*out_list = dl;
	dl = NULL;
	rc = 0;
out:
	domain_list_free(dl);
	return rc;
}

size_t domain_list_count(const struct domain_list *dl)
{
	return dl ? dl->num_exact + dl->num_sub : 0;
}

bool domain_list_match(const void *arg, struct span dom)
{
	const struct domain_list *dl = arg;

	if (dl == NULL || dom.len == 0) {
		return false;
	}
	if (find(dl->exact, dl->num_exact, dom)) {
		return true;
	}
	/* Each proper parent: "b.a.example.org" -> "a.example.org", "example.org", "org". */
	for (size_t i = 0; i + 1 < dom.len; i++) {
		if (dom.p[i] == '.' && i != 0 && find(dl->sub, dl->num_sub, span_make(dom.p + i + 1, dom.len - i - 1))) {
			return true;
		}
	}
	return false;
}
