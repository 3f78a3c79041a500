/* sink_doc.c - the message document of the json and stream sinks; see sink_doc.h. */
#include "sink_doc.h"

int sink_doc_finish(struct bb *out, struct message *m, const struct msg_env *env, const struct msgdoc_opts *o)
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
