/*
 * test_dkim_canon.c - verify/dkim_canon.c: RFC 6376 §3.4 vectors (the
 * §3.4.6 example included), empty bodies, and split everywhere: each body
 * fed whole, byte by byte and at every two-way split gives the same bytes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../core/bb.h"
#include "../../verify/dkim_canon.h"

static void to_bb(void *arg, const uint8_t *p, size_t len)
{
	cr_assert_eq(bb_append(arg, p, len), 0);
}

/* same compares two byte strings; an empty bb has a NULL pointer. */
static bool same(const uint8_t *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void canon_parts(struct bb *out, enum dkim_canon c, const char *in, size_t len, const size_t *cuts,
			size_t num_cuts)
{
	struct dkim_body_canon bc;
	size_t at = 0;

	bb_reset(out, 0);
	dkim_body_canon_init(&bc, c, to_bb, out);
	for (size_t i = 0; i < num_cuts; i++) {
		dkim_body_canon_update(&bc, (const uint8_t *)in + at, cuts[i] - at);
		at = cuts[i];
	}
	if (len > at) {
		dkim_body_canon_update(&bc, (const uint8_t *)in + at, len - at);
	}
	dkim_body_canon_final(&bc);
	cr_assert_eq(bc.num_out, out->len);
}

static void check_body(enum dkim_canon c, const char *in, const char *want)
{
	struct bb whole, part;
	size_t len = strlen(in);

	bb_init(&whole, 0);
	bb_init(&part, 0);
	canon_parts(&whole, c, in, len, NULL, 0);
	cr_assert(same(whole.p, whole.len, want, strlen(want)),
		  "%s canon of \"%s\": got \"%.*s\" want \"%s\"", c ? "relaxed" : "simple", in, (int)whole.len,
		  (const char *)whole.p, want);
	for (size_t cut = 0; cut <= len; cut++) {
		size_t cuts[1] = { cut };

		canon_parts(&part, c, in, len, cuts, 1);
		cr_assert(same(part.p, part.len, whole.p, whole.len), "split at %zu differs", cut);
	}
	if (len > 1) {
		size_t cuts[4096];

		cr_assert(len - 1 <= 4096);
		for (size_t i = 0; i + 1 < len; i++) {
			cuts[i] = i + 1;
		}
		canon_parts(&part, c, in, len, cuts, len - 1);
		cr_assert(same(part.p, part.len, whole.p, whole.len), "byte by byte differs");
	}
	bb_fini(&whole);
	bb_fini(&part);
}

Test(dkim_canon, rfc6376_example_body)
{
	/* §3.4.6 */
	check_body(DKIM_CANON_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
	check_body(DKIM_CANON_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n");
}

Test(dkim_canon, empty_bodies)
{
	check_body(DKIM_CANON_SIMPLE, "", "\r\n");              /* §3.4.3 */
	check_body(DKIM_CANON_SIMPLE, "\r\n\r\n\r\n", "\r\n");
	check_body(DKIM_CANON_RELAXED, "", "");                  /* §3.4.4, erratum 1384 */
	check_body(DKIM_CANON_RELAXED, "\r\n \r\n\t\r\n", "");
}

Test(dkim_canon, last_line_without_crlf)
{
	check_body(DKIM_CANON_SIMPLE, "abc", "abc\r\n");
	check_body(DKIM_CANON_RELAXED, "abc  \t", "abc\r\n");
	check_body(DKIM_CANON_SIMPLE, "a\r\n\r\nb", "a\r\n\r\nb\r\n");
}

Test(dkim_canon, inner_empty_lines_kept)
{
	check_body(DKIM_CANON_SIMPLE, "a\r\n\r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n");
	check_body(DKIM_CANON_RELAXED, "a\r\n  \r\n\r\nb\r\n \r\n", "a\r\n\r\n\r\nb\r\n");
}

Test(dkim_canon, relaxed_whitespace)
{
	check_body(DKIM_CANON_RELAXED, "  lead\t\ttabs  and   runs \r\n", " lead tabs and runs\r\n");
	check_body(DKIM_CANON_RELAXED, "x \t \r\ny\r\n", "x\r\ny\r\n");
}

Test(dkim_canon, bare_cr_and_lf_are_text)
{
	check_body(DKIM_CANON_SIMPLE, "a\rb\r\n\r", "a\rb\r\n\r\r\n");
	check_body(DKIM_CANON_RELAXED, "a \r b\nc\r\n", "a \r b\nc\r\n");
	check_body(DKIM_CANON_SIMPLE, "\r\r\n", "\r\r\n");
}

Test(dkim_canon, many_trailing_empty_lines)
{
	char in[600];
	size_t n = 0;

	in[n++] = 'z';
	for (int i = 0; i < 250; i++) {
		in[n++] = '\r';
		in[n++] = '\n';
	}
	in[n++] = 'q';
	in[n] = '\0';
	/* 249 empty lines between z and q survive (emitted in batches) */
	struct bb b;
	bb_init(&b, 0);
	canon_parts(&b, DKIM_CANON_SIMPLE, in, n, NULL, 0);
	cr_assert_eq(b.len, n + 2);
	bb_fini(&b);
}

/*
 * ref_relaxed is the relaxed body canonicalisation written the slow way, as
 * §3.4.4 reads: split at CRLF, each line's WSP runs to one SP, trailing WSP
 * gone, trailing empty lines gone, a CRLF after the last line. The
 * verifier's run-based version must match it on any input.
 */
static size_t ref_relaxed(char *out, const char *in, size_t len)
{
	size_t o = 0, keep = 0, i = 0;

	while (i < len) {
		size_t e = i, line_start = o;
		bool wsp = false;

		while (e < len && !(in[e] == '\r' && e + 1 < len && in[e + 1] == '\n')) {
			e++;
		}
		for (size_t k = i; k < e; k++) {
			if (in[k] == ' ' || in[k] == '\t') {
				wsp = true;
				continue;
			}
			if (wsp) {
				out[o++] = ' ';
			}
			wsp = false;
			out[o++] = in[k];
		}
		out[o++] = '\r';
		out[o++] = '\n';
		if (o - line_start > 2) {
			keep = o; /* the body ends after the last line with text */
		}
		i = e + 2;
	}
	return keep;
}

Test(dkim_canon, relaxed_matches_reference_on_random_bodies)
{
	static const char alphabet[] = "ab \t\r\n";
	char in[64], want[200];
	struct bb whole, part;
	uint32_t x = 12345;

	bb_init(&whole, 0);
	bb_init(&part, 0);
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(round % 40), cuts[3];

		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			in[i] = alphabet[(x >> 16) % 6];
		}
		size_t want_len = ref_relaxed(want, in, len);

		canon_parts(&whole, DKIM_CANON_RELAXED, in, len, NULL, 0);
		cr_assert(same(whole.p, whole.len, want, want_len), "round %d: relaxed differs from the reference", round);
		for (size_t k = 0; k < 3; k++) {
			x = x * 1103515245u + 12345u;
			cuts[k] = len ? (x >> 16) % (len + 1) : 0;
		}
		if (cuts[0] > cuts[1]) {
			size_t t = cuts[0]; cuts[0] = cuts[1]; cuts[1] = t;
		}
		if (cuts[1] > cuts[2]) {
			size_t t = cuts[1]; cuts[1] = cuts[2]; cuts[2] = t;
		}
		if (cuts[0] > cuts[1]) {
			size_t t = cuts[0]; cuts[0] = cuts[1]; cuts[1] = t;
		}
		canon_parts(&part, DKIM_CANON_RELAXED, in, len, cuts, 3);
		cr_assert(same(part.p, part.len, want, want_len), "round %d: split output differs", round);
	}
	bb_fini(&whole);
	bb_fini(&part);
}

static void check_hdr(enum dkim_canon c, const char *in, bool crlf, const char *want)
{
	struct bb out;

	bb_init(&out, 0);
	dkim_hdr_canon(c, span_cstr(in), crlf, to_bb, &out);
	cr_assert(same(out.p, out.len, want, strlen(want)), "got \"%.*s\" want \"%s\"",
		  (int)out.len, (const char *)out.p, want);
	bb_fini(&out);
}

Test(dkim_canon, rfc6376_example_headers)
{
	check_hdr(DKIM_CANON_RELAXED, "A: X", true, "a:X\r\n");
	check_hdr(DKIM_CANON_RELAXED, "B : Y\t\r\n\tZ  ", true, "b:Y Z\r\n");
	check_hdr(DKIM_CANON_SIMPLE, "B : Y\t\r\n\tZ  ", true, "B : Y\t\r\n\tZ  \r\n");
	check_hdr(DKIM_CANON_RELAXED, "DKIM-Signature: v=1; b=", false, "dkim-signature:v=1; b=");
}

Test(dkim_canon, relaxed_header_long_value_and_empty)
{
	char in[1300], want[1300];

	strcpy(in, "Subject:");
	strcpy(want, "subject:");
	for (int i = 0; i < 300; i++) {
		strcat(in, "  ab");
		strcat(want, i ? " ab" : "ab");
	}
	strcat(want, "\r\n");
	check_hdr(DKIM_CANON_RELAXED, in, true, want);
	check_hdr(DKIM_CANON_RELAXED, "X-Empty:   ", true, "x-empty:\r\n");
}

Test(dkim_canon, header_name)
{
	struct span n = dkim_hdr_name(span_cstr("Subject \t: x"));

	cr_assert(span_eq(n, SPAN_LIT("Subject")));
	cr_assert_eq(dkim_hdr_name(span_cstr("no colon")).len, 0);
}
