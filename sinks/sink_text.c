/* sink_text.c - sanitised first lines of consumer text; see sink_text.h. */
#include "sink_text.h"

#include <string.h>

size_t sink_text_line(char *out, size_t out_size, struct span in)
{
	size_t max = out_size - 1 < SINK_TEXT_MAX ? out_size - 1 : SINK_TEXT_MAX;
	size_t n = 0, line_len = 0;

	while (line_len < in.len && in.p[line_len] != '\r' && in.p[line_len] != '\n') {
		line_len++;
	}
	struct span line = span_trim_ws(span_make(in.p, line_len));

	for (size_t i = 0; i < line.len && n < max; i++) {
		uint8_t b = line.p[i];

		out[n++] = b >= 0x20 && b < 0x7f && b != '"' && b != '\\' ? (char)b : '?';
	}
	while (n > 0 && out[n - 1] == ' ') {
		n--; /* a cut can end on a space */
	}
	out[n] = '\0';
	return n;
}
