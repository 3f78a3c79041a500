/*
 * mime_bench.c - MB/s of parsing (structure + transfer decoding of every
 * leaf) over a corpus of messages, ours (proto/mime events, and the full
 * message object) against GMime 3 in the same run.
 *   omx-mime-bench [-r ROUNDS] FILE...
 * Each file is read into memory first; times are wall clock (CLOCK_MONOTONIC).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/message.h"
#include "proto/mime.h"
#ifdef HAVE_GMIME
#include <gmime/gmime.h>
#endif

struct file {
	char *p;
	size_t len;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct mime P;
static volatile uint64_t sink;

static void ours_events(const struct file *f)
{
	struct mime_event ev;

	mime_init(&P);
	mime_push(&P, span_make(f->p, f->len));
	while (mime_next(&P, &ev) != MIME_EV_MORE) {
		sink += ev.data.len;
	}
	mime_finish(&P);
	mime_push(&P, span_make("", 0));
	while (mime_next(&P, &ev) != MIME_EV_END) {
		sink += ev.data.len;
	}
}

static void ours_message(const struct file *f)
{
	struct message *m = message_parse(f->p, f->len, NULL);

	sink += message_num_parts(m);
	message_free(m);
}

#ifdef HAVE_GMIME
static void gm_decode(GMimeObject *parent, GMimeObject *part, gpointer data)
{
	(void)parent;
	(void)data;
	if (GMIME_IS_PART(part)) {
		GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(part));
		GMimeStream *null = g_mime_stream_null_new();

		if (w != NULL) {
			sink += (uint64_t)g_mime_data_wrapper_write_to_stream(w, null);
		}
		g_object_unref(null);
	}
}

static void gmime(const struct file *f)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer(f->p, f->len);
	GMimeParser *parser = g_mime_parser_new_with_stream(s);
	GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);

	if (m != NULL) {
		g_mime_message_foreach(m, gm_decode, NULL);
		g_object_unref(m);
	}
	g_object_unref(parser);
	g_object_unref(s);
}
#endif

static double run(const char *name, void (*fn)(const struct file *), const struct file *fs, size_t n, int rounds,
		  size_t total)
{
	double best = 1e30;

	for (int r = 0; r < rounds; r++) {
		double t0 = now();

		for (size_t i = 0; i < n; i++) {
			fn(&fs[i]);
		}
		double dt = now() - t0;

		best = dt < best ? dt : best;
	}
	printf("%-28s %8.1f MB/s  (best of %d, %.3f s per round)\n", name, (double)total / best / 1e6, rounds, best);
	return (double)total / best / 1e6;
}

int main(int argc, char **argv)
{
	int rounds = 5, first = 1;
	struct file *fs;
	size_t n = 0, total = 0;

	if (argc > 2 && strcmp(argv[1], "-r") == 0) {
		rounds = atoi(argv[2]);
		first = 3;
	}
	fs = calloc((size_t)argc, sizeof(*fs));
	for (int i = first; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");

		if (f == NULL) {
			continue;
		}
		fseek(f, 0, SEEK_END);
		fs[n].len = (size_t)ftell(f);
		rewind(f);
		fs[n].p = malloc(fs[n].len + 1);
		if (fread(fs[n].p, 1, fs[n].len, f) != fs[n].len) {
			fclose(f);
			continue;
		}
		fclose(f);
		total += fs[n].len;
		n++;
	}
	printf("corpus: %zu messages, %.2f MB\n", n, (double)total / 1e6);
#ifdef HAVE_GMIME
	g_mime_init();
#endif
	run("oceanmx mime events", ours_events, fs, n, rounds, total);
	run("oceanmx message object", ours_message, fs, n, rounds, total);
#ifdef HAVE_GMIME
	run("GMime 3 parse+decode", gmime, fs, n, rounds, total);
#else
	printf("GMime: not built (gmime-3.0 not found)\n");
#endif
	return 0;
}
