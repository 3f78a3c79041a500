/*
 * smtp_data.c - DATA unstuffer and BDAT counter; see smtp_data.h.
 *
 * The fast path (state TEXT) yields one span per run of complete lines: it
 * stops only at a line starting with ".", at a bare CR/LF, at a line over
 * the limit, or at the end of the input. The transitions are the same in
 * discard mode; only the yielding differs, so the real <CRLF>.<CRLF> is
 * found the same way whether or not the message was refused.
 */
#include "smtp_data.h"

#include "smtp_cmd.h" /* SMTP_LINE_RUNAWAY_MAX */

static const uint8_t data_crlf[2] = { '\r', '\n' };
static const uint8_t data_dot_crlf[3] = { '.', '\r', '\n' };

void smtp_data_init(struct smtp_data *d, enum smtp_bare_policy bare, size_t max_line, uint64_t max_size)
{
	d->st = SMTP_DATA_ST_BOL;
	d->err = SMTP_DATA_ERR_NONE;
	d->bare = (unsigned)bare < SMTP_BARE_COUNT ? bare : SMTP_BARE_REJECT;
	d->max_line = (max_line != 0 && max_line < 3) ? 3 : max_line;
	d->line_len = 0;
	d->max_size = max_size;
	d->size = 0;
}

const char *smtp_data_state_name(enum smtp_data_state st)
{
	static const char *const names[SMTP_DATA_ST_COUNT] = {
		[SMTP_DATA_ST_BOL] = "bol", [SMTP_DATA_ST_TEXT] = "text",     [SMTP_DATA_ST_CR] = "cr",
		[SMTP_DATA_ST_DOT] = "dot", [SMTP_DATA_ST_DOT_CR] = "dot-cr", [SMTP_DATA_ST_DONE] = "done",
	};

	return (unsigned)st < SMTP_DATA_ST_COUNT ? names[st] : "?";
}

/*
 * emit yields `s` unless in discard mode, enforcing the size limit. MORE
 * here means "nothing yielded, go on".
 */
static enum smtp_data_rc emit(struct smtp_data *d, struct span s, struct span *out)
{
	if (d->err != SMTP_DATA_ERR_NONE || s.len == 0) {
		return SMTP_DATA_MORE;
	}
	if (d->max_size != 0 && (d->size > d->max_size || s.len > d->max_size - d->size)) {
		d->err = SMTP_DATA_ERR_SIZE; /* RFC 1870 §6.3 */
		return SMTP_DATA_ERROR;
	}
	d->size += s.len;
	*out = s;
	return SMTP_DATA_BODY;
}

/*
 * bare applies the policy to a bare CR/LF that the caller has consumed;
 * `norm` is what NORMALISE stores. The line that follows is plain TEXT, so
 * a normalised line end never makes a "." line the terminator.
 */
static enum smtp_data_rc bare(struct smtp_data *d, struct span norm, struct span *out)
{
	d->st = SMTP_DATA_ST_TEXT;
	d->line_len = 0;
	if (d->err != SMTP_DATA_ERR_NONE) {
		return SMTP_DATA_MORE;
	}
	if (d->bare == SMTP_BARE_REJECT) {
		d->err = SMTP_DATA_ERR_BARE; /* CVE-2023-51764..6 */
		return SMTP_DATA_ERROR;
	}
	return emit(d, norm, out);
}

/* text scans from a TEXT position; see the file comment. */
static enum smtp_data_rc text(struct smtp_data *d, struct span *in, struct span *out)
{
	const uint8_t *p = in->p, *q = p, *end = p + in->len;
	/* RFC 5321 §4.5.3.1.6: 1000 octets per text line including CRLF */
	size_t maxl = d->max_line ? d->max_line - 2 : SIZE_MAX;
	bool check = d->err == SMTP_DATA_ERR_NONE && d->max_line != 0;
	/* A refused line with no end in sight: not mail, stop reading it. */
	bool runaway_check = d->err == SMTP_DATA_ERR_LINE && d->max_line != 0, runaway = false;
	size_t line = d->line_len, used;
	enum smtp_data_state ns = SMTP_DATA_ST_TEXT;
	bool too_long = false;
	enum smtp_data_rc rc;

	for (;;) {
		size_t n = (size_t)(end - q);
		const uint8_t *cr = memchr(q, '\r', n);
		const uint8_t *lf = memchr(q, '\n', cr ? (size_t)(cr - q) : n);
		const uint8_t *stop = lf ? lf : cr;
		size_t run = (size_t)((stop ? stop : end) - q);

		if (check && run > maxl - line) {
			q += maxl - line;
			line = maxl;
			too_long = true;
			break;
		}
		if (runaway_check && run > maxl + SMTP_LINE_RUNAWAY_MAX - line) {
			q += maxl + SMTP_LINE_RUNAWAY_MAX - line;
			line = maxl + SMTP_LINE_RUNAWAY_MAX;
			runaway = true;
			break;
		}
		line += run;
		q += run;
		if (stop == NULL || *q == '\n') {
			break; /* end of input, or a bare LF at q */
		}
		if (q + 1 == end) {
			q++; /* CR as the last octet: the next input decides */
			ns = SMTP_DATA_ST_CR;
			break;
		}
		if (q[1] != '\n') {
			break; /* bare CR at q */
		}
		q += 2;
		line = 0;
		if (q == end || *q == '.') {
			ns = SMTP_DATA_ST_BOL;
			break;
		}
	}
	used = (size_t)(q - p);
	span_skip(in, used);
	d->line_len = line;
	d->st = ns;
	if (runaway) {
		d->err = SMTP_DATA_ERR_RUNAWAY;
		return SMTP_DATA_ERROR;
	}
	if (used != 0) {
		return emit(d, span_make(p, ns == SMTP_DATA_ST_CR ? used - 1 : used), out);
	}
	/* No progress: the first octet is the problem. */
	if (too_long) {
		d->err = SMTP_DATA_ERR_LINE;
		return SMTP_DATA_ERROR;
	}
	span_skip(in, 1); /* a bare LF, or a CR not followed by LF */
	rc = bare(d, span_make(data_crlf, 2), out);
	return rc;
}

enum smtp_data_rc smtp_data_next(struct smtp_data *d, struct span *in, struct span *out_body)
{
	enum smtp_data_rc rc;

	for (;;) {
		uint8_t c;

		if (d->st == SMTP_DATA_ST_DONE) {
			return SMTP_DATA_END;
		}
		if (in->len == 0) {
			return SMTP_DATA_MORE;
		}
		c = in->p[0];
		switch (d->st) {
		case SMTP_DATA_ST_BOL:
			d->line_len = 0;
			if (c == '.') {
				span_skip(in, 1);
				d->st = SMTP_DATA_ST_DOT;
			} else {
				d->st = SMTP_DATA_ST_TEXT;
			}
			continue;
		case SMTP_DATA_ST_DOT:
			if (c == '\r') {
				span_skip(in, 1);
				d->st = SMTP_DATA_ST_DOT_CR;
				continue;
			}
			if (c == '\n') {
				span_skip(in, 1);
				rc = bare(d, span_make(data_dot_crlf, 3), out_body);
				break;
			}
			/* RFC 5321 §4.5.2: the leading dot of any other line is dropped */
			d->st = SMTP_DATA_ST_TEXT;
			continue;
		case SMTP_DATA_ST_DOT_CR:
			if (c == '\n') {
				span_skip(in, 1);
				d->st = SMTP_DATA_ST_DONE; /* <CRLF>.<CRLF> */
				return SMTP_DATA_END;
			}
			rc = bare(d, span_make(data_dot_crlf, 3), out_body); /* "." CR x: c stays */
			break;
		case SMTP_DATA_ST_CR:
			if (c == '\n') {
				span_skip(in, 1);
				d->st = SMTP_DATA_ST_BOL;
				d->line_len = 0;
				rc = emit(d, span_make(data_crlf, 2), out_body);
				break;
			}
			rc = bare(d, span_make(data_crlf, 2), out_body); /* CR x: c stays */
			break;
		case SMTP_DATA_ST_TEXT:
			rc = text(d, in, out_body);
			break;
		default:
			return SMTP_DATA_END;
		}
		if (rc != SMTP_DATA_MORE) {
			return rc;
		}
	}
}

void smtp_bdat_init(struct smtp_bdat *b, uint64_t count, bool discard)
{
	b->left = count;
	b->discard = discard;
}

enum smtp_data_rc smtp_bdat_next(struct smtp_bdat *b, struct span *in, struct span *out_body)
{
	struct span s;
	size_t n;

	if (b->left == 0) {
		return SMTP_DATA_END;
	}
	if (in->len == 0) {
		return SMTP_DATA_MORE;
	}
	n = (uint64_t)in->len < b->left ? in->len : (size_t)b->left;
	span_take(in, &s, n);
	b->left -= n;
	if (b->discard) {
		return b->left == 0 ? SMTP_DATA_END : SMTP_DATA_MORE;
	}
	*out_body = s;
	return SMTP_DATA_BODY;
}
