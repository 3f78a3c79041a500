/*
 * date.c - tolerant date-time parsing: tokens are read in order, the
 * month by name, so "Tue, 1 Jul 2003 10:52:37 +0200", "1 Jul 03 10:52
 * EDT" and "Tue Jul  1 10:52:37 2003" all work.
 */
#include "date.h"

#include <string.h>
#include <strings.h>

/* days_from_civil: days since 1970-01-01 (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

static int month_of(struct span w)
{
	static const char m[] = "janfebmaraprmayjunjulaugsepoctnovdec";

	if (w.len < 3) {
		return 0;
	}
	for (int i = 0; i < 12; i++) {
		if (strncasecmp((const char *)w.p, m + 3 * i, 3) == 0) {
			return i + 1;
		}
	}
	return 0;
}

/* zone_of: minutes east of UTC for a named zone (RFC 5322 §4.3); false if unknown. */
static bool zone_of(struct span w, int *out)
{
	static const struct { const char *n; int off; } z[] = {
		{ "UT", 0 }, { "UTC", 0 }, { "GMT", 0 }, { "Z", 0 }, { "EST", -300 }, { "EDT", -240 },
		{ "CST", -360 }, { "CDT", -300 }, { "MST", -420 }, { "MDT", -360 }, { "PST", -480 },
		{ "PDT", -420 }, { "CET", 60 }, { "CEST", 120 }, { "BST", 60 }, { "MET", 60 }, { "MEST", 120 },
		{ "EET", 120 }, { "EEST", 180 }, { "JST", 540 }, { "IST", 330 },
	};

	for (size_t i = 0; i < sizeof(z) / sizeof(z[0]); i++) {
		if (strlen(z[i].n) == w.len && strncasecmp((const char *)w.p, z[i].n, w.len) == 0) {
			*out = z[i].off;
			return true;
		}
	}
	if (w.len == 1 && ((w.p[0] | 0x20) >= 'a' && (w.p[0] | 0x20) <= 'z')) {
		*out = 0; /* military zones: "SHOULD be considered equivalent to -0000" */
		return true;
	}
	return false;
}

bool date_parse(struct span in, int64_t *out)
{
	int64_t nums[8];
	int num_nums = 0, month = 0, zone = 0, hh = -1, mi = -1, ss = 0;
	bool have_zone = false;
	struct span c = in;

	while (c.len > 0) {
		uint8_t ch = c.p[0];

		if (ch == '(') { /* comment */
			const uint8_t *e = memchr(c.p, ')', c.len);

			span_skip(&c, e ? (size_t)(e + 1 - c.p) : c.len);
			continue;
		}
		if ((ch == '+' || ch == '-') && c.len >= 5 && c.p[1] >= '0' && c.p[1] <= '9' && hh >= 0) {
			int v = 0, n = 0;

			span_skip(&c, 1);
			while (c.len > 0 && c.p[0] >= '0' && c.p[0] <= '9' && n < 4) {
				v = v * 10 + (c.p[0] - '0');
				span_skip(&c, 1);
				n++;
			}
			if (n == 4 && v % 100 < 60 && v / 100 < 24) {
				zone = (v / 100) * 60 + v % 100;
				zone = ch == '-' ? -zone : zone;
				have_zone = true;
			}
			continue;
		}
		if (ch >= '0' && ch <= '9') {
			int64_t v = 0;
			size_t n = 0;

			while (n < c.len && c.p[n] >= '0' && c.p[n] <= '9' && n < 10) {
				v = v * 10 + (c.p[n] - '0');
				n++;
			}
			if (n < c.len && c.p[n] == ':' && hh < 0) {
				/* time of day: hh:mm[:ss] */
				hh = (int)v;
				span_skip(&c, n + 1);
				int part = 0, val = 0, digits = 0;

				while (c.len > 0 && ((c.p[0] >= '0' && c.p[0] <= '9') || c.p[0] == ':') && part < 2) {
					if (c.p[0] == ':') {
						if (part == 0) {
							mi = val;
						}
						part++;
						val = 0;
						digits = 0;
					} else if (digits < 2) {
						val = val * 10 + (c.p[0] - '0');
						digits++;
					}
					span_skip(&c, 1);
				}
				if (part == 0) {
					mi = val;
				} else {
					ss = val;
				}
				continue;
			}
			if (num_nums < 8) {
				nums[num_nums++] = n >= 3 && v < 1000 ? v + 1900 : (n >= 3 ? v : (n == 2 ? v + 1000000 : v));
			}
			span_skip(&c, n);
			continue;
		}
		if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') {
			size_t n = 0;

			while (n < c.len && (((c.p[n] | 0x20) >= 'a' && (c.p[n] | 0x20) <= 'z'))) {
				n++;
			}
			struct span w = span_make(c.p, n);
			int m = month_of(w), z;

			if (m > 0 && month == 0 && (n == 3 || n > 3)) {
				month = m;
			} else if (hh >= 0 && !have_zone && zone_of(w, &z)) {
				zone = z;
				have_zone = true;
			}
			span_skip(&c, n);
			continue;
		}
		span_skip(&c, 1);
	}
	if (month == 0 || num_nums < 2 || hh < 0 || mi < 0) {
		return false;
	}
	/* Day and year: the first two numbers; two-digit ones were tagged +1000000. */
	int64_t a = nums[0], b = nums[1], day, year;

	if (a >= 1000000 && a - 1000000 <= 31 && !(b >= 1000000 && b - 1000000 <= 31 && a - 1000000 > 31)) {
		day = a - 1000000;
		year = b;
	} else if (a <= 31 && a < 1000000) {
		day = a;
		year = b;
	} else {
		day = b >= 1000000 ? b - 1000000 : b;
		year = a;
	}
	if (year >= 1000000) {
		year -= 1000000;
		year += year < 50 ? 2000 : 1900; /* RFC 5322 §4.3 */
	}
	if (day < 1 || day > 31 || year < 1900 || year > 9999 || hh > 23 || mi > 59 || ss > 60) {
		return false;
	}
	if (ss == 60) {
		ss = 59; /* a leap second, kept inside the minute */
	}
	*out = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + hh * 3600 + mi * 60 + ss -
	       (int64_t)zone * 60;
	return true;
}

void date_iso(char out[DATE_ISO_LEN], int64_t t)
{
	int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
	int64_t secs = t - days * 86400;
	/* civil_from_days (Hinnant) */
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	y += m <= 2;
	if (y < 0 || y > 9999) {
		y = y < 0 ? 0 : 9999;
	}
	unsigned v[6] = { (unsigned)y, m, d, (unsigned)(secs / 3600), (unsigned)(secs / 60 % 60), (unsigned)(secs % 60) };
	char *o = out;

	for (int i = 0; i < 6; i++) {
		if (i == 0) {
			*o++ = (char)('0' + v[0] / 1000 % 10);
			*o++ = (char)('0' + v[0] / 100 % 10);
		}
		*o++ = (char)('0' + v[i] / 10 % 10);
		*o++ = (char)('0' + v[i] % 10);
		*o++ = "--T::Z"[i];
	}
	*o = '\0';
}
