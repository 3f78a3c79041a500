/*
 * cmd_parse.c - "oceanmx parse [FILE|-]": print the JSON document
 * (docs/json.md) of one message. The file is read in 64 KiB chunks and
 * fed to the incremental parser, so memory follows the kept bodies, not
 * the file size. No envelope is known offline: "envelope" is null.
 * Attachments are inline (base64) unless --inline-max N says otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/bb.h"
#include "../proto/message.h"
#include "../proto/msgdoc.h"

int cmd_parse(int argc, char **argv);

static int usage(void)
{
	fprintf(stderr, "usage: oceanmx parse [--inline-max BYTES] [FILE|-]\n");
	return 2;
}

int cmd_parse(int argc, char **argv)
{
	const char *path = "-";
	size_t inline_max = SIZE_MAX;
	struct message_opts mo = { 0 };
	struct msgdoc_opts o = { 0 };
	struct message *m = NULL;
	struct bb out;
	static uint8_t buf[65536];
	int fd = 0, rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--inline-max") == 0 && i + 1 < argc) {
			char *end;

			errno = 0;
			inline_max = strtoull(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0') {
				return usage();
			}
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage();
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			return usage();
		} else {
			path = argv[i];
		}
	}
	if (strcmp(path, "-") != 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "oceanmx parse: %s: %s\n", path, strerror(errno));
		return 1;
	}
	mo.keep_max = inline_max == SIZE_MAX ? SIZE_MAX : inline_max + 1;
	m = message_new(&mo);
	bb_init(&out, 0);
	if (m == NULL) {
		fprintf(stderr, "oceanmx parse: out of memory\n");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "oceanmx parse: %s: %s\n", path, strerror(errno));
			goto out;
		}
		if (n == 0) {
			break;
		}
		if (message_feed(m, buf, (size_t)n) != 0) {
			fprintf(stderr, "oceanmx parse: out of memory\n");
			goto out;
		}
	}
	o.inline_max = inline_max;
	if (message_end(m) != 0 || msgdoc_write(&out, m, NULL, &o) != 0 || bb_append(&out, "\n", 1) != 0) {
		fprintf(stderr, "oceanmx parse: out of memory\n");
		goto out;
	}
	if (fwrite(out.p, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
		fprintf(stderr, "oceanmx parse: stdout: %s\n", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd > 0) {
		close(fd);
	}
	message_free(m);
	bb_fini(&out);
	return rc;
}
