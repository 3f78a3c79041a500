/*
 * test_smtp_smuggling.c - replay ../shared/corpora/smtp-smuggling against
 * the session (every split of the input), under both bare-newline
 * policies. For every variant: DATA never ends early, and there is never a
 * 250 for a message from smuggled@ unless the corpus says the end of data
 * was genuine (ENDS-DATA: the second transaction is the client's own).
 *
 * The corpus is read from $OMX_CORPORA, else from ../shared/corpora next to
 * the source tree; the tests skip with a reason when it is absent.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialog.h"

static bool corpus_dir(char *buf, size_t len)
{
	const char *env = getenv("OMX_CORPORA");
	FILE *f;
	char probe[PATH_MAX + 64];

	if (env != NULL && env[0] != '\0') {
		snprintf(buf, len, "%s/smtp-smuggling", env);
	} else {
		/* __FILE__ is <src>/tests/proto/test_smtp_smuggling.c */
		const char *file = __FILE__;
		const char *tail = strstr(file, "tests/proto/test_smtp_smuggling.c");
		int n = tail ? (int)(tail - file) : 0;

		snprintf(buf, len, "%.*s../shared/corpora/smtp-smuggling", n, file);
	}
	snprintf(probe, sizeof(probe), "%s/expected.tsv", buf);
	f = fopen(probe, "r");
	if (f == NULL) {
		return false;
	}
	fclose(f);
	return true;
}

static char *slurp(const char *path, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long n;

	cr_assert_not_null(f, "cannot open %s", path);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert(n >= 0);
	rewind(f);
	p = malloc((size_t)n + 1);
	cr_assert_not_null(p);
	cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	p[n] = '\0';
	fclose(f);
	*out_len = (size_t)n;
	return p;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) {
		n++;
	}
	return n;
}

static void replay(enum smtp_bare_policy pol)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	char *tsv, *cmds, *save = NULL;
	size_t tsv_len, cmds_len;
	int rows = 0;
	struct smtp_cfg cfg = {
		.hostname = "mx.test",
		.max_msg_size = 1 << 20,
		.max_rcpts = 100,
		.max_bad_cmds = 20,
		.max_cmd_line = 512,
		.max_text_line = 1000,
		.bare_lf = pol,
	};

	if (!corpus_dir(dir, sizeof(dir))) {
		cr_skip_test("smtp-smuggling corpus not found at %s (set OMX_CORPORA)", dir);
	}
	snprintf(path, sizeof(path), "%s/expected.tsv", dir);
	tsv = slurp(path, &tsv_len);
	snprintf(path, sizeof(path), "%s/sessions/commands.txt", dir);
	cmds = slurp(path, &cmds_len);
	for (char *line = strtok_r(tsv, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char id[128], hex[64], expected[32];
		const char *prefix;
		size_t prefix_len, data_len, in_len;
		char *data, *in, *t, *ev;
		bool aiosmtpd;
		size_t ends;

		if (line[0] == '#' || sscanf(line, "%127[^\t]\t%63[^\t]\t%31[^\t]", id, hex, expected) != 3) {
			continue;
		}
		aiosmtpd = strncmp(id, "aiosmtpd", 8) == 0;
		prefix = aiosmtpd ? "HELO example.com\r\nMAIL FROM:<sender@example.com>\r\n"
				    "RCPT TO:<rcpt1@example.com>\r\nDATA\r\n"
				  : cmds;
		prefix_len = strlen(prefix);
		snprintf(path, sizeof(path), "%s/sessions/%s.data.bin", dir, id);
		data = slurp(path, &data_len);
		in_len = prefix_len + data_len;
		in = malloc(in_len);
		cr_assert_not_null(in);
		memcpy(in, prefix, prefix_len);
		memcpy(in + prefix_len, data, data_len);

		t = dialog_check(&cfg, &dialog_default, in, in_len);
		ev = strstr(t, "\nEVENTS:\n");
		cr_assert_not_null(ev);
		ends = count(ev, "TX_END@");
		/* exactly one 354: the smuggled DATA command is never executed as a command ... */
		if (strcmp(expected, "NOT-EOD") == 0) {
			cr_assert_eq(count(t, "\r\n354 "), 1, "%s: second DATA executed\n%s", id, t);
			cr_assert_eq(count(ev, "from=<smuggled@"), 0, "%s: smuggled MAIL executed\n%s", id, t);
			cr_assert(count(t, "queued as") <= 1, "%s: more than one message\n%s", id, t);
			cr_assert(ends <= 1, "%s\n%s", id, t);
			if (ends == 1) {
				/* ... and an accepted message carries the smuggled lines as text */
				cr_assert(strstr(ev, "SMUGGL") != NULL || strstr(ev, "NO SMUGGLING") != NULL,
					  "%s: message truncated\n%s", id, t);
			} else {
				cr_assert(strstr(t, "\r\n550 5.5.2 ") != NULL, "%s: no rejection\n%s", id, t);
			}
			if (pol == SMTP_BARE_NORMALISE) {
				cr_assert_eq(ends, 1, "%s: normalise must keep the one message\n%s", id, t);
			}
		} else {
			/* ENDS-DATA: the genuine CRLF.CRLF ends the first message there */
			cr_assert_str_eq(expected, "ENDS-DATA");
			cr_assert(ends >= 1, "%s\n%s", id, t);
			cr_assert(strstr(ev, "SMUGGLED EMAIL") == NULL || ends == 2, "%s\n%s", id, t);
			{
				const char *first_end = strstr(ev, "TX_END@");
				const char *second = strstr(first_end, "SMUGGLING WORKS");
				const char *next = strstr(first_end + 1, "TX_");

				/* the first message's body stops before the second transaction */
				cr_assert(second == NULL || (next != NULL && second > next), "%s\n%s", id, t);
			}
		}
		rows++;
		free(t);
		free(in);
		free(data);
	}
	cr_assert_geq(rows, 18, "expected.tsv has %d rows", rows);
	free(tsv);
	free(cmds);
}

Test(smtp_smuggling, corpus_reject_policy, .timeout = 120)
{
	replay(SMTP_BARE_REJECT);
}

Test(smtp_smuggling, corpus_normalise_policy, .timeout = 120)
{
	replay(SMTP_BARE_NORMALISE);
}
