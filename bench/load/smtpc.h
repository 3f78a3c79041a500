/*
 * smtpc.h - the client side of SMTP replies: an incremental reader that
 * frames multi-line replies (RFC 5321 §4.2) out of whatever the socket
 * delivered, and notes the EHLO keywords the generator cares about.
 *
 * Pure: no I/O, no allocation. The reader copies each line into its own
 * bounded buffer, so the input span may be returned to its owner (a
 * provided buffer) as soon as smtpc_read returns.
 */
#ifndef OMX_LOAD_SMTPC_H
#define OMX_LOAD_SMTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/span.h"

/* RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; allow slack. */
#define SMTPC_LINE_MAX 2048

/* EHLO keywords seen in the current reply (smtpc_rd.ext). */
#define SMTPC_EXT_PIPELINING (1u << 0) /* RFC 2920 */
#define SMTPC_EXT_CHUNKING   (1u << 1) /* RFC 3030 */
#define SMTPC_EXT_STARTTLS   (1u << 2) /* RFC 3207 */
#define SMTPC_EXT_8BITMIME   (1u << 3) /* RFC 6152 */

enum smtpc_rc {
	SMTPC_MORE = 0, /* input used up, the reply is not complete yet */
	SMTPC_REPLY,    /* one complete reply: *out_code is its code */
	SMTPC_SYNTAX,   /* not a reply (bad code, code changed mid-reply, line too long) */
	SMTPC_RC_COUNT  /* sentinel */
};

struct smtpc_rd {
	uint8_t line[SMTPC_LINE_MAX];
	size_t line_len;
	int code;      /* code of the reply being read, 0 before its first line */
	unsigned ext;  /* SMTPC_EXT_* of the reply being read / just read */
	char last_text[128]; /* text of the last line of the last reply (for messages) */
};

void smtpc_init(struct smtpc_rd *rd);

/*
 * smtpc_read consumes bytes from the front of *in up to the end of one
 * reply (SMTPC_REPLY, *out_code set) or all of *in (SMTPC_MORE). After
 * SMTPC_SYNTAX the reader is unusable: drop the connection.
 */
enum smtpc_rc smtpc_read(struct smtpc_rd *rd, struct span *in, int *out_code);

#endif
