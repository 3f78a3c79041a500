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

/* How lines are written (--log-format). */
enum log_format {
	LOG_FMT_TEXT = 0, /* "TIME LEVEL WHO EVENT key=value..." (default) */
	LOG_FMT_JSON,     /* one JSON object per line (log_json_format) */
	LOG_FMT_COUNT     /* sentinel */
};

extern enum log_format log_format_current; /* set by main before any thread starts */

/* log_parse_format maps "text"/"json" to a format; -1 if unknown. */
int log_parse_format(const char *name);

/*
 * log_json_format renders one line as a JSON object into out[out_len]
 * (newline-terminated, NUL-terminated, cut short but still valid JSON when
 * it does not fit): {"ts":..,"level":..,"who":..,"event":..} plus one field
 * per key=value of `msg` (after its first word, the event). A value in
 * double quotes is a string (its text as written: log_escape output never
 * holds a quote); a bare integer is a number; anything else a string. Text
 * that is not key=value goes to "msg". Every string is JSON-escaped.
 * Returns the length written (without the NUL). Pure.
 */
size_t log_json_format(char *out, size_t out_len, const char *ts, const char *level, const char *who,
		       const char *msg);

/* log_parse_level maps "err".."debug" to a level; -1 if unknown. */
int log_parse_level(const char *name);

/* The level is changed by SIGHUP on the main thread while every thread logs. */
#define LOG_ENABLED(lvl) ((int)(lvl) <= (int)__atomic_load_n(&log_level_current, __ATOMIC_RELAXED))

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
