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

/* One resinfo of our Authentication-Results field: method=result and its properties. */
#define MSGDOC_AR_ENTRIES_MAX 24
#define MSGDOC_AR_PROPS_MAX 8

struct msgdoc_ar_entry {
	char method[32], result[32];  /* "dkim", "pass" */
	unsigned num_props;
	char key[MSGDOC_AR_PROPS_MAX][32];   /* "reason", "header.d", "smtp.mailfrom", ... */
	char val[MSGDOC_AR_PROPS_MAX][256];  /* unquoted */
};

/*
 * msgdoc_authres reads our verdicts, as the document's "auth" section has
 * them: the message's first header field, when it is the Authentication-
 * Results field with our authserv-id (the one the server prepended), split
 * into entries (RFC 8601 §2.2; comments skipped, quoted values unquoted).
 * `out` has room for MSGDOC_AR_ENTRIES_MAX (~57 KiB: not for the stack).
 * Returns how many; 0 when there is no such field or authserv_id is NULL.
 */
unsigned msgdoc_authres(struct msgdoc_ar_entry *out, const struct message *m, const char *authserv_id);
/* msgdoc_ar_prop: the value of property `key` (ASCII case-insensitive) of e, or NULL. */
const char *msgdoc_ar_prop(const struct msgdoc_ar_entry *e, const char *key);

/*
 * msgdoc_write appends the document (one JSON object, no trailing newline)
 * to out. `env` may be NULL (then "envelope" is null). 0 or -ENOMEM/-E2BIG.
 */
int msgdoc_write(struct bb *out, const struct message *m, const struct msg_env *env, const struct msgdoc_opts *o);

/*
 * msgdoc_spam_field_name: `field` (a header field, or its name followed
 * by a colon) is an X-Spam-Flag, X-Spam-Score or X-Spam-Status field, the
 * names of the spam verdict on top of a stored message (verify/rspamd.h
 * writes rspamd's; a milter's may be there too): when our block holds
 * one, core/deliver.c removes the client's fields of these names, and
 * the "spam" section reads ours.
 */
bool msgdoc_spam_field_name(struct span field);

#endif
