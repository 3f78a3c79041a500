/*
 * sha256.c - SHA-256 after FIPS 180-4 §6.2: a portable block function, and
 * one with the x86 SHA extensions (SHA-NI) chosen at run time when the CPU
 * has them. Every attachment and body of the JSON document is hashed, and
 * the portable code ran at ~200 MB/s, which capped the message object's
 * parse throughput; with SHA-NI hashing runs at several GB/s.
 */
#include "sha256.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define SHA256_X86 1
#endif

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, hh;

	for (int i = 0; i < 16; i++) {
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
		       (uint32_t)p[4 * i + 3];
	}
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));

		hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

#ifdef SHA256_X86
/*
 * blocks_shani hashes n 64-byte blocks with SHA256RNDS2 (two rounds per
 * instruction) and SHA256MSG1/MSG2 (the message schedule). The instructions
 * keep the state as ABEF and CDGH, not ABCD and EFGH; the shuffles on entry
 * and exit convert. w[j & 3] holds schedule words 4j..4j+3.
 */
__attribute__((target("sha,sse4.1,ssse3"))) static void blocks_shani(uint32_t h[8], const uint8_t *p, size_t n)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1); /* B A D C */
	__m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); /* H G F E */
	__m128i s0 = _mm_alignr_epi8(t, s1, 8);                                        /* ABEF */

	s1 = _mm_blend_epi16(s1, t, 0xF0); /* CDGH */
	for (; n > 0; n--, p += 64) {
		__m128i abef = s0, cdgh = s1, w[4];

		for (int j = 0; j < 4; j++) {
			w[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * j)), bswap);
		}
		for (int j = 0; j < 16; j++) {
			__m128i m = _mm_add_epi32(w[j & 3], _mm_loadu_si128((const __m128i *)&K[4 * j]));

			s1 = _mm_sha256rnds2_epu32(s1, s0, m);
			if (j >= 3 && j <= 14) { /* words 4(j+1).. from the msg1 part and the last two groups */
				__m128i x = _mm_alignr_epi8(w[j & 3], w[(j - 1) & 3], 4);

				w[(j + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(w[(j + 1) & 3], x), w[j & 3]);
			}
			s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));
			if (j >= 1 && j <= 12) { /* msg1 part of group j+3 */
				w[(j - 1) & 3] = _mm_sha256msg1_epu32(w[(j - 1) & 3], w[j & 3]);
			}
		}
		s0 = _mm_add_epi32(s0, abef);
		s1 = _mm_add_epi32(s1, cdgh);
	}
	t = _mm_shuffle_epi32(s0, 0x1B);  /* F E B A */
	s1 = _mm_shuffle_epi32(s1, 0xB1); /* D C H G */
	_mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, s1, 0xF0)); /* A B C D */
	_mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(s1, t, 8));    /* E F G H */
}

static bool cpu_has_shani(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) {
		return false;
	}
	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}
#endif

/* 0: not decided yet, 1: portable, 2: SHA-NI. cpuid traps in a VM: ask once. */
static _Atomic int impl;

void sha256_use_accel(bool on)
{
	int want = 1;

#ifdef SHA256_X86
	if (on && cpu_has_shani()) {
		want = 2;
	}
#endif
	atomic_store_explicit(&impl, want, memory_order_relaxed);
}

static void blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
	int i = atomic_load_explicit(&impl, memory_order_relaxed);

	if (i == 0) {
		sha256_use_accel(true);
		i = atomic_load_explicit(&impl, memory_order_relaxed);
	}
#ifdef SHA256_X86
	if (i == 2) {
		blocks_shani(h, p, n);
		return;
	}
#endif
	for (; n > 0; n--, p += 64) {
		block(h, p);
	}
}

void sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

	memcpy(s->h, iv, sizeof(iv));
	s->num_bytes = 0;
	s->buf_len = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	s->num_bytes += len;
	if (s->buf_len > 0) {
		size_t n = 64 - s->buf_len < len ? 64 - s->buf_len : len;

		memcpy(s->buf + s->buf_len, p, n);
		s->buf_len += n;
		p += n;
		len -= n;
		if (s->buf_len < 64) {
			return;
		}
		blocks(s->h, s->buf, 1);
		s->buf_len = 0;
	}
	if (len >= 64) {
		blocks(s->h, p, len / 64);
		p += len & ~(size_t)63;
		len &= 63;
	}
	if (len > 0) {
		memcpy(s->buf, p, len);
		s->buf_len = len;
	}
}

void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN])
{
	uint64_t bits = s->num_bytes * 8;
	uint8_t pad[72] = { 0x80 };
	size_t n = (s->buf_len < 56 ? 56 : 120) - s->buf_len;

	for (int i = 0; i < 8; i++) {
		pad[n + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
	}
	sha256_update(s, pad, n + 8);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

void sha256_hex(const uint8_t digest[SHA256_LEN], char out[2 * SHA256_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < SHA256_LEN; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[2 * SHA256_LEN] = '\0';
}
