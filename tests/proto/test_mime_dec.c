/* test_mime_dec.c - base64 / quoted-printable decoders, fed whole and byte by byte. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/mime_dec.h"

static size_t b64(const char *in, uint8_t *out, size_t step, uint32_t *junk)
{
	struct mime_b64 st = { 0 };
	size_t n = 0, len = strlen(in);

	for (size_t i = 0; i < len; i += step) {
		size_t k = len - i < step ? len - i : step;

		n += mime_b64_decode(&st, out + n, span_make(in + i, k));
	}
	n += mime_b64_finish(&st, out + n);
	*junk = st.num_junk;
	return n;
}

static size_t qp(const char *in, uint8_t *out, size_t step, uint32_t *bad)
{
	struct mime_qp st = { 0 };
	size_t n = 0, len = strlen(in);

	for (size_t i = 0; i < len; i += step) {
		size_t k = len - i < step ? len - i : step;

		n += mime_qp_decode(&st, out + n, span_make(in + i, k));
	}
	n += mime_qp_finish(&st, out + n);
	*bad = st.num_bad;
	return n;
}

Test(mime_dec, base64_vectors_rfc4648)
{
	static const char *const v[][2] = { { "", "" }, { "Zg==", "f" }, { "Zm8=", "fo" }, { "Zm9v", "foo" },
					    { "Zm9vYg==", "foob" }, { "Zm9vYmE=", "fooba" }, { "Zm9vYmFy", "foobar" },
					    { "Zm9v\r\nYmFy\r\n", "foobar" }, { "Zm9vYg", "foob" } };
	uint8_t out[64];
	uint32_t junk;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (size_t step = 1; step <= 8; step++) {
			size_t n = b64(v[i][0], out, step, &junk);

			cr_assert_eq(n, strlen(v[i][1]), "%s step %zu", v[i][0], step);
			cr_assert(memcmp(out, v[i][1], n) == 0);
			cr_assert_eq(junk, 0);
		}
	}
}

Test(mime_dec, base64_junk_is_skipped_and_counted)
{
	uint8_t out[64];
	uint32_t junk;
	size_t n = b64("Zm9v*YmFy!", out, 3, &junk);

	cr_assert_eq(n, 6);
	cr_assert(memcmp(out, "foobar", 6) == 0);
	cr_assert_eq(junk, 2);
	n = b64("Zg==Zm9v", out, 1, &junk); /* data after the final padding is ignored */
	cr_assert_eq(n, 1);
	cr_assert_gt(junk, 0);
}

Test(mime_dec, quoted_printable)
{
	static const char *const v[][2] = {
		{ "caf=E9", "caf\xe9" }, { "caf=e9", "caf\xe9" }, { "soft=\r\nbreak", "softbreak" },
		{ "soft=\nbreak", "softbreak" }, { "pad=  \r\nx", "padx" }, { "a=3D=3d", "a==" },
		{ "line \r\n", "line \r\n" }, { "end=", "end" },
	};
	uint8_t out[64];
	uint32_t bad;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (size_t step = 1; step <= 5; step++) {
			size_t n = qp(v[i][0], out, step, &bad);

			cr_assert_eq(n, strlen(v[i][1]), "%s step %zu: %zu", v[i][0], step, n);
			cr_assert(memcmp(out, v[i][1], n) == 0, "%s", v[i][0]);
			cr_assert_eq(bad, 0, "%s", v[i][0]);
		}
	}
	size_t n = qp("a=zz=4", out, 1, &bad);

	cr_assert_eq(n, 6);
	cr_assert(memcmp(out, "a=zz=4", 6) == 0);
	cr_assert_eq(bad, 2);
}
