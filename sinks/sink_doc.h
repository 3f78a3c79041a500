/*
 * sink_doc.h - the message document as sinks deliver it (docs/json.md, with
 * "envelope" and "auth", one newline at the end): the bytes of the json
 * sink's DIR/ID.json, which the stream, webhook and exec sinks also send.
 * One writer for all of them, so they can never drift apart; proto/message
 * parses, proto/msgdoc writes.
 */
#ifndef OMX_SINK_DOC_H
#define OMX_SINK_DOC_H

#include "../core/bb.h"
#include "../core/span.h"
#include "../proto/message.h"
#include "../proto/msg.h"
#include "../proto/msgdoc.h"

/*
 * sink_doc_write ends the parse of `m` (fed with the message bytes as the
 * sinks receive them) and appends its document, then "\n", to out. `o`
 * names our authserv-id (the server's hostname, so our
 * Authentication-Results field fills "auth") and where large attachments
 * went. 0, or -ENOMEM / -E2BIG. Borrows everything.
 */
int sink_doc_write(struct bb *out, struct message *m, const struct msg_env *env, const struct msgdoc_opts *o);

/*
 * struct sink_doc: the parse for sinks that send the document whole and
 * have no directory for large attachments (webhook, exec): every
 * attachment is inline (base64).
 */
struct sink_doc {
	struct message *msg; /* owned */
};

/* sink_doc_init: 0 or -ENOMEM. */
int sink_doc_init(struct sink_doc *d);
/* sink_doc_feed parses the next bytes of the message (borrowed). 0 or -errno. */
int sink_doc_feed(struct sink_doc *d, struct span bytes);
/*
 * sink_doc_finish ends the input and appends the document (sink_doc_write)
 * to out. `env` is borrowed; `authserv_id` is our hostname. 0 or
 * -ENOMEM/-E2BIG.
 */
int sink_doc_finish(struct sink_doc *d, struct bb *out, const struct msg_env *env, const char *authserv_id);
/* sink_doc_fini frees the parse state; safe on a zeroed or finished doc. */
void sink_doc_fini(struct sink_doc *d);

#endif
