/*
 * bench_sign.c - the signing side of omx-verify-bench, kept apart because
 * bench/load/dkim.h and verify/dkim.h both name their algorithm enum
 * dkim_alg: a key, a signed sample message, its DNS TXT record, and one bare
 * signature check with the same key (the raw crypto baseline).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <sodium.h>

#include "../../core/bb.h"
#include "bench_sign.h"
#include "dkim.h"

static struct lkey key;
static uint8_t digest[32] = { 1, 2, 3 }, rawsig[512];
static unsigned rawsig_len;

int bs_make(int ed25519, struct bb *hdr, struct bb *body, struct bb *txt)
{
	static const char h[] = "From: Bench <bench@bench.example>\r\nTo: <rcpt@example.com>\r\n"
				"Subject: verify bench\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
				"Message-ID: <b1@bench.example>\r\n";

	lkey_fini(&key);
	memset(&key, 0, sizeof(key));
	if (lkey_generate(&key, ed25519 ? DKIM_ED25519 : DKIM_RSA) != 0) {
		return -1;
	}
	for (int i = 0; i < 64; i++) {
		if (bb_printf(body, "line %02d of the body of the benchmark message, some words %08x\r\n", i,
			      (unsigned)i * 2654435761u) != 0) {
			return -1;
		}
	}
	if (dkim_sign(hdr, &key, "bench.example", "sel", "from:to:subject:date:message-id", 1795680000,
		      span_make(h, sizeof(h) - 1), bb_span(body)) != 0 ||
	    bb_append(hdr, h, sizeof(h) - 1) != 0 || lkey_dns_txt(&key, txt) != 0) {
		return -1;
	}
	if (ed25519) {
		crypto_sign_detached(rawsig, NULL, digest, sizeof(digest), key.ed_sk);
	} else if (!RSA_sign(NID_sha256, digest, sizeof(digest), rawsig, &rawsig_len, key.rsa)) {
		return -1;
	}
	return 0;
}

int bs_raw_verify(int ed25519)
{
	if (ed25519) {
		return crypto_sign_verify_detached(rawsig, digest, sizeof(digest), key.ed_pk) == 0;
	}
	return RSA_verify(NID_sha256, digest, sizeof(digest), rawsig, rawsig_len, key.rsa) == 1;
}

void bs_free(void)
{
	lkey_fini(&key);
}
