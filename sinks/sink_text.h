/*
 * sink_text.h - a consumer's words made safe for our logs and for the
 * dead-letter reason: the first line of a script's stderr, the start of a
 * webhook's error body. Pure.
 */
#ifndef OMX_SINK_TEXT_H
#define OMX_SINK_TEXT_H

#include <stddef.h>

#include "../core/span.h"

#define SINK_TEXT_MAX 200 /* bytes of a consumer's reason we keep */

/*
 * sink_text_line writes the first line of `in` (up to the first CR or LF)
 * into out (size out_size >= 1, NUL-terminated), with leading and trailing
 * white space dropped, each byte outside printable ASCII and each '"' and
 * '\\' replaced by '?' (our log lines quote reasons), and at most
 * min(out_size - 1, SINK_TEXT_MAX) bytes kept. Returns the length written.
 */
size_t sink_text_line(char *out, size_t out_size, struct span in);

#endif
