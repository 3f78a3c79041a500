/*
 * fake_sign.h - test helpers shared by the verify unit tests that build
 * signed messages for the fake crypto seam (crypto_fake.c): base64 (RFC
 * 4648, padded), base64 of a SHA-256 (proto/sha256), a key lookup answer.
 */
#ifndef OMX_TEST_FAKE_SIGN_H
#define OMX_TEST_FAKE_SIGN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../proto/sha256.h"
#include "../../verify/dns.h"

/* b64 writes base64 of p[0..len) and a NUL to out (4 * ceil(len / 3) + 1 bytes). */
static inline void b64(char *out, const uint8_t *p, size_t len)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < len ? p[i + 2] : 0);

		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = i + 1 < len ? t[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? t[v & 63] : '=';
	}
	out[o] = '\0';
}

/* sha_b64n writes base64 of SHA-256(s[0..len)) to out (45 bytes). */
static inline void sha_b64n(char *out, const char *s, size_t len)
{
	struct sha256 h;
	uint8_t d[SHA256_LEN];

	sha256_init(&h);
	sha256_update(&h, s, len);
	sha256_final(&h, d);
	b64(out, d, sizeof(d));
}

/* key_answer fills *a with status st and, when rec is not NULL, that one TXT record. */
static inline void key_answer(struct dns_txt_answer *a, enum dns_status st, const char *rec)
{
	memset(a, 0, sizeof(*a));
	a->status = st;
	if (rec != NULL) {
		memcpy(a->buf, rec, strlen(rec));
		a->buf_len = strlen(rec);
		a->rec[0] = span_make(a->buf, a->buf_len);
		a->num_records = 1;
	}
}

#endif
