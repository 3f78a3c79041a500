/*
 * spf_macro.c - SPF macro expansion (RFC 7208 §7).
 *
 * Pure: writes into the caller's buffer, allocates nothing. With a NULL
 * environment only the syntax is checked (the record parser's use).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "spf.h"

struct out {
	char *p;
	size_t max, len;
	bool over;
};

static void put(struct out *o, const void *s, size_t n)
{
	if (o->p == NULL) {
		o->len += n;
		return;
	}
	if (n > o->max - o->len) {
		o->over = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static bool is_delim(uint8_t c)
{
	return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' || c == '_' || c == '=';
}

/* unreserved of RFC 3986 §2.3: kept as is when URL-escaping (§7.3). */
static bool is_unreserved(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

/* letter_value writes the raw value of macro letter `l` (lower case) into buf. */
static bool letter_value(const struct spf_macro_env *e, char l, char *buf, size_t buf_len)
{
	const char *v = NULL;

	switch (l) {
	case 's':
		v = e->sender;
		break;
	case 'l':
		v = e->local;
		break;
	case 'o':
		v = e->sender_domain;
		break;
	case 'd':
		v = e->domain;
		break;
	case 'h':
		v = e->helo;
		break;
	case 'r':
		v = e->receiver ? e->receiver : "unknown";
		break;
	case 'p':
		v = e->validated ? e->validated : "unknown";
		break;
	case 'v':
		v = e->ipv6 ? "ip6" : "in-addr";
		break;
	case 't':
		snprintf(buf, buf_len, "%llu", (unsigned long long)e->now);
		return true;
	case 'c':
		if (inet_ntop(e->ipv6 ? AF_INET6 : AF_INET, e->ip, buf, (socklen_t)buf_len) == NULL) {
			return false;
		}
		return true;
	case 'i':
		if (e->ipv6) {
			/* upper-case nibbles, as RFC 7208 §7.4's example (DNS ignores case) */
			static const char hex[] = "0123456789ABCDEF";
			size_t n = 0;

			for (int k = 0; k < 16; k++) {
				buf[n++] = hex[e->ip[k] >> 4];
				buf[n++] = '.';
				buf[n++] = hex[e->ip[k] & 15];
				buf[n++] = '.';
			}
			buf[n - 1] = '\0';
		} else {
			snprintf(buf, buf_len, "%u.%u.%u.%u", e->ip[0], e->ip[1], e->ip[2], e->ip[3]);
		}
		return true;
	default:
		return false;
	}
	if (v == NULL) {
		v = "";
	}
	if (strlen(v) >= buf_len) {
		return false;
	}
	strcpy(buf, v);
	return true;
}

/*
 * expand_one applies the transformers (§7.3): split `val` on the
 * delimiters, reverse with `rev`, keep the rightmost `keep` parts (0: all),
 * join with '.', URL-escape when `upper`.
 */
static void expand_one(struct out *o, const char *val, const char *delims, size_t num_delims, unsigned keep, bool rev,
		       bool upper)
{
	struct span parts[SPF_EXPAND_MAX / 2 + 2];
	size_t np = 0, n = strlen(val), start = 0, first;

	for (size_t i = 0; i <= n; i++) {
		bool d = false;

		if (i < n) {
			if (num_delims == 0) {
				d = val[i] == '.';
			} else {
				d = memchr(delims, val[i], num_delims) != NULL;
			}
		}
		if (i == n || d) {
			if (np < sizeof(parts) / sizeof(parts[0])) {
				parts[np++] = span_make(val + start, i - start);
			}
			start = i + 1;
		}
	}
	if (rev) {
		for (size_t i = 0; i < np / 2; i++) {
			struct span t = parts[i];

			parts[i] = parts[np - 1 - i];
			parts[np - 1 - i] = t;
		}
	}
	first = keep > 0 && keep < np ? np - keep : 0;
	for (size_t i = first; i < np; i++) {
		if (i > first) {
			put(o, ".", 1);
		}
		if (!upper) {
			put(o, parts[i].p, parts[i].len);
			continue;
		}
		for (size_t k = 0; k < parts[i].len; k++) {
			uint8_t c = parts[i].p[k];

			if (is_unreserved(c)) {
				put(o, &c, 1);
			} else {
				char esc[4];

				snprintf(esc, sizeof(esc), "%%%02X", c);
				put(o, esc, 3);
			}
		}
	}
}

bool spf_macro_uses_p(struct span in)
{
	for (size_t i = 0; i + 2 < in.len; i++) {
		if (in.p[i] == '%') {
			if (in.p[i + 1] == '{' && (in.p[i + 2] == 'p' || in.p[i + 2] == 'P')) {
				return true;
			}
			i++; /* skip the escaped character of %% %_ %- */
		}
	}
	return false;
}

/* truncate_domain drops labels from the left until at most 253 octets remain (§7.3). */
static void truncate_domain(struct out *o)
{
	size_t len = o->len, cut = 0;

	if (len > 0 && o->p[len - 1] == '.') {
		len--; /* a trailing dot does not count */
	}
	while (len - cut > SPF_DOMAIN_MAX) {
		char *dot = memchr(o->p + cut, '.', len - cut);

		if (dot == NULL) {
			cut = len; /* one label over the limit: nothing usable remains */
			break;
		}
		cut = (size_t)(dot - o->p) + 1;
	}
	memmove(o->p, o->p + cut, o->len - cut);
	o->len -= cut;
}

enum spf_macro_rc spf_macro_expand(char *out, size_t out_max, size_t *out_len, size_t *out_err_pos,
				   const struct spf_macro_env *env, struct span in, unsigned flags)
{
	struct out o = { .p = env ? out : NULL, .max = out_max };
	bool exp = (flags & SPF_MACRO_EXP) != 0;
	size_t i = 0;

	*out_len = 0;
	*out_err_pos = 0;
	while (i < in.len) {
		uint8_t c = in.p[i];

		if (c != '%') {
			/* macro-literal %x21-24 / %x26-7E; SP too in explanations */
			if (c < 0x21 || c > 0x7e) {
				if (!(exp && c == ' ')) {
					*out_err_pos = i;
					return SPF_MACRO_SYNTAX;
				}
			}
			put(&o, &c, 1);
			i++;
			continue;
		}
		if (i + 1 >= in.len) {
			*out_err_pos = i;
			return SPF_MACRO_SYNTAX;
		}
		c = in.p[i + 1];
		if (c == '%' || c == '_' || c == '-') {
			put(&o, c == '%' ? "%" : c == '_' ? " " : "%20", c == '-' ? 3 : 1);
			i += 2;
			continue;
		}
		if (c != '{' || i + 2 >= in.len) {
			*out_err_pos = i;
			return SPF_MACRO_SYNTAX;
		}
		{
			size_t j = i + 2, num_delims = 0;
			uint8_t letter = in.p[j], l = letter | 0x20;
			unsigned keep = 0, ndig = 0;
			bool rev = false;
			char delims[8];

			if (strchr(exp ? "slodiphcrtv" : "slodiphv", l) == NULL || !((letter | 0x20) >= 'a' && (letter | 0x20) <= 'z')) {
				*out_err_pos = j;
				return SPF_MACRO_SYNTAX;
			}
			j++;
			while (j < in.len && in.p[j] >= '0' && in.p[j] <= '9') {
				if (keep < 1000) {
					keep = keep * 10 + (unsigned)(in.p[j] - '0');
				}
				ndig++;
				j++;
			}
			if (ndig > 0 && keep == 0) {
				*out_err_pos = j;
				return SPF_MACRO_SYNTAX; /* §7.3: a DIGIT transformer is at least one */
			}
			if (j < in.len && (in.p[j] == 'r' || in.p[j] == 'R')) {
				rev = true;
				j++;
			}
			while (j < in.len && is_delim(in.p[j])) {
				if (num_delims < sizeof(delims) && memchr(delims, in.p[j], num_delims) == NULL) {
					delims[num_delims++] = (char)in.p[j];
				}
				j++;
			}
			if (j >= in.len || in.p[j] != '}') {
				*out_err_pos = j;
				return SPF_MACRO_SYNTAX;
			}
			if (env != NULL) {
				char val[SPF_EXPAND_MAX];

				if (!letter_value(env, (char)l, val, sizeof(val))) {
					return SPF_MACRO_TOO_LONG;
				}
				expand_one(&o, val, delims, num_delims, keep, rev, letter != l);
			}
			i = j + 1;
		}
	}
	if (o.over) {
		return SPF_MACRO_TOO_LONG;
	}
	if (env != NULL && (flags & SPF_MACRO_DOMAIN)) {
		truncate_domain(&o);
	}
	*out_len = o.len;
	return SPF_MACRO_OK;
}
