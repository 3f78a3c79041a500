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

void dns_answer_set_status(struct dns_answer *out, uint16_t qtype, enum dns_status s)
{
	out->status = s;
	out->qtype = qtype;
	out->ttl = 0;
	out->num_records = 0;
	out->num_ignored = 0;
	out->buf_len = 0;
}

/* put_name takes an uncompressed wire name off *rd as text into the buffer; false if malformed. */
static bool put_name(struct dns_answer *out, struct span *rd, struct span *name)
{
	size_t start = out->buf_len, total = 0;

	for (;;) {
		uint8_t n;

		if (!span_get_u8(rd, &n)) {
			return false;
		}
		if (n == 0) {
			break;
		}
		if (n > 63 || n > rd->len) {
			return false; /* compression pointer or overrun: not ours to follow */
		}
		total += (size_t)n + 1;
		if (total > DNS_NAME_TEXT_MAX + 1 || out->buf_len + n + 1 > sizeof(out->buf)) {
			return false;
		}
		if (out->buf_len > start) {
			out->buf[out->buf_len++] = '.';
		}
		for (uint8_t i = 0; i < n; i++) {
			uint8_t c = rd->p[i];

			out->buf[out->buf_len++] = c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
		}
		span_skip(rd, n);
	}
	*name = span_make(out->buf + start, out->buf_len - start);
	return true;
}

enum dns_status dns_answer_from_rdata(struct dns_answer *out, uint16_t qtype, const uint8_t *const *rdata,
				      const size_t *rdata_len, size_t num)
{
	dns_answer_set_status(out, qtype, DNS_NODATA);
	for (size_t r = 0; r < num; r++) {
		struct span rd = span_make(rdata[r], rdata_len[r]);
		struct dns_rr *rr = &out->rr[out->num_records];
		size_t start = out->buf_len;
		uint8_t hi, lo;

		if (out->num_records == DNS_RR_MAX) {
			out->num_ignored++;
			continue;
		}
		rr->pref = 0;
		switch (qtype) {
		case DNS_T_A:
		case DNS_T_AAAA: {
			size_t want = qtype == DNS_T_A ? 4 : 16;

			if (rd.len != want) {
				return out->status = DNS_MALFORMED;
			}
			if (out->buf_len + want > sizeof(out->buf)) {
				return out->status = DNS_TOO_BIG;
			}
			memcpy(out->buf + out->buf_len, rd.p, want);
			out->buf_len += want;
			rr->data = span_make(out->buf + start, want);
			break;
		}
		case DNS_T_MX:
			if (!span_get_u8(&rd, &hi) || !span_get_u8(&rd, &lo)) {
				return out->status = DNS_MALFORMED;
			}
			rr->pref = (uint16_t)(hi << 8 | lo);
			__attribute__((fallthrough)); /* the exchange is a name, like PTR's */
		case DNS_T_PTR:
			if (!put_name(out, &rd, &rr->data) || rd.len != 0) {
				return out->status = DNS_MALFORMED;
			}
			break;
		case DNS_T_TXT:
			while (rd.len > 0) {
				uint8_t n = rd.p[0];

				if ((size_t)n + 1 > rd.len) {
					return out->status = DNS_MALFORMED;
				}
				if (n > sizeof(out->buf) - out->buf_len) {
					return out->status = DNS_TOO_BIG;
				}
				memcpy(out->buf + out->buf_len, rd.p + 1, n);
				out->buf_len += n;
				span_skip(&rd, (size_t)n + 1);
			}
			rr->data = span_make(out->buf + start, out->buf_len - start);
			break;
		default:
			out->num_ignored++;
			continue;
		}
		out->num_records++;
	}
	if (out->num_records > 0) {
		out->status = DNS_OK;
	}
	return out->status;
}
