/*
 * msgdoc.h - the JSON document of a message (schema: docs/json.md),
 * written from a parsed struct message and, when known, the SMTP envelope.
 * Pure: writes into a caller's byte builder; no I/O.
 */
#ifndef OMX_MSGDOC_H
#define OMX_MSGDOC_H

#include <stddef.h>

#include "../core/bb.h"
#include "message.h"
#include "msg.h"

#define MSGDOC_SCHEMA "oceanmx.message"
#define MSGDOC_VERSION 1

/*
 * msgdoc_att_path_fn names where a large attachment was written (NULL if
 * it was not); the string is borrowed until msgdoc_write returns.
 */
typedef const char *msgdoc_att_path_fn(void *arg, const struct message_part *p);

struct msgdoc_opts {
	size_t inline_max;          /* attachments up to this size inline as base64 (SIZE_MAX: all) */
	msgdoc_att_path_fn *att_path; /* for the others; may be NULL */
	void *arg;
	/* Our authserv-id: the first header field, when it is the
	 * Authentication-Results field we prepended with this id, fills the
	 * "auth" section. NULL (oceanmx parse): "auth" stays empty. */
	const char *authserv_id;
};

/*
 * msgdoc_write appends the document (one JSON object, no trailing newline)
 * to out. `env` may be NULL (then "envelope" is null). 0 or -ENOMEM/-E2BIG.
 */
int msgdoc_write(struct bb *out, const struct message *m, const struct msg_env *env, const struct msgdoc_opts *o);

#endif
