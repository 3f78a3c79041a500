/*
 * mail_reply.h - the reply without its history: the new text of a reply
 * with the quoted conversation removed, its signature named, and the HTML
 * body with the quoted blockquote/div removed (the message document's
 * `reply` object, docs/json.md; Postmark's StrippedTextReply, Mailgun's
 * stripped-text / stripped-signature / stripped-html).
 *
 * Pure: no I/O, no globals. Computed from the already-decoded UTF-8 bodies
 * (proto/message.h). Linear in the body: every line is classified once,
 * with look-ahead bounded by constants (MAIL_REPLY_ATTR_LINES lines of at
 * most MAIL_REPLY_ATTR_LINE_MAX bytes), and the HTML is tokenised in one
 * pass; `work` counts the line and byte visits so tests can check that.
 * Memory: one line table (12 bytes a line, at most MAIL_REPLY_LINES_MAX
 * lines) and the output, never larger than the input (plus a tag-stripped
 * copy of the HTML reply when the text is derived from it).
 */
#ifndef OMX_MAIL_REPLY_H
#define OMX_MAIL_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/bb.h"
#include "../core/span.h"

/* Bodies past these bounds are not analysed: the reply is the whole body. */
#define MAIL_REPLY_BYTES_MAX (8u << 20)
#define MAIL_REPLY_LINES_MAX (1u << 18)
/* An attribution ("On <date>, <name> wrote:") spans at most this many lines of at most this many bytes. */
#define MAIL_REPLY_ATTR_LINES 6
#define MAIL_REPLY_ATTR_LINE_MAX 400
/* A signature starts within the last this many lines of the reply. */
#define MAIL_REPLY_SIG_LINES 30

struct mail_reply {
	struct bb buf;      /* owns the bytes the spans below point into */
	struct span text;   /* the reply text, signature included; valid with has_text */
	struct span signature; /* a suffix of text; valid with has_sig */
	struct span html;   /* the HTML body without the quoted part; valid with has_html */
	bool has_text;      /* false only when neither body exists */
	bool has_sig;
	bool has_html;
	bool quoted;        /* something was removed */
	bool from_html;     /* text was derived from the HTML reply (no text body) */
	uint64_t work;      /* line and byte visits: a debug counter for the linearity tests */
};

void mail_reply_init(struct mail_reply *r);
void mail_reply_fini(struct mail_reply *r);

/*
 * mail_reply_extract fills r from the text body and the HTML body (each NULL
 * when the message has none; both borrowed for the call only: r keeps its
 * own copy). r must be freshly initialised. Returns 0, or -ENOMEM (r is then
 * left for mail_reply_fini only).
 */
__attribute__((warn_unused_result)) int mail_reply_extract(struct mail_reply *r, const struct span *text,
							    const struct span *html);

#endif
