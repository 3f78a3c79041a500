/* test_sha256.c - SHA-256: FIPS 180-4 known answers with both block functions, and the two agree. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sha256.h"

static void hex_of(const void *p, size_t len, char out[65], size_t split)
{
	struct sha256 s;
	uint8_t d[SHA256_LEN];

	sha256_init(&s);
	sha256_update(&s, p, split < len ? split : len);
	if (split < len) {
		sha256_update(&s, (const uint8_t *)p + split, len - split);
	}
	sha256_final(&s, d);
	sha256_hex(d, out);
}

static void known_answers(void)
{
	static const struct {
		const char *in;
		const char *hex;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
		  "mnopqrstnopqrstu",
		  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
	};
	char out[65];
	char *million = malloc(1000000);

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (size_t split = 0; split <= strlen(v[i].in); split++) {
			hex_of(v[i].in, strlen(v[i].in), out, split);
			cr_assert_str_eq(out, v[i].hex, "vector %zu split %zu", i, split);
		}
	}
	memset(million, 'a', 1000000);
	hex_of(million, 1000000, out, 333333);
	cr_assert_str_eq(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
}

Test(sha256, known_answers_portable)
{
	sha256_use_accel(false);
	known_answers();
	sha256_use_accel(true);
}

Test(sha256, known_answers_default)
{
	sha256_use_accel(true);
	known_answers();
}

Test(sha256, portable_and_accelerated_agree)
{
	uint8_t buf[1200];
	char a[65], b[65];
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < sizeof(buf); i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (size_t len = 0; len <= sizeof(buf); len += 7) {
		size_t split = (size_t)(x % (len + 1));

		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		sha256_use_accel(false);
		hex_of(buf, len, a, split);
		sha256_use_accel(true);
		hex_of(buf, len, b, len - split);
		cr_assert_str_eq(a, b, "len %zu", len);
	}
}
