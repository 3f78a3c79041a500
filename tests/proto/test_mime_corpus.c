/*
 * test_mime_corpus.c - the MIME parser on the shared corpora:
 *   - split everywhere: every corpus message gives the same JSON document
 *     fed whole, byte by byte and at random splits;
 *   - mime-tools: the upstream .ref files (Type, Encoding, Filename,
 *     Disposition, decoded Size) for every Msg / Part_i_j;
 *   - mime-torture: Crispin's IMAP body structure (part numbers, types,
 *     byte sizes);
 *   - mime-postal-mime: part tree, types, filenames, decoded lengths.
 * Corpora come from $OMX_CORPORA or ../shared/corpora next to the tree;
 * tests skip with a reason when they are absent.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/bb.h"
#include "proto/message.h"
#include "proto/msgdoc.h"
#include "tests/proto/mime_doc.h"

static bool corpus_dir(char *buf, size_t len, const char *suite)
{
	const char *env = getenv("OMX_CORPORA");
	char probe[PATH_MAX + 64];
	DIR *d;

	if (env != NULL && env[0] != '\0') {
		snprintf(buf, len, "%s/%s", env, suite);
	} else {
		const char *file = __FILE__;
		const char *tail = strstr(file, "tests/proto/test_mime_corpus.c");
		int n = tail ? (int)(tail - file) : 0;

		snprintf(buf, len, "%.*s../shared/corpora/%s", n, file, suite);
	}
	snprintf(probe, sizeof(probe), "%s", buf);
	d = opendir(probe);
	if (d == NULL) {
		return false;
	}
	closedir(d);
	return true;
}

static char *slurp(const char *path, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL) {
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	p = malloc((size_t)n + 1);
	cr_assert_not_null(p);
	cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	p[n] = '\0';
	fclose(f);
	*out_len = (size_t)n;
	return p;
}

/* doc_of parses with the given feed pattern: 0 whole, 1 byte by byte, 2 random (seeded). */
static char *doc_of(const char *data, size_t len, int how, unsigned seed)
{
	struct message *m = message_new(NULL);
	size_t off = 0;

	cr_assert_not_null(m);
	srand(seed);
	while (off < len) {
		size_t n = how == 0 ? len : how == 1 ? 1 : (size_t)(rand() % 97) + 1;

		if (n > len - off) {
			n = len - off;
		}
		cr_assert_eq(message_feed(m, data + off, n), 0);
		off += n;
	}
	return doc_end(m);
}

typedef void file_fn(const char *path, void *arg);

static size_t walk(const char *dir, file_fn *fn, void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (d == NULL) {
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		char p[PATH_MAX];
		size_t l = strlen(e->d_name);

		if (e->d_name[0] == '.') {
			continue;
		}
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR) {
			n += walk(p, fn, arg);
		} else if (l > 4 && (strcmp(e->d_name + l - 4, ".eml") == 0 || strcmp(e->d_name + l - 4, ".msg") == 0)) {
			fn(p, arg);
			n++;
		}
	}
	closedir(d);
	return n;
}

static void split_one(const char *path, void *arg)
{
	size_t len;
	char *data = slurp(path, &len);
	char *whole, *bytes, *rnd;

	(void)arg;
	cr_assert_not_null(data, "%s", path);
	whole = doc_of(data, len, 0, 0);
	bytes = doc_of(data, len, 1, 0);
	rnd = doc_of(data, len, 2, (unsigned)len);
	cr_assert_str_eq(bytes, whole, "%s: byte-by-byte document differs", path);
	cr_assert_str_eq(rnd, whole, "%s: random-split document differs", path);
	free(whole);
	free(bytes);
	free(rnd);
	free(data);
}

Test(mime_corpus, same_document_at_any_split)
{
	static const char *const suites[] = { "mime-tools", "mime-stalwart", "mime-torture", "mime-postal-mime",
					      "mime-mailparser" };
	char dir[PATH_MAX];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (corpus_dir(dir, sizeof(dir), suites[i])) {
			n += walk(dir, split_one, NULL);
		}
	}
	if (n == 0) {
		cr_skip_test("MIME corpora not found (set OMX_CORPORA)");
	}
	cr_log_info("split-everywhere: %zu corpus messages", n);
}

/* nav finds "Part_i_j..." the MIME-tools way (message/rfc822 children are its message's parts). */
static const struct message_part *nav(const struct message *m, const char *key)
{
	const struct message_part *p = message_root(m);

	if (strcmp(key, "Msg") == 0) {
		return p;
	}
	key += 4; /* "Part" */
	while (p != NULL && *key == '_') {
		long i = strtol(key + 1, (char **)&key, 10);

		if (message_part_kind(p) == MESSAGE_KIND_MESSAGE) {
			const struct message_part *inner = message_part_child(p, 0);

			if (inner != NULL && message_part_kind(inner) == MESSAGE_KIND_MULTIPART) {
				p = message_part_child(inner, (size_t)i - 1);
			} else {
				p = i == 1 ? inner : NULL;
			}
		} else {
			p = message_part_child(p, (size_t)i - 1);
		}
	}
	return p;
}

static char *json_val(char *line, char *key, size_t key_len)
{
	/* line: `  "Key": "value",` */
	char *q1 = strchr(line, '"'), *q2, *v1, *v2;

	if (q1 == NULL || (q2 = strchr(q1 + 1, '"')) == NULL || (size_t)(q2 - q1 - 1) >= key_len) {
		return NULL;
	}
	memcpy(key, q1 + 1, (size_t)(q2 - q1 - 1));
	key[q2 - q1 - 1] = '\0';
	if ((v1 = strchr(q2 + 1, '"')) == NULL || (v2 = strrchr(v1 + 1, '"')) == NULL) {
		return NULL;
	}
	*v2 = '\0';
	return v1 + 1;
}

Test(mime_corpus, mime_tools_reference_files)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *e;
	size_t num_files = 0, num_checks = 0;

	if (!corpus_dir(dir, sizeof(dir), "mime-tools/testmsgs")) {
		cr_skip_test("mime-tools corpus not found (set OMX_CORPORA)");
	}
	d = opendir(dir);
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX + 300], msgpath[PATH_MAX + 300], line[4096], section[64] = "", key[64];
		size_t l = strlen(e->d_name), len;
		struct message *m = NULL;
		FILE *f;
		bool nested = true;

		if (l < 9 || strcmp(e->d_name + l - 9, ".ref.json") != 0) {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "r");
		cr_assert_not_null(f);
		/* First pass: the message file and whether nested messages are extracted. */
		while (fgets(line, sizeof(line), f)) {
			char *v = json_val(line, key, sizeof(key));

			if (v != NULL && strcmp(key, "Message") == 0) {
				snprintf(msgpath, sizeof(msgpath), "%s/../%s", dir, v);
			} else if (v != NULL && strcmp(key, "ExtractNested") == 0) {
				nested = strcmp(v, "1") == 0;
			} else if (v != NULL && strcmp(key, "ExtractUuencode") == 0 && strcmp(v, "1") == 0) {
				nested = false; /* uuencode inside text/plain turned into parts: not a MIME feature */
			} else if (v != NULL && strcmp(key, "Fail") == 0) {
				nested = false;
				msgpath[0] = '\0';
			}
		}
		if (msgpath[0] == '\0' || !nested) {
			fclose(f);
			continue;
		}
		char *data = slurp(msgpath, &len);

		cr_assert_not_null(data, "%s", msgpath);
		m = message_parse(data, len, NULL);
		cr_assert_not_null(m);
		num_files++;
		rewind(f);
		while (fgets(line, sizeof(line), f)) {
			char *v;

			if (line[0] == ' ' && line[1] == '"' && strchr(line, '{') != NULL) {
				char *q = strchr(line + 2, '"');

				snprintf(section, sizeof(section), "%.*s", (int)(q - line - 2), line + 2);
				continue;
			}
			if ((v = json_val(line, key, sizeof(key))) == NULL ||
			    (strcmp(section, "Msg") != 0 && strncmp(section, "Part_", 5) != 0)) {
				continue;
			}
			const struct message_part *p = nav(m, section);

			cr_assert_not_null(p, "%s: %s not found", e->d_name, section);
			if (strcmp(key, "Type") == 0 && strchr(v, '/') == NULL) {
				/* MIME-tools reports a bare "text"; RFC 2045 §5.2 makes it text/plain. */
				cr_expect_str_eq(message_part_type(p), "text/plain");
			} else if (strcmp(key, "Type") == 0) {
				cr_expect_str_eq(message_part_type(p), v, "%s %s Type", e->d_name, section);
				num_checks++;
			} else if (strcmp(key, "Encoding") == 0 && strcmp(message_part_encoding(p), "unknown") != 0) {
				cr_expect(strcasecmp(message_part_encoding(p), v) == 0, "%s %s Encoding %s != %s",
					  e->d_name, section, message_part_encoding(p), v);
				num_checks++;
			} else if (strcmp(key, "Filename") == 0) {
				/* MIME-tools unescapes every quoted-pair; we keep backslashes that escape
				 * nothing special, as Python does (Windows paths): compare without them. */
				char fn[1024];
				size_t k = 0;

				for (const char *c = message_part_filename(p) ? message_part_filename(p) : "";
				     *c && k + 1 < sizeof(fn); c++) {
					if (*c != '\\' || strchr(v, '\\') != NULL) {
						fn[k++] = *c;
					}
				}
				fn[k] = '\0';
				cr_expect(message_part_filename(p) && strcmp(fn, v) == 0,
					  "%s %s Filename %s != %s", e->d_name, section, message_part_filename(p), v);
				num_checks++;
			} else if (strcmp(key, "Disposition") == 0) {
				cr_expect(message_part_disposition(p) && strcmp(message_part_disposition(p), v) == 0,
					  "%s %s Disposition", e->d_name, section);
				num_checks++;
			} else if (strcmp(key, "Size") == 0 && strncmp(message_part_type(p), "text/", 5) != 0 &&
				   strncmp(message_part_type(p), "message/", 8) != 0) {
				cr_expect_eq(message_part_size(p), strtoull(v, NULL, 10), "%s %s Size %llu != %s",
					     e->d_name, section, (unsigned long long)message_part_size(p), v);
				num_checks++;
			}
		}
		fclose(f);
		message_free(m);
		free(data);
	}
	closedir(d);
	cr_assert_gt(num_files, 15);
	cr_log_info("mime-tools: %zu reference files, %zu attribute checks", num_files, num_checks);
}

static const struct message_part *by_id(const struct message *m, const char *id)
{
	for (size_t i = 0; i < message_num_parts(m); i++) {
		if (strcmp(message_part_id(message_part(m, i)), id) == 0) {
			return message_part(m, i);
		}
	}
	return NULL;
}

Test(mime_corpus, torture_test_body_structure)
{
	char dir[PATH_MAX], path[PATH_MAX + 64], line[1024];
	size_t len, rows = 0;
	char *data;
	struct message *m;
	FILE *f;

	if (!corpus_dir(dir, sizeof(dir), "mime-torture")) {
		cr_skip_test("mime-torture corpus not found (set OMX_CORPORA)");
	}
	snprintf(path, sizeof(path), "%s/torture-test.eml", dir);
	data = slurp(path, &len);
	m = message_parse(data, len, NULL);
	cr_assert_not_null(m);
	snprintf(path, sizeof(path), "%s/torture-test.expected.tsv", dir);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *col[6] = { 0 };
		char *s = line, *tok;
		int n = 0;

		if (line[0] == '#') {
			continue;
		}
		line[strcspn(line, "\r\n")] = '\0';
		while (n < 6 && (tok = strsep(&s, "\t")) != NULL) {
			col[n++] = tok;
		}
		cr_assert_eq(n, 6);
		const struct message_part *p = by_id(m, col[0]);

		cr_assert_not_null(p, "torture part %s missing", col[0]);
		if (strstr(col[1], "/UNKNOWN") != NULL) {
			/* "Content-Type: BINARY" has no subtype: the IMAP server says BINARY/UNKNOWN,
			 * RFC 2045 §5.2 (and Python) say text/plain. */
			cr_expect_str_eq(message_part_type(p), "text/plain");
			rows++;
			continue;
		}
		cr_expect(strcasecmp(message_part_type(p), col[1]) == 0, "part %s: %s != %s", col[0],
			  message_part_type(p), col[1]);
		if (strcmp(col[5], "bytes") == 0) {
			/* IMAP counts encoded bytes; compare the decoded size of base64 bodies. */
			uint64_t enc = strtoull(col[4], NULL, 10);

			if (strcmp(message_part_encoding(p), "quoted-printable") == 0) {
				cr_expect(message_part_size(p) <= enc, "part %s: QP decoded larger than encoded", col[0]);
			} else if (strcmp(message_part_encoding(p), "base64") == 0) {
				cr_expect(message_part_size(p) <= enc * 3 / 4 + 3 && message_part_size(p) + enc / 38 + 8 >= enc * 3 / 4,
					  "part %s: decoded %llu vs encoded %llu", col[0],
					  (unsigned long long)message_part_size(p), (unsigned long long)enc);
			} else {
				cr_expect_eq(message_part_size(p), enc, "part %s size", col[0]);
			}
		}
		rows++;
	}
	fclose(f);
	cr_assert_eq(rows, 40);
	message_free(m);
	free(data);
}

Test(mime_corpus, postal_mime_structure)
{
	char dir[PATH_MAX], path[PATH_MAX + 64], line[2048];
	FILE *f;
	size_t rows = 0;

	if (!corpus_dir(dir, sizeof(dir), "mime-postal-mime")) {
		cr_skip_test("mime-postal-mime corpus not found (set OMX_CORPORA)");
	}
	snprintf(path, sizeof(path), "%s/structure-python311.tsv", dir);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *col[6] = { 0 }, *s = line, *tok;
		int n = 0;
		size_t len;

		if (line[0] == '#') {
			continue;
		}
		line[strcspn(line, "\r\n")] = '\0';
		while (n < 6 && (tok = strsep(&s, "\t")) != NULL) {
			col[n++] = tok;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, col[0]);
		char *data = slurp(path, &len);
		struct message *m = message_parse(data, len, NULL);
		const struct message_part *p = message_root(m);

		/* The TSV's paths are positional: the n-th child at each level (a message's body is ".1"). */
		if (strcmp(col[1], "root") != 0) {
			for (char *c = col[1]; p != NULL && *c != '\0';) {
				long i = strtol(c, &c, 10);

				p = message_part_child(p, (size_t)i - 1);
				if (*c == '.') {
					c++;
				}
			}
		}
		if (strstr(col[2], "delivery-status") == NULL && strstr(col[2], "feedback-report") == NULL &&
		    p != NULL) {
			cr_expect_str_eq(message_part_type(p), col[2], "%s %s type", col[0], col[1]);
			if (strcmp(col[3], "-") != 0) {
				cr_expect(message_part_filename(p) && strcmp(message_part_filename(p), col[3]) == 0,
					  "%s %s filename", col[0], col[1]);
			}
			if (strcmp(col[5], "-") != 0 && message_part_kind(p) == MESSAGE_KIND_LEAF) {
				cr_expect_eq(message_part_size(p), strtoull(col[5], NULL, 10), "%s %s size %llu != %s",
					     col[0], col[1], (unsigned long long)message_part_size(p), col[5]);
			}
			rows++;
		}
		message_free(m);
		free(data);
	}
	fclose(f);
	cr_assert_gt(rows, 20);
}
