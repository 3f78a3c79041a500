/*
 * test_dmarc.c - DMARC record parser, From-domain extraction, PSL
 * organizational domains and alignment on the OpenDMARC / Mail::DMARC
 * tables (../shared/corpora/dmarc-opendmarc-maildmarc, with its 2014 PSL
 * snapshot), plus policy evaluation (p/sp/pct with an injected sample).
 *
 * Deliberate deviations from a table row are listed with the reason and
 * must still differ (so a stale entry shows up).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dmarc.h"
#include "verify/psl.h"

static bool corpus_file(char *buf, size_t len, const char *file)
{
	const char *env = getenv("OMX_CORPORA");
	FILE *f;

	if (env != NULL && env[0] != '\0') {
		snprintf(buf, len, "%s/dmarc-opendmarc-maildmarc/%s", env, file);
	} else {
		const char *src = __FILE__;
		const char *tail = strstr(src, "tests/verify/test_dmarc.c");
		int n = tail ? (int)(tail - src) : 0;

		snprintf(buf, len, "%.*s../shared/corpora/dmarc-opendmarc-maildmarc/%s", n, src, file);
	}
	f = fopen(buf, "r");
	if (f == NULL) {
		return false;
	}
	fclose(f);
	return true;
}

/* rows reads a TSV file (skipping '#' lines) into up to 4 columns per row; returns the count. */
static size_t rows(const char *path, char cols[][4][512], size_t max)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	size_t n = 0;

	cr_assert_not_null(f, "%s", path);
	while (n < max && fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *tab;
		int c = 0;

		if (line[0] == '#') {
			continue;
		}
		line[strcspn(line, "\n")] = '\0';
		memset(cols[n], 0, sizeof(cols[n]));
		while (c < 4) {
			tab = strchr(p, '\t');
			if (tab != NULL) {
				*tab = '\0';
			}
			snprintf(cols[n][c++], 512, "%.511s", p);
			if (tab == NULL) {
				break;
			}
			p = tab + 1;
		}
		n++;
	}
	fclose(f);
	return n;
}

static char tbl[256][4][512];

static struct psl *snapshot(void)
{
	char path[PATH_MAX];
	char *err = NULL;
	struct psl *p;

	if (!corpus_file(path, sizeof(path), "effective_tld_names.dat")) {
		return NULL;
	}
	p = psl_load(path, &err);
	cr_assert_not_null(p, "%s", err ? err : "?");
	return p;
}

Test(dmarc, record_parse_opendmarc_table)
{
	char path[PATH_MAX];
	size_t n;
	unsigned bad = 0;

	if (!corpus_file(path, sizeof(path), "opendmarc-record-parse.tsv")) {
		cr_skip_test("DMARC corpus not found (set OMX_CORPORA)");
	}
	n = rows(path, tbl, 256);
	cr_assert_eq(n, 19);
	for (size_t i = 0; i < n; i++) {
		struct dmarc_record r;
		size_t pos;
		enum dmarc_parse_rc rc = dmarc_record_parse(&r, &pos, span_cstr(tbl[i][0]));
		const char *want = tbl[i][1];
		enum dmarc_parse_rc w = strcmp(want, "DMARC_PARSE_OKAY") == 0		 ? DMARC_PARSE_OK
					: strcmp(want, "DMARC_PARSE_ERROR_EMPTY") == 0	 ? DMARC_PARSE_EMPTY
					: strcmp(want, "DMARC_PARSE_ERROR_BAD_VERSION") == 0 ? DMARC_PARSE_BAD_VERSION
					: strcmp(want, "DMARC_PARSE_ERROR_BAD_VALUE") == 0 ? DMARC_PARSE_BAD_VALUE
											   : DMARC_PARSE_NO_P;

		/* Deviation: OpenDMARC takes "p=n" as a prefix of none; RFC 7489 §6.3 does not. */
		if (strcmp(tbl[i][0], "v=DMARC1; p=n;") == 0) {
			cr_expect_eq(rc, DMARC_PARSE_BAD_VALUE, "p=n must stay a deviation");
			continue;
		}
		if (rc != w) {
			bad++;
			cr_log_error("record %s: got %s want %s", tbl[i][0], dmarc_parse_rc_name(rc), want);
		}
	}
	cr_assert_eq(bad, 0);
}

Test(dmarc, tag_values_maildmarc_table)
{
	char path[PATH_MAX];
	size_t n, checked = 0;
	unsigned bad = 0;

	if (!corpus_file(path, sizeof(path), "maildmarc-tag-values.tsv")) {
		cr_skip_test("DMARC corpus not found (set OMX_CORPORA)");
	}
	n = rows(path, tbl, 256);
	cr_assert_eq(n, 101);
	for (size_t i = 0; i < n; i++) {
		const char *tag = tbl[i][0], *val = tbl[i][1];
		bool want = strcmp(tbl[i][2], "yes") == 0, got;
		char rec[700];
		struct dmarc_record r;
		size_t pos;
		enum dmarc_parse_rc rc;

		/* np, psd, t are DMARCbis tags: unknown to RFC 7489, ignored */
		if (strcmp(tag, "np") == 0 || strcmp(tag, "psd") == 0 || strcmp(tag, "t") == 0) {
			continue;
		}
		if (strcmp(tag, "v") == 0) {
			snprintf(rec, sizeof(rec), "v=%.600s; p=none", val);
		} else if (strcmp(tag, "p") == 0) {
			snprintf(rec, sizeof(rec), "v=DMARC1; p=%.600s", val);
		} else {
			snprintf(rec, sizeof(rec), "v=DMARC1; p=none; %.40s=%.600s", tag, val);
		}
		rc = dmarc_record_parse(&r, &pos, span_cstr(rec));
		got = rc == DMARC_PARSE_OK;
		if (strcmp(tag, "rua") == 0 || strcmp(tag, "ruf") == 0) {
			/* an unsupported scheme is skipped, not an error (§6.2): "valid" = usable URI */
			got = got && (tag[2] == 'a' ? r.num_rua : r.num_ruf) == 1;
		}
		checked++;
		if (got != want) {
			bad++;
			cr_log_error("%s=%s: got %s want %s", tag, val, got ? "valid" : "invalid", tbl[i][2]);
		}
	}
	cr_assert_eq(bad, 0, "%u of %zu rows differ", bad, checked);
}

static void from_table(const char *file, size_t want_rows, const char *const *deviations, size_t num_dev)
{
	char path[PATH_MAX];
	size_t n;
	unsigned bad = 0;

	if (!corpus_file(path, sizeof(path), file)) {
		cr_skip_test("DMARC corpus not found (set OMX_CORPORA)");
	}
	n = rows(path, tbl, 256);
	cr_assert_eq(n, want_rows);
	for (size_t i = 0; i < n; i++) {
		char dom[256];
		const char *v = tbl[i][0];
		enum dmarc_from_rc rc;
		bool dev = false;

		if (strncmp(v, "From:", 5) == 0) {
			v += 5; /* the tables hold whole fields in places */
		}
		rc = dmarc_from_domain(dom, sizeof(dom), span_cstr(v));
		for (size_t k = 0; k < num_dev; k++) {
			dev = dev || strcmp(tbl[i][0], deviations[k]) == 0;
		}
		if (dev) {
			cr_expect(rc != DMARC_FROM_OK || strcmp(dom, tbl[i][1]) != 0, "deviation no longer differs: %s",
				  tbl[i][0]);
			continue;
		}
		if (tbl[i][1][0] == '\0' ? rc == DMARC_FROM_OK : (rc != DMARC_FROM_OK || strcmp(dom, tbl[i][1]) != 0)) {
			bad++;
			cr_log_error("%s: got %d %s want %s", tbl[i][0], rc, dom, tbl[i][1]);
		}
	}
	cr_assert_eq(bad, 0);
}

Test(dmarc, from_domain_opendmarc_table)
{
	/* OpenDMARC takes the first of several From addresses; RFC 7489 §6.6.1 lets us
	 * skip such messages, and we do (so does Mail::DMARC's table). It also digs
	 * an address out of "<<<><joe@joe.com>>>", which RFC 5322 §3.4 does not allow:
	 * an invalid From is reported, not guessed at. */
	static const char *const dev[] = {
		"Joe Johnson <joe@joe.com>, ace@ace.com",
		"joe@joe.com, ace@ace.com",
		"<<<><joe@joe.com>>>",
	};

	from_table("opendmarc-from-domain.tsv", 13, dev, 3);
}

Test(dmarc, from_domain_maildmarc_table)
{
	from_table("maildmarc-from-domain.tsv", 10, NULL, 0);
}

Test(dmarc, org_domain_with_2014_snapshot)
{
	char path[PATH_MAX], out[256];
	struct psl *p = snapshot();
	size_t n;

	if (p == NULL) {
		cr_skip_test("DMARC corpus not found (set OMX_CORPORA)");
	}
	corpus_file(path, sizeof(path), "opendmarc-org-domain.tsv");
	n = rows(path, tbl, 256);
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++) {
		cr_assert(psl_org_domain(p, out, sizeof(out), tbl[i][0]));
		cr_expect_str_eq(out, tbl[i][1], "%s", tbl[i][0]);
	}
	psl_free(p);
}

Test(dmarc, alignment_opendmarc_table)
{
	char path[PATH_MAX];
	struct psl *p = snapshot();
	size_t n;

	if (p == NULL) {
		cr_skip_test("DMARC corpus not found (set OMX_CORPORA)");
	}
	corpus_file(path, sizeof(path), "opendmarc-alignment.tsv");
	n = rows(path, tbl, 256);
	cr_assert_eq(n, 10);
	for (size_t i = 0; i < n; i++) {
		bool strict = strstr(tbl[i][2], "STRICT") != NULL;
		bool want = strcmp(tbl[i][3], "0") == 0;

		cr_expect_eq(dmarc_aligned(p, tbl[i][0], tbl[i][1], strict), want, "%s %s %s", tbl[i][0], tbl[i][1],
			     tbl[i][2]);
	}
	psl_free(p);
}

Test(dmarc, psl_rules_wildcards_exceptions)
{
	static const char list[] = "// comment\ncom\n*.ck\n!www.ck\nuk\nco.uk\n\xe4\xb8\xad\xe5\x9b\xbd\n";
	struct psl *p = psl_parse(list, sizeof(list) - 1);
	char out[256];

	cr_assert_not_null(p);
	cr_assert_eq(psl_num_rules(p), 6);
	cr_assert(psl_org_domain(p, out, sizeof(out), "a.b.example.COM."));
	cr_expect_str_eq(out, "example.com");
	cr_assert(psl_org_domain(p, out, sizeof(out), "x.y.foo.ck"));
	cr_expect_str_eq(out, "y.foo.ck");
	cr_assert(psl_org_domain(p, out, sizeof(out), "a.www.ck"));
	cr_expect_str_eq(out, "www.ck");
	cr_assert(psl_org_domain(p, out, sizeof(out), "mail.bbc.co.uk"));
	cr_expect_str_eq(out, "bbc.co.uk");
	cr_assert(psl_org_domain(p, out, sizeof(out), "a.b.xn--fiqs8s"));
	cr_expect_str_eq(out, "b.xn--fiqs8s"); /* 中国 as an A-label (RFC 3492) */
	cr_assert(psl_org_domain(p, out, sizeof(out), "co.uk"));
	cr_expect_str_eq(out, "co.uk");
	cr_assert(psl_org_domain(p, out, sizeof(out), "host.unlisted"));
	cr_expect_str_eq(out, "host.unlisted"); /* the implicit "*" rule */
	cr_expect(!psl_org_domain(p, out, sizeof(out), "a..com"));
	psl_free(p);
}

static unsigned fixed_roll(void *arg)
{
	return *(const unsigned *)arg;
}

static struct dmarc_record rec_of(const char *txt)
{
	struct dmarc_record r;
	size_t pos;

	cr_assert_eq(dmarc_record_parse(&r, &pos, span_cstr(txt)), DMARC_PARSE_OK, "%s", txt);
	return r;
}

Test(dmarc, evaluate_alignment_policy_pct)
{
	static const char list[] = "com\norg\n";
	struct psl *p = psl_parse(list, sizeof(list) - 1);
	struct dkim_result dk = { .res = AUTH_PASS, .domain = "mail.example.com" };
	struct spf_result sp = { .res = AUTH_PASS, .identity = SPF_ID_MAILFROM, .domain = "bounce.example.com" };
	struct dmarc_result out;
	struct dmarc_record r;
	unsigned roll = 50;
	struct dmarc_opts o = { .sample = fixed_roll, .sample_arg = &roll };

	memset(&out, 0, sizeof(out));
	strcpy(out.from_domain, "example.com");
	r = rec_of("v=DMARC1; p=reject");
	dmarc_evaluate(&out, p, &r, false, &dk, 1, &sp, &o);
	cr_expect_eq(out.res, AUTH_PASS);
	cr_expect(out.dkim_aligned && out.spf_aligned);
	cr_expect_str_eq(out.dkim_domain, "mail.example.com");

	r = rec_of("v=DMARC1; p=reject; adkim=s; aspf=s");
	dmarc_evaluate(&out, p, &r, false, &dk, 1, &sp, &o);
	cr_expect_eq(out.res, AUTH_FAIL);
	cr_expect_eq(out.disposition, DMARC_P_REJECT);

	sp.res = AUTH_FAIL;
	dk.res = AUTH_FAIL;
	r = rec_of("v=DMARC1; p=reject; sp=quarantine");
	dmarc_evaluate(&out, p, &r, true, &dk, 1, &sp, &o);
	cr_expect_eq(out.policy, DMARC_P_QUARANTINE, "sp= applies to a subdomain's From");
	dmarc_evaluate(&out, p, &r, false, &dk, 1, &sp, &o);
	cr_expect_eq(out.policy, DMARC_P_REJECT);

	r = rec_of("v=DMARC1; p=reject; pct=50");
	roll = 49;
	dmarc_evaluate(&out, p, &r, false, &dk, 1, &sp, &o);
	cr_expect_eq(out.disposition, DMARC_P_REJECT);
	cr_expect(!out.sampled_out);
	roll = 50;
	dmarc_evaluate(&out, p, &r, false, &dk, 1, &sp, &o);
	cr_expect_eq(out.disposition, DMARC_P_QUARANTINE, "§6.6.4: outside pct, reject becomes quarantine");
	cr_expect(out.sampled_out);

	r = rec_of("v=DMARC1; p=quarantine; pct=0");
	dmarc_evaluate(&out, p, &r, false, &dk, 1, &sp, &o);
	cr_expect_eq(out.disposition, DMARC_P_NONE);

	dmarc_evaluate(&out, p, NULL, false, &dk, 1, &sp, &o);
	cr_expect_eq(out.res, AUTH_NONE);
	psl_free(p);
}

Test(dmarc, record_errors_and_defaults)
{
	struct dmarc_record r;
	size_t pos;

	cr_expect_eq(dmarc_record_parse(&r, &pos, span_cstr("p=none; v=DMARC1")), DMARC_PARSE_BAD_VERSION);
	cr_expect_eq(dmarc_record_parse(&r, &pos, span_cstr("v=DMARC1; rua=mailto:a@b.example")), DMARC_PARSE_NO_P);
	cr_expect_eq(r.num_rua, 1, "rua kept so discovery can act as p=none (§6.6.3)");
	cr_expect_eq(dmarc_record_parse(&r, &pos, span_cstr("v=DMARC1; p=none; p=reject")), DMARC_PARSE_SYNTAX);
	cr_assert_eq(dmarc_record_parse(&r, &pos, span_cstr("v=DMARC1;p=quarantine;fo=1:d;rf=iodef;ri=3600;pct=20")),
		     DMARC_PARSE_OK);
	cr_expect_eq(r.p, DMARC_P_QUARANTINE);
	cr_expect_eq(r.sp, DMARC_P_UNSET);
	cr_expect_eq(r.fo, DMARC_FO_1 | DMARC_FO_D);
	cr_expect_eq(r.rf, DMARC_RF_IODEF);
	cr_expect_eq(r.ri, 3600);
	cr_expect_eq(r.pct, 20);
	cr_expect(!r.strict_dkim && !r.strict_spf);
	cr_expect_eq(dmarc_record_parse(&r, &pos, span_cstr("v=DMARC1; p=none; adkim=x")), DMARC_PARSE_BAD_VALUE);
	cr_expect(!r.bad_p && !r.bad_sp, "a bad adkim= leaves the record usable with the default");
}
