/*
 * dns_txt.c - bounded TXT answers (RFC 1035 §3.3.14, RFC 6376 §3.6.2.2)
 * and DNS status names. Pure.
 */
#include <string.h>

#include "dns.h"

const char *dns_status_name(enum dns_status s)
{
	static const char *const names[DNS_STATUS_COUNT] = {
		[DNS_OK] = "ok",
		[DNS_NXDOMAIN] = "nxdomain",
		[DNS_NODATA] = "nodata",
		[DNS_SERVFAIL] = "servfail",
		[DNS_TIMEOUT] = "timeout",
		[DNS_TOO_BIG] = "too big",
		[DNS_MALFORMED] = "malformed",
		[DNS_ERROR] = "error",
	};

	return (unsigned)s < DNS_STATUS_COUNT ? names[s] : "error";
}

bool dns_status_transient(enum dns_status s)
{
	return s == DNS_SERVFAIL || s == DNS_TIMEOUT || s == DNS_ERROR;
}

enum dns_status dns_txt_from_rdata(struct dns_txt_answer *out, const uint8_t *const *rdata, const size_t *rdata_len,
				   size_t num)
{
	out->num_records = 0;
	out->num_ignored = 0;
	out->buf_len = 0;
	if (num == 0) {
		return out->status = DNS_NODATA;
	}
	for (size_t r = 0; r < num; r++) {
		const uint8_t *p = rdata[r];
		size_t len = rdata_len[r], i = 0, start = out->buf_len;

		if (out->num_records == DNS_TXT_RECORDS_MAX) {
			out->num_ignored++;
			continue;
		}
		if (len == 0) {
			out->status = DNS_MALFORMED; /* a TXT rdata holds at least one string */
			return DNS_MALFORMED;
		}
		while (i < len) {
			size_t n = p[i++];

			if (n > len - i) {
				out->status = DNS_MALFORMED; /* a string runs past its rdata */
				return DNS_MALFORMED;
			}
			if (n > sizeof(out->buf) - out->buf_len) {
				out->status = DNS_TOO_BIG;
				return DNS_TOO_BIG;
			}
			memcpy(out->buf + out->buf_len, p + i, n);
			out->buf_len += n;
			i += n;
		}
		out->rec[out->num_records++] = span_make(out->buf + start, out->buf_len - start);
	}
	return out->status = DNS_OK;
}
