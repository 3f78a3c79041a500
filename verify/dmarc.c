/*
 * dmarc.c - DMARC records (RFC 7489 §6.3, with DKIM's tag-list syntax,
 * §6.4), From domains, alignment, policy, and record discovery.
 *
 * The parser and evaluation are pure. The check owns one lookup at a time
 * (the From domain's record, then the organizational domain's).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/addr.h"
#include "../proto/mime.h"
#include "dkim_tag.h"
#include "dmarc.h"

const char *dmarc_parse_rc_name(enum dmarc_parse_rc rc)
{
	switch (rc) {
	case DMARC_PARSE_OK:
		return "ok";
	case DMARC_PARSE_EMPTY:
		return "empty";
	case DMARC_PARSE_BAD_VERSION:
		return "not a DMARC1 record";
	case DMARC_PARSE_BAD_VALUE:
		return "invalid tag value";
	case DMARC_PARSE_NO_P:
		return "no valid p=";
	case DMARC_PARSE_SYNTAX:
		return "not a tag list";
	}
	return "?";
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_P_NONE:
		return "none";
	case DMARC_P_QUARANTINE:
		return "quarantine";
	case DMARC_P_REJECT:
		return "reject";
	default:
		return "unset";
	}
}

static bool policy_of(struct span v, enum dmarc_policy *out)
{
	if (span_eq_ci(v, "none")) {
		*out = DMARC_P_NONE;
	} else if (span_eq_ci(v, "quarantine")) {
		*out = DMARC_P_QUARANTINE;
	} else if (span_eq_ci(v, "reject")) {
		*out = DMARC_P_REJECT;
	} else {
		return false;
	}
	return true;
}

/* dec parses 1*DIGIT up to max (no sign, no point). */
static bool dec(struct span v, uint64_t max, uint64_t *out)
{
	struct span c = v;

	return span_get_dec_u64(&c, out, max) && c.len == 0;
}

/* colon_list checks a ":"-separated keyword list against `words`, OR-ing their bits. */
static bool colon_list(struct span v, const char *const *words, const unsigned *bits, size_t n, unsigned *out)
{
	struct span item;

	*out = 0;
	if (v.len == 0) {
		return false;
	}
	while (dkim_list_next(&v, &item)) {
		bool found = false;

		for (size_t i = 0; i < n; i++) {
			if (span_eq_ci(item, words[i])) {
				*out |= bits[i];
				found = true;
			}
		}
		if (!found) {
			return false;
		}
	}
	return true;
}

/*
 * uris parses dmarc-uri *(*WSP "," *WSP dmarc-uri) (§6.4): a URI with an
 * optional "!" size. Unsupported schemes are skipped (§6.2 requires only
 * mailto; http(s) kept); a malformed size suffix is an error.
 */
static bool uris(struct span v, struct span *out, unsigned *out_num)
{
	*out_num = 0;
	while (v.len > 0) {
		struct span u;
		size_t n = 0;
		const uint8_t *bang;

		while (n < v.len && v.p[n] != ',') {
			n++;
		}
		u = span_trim_ws(span_make(v.p, n));
		span_skip(&v, n < v.len ? n + 1 : n);
		if (u.len == 0) {
			return false;
		}
		bang = memchr(u.p, '!', u.len);
		if (bang != NULL) {
			struct span sz = span_make(bang + 1, u.len - (size_t)(bang + 1 - u.p));
			uint64_t num;

			if (sz.len > 0 && strchr("kmgtKMGT", sz.p[sz.len - 1]) != NULL) {
				sz.len--;
			}
			if (!dec(sz, UINT64_MAX / 2, &num)) {
				return false;
			}
			u.len = (size_t)(bang - u.p);
		}
		{
			struct span c = u;
			bool ok = span_eat_ci(&c, "mailto:") || span_eat_ci(&c, "https://") || span_eat_ci(&c, "http://");

			if (ok && c.len > 0 && *out_num < DMARC_URIS_MAX) {
				out[(*out_num)++] = u;
			}
		}
	}
	return true;
}

enum dmarc_parse_rc dmarc_record_parse(struct dmarc_record *out, size_t *out_err_pos, struct span txt)
{
	static const char *const fo_words[] = { "0", "1", "d", "s" };
	static const unsigned fo_bits[] = { DMARC_FO_0, DMARC_FO_1, DMARC_FO_D, DMARC_FO_S };
	static const char *const rf_words[] = { "afrf", "iodef" };
	static const unsigned rf_bits[] = { DMARC_RF_AFRF, DMARC_RF_IODEF };
	struct dkim_tag tags[DKIM_TAGS_MAX];
	size_t num = 0, pos = 0;
	enum dmarc_parse_rc rc = DMARC_PARSE_OK;
	bool has_p = false;

	memset(out, 0, sizeof(*out));
	out->pct = 100;
	out->rf = DMARC_RF_AFRF;
	out->ri = 86400;
	*out_err_pos = 0;
	if (span_trim_ws(txt).len == 0) {
		return DMARC_PARSE_EMPTY;
	}
	if (dkim_tags_parse(tags, DKIM_TAGS_MAX, &num, &pos, txt) != DKIM_TAG_OK) {
		*out_err_pos = pos;
		/* a record that does not even start "v=DMARC1" is not ours to judge */
		struct span c = txt;

		return span_eat_ci(&c, "v=DMARC1") ? DMARC_PARSE_SYNTAX : DMARC_PARSE_BAD_VERSION;
	}
	if (num == 0 || !span_eq(tags[0].name, SPAN_LIT("v")) || !span_eq_ci(tags[0].value, "DMARC1")) {
		return DMARC_PARSE_BAD_VERSION; /* §6.3: v= first, exactly DMARC1 */
	}
	for (size_t i = 1; i < num; i++) {
		struct span n = tags[i].name, v = tags[i].value;
		bool ok = true;
		uint64_t u;

		if (span_eq(n, SPAN_LIT("p"))) {
			has_p = true;
			ok = policy_of(v, &out->p);
			out->bad_p = !ok;
		} else if (span_eq(n, SPAN_LIT("sp"))) {
			ok = policy_of(v, &out->sp);
			out->bad_sp = !ok;
		} else if (span_eq(n, SPAN_LIT("adkim")) || span_eq(n, SPAN_LIT("aspf"))) {
			bool strict = span_eq_ci(v, "s");

			ok = strict || span_eq_ci(v, "r");
			if (ok && n.len == 5) {
				out->strict_dkim = strict;
			} else if (ok) {
				out->strict_spf = strict;
			}
		} else if (span_eq(n, SPAN_LIT("pct"))) {
			ok = dec(v, 100, &u);
			if (ok) {
				out->pct = (unsigned)u;
			}
		} else if (span_eq(n, SPAN_LIT("ri"))) {
			ok = dec(v, UINT32_MAX, &u);
			if (ok) {
				out->ri = (uint32_t)u;
			}
		} else if (span_eq(n, SPAN_LIT("fo"))) {
			ok = colon_list(v, fo_words, fo_bits, 4, &out->fo);
			if (!ok) {
				out->fo = 0;
			}
		} else if (span_eq(n, SPAN_LIT("rf"))) {
			ok = colon_list(v, rf_words, rf_bits, 2, &out->rf);
			if (!ok) {
				out->rf = DMARC_RF_AFRF;
			}
		} else if (span_eq(n, SPAN_LIT("rua"))) {
			ok = uris(v, out->rua, &out->num_rua);
		} else if (span_eq(n, SPAN_LIT("ruf"))) {
			ok = uris(v, out->ruf, &out->num_ruf);
		} else if (span_eq(n, SPAN_LIT("v"))) {
			ok = false; /* only first */
		}
		/* unknown tags are ignored (§6.3) */
		if (!ok && rc == DMARC_PARSE_OK) {
			rc = DMARC_PARSE_BAD_VALUE;
			*out_err_pos = (size_t)(tags[i].name.p - txt.p);
		}
	}
	if (!has_p || out->bad_p) {
		out->p = DMARC_P_UNSET;
		return has_p ? DMARC_PARSE_BAD_VALUE : DMARC_PARSE_NO_P;
	}
	return rc;
}

enum dmarc_from_rc dmarc_from_domain(char *out, size_t out_len, struct span from_value)
{
	struct addr_list l;
	enum dmarc_from_rc rc;

	out[0] = '\0';
	if (addr_list_parse(&l, from_value) != 0) {
		return DMARC_FROM_NOMEM;
	}
	if (l.num == 0) {
		rc = DMARC_FROM_NONE;
	} else if (l.num > 1 || l.num_dropped > 0) {
		rc = DMARC_FROM_MULTIPLE;
	} else if (l.items[0].invalid || l.items[0].domain == NULL || l.items[0].domain[0] == '\0' ||
		   strlen(l.items[0].domain) >= out_len) {
		rc = DMARC_FROM_INVALID;
	} else {
		const char *d = l.items[0].domain;
		size_t n = 0;

		while (*d == '.') {
			d++;
		}
		for (; d[n] != '\0'; n++) {
			out[n] = d[n] >= 'A' && d[n] <= 'Z' ? (char)(d[n] + 32) : d[n];
		}
		while (n > 0 && out[n - 1] == '.') {
			n--;
		}
		out[n] = '\0';
		rc = n > 0 && d[0] != '[' ? DMARC_FROM_OK : DMARC_FROM_INVALID;
	}
	addr_list_fini(&l);
	return rc;
}

/* trim copies d without leading/trailing dots, lower case. */
static void trim(char *out, size_t out_len, const char *d)
{
	size_t n = strlen(d), k = 0;

	while (n > 0 && d[n - 1] == '.') {
		n--;
	}
	while (n > 0 && *d == '.') {
		d++;
		n--;
	}
	for (; k < n && k + 1 < out_len; k++) {
		out[k] = d[k] >= 'A' && d[k] <= 'Z' ? (char)(d[k] + 32) : d[k];
	}
	out[k] = '\0';
}

bool dmarc_aligned(const struct psl *psl, const char *a, const char *b, bool strict)
{
	char x[PSL_NAME_MAX + 1], y[PSL_NAME_MAX + 1], ox[PSL_NAME_MAX + 1], oy[PSL_NAME_MAX + 1];

	trim(x, sizeof(x), a);
	trim(y, sizeof(y), b);
	if (x[0] == '\0' || y[0] == '\0') {
		return false;
	}
	if (strict) {
		return strcmp(x, y) == 0;
	}
	return psl_org_domain(psl, ox, sizeof(ox), x) && psl_org_domain(psl, oy, sizeof(oy), y) && strcmp(ox, oy) == 0;
}

void dmarc_evaluate(struct dmarc_result *out, const struct psl *psl, const struct dmarc_record *rec, bool subdomain,
		    const struct dkim_result *dkim, size_t num_dkim, const struct spf_result *spf,
		    const struct dmarc_opts *o)
{
	out->dkim_aligned = out->spf_aligned = false;
	out->dkim_domain[0] = out->spf_domain[0] = '\0';
	out->sampled_out = false;
	out->policy = out->disposition = DMARC_P_NONE;
	if (rec == NULL) {
		out->res = AUTH_NONE;
		out->reason = "no DMARC record";
		out->pct = 100;
		return;
	}
	out->strict_dkim = rec->strict_dkim;
	out->strict_spf = rec->strict_spf;
	out->pct = rec->pct;
	out->policy = subdomain && rec->sp != DMARC_P_UNSET ? rec->sp : rec->p;
	if (out->policy == DMARC_P_UNSET) {
		out->policy = DMARC_P_NONE; /* §6.6.3 step 6: rua given, acting as p=none */
	}
	for (size_t i = 0; i < num_dkim; i++) {
		if (dkim[i].res == AUTH_PASS && dmarc_aligned(psl, dkim[i].domain, out->from_domain, rec->strict_dkim)) {
			out->dkim_aligned = true;
			trim(out->dkim_domain, sizeof(out->dkim_domain), dkim[i].domain);
			break;
		}
	}
	if (spf != NULL) {
		trim(out->spf_domain, sizeof(out->spf_domain), spf->domain);
		out->spf_aligned = spf->res == AUTH_PASS && spf->identity == SPF_ID_MAILFROM &&
				   dmarc_aligned(psl, spf->domain, out->from_domain, rec->strict_spf);
	}
	if (out->dkim_aligned || out->spf_aligned) {
		out->res = AUTH_PASS;
		out->reason = out->dkim_aligned ? "aligned DKIM pass" : "aligned SPF pass";
		out->disposition = DMARC_P_NONE;
		return;
	}
	out->res = AUTH_FAIL;
	out->reason = "no aligned DKIM or SPF pass";
	out->disposition = out->policy;
	if (out->policy != DMARC_P_NONE && rec->pct < 100) {
		unsigned roll = o != NULL && o->sample != NULL ? o->sample(o->sample_arg) % 100 : (unsigned)(random() % 100);

		if (roll >= rec->pct) {
			/* §6.6.4: outside the sample, apply the next policy down */
			out->sampled_out = true;
			out->disposition = out->policy == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
		}
	}
}

/* ------------------------------------------------------------------ check */

struct dmarc_check {
	const struct psl *psl;
	struct dmarc_opts opts;
	struct dns_resolver *r;
	dmarc_done_fn *done;
	void *arg;
	uint64_t id;
	bool live, finished, notified, at_org;
	enum auth_res err;      /* AUTH_NONE, or temperror for a DNS failure */
	const char *reason;
	char from[PSL_NAME_MAX + 1];
	char org[PSL_NAME_MAX + 1];
	char found_at[PSL_NAME_MAX + 1];
	char qname[PSL_NAME_MAX + 16];
	bool have_rec;
	struct dmarc_record rec; /* spans into txt */
	uint8_t txt[DNS_TXT_BYTES_MAX];
};

static void dm_answer(void *arg, const struct dns_answer *a);

static void dm_notify(struct dmarc_check *c)
{
	if (c->finished && !c->notified) {
		c->notified = true;
		if (c->done != NULL) {
			c->done(c->arg, c);
		}
	}
}

static void dm_lookup(struct dmarc_check *c, const char *domain)
{
	uint64_t dl = c->opts.timeout_ms ? dns_now_ms() + c->opts.timeout_ms : 0;

	snprintf(c->qname, sizeof(c->qname), "_dmarc.%s", domain);
	if (dns_query(c->r, c->qname, DNS_T_TXT, dl, dm_answer, c, &c->id) != 0) {
		c->err = AUTH_TEMPERROR;
		c->reason = "DNS lookup could not start";
		c->finished = true;
		return;
	}
	c->live = true;
}

static void dm_answer(void *arg, const struct dns_answer *a)
{
	struct dmarc_check *c = arg;
	const struct dns_rr *found = NULL;
	unsigned n = 0;

	c->live = false;
	if (a->status != DNS_OK && a->status != DNS_NXDOMAIN && a->status != DNS_NODATA) {
		c->err = AUTH_TEMPERROR;
		c->reason = "DNS error looking up the DMARC record";
		c->finished = true;
		dm_notify(c);
		return;
	}
	for (unsigned i = 0; i < a->num_records; i++) {
		struct span t = a->rr[i].data;

		if (span_eat_ci(&t, "v=DMARC1") && (t.len == 0 || t.p[0] == ';' || t.p[0] == ' ' || t.p[0] == '\t')) {
			found = &a->rr[i];
			n++;
		}
	}
	if (n == 1 && found->data.len <= sizeof(c->txt)) {
		size_t pos;
		enum dmarc_parse_rc rc;

		memcpy(c->txt, found->data.p, found->data.len);
		rc = dmarc_record_parse(&c->rec, &pos, span_make(c->txt, found->data.len));
		/* §6.6.3 step 6: no valid p= (or a bad sp=) with a usable rua= acts as p=none */
		if (rc == DMARC_PARSE_OK || (rc == DMARC_PARSE_BAD_VALUE && !c->rec.bad_p && !c->rec.bad_sp)) {
			c->have_rec = true;
		} else if ((rc == DMARC_PARSE_NO_P || rc == DMARC_PARSE_BAD_VALUE) && c->rec.num_rua > 0) {
			c->rec.p = DMARC_P_NONE;
			c->rec.sp = DMARC_P_UNSET;
			c->have_rec = true;
		}
	}
	if (c->have_rec) {
		snprintf(c->found_at, sizeof(c->found_at), "%s", c->at_org ? c->org : c->from);
		c->finished = true;
	} else if (!c->at_org && strcmp(c->org, c->from) != 0) {
		c->at_org = true; /* §6.6.3 step 3: the organizational domain next */
		dm_lookup(c, c->org);
	} else {
		c->finished = true;
	}
	dm_notify(c);
}

struct dmarc_check *dmarc_check_new(const struct psl *psl, const char *from_domain, const struct dmarc_opts *o)
{
	struct dmarc_check *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return NULL;
	}
	c->psl = psl;
	if (o != NULL) {
		c->opts = *o;
	}
	trim(c->from, sizeof(c->from), from_domain);
	if (!psl_org_domain(psl, c->org, sizeof(c->org), c->from)) {
		snprintf(c->org, sizeof(c->org), "%s", c->from);
	}
	return c;
}

void dmarc_check_start(struct dmarc_check *c, struct dns_resolver *r, dmarc_done_fn *done, void *arg)
{
	c->r = r;
	c->done = done;
	c->arg = arg;
	if (c->from[0] == '\0' || strchr(c->from, '.') == NULL) {
		c->finished = true;
	} else {
		dm_lookup(c, c->from);
	}
	dm_notify(c);
}

bool dmarc_check_done(const struct dmarc_check *c)
{
	return c->finished;
}

void dmarc_check_eval(struct dmarc_check *c, struct dmarc_result *out, const struct dkim_result *dkim,
		      size_t num_dkim, const struct spf_result *spf)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->from_domain, sizeof(out->from_domain), "%s", c->from);
	snprintf(out->org_domain, sizeof(out->org_domain), "%s", c->org);
	snprintf(out->record_domain, sizeof(out->record_domain), "%s", c->found_at);
	if (!c->finished || c->err != AUTH_NONE) {
		dmarc_evaluate(out, c->psl, NULL, false, dkim, num_dkim, spf, &c->opts);
		out->res = AUTH_TEMPERROR;
		out->reason = c->finished ? c->reason : "DMARC record lookup did not finish";
		return;
	}
	dmarc_evaluate(out, c->psl, c->have_rec ? &c->rec : NULL, c->at_org && strcmp(c->org, c->from) != 0, dkim,
		       num_dkim, spf, &c->opts);
}

void dmarc_check_free(struct dmarc_check *c)
{
	if (c == NULL) {
		return;
	}
	if (c->live) {
		dns_cancel(c->r, c->id);
	}
	free(c);
}

/* The From bounds are the message parser's (dmarc.h). */
_Static_assert(DMARC_FROM_FIELD_MAX == MIME_FIELD_MAX, "From field bound");
_Static_assert(DMARC_FROM_LINE_MAX == MIME_LINE_MAX, "From line bound");
_Static_assert(DMARC_FROM_HEADER_MAX == MIME_HEADER_MAX, "From header bound");

void dmarc_from_seen_fini(struct dmarc_from_seen *f)
{
	free(f->value); f->value = NULL;
	f->value_len = 0;
}

int dmarc_from_seen_field(struct dmarc_from_seen *f, struct span field, bool whole, uint64_t len, uint64_t max_line,
			  uint64_t offset)
{
	const uint8_t *colon = field.len > 0 ? memchr(field.p, ':', field.len) : NULL;
	struct span name;

	if (colon == NULL) {
		return 0; /* not a field (or a name longer than the kept start): not From */
	}
	name = span_make(field.p, (size_t)(colon - field.p));
	while (name.len > 0 && (name.p[name.len - 1] == ' ' || name.p[name.len - 1] == '\t')) {
		name.len--; /* "From :" is obsolete syntax (RFC 5322 §4.5.3), still From */
	}
	if (!span_eq_ci(name, "From")) {
		return 0;
	}
	if (!whole || len > DMARC_FROM_FIELD_MAX || max_line > DMARC_FROM_LINE_MAX ||
	    offset + len > DMARC_FROM_HEADER_MAX) {
		f->unreadable = true; /* never "none": see dmarc_from_result */
	}
	if (f->num++ == 0 && !f->unreadable) {
		size_t n = field.len - (size_t)(colon - field.p) - 1;

		if ((f->value = malloc(n + 1)) == NULL) {
			f->unreadable = true;
			return -ENOMEM;
		}
		memcpy(f->value, colon + 1, n);
		f->value[n] = '\0';
		f->value_len = n;
	}
	return 0;
}

enum dmarc_from_rc dmarc_from_seen_domain(const struct dmarc_from_seen *f, char *out, size_t out_len)
{
	out[0] = '\0';
	if (f->unreadable) {
		return DMARC_FROM_UNREADABLE;
	}
	if (f->num != 1 || f->value == NULL) {
		return f->num == 0 ? DMARC_FROM_NONE : DMARC_FROM_MULTIPLE;
	}
	return dmarc_from_domain(out, out_len, span_make(f->value, f->value_len));
}

void dmarc_from_result(struct dmarc_result *out, enum dmarc_from_rc rc)
{
	memset(out, 0, sizeof(*out));
	switch (rc) {
	case DMARC_FROM_NONE:
		out->res = AUTH_NONE;
		out->reason = "no From field";
		return;
	case DMARC_FROM_MULTIPLE:
		out->res = AUTH_PERMERROR;
		out->reason = "not exactly one From address";
		out->from_ambiguous = true;
		return;
	case DMARC_FROM_UNREADABLE:
		out->res = AUTH_PERMERROR;
		out->reason = "From field too large to read";
		out->from_unreadable = true;
		return;
	case DMARC_FROM_NOMEM:
		out->res = AUTH_TEMPERROR;
		out->reason = "out of memory";
		return;
	case DMARC_FROM_OK:
	case DMARC_FROM_INVALID:
		break;
	}
	out->res = AUTH_PERMERROR;
	out->reason = "no domain in the From address";
}
