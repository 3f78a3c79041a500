/*
 * psl.h - the Public Suffix List (publicsuffix.org) and organizational
 * domains (RFC 7489 §3.2) for DMARC.
 *
 * The list is parsed once (Debian's `publicsuffix` package installs it at
 * PSL_DEFAULT_PATH) into an immutable, sorted table; lookups are pure and
 * thread-safe. Unicode rules are stored as A-labels (punycode, RFC 3492),
 * as the names in mail are.
 */
#ifndef OMX_PSL_H
#define OMX_PSL_H

#include <stdbool.h>
#include <stddef.h>

#define PSL_DEFAULT_PATH "/usr/share/publicsuffix/public_suffix_list.dat"
#define PSL_NAME_MAX 253

struct psl;

/* psl_parse builds a list from the text of a .dat file (borrowed). NULL when out of memory. */
struct psl *psl_parse(const char *text, size_t len);

/* psl_load reads and parses `path`; NULL with a malloc'd *out_err on failure. */
struct psl *psl_load(const char *path, char **out_err);

/* psl_free releases the list; NULL does nothing. */
void psl_free(struct psl *p);

/* psl_num_rules: rules loaded (for tests and logs). */
size_t psl_num_rules(const struct psl *p);

/*
 * psl_org_domain writes the organizational domain of `domain` (RFC 7489
 * §3.2: the public suffix plus one label; a public suffix is its own)
 * into out, lower case, without leading or trailing dots. False when the
 * domain is empty, has an empty label or does not fit.
 */
bool psl_org_domain(const struct psl *p, char *out, size_t out_len, const char *domain);

#endif
