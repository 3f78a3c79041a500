/*
 * test_hdrsplit.c - verify/hdrsplit.c, the bounded header splitter, and
 * the path the verify pool and "oceanmx verify" build on it (split, then
 * DKIM, ARC and DMARC's From): issue 13, where one header field longer
 * than 64 KiB before From: stopped header reading and gave dmarc=none.
 * Every input is also fed byte by byte and at every two-way split (for the
 * short ones), and ends at a guard page.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../verify/arc.h"
#include "../../verify/dkim.h"
#include "../../verify/dmarc.h"
#include "../../verify/hdrsplit.h"
#include "../support/guard.h"

#define FIELDS_MAX 64

struct got {
	char *field[FIELDS_MAX]; /* whole fields; "!" + len for one not whole */
	uint64_t offset[FIELDS_MAX], len[FIELDS_MAX];
	size_t num;
	size_t body_at;          /* offset of the body, or SIZE_MAX before the end */
	size_t max_alloc;        /* the splitter's largest buffer */
};

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->num; i++) {
		free(g->field[i]);
	}
}

static void got_field(struct got *g, const struct hdrsplit_field *f)
{
	cr_assert_lt(g->num, FIELDS_MAX);
	if (f->whole) {
		g->field[g->num] = strndup((const char *)f->bytes.p, f->bytes.len);
	} else {
		cr_assert_leq(f->bytes.len, HDRSPLIT_FIELD_MAX);
		cr_assert(asprintf(&g->field[g->num], "!%llu", (unsigned long long)f->len) > 0);
	}
	g->offset[g->num] = f->offset;
	g->len[g->num] = f->len;
	g->num++;
}

/* split runs msg through a splitter in pieces of `step` bytes (0: at `cut`, in two). */
static void split(struct got *g, const char *msg, size_t len, size_t step, size_t cut)
{
	const uint8_t *p = guard_copy(msg, len);
	struct hdrsplit s;
	struct hdrsplit_field f;
	size_t at = 0;

	memset(g, 0, sizeof(*g));
	g->body_at = SIZE_MAX;
	hdrsplit_init(&s);
	while (at < len && g->body_at == SIZE_MAX) {
		size_t n = step ? (at + step <= len ? step : len - at) : (at < cut ? cut - at : len - at);
		struct span in = span_make(p + at, n);
		enum hdrsplit_ev ev;

		while ((ev = hdrsplit_next(&s, &f, &in)) == HDRSPLIT_FIELD) {
			got_field(g, &f);
		}
		if (s.field.alloc > g->max_alloc) {
			g->max_alloc = s.field.alloc;
		}
		if (ev == HDRSPLIT_END) {
			g->body_at = at + n - in.len;
		}
		at += n;
	}
	if (g->body_at == SIZE_MAX) {
		while (hdrsplit_finish(&s, &f) == HDRSPLIT_FIELD) {
			got_field(g, &f);
		}
	}
	hdrsplit_fini(&s);
	guard_release(p, len);
}

static void assert_same(const struct got *a, const struct got *b, size_t step, size_t cut)
{
	cr_assert_eq(a->num, b->num, "step %zu cut %zu", step, cut);
	cr_assert_eq(a->body_at, b->body_at, "step %zu cut %zu", step, cut);
	for (size_t i = 0; i < a->num; i++) {
		cr_assert_str_eq(a->field[i], b->field[i], "step %zu cut %zu field %zu", step, cut, i);
		cr_assert_eq(a->offset[i], b->offset[i]);
		cr_assert_eq(a->len[i], b->len[i]);
	}
}

TestSuite(hdrsplit);

Test(hdrsplit, fields_folds_and_body_any_split)
{
	static const char msg[] = "Received: from a\r\n\tby b\r\nFrom: A <a@x.test>\r\nX:\r\n y\r\n\r\nbody\r\n";
	size_t len = sizeof(msg) - 1;
	struct got whole, g;

	split(&whole, msg, len, len, 0);
	cr_assert_eq(whole.num, 3);
	cr_assert_str_eq(whole.field[0], "Received: from a\r\n\tby b");
	cr_assert_str_eq(whole.field[1], "From: A <a@x.test>");
	cr_assert_str_eq(whole.field[2], "X:\r\n y");
	cr_assert_eq(whole.offset[1], 25);
	cr_assert_eq(whole.len[1], 20);
	cr_assert_eq(whole.body_at, len - 6);
	for (size_t step = 1; step < len; step++) {
		split(&g, msg, len, step, 0);
		assert_same(&whole, &g, step, 0);
		got_free(&g);
	}
	for (size_t cut = 1; cut < len; cut++) {
		split(&g, msg, len, 0, cut);
		assert_same(&whole, &g, 0, cut);
		got_free(&g);
	}
	got_free(&whole);
}

Test(hdrsplit, bare_lf_and_no_empty_line)
{
	struct got g;

	split(&g, "A: 1\nB: 2\n\nbody", 15, 3, 0);
	cr_assert_eq(g.num, 2);
	cr_assert_str_eq(g.field[1], "B: 2");
	cr_assert_eq(g.body_at, 11);
	got_free(&g);
	split(&g, "A: 1\r\nB: 2", 10, 4, 0);
	cr_assert_eq(g.num, 2);
	cr_assert_str_eq(g.field[1], "B: 2");
	cr_assert_eq(g.body_at, SIZE_MAX);
	got_free(&g);
}

/* big_field appends a folded field `name` of about `size` bytes (72-octet lines) to b. */
static size_t big_field(char *b, const char *name, size_t size)
{
	size_t n = (size_t)sprintf(b, "%s: start", name);

	while (n < size) {
		n += (size_t)sprintf(b + n, "\r\n\t%s", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	}
	memcpy(b + n, "\r\n", 2);
	return n + 2;
}

Test(hdrsplit, a_huge_field_is_skipped_not_an_end)
{
	size_t cap = 3u << 20;
	char *msg = malloc(cap);
	size_t len = 0, big_len;
	struct got g;

	cr_assert_not_null(msg);
	big_len = big_field(msg, "Received", 70 * 1024);
	len = big_len;
	len += big_field(msg + len, "X-Pad", 2u << 20);
	len += (size_t)sprintf(msg + len, "From: ceo@paypal.test\r\n\r\nbody\r\n");
	for (size_t step = 4096; step <= len; step *= 8) {
		split(&g, msg, len, step, 0);
		cr_assert_eq(g.num, 3);
		cr_assert_eq(g.field[0][0], '!');
		cr_assert_eq(g.len[0], big_len);
		cr_assert_eq(g.field[1][0], '!');
		cr_assert_str_eq(g.field[2], "From: ceo@paypal.test");
		cr_assert_eq(g.body_at, len - 6);
		cr_assert_leq(g.max_alloc, HDRSPLIT_FIELD_MAX, "bounded memory: %zu", g.max_alloc);
		got_free(&g);
	}
	free(msg);
}

/*
 * The issue-13 path: fields go to DKIM, ARC and the From collector as the
 * verify pool hands them (core/vpool.c header_field). Returns the From
 * outcome (the DKIM and ARC side must take every field without error).
 */
static enum dmarc_from_rc verify_path(const char *msg, size_t len, char *dom, size_t dom_len)
{
	struct hdrsplit s;
	struct hdrsplit_field f;
	struct dmarc_from_seen from = { 0 };
	struct dkim_msg *m = dkim_msg_new(NULL);
	struct arc_msg *arc = arc_msg_new(NULL);
	struct span in = span_make(msg, len);
	enum hdrsplit_ev ev;
	enum dmarc_from_rc rc;
	int sig;

	cr_assert(m != NULL && arc != NULL);
	hdrsplit_init(&s);
	while ((ev = hdrsplit_next(&s, &f, &in)) == HDRSPLIT_FIELD) {
		cr_assert_eq(dmarc_from_seen_field(&from, f.bytes, f.whole, f.len, f.max_line, f.offset), 0);
		if (f.whole) {
			cr_assert_eq(dkim_msg_header(m, f.bytes, &sig), 0);
			cr_assert_eq(arc_msg_header(arc, f.bytes, &sig), 0);
		} else {
			cr_assert_eq(dkim_msg_header_big(m, f.bytes, &sig), 0);
			cr_assert_eq(arc_msg_header_big(arc, f.bytes), 0);
		}
	}
	cr_assert_eq(ev, HDRSPLIT_END);
	rc = dmarc_from_seen_domain(&from, dom, dom_len);
	dmarc_from_seen_fini(&from);
	hdrsplit_fini(&s);
	dkim_msg_free(m);
	arc_msg_free(arc);
	return rc;
}

Test(hdrsplit, from_after_long_fields_is_found)
{
	char *msg = malloc(1u << 20);
	char dom[PSL_NAME_MAX + 1];
	size_t len;

	cr_assert_not_null(msg);
	/* 40 KB (worked before), 70 KB (gave dmarc=none), 70 KB Received: */
	for (size_t size = 40 * 1024; size <= 160 * 1024; size += 30 * 1024) {
		len = big_field(msg, "X-Long", size);
		len += big_field(msg + len, "Received", 70 * 1024);
		len += (size_t)sprintf(msg + len, "From: Boss <ceo@paypal.test>\r\nSubject: hi\r\n\r\nbody\r\n");
		cr_assert_eq(verify_path(msg, len, dom, sizeof(dom)), DMARC_FROM_OK, "size %zu", size);
		cr_assert_str_eq(dom, "paypal.test");
	}
	free(msg);
}

Test(hdrsplit, a_from_too_large_to_read_is_never_none)
{
	char *msg = malloc(1u << 20);
	char dom[PSL_NAME_MAX + 1];
	struct dmarc_result r;
	size_t len;

	cr_assert_not_null(msg);
	/* a From padded past what the message parser keeps (MIME_FIELD_MAX) */
	len = big_field(msg, "From", 40 * 1024);
	len += (size_t)sprintf(msg + len, "\r\nbody\r\n");
	cr_assert_eq(verify_path(msg, len, dom, sizeof(dom)), DMARC_FROM_UNREADABLE);
	/* and past what the splitter keeps at all, before a second, readable From */
	len = big_field(msg, "From", 100 * 1024);
	len += (size_t)sprintf(msg + len, "From: a@good.test\r\n\r\nbody\r\n");
	cr_assert_eq(verify_path(msg, len, dom, sizeof(dom)), DMARC_FROM_UNREADABLE);
	dmarc_from_result(&r, DMARC_FROM_UNREADABLE);
	cr_assert_eq(r.res, AUTH_PERMERROR);
	cr_assert(r.from_unreadable);
	/* a From after 256 KiB of header: the message parser drops it, so we do not read it either */
	len = big_field(msg, "Received", 300 * 1024);
	len += (size_t)sprintf(msg + len, "From: ceo@paypal.test\r\n\r\nbody\r\n");
	cr_assert_eq(verify_path(msg, len, dom, sizeof(dom)), DMARC_FROM_UNREADABLE);
	/* no From at all is still none */
	len = (size_t)sprintf(msg, "Subject: x\r\n\r\n");
	cr_assert_eq(verify_path(msg, len, dom, sizeof(dom)), DMARC_FROM_NONE);
	dmarc_from_result(&r, DMARC_FROM_NONE);
	cr_assert_eq(r.res, AUTH_NONE);
	cr_assert(!r.from_unreadable);
	free(msg);
}
