/*
 * psl.c - Public Suffix List: parse once into a sorted rule table, then
 * pure lookups (exact, wildcard and exception rules; the implicit "*").
 * The table owns its strings; it is never modified after psl_parse.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psl.h"

enum psl_kind {
	PSL_EXACT = 0, /* "a.b" */
	PSL_WILD,      /* "*.a.b", stored as "a.b" */
	PSL_EXCEPT,    /* "!a.b", stored as "a.b" */
};

struct psl_rule {
	char *name;
	enum psl_kind kind;
};

struct psl {
	struct psl_rule *rules;
	size_t num;
};

static int rule_cmp(const void *a, const void *b)
{
	const struct psl_rule *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c != 0 ? c : (int)x->kind - (int)y->kind;
}

/* punycode encodes code points cp[0..n) (RFC 3492 §6.3); false on overflow. */
static bool punycode(char *out, size_t out_len, size_t *out_pos, const uint32_t *cp, size_t n)
{
	const uint32_t base = 36, tmin = 1, tmax = 26, skew = 38, damp = 700;
	uint32_t nn = 128, delta = 0, bias = 72, h, b = 0;
	size_t pos = *out_pos;

	for (size_t i = 0; i < n; i++) {
		if (cp[i] < 0x80) {
			if (pos + 1 >= out_len) {
				return false;
			}
			out[pos++] = (char)cp[i];
			b++;
		}
	}
	h = b;
	if (b > 0) {
		if (pos + 1 >= out_len) {
			return false;
		}
		out[pos++] = '-';
	}
	while (h < n) {
		uint32_t m = UINT32_MAX;

		for (size_t i = 0; i < n; i++) {
			if (cp[i] >= nn && cp[i] < m) {
				m = cp[i];
			}
		}
		if ((uint64_t)(m - nn) * (h + 1) + delta > UINT32_MAX / 2) {
			return false;
		}
		delta += (m - nn) * (h + 1);
		nn = m;
		for (size_t i = 0; i < n; i++) {
			if (cp[i] < nn) {
				delta++;
			}
			if (cp[i] == nn) {
				uint32_t q = delta;

				for (uint32_t k = base;; k += base) {
					uint32_t t = k <= bias ? tmin : k >= bias + tmax ? tmax : k - bias, d;

					if (q < t) {
						break;
					}
					d = t + (q - t) % (base - t);
					if (pos + 1 >= out_len) {
						return false;
					}
					out[pos++] = (char)(d < 26 ? 'a' + d : '0' + d - 26);
					q = (q - t) / (base - t);
				}
				if (pos + 1 >= out_len) {
					return false;
				}
				out[pos++] = (char)(q < 26 ? 'a' + q : '0' + q - 26);
				/* adapt (RFC 3492 §6.1) */
				{
					uint32_t dd = h == b ? delta / damp : delta / 2, k = 0;

					dd += dd / (h + 1);
					while (dd > ((base - tmin) * tmax) / 2) {
						dd /= base - tmin;
						k += base;
					}
					bias = k + (base - tmin + 1) * dd / (dd + skew);
				}
				delta = 0;
				h++;
			}
		}
		delta++;
		nn++;
	}
	*out_pos = pos;
	return true;
}

/* to_ascii writes one rule's name with each non-ASCII label as an A-label, lower case. */
static bool to_ascii(char *out, size_t out_len, const char *in, size_t len)
{
	size_t pos = 0, i = 0;

	while (i <= len) {
		size_t end = i;
		bool ascii = true;

		while (end < len && in[end] != '.') {
			if ((unsigned char)in[end] >= 0x80) {
				ascii = false;
			}
			end++;
		}
		if (pos > 0 || i > 0) {
			if (pos + 1 >= out_len) {
				return false;
			}
			out[pos++] = '.';
		}
		if (ascii) {
			for (size_t k = i; k < end; k++) {
				char c = in[k];

				if (pos + 1 >= out_len) {
					return false;
				}
				out[pos++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
			}
		} else {
			uint32_t cp[PSL_NAME_MAX];
			size_t n = 0, k = i;

			while (k < end) {
				unsigned char c = (unsigned char)in[k];
				uint32_t v;
				int extra;

				if (c < 0x80) {
					v = c >= 'A' && c <= 'Z' ? c + 32u : c;
					extra = 0;
				} else if ((c & 0xe0) == 0xc0) {
					v = c & 0x1f;
					extra = 1;
				} else if ((c & 0xf0) == 0xe0) {
					v = c & 0x0f;
					extra = 2;
				} else if ((c & 0xf8) == 0xf0) {
					v = c & 0x07;
					extra = 3;
				} else {
					return false;
				}
				k++;
				for (int e = 0; e < extra; e++, k++) {
					if (k >= end || ((unsigned char)in[k] & 0xc0) != 0x80) {
						return false;
					}
					v = v << 6 | ((unsigned char)in[k] & 0x3f);
				}
				if (n == PSL_NAME_MAX) {
					return false;
				}
				cp[n++] = v;
			}
			if (pos + 4 >= out_len) {
				return false;
			}
			memcpy(out + pos, "xn--", 4);
			pos += 4;
			if (!punycode(out, out_len, &pos, cp, n)) {
				return false;
			}
		}
		i = end + 1;
	}
	out[pos] = '\0';
	return true;
}

size_t psl_num_rules(const struct psl *p)
{
	return p->num;
}

void psl_free(struct psl *p)
{
	if (p == NULL) {
		return;
	}
	for (size_t i = 0; i < p->num; i++) {
		free(p->rules[i].name);
	}
	free(p->rules);
	free(p);
}

struct psl *psl_parse(const char *text, size_t len)
{
	struct psl *p = calloc(1, sizeof(*p));
	size_t cap = 0, i = 0;

	if (p == NULL) {
		return NULL;
	}
	while (i < len) {
		const char *line = text + i, *nl = memchr(line, '\n', len - i);
		size_t n = nl ? (size_t)(nl - line) : len - i, w = 0;
		enum psl_kind kind = PSL_EXACT;
		char name[PSL_NAME_MAX * 4 + 1];

		i += n + (nl != NULL);
		while (w < n && line[w] != ' ' && line[w] != '\t' && line[w] != '\r') {
			w++; /* a rule ends at the first whitespace */
		}
		if (w == 0 || (w >= 2 && line[0] == '/' && line[1] == '/')) {
			continue;
		}
		if (line[0] == '!') {
			kind = PSL_EXCEPT;
			line++;
			w--;
		} else if (w >= 2 && line[0] == '*' && line[1] == '.') {
			kind = PSL_WILD;
			line += 2;
			w -= 2;
		}
		if (w == 0 || !to_ascii(name, sizeof(name), line, w)) {
			continue; /* not a rule we can use */
		}
		if (p->num == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			struct psl_rule *nr = realloc(p->rules, ncap * sizeof(*nr));

			if (nr == NULL) {
				psl_free(p);
				return NULL;
			}
			p->rules = nr;
			cap = ncap;
		}
		if ((p->rules[p->num].name = strdup(name)) == NULL) {
			psl_free(p);
			return NULL;
		}
		p->rules[p->num++].kind = kind;
	}
	if (p->num > 0) {
		qsort(p->rules, p->num, sizeof(*p->rules), rule_cmp);
	}
	return p;
}

struct psl *psl_load(const char *path, char **out_err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	struct psl *p;

	*out_err = NULL;
	if (f == NULL) {
		if (asprintf(out_err, "psl: %s: %s", path, strerror(errno)) < 0) {
			*out_err = NULL;
		}
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			char *nb = realloc(buf, cap ? cap * 2 : 1 << 18);

			if (nb == NULL) {
				break;
			}
			buf = nb;
			cap = cap ? cap * 2 : 1 << 18;
		}
		size_t got = fread(buf + len, 1, cap - len, f);

		len += got;
		if (got == 0) {
			break;
		}
	}
	fclose(f);
	p = buf ? psl_parse(buf, len) : NULL;
	free(buf);
	if (p == NULL && asprintf(out_err, "psl: %s: out of memory", path) < 0) {
		*out_err = NULL;
	}
	return p;
}

static bool has(const struct psl *p, const char *name, enum psl_kind kind)
{
	struct psl_rule key = { .name = (char *)(uintptr_t)name, .kind = kind };

	return p->num > 0 && bsearch(&key, p->rules, p->num, sizeof(*p->rules), rule_cmp) != NULL;
}

bool psl_org_domain(const struct psl *p, char *out, size_t out_len, const char *domain)
{
	char d[PSL_NAME_MAX + 1];
	size_t starts[PSL_NAME_MAX], nl = 0, len = strlen(domain), ps = SIZE_MAX;

	while (len > 0 && domain[len - 1] == '.') {
		len--;
	}
	while (len > 0 && domain[0] == '.') {
		domain++;
		len--;
	}
	if (len == 0 || len > PSL_NAME_MAX) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = domain[i];

		d[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
		if ((i == 0 || domain[i - 1] == '.')) {
			if (c == '.') {
				return false; /* empty label */
			}
			starts[nl++] = i;
		}
	}
	d[len] = '\0';
	/* longest match first; an exception makes its parent the suffix */
	for (size_t i = 0; i < nl; i++) {
		const char *s = d + starts[i];

		if (has(p, s, PSL_EXCEPT)) {
			ps = i + 1;
			break;
		}
		if (has(p, s, PSL_EXACT) || (i + 1 < nl && has(p, d + starts[i + 1], PSL_WILD))) {
			ps = i;
			break;
		}
	}
	if (ps == SIZE_MAX) {
		ps = nl - 1; /* the implicit "*" rule */
	}
	if (ps >= nl) {
		ps = nl - 1;
	}
	{
		size_t org = ps > 0 ? ps - 1 : 0;
		size_t n = len - starts[org];

		if (n + 1 > out_len) {
			return false;
		}
		memcpy(out, d + starts[org], n);
		out[n] = '\0';
	}
	return true;
}
