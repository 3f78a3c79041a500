/*
 * spf.c - check_host() (RFC 7208 §4) as a state machine over the resolver.
 *
 * The evaluation is a stack of frames: the checked record at the bottom,
 * one frame per include being evaluated above it; redirect= replaces the
 * frame it ends. Each step runs until it needs DNS, starts the lookups
 * (several at once for the addresses of MX exchanges and PTR names) and
 * returns; the answers' callbacks resume it. The check owns its frames
 * (heap, freed as they are popped) and its lookups (cancelled by
 * spf_check_free). `done` is the last thing a step does, so it may free
 * the check.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spf.h"

#define SPF_SLOTS (SPF_PTR_MAX > SPF_MX_MAX ? SPF_PTR_MAX : SPF_MX_MAX)

/* What the check waits for. */
enum spf_wait {
	W_NONE = 0,  /* running, or done */
	W_RECORD,    /* TXT of the top frame's domain */
	W_A,         /* a: the address records of the target */
	W_MX,        /* mx: the MX records of the target */
	W_MX_ADDR,   /* mx: the address records of each exchange */
	W_PTR,       /* ptr: the PTR records of the client */
	W_PTR_ADDR,  /* ptr: the address records of each name */
	W_EXISTS,    /* exists: the A records of the target */
	W_EXP,       /* exp=: the TXT of the explanation domain */
	W_P_PTR,     /* %{p}: the PTR records of the client */
	W_P_ADDR,    /* %{p}: the address records of each name */
};

/* What to do once %{p} is known. */
enum spf_resume {
	R_TERM = 0, /* evaluate the frame's current mechanism again */
	R_REDIRECT, /* follow the frame's redirect= */
	R_EXP,      /* look up exp= */
	R_EXP_TEXT, /* expand the explanation text */
};

enum term_rc {
	T_MATCH = 0,
	T_NOMATCH,
	T_WAIT,
	T_DONE, /* the check finished (error) */
};

struct spf_frame {
	char domain[SPF_DOMAIN_MAX + 1];
	char rec[SPF_RECORD_MAX];
	struct spf_record parsed;
	struct span cursor;
	struct spf_term cur;
	bool include;    /* the parent's include mechanism waits for this result */
	bool redirected; /* reached through redirect= */
};

struct spf_slot {
	struct spf_check *c;
	uint64_t id;
	unsigned idx;
	bool live;
};

struct spf_check {
	struct spf_result res;
	struct spf_macro_env env;
	char sender[SPF_SENDER_MAX + 1];
	char local[SPF_SENDER_MAX + 1];
	char sender_domain[SPF_DOMAIN_MAX + 2];
	char helo[SPF_DOMAIN_MAX + 2];
	char receiver[SPF_DOMAIN_MAX + 2];
	char ptr_name[80];               /* reverse name of the client */
	bool bad_ip;
	uint32_t timeout_ms;

	struct dns_resolver *r;
	spf_done_fn *done;
	void *arg;
	bool finished;
	bool notified;

	struct spf_frame *stack[SPF_DEPTH_MAX];
	unsigned depth;
	enum spf_wait wait;
	enum spf_resume resume;
	struct spf_slot slots[SPF_SLOTS];
	unsigned outstanding;
	bool matched;                   /* of the lookups in flight */
	bool temp;                      /* an address lookup failed transiently */
	char names[SPF_SLOTS][DNS_NAME_TEXT_MAX + 1];
	unsigned num_names;
	char target[SPF_EXPAND_MAX + 1];

	bool p_done;
	char p_names[SPF_PTR_MAX][DNS_NAME_TEXT_MAX + 1];
	bool p_valid[SPF_PTR_MAX];
	unsigned num_p;
	char p_value[DNS_NAME_TEXT_MAX + 1];

	char exp_txt[SPF_RECORD_MAX];
	size_t exp_txt_len;
};

const char *spf_identity_name(enum spf_identity id)
{
	return id == SPF_ID_HELO ? "helo" : "mailfrom";
}

static bool ieq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* within: `name` equals `dom` or ends with "." dom, ASCII case-insensitively. */
static bool within(const char *name, const char *dom)
{
	size_t n = strlen(name), d = strlen(dom);

	if (d > 0 && dom[d - 1] == '.') {
		d--;
	}
	if (n > 0 && name[n - 1] == '.') {
		n--;
	}
	if (n < d || strncasecmp(name + n - d, dom, d) != 0) {
		return false;
	}
	return n == d || name[n - d - 1] == '.';
}

static void copy_str(char *dst, size_t dst_len, const char *src)
{
	size_t n = strlen(src);

	if (n >= dst_len) {
		n = dst_len - 1;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * finish ends the check with `res` and cancels its lookups; `done` runs
 * from notify() when the entry point (answer_cb, spf_check_start) returns.
 */
static void finish(struct spf_check *c, enum auth_res res, const char *reason)
{
	for (unsigned i = 0; i < SPF_SLOTS; i++) {
		if (c->slots[i].live) {
			dns_cancel(c->r, c->slots[i].id);
			c->slots[i].live = false;
		}
	}
	c->outstanding = 0;
	c->wait = W_NONE;
	c->res.res = res;
	c->res.reason = reason;
	c->finished = true;
}

/* notify runs `done` once the check has finished; the last thing an entry point does. */
static void notify(struct spf_check *c)
{
	if (c->finished && !c->notified) {
		c->notified = true;
		if (c->done != NULL) {
			c->done(c->arg, c);
		}
	}
}

static struct spf_frame *top(struct spf_check *c)
{
	return c->depth > 0 ? c->stack[c->depth - 1] : NULL;
}

static void answer_cb(void *arg, const struct dns_answer *a);
static void handle_answer(struct spf_check *c, struct spf_slot *s, const struct dns_answer *a);

/* lookup starts a query into slot `idx`; false (and the check finished) on failure. */
static bool lookup(struct spf_check *c, unsigned idx, const char *name, uint16_t qtype)
{
	struct spf_slot *s = &c->slots[idx];
	uint64_t dl = c->timeout_ms ? dns_now_ms() + c->timeout_ms : 0;

	if (c->finished) {
		return false;
	}
	s->c = c;
	s->idx = idx;
	if (dns_query(c->r, name, qtype, dl, answer_cb, s, &s->id) != 0) {
		finish(c, AUTH_TEMPERROR, "DNS lookup could not start");
		return false;
	}
	s->live = true;
	c->outstanding++;
	return true;
}

/* addr_type is the address record type matching the client (§5.3). */
static uint16_t addr_type(const struct spf_check *c)
{
	return c->env.ipv6 ? DNS_T_AAAA : DNS_T_A;
}

static bool ip_match(const struct spf_check *c, const uint8_t *ip, size_t len, unsigned bits)
{
	size_t full = bits / 8;

	if (len != (c->env.ipv6 ? 16u : 4u)) {
		return false;
	}
	if (memcmp(ip, c->env.ip, full) != 0) {
		return false;
	}
	if (bits % 8 != 0) {
		uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));

		return (ip[full] & mask) == (c->env.ip[full] & mask);
	}
	return true;
}

static bool answer_matches(const struct spf_check *c, const struct dns_answer *a, unsigned bits)
{
	for (unsigned i = 0; i < a->num_records; i++) {
		if (ip_match(c, a->rr[i].data.p, a->rr[i].data.len, bits)) {
			return true;
		}
	}
	return false;
}

static bool is_void(enum dns_status s)
{
	return s == DNS_NXDOMAIN || s == DNS_NODATA;
}

/* count_void counts a void lookup; false (and finished) past the limit (§4.6.4). */
static bool count_void(struct spf_check *c)
{
	if (++c->res.num_void > SPF_VOID_MAX) {
		finish(c, AUTH_PERMERROR, "too many void DNS lookups");
		return false;
	}
	return true;
}

/* count_lookup counts a DNS-querying term; false (and finished) past the limit. */
static bool count_lookup(struct spf_check *c)
{
	if (++c->res.num_lookups > SPF_LOOKUPS_MAX) {
		finish(c, AUTH_PERMERROR, "too many DNS lookups");
		return false;
	}
	return true;
}

/* p_choose picks %{p} for the current domain (§7.3). */
static void p_choose(struct spf_check *c)
{
	const char *dom = c->env.domain;
	int best = -1;

	for (unsigned i = 0; i < c->num_p && best < 0; i++) {
		if (c->p_valid[i] && ieq(c->p_names[i], dom)) {
			best = (int)i;
		}
	}
	for (unsigned i = 0; i < c->num_p && best < 0; i++) {
		if (c->p_valid[i] && within(c->p_names[i], dom)) {
			best = (int)i;
		}
	}
	for (unsigned i = 0; i < c->num_p && best < 0; i++) {
		if (c->p_valid[i]) {
			best = (int)i;
		}
	}
	copy_str(c->p_value, sizeof(c->p_value), best >= 0 ? c->p_names[best] : "unknown");
	c->env.validated = c->p_value;
}

/*
 * need_p: `spec` uses %{p} and it is not known yet: start its lookups and
 * remember what to resume. Returns true when the caller must wait (or the
 * check finished).
 */
static bool need_p(struct spf_check *c, struct span spec, enum spf_resume resume)
{
	if (!spf_macro_uses_p(spec)) {
		return false;
	}
	if (c->p_done) {
		p_choose(c);
		return false;
	}
	c->resume = resume;
	c->wait = W_P_PTR;
	c->num_p = 0;
	lookup(c, 0, c->ptr_name, DNS_T_PTR);
	return true;
}

/*
 * expand_target expands a domain-spec (or takes `dflt` when it is empty)
 * into c->target. False (and finished) on a macro error.
 */
static bool expand_target(struct spf_check *c, struct span spec, const char *dflt)
{
	size_t len, pos;

	if (spec.len == 0) {
		copy_str(c->target, sizeof(c->target), dflt);
		return true;
	}
	if (spf_macro_expand(c->target, sizeof(c->target) - 1, &len, &pos, &c->env, spec, SPF_MACRO_DOMAIN) !=
	    SPF_MACRO_OK) {
		finish(c, AUTH_PERMERROR, "macro expansion failed");
		return false;
	}
	c->target[len] = '\0';
	if (len > 0 && c->target[len - 1] == '.') {
		c->target[len - 1] = '\0';
	}
	return true;
}

/* push_frame starts evaluating `domain` (include, or the first record). */
static bool push_frame(struct spf_check *c, const char *domain, bool include)
{
	struct spf_frame *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		finish(c, AUTH_TEMPERROR, "out of memory");
		return false;
	}
	copy_str(f->domain, sizeof(f->domain), domain);
	f->include = include;
	c->stack[c->depth++] = f;
	c->env.domain = f->domain;
	c->wait = W_RECORD;
	return lookup(c, 0, f->domain, DNS_T_TXT);
}

static void pop_frame(struct spf_check *c)
{
	free(c->stack[--c->depth]);
	c->stack[c->depth] = NULL;
	if (c->depth > 0) {
		c->env.domain = top(c)->domain;
	}
}

/* eval_term evaluates the top frame's current mechanism as far as it can. */
static enum term_rc eval_term(struct spf_check *c)
{
	struct spf_frame *f = top(c);
	const struct spf_term *t = &f->cur;

	switch (t->mech) {
	case SPF_M_ALL:
		return T_MATCH;
	case SPF_M_IP4:
		return !c->env.ipv6 && ip_match(c, t->ip, 4, t->cidr4) ? T_MATCH : T_NOMATCH;
	case SPF_M_IP6:
		return c->env.ipv6 && ip_match(c, t->ip, 16, t->cidr6) ? T_MATCH : T_NOMATCH;
	default:
		break;
	}
	if (need_p(c, t->domain, R_TERM)) {
		return c->finished ? T_DONE : T_WAIT;
	}
	if (!count_lookup(c) || !expand_target(c, t->domain, f->domain)) {
		return T_DONE;
	}
	if (t->mech != SPF_M_PTR && !spf_domain_ok(span_cstr(c->target))) {
		/* nothing can exist under a malformed name: a void lookup that never went out */
		return t->mech == SPF_M_INCLUDE ? (finish(c, AUTH_PERMERROR, "include of a malformed domain"), T_DONE)
						: T_NOMATCH;
	}
	c->matched = false;
	c->temp = false;
	switch (t->mech) {
	case SPF_M_INCLUDE:
		if (!push_frame(c, c->target, true)) {
			return T_DONE;
		}
		return T_WAIT;
	case SPF_M_A:
		c->wait = W_A;
		return lookup(c, 0, c->target, addr_type(c)) ? T_WAIT : T_DONE;
	case SPF_M_MX:
		c->wait = W_MX;
		return lookup(c, 0, c->target, DNS_T_MX) ? T_WAIT : T_DONE;
	case SPF_M_EXISTS:
		c->wait = W_EXISTS;
		return lookup(c, 0, c->target, DNS_T_A) ? T_WAIT : T_DONE; /* always A (§5.7) */
	case SPF_M_PTR:
		c->wait = W_PTR;
		return lookup(c, 0, c->ptr_name, DNS_T_PTR) ? T_WAIT : T_DONE;
	default:
		finish(c, AUTH_PERMERROR, "unknown mechanism");
		return T_DONE;
	}
}

static void set_mechanism(struct spf_check *c, const struct spf_term *t)
{
	static const char quals[] = { [AUTH_PASS] = '+', [AUTH_FAIL] = '-', [AUTH_SOFTFAIL] = '~', [AUTH_NEUTRAL] = '?' };
	int n = snprintf(c->res.mechanism, sizeof(c->res.mechanism), "%c%s%s%.*s", quals[t->qual],
			 spf_mech_name(t->mech), t->domain.len ? ":" : "", (int)t->domain.len, (const char *)t->domain.p);

	(void)n;
}

/* start_exp looks up the explanation of the top frame (§6.2). */
static void start_exp(struct spf_check *c)
{
	struct spf_frame *f = top(c);

	if (need_p(c, f->parsed.exp, R_EXP)) {
		return;
	}
	if (!expand_target(c, f->parsed.exp, "") || c->finished) {
		return;
	}
	if (!spf_domain_ok(span_cstr(c->target))) {
		finish(c, AUTH_FAIL, "matched a fail mechanism");
		return;
	}
	c->wait = W_EXP;
	lookup(c, 0, c->target, DNS_T_TXT);
}

/* exp_text expands the explanation TXT kept in c->exp_txt, then finishes. */
static void exp_text(struct spf_check *c)
{
	struct span txt = span_make(c->exp_txt, c->exp_txt_len);
	size_t len = 0, pos;

	if (need_p(c, txt, R_EXP_TEXT)) {
		return;
	}
	if (spf_macro_expand(c->res.exp, sizeof(c->res.exp) - 1, &len, &pos, &c->env, txt, SPF_MACRO_EXP) !=
	    SPF_MACRO_OK) {
		len = 0; /* §6.2: a bad explanation is no explanation */
	}
	c->res.exp[len] = '\0';
	finish(c, AUTH_FAIL, "matched a fail mechanism");
}

/*
 * frame_result: the top frame evaluated to `r`. Pops it and hands the
 * result to the parent's include, or finishes the check.
 * Returns true when step() should continue with the parent.
 */
static bool frame_result(struct spf_check *c, enum auth_res r)
{
	struct spf_frame *f = top(c);

	if (!f->include) {
		if (r == AUTH_FAIL && f->parsed.has_exp) {
			start_exp(c);
			return false;
		}
		finish(c, r, r == AUTH_NEUTRAL && c->res.mechanism[0] == '\0' ? "no mechanism matched" : "matched a mechanism");
		return false;
	}
	pop_frame(c);
	switch (r) {
	case AUTH_PASS:
		c->matched = true;
		return true;
	case AUTH_FAIL:
	case AUTH_SOFTFAIL:
	case AUTH_NEUTRAL:
		c->matched = false;
		return true;
	case AUTH_TEMPERROR:
		finish(c, AUTH_TEMPERROR, "temporary error in an included record");
		return false;
	default: /* permerror, none (§5.2) */
		finish(c, AUTH_PERMERROR, "included domain has no usable SPF record");
		return false;
	}
}

/* follow_redirect replaces the top frame by the redirect= target (§6.1). */
static void follow_redirect(struct spf_check *c)
{
	struct spf_frame *f = top(c);

	if (need_p(c, f->parsed.redirect, R_REDIRECT)) {
		return;
	}
	if (!count_lookup(c) || !expand_target(c, f->parsed.redirect, "")) {
		return;
	}
	if (!spf_domain_ok(span_cstr(c->target))) {
		finish(c, AUTH_PERMERROR, "redirect to a malformed domain");
		return;
	}
	copy_str(f->domain, sizeof(f->domain), c->target);
	memset(&f->parsed, 0, sizeof(f->parsed));
	f->redirected = true;
	c->env.domain = f->domain;
	c->res.mechanism[0] = '\0';
	c->wait = W_RECORD;
	lookup(c, 0, f->domain, DNS_T_TXT);
}

/*
 * step runs the top frame from its cursor with c->matched describing the
 * mechanism just finished (when `resumed`).
 */
static void run_terms(struct spf_check *c, bool resumed)
{
	for (;;) {
		struct spf_frame *f = top(c);
		enum term_rc rc;

		if (resumed) {
			rc = c->matched ? T_MATCH : T_NOMATCH;
			resumed = false;
		} else if (!spf_term_next(&f->cursor, &f->cur)) {
			if (f->parsed.has_redirect) {
				follow_redirect(c);
				return;
			}
			if (!frame_result(c, AUTH_NEUTRAL)) {
				return; /* §4.7: no match, no redirect: neutral */
			}
			resumed = true; /* the parent's include has its answer */
			continue;
		} else {
			rc = eval_term(c);
		}
		if (rc == T_WAIT || rc == T_DONE) {
			return;
		}
		if (rc == T_MATCH) {
			f = top(c);
			set_mechanism(c, &f->cur);
			if (!frame_result(c, f->cur.qual)) {
				return;
			}
			resumed = true;
		}
	}
}

/* got_record takes the TXT answer for the top frame's domain (§4.4, §4.5). */
static void got_record(struct spf_check *c, const struct dns_answer *a)
{
	struct spf_frame *f = top(c);
	const struct dns_rr *spf = NULL;
	const char *reason;
	size_t pos;
	bool top_level = c->depth == 1 && !f->redirected;

	if (a->status != DNS_OK && !is_void(a->status)) {
		if (a->status == DNS_TOO_BIG) {
			frame_result(c, AUTH_PERMERROR);
			return;
		}
		finish(c, AUTH_TEMPERROR, "DNS error looking up the SPF record");
		return;
	}
	for (unsigned i = 0; i < a->num_records; i++) {
		if (spf_record_is_spf(a->rr[i].data)) {
			if (spf != NULL) {
				finish(c, AUTH_PERMERROR, "more than one SPF record");
				return;
			}
			spf = &a->rr[i];
		}
	}
	if (spf == NULL) {
		if (top_level) {
			finish(c, AUTH_NONE, "no SPF record");
		} else if (f->include) {
			frame_result(c, AUTH_NONE);
		} else {
			finish(c, AUTH_PERMERROR, "redirect target has no SPF record");
		}
		return;
	}
	if (spf->data.len > sizeof(f->rec)) {
		finish(c, AUTH_PERMERROR, "SPF record too long");
		return;
	}
	memcpy(f->rec, spf->data.p, spf->data.len);
	if (spf_record_parse(&f->parsed, &reason, &pos, span_make(f->rec, spf->data.len)) != AUTH_NONE) {
		finish(c, AUTH_PERMERROR, reason);
		return;
	}
	f->cursor = f->parsed.terms;
	run_terms(c, false);
}

/* addr_batch starts one address lookup per name in c->names (MX exchanges, PTR names). */
static void addr_batch(struct spf_check *c, enum spf_wait w)
{
	c->wait = w;
	c->matched = false;
	if (c->num_names == 0) {
		run_terms(c, true);
		return;
	}
	for (unsigned i = 0; i < c->num_names; i++) {
		if (!lookup(c, i, c->names[i], addr_type(c))) {
			return;
		}
	}
}

/* names_from copies the names of a PTR/MX answer into c->names (at most max). */
static void names_from(struct spf_check *c, const struct dns_answer *a, unsigned max, const char *within_dom)
{
	c->num_names = 0;
	for (unsigned i = 0; i < a->num_records && i < max; i++) {
		struct span n = a->rr[i].data;
		char *dst = c->names[c->num_names];

		if (n.len == 0 || n.len > DNS_NAME_TEXT_MAX) {
			continue; /* the null MX "." (RFC 7505), or nothing usable */
		}
		memcpy(dst, n.p, n.len);
		dst[n.len] = '\0';
		if (within_dom != NULL && !within(dst, within_dom)) {
			continue;
		}
		c->num_names++;
	}
}

static void resume_after_p(struct spf_check *c)
{
	c->p_done = true;
	p_choose(c);
	switch (c->resume) {
	case R_TERM: {
		enum term_rc rc = eval_term(c);

		if (rc == T_MATCH || rc == T_NOMATCH) {
			c->matched = rc == T_MATCH;
			run_terms(c, true);
		}
		return;
	}
	case R_REDIRECT:
		follow_redirect(c);
		return;
	case R_EXP:
		start_exp(c);
		return;
	case R_EXP_TEXT:
		exp_text(c);
		return;
	}
}

static void answer_cb(void *arg, const struct dns_answer *a)
{
	struct spf_slot *s = arg;
	struct spf_check *c = s->c;

	s->live = false;
	c->outstanding--;
	if (!c->finished) {
		handle_answer(c, s, a);
	}
	notify(c);
}

static void handle_answer(struct spf_check *c, struct spf_slot *s, const struct dns_answer *a)
{
	const struct spf_frame *f = top(c);

	switch (c->wait) {
	case W_RECORD:
		got_record(c, a);
		return;
	case W_A:
	case W_EXISTS:
		if (is_void(a->status)) {
			if (count_void(c)) {
				run_terms(c, true);
			}
			return;
		}
		if (a->status != DNS_OK) {
			finish(c, AUTH_TEMPERROR, "DNS error in a mechanism");
			return;
		}
		if (c->wait == W_EXISTS) {
			c->matched = true;
		} else {
			c->matched = answer_matches(c, a, c->env.ipv6 ? f->cur.cidr6 : f->cur.cidr4);
		}
		run_terms(c, true);
		return;
	case W_MX:
		if (is_void(a->status)) {
			if (count_void(c)) {
				c->matched = false;
				run_terms(c, true);
			}
			return;
		}
		if (a->status != DNS_OK) {
			finish(c, AUTH_TEMPERROR, "DNS error looking up MX");
			return;
		}
		if (a->num_records + a->num_ignored > SPF_MX_MAX) {
			finish(c, AUTH_PERMERROR, "more than 10 MX records");
			return;
		}
		names_from(c, a, SPF_MX_MAX, NULL);
		addr_batch(c, W_MX_ADDR);
		return;
	case W_PTR:
		if (a->status != DNS_OK) {
			if (is_void(a->status) && !count_void(c)) {
				return;
			}
			c->matched = false; /* §5.5: a DNS error here is no match */
			run_terms(c, true);
			return;
		}
		names_from(c, a, SPF_PTR_MAX, c->target);
		addr_batch(c, W_PTR_ADDR);
		return;
	case W_MX_ADDR:
	case W_PTR_ADDR:
		if (a->status == DNS_OK &&
		    answer_matches(c, a, c->wait == W_PTR_ADDR ? (c->env.ipv6 ? 128 : 32)
							       : (c->env.ipv6 ? f->cur.cidr6 : f->cur.cidr4))) {
			c->matched = true;
		} else if (c->wait == W_MX_ADDR && !is_void(a->status) && a->status != DNS_OK) {
			c->temp = true;
		}
		if (c->matched) {
			for (unsigned i = 0; i < SPF_SLOTS; i++) {
				if (c->slots[i].live) {
					dns_cancel(c->r, c->slots[i].id);
					c->slots[i].live = false;
				}
			}
			c->outstanding = 0;
		}
		if (c->outstanding > 0) {
			return;
		}
		if (!c->matched && c->temp) {
			finish(c, AUTH_TEMPERROR, "DNS error looking up an MX exchange");
			return;
		}
		run_terms(c, true);
		return;
	case W_EXP:
		if (a->status != DNS_OK || a->num_records != 1 || a->rr[0].data.len > sizeof(c->exp_txt)) {
			finish(c, AUTH_FAIL, "matched a fail mechanism");
			return;
		}
		memcpy(c->exp_txt, a->rr[0].data.p, a->rr[0].data.len);
		c->exp_txt_len = a->rr[0].data.len;
		exp_text(c);
		return;
	case W_P_PTR:
		if (a->status != DNS_OK) {
			c->num_p = 0;
			resume_after_p(c);
			return;
		}
		c->num_p = 0;
		for (unsigned i = 0; i < a->num_records && c->num_p < SPF_PTR_MAX; i++) {
			struct span n = a->rr[i].data;

			if (n.len == 0 || n.len > DNS_NAME_TEXT_MAX) {
				continue;
			}
			memcpy(c->p_names[c->num_p], n.p, n.len);
			c->p_names[c->num_p][n.len] = '\0';
			c->p_valid[c->num_p] = false;
			c->num_p++;
		}
		c->wait = W_P_ADDR;
		if (c->num_p == 0) {
			resume_after_p(c);
			return;
		}
		for (unsigned i = 0; i < c->num_p; i++) {
			if (!lookup(c, i, c->p_names[i], addr_type(c))) {
				return;
			}
		}
		return;
	case W_P_ADDR:
		if (a->status == DNS_OK && answer_matches(c, a, c->env.ipv6 ? 128 : 32)) {
			c->p_valid[s->idx] = true;
		}
		if (c->outstanding == 0) {
			resume_after_p(c);
		}
		return;
	case W_NONE:
		return;
	}
}

/* parse_ip fills env.ip/ipv6 from text; an IPv4-mapped IPv6 address is IPv4. */
static bool parse_ip(struct spf_check *c, const char *ip)
{
	uint8_t b[16];

	if (ip == NULL) {
		return false;
	}
	if (inet_pton(AF_INET, ip, b) == 1) {
		memcpy(c->env.ip, b, 4);
		c->env.ipv6 = false;
		return true;
	}
	if (inet_pton(AF_INET6, ip, b) != 1) {
		return false;
	}
	if (memcmp(b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		memcpy(c->env.ip, b + 12, 4);
		c->env.ipv6 = false;
		return true;
	}
	memcpy(c->env.ip, b, 16);
	c->env.ipv6 = true;
	return true;
}

static void make_ptr_name(struct spf_check *c)
{
	const uint8_t *ip = c->env.ip;

	if (!c->env.ipv6) {
		snprintf(c->ptr_name, sizeof(c->ptr_name), "%u.%u.%u.%u.in-addr.arpa", ip[3], ip[2], ip[1], ip[0]);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	for (int k = 15; k >= 0; k--) {
		c->ptr_name[n++] = hex[ip[k] & 15];
		c->ptr_name[n++] = '.';
		c->ptr_name[n++] = hex[ip[k] >> 4];
		c->ptr_name[n++] = '.';
	}
	memcpy(c->ptr_name + n, "ip6.arpa", sizeof("ip6.arpa"));
}

struct spf_check *spf_check_new(const struct spf_params *p)
{
	struct spf_check *c = calloc(1, sizeof(*c));
	const char *mf = p->mail_from ? p->mail_from : "";
	const char *helo = p->helo ? p->helo : "";
	const char *at;

	if (c == NULL) {
		return NULL;
	}
	c->res.identity = p->identity;
	c->res.res = AUTH_NONE;
	c->timeout_ms = p->timeout_ms;
	copy_str(c->helo, sizeof(c->helo), helo);
	copy_str(c->receiver, sizeof(c->receiver), p->receiver ? p->receiver : "unknown");
	if (p->identity == SPF_ID_HELO || mf[0] == '\0') {
		/* §2.3, §2.4: the HELO identity, and the null reverse-path, use postmaster@helo */
		snprintf(c->sender, sizeof(c->sender), "postmaster@%s", c->helo);
		copy_str(c->local, sizeof(c->local), "postmaster");
		copy_str(c->sender_domain, sizeof(c->sender_domain), c->helo);
	} else if ((at = strrchr(mf, '@')) != NULL) {
		size_t ll = (size_t)(at - mf);

		copy_str(c->sender_domain, sizeof(c->sender_domain), at + 1);
		if (ll == 0) {
			/* §4.3: no local-part: "postmaster" */
			copy_str(c->local, sizeof(c->local), "postmaster");
			snprintf(c->sender, sizeof(c->sender), "postmaster@%s", c->sender_domain);
		} else {
			copy_str(c->sender, sizeof(c->sender), mf);
			copy_str(c->local, sizeof(c->local), mf);
			if (ll < sizeof(c->local)) {
				c->local[ll] = '\0';
			}
		}
	} else {
		copy_str(c->local, sizeof(c->local), "postmaster");
		copy_str(c->sender_domain, sizeof(c->sender_domain), mf);
		snprintf(c->sender, sizeof(c->sender), "postmaster@%s", c->sender_domain);
	}
	copy_str(c->res.sender, sizeof(c->res.sender), p->identity == SPF_ID_HELO ? c->helo : c->sender);
	copy_str(c->res.domain, sizeof(c->res.domain), c->sender_domain);
	c->env.sender = c->sender;
	c->env.local = c->local;
	c->env.sender_domain = c->sender_domain;
	c->env.domain = c->sender_domain;
	c->env.helo = c->helo;
	c->env.receiver = c->receiver;
	c->env.now = p->now;
	c->bad_ip = !parse_ip(c, p->client_ip);
	if (!c->bad_ip) {
		make_ptr_name(c);
	}
	return c;
}

/* domain_usable: the initial <domain> check of §4.3 (FQDN, no literal). */
static bool domain_usable(const char *d)
{
	if (!spf_domain_ok(span_cstr(d))) {
		return false;
	}
	for (const char *p = d; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch <= 0x20 || ch >= 0x7f || ch == '[' || ch == ']' || ch == '@' || ch == '\\') {
			return false;
		}
	}
	return true;
}

static void step(struct spf_check *c)
{
	if (c->bad_ip) {
		finish(c, AUTH_PERMERROR, "bad client IP address");
		return;
	}
	if (!domain_usable(c->sender_domain)) {
		finish(c, AUTH_NONE, "not a usable domain name");
		return;
	}
	push_frame(c, c->sender_domain, false);
}

void spf_check_start(struct spf_check *c, struct dns_resolver *r, spf_done_fn *done, void *arg)
{
	c->r = r;
	c->done = done;
	c->arg = arg;
	step(c);
	notify(c);
}

bool spf_check_done(const struct spf_check *c)
{
	return c->finished;
}

const struct spf_result *spf_check_result(const struct spf_check *c)
{
	return &c->res;
}

void spf_check_free(struct spf_check *c)
{
	if (c == NULL) {
		return;
	}
	for (unsigned i = 0; i < SPF_SLOTS; i++) {
		if (c->slots[i].live) {
			dns_cancel(c->r, c->slots[i].id);
		}
	}
	while (c->depth > 0) {
		free(c->stack[--c->depth]);
	}
	free(c);
}
