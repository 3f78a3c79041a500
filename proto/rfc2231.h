/*
 * rfc2231.h - MIME header parameters (RFC 2045 §5.1) with RFC 2231
 * continuations ("name*0=", "name*1*=") and charset/language prefixes
 * ("name*=utf-8'en'%E2%82%AC"), and the type/subtype of Content-Type.
 *
 * Pure and allocation-free: values are written into caller storage;
 * spans point into the header value. Tolerant like mainstream parsers:
 * empty parameters (";;"), white space around "=", unquoted values with
 * specials, unterminated quotes and comments are accepted.
 */
#ifndef OMX_RFC2231_H
#define OMX_RFC2231_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"

#define RFC2231_SEGMENTS_MAX 64  /* continuation segments honoured per parameter */
#define MIME_TOKEN_MAX 128       /* type and subtype */

enum rfc2231_flag {
	RFC2231_F_EXTENDED = 1u << 0,  /* some segment was "*=" (charset, percent-encoding) */
	RFC2231_F_TRUNCATED = 1u << 1, /* value longer than the caller's buffer */
	RFC2231_F_DUPLICATE = 1u << 2, /* the parameter appeared more than once (first kept) */
	RFC2231_F_GAP = 1u << 3,       /* continuation numbers missing or out of range */
};

/*
 * rfc2231_param finds parameter `name` (ASCII, case-insensitive) in a
 * Content-Type or Content-Disposition value and writes its joined value to
 * out[0..cap). Extended segments are percent-decoded; *out_charset gets the
 * charset of an extended value (empty if none). Returns false if absent.
 */
bool rfc2231_param(struct span value, const char *name, uint8_t *out, size_t cap, size_t *out_len,
		   struct span *out_charset, unsigned *out_flags);

/*
 * rfc2231_ctype splits "type/subtype; ..." into lower-case type and
 * subtype (NUL-terminated, each < MIME_TOKEN_MAX). False if the value has
 * no valid type/subtype (the caller then uses its default).
 */
bool rfc2231_ctype(struct span value, char *out_type, char *out_subtype);

/* rfc2231_first_token lower-cases the first token of a value (a disposition). */
bool rfc2231_first_token(struct span value, char *out, size_t cap);

#endif
