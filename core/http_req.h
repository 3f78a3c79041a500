/*
 * http_req.h - a bounded, pure parser for the request head of the metrics
 * endpoint (RFC 9112 §2-§5, the small subset a scraper sends).
 *
 * No I/O, no allocation, no globals: the caller accumulates received bytes
 * (at most HTTP_REQ_HEAD_MAX) and parses the whole buffer again after each
 * read; the result does not depend on how the bytes arrived. Spans in the
 * result point into the caller's buffer and live as long as it does.
 */
#ifndef OMX_HTTP_REQ_H
#define OMX_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "span.h"

/* The whole head (request line + fields + empty line). Scrapers send ~200
 * octets; RFC 9112 §3 leaves the limit to us. */
#define HTTP_REQ_HEAD_MAX  4096
#define HTTP_REQ_FIELDS_MAX 32 /* header fields; more is a 400 */

enum http_method {
	HTTP_M_GET = 0, /* GET */
	HTTP_M_HEAD,    /* HEAD: the GET answer without its body */
	HTTP_M_OTHER,   /* a valid token we do not serve: 405 */
	HTTP_M_COUNT    /* sentinel */
};

enum http_parse {
	HTTP_PARSE_MORE = 0, /* the head is not complete yet: read more */
	HTTP_PARSE_OK,       /* *out is filled; *out_consumed octets form the head */
	HTTP_PARSE_SYNTAX,   /* not an HTTP/1.x request: 400 */
	HTTP_PARSE_TOO_LONG, /* no end of head within HTTP_REQ_HEAD_MAX (or too many fields): 400 */
	HTTP_PARSE_COUNT     /* sentinel */
};

struct http_req {
	enum http_method method;
	struct span method_name; /* as sent */
	struct span path;        /* origin-form path, without the query */
	struct span query;       /* after '?', empty if none */
	uint8_t minor;           /* HTTP/1.<minor>: 0 or 1 */
	unsigned num_fields;
	size_t err_pos;          /* on SYNTAX: offset of the offending octet */
};

/*
 * http_req_parse parses the request head at p[0..len). Lines end in CRLF
 * or a bare LF (RFC 9112 §2.2 lets a recipient accept LF); the request
 * line is `method SP request-target SP HTTP/1.x`; request-target must be
 * origin-form ("/..."); field lines must be `token ":" value` with no
 * obsolete folding and no control octets. A body is never read.
 */
enum http_parse http_req_parse(struct http_req *out, size_t *out_consumed, const uint8_t *p, size_t len);

/* http_parse_name returns "more", "ok", "syntax" or "too-long" (static). */
const char *http_parse_name(enum http_parse r);

#endif
