/*
 * charset.c - to-UTF-8 conversion with U+FFFD replacement.
 */
#include "charset.h"

#include <errno.h>
#include <iconv.h>
#include <string.h>

static const uint8_t REPL[3] = { 0xef, 0xbf, 0xbd }; /* U+FFFD */

size_t utf8_seq_len(const uint8_t *p, size_t avail)
{
	uint8_t c = p[0];

	if (c < 0x80) {
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		return avail >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	}
	if (c >= 0xe0 && c <= 0xef) {
		if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) {
			return 0;
		}
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)) {
			return 0; /* overlong, or a UTF-16 surrogate */
		}
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) {
			return 0;
		}
		if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)) {
			return 0; /* overlong, or past U+10FFFF */
		}
		return 4;
	}
	return 0;
}

bool utf8_valid(struct span in)
{
	size_t i = 0;

	while (i < in.len) {
		if (in.p[i] < 0x80) {
			i++;
			continue;
		}
		size_t n = utf8_seq_len(in.p + i, in.len - i);

		if (n == 0) {
			return false;
		}
		i += n;
	}
	return true;
}

int utf8_sanitize(struct bb *out, struct span in, size_t *out_num_bad)
{
	size_t i = 0, run = 0;
	int rc;

	if (in.len == 0) {
		return 0;
	}
	if ((rc = bb_reserve(out, in.len)) != 0) {
		return rc;
	}
	while (i < in.len) {
		if (in.p[i] < 0x80) {
			i++;
			continue;
		}
		size_t n = utf8_seq_len(in.p + i, in.len - i);

		if (n > 0) {
			i += n;
			continue;
		}
		if ((rc = bb_append(out, in.p + run, i - run)) != 0 || (rc = bb_append(out, REPL, 3)) != 0) {
			return rc;
		}
		if (out_num_bad != NULL) {
			(*out_num_bad)++;
		}
		i++;
		run = i;
	}
	return bb_append(out, in.p + run, i - run);
}

int utf8_replace_nul(struct bb *out, struct span in, size_t *out_num_nul)
{
	size_t run = 0;
	int rc;

	for (const uint8_t *z; run < in.len && (z = memchr(in.p + run, '\0', in.len - run)) != NULL;) {
		size_t i = (size_t)(z - in.p);

		if ((rc = bb_append(out, in.p + run, i - run)) != 0 || (rc = bb_append(out, REPL, 3)) != 0) {
			return rc;
		}
		if (out_num_nul != NULL) {
			(*out_num_nul)++;
		}
		run = i + 1;
	}
	return run < in.len ? bb_append(out, in.p + run, in.len - run) : 0;
}

static void norm_name(char *out, struct span cs)
{
	size_t n = 0;

	for (size_t i = 0; i < cs.len && n + 1 < CHARSET_NAME_MAX; i++) {
		uint8_t c = cs.p[i];

		if (c >= 'A' && c <= 'Z') {
			c = (uint8_t)(c + 32);
		}
		if (c == '"' || c == ' ' || c == '\t') {
			continue;
		}
		if (c < 0x21 || c > 0x7e) {
			c = '?';
		}
		out[n++] = (char)c;
	}
	out[n] = '\0';
}

bool charset_is_utf8(struct span cs)
{
	char n[CHARSET_NAME_MAX];

	norm_name(n, cs);
	return n[0] == '\0' || strcmp(n, "utf-8") == 0 || strcmp(n, "utf8") == 0 || strcmp(n, "us-ascii") == 0 ||
	       strcmp(n, "ascii") == 0 || strcmp(n, "ansi_x3.4-1968") == 0;
}

static int latin1(struct bb *out, struct span in)
{
	int rc = bb_reserve(out, in.len * 2);

	if (rc != 0) {
		return rc;
	}
	for (size_t i = 0; i < in.len; i++) {
		uint8_t c = in.p[i];

		if (c < 0x80) {
			out->p[out->len++] = c;
		} else {
			out->p[out->len++] = (uint8_t)(0xc0 | c >> 6);
			out->p[out->len++] = (uint8_t)(0x80 | (c & 0x3f));
		}
	}
	return 0;
}

/* Names mail software writes that iconv does not know, with what they mean. */
static const char *alias(const char *n)
{
	static const char *const tab[][2] = {
		{ "ks_c_5601-1987", "CP949" }, { "ks_c_5601", "CP949" }, { "x-sjis", "SHIFT_JIS" },
		{ "x-gbk", "GBK" }, { "gb2312", "GBK" }, { "x-mac-roman", "MACINTOSH" },
		{ "unicode-1-1-utf-7", "UTF-7" }, { "x-user-defined", "CP1252" }, { "iso-8859-8-i", "ISO-8859-8" },
		{ "ms932", "CP932" }, { "windows-874", "CP874" }, { "cp-850", "CP850" },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (strcmp(n, tab[i][0]) == 0) {
			return tab[i][1];
		}
	}
	return n;
}

int charset_to_utf8(struct bb *out, struct span cs, struct span in, size_t *out_num_bad)
{
	char n[CHARSET_NAME_MAX];
	iconv_t cd;
	int rc = 0;

	norm_name(n, cs);
	if (charset_is_utf8(cs)) {
		return utf8_sanitize(out, in, out_num_bad);
	}
	if (strcmp(n, "iso-8859-1") == 0 || strcmp(n, "latin1") == 0 || strcmp(n, "iso8859-1") == 0 ||
	    strcmp(n, "l1") == 0) {
		return latin1(out, in);
	}
	/* A 7-bit input converts to itself in every ASCII-compatible charset. */
	size_t i = 0;

	while (i < in.len && in.p[i] < 0x80 && in.p[i] != 0x1b && in.p[i] != '+') {
		i++;
	}
	if (i == in.len) {
		return bb_append_span(out, in);
	}
	/* Names with bytes outside printable ASCII are not charsets (glibc would map them to the locale's). */
	cd = strchr(n, '?') == NULL ? iconv_open("UTF-8", alias(n)) : (iconv_t)-1;
	if (cd == (iconv_t)-1) {
		rc = utf8_sanitize(out, in, out_num_bad);
		return rc != 0 ? rc : -ENOENT;
	}
	size_t start = out->len;
	char *ip = (char *)(uintptr_t)in.p;
	size_t ileft = in.len;

	for (;;) {
		if ((rc = bb_reserve(out, ileft * 4 + 16)) != 0) {
			break;
		}
		char *op = (char *)out->p + out->len;
		size_t oleft = out->alloc - out->len;
		size_t r = iconv(cd, &ip, &ileft, &op, &oleft);

		out->len = (size_t)((uint8_t *)op - out->p);
		if (r != (size_t)-1) {
			/* All input taken: flush any shift state, then done. */
			op = (char *)out->p + out->len;
			oleft = out->alloc - out->len;
			iconv(cd, NULL, NULL, &op, &oleft);
			out->len = (size_t)((uint8_t *)op - out->p);
			break;
		}
		if (errno == E2BIG) {
			continue;
		}
		/* EILSEQ or EINVAL (truncated at the end): one replacement per bad byte. */
		if ((rc = bb_append(out, REPL, 3)) != 0) {
			break;
		}
		if (out_num_bad != NULL) {
			(*out_num_bad)++;
		}
		ip++;
		ileft--;
		iconv(cd, NULL, NULL, NULL, NULL);
		if (ileft == 0) {
			break;
		}
	}
	iconv_close(cd);
	/* Trust but verify: some iconv modules pass bytes through; keep the output valid UTF-8. */
	if (rc == 0 && !utf8_valid(span_make(out->p + start, out->len - start))) {
		struct bb tmp;

		bb_init(&tmp, 0);
		rc = bb_append(&tmp, out->p + start, out->len - start);
		out->len = start;
		if (rc == 0) {
			rc = utf8_sanitize(out, bb_span(&tmp), out_num_bad);
		}
		bb_fini(&tmp);
	}
	return rc;
}
