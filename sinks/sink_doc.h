/*
 * sink_doc.h - the message document (docs/json.md, with "envelope" and
 * "auth") for sinks that send it whole rather than write files: the
 * webhook and exec sinks. A thin wrapper over proto/message (parsed while
 * tx_write streams the message) and proto/msgdoc (the JSON), so those
 * sinks share the json sink's code, not a copy of it. Every attachment is
 * inline (base64): there is no directory to put large ones in.
 */
#ifndef OMX_SINK_DOC_H
#define OMX_SINK_DOC_H

#include "../core/bb.h"
#include "../core/span.h"
#include "../proto/msg.h"

struct message;

struct sink_doc {
	struct message *msg; /* owned */
};

/* sink_doc_init: 0 or -ENOMEM. */
int sink_doc_init(struct sink_doc *d);
/* sink_doc_feed parses the next bytes of the message (borrowed). 0 or -errno. */
int sink_doc_feed(struct sink_doc *d, struct span bytes);
/*
 * sink_doc_finish ends the input and appends the document (no trailing
 * newline) to out. `env` is borrowed; `authserv_id` is our hostname (our
 * Authentication-Results field fills "auth"). 0 or -ENOMEM/-E2BIG.
 */
int sink_doc_finish(struct sink_doc *d, struct bb *out, const struct msg_env *env, const char *authserv_id);
/* sink_doc_fini frees the parse state; safe on a zeroed or finished doc. */
void sink_doc_fini(struct sink_doc *d);

#endif
