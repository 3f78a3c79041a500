/*
 * reply_bench.c - MB/s of the reply extraction (proto/mail_reply.c) over
 * the text and HTML bodies of a corpus of messages, and what it adds to
 * writing the message document (proto/msgdoc.c) of the same messages.
 *   omx-reply-bench [-r ROUNDS] FILE...
 * Messages are parsed once, before timing; the bodies are what the document
 * writer hands the extraction. Best of ROUNDS, wall clock (CLOCK_MONOTONIC).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bb.h"
#include "proto/mail_reply.h"
#include "proto/message.h"
#include "proto/msgdoc.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long n;

	if (f == NULL) {
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		p = malloc((size_t)n + 1);
		if (p != NULL && fread(p, 1, (size_t)n, f) != (size_t)n) {
			free(p);
			p = NULL;
		}
		*out_len = (size_t)n;
	}
	fclose(f);
	return p;
}

int main(int argc, char **argv)
{
	int rounds = 5, first = 1;
	size_t num = 0, body_bytes = 0, quoted = 0, sigs = 0;
	struct message **msgs;
	volatile uint64_t sink = 0;
	double best_reply = 1e30, best_doc = 1e30;

	if (argc > 2 && strcmp(argv[1], "-r") == 0) {
		rounds = atoi(argv[2]);
		first = 3;
	}
	msgs = calloc((size_t)argc, sizeof(*msgs));
	if (msgs == NULL) {
		return 1;
	}
	for (int i = first; i < argc; i++) {
		size_t len = 0;
		char *p = slurp(argv[i], &len);

		if (p == NULL) {
			fprintf(stderr, "reply-bench: cannot read %s\n", argv[i]);
			continue;
		}
		msgs[num] = message_parse(p, len, NULL);
		free(p);
		if (msgs[num] == NULL) {
			continue;
		}
		body_bytes += message_text(msgs[num]).len + message_html(msgs[num]).len;
		num++;
	}
	for (int r = 0; r < rounds; r++) {
		double t0 = now();

		for (size_t i = 0; i < num; i++) {
			struct span t = message_text(msgs[i]), h = message_html(msgs[i]);
			struct mail_reply mr;

			mail_reply_init(&mr);
			if (mail_reply_extract(&mr, message_text_part(msgs[i]) ? &t : NULL,
					       message_html_part(msgs[i]) ? &h : NULL) == 0) {
				sink += mr.text.len;
				if (r == 0) {
					quoted += mr.quoted;
					sigs += mr.has_sig;
				}
			}
			mail_reply_fini(&mr);
		}
		double t1 = now();
		struct msgdoc_opts o = { SIZE_MAX, NULL, NULL, NULL };

		for (size_t i = 0; i < num; i++) {
			struct bb b;

			bb_init(&b, 0);
			if (msgdoc_write(&b, msgs[i], NULL, &o) == 0) {
				sink += b.len;
			}
			bb_fini(&b);
		}
		double t2 = now();

		best_reply = t1 - t0 < best_reply ? t1 - t0 : best_reply;
		best_doc = t2 - t1 < best_doc ? t2 - t1 : best_doc;
	}
	printf("messages %zu, text+html body bytes %zu, quoted %zu, signature %zu\n", num, body_bytes, quoted, sigs);
	printf("%-34s %8.1f MB/s of bodies  (best of %d, %.4f s per round)\n", "reply extraction (mail_reply)",
	       (double)body_bytes / best_reply / 1e6, rounds, best_reply);
	printf("%-34s %8.4f s per round; the extraction is %.1f%% of it\n", "message document (msgdoc_write)",
	       best_doc, 100.0 * best_reply / best_doc);
	for (size_t i = 0; i < num; i++) {
		message_free(msgs[i]);
	}
	free(msgs);
	return sink == 0xdeadbeef;
}
