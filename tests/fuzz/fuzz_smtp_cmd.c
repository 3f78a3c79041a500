/*
 * fuzz_smtp_cmd.c - libFuzzer target for command framing and parsing
 * (proto/smtp_cmd.c). The first octet picks the line limit; the rest is
 * framed in segments split at the marker "\xff\xff", and every framed line
 * goes through every parser. Invariants: cursors only move forward inside
 * their input, results lie inside the line, framing is split-independent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_cmd.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

static bool inside(struct span in, struct span s)
{
	return s.len == 0 || (s.p >= in.p && s.p + s.len <= in.p + in.len);
}

static void parse_line(struct span line)
{
	struct smtp_cmd cmd;
	enum smtp_parse p = smtp_cmd_parse(&cmd, line);

	CHECK(inside(line, cmd.args));
	if (p != SMTP_PARSE_OK && p != SMTP_PARSE_SYNTAX) {
		return;
	}
	CHECK(cmd.verb != NULL);
	if (cmd.verb->id == SMTP_V_MAIL || cmd.verb->id == SMTP_V_RCPT) {
		struct span c = cmd.args;
		struct smtp_path path;
		struct smtp_mail_params prm;

		if (!smtp_mail_arg_split(&c, cmd.verb->id == SMTP_V_MAIL ? "FROM:" : "TO:")) {
			return;
		}
		size_t before = c.len;
		enum smtp_addr_err e = smtp_path_parse(&path, &c, SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_POSTMASTER);

		CHECK(inside(line, c));
		if (e != SMTP_ADDR_OK) {
			CHECK(c.len == before);
			return;
		}
		CHECK(inside(line, path.mailbox) && inside(line, path.local) && inside(line, path.domain));
		CHECK(path.local.len <= SMTP_LOCALPART_MAX && path.domain.len <= SMTP_DOMAIN_MAX);
		CHECK(before - c.len <= SMTP_PATH_MAX);
		for (size_t i = 0; i < path.mailbox.len; i++) {
			CHECK(path.mailbox.p[i] > 0x1f && path.mailbox.p[i] != 0x7f);
		}
		(void)smtp_mail_params_parse(&prm, c);
		(void)smtp_rcpt_params_parse(c);
		if (path.domain.len != 0 && path.domain.p[0] != '[') {
			CHECK(smtp_domain_valid(path.domain));
		}
	} else if (cmd.verb->id == SMTP_V_BDAT) {
		uint64_t n;
		bool last, ok;

		if (smtp_bdat_parse(cmd.args, &n, &last, &ok) == SMTP_PARSE_OK) {
			CHECK(ok);
		}
	} else if (cmd.verb->id == SMTP_V_EHLO || cmd.verb->id == SMTP_V_HELO) {
		(void)smtp_helo_valid(cmd.args);
	}
}

/* frame runs the framer over segments and renders the results into res. */
static void frame(struct bb *res, size_t max, const uint8_t *data, size_t size, bool split)
{
	struct smtp_line l;
	size_t pos = 0;

	smtp_line_init(&l, max);
	while (pos < size || size == 0) {
		const uint8_t *m = NULL;
		size_t seg;

		if (split) {
			for (size_t i = pos; i + 1 < size; i++) {
				if (data[i] == 0xff && data[i + 1] == 0xff) {
					m = data + i;
					break;
				}
			}
		}
		seg = m ? (size_t)(m - data) - pos : size - pos;
		{
			struct span s = span_make(data + pos, seg), line, in = s;

			for (;;) {
				const uint8_t *before = s.p;
				enum smtp_parse p = smtp_line_next(&l, &s, &line);

				CHECK(s.p >= before && s.p <= in.p + in.len);
				if (p == SMTP_PARSE_MORE) {
					CHECK(s.len == 0);
					break;
				}
				CHECK(line.len < max || p == SMTP_PARSE_TOO_LONG);
				if (bb_printf(res, "%d:", (int)p) != 0 ||
				    (p != SMTP_PARSE_TOO_LONG && bb_append_span(res, line) != 0) ||
				    bb_append(res, "|", 1) != 0) {
					abort();
				}
				if (p == SMTP_PARSE_OK) {
					parse_line(line);
				}
			}
		}
		pos += seg + (m ? 2 : 0);
		if (size == 0) {
			break;
		}
	}
	smtp_line_fini(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bb a, b;
	uint8_t *joined;
	size_t max, jn = 0;

	if (size < 1) {
		return 0;
	}
	max = 3 + (size_t)data[0] * 4; /* 3..1023 */
	data++;
	size--;
	bb_init(&a, 0);
	bb_init(&b, 0);
	frame(&a, max, data, size, true);
	/* the same bytes without markers, whole, must frame identically */
	joined = malloc(size + 1);
	CHECK(joined != NULL);
	for (size_t i = 0; i < size; i++) {
		if (i + 1 < size && data[i] == 0xff && data[i + 1] == 0xff) {
			i++;
			continue;
		}
		joined[jn++] = data[i];
	}
	frame(&b, max, joined, jn, false);
	CHECK(a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0));
	free(joined);
	bb_fini(&a);
	bb_fini(&b);
	return 0;
}
