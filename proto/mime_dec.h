/*
 * mime_dec.h - streaming Content-Transfer-Encoding decoders (RFC 2045 §6).
 *
 * Each decoder keeps a few bytes of state between calls, so input may be
 * cut anywhere. Decoding never fails: junk is skipped (base64) or passed
 * through literally (quoted-printable) and counted so the caller can record
 * a defect. `out` must have room for in.len + MIME_DEC_SLACK bytes.
 * Pure: no allocation, no globals.
 */
#ifndef OMX_MIME_DEC_H
#define OMX_MIME_DEC_H

#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"

#define MIME_DEC_SLACK 16

struct mime_b64 {
	uint32_t acc;      /* pending sextets, most significant first */
	uint8_t num_acc;   /* 0..3 */
	uint8_t pad;       /* '=' seen in the current quantum */
	uint32_t num_junk; /* bytes outside the alphabet, CR, LF, SP, TAB */
};

/* mime_b64_decode returns the number of bytes written to out. */
size_t mime_b64_decode(struct mime_b64 *st, uint8_t *out, struct span in);
/* mime_b64_finish flushes a partial quantum; returns bytes written (0..2). */
size_t mime_b64_finish(struct mime_b64 *st, uint8_t *out);

struct mime_qp {
	uint8_t held[12];  /* "=", "=X", "=" + white space or "=\r" not yet resolved */
	uint8_t num_held;
	uint32_t num_bad;  /* "=" not followed by two hex digits or a line break */
};

size_t mime_qp_decode(struct mime_qp *st, uint8_t *out, struct span in);
size_t mime_qp_finish(struct mime_qp *st, uint8_t *out);

/*
 * mime_qp_decode_word decodes an RFC 2047 "Q" word (underscore is space) in
 * one piece; out needs in.len bytes. Returns bytes written.
 */
size_t mime_qp_decode_word(uint8_t *out, struct span in);

/* mime_b64_decode_word decodes an RFC 2047 "B" word in one piece. */
size_t mime_b64_decode_word(uint8_t *out, struct span in);

#endif
