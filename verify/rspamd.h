/*
 * rspamd.h - rspamd's verdict (its HTTP protocol, POST /checkv2): a pure,
 * bounded reader of the JSON reply and the writer of the X-Spam-* fields
 * oceanmx puts on the stored message. No I/O, no globals, no allocation:
 * the caller owns every struct (core/rspamd_client.c does the HTTP).
 *
 * The fields (docs/json.md "spam"; read back by proto/msgdoc.c):
 *
 *   X-Spam-Flag: YES                       YES when the action is reject,
 *                                          add header or rewrite subject
 *   X-Spam-Score: 1002.50
 *   X-Spam-Status: Yes, score=1002.50 required=15.00 action="reject"
 *   	engine=rspamd tests=GTUBE(1000.00),MISSING_DATE(1.00)
 *
 * and, when the check could not run (--rspamd-fail open), only
 *
 *   X-Spam-Status: Unknown, engine=rspamd error="timeout"
 *
 * They are written in our auth block (on top of the message, with our
 * Authentication-Results); core/deliver.c removes fields of these three
 * names from the client's header, so what a consumer reads is ours.
 */
#ifndef OMX_RSPAMD_H
#define OMX_RSPAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/bb.h"

#define RSPAMD_REPLY_MAX   (1u << 20) /* bytes of a reply we read; more is an error */
#define RSPAMD_DEPTH_MAX   16         /* JSON nesting; rspamd's reply uses 4 */
#define RSPAMD_SYMBOLS_MAX 48         /* kept: those with the largest |score| */
#define RSPAMD_NAME_MAX    64         /* a symbol name, NUL included; longer ones are cut */
#define RSPAMD_ACTION_MAX  24         /* "rewrite subject" and friends */

struct rspamd_symbol {
	char name[RSPAMD_NAME_MAX]; /* [A-Za-z0-9_.-] only: anything else became '_' */
	double score;
};

struct rspamd_reply {
	double score;                /* "score" */
	double required;             /* "required_score" */
	char action[RSPAMD_ACTION_MAX]; /* "action", [a-z ] only */
	bool skipped;                /* "is_skipped": rspamd did not check it (settings) */
	unsigned num_symbols;
	unsigned num_dropped;        /* symbols beyond RSPAMD_SYMBOLS_MAX (smallest |score|) */
	struct rspamd_symbol sym[RSPAMD_SYMBOLS_MAX];
};

enum rspamd_rc {
	RSPAMD_OK = 0,      /* score, required_score and action were read */
	RSPAMD_SYNTAX,      /* not JSON, or not an object at the top */
	RSPAMD_TOO_DEEP,    /* nesting beyond RSPAMD_DEPTH_MAX */
	RSPAMD_TOO_LONG,    /* more than RSPAMD_REPLY_MAX bytes */
	RSPAMD_INCOMPLETE,  /* valid JSON without score, required_score or action */
	RSPAMD_RC_COUNT     /* sentinel */
};

/*
 * rspamd_reply_parse reads rspamd's /checkv2 JSON reply `p[0..len)` into
 * *out (zeroed first). Unknown members are skipped; an "error" member makes
 * it RSPAMD_INCOMPLETE. *out_err_pos is the offset where it stopped on an
 * error (len on success). Pure; borrows p.
 */
__attribute__((warn_unused_result)) enum rspamd_rc rspamd_reply_parse(struct rspamd_reply *out, size_t *out_err_pos,
								      const uint8_t *p, size_t len);

/* rspamd_rc_name: "ok", "syntax", ... for logs. */
const char *rspamd_rc_name(enum rspamd_rc rc);

/* rspamd_is_spam: the action is reject, add header or rewrite subject. */
bool rspamd_is_spam(const struct rspamd_reply *r);

/*
 * rspamd_fields_write appends the X-Spam-* fields (above) for verdict `r`,
 * or, when r is NULL, the one X-Spam-Status of a check that failed with
 * `error` (a short reason; unsafe bytes become '?', cut at 96 bytes).
 * CRLF-terminated, folded under 78 columns where a symbol list allows.
 * 0 or -ENOMEM.
 */
int rspamd_fields_write(struct bb *out, const struct rspamd_reply *r, const char *error);

#endif
