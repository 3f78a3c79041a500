/*
 * test_msggen.c - bench/load/msggen.c: size lists, bodies, the message
 * set, relaxed canonicalisation (RFC 6376 §3.4.5), and DKIM signatures
 * made by the built oceanmx-load (LOAD_BIN) checked by an independent
 * verifier (python3-dkim under /usr/bin/python3).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "msggen.h"

#define PY "/usr/bin/python3"

Test(msggen, size_parse_suffixes)
{
	size_t v;

	cr_assert(size_parse("4096", &v) && v == 4096);
	cr_assert(size_parse("4k", &v) && v == 4096);
	cr_assert(size_parse("100K", &v) && v == 102400);
	cr_assert(size_parse("1M", &v) && v == 1048576);
	cr_assert(!size_parse("", &v));
	cr_assert(!size_parse("-1", &v));
	cr_assert(!size_parse("4x", &v));
	cr_assert(!size_parse("1024M", &v));
}

Test(msggen, sizes_parse_weights)
{
	struct msgspec s[MSG_SIZES_MAX];
	unsigned n = 0;
	char err[128];

	cr_assert(sizes_parse("1k:70,64k:25,1M:5", s, MSG_SIZES_MAX, &n, err, sizeof(err)), "%s", err);
	cr_assert_eq(n, 3);
	cr_assert_eq(s[0].size, 1024);
	cr_assert_eq(s[0].weight, 70);
	cr_assert_eq(s[2].size, 1048576);
	cr_assert_eq(s[2].weight, 5);
	cr_assert(sizes_parse("512", s, MSG_SIZES_MAX, &n, err, sizeof(err)));
	cr_assert_eq(n, 1);
	cr_assert_eq(s[0].weight, 1);
	cr_assert(!sizes_parse("1k:0", s, MSG_SIZES_MAX, &n, err, sizeof(err)));
	cr_assert(!sizes_parse("1k:", s, MSG_SIZES_MAX, &n, err, sizeof(err)));
	cr_assert(!sizes_parse(",", s, MSG_SIZES_MAX, &n, err, sizeof(err)));
	cr_assert(!sizes_parse("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", s, MSG_SIZES_MAX, &n, err, sizeof(err)));
}

/* check_body: exact length, CRLF lines, none too long, none starting '.', no trailing space. */
static void check_body(const uint8_t *b, size_t len)
{
	size_t start = 0;

	cr_assert(len >= 2);
	cr_assert(b[len - 2] == '\r' && b[len - 1] == '\n');
	for (size_t i = 0; i < len; i++) {
		if (b[i] == '\n') {
			size_t l;

			cr_assert(i > 0 && b[i - 1] == '\r', "bare LF at %zu", i);
			l = i - 1 - start;
			cr_assert_leq(l, MSG_LINE_MAX, "line of %zu at %zu", l, start);
			if (l > 0) {
				cr_assert_neq(b[start], '.');
				cr_assert_neq(b[i - 2], ' ');
			}
			start = i + 1;
		} else if (b[i] == '\r') {
			cr_assert(i + 1 < len && b[i + 1] == '\n', "bare CR at %zu", i);
		} else {
			cr_assert(b[i] >= 0x20 && b[i] < 0x7f, "byte %#x at %zu", b[i], i);
		}
	}
}

Test(msggen, body_fill_every_length)
{
	static uint8_t buf[2000];

	for (size_t len = 2; len < sizeof(buf); len++) {
		memset(buf, 0, sizeof(buf));
		body_fill(buf, len, len);
		check_body(buf, len);
		cr_assert_eq(buf[len], 0, "wrote past %zu", len);
	}
}

Test(msggen, relaxed_canon_rfc6376_example)
{
	/* RFC 6376 §3.4.5. */
	static const char hdr1[] = "A: X\r\n";
	static const char hdr2[] = "B : Y\t\r\n\tZ  \r\n";
	static const char body[] = " C \r\nD \t E\r\n\r\n\r\n";
	struct bb out;

	bb_init(&out, 0);
	cr_assert_eq(dkim_header_relaxed(&out, span_make(hdr1, sizeof(hdr1) - 1)), 0);
	cr_assert_eq(dkim_header_relaxed(&out, span_make(hdr2, sizeof(hdr2) - 1)), 0);
	cr_assert_eq(out.len, strlen("a:X\r\nb:Y Z\r\n"));
	cr_assert_eq(memcmp(out.p, "a:X\r\nb:Y Z\r\n", out.len), 0);
	bb_reset(&out, 0);
	cr_assert_eq(dkim_body_relaxed(&out, span_make(body, sizeof(body) - 1)), 0);
	cr_assert_eq(out.len, strlen(" C\r\nD E\r\n"));
	cr_assert_eq(memcmp(out.p, " C\r\nD E\r\n", out.len), 0);
	bb_reset(&out, 0);
	cr_assert_eq(dkim_body_relaxed(&out, span_make("\r\n\r\n", 4)), 0);
	cr_assert_eq(out.len, 0);
	cr_assert_eq(dkim_body_relaxed(&out, span_make("x", 1)), 0);
	cr_assert_eq(out.len, 3);
	bb_fini(&out);
}

static struct msgset_opts base_opts(unsigned domains)
{
	struct msgset_opts o;

	memset(&o, 0, sizeof(o));
	o.from_local = "load";
	o.from_domain = "load.test";
	o.to = "rcpt@example.com";
	o.num_domains = domains;
	o.date = 1795000000;
	return o;
}

Test(msggen, msgset_sizes_and_pick)
{
	struct msgspec spec[2] = { { 4096, 3 }, { 102400, 1 } };
	struct msgset_opts o = base_opts(5);
	struct msgset ms;
	char err[128];
	unsigned seen[2] = { 0, 0 }, dom[5] = { 0 };

	cr_assert_eq(msgset_build(&ms, &o, spec, 2, err, sizeof(err)), 0, "%s", err);
	for (unsigned s = 0; s < 2; s++) {
		for (unsigned d = 0; d < 5; d++) {
			const struct lmsg *m = &ms.msgs[s * 5 + d];
			char want[64];

			/* Within a few octets of the asked size (domain names differ in length). */
			cr_assert_leq(m->size, spec[s].size + 8);
			cr_assert_geq(m->size + 8, spec[s].size);
			check_body(m->body, m->body_len);
			snprintf(want, sizeof(want), "<load@s%u.load.test>", d + 1);
			cr_assert_not_null(memmem(m->head.p, m->head.len, want, strlen(want)));
			cr_assert_eq(memcmp(m->head.p + m->head.len - 4, "\r\n\r\n", 4), 0);
		}
	}
	for (uint64_t i = 0; i < 4000; i++) {
		const struct lmsg *m = msgset_pick(&ms, i * 2654435761u, i);

		seen[m->size > 50000]++;
		dom[m->domain]++;
	}
	cr_assert(seen[0] > 2 * seen[1] && seen[1] > 0, "%u %u", seen[0], seen[1]);
	for (unsigned d = 0; d < 5; d++) {
		cr_assert_eq(dom[d], 800);
	}
	msgset_fini(&ms);
}

static bool have_verifier(void)
{
	return system(PY " -c 'import dkim, nacl' >/dev/null 2>&1") == 0;
}

static int sh(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*out_len = (size_t)n;
	return buf;
}

/*
 * sign_and_verify has oceanmx-load (the real binary: the tests do not link
 * BoringSSL) write 2 sizes x 3 sender domains of signed messages, the key
 * and the zone records; python3-dkim verifies each; a tampered body fails.
 */
static void sign_and_verify(const char *alg)
{
	char dir[] = "/tmp/omxload-dkim.XXXXXX", cmd[1024], path[512];
	char *dns1, *dns2, *msg;
	size_t l1, l2, lm;

	if (!have_verifier()) {
		cr_skip_test("python3-dkim / python3-nacl not installed for " PY);
	}
	cr_assert_not_null(mkdtemp(dir));
	for (int i = 0; i < 6; i++) {
		snprintf(cmd, sizeof(cmd),
			 "%s --dkim %s --dkim-key %s/key.pem --dkim-dns %s/zone%d --sender-domains 3 --size 2k,70k "
			 "--print-message=%d > %s/msg%d",
			 LOAD_BIN, alg, dir, dir, i, i, dir, i);
		cr_assert_eq(sh(cmd), 0, "%s", cmd);
		snprintf(cmd, sizeof(cmd), PY " %s/dkim_verify.py %s/msg%d %s/zone%d", LOAD_TESTS_DIR, dir, i, dir, i);
		cr_assert_eq(sh(cmd), 0, "%s alg %s message %d does not verify", cmd, alg, i);
	}
	/* The key was created by the first run and loaded by the others. */
	snprintf(path, sizeof(path), "%s/zone0", dir);
	dns1 = slurp(path, &l1);
	snprintf(path, sizeof(path), "%s/zone5", dir);
	dns2 = slurp(path, &l2);
	cr_assert(l1 > 0 && l1 == l2 && memcmp(dns1, dns2, l1) == 0, "the key changed between runs");
	cr_assert_not_null(strstr(dns1, "s3.load.test. IN TXT"));
	/* Change one body octet: the signature must fail. */
	snprintf(path, sizeof(path), "%s/msg4", dir);
	msg = slurp(path, &lm);
	msg[lm - 10] = msg[lm - 10] == 'x' ? 'y' : 'x';
	{
		FILE *f = fopen(path, "wb");

		fwrite(msg, 1, lm, f);
		fclose(f);
	}
	snprintf(cmd, sizeof(cmd), PY " %s/dkim_verify.py %s/msg4 %s/zone4 >/dev/null", LOAD_TESTS_DIR, dir, dir);
	cr_assert_eq(sh(cmd), 1, "a tampered body verified");
	/* A key of the other type is refused. */
	snprintf(cmd, sizeof(cmd), "%s --dkim %s --dkim-key %s/key.pem --print-message >/dev/null 2>&1", LOAD_BIN,
		 strcmp(alg, "rsa") == 0 ? "ed25519" : "rsa", dir);
	cr_assert_neq(sh(cmd), 0, "a key of the wrong type was accepted");
	free(dns1);
	free(dns2);
	free(msg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	sh(cmd);
}

Test(dkim, rsa_sha256_verifies_with_python3_dkim, .timeout = 120)
{
	sign_and_verify("rsa");
}

Test(dkim, ed25519_sha256_verifies_with_python3_dkim, .timeout = 120)
{
	sign_and_verify("ed25519");
}

Test(dkim, canon_headers_takes_last_instance_bottom_up)
{
	static const char h[] = "Received: a\r\nX-A: 1\r\nx-a :  2 \r\nSubject: s\r\n";
	struct bb out;

	bb_init(&out, 0);
	cr_assert_eq(dkim_canon_headers(&out, span_make(h, sizeof(h) - 1), "x-a:subject:x-a:x-a:missing"), 0);
	cr_assert_eq(out.len, strlen("x-a:2\r\nsubject:s\r\nx-a:1\r\n"));
	cr_assert_eq(memcmp(out.p, "x-a:2\r\nsubject:s\r\nx-a:1\r\n", out.len), 0);
	bb_fini(&out);
}
