/*
 * http_req.c - see http_req.h. Two layers as in proto/: find each line
 * with memchr inside the head limit, then tokenise the complete line with
 * a cursor that never reads past it.
 */
#include "http_req.h"

#include <string.h>

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
		return true;
	}
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A request-target octet (RFC 3986 pchar, '/', '?', and '%' escapes kept as is). */
static bool is_target_char(uint8_t c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '<' && c != '>' && c != '\\' && c != '^' && c != '`' &&
	       c != '{' && c != '|' && c != '}';
}

const char *http_parse_name(enum http_parse r)
{
	static const char *const names[HTTP_PARSE_COUNT] = { "more", "ok", "syntax", "too-long" };

	return r < HTTP_PARSE_COUNT ? names[r] : "?";
}

/*
 * next_line finds the next line in p[*pos..len): *out_line without its
 * line end; false when no LF is there yet.
 */
static bool next_line(const uint8_t *p, size_t len, size_t *pos, struct span *out_line)
{
	const uint8_t *lf = memchr(p + *pos, '\n', len - *pos);
	size_t end;

	if (lf == NULL) {
		return false;
	}
	end = (size_t)(lf - p);
	*out_line = span_make(p + *pos, end - *pos);
	if (out_line->len > 0 && out_line->p[out_line->len - 1] == '\r') {
		out_line->len--;
	}
	*pos = end + 1;
	return true;
}

static enum http_parse syntax(struct http_req *out, const uint8_t *base, const uint8_t *at)
{
	out->err_pos = (size_t)(at - base);
	return HTTP_PARSE_SYNTAX;
}

static enum http_parse request_line(struct http_req *out, const uint8_t *base, struct span line)
{
	struct span c = line, tok;
	size_t i;

	/* method */
	for (i = 0; i < c.len && c.p[i] != ' '; i++) {
		if (!is_tchar(c.p[i])) {
			return syntax(out, base, c.p + i);
		}
	}
	if (i == 0 || i == c.len) {
		return syntax(out, base, c.p + i);
	}
	span_take(&c, &tok, i);
	span_skip(&c, 1);
	out->method_name = tok;
	if (span_eq(tok, span_cstr("GET"))) {
		out->method = HTTP_M_GET;
	} else if (span_eq(tok, span_cstr("HEAD"))) {
		out->method = HTTP_M_HEAD;
	} else {
		out->method = HTTP_M_OTHER; /* methods are case-sensitive (RFC 9110 §9.1) */
	}
	/* request-target: origin-form only */
	if (c.len == 0 || c.p[0] != '/') {
		return syntax(out, base, c.p);
	}
	for (i = 0; i < c.len && c.p[i] != ' '; i++) {
		if (!is_target_char(c.p[i])) {
			return syntax(out, base, c.p + i);
		}
	}
	if (i == c.len) {
		return syntax(out, base, c.p + i); /* HTTP/0.9 has no version: not served */
	}
	span_take(&c, &tok, i);
	span_skip(&c, 1);
	out->path = tok;
	out->query = span_make(tok.p + tok.len, 0);
	for (i = 0; i < tok.len; i++) {
		if (tok.p[i] == '?') {
			out->path = span_make(tok.p, i);
			out->query = span_make(tok.p + i + 1, tok.len - i - 1);
			break;
		}
	}
	/* HTTP-version, exactly (RFC 9112 §2.3: case-sensitive) */
	if (c.len != 8 || memcmp(c.p, "HTTP/1.", 7) != 0 || (c.p[7] != '0' && c.p[7] != '1')) {
		return syntax(out, base, c.p);
	}
	out->minor = (uint8_t)(c.p[7] - '0');
	return HTTP_PARSE_OK;
}

static enum http_parse field_line(struct http_req *out, const uint8_t *base, struct span line)
{
	size_t i;

	if (line.p[0] == ' ' || line.p[0] == '\t') {
		return syntax(out, base, line.p); /* obs-fold: RFC 9112 §5.2 lets a server reject it */
	}
	for (i = 0; i < line.len && line.p[i] != ':'; i++) {
		if (!is_tchar(line.p[i])) {
			return syntax(out, base, line.p + i); /* includes whitespace before ':' (§5.1) */
		}
	}
	if (i == 0 || i == line.len) {
		return syntax(out, base, line.p + i);
	}
	for (i++; i < line.len; i++) {
		uint8_t ch = line.p[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			return syntax(out, base, line.p + i);
		}
	}
	return HTTP_PARSE_OK;
}

enum http_parse http_req_parse(struct http_req *out, size_t *out_consumed, const uint8_t *p, size_t len)
{
	size_t lim = len < HTTP_REQ_HEAD_MAX ? len : HTTP_REQ_HEAD_MAX;
	size_t pos = 0;
	struct span line;
	enum http_parse rc;

	memset(out, 0, sizeof(*out));
	*out_consumed = 0;
	/* RFC 9112 §2.2: ignore at least one empty line before the request line. */
	while (pos < lim && (p[pos] == '\r' || p[pos] == '\n')) {
		if (p[pos] == '\r' && (pos + 1 >= lim || p[pos + 1] != '\n')) {
			break;
		}
		pos += p[pos] == '\r' ? 2 : 1;
	}
	if (!next_line(p, lim, &pos, &line)) {
		return len >= HTTP_REQ_HEAD_MAX ? HTTP_PARSE_TOO_LONG : HTTP_PARSE_MORE;
	}
	if ((rc = request_line(out, p, line)) != HTTP_PARSE_OK) {
		return rc;
	}
	for (;;) {
		if (!next_line(p, lim, &pos, &line)) {
			return len >= HTTP_REQ_HEAD_MAX ? HTTP_PARSE_TOO_LONG : HTTP_PARSE_MORE;
		}
		if (line.len == 0) {
			break;
		}
		if (out->num_fields == HTTP_REQ_FIELDS_MAX) {
			return HTTP_PARSE_TOO_LONG;
		}
		if ((rc = field_line(out, p, line)) != HTTP_PARSE_OK) {
			return rc;
		}
		out->num_fields++;
	}
	*out_consumed = pos;
	return HTTP_PARSE_OK;
}
