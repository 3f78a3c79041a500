/* test_smtpc.c - bench/load/smtpc.c: reply framing, split at every byte. */
#include <criterion/criterion.h>

#include "smtpc.h"

/* feed runs the reader over `in` in pieces of `step` octets; returns the codes seen. */
static int feed(const char *in, size_t step, int *codes, int max, unsigned *out_ext, enum smtpc_rc *out_last)
{
	struct smtpc_rd rd;
	size_t len = strlen(in), pos = 0;
	int n = 0;

	smtpc_init(&rd);
	*out_last = SMTPC_MORE;
	while (pos < len) {
		size_t take = len - pos < step ? len - pos : step;
		struct span s = span_make(in + pos, take);

		while (s.len > 0) {
			int code = 0;
			enum smtpc_rc rc = smtpc_read(&rd, &s, &code);

			*out_last = rc;
			if (rc == SMTPC_SYNTAX) {
				return n;
			}
			if (rc == SMTPC_REPLY && n < max) {
				codes[n++] = code;
				*out_ext |= rd.ext;
			}
		}
		pos += take;
	}
	return n;
}

Test(smtpc, multiline_ehlo_any_split)
{
	const char *in = "220 mx.test ESMTP\r\n250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-CHUNKING\r\n"
			 "250 STARTTLS\r\n354 go ahead\r\n250 2.0.0 Ok: queued as X\r\n";

	for (size_t step = 1; step <= strlen(in); step++) {
		int codes[8];
		unsigned ext = 0;
		enum smtpc_rc last;
		int n = feed(in, step, codes, 8, &ext, &last);

		cr_assert_eq(n, 4, "step %zu", step);
		cr_assert_eq(codes[0], 220);
		cr_assert_eq(codes[1], 250);
		cr_assert_eq(codes[2], 354);
		cr_assert_eq(codes[3], 250);
		cr_assert_eq(ext, SMTPC_EXT_PIPELINING | SMTPC_EXT_CHUNKING | SMTPC_EXT_STARTTLS);
	}
}

Test(smtpc, keywords_need_a_word_boundary)
{
	int codes[4];
	unsigned ext = 0;
	enum smtpc_rc last;

	cr_assert_eq(feed("250-x\r\n250-PIPELININGX\r\n250 chunking\r\n", 3, codes, 4, &ext, &last), 1);
	cr_assert_eq(ext, SMTPC_EXT_CHUNKING);
}

Test(smtpc, bare_lf_and_code_only_lines)
{
	int codes[4];
	unsigned ext = 0;
	enum smtpc_rc last;

	cr_assert_eq(feed("221\n250 ok\n", 1, codes, 4, &ext, &last), 2);
	cr_assert_eq(codes[0], 221);
	cr_assert_eq(codes[1], 250);
}

Test(smtpc, rejects_garbage)
{
	const char *bad[] = { "hello\r\n", "2x0 no\r\n", "250-a\r\n251 b\r\n", "600 no\r\n", "250xok\r\n" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int codes[4];
		unsigned ext = 0;
		enum smtpc_rc last;

		feed(bad[i], 100, codes, 4, &ext, &last);
		cr_assert_eq(last, SMTPC_SYNTAX, "input %zu", i);
	}
}

Test(smtpc, rejects_overlong_line)
{
	static char in[SMTPC_LINE_MAX + 64];
	int codes[4];
	unsigned ext = 0;
	enum smtpc_rc last;

	memcpy(in, "250 ", 4);
	memset(in + 4, 'a', sizeof(in) - 8);
	memcpy(in + sizeof(in) - 4, "\r\n", 3);
	feed(in, 7, codes, 4, &ext, &last);
	cr_assert_eq(last, SMTPC_SYNTAX);
}

Test(smtpc, keeps_the_last_text)
{
	struct smtpc_rd rd;
	struct span s = SPAN_LIT("550-5.1.1 first\r\n550 5.1.1 no such user\r\n");
	int code = 0;

	smtpc_init(&rd);
	cr_assert_eq(smtpc_read(&rd, &s, &code), SMTPC_REPLY);
	cr_assert_eq(code, 550);
	cr_assert_str_eq(rd.last_text, "5.1.1 no such user");
	cr_assert_eq(s.len, 0);
}
