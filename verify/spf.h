/*
 * spf.h - the Sender Policy Framework (RFC 7208): the record parser and
 * the macro expander (pure functions, fuzzed), and check_host() as an
 * asynchronous state machine over struct dns_resolver (it starts lookups
 * and is resumed by their answers; it never blocks or polls).
 *
 * Sequence (one thread at a time per struct spf_check; the resolver's):
 *
 *   c = spf_check_new(&params);              copies everything it needs
 *   spf_check_start(c, resolver, done, arg); lookups start now
 *   ... the owner runs dns_process(resolver) as its fd becomes readable
 *   done(arg, c) runs once, from dns_process (or from spf_check_start when
 *       no lookup is needed); spf_check_result(c) is then final
 *   spf_check_free(c);                       also cancels lookups in flight
 *
 * Bounds (RFC 7208 §4.6.4): 10 DNS-querying terms, 2 void lookups, 10 MX
 * exchanges per mx (more is permerror), 10 PTR names per ptr or %{p}
 * (more are ignored), include/redirect nesting of at most 10 (implied by
 * the lookup limit), records of at most SPF_RECORD_MAX octets.
 */
#ifndef OMX_SPF_H
#define OMX_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "auth.h"
#include "dns.h"

#define SPF_LOOKUPS_MAX 10       /* RFC 7208 §4.6.4 */
#define SPF_VOID_MAX 2           /* RFC 7208 §4.6.4 */
#define SPF_MX_MAX 10            /* RFC 7208 §4.6.4 */
#define SPF_PTR_MAX 10           /* RFC 7208 §4.6.4 */
#define SPF_DOMAIN_MAX 253       /* RFC 7208 §4.3, §7.3 (after truncation) */
#define SPF_LABEL_MAX 63         /* RFC 1035 §2.3.4 */
#define SPF_RECORD_MAX 4096      /* one SPF record, strings joined; larger is permerror */
#define SPF_SENDER_MAX 320       /* local-part@domain (RFC 5321 §4.5.3.1) */
#define SPF_EXPAND_MAX 2048      /* one macro expansion, before domain truncation */
#define SPF_EXP_MAX 512          /* explanation text kept */
#define SPF_DEPTH_MAX (SPF_LOOKUPS_MAX + 1) /* frames: the top record plus nested includes */

/* ---------------------------------------------------------------- record */

enum spf_mech {
	SPF_M_ALL = 0, /* §5.1 */
	SPF_M_INCLUDE, /* §5.2 */
	SPF_M_A,       /* §5.3 */
	SPF_M_MX,      /* §5.4 */
	SPF_M_PTR,     /* §5.5 */
	SPF_M_IP4,     /* §5.6 */
	SPF_M_IP6,     /* §5.6 */
	SPF_M_EXISTS,  /* §5.7 */
	SPF_M_COUNT    /* number of values */
};

/* One mechanism (modifiers are collected in struct spf_record). */
struct spf_term {
	enum spf_mech mech;
	enum auth_res qual;   /* AUTH_PASS, AUTH_FAIL, AUTH_SOFTFAIL or AUTH_NEUTRAL */
	struct span domain;   /* domain-spec as written (unexpanded); empty when absent */
	uint8_t cidr4, cidr6; /* 32 and 128 when absent */
	uint8_t ip[16];       /* ip4: first 4 octets; ip6: 16 */
};

struct spf_record {
	unsigned num_terms;   /* mechanisms */
	unsigned num_lookups; /* of them, terms that query DNS (include a mx ptr exists) */
	bool has_redirect, has_exp;
	struct span redirect; /* domain-spec of redirect= (borrowed) */
	struct span exp;      /* domain-spec of exp= (borrowed) */
	struct span terms;    /* the text after "v=spf1", for spf_term_next */
};

/*
 * spf_record_is_spf: `txt` is an SPF record, i.e. starts with "v=spf1"
 * (any case) followed by a space or its end (§4.5).
 */
bool spf_record_is_spf(struct span txt);

/*
 * spf_record_parse checks the whole record `txt` (§4.6, ABNF of §12) and
 * fills *out, which borrows txt. Returns AUTH_NONE when it is usable, else
 * AUTH_PERMERROR with a static *out_reason and *out_err_pos the offset of
 * the bad term. Unknown modifiers are checked for syntax and ignored;
 * redirect= or exp= twice is an error (§6).
 */
__attribute__((warn_unused_result)) enum auth_res spf_record_parse(struct spf_record *out, const char **out_reason,
								     size_t *out_err_pos, struct span txt);

/*
 * spf_term_next takes the next mechanism from *cursor (initially
 * rec->terms of a record spf_record_parse accepted) into *out, skipping
 * modifiers. False at the end. The span in *out borrows the record.
 */
bool spf_term_next(struct span *cursor, struct spf_term *out);

/* spf_mech_name: "all", "include", ... (static). */
const char *spf_mech_name(enum spf_mech m);

/* ---------------------------------------------------------------- macros */

/* What macros expand to (§7.3); every string borrowed, NUL-terminated. */
struct spf_macro_env {
	const char *sender;   /* s: local-part@domain */
	const char *local;    /* l */
	const char *sender_domain; /* o */
	const char *domain;   /* d: the <domain> being checked */
	const char *helo;     /* h */
	const char *receiver; /* r: our host name ("unknown" when NULL) */
	const char *validated; /* p: validated client name ("unknown" when NULL) */
	uint64_t now;         /* t */
	bool ipv6;
	uint8_t ip[16];       /* ip4 in the first 4 octets */
};

enum spf_macro_rc {
	SPF_MACRO_OK = 0,   /* *out_len bytes written (not NUL-terminated) */
	SPF_MACRO_SYNTAX,   /* not a macro-string (§7.1); *out_err_pos */
	SPF_MACRO_TOO_LONG, /* the expansion would pass out_max */
};

/* Flags for spf_macro_expand. */
#define SPF_MACRO_EXP 1u    /* an explanation string: c, r, t allowed, SP kept (§7.1, §6.2) */
#define SPF_MACRO_DOMAIN 2u /* a domain-spec: truncate to 253 octets from the left (§7.3) */

/*
 * spf_macro_expand expands the macro-string `in` into out[0..out_max)
 * (§7): letters s l o d i p h v (and c r t with SPF_MACRO_EXP), the
 * transformers (digits, r) and delimiters, %% %_ %-, URL-escaping for
 * upper-case letters (§7.3). A zero digit transformer is a syntax error.
 * Pure.
 */
__attribute__((warn_unused_result)) enum spf_macro_rc spf_macro_expand(char *out, size_t out_max, size_t *out_len,
									 size_t *out_err_pos,
									 const struct spf_macro_env *env,
									 struct span in, unsigned flags);

/* spf_macro_uses: `in` contains the %{p} macro (it needs PTR lookups first). */
bool spf_macro_uses_p(struct span in);

/*
 * spf_domain_ok: `d` is a usable target name: 1..253 octets, no empty
 * label, no label over 63 octets, at least two labels (§4.3).
 */
bool spf_domain_ok(struct span d);

/* ---------------------------------------------------------------- check */

enum spf_identity {
	SPF_ID_MAILFROM = 0, /* §2.4: smtp.mailfrom (postmaster@HELO for the null path) */
	SPF_ID_HELO,         /* §2.3: smtp.helo */
	SPF_ID_COUNT         /* number of values */
};

struct spf_params {
	enum spf_identity identity;
	const char *client_ip;  /* textual IPv4 or IPv6 (an IPv4-mapped IPv6 is taken as IPv4) */
	const char *mail_from;  /* the reverse-path without <>, "" for the null sender */
	const char *helo;       /* the HELO/EHLO argument */
	const char *receiver;   /* our host name for %{r}; NULL: "unknown" */
	uint64_t now;           /* Unix time for %{t} */
	uint32_t timeout_ms;    /* per lookup; 0: the resolver's default */
};

struct spf_result {
	enum auth_res res;         /* one of the seven RFC 7208 §2.6 results */
	enum spf_identity identity;
	char sender[SPF_SENDER_MAX + 1];  /* the checked identity: smtp.mailfrom / postmaster@helo / helo */
	char domain[SPF_DOMAIN_MAX + 1];  /* the <domain> of check_host() */
	const char *reason;        /* static: why (mechanism matched, error), never NULL once done */
	char mechanism[64];        /* the matching mechanism as written, "" if none ("default") */
	char exp[SPF_EXP_MAX + 1]; /* explanation on fail, from exp= (§6.2); "" if none */
	unsigned num_lookups, num_void;
};

struct spf_check;

typedef void spf_done_fn(void *arg, struct spf_check *c);

/*
 * spf_check_new makes a check of p->identity and copies what it needs
 * from *p. NULL when out of memory. The client IP is parsed here: a bad
 * one gives a check whose result is permerror without any lookup.
 */
struct spf_check *spf_check_new(const struct spf_params *p);

/*
 * spf_check_start starts evaluation with lookups on `r` (borrowed until
 * the check finishes or is freed); `done` runs exactly once, from
 * dns_process() on `r`, or before this returns when no lookup is needed.
 * A check must not be freed from inside its own `done`'s caller chain
 * other than by `done` itself (freeing there is allowed).
 */
void spf_check_start(struct spf_check *c, struct dns_resolver *r, spf_done_fn *done, void *arg);

/* spf_check_done: the result is final. */
bool spf_check_done(const struct spf_check *c);

/* spf_check_result: the result (final once done), valid while c lives. */
const struct spf_result *spf_check_result(const struct spf_check *c);

/* spf_check_free cancels lookups in flight and frees c; NULL does nothing. */
void spf_check_free(struct spf_check *c);

/* spf_identity_name: "mailfrom" or "helo" (the RFC 8601 smtp.* property names). */
const char *spf_identity_name(enum spf_identity id);

#endif
