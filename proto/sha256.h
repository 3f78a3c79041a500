/*
 * sha256.h - streaming SHA-256 (FIPS 180-4) for attachment hashes in the
 * JSON document. Pure: caller storage only, no allocation.
 */
#ifndef OMX_SHA256_H
#define OMX_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256 {
	uint32_t h[8];
	uint64_t num_bytes;
	uint8_t buf[64];
	size_t buf_len;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *p, size_t len);
/* sha256_final writes the digest; `s` must be re-initialised before reuse. */
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);
/*
 * sha256_use_accel chooses the block function for the whole process: the
 * CPU's SHA extensions when `on` and present (the default), else the
 * portable code. For tests and benchmarks; both give the same digests.
 */
void sha256_use_accel(bool on);
/* sha256_hex writes 64 lowercase hex digits and a NUL into out (65 bytes). */
void sha256_hex(const uint8_t digest[SHA256_LEN], char out[2 * SHA256_LEN + 1]);

#endif
