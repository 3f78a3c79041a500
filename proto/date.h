/*
 * date.h - RFC 5322 §3.3 date-time (and the obsolete forms of §4.3:
 * two-digit years, named zones, missing seconds or day name) to UTC.
 * Also accepts the asctime() shape some old software writes.
 */
#ifndef OMX_DATE_H
#define OMX_DATE_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/span.h"

#define DATE_ISO_LEN 21 /* "2024-01-02T03:04:05Z" + NUL */

/* date_parse: seconds since the epoch (UTC) in *out; false if unusable. */
bool date_parse(struct span in, int64_t *out);

/* date_iso writes "YYYY-MM-DDTHH:MM:SSZ" (ISO 8601, UTC). */
void date_iso(char out[DATE_ISO_LEN], int64_t t);

#endif
