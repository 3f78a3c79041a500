/* test_proxy.c - the PROXY protocol header parser (proto/proxy.c), v1 and v2. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/proxy.h"
#include "tests/support/guard.h"

/*
 * parse_all runs proxy_parse on every prefix of `in` (each ending at a
 * guard page): every proper prefix of a header must be MORE, and the whole
 * input must give `want`. Returns the result on the whole input.
 */
static enum proxy_parse parse_all(struct proxy_hdr *out, size_t *consumed, const void *in, size_t len,
				  size_t hdr_len)
{
	for (size_t n = 0; n < len; n++) {
		const uint8_t *g = guard_copy(in, n);
		struct proxy_hdr h;
		size_t c;
		enum proxy_parse rc = proxy_parse(&h, &c, span_make(g, n));

		if (n < hdr_len) {
			cr_assert_eq(rc, PROXY_PARSE_MORE, "prefix of %zu octets: %s", n, proxy_parse_name(rc));
		}
		guard_release(g, n);
	}
	{
		const uint8_t *g = guard_copy(in, len);
		enum proxy_parse rc = proxy_parse(out, consumed, span_make(g, len));

		guard_release(g, len);
		return rc;
	}
}

Test(proxy, v1_tcp4_with_client_bytes_after)
{
	static const char in[] = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\nEHLO x\r\n";
	struct proxy_hdr h;
	size_t c;

	cr_assert_eq(parse_all(&h, &c, in, sizeof(in) - 1, 44), PROXY_PARSE_OK);
	cr_assert_eq(c, 44);
	cr_assert_eq(h.version, 1);
	cr_assert_not(h.local);
	cr_assert_eq(h.family, AF_INET);
	cr_assert_str_eq(h.src_ip, "192.0.2.7");
	cr_assert_str_eq(h.dst_ip, "198.51.100.1");
	cr_assert_eq(h.src_port, 56324);
	cr_assert_eq(h.dst_port, 25);
}

Test(proxy, v1_tcp6_and_mapped)
{
	static const char in[] = "PROXY TCP6 2001:db8::1 ::ffff:198.51.100.1 65535 0\r\n";
	struct proxy_hdr h;
	size_t c;

	cr_assert_eq(parse_all(&h, &c, in, sizeof(in) - 1, sizeof(in) - 1), PROXY_PARSE_OK);
	cr_assert_eq(h.family, AF_INET6);
	cr_assert_str_eq(h.src_ip, "2001:db8::1");
	cr_assert_str_eq(h.dst_ip, "198.51.100.1");
	cr_assert_eq(h.src_port, 65535);
	cr_assert_eq(h.dst_port, 0);
}

Test(proxy, v1_unknown_is_local)
{
	static const char in[] = "PROXY UNKNOWN ffff::1 whatever\r\nX";
	struct proxy_hdr h;
	size_t c;

	cr_assert_eq(parse_all(&h, &c, in, sizeof(in) - 1, sizeof(in) - 2), PROXY_PARSE_OK);
	cr_assert(h.local);
	cr_assert_eq(c, sizeof(in) - 2);
	cr_assert_eq(proxy_parse(&h, &c, SPAN_LIT("PROXY UNKNOWN\r\n")), PROXY_PARSE_OK);
	cr_assert(h.local);
}

Test(proxy, v1_malformed)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\n",         /* LF without CR */
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",          /* a field missing */
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25 9\r\n",     /* one too many */
		"PROXY TCP4 192.0.2.7  198.51.100.1 56324 25\r\n",      /* two spaces */
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25 \r\n",      /* trailing space */
		"PROXY TCP4 192.0.2.7 198.51.100.1 065535 25\r\n",      /* leading zero */
		"PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",       /* port too big */
		"PROXY TCP4 192.0.2.7 198.51.100.1 -1 25\r\n",          /* not a number */
		"PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n",         /* family mismatch */
		"PROXY TCP6 192.0.2.7 198.51.100.1 1 25\r\n",           /* family mismatch */
		"PROXY UDP4 192.0.2.7 198.51.100.1 1 25\r\n",           /* not TCP */
		"PROXY \r\n",                                           /* nothing */
		"PROXY TCP4 192.0.2.7\r198.51.100.1 1 25\r\n",          /* CR inside */
		"proxy TCP4 192.0.2.7 198.51.100.1 1 25\r\n",           /* case matters */
		"EHLO client.example\r\n",                               /* a plain client */
		"GET / HTTP/1.0\r\n",
	};
	struct proxy_hdr h;
	size_t c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(proxy_parse(&h, &c, span_make((const uint8_t *)bad[i], strlen(bad[i]))), PROXY_PARSE_SYNTAX,
			     "accepted: %s", bad[i]);
	}
	/* A NUL inside a line that has not ended yet is refused at once. */
	cr_assert_eq(proxy_parse(&h, &c, span_make((const uint8_t *)"PROXY TC\0P4", 11)), PROXY_PARSE_SYNTAX);
}

Test(proxy, v1_too_long)
{
	char in[200];

	memset(in, '1', sizeof(in));
	memcpy(in, "PROXY TCP4 ", 11);
	cr_assert_eq(proxy_parse(&(struct proxy_hdr){ 0 }, &(size_t){ 0 }, span_make((uint8_t *)in, PROXY_V1_MAX - 1)),
		     PROXY_PARSE_MORE);
	cr_assert_eq(proxy_parse(&(struct proxy_hdr){ 0 }, &(size_t){ 0 }, span_make((uint8_t *)in, sizeof(in))),
		     PROXY_PARSE_TOO_LONG);
}

/* v2 builds a v2 header: sig, ver_cmd, fam, then `body` of body_len octets. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t body_len)
{
	static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(body_len >> 8);
	out[15] = (uint8_t)body_len;
	if (body_len > 0) {
		memcpy(out + 16, body, body_len); /* body may be NULL when empty */
	}
	return 16 + body_len;
}

Test(proxy, v2_inet_with_tlvs)
{
	const uint8_t body[] = { 192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0, 25,
				 /* TLVs: ALPN "h2", a vendor TLV of 0 octets */
				 0x01, 0, 2, 'h', '2', 0xEA, 0, 0 };
	uint8_t in[64];
	size_t n = v2(in, 0x21, 0x11, body, sizeof(body)), c;
	struct proxy_hdr h;

	in[n] = 'E';
	cr_assert_eq(parse_all(&h, &c, in, n + 1, n), PROXY_PARSE_OK);
	cr_assert_eq(c, n);
	cr_assert_eq(h.version, 2);
	cr_assert_not(h.local);
	cr_assert_str_eq(h.src_ip, "192.0.2.7");
	cr_assert_str_eq(h.dst_ip, "198.51.100.1");
	cr_assert_eq(h.src_port, 56324);
	cr_assert_eq(h.dst_port, 25);
}

Test(proxy, v2_inet6_mapped_shown_as_ipv4)
{
	uint8_t body[36] = { 0 }, in[64];
	struct proxy_hdr h;
	size_t n, c;

	body[10] = 0xff;
	body[11] = 0xff;
	body[12] = 127;
	body[15] = 3;
	body[16] = 0x20;
	body[17] = 0x01;
	body[18] = 0x0d;
	body[19] = 0xb8;
	body[31] = 1;
	body[33] = 80;
	body[35] = 25;
	n = v2(in, 0x21, 0x21, body, sizeof(body));
	cr_assert_eq(parse_all(&h, &c, in, n, n), PROXY_PARSE_OK);
	cr_assert_eq(h.family, AF_INET6);
	cr_assert_str_eq(h.src_ip, "127.0.0.3");
	cr_assert_str_eq(h.dst_ip, "2001:db8::1");
	cr_assert_eq(h.src_port, 80);
}

Test(proxy, v2_local_and_unspec)
{
	uint8_t in[64];
	struct proxy_hdr h;
	size_t n, c;
	const uint8_t junk[] = { 1, 2, 3 };

	n = v2(in, 0x20, 0x00, NULL, 0);
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_OK);
	cr_assert(h.local);
	cr_assert_eq(c, 16);
	n = v2(in, 0x20, 0x11, junk, sizeof(junk)); /* LOCAL ignores the address block */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_OK);
	cr_assert(h.local);
	cr_assert_eq(c, 19);
	n = v2(in, 0x21, 0x00, NULL, 0);
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_OK);
	cr_assert(h.local);
}

Test(proxy, v2_malformed)
{
	uint8_t body[300] = { 0 }, in[400];
	struct proxy_hdr h;
	size_t n, c;

	n = v2(in, 0x11, 0x11, body, 12); /* version 1 in the binary form */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	n = v2(in, 0x22, 0x11, body, 12); /* command 2 */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	n = v2(in, 0x21, 0x11, body, 11); /* address block cut */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	n = v2(in, 0x21, 0x21, body, 35);
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	n = v2(in, 0x21, 0x31, body, 216); /* AF_UNIX */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	n = v2(in, 0x21, 0x12, body, 12); /* UDP */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	body[12] = 0x01; /* a TLV whose length runs past the header */
	body[13] = 0;
	body[14] = 9;
	n = v2(in, 0x21, 0x11, body, 20);
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	n = v2(in, 0x21, 0x11, body, 14); /* a TLV header cut */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, n)), PROXY_PARSE_SYNTAX);
	/* Longer than we accept: refused from the fixed part, before the rest arrives. */
	n = v2(in, 0x21, 0x11, body, 12);
	in[14] = 0x10;
	in[15] = 0x00;
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, 16)), PROXY_PARSE_TOO_LONG);
	/* The signature's prefix is MORE; a wrong octet is SYNTAX. */
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, 5)), PROXY_PARSE_MORE);
	in[4] = 1;
	cr_assert_eq(proxy_parse(&h, &c, span_make(in, 5)), PROXY_PARSE_SYNTAX);
}
