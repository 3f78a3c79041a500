/* sink_doc.c - the message document every sink sends; see sink_doc.h. */
#include "sink_doc.h"

#include <errno.h>
#include <stdint.h>

int sink_doc_write(struct bb *out, struct message *m, const struct msg_env *env, const struct msgdoc_opts *o)
{
	int rc = message_end(m);

	if (rc == 0) {
		rc = msgdoc_write(out, m, env, o);
	}
	if (rc == 0) {
		rc = bb_append(out, "\n", 1);
	}
	return rc;
}

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

	return sink_doc_write(out, d->msg, env, &o);
}

void sink_doc_fini(struct sink_doc *d)
{
	message_free(d->msg);
	d->msg = NULL;
}
