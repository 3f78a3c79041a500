/*
 * sink_doc.h - the message document as sinks deliver it: the bytes of the
 * json sink's DIR/ID.json, which the stream sink also sends (docs/json.md,
 * with "envelope" and "auth", one newline at the end). One function for
 * both, so the two can never drift apart.
 */
#ifndef OMX_SINK_DOC_H
#define OMX_SINK_DOC_H

#include "../core/bb.h"
#include "../proto/message.h"
#include "../proto/msgdoc.h"

/*
 * sink_doc_finish ends the parse of `m` (fed with the message bytes as the
 * sinks receive them) and appends its document, then "\n", to out. `o`
 * names our authserv-id (the server's hostname, so our
 * Authentication-Results field fills "auth") and where large attachments
 * went. 0, or -ENOMEM / -E2BIG. Borrows everything.
 */
int sink_doc_finish(struct bb *out, struct message *m, const struct msg_env *env, const struct msgdoc_opts *o);

#endif
