/*
 * verify_bench.c - DKIM verification throughput on one core: whole messages
 * (4 KiB body, relaxed/relaxed, one signature) through the verifier
 * (verify/dkim.h: header parsing, canonicalisation, body hash, signature
 * check), against the bare public-key verification of the same key
 * measured in the same run. The verifier runs two ways: with the key
 * parsed once and shared (dkim_keyrec, what the verify pool's key cache
 * hands each message) and with the key record parsed per message from the
 * TXT answer (dkim_msg_key_answer, what `oceanmx verify` does). Prints
 * verifications/s and the ratios.
 *
 *   build/omx-verify-bench [SECONDS [rsa|ed25519 [verifier]]]
 *
 * The second argument runs one algorithm only; "verifier" skips the raw
 * checks (a clean profile: perf record -g build/omx-verify-bench 5 rsa verifier).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "../../core/bb.h"
#include "../../verify/dkim.h"
#include "../../verify/dkim_keyrec.h"
#include "bench_sign.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sample {
	struct bb msg_hdr;  /* header fields, each CRLF-terminated, signature first */
	struct bb body;
	struct dns_txt_answer key;
	struct dkim_keyrec *kr;  /* the key parsed once */
};

static void build(struct sample *s, int ed25519)
{
	struct bb txt;

	bb_init(&s->body, 0);
	bb_init(&s->msg_hdr, 0);
	bb_init(&txt, 0);
	if (bs_make(ed25519, &s->msg_hdr, &s->body, &txt) != 0 || txt.len > sizeof(s->key.buf)) {
		fprintf(stderr, "cannot make the sample message\n");
		exit(1);
	}
	memset(&s->key, 0, sizeof(s->key));
	memcpy(s->key.buf, txt.p, txt.len);
	s->key.buf_len = txt.len;
	s->key.status = DNS_OK;
	s->key.ttl = 300;
	s->key.num_records = 1;
	s->key.rec[0] = span_make(s->key.buf, txt.len);
	bb_fini(&txt);
	if ((s->kr = dkim_keyrec_new(&s->key)) == NULL) {
		exit(1);
	}
}
/* verify_once runs one message through the verifier (shared parsed key or not); returns its first result. */
static enum auth_res verify_once(const struct sample *s, bool shared)
{
	struct dkim_opts o = { 0 };
	struct dkim_msg *m = dkim_msg_new(&o);
	struct span c = bb_span(&s->msg_hdr);
	struct dkim_result r;
	size_t n;

	while (c.len > 0) {
		/* One field: up to a CRLF not followed by white space. */
		size_t i = 0;
		int sig = -1;

		while (i + 1 < c.len && !(c.p[i] == '\r' && c.p[i + 1] == '\n' &&
					   (i + 2 >= c.len || (c.p[i + 2] != ' ' && c.p[i + 2] != '\t')))) {
			i++;
		}
		if (dkim_msg_header(m, span_make(c.p, i), &sig) != 0) {
			exit(1);
		}
		if (sig >= 0) {
			if (shared) {
				dkim_msg_key_set(m, (unsigned)sig, s->kr);
			} else {
				dkim_msg_key_answer(m, (unsigned)sig, &s->key);
			}
		}
		span_skip(&c, i + 2 <= c.len ? i + 2 : c.len);
	}
	dkim_msg_headers_end(m);
	dkim_msg_body(m, s->body.p, s->body.len);
	dkim_msg_body_end(m);
	n = dkim_msg_results(m, &r, 1);
	dkim_msg_free(m);
	return n == 1 ? r.res : AUTH_NONE;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	int only = argc > 2 ? (strcmp(argv[2], "ed25519") == 0 ? 1 : 0) : -1;
	bool raw = !(argc > 3 && strcmp(argv[3], "verifier") == 0);
	static const char *const names[] = { "rsa-sha256 (2048-bit)", "ed25519-sha256" };

	if (sodium_init() < 0) {
		return 1;
	}
	printf("| algorithm | verifier, shared key: msg/s | verifier, key per message: msg/s | raw signature checks/s "
	       "| shared / raw | per message / raw |\n| --- | --- | --- | --- | --- | --- |\n");
	for (int ed = 0; ed < 2; ed++) {
		struct sample s;
		unsigned long n_ver = 0, n_per = 0, n_raw = 0;
		double t0, t_ver = 0, t_per = 0, t_raw = 0;

		if (only >= 0 && ed != only) {
			continue;
		}

		build(&s, ed);
		if (verify_once(&s, true) != AUTH_PASS || verify_once(&s, false) != AUTH_PASS) {
			fprintf(stderr, "%s: the sample message does not verify\n", names[ed]);
			return 1;
		}
		/* Interleaved slices, so load on the shared machine hits both alike. */
		for (int slice = 0; slice < 10; slice++) {
			t0 = now_s();
			while (now_s() - t0 < secs / 30) {
				n_ver += verify_once(&s, true) == AUTH_PASS;
			}
			t_ver += now_s() - t0;
			t0 = now_s();
			while (now_s() - t0 < secs / 30) {
				n_per += verify_once(&s, false) == AUTH_PASS;
			}
			t_per += now_s() - t0;
			t0 = now_s();
			while (raw && now_s() - t0 < secs / 30) {
				n_raw += (unsigned long)bs_raw_verify(ed);
			}
			t_raw += now_s() - t0;
		}
		if (raw) {
			printf("| %s | %.0f | %.0f | %.0f | %.2f | %.2f |\n", names[ed], n_ver / t_ver, n_per / t_per,
			       n_raw / t_raw, (n_ver / t_ver) / (n_raw / t_raw), (n_per / t_per) / (n_raw / t_raw));
		} else {
			printf("| %s | %.0f | %.0f | - | - | - |\n", names[ed], n_ver / t_ver, n_per / t_per);
		}
		dkim_keyrec_unref(s.kr);
		bb_fini(&s.msg_hdr);
		bb_fini(&s.body);
	}
	bs_free();
	return 0;
}
