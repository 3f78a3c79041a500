/*
 * addr.h - RFC 5322 §3.4 address lists (with RFC 6532 UTF-8 and the
 * obsolete forms of §4.4) parsed into {name, email, local, domain, detail}.
 *
 * Tolerant as mainstream parsers are: display names with RFC 2047 words,
 * quoted local parts, groups ("team: a@x, b@y;"), comments (used as the
 * name when there is no display name, as "a@x (Ann)"), source routes
 * ("<@relay:a@x>"), missing angle brackets, stray commas. An item that
 * is not an address keeps its text in `email` and sets `invalid`.
 * The list owns every string (malloc'd, NUL-terminated, UTF-8). A NUL byte
 * in the input becomes U+FFFD in every string (never cuts it), and an
 * addr-spec holding one is `invalid`.
 */
#ifndef OMX_ADDR_H
#define OMX_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/span.h"

#define ADDR_LIST_MAX 1000 /* items kept per field; more are counted in num_dropped */

struct addr_item {
	char *name;    /* decoded display name, "" if none */
	char *email;   /* addr-spec as written (local@domain), "" if none */
	char *local;   /* local part, quotes removed */
	char *domain;  /* domain, "" if none */
	char *detail;  /* sub-address after the first '+' of the local part, NULL if none */
	char *group;   /* group display name, NULL outside a group */
	bool invalid;  /* no usable local@domain */
};

struct addr_list {
	struct addr_item *items;
	size_t num;
	size_t num_invalid;
	size_t num_dropped;
	size_t num_nul;     /* NUL bytes replaced by U+FFFD in names and addresses */
};

/* addr_list_parse parses an address-list header value. 0 or -ENOMEM (list then empty). */
int addr_list_parse(struct addr_list *out, struct span in);
void addr_list_fini(struct addr_list *l);

/*
 * addr_split fills local/domain/detail for a bare addr-spec such as an
 * envelope path; the item owns the strings (NUL as U+FFFD, and then
 * `invalid`). 0 or -ENOMEM.
 */
int addr_split(struct addr_item *out, struct span addr_spec);
void addr_item_fini(struct addr_item *it);

#endif
