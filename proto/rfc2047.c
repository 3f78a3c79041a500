/*
 * rfc2047.c - encoded-word decoding.
 */
#include "rfc2047.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "charset.h"
#include "mime_dec.h"

struct word {
	struct span charset;
	char enc;          /* 'B' or 'Q' */
	struct span text;
	size_t len;        /* whole "=?...?=" */
};

/* parse_word recognises an encoded word at the start of s. */
static bool parse_word(struct span s, struct word *w)
{
	size_t i = 2, cs_start, cs_end;

	if (s.len < 8 || s.p[0] != '=' || s.p[1] != '?') {
		return false;
	}
	cs_start = i;
	while (i < s.len && s.p[i] != '?' && s.p[i] > 0x20 && s.p[i] < 0x7f) {
		i++;
	}
	if (i == cs_start || i + 3 >= s.len || s.p[i] != '?') {
		return false;
	}
	cs_end = i;
	char e = (char)(s.p[i + 1] & ~0x20);

	if ((e != 'B' && e != 'Q') || s.p[i + 2] != '?') {
		return false;
	}
	i += 3;
	size_t t_start = i, lim = s.len < RFC2047_WORD_MAX ? s.len : RFC2047_WORD_MAX;

	while (i + 1 < lim && !(s.p[i] == '?' && s.p[i + 1] == '=')) {
		if (s.p[i] == '\r' || s.p[i] == '\n') {
			return false;
		}
		i++;
	}
	if (i + 1 >= lim) {
		return false;
	}
	w->charset = span_make(s.p + cs_start, cs_end - cs_start);
	/* RFC 2231 §5: charset*language */
	for (size_t k = 0; k < w->charset.len; k++) {
		if (w->charset.p[k] == '*') {
			w->charset.len = k;
			break;
		}
	}
	w->enc = e;
	w->text = span_make(s.p + t_start, i - t_start);
	w->len = i + 2;
	return true;
}

static bool is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int flush(struct bb *out, struct bb *pend, struct span cs, struct rfc2047_stats *st)
{
	size_t bad = 0;
	int rc;

	if (pend->len == 0) {
		return 0;
	}
	rc = charset_to_utf8(out, cs, bb_span(pend), &bad);
	if (rc == -ENOENT) {
		rc = 0;
		if (st != NULL) {
			st->num_unknown++;
		}
	}
	if (st != NULL) {
		st->num_bad += bad;
	}
	pend->len = 0;
	return rc;
}

int rfc2047_decode(struct bb *out, struct span in, struct rfc2047_stats *st)
{
	struct bb pend;
	struct span pend_cs = { NULL, 0 };
	size_t i = 0, run = 0;
	bool last_was_word = false;
	int rc = 0;

	/* Fast path: no encoded word at all. */
	if (in.len < 8 || memmem(in.p, in.len, "=?", 2) == NULL) {
		/* (utf8_sanitize accepts an empty span) */
		size_t bad = 0;

		rc = utf8_sanitize(out, in, &bad);
		if (st != NULL) {
			st->num_bad += bad;
		}
		return rc;
	}
	bb_init(&pend, 0);
	while (i < in.len && rc == 0) {
		struct word w;

		if (in.p[i] != '=' || !parse_word(span_make(in.p + i, in.len - i), &w)) {
			i++;
			continue;
		}
		/* Text between the previous word and this one. */
		struct span gap = span_make(in.p + run, i - run);
		bool gap_ws = true;

		for (size_t k = 0; k < gap.len; k++) {
			if (!is_ws(gap.p[k])) {
				gap_ws = false;
				break;
			}
		}
		bool join = last_was_word && gap_ws;

		if (!join || pend_cs.len != w.charset.len ||
		    strncasecmp((const char *)pend_cs.p, (const char *)w.charset.p, w.charset.len) != 0) {
			if ((rc = flush(out, &pend, pend_cs, st)) != 0) {
				break;
			}
		}
		if (!join && gap.len > 0) {
			size_t bad = 0;

			rc = utf8_sanitize(out, gap, &bad);
			if (st != NULL) {
				st->num_bad += bad;
			}
			if (rc != 0) {
				break;
			}
		}
		if ((rc = bb_reserve(&pend, w.text.len + MIME_DEC_SLACK)) != 0) {
			break;
		}
		pend.len += w.enc == 'B' ? mime_b64_decode_word(pend.p + pend.len, w.text)
					 : mime_qp_decode_word(pend.p + pend.len, w.text);
		pend_cs = w.charset;
		if (st != NULL) {
			st->num_words++;
		}
		i += w.len;
		run = i;
		last_was_word = true;
	}
	if (rc == 0) {
		rc = flush(out, &pend, pend_cs, st);
	}
	if (rc == 0 && run < in.len) {
		size_t bad = 0;

		rc = utf8_sanitize(out, span_make(in.p + run, in.len - run), &bad);
		if (st != NULL) {
			st->num_bad += bad;
		}
	}
	bb_fini(&pend);
	return rc;
}
