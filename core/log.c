/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_current = LOG_NOTICE;

static const char *const level_names[LOG_LEVEL_COUNT] = {
	"err", "warn", "notice", "info", "debug",
};

int log_parse_level(const char *name)
{
	for (int i = 0; i < LOG_LEVEL_COUNT; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			return i;
		}
	}
	return -1;
}

void log_line_impl(enum log_level lvl, const char *who, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s ", ts.tv_nsec / 1000000,
		     level_names[lvl], who);
	if (k > 0) {
		n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
	}
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (k > 0) {
		n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
	}
	line[n++] = '\n';
	/* One write per line: atomic for stderr pipes up to PIPE_BUF. */
	if (write(STDERR_FILENO, line, n) < 0) {
		return;
	}
}

char *log_escape(char *out, size_t out_len, const uint8_t *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (out_len == 0) {
		return out;
	}
	for (size_t i = 0; i < len && o + 4 < out_len; i++) {
		uint8_t c = p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}
