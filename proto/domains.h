/*
 * domains.h - the recipient domains we accept mail for, as a sorted list
 * usable as smtp_cfg.domain_ok.
 *
 * Built once from configuration ("example.com, .example.org"), then
 * immutable: shards may share one list without locks. Matching is ASCII
 * case-insensitive and exact; an entry that starts with "." matches every
 * subdomain of the rest but not the rest itself (".example.org" matches
 * "a.example.org" and "b.a.example.org", not "example.org").
 */
#ifndef OMX_DOMAINS_H
#define OMX_DOMAINS_H

#include <stdbool.h>

#include "../core/span.h"

struct domain_list;

/*
 * domain_list_parse builds a list from `spec`, entries separated by commas
 * and/or white space. Entries are RFC 5321 domains (with an optional
 * leading "." for subdomains) or address literals like "[192.0.2.1]".
 * Returns 0 and a new list in *out_list, -EINVAL (empty list or a bad
 * entry; *out_list untouched) or -ENOMEM. Free with domain_list_free().
 */
__attribute__((warn_unused_result)) int domain_list_parse(struct domain_list **out_list, const char *spec);

/* domain_list_free releases a list; NULL is a no-op. */
void domain_list_free(struct domain_list *dl);

/* domain_list_count returns the number of entries. */
size_t domain_list_count(const struct domain_list *dl);

/*
 * domain_list_match tells whether `dom` (not NUL-terminated) is in the list;
 * `arg` is the const struct domain_list *. Signature of smtp_cfg.domain_ok.
 * Thread-safe (read only).
 */
bool domain_list_match(const void *arg, struct span dom);

#endif
