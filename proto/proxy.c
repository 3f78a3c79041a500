/* proxy.c - PROXY protocol v1/v2 header parser; see proxy.h. */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
static const char v1_sig[] = "PROXY ";

/* prefix_of: the first min(n, sig_len) octets of p equal sig's. */
static bool prefix_of(const uint8_t *p, size_t n, const uint8_t *sig, size_t sig_len)
{
	return memcmp(p, sig, n < sig_len ? n : sig_len) == 0;
}

/* ip_text writes a binary address as text; an IPv4-mapped IPv6 address as IPv4. */
static void ip_text(char out[MSG_IP_MAX], int family, const void *addr)
{
	const uint8_t *a = addr;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (family == AF_INET6 && memcmp(a, mapped, sizeof(mapped)) == 0) {
		inet_ntop(AF_INET, a + 12, out, MSG_IP_MAX);
	} else {
		inet_ntop(family, addr, out, MSG_IP_MAX);
	}
}

/* v1_word takes the next space-delimited word of `line` into w; false if empty. */
static bool v1_word(struct span *line, struct span *w)
{
	size_t i = 0;

	while (i < line->len && line->p[i] != ' ') {
		i++;
	}
	if (i == 0) {
		return false;
	}
	*w = span_make(line->p, i);
	line->p += i;
	line->len -= i;
	if (line->len > 0) { /* exactly one separating space */
		line->p++;
		line->len--;
	}
	return true;
}

static bool v1_port(struct span w, uint16_t *out)
{
	uint32_t v = 0;

	/* Spec §2.1: decimal, 0..65535, no leading zero (except "0" itself). */
	if (w.len == 0 || w.len > 5 || (w.len > 1 && w.p[0] == '0')) {
		return false;
	}
	for (size_t i = 0; i < w.len; i++) {
		if (w.p[i] < '0' || w.p[i] > '9') {
			return false;
		}
		v = v * 10 + (uint32_t)(w.p[i] - '0');
	}
	if (v > 65535) {
		return false;
	}
	*out = (uint16_t)v;
	return true;
}

static bool v1_addr(struct span w, int family, char out[MSG_IP_MAX])
{
	char tmp[MSG_IP_MAX];
	uint8_t bin[16];

	if (w.len == 0 || w.len >= sizeof(tmp)) {
		return false;
	}
	memcpy(tmp, w.p, w.len);
	tmp[w.len] = '\0';
	if (inet_pton(family, tmp, bin) != 1) {
		return false;
	}
	ip_text(out, family, bin);
	return true;
}

static enum proxy_parse parse_v1(struct proxy_hdr *out, size_t *out_consumed, struct span in)
{
	size_t n = in.len < PROXY_V1_MAX ? in.len : PROXY_V1_MAX;
	const uint8_t *lf = memchr(in.p, '\n', n);
	struct span line, proto, w;
	size_t len;

	if (lf == NULL) {
		/* No CR or LF may appear before the end; a NUL never. */
		for (size_t i = 0; i < n; i++) {
			if (in.p[i] == '\r' && i + 1 < n) {
				return PROXY_PARSE_SYNTAX;
			}
			if (in.p[i] == '\0') {
				return PROXY_PARSE_SYNTAX;
			}
		}
		return in.len >= PROXY_V1_MAX ? PROXY_PARSE_TOO_LONG : PROXY_PARSE_MORE;
	}
	len = (size_t)(lf - in.p) + 1;
	if (len < 2 || in.p[len - 2] != '\r') {
		return PROXY_PARSE_SYNTAX;
	}
	line = span_make(in.p + 6, len - 8); /* after "PROXY ", before CRLF */
	for (size_t i = 0; i < line.len; i++) {
		if (line.p[i] == '\r' || line.p[i] == '\0') {
			return PROXY_PARSE_SYNTAX;
		}
	}
	memset(out, 0, sizeof(*out));
	out->version = 1;
	if (!v1_word(&line, &proto)) {
		return PROXY_PARSE_SYNTAX;
	}
	if (span_eq(proto, SPAN_LIT("UNKNOWN"))) {
		/* Spec: the receiver must ignore whatever follows UNKNOWN. */
		out->local = true;
		out->family = AF_UNSPEC;
		*out_consumed = len;
		return PROXY_PARSE_OK;
	}
	if (span_eq(proto, SPAN_LIT("TCP4"))) {
		out->family = AF_INET;
	} else if (span_eq(proto, SPAN_LIT("TCP6"))) {
		out->family = AF_INET6;
	} else {
		return PROXY_PARSE_SYNTAX;
	}
	if (!v1_word(&line, &w) || !v1_addr(w, out->family, out->src_ip) || !v1_word(&line, &w) ||
	    !v1_addr(w, out->family, out->dst_ip) || !v1_word(&line, &w) || !v1_port(w, &out->src_port) ||
	    !v1_word(&line, &w) || !v1_port(w, &out->dst_port) || line.len != 0 || line.p[-1] == ' ') {
		return PROXY_PARSE_SYNTAX;
	}
	*out_consumed = len;
	return PROXY_PARSE_OK;
}

/* v2_tlvs checks that the TLVs after the addresses tile their space exactly. */
static bool v2_tlvs(const uint8_t *p, size_t len)
{
	while (len > 0) {
		size_t l;

		if (len < 3) {
			return false;
		}
		l = ((size_t)p[1] << 8) | p[2];
		if (l > len - 3) {
			return false;
		}
		p += 3 + l;
		len -= 3 + l;
	}
	return true;
}

static enum proxy_parse parse_v2(struct proxy_hdr *out, size_t *out_consumed, struct span in)
{
	const uint8_t *p = in.p;
	size_t body, total, alen;
	uint8_t cmd, fam, proto;

	if (in.len < PROXY_V2_FIXED) {
		return PROXY_PARSE_MORE;
	}
	if ((p[12] >> 4) != 2) {
		return PROXY_PARSE_SYNTAX; /* version 2 is the only binary one */
	}
	cmd = p[12] & 0x0f;
	fam = p[13] >> 4;
	proto = p[13] & 0x0f;
	body = ((size_t)p[14] << 8) | p[15];
	total = PROXY_V2_FIXED + body;
	if (cmd > 1) {
		return PROXY_PARSE_SYNTAX;
	}
	if (total > PROXY_HDR_MAX) {
		return PROXY_PARSE_TOO_LONG;
	}
	if (in.len < total) {
		return PROXY_PARSE_MORE;
	}
	memset(out, 0, sizeof(*out));
	out->version = 2;
	*out_consumed = total;
	if (cmd == 0) {
		/* LOCAL: the balancer's own connection (health check); the
		 * address block, if any, is ignored (spec §2.2). */
		out->local = true;
		out->family = AF_UNSPEC;
		return PROXY_PARSE_OK;
	}
	if (fam == 1 && proto == 1) {
		alen = 12;
		if (body < alen) {
			return PROXY_PARSE_SYNTAX;
		}
		out->family = AF_INET;
		ip_text(out->src_ip, AF_INET, p + 16);
		ip_text(out->dst_ip, AF_INET, p + 20);
		out->src_port = (uint16_t)((p[24] << 8) | p[25]);
		out->dst_port = (uint16_t)((p[26] << 8) | p[27]);
	} else if (fam == 2 && proto == 1) {
		alen = 36;
		if (body < alen) {
			return PROXY_PARSE_SYNTAX;
		}
		out->family = AF_INET6;
		ip_text(out->src_ip, AF_INET6, p + 16);
		ip_text(out->dst_ip, AF_INET6, p + 32);
		out->src_port = (uint16_t)((p[48] << 8) | p[49]);
		out->dst_port = (uint16_t)((p[50] << 8) | p[51]);
	} else if (fam == 0) {
		/* UNSPEC with PROXY: the sender does not know the client. */
		out->local = true;
		out->family = AF_UNSPEC;
		return PROXY_PARSE_OK;
	} else {
		return PROXY_PARSE_SYNTAX; /* UNIX sockets and UDP name no SMTP client */
	}
	if (!v2_tlvs(p + PROXY_V2_FIXED + alen, body - alen)) {
		return PROXY_PARSE_SYNTAX;
	}
	return PROXY_PARSE_OK;
}

enum proxy_parse proxy_parse(struct proxy_hdr *out, size_t *out_consumed, struct span in)
{
	*out_consumed = 0;
	if (in.len == 0) {
		return PROXY_PARSE_MORE;
	}
	if (prefix_of(in.p, in.len, v2_sig, sizeof(v2_sig))) {
		return in.len < sizeof(v2_sig) ? PROXY_PARSE_MORE : parse_v2(out, out_consumed, in);
	}
	if (prefix_of(in.p, in.len, (const uint8_t *)v1_sig, sizeof(v1_sig) - 1)) {
		return in.len < sizeof(v1_sig) - 1 ? PROXY_PARSE_MORE : parse_v1(out, out_consumed, in);
	}
	return PROXY_PARSE_SYNTAX;
}

const char *proxy_parse_name(enum proxy_parse rc)
{
	static const char *const names[PROXY_PARSE_COUNT] = {
		[PROXY_PARSE_OK] = "ok",
		[PROXY_PARSE_MORE] = "incomplete",
		[PROXY_PARSE_SYNTAX] = "not a valid PROXY header",
		[PROXY_PARSE_TOO_LONG] = "PROXY header too long",
	};

	return (unsigned)rc < PROXY_PARSE_COUNT ? names[rc] : "?";
}
