/* sink_doc.c - the message document for the webhook and exec sinks; see sink_doc.h. */
#include "sink_doc.h"

#include <errno.h>
#include <stdint.h>

#include "../proto/message.h"
#include "../proto/msgdoc.h"

int sink_doc_init(struct sink_doc *d)
{
	struct message_opts mo = { .keep_max = SIZE_MAX };

	d->msg = message_new(&mo);
	return d->msg != NULL ? 0 : -ENOMEM;
}

int sink_doc_feed(struct sink_doc *d, struct span bytes)
{
	return message_feed(d->msg, bytes.p, bytes.len);
}

int sink_doc_finish(struct sink_doc *d, struct bb *out, const struct msg_env *env, const char *authserv_id)
{
	struct msgdoc_opts o = { .inline_max = SIZE_MAX, .authserv_id = authserv_id };
	int rc = message_end(d->msg);

	return rc != 0 ? rc : msgdoc_write(out, d->msg, env, &o);
}

void sink_doc_fini(struct sink_doc *d)
{
	message_free(d->msg);
	d->msg = NULL;
}
