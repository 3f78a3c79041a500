/*
 * test_mail_reply.c - the reply without its history (proto/mail_reply.c):
 * quote and attribution removal, signatures, the HTML quote containers, the
 * text derived from HTML, and linearity: pathological bodies (thousands of
 * '>' lines, thousands of attribution-looking lines, 1 MiB on one line,
 * deeply nested HTML quotes) must cost a bounded number of line and byte
 * visits per input byte (the `work` counter; never a timing threshold).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/charset.h"
#include "proto/mail_reply.h"
#include "tests/support/guard.h"

struct got {
	char *text, *sig, *html;
	bool quoted;
	uint64_t work;
};

static char *dup_span(struct span s)
{
	char *p = malloc(s.len + 1);

	cr_assert_not_null(p);
	memcpy(p, s.p, s.len);
	p[s.len] = '\0';
	return p;
}

/* extract runs mail_reply_extract on guard-page copies of text and html (NULL: absent). */
static struct got extract_n(const char *text, size_t text_len, const char *html, size_t html_len)
{
	struct mail_reply r;
	struct got g = { 0 };
	const uint8_t *gt = text ? guard_copy(text, text_len) : NULL;
	const uint8_t *gh = html ? guard_copy(html, html_len) : NULL;
	struct span ts = span_make(gt, text_len), hs = span_make(gh, html_len);

	mail_reply_init(&r);
	cr_assert_eq(mail_reply_extract(&r, text ? &ts : NULL, html ? &hs : NULL), 0);
	if (r.has_text) {
		cr_assert(utf8_valid(r.text));
		g.text = dup_span(r.text);
	}
	if (r.has_sig) {
		cr_assert(r.signature.p + r.signature.len == r.text.p + r.text.len, "signature is not a suffix of text");
		g.sig = dup_span(r.signature);
	}
	if (r.has_html) {
		g.html = dup_span(r.html);
	}
	g.quoted = r.quoted;
	g.work = r.work;
	mail_reply_fini(&r);
	if (gt) {
		guard_release(gt, text_len);
	}
	if (gh) {
		guard_release(gh, html_len);
	}
	return g;
}

static struct got extract(const char *text, const char *html)
{
	return extract_n(text, text ? strlen(text) : 0, html, html ? strlen(html) : 0);
}

static void got_free(struct got *g)
{
	free(g->text);
	free(g->sig);
	free(g->html);
}

static void expect(const char *body, const char *text, const char *sig, bool quoted)
{
	struct got g = extract(body, NULL);

	cr_expect_str_eq(g.text, text, "body %s", body);
	if (sig == NULL) {
		cr_expect_null(g.sig, "signature %s for body %s", g.sig, body);
	} else {
		cr_expect(g.sig != NULL && strcmp(g.sig, sig) == 0, "signature %s, want %s", g.sig, sig);
	}
	cr_expect_eq(g.quoted, quoted, "quoted for body %s", body);
	got_free(&g);
}

Test(mail_reply, attribution_and_quotes)
{
	expect("Yes.\n\nOn Tue, Apr 2, 2024 at 10:15 AM Ann <ann@x.test> wrote:\n> Lunch?\n> Ann\n", "Yes.", NULL, true);
	expect("Yes.\r\n\r\nOn Tue, Apr 2, 2024 at 10:15 AM Ann <ann@x.test> wrote:\r\n> Lunch?\r\n", "Yes.", NULL, true);
	/* wrapped over lines */
	expect("Yes.\n\nOn Tue, Apr 2, 2024 at 10:15 AM Ann\n<ann@x.test>\nwrote:\n\n> Lunch?\n", "Yes.", NULL, true);
	/* German, Dutch, Swedish, Polish */
	expect("Ja.\n\nAm 02.04.2024 um 10:15 schrieb Ann <ann@x.test>:\n> Mittag?\n", "Ja.", NULL, true);
	expect("Ja.\n\nOp 2 apr. 2024 om 10:15 schreef Ann <ann@x.test>:\n> Lunch?\n", "Ja.", NULL, true);
	expect("Ja.\n\nDen 2 april 2024 10:15 skrev Ann <ann@x.test>:\n> Lunch?\n", "Ja.", NULL, true);
	expect("Tak.\n\nW dniu 2.04.2024 o 10:15, Ann pisze... napisa\xc5\x82:\n> Obiad?\n", "Tak.", NULL, true);
	/* no date: an ordinary sentence that ends in "wrote:" is text */
	expect("On Monday I wrote:\nthe plan\n", "On Monday I wrote:\nthe plan", NULL, false);
	expect("On your host run:\n\n  ls\n", "On your host run:\n\n  ls", NULL, false);
	/* one quoted line is kept; two go */
	expect("See\n> this\nabove\n", "See\n> this\nabove", NULL, false);
	expect("> a\n> b\n\nAnswer\n", "Answer", NULL, true);
}

Test(mail_reply, outlook_blocks_and_markers)
{
	expect("Fine.\n\n-----Original Message-----\nFrom: Ann\nSent: Tuesday\nTo: Bob\n\nOld\n", "Fine.", NULL, true);
	expect("Fine.\n\n-----Urspr\xc3\xbcngliche Nachricht-----\nVon: Ann\n\nAlt\n", "Fine.", NULL, true);
	expect("Bien.\n\nDe : Ann\nEnvoy\xc3\xa9 : mardi\n\xc3\x80 : Bob\nObjet : Re\n\nVieux\n", "Bien.", NULL, true);
	expect("Ok.\n\n______________________\nFrom: Ann\nSent: Tuesday\nTo: Bob\nSubject: x\n\nOld\n", "Ok.", NULL, true);
	expect("Ok\n\n---- Ann wrote ----\n\n> old\n", "Ok", NULL, true);
	/* a forward is its own content */
	expect("FYI\n\n---------- Forwarded message ---------\nFrom: Ann\nDate: Tue\n\nText\n",
	       "FYI\n\n---------- Forwarded message ---------\nFrom: Ann\nDate: Tue\n\nText", NULL, false);
	expect("See below\n\nBegin forwarded message:\n\nFrom: Ann\nDate: Tue\n\nText",
	       "See below\n\nBegin forwarded message:\n\nFrom: Ann\nDate: Tue\n\nText", NULL, false);
	/* a header label alone is text */
	expect("From: the team\nwith love\n", "From: the team\nwith love", NULL, false);
}

Test(mail_reply, inline_replies_keep_all_but_the_last_quote)
{
	expect("On Tue, Apr 2, 2024 at 10:15 AM Ann <a@x.test> wrote:\n> q1\n\na1\n\n> q2\n\na2\n\n> tail\n> tail\n",
	       "On Tue, Apr 2, 2024 at 10:15 AM Ann <a@x.test> wrote:\n> q1\n\na1\n\n> q2\n\na2", NULL, true);
}

Test(mail_reply, signatures)
{
	expect("Hi\n\n-- \nBob\nAcme\n", "Hi\n\n-- \nBob\nAcme", "-- \nBob\nAcme", false);
	expect("Hi\n-- \nBob\n", "Hi\n-- \nBob", "-- \nBob", false);
	expect("Hi\n\nSent from my iPhone\n", "Hi\n\nSent from my iPhone", "Sent from my iPhone", false);
	expect("Hi\nVon meinem iPhone gesendet\n", "Hi\nVon meinem iPhone gesendet", "Von meinem iPhone gesendet", false);
	expect("Hi\n\nSent from my desk, which is nicer.\n", "Hi\n\nSent from my desk, which is nicer.", NULL, false);
	expect("Hi\n\n-Bob\n", "Hi\n\n-Bob", "-Bob", false);
	expect("Hi\n\nThanks,\nBob\n", "Hi\n\nThanks,\nBob", "Thanks,\nBob", false);
	expect("Hi\n\nBob Smith\nAcme Inc.\n+1 555 123 4567\n", "Hi\n\nBob Smith\nAcme Inc.\n+1 555 123 4567",
	       "Bob Smith\nAcme Inc.\n+1 555 123 4567", false);
	/* a delimiter in the middle of a line is not one */
	expect("Here -- not a signature\n\nbye\n", "Here -- not a signature\n\nbye", NULL, false);
	/* the signature below the removed history stays in text (talon) and is named */
	expect("Yes\n\nOn 2.4.2024 10:15, Ann <a@x.test> wrote:\n> q\n> q\n\n-- \nBob\n", "Yes\n\n-- \nBob", "-- \nBob", true);
	/* only a signature: no reply text above, so no signature named */
	expect("Sent from my iPhone\n", "Sent from my iPhone", NULL, false);
}

Test(mail_reply, same_line_attribution)
{
	expect("ok On Wed, Apr 4, 2012 at 3:59 PM, b@x.test wrote:\n> Hi\n", "ok", NULL, true);
	expect("ok--- On Wed, Apr 4, 2012 at 3:59 PM, b@x.test wrote:\n> Hi\n", "ok", NULL, true);
}

Test(mail_reply, empty_and_blank)
{
	expect("", "", NULL, false);
	expect("\n\n  \n", "", NULL, false);
	expect("On Tue, Apr 2, 2024 at 10:15 AM Ann <a@x.test> wrote:\n> x\n> y\n", "", NULL, true);
	struct got g = extract(NULL, NULL);

	cr_expect_null(g.text);
	cr_expect_null(g.html);
	got_free(&g);
}

Test(mail_reply, html_quote_containers)
{
	struct {
		const char *in, *out;
	} v[] = {
		{ "<div>Yes</div><div class=\"gmail_quote\"><div>On x wrote:</div><blockquote class=\"gmail_quote\">"
		  "<div>old</div></blockquote></div>",
		  "<div>Yes</div>" },
		{ "<body>Yes<blockquote type=\"cite\"><blockquote type=\"cite\">a</blockquote>b</blockquote>after</body>",
		  "<body>Yesafter</body>" },
		{ "<p>Yes</p><div class=\"moz-cite-prefix\">On x wrote:<br></div><blockquote type=cite>old</blockquote>",
		  "<p>Yes</p>" },
		{ "<div>Yes</div><div id=\"yahoo_quoted_1\" class=\"yahoo_quoted\"><div>old</div></div>", "<div>Yes</div>" },
		{ "<body><div>Yes</div><hr style=\"display:inline-block\"> <div id=\"divRplyFwdMsg\">From: x</div><div>old</div>"
		  "</body></html>",
		  "<body><div>Yes</div></body></html>" },
		{ "<body><p>Ja</p><div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'>"
		  "<p>Von: x</p></div><p>alt</p></body>",
		  "<body><p>Ja</p></body>" },
		{ "<div>no quote <!-- <blockquote type=cite> --> here</div>",
		  "<div>no quote <!-- <blockquote type=cite> --> here</div>" },
		{ "<div>unclosed <blockquote type=\"cite\"><div>old", "<div>unclosed " },
		{ "<div title='a>b' class=gmail_quote>old</div>new", "new" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct got g = extract("text body", v[i].in);

		cr_expect_str_eq(g.html, v[i].out, "case %zu", i);
		got_free(&g);
	}
}

Test(mail_reply, text_from_html)
{
	struct got g = extract(NULL, "<html><head><title>T</title><style>p{}</style></head><body><div>Caf&eacute; &amp; "
				     "tea&#33;&#x1F600;</div><div><br></div><p>Second   line</p>Sent from my iPhone"
				     "<div class=\"gmail_quote\">On x wrote: old</div></body></html>");

	cr_expect_str_eq(g.text, "Caf\xc3\xa9 & tea!\xf0\x9f\x98\x80\n\nSecond line\n\nSent from my iPhone");
	cr_expect_str_eq(g.sig, "Sent from my iPhone");
	cr_expect(g.quoted);
	got_free(&g);
	/* invalid references become U+FFFD, unknown names stay */
	g = extract(NULL, "a&#xD800;b&#0;c&bogus;d&#99999999;");
	cr_expect_str_eq(g.text, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c&bogus;d\xef\xbf\xbd");
	got_free(&g);
}

/* ------------------------------------------------------------------ linearity */

static char *repeat(const char *unit, size_t n, size_t *out_len)
{
	size_t u = strlen(unit);
	char *p = malloc(u * n + 1);

	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++) {
		memcpy(p + i * u, unit, u);
	}
	p[u * n] = '\0';
	*out_len = u * n;
	return p;
}

/* work_per_byte: the work counter over the input size must stay below a constant. */
static void check_linear(const char *what, const char *text, size_t len, bool html)
{
	struct got g = html ? extract_n(NULL, 0, text, len) : extract_n(text, len, NULL, 0);

	cr_log_info("%s: %zu bytes, work %llu", what, len, (unsigned long long)g.work);
	cr_expect_leq(g.work, 16 * (uint64_t)len + 64, "%s: work %llu for %zu bytes", what,
		      (unsigned long long)g.work, len);
	got_free(&g);
}

Test(mail_reply, linear_on_pathological_bodies)
{
	static const char *const units[] = {
		">\n",                                                        /* thousands of quote lines */
		"> a\nb\n",                                                   /* inline replies everywhere */
		"On 1 Jan 2024, Ann <a@x.test>\n",                            /* attributions that never end */
		"On 1 Jan\n\n\n\n\n",                                         /* openers with blank windows */
		"From: a\n",                                                  /* header labels without a block */
		"From: a\nTo: b\n",                                           /* header blocks everywhere */
		"2024-01-01 10:00 Ann <a@x.test>\n",                          /* dated lines */
		"-- \n",                                                      /* signature delimiters */
		"\n",                                                         /* empty lines */
		"x On 1 Jan 2024 wrote wrote wrote On On On On On On On On\n", /* same-line attribution search */
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		size_t len;
		char *p = repeat(units[i], 20000, &len);

		check_linear(units[i], p, len, false);
		free(p);
	}
	/* 1 MiB on one line, of several kinds */
	static const char *const one[] = { "a", ">", "-", " ", "On 1 ", "wrote:" };

	for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
		size_t len;
		char *p = repeat(one[i], (1u << 20) / strlen(one[i]), &len);

		check_linear(one[i], p, len, false);
		free(p);
	}
}

Test(mail_reply, linear_on_pathological_html)
{
	static const char *const units[] = {
		"<blockquote type=cite>",               /* nesting that never closes */
		"<div class=gmail_quote>x</div>",       /* many quote containers */
		"<div>",                                /* many tags */
		"<!--",                                 /* unclosed comments */
		"<a b='",                               /* unclosed attribute quotes */
		"&#12345678;&amp",                      /* references */
		"<",                                    /* lone brackets */
		"<style>",                              /* raw text without its end */
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		size_t len;
		char *p = repeat(units[i], 50000, &len);

		check_linear(units[i], p, len, true);
		free(p);
	}
}

Test(mail_reply, bounds)
{
	/* more lines than analysed: the body comes back whole */
	size_t len;
	char *p = repeat(">\n", MAIL_REPLY_LINES_MAX + 10, &len);
	struct got g = extract_n(p, len, NULL, 0);

	cr_expect_eq(g.quoted, false);
	cr_expect_eq(strlen(g.text), len - 1); /* only the trailing white space is trimmed */
	got_free(&g);
	free(p);
}
