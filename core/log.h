/*
 * log.h - one line shape for every log: "<shard> <16-hex session> <event> key=value..."
 * (STYLE.md §7). Lines go to stderr whole, so lines from different threads
 * never interleave; while serving, through a logger thread (see
 * log_start_async). The level is checked before any formatting. Client
 * text must be escaped by the caller (log_escape).
 */
#ifndef OMX_LOG_H
#define OMX_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_ERR = 0, /* broken environment, lost function */
	LOG_WARN,    /* degraded: a sink down, a full disk, a shard backpressure */
	LOG_NOTICE,  /* start, stop, configuration (default) */
	LOG_INFO,    /* one line per connection and per message */
	LOG_DEBUG,   /* protocol detail */
	LOG_LEVEL_COUNT /* sentinel */
};

extern enum log_level log_level_current;

/* log_parse_level maps "err".."debug" to a level; -1 if unknown. */
int log_parse_level(const char *name);

#define LOG_ENABLED(lvl) ((lvl) <= log_level_current)

/* log_line writes one line; `who` is e.g. "s0 00af12c4e9b07d21" or "main". */
void log_line_impl(enum log_level lvl, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_line(lvl, who, ...)                               \
	do {                                                  \
		if (LOG_ENABLED(lvl)) {                       \
			log_line_impl((lvl), (who), __VA_ARGS__); \
		}                                             \
	} while (0)

/*
 * log_start_async starts the logger thread: from then on log lines go
 * through per-thread rings and no thread blocks on stderr (a full ring drops
 * and counts). log_stop_async drains everything, stops it and returns to
 * direct writes. Main thread only.
 */
void log_start_async(void);
void log_stop_async(void);

/*
 * log_escape copies at most `len` bytes of client text into out[out_len] as
 * printable ASCII (others as \xNN), always NUL-terminating; returns out.
 */
char *log_escape(char *out, size_t out_len, const uint8_t *p, size_t len);

#endif
