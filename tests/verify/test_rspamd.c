/*
 * test_rspamd.c - verify/rspamd.c: rspamd's /checkv2 JSON reply (a reply
 * as rspamd 3.4 sends it, edge cases, hostile nesting and truncation; every
 * input ends at a guard page, and every prefix of a valid reply is an error,
 * never a verdict) and the X-Spam-* fields written from a verdict.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../verify/rspamd.h"
#include "../support/guard.h"

/* As rspamd 3.4 answered a GTUBE message here (trimmed). */
static const char GTUBE_REPLY[] =
	"{\"is_skipped\":true,\"score\":15.0,\"required_score\":15.0,\"action\":\"reject\","
	"\"symbols\":{\"GTUBE\":{\"name\":\"GTUBE\",\"score\":0.0,\"metric_score\":0.0}},"
	"\"messages\":{\"smtp_message\":\"Gtube pattern\"},\"message-id\":\"x@example.com\",\"time_real\":0.407964}";

static const char HAM_REPLY[] =
	"{\"is_skipped\":false,\"score\":3.500000,\"required_score\":15.0,\"action\":\"no action\","
	"\"symbols\":{\"ONCE_RECEIVED\":{\"name\":\"ONCE_RECEIVED\",\"score\":0.100000,\"metric_score\":0.1,"
	"\"description\":\"One received header in a message\"},"
	"\"RDNS_NONE\":{\"name\":\"RDNS_NONE\",\"score\":1.0,\"metric_score\":1.0,\"options\":[\"a\",\"b\"]},"
	"\"MIME_GOOD\":{\"name\":\"MIME_GOOD\",\"score\":-0.100000,\"options\":[\"text/plain\"]},"
	"\"HFILTER_HOSTNAME_UNKNOWN\":{\"name\":\"HFILTER_HOSTNAME_UNKNOWN\",\"score\":2.5e0}},"
	"\"thresholds\":{\"reject\":15.0,\"add header\":6.0,\"greylist\":4.0},"
	"\"milter\":{\"add_headers\":{\"X-Spamd-Result\":{\"value\":\"x\",\"order\":0}}},"
	"\"urls\":[],\"emails\":[\"a@b.c\"],\"message-id\":\"y@example.com\",\"time_real\":0.01}";

static enum rspamd_rc parse(struct rspamd_reply *r, const char *s, size_t len)
{
	const uint8_t *g = guard_copy(s, len);
	size_t pos;
	enum rspamd_rc rc = rspamd_reply_parse(r, &pos, g, len);

	cr_assert_leq(pos, len);
	guard_release(g, len);
	return rc;
}

static const struct rspamd_symbol *sym(const struct rspamd_reply *r, const char *name)
{
	for (unsigned i = 0; i < r->num_symbols; i++) {
		if (strcmp(r->sym[i].name, name) == 0) {
			return &r->sym[i];
		}
	}
	return NULL;
}

Test(rspamd, reads_a_gtube_reply)
{
	struct rspamd_reply *r = malloc(sizeof(*r));

	cr_assert_eq(parse(r, GTUBE_REPLY, strlen(GTUBE_REPLY)), RSPAMD_OK);
	cr_assert_float_eq(r->score, 15.0, 1e-9);
	cr_assert_float_eq(r->required, 15.0, 1e-9);
	cr_assert_str_eq(r->action, "reject");
	cr_assert(r->skipped);
	cr_assert_eq(r->num_symbols, 1);
	cr_assert_str_eq(r->sym[0].name, "GTUBE");
	cr_assert(rspamd_is_spam(r));
	free(r);
}

Test(rspamd, reads_a_ham_reply_skipping_unknown_members)
{
	struct rspamd_reply *r = malloc(sizeof(*r));

	cr_assert_eq(parse(r, HAM_REPLY, strlen(HAM_REPLY)), RSPAMD_OK);
	cr_assert_float_eq(r->score, 3.5, 1e-9);
	cr_assert_str_eq(r->action, "no action");
	cr_assert_not(r->skipped);
	cr_assert_eq(r->num_symbols, 4);
	cr_assert_not_null(sym(r, "HFILTER_HOSTNAME_UNKNOWN"));
	cr_assert_float_eq(sym(r, "HFILTER_HOSTNAME_UNKNOWN")->score, 2.5, 1e-9);
	cr_assert_float_eq(sym(r, "MIME_GOOD")->score, -0.1, 1e-9);
	cr_assert_not(rspamd_is_spam(r));
	free(r);
}

Test(rspamd, every_prefix_is_an_error)
{
	struct rspamd_reply *r = malloc(sizeof(*r));
	size_t len = strlen(HAM_REPLY);

	for (size_t n = 0; n < len; n++) {
		cr_assert_neq(parse(r, HAM_REPLY, n), RSPAMD_OK, "prefix of %zu bytes", n);
	}
	free(r);
}

Test(rspamd, refuses_hostile_and_incomplete_replies)
{
	static const struct {
		const char *in;
		enum rspamd_rc want;
	} v[] = {
		{ "", RSPAMD_SYNTAX },
		{ "[]", RSPAMD_SYNTAX },
		{ "{\"score\":1,\"required_score\":2}", RSPAMD_INCOMPLETE },
		{ "{\"score\":1,\"required_score\":2,\"action\":\"no action\",\"error\":\"x\"}", RSPAMD_INCOMPLETE },
		{ "{\"error\":\"Message has no data\"}", RSPAMD_INCOMPLETE },
		{ "{\"score\":\"1\",\"required_score\":2,\"action\":\"reject\"}", RSPAMD_INCOMPLETE },
		{ "{\"score\":1,\"required_score\":2,\"action\":\"reject\"} x", RSPAMD_SYNTAX },
		{ "{\"score\":1,,\"required_score\":2,\"action\":\"reject\"}", RSPAMD_SYNTAX },
		{ "{\"score\":1e999,\"required_score\":2,\"action\":\"reject\"}", RSPAMD_SYNTAX },
		{ "{\"a\":\"\x01\"}", RSPAMD_SYNTAX },
		{ "{\"a\":\"\\q\"}", RSPAMD_SYNTAX },
		{ "{\"a\":\"\\u12\"}", RSPAMD_SYNTAX },
		{ "{\"a\":tru}", RSPAMD_SYNTAX },
		{ "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", RSPAMD_TOO_DEEP },
	};
	struct rspamd_reply *r = malloc(sizeof(*r));

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cr_assert_eq(parse(r, v[i].in, strlen(v[i].in)), v[i].want, "%zu: %s", i, v[i].in);
	}
	free(r);
}

Test(rspamd, keeps_the_heaviest_symbols_and_cleans_names)
{
	struct rspamd_reply *r = malloc(sizeof(*r));
	char *s = malloc(64 * 1024);
	size_t n = 0;

	n += (size_t)sprintf(s + n, "{\"score\":1,\"required_score\":15,\"action\":\"add\\u0020header\",\"symbols\":{");
	for (int i = 0; i < 100; i++) {
		n += (size_t)sprintf(s + n, "%s\"S%d\":{\"score\":%d}", i ? "," : "", i, i);
	}
	n += (size_t)sprintf(s + n, ",\"BAD\\\"NAME \\u00e9\":{\"score\":1000}}}");
	cr_assert_eq(parse(r, s, n), RSPAMD_OK);
	cr_assert_str_eq(r->action, "add header");
	cr_assert_eq(r->num_symbols, RSPAMD_SYMBOLS_MAX);
	cr_assert_eq(r->num_dropped, 101 - RSPAMD_SYMBOLS_MAX);
	cr_assert_not_null(sym(r, "S99"));
	cr_assert_null(sym(r, "S0"));
	cr_assert_not_null(sym(r, "BAD_NAME__"), "names keep [A-Za-z0-9_.-] only");
	free(s);
	free(r);
}

Test(rspamd, writes_the_fields_folded)
{
	struct rspamd_reply *r = calloc(1, sizeof(*r));
	struct bb b;

	bb_init(&b, 0);
	r->score = 16.5;
	r->required = 15;
	snprintf(r->action, sizeof(r->action), "reject");
	for (int i = 0; i < 12; i++) {
		snprintf(r->sym[i].name, sizeof(r->sym[i].name), "SYMBOL_NUMBER_%d", i);
		r->sym[i].score = i;
	}
	r->num_symbols = 12;
	cr_assert_eq(rspamd_fields_write(&b, r, NULL), 0);
	cr_assert_eq(bb_append(&b, "", 1), 0);
	cr_assert(strncmp((char *)b.p, "X-Spam-Flag: YES\r\nX-Spam-Score: 16.50\r\n"
				       "X-Spam-Status: Yes, score=16.50 required=15.00 action=\"reject\" engine=rspamd",
			  strlen("X-Spam-Flag: YES\r\nX-Spam-Score: 16.50\r\nX-Spam-Status: Yes, score=16.50 "
				 "required=15.00 action=\"reject\" engine=rspamd")) == 0,
		  "%s", b.p);
	/* Every line under 78 columns, every continuation starts with a tab, CRLF at the end. */
	for (char *line = (char *)b.p, *e; (e = strstr(line, "\r\n")) != NULL; line = e + 2) {
		cr_assert_lt(e - line, 78, "line too long: %.*s", (int)(e - line), line);
		cr_assert(line == (char *)b.p || line[0] == '\t' || strncmp(line, "X-Spam-", 7) == 0);
	}
	cr_assert(strstr((char *)b.p, "SYMBOL_NUMBER_11(11.00)\r\n") != NULL);
	bb_reset(&b, 0);
	cr_assert_eq(rspamd_fields_write(&b, NULL, "connect: \"refused\"\r\nX-Evil: 1"), 0);
	cr_assert_eq(bb_append(&b, "", 1), 0);
	cr_assert_str_eq((char *)b.p, "X-Spam-Status: Unknown, engine=rspamd error=\"connect: ?refused???X-Evil: 1\"\r\n");
	bb_fini(&b);
	free(r);
}
