/*
 * mime_dec.h - streaming Content-Transfer-Encoding decoders (RFC 2045 §6,
 * and the x-uuencode convention most mail readers still decode).
 *
 * Each decoder keeps a few bytes (uudecode: one line) of state between
 * calls, so input may be cut anywhere. Decoding never fails: junk is skipped (base64) or passed
 * through literally (quoted-printable) and counted so the caller can record
 * a defect. `out` must have room for in.len + MIME_DEC_SLACK bytes.
 * Pure: no allocation, no globals.
 */
#ifndef OMX_MIME_DEC_H
#define OMX_MIME_DEC_H

#include <stdbool.h>
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
 * uudecode (POSIX uuencode format, as sent with "Content-Transfer-Encoding:
 * x-uuencode"): lines before "begin MODE NAME" are skipped, then each line
 * is a length character and that many bytes in groups of four characters
 * (' ' .. '`', each 6 bits), up to a line "end". Tolerant as Python's email
 * and GMime are: a line shorter than its length says is padded with zero
 * bits (transports strip trailing spaces), characters past the length
 * (checksums, padding) are ignored, lines after "end" are ignored, a
 * missing "end" is accepted. Unlike Python, which then returns the whole
 * body undecoded, a line with characters outside the alphabet (junk,
 * a signature after a missing "end") or an empty line is skipped and
 * counted; without a begin line nothing is decoded (as GMime).
 */
#define MIME_UU_LINE_MAX 256   /* bytes of a line looked at; the rest is ignored */
#define MIME_UU_NAME_MAX 240   /* file name kept from the begin line */
#define MIME_UU_LINE_OUT 63    /* most bytes one line can give */

enum mime_uu_state {
	MIME_UU_ST_BEGIN = 0, /* looking for the begin line */
	MIME_UU_ST_DATA,      /* decoding lines */
	MIME_UU_ST_END,       /* after "end": the rest is ignored */
	MIME_UU_ST_COUNT      /* sentinel */
};

struct mime_uu {
	uint8_t state;        /* enum mime_uu_state */
	bool name_ready;      /* the begin line just read named a file: name[] */
	uint16_t line_len;    /* bytes in line[] */
	uint16_t name_len;
	bool line_cut;        /* the current line is longer than line[] */
	uint32_t num_bad;     /* lines skipped: junk characters, empty lines */
	uint8_t line[MIME_UU_LINE_MAX];
	uint8_t name[MIME_UU_NAME_MAX];
};

/* mime_uu_init resets the decoder (cheaply: the buffers are not cleared). */
void mime_uu_init(struct mime_uu *st);
/*
 * mime_uu_decode returns the bytes written to out, which needs room for
 * MIME_UU_LINE_OUT bytes per line feed in `in` plus one more line (the
 * output of a line can be larger than the line: "M" alone gives 45 zero
 * bytes). It sets name_ready when a begin line with a file name was read
 * (the caller clears it); all bytes in out come after that begin line.
 */
size_t mime_uu_decode(struct mime_uu *st, uint8_t *out, struct span in);
/* mime_uu_finish decodes a last line without line feed (out: MIME_UU_LINE_OUT bytes). */
size_t mime_uu_finish(struct mime_uu *st, uint8_t *out);

/*
 * mime_qp_decode_word decodes an RFC 2047 "Q" word (underscore is space) in
 * one piece; out needs in.len bytes. Returns bytes written.
 */
size_t mime_qp_decode_word(uint8_t *out, struct span in);

/* mime_b64_decode_word decodes an RFC 2047 "B" word in one piece. */
size_t mime_b64_decode_word(uint8_t *out, struct span in);

#endif
