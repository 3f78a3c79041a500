/*
 * mime_doc.h - shared by the MIME Criterion tests: the JSON document of a
 * message that has been fed, for comparing feeds of the same input.
 */
#ifndef OMX_TEST_MIME_DOC_H
#define OMX_TEST_MIME_DOC_H

#include <criterion/criterion.h>
#include <stdint.h>

#include "core/bb.h"
#include "proto/message.h"
#include "proto/msgdoc.h"

/* doc_end ends and frees m; returns its document (inline attachments, NUL-terminated; caller frees). */
static inline char *doc_end(struct message *m)
{
	struct msgdoc_opts o = { .inline_max = SIZE_MAX };
	struct bb b;

	cr_assert_eq(message_end(m), 0);
	bb_init(&b, 0);
	cr_assert_eq(msgdoc_write(&b, m, NULL, &o), 0);
	cr_assert_eq(bb_append(&b, "", 1), 0);
	message_free(m);
	return (char *)b.p;
}

#endif
