/*
 * proxy.h - the PROXY protocol header (HAProxy's specification, versions 1
 * and 2) that a load balancer sends before the client's bytes, naming the
 * client it accepted. Pure: no I/O, no allocation; the caller collects the
 * first bytes of a connection and asks whether they hold a whole header.
 *
 *   v1 (text):   "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" or
 *                "PROXY UNKNOWN[ anything]\r\n", at most 107 octets.
 *   v2 (binary): the 12-octet signature, ver/cmd, family/transport, a
 *                16-bit length, then the addresses and TLVs (skipped, but
 *                their framing is checked so a bad one is refused).
 *
 * LOCAL (v2) and UNKNOWN (v1) mean "no client to report" (health checks
 * from the balancer itself): the caller keeps the socket's peer address.
 * Only TCP over IPv4/IPv6 names a client; UNIX and UDP are refused.
 */
#ifndef OMX_PROXY_H
#define OMX_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"
#include "msg.h"

#define PROXY_V1_MAX 107  /* spec §2.1: the longest v1 line, CRLF included */
#define PROXY_V2_FIXED 16 /* signature 12 + ver/cmd + fam + len 2 */
#define PROXY_HDR_MAX 4096 /* our bound on a v2 header with its TLVs (spec allows 64 KiB) */

enum proxy_parse {
	PROXY_PARSE_OK = 0,   /* a whole header: *out filled, *out_consumed octets used */
	PROXY_PARSE_MORE,     /* a valid prefix: read more (up to PROXY_HDR_MAX) */
	PROXY_PARSE_SYNTAX,   /* not a PROXY header, or a malformed one */
	PROXY_PARSE_TOO_LONG, /* longer than we accept */
	PROXY_PARSE_COUNT     /* sentinel */
};

struct proxy_hdr {
	uint8_t version;            /* 1 or 2 */
	bool local;                 /* LOCAL / UNKNOWN: no client named; keep the peer */
	int family;                 /* AF_INET or AF_INET6 when !local, else AF_UNSPEC */
	char src_ip[MSG_IP_MAX];    /* the client, textual (IPv4-mapped shown as IPv4) */
	char dst_ip[MSG_IP_MAX];    /* the address the client connected to */
	uint16_t src_port, dst_port;
};

/*
 * proxy_parse looks at the first octets of a connection (`in`, borrowed).
 * PROXY_PARSE_OK fills *out and sets *out_consumed to the header's length
 * (the client's own bytes follow it). PROXY_PARSE_MORE means `in` is a
 * valid prefix of a header; any other value is final. Never reads past
 * in.len; never looks at more than PROXY_HDR_MAX octets.
 */
enum proxy_parse proxy_parse(struct proxy_hdr *out, size_t *out_consumed, struct span in)
	__attribute__((warn_unused_result));

const char *proxy_parse_name(enum proxy_parse rc);

#endif
