/*
 * msg.h - the message envelope, shared by proto (which fills the SMTP
 * parts), core (ids, times, peer) and sinks (which only read it).
 *
 * Strings are NUL-terminated C strings owned by whoever owns the msg_env
 * (the SMTP session while receiving, the spool entry while delivering);
 * proto validates them, so they hold no NUL, CR or LF.
 */
#ifndef OMX_MSG_H
#define OMX_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSG_ID_MAX 32   /* text id, e.g. "19C2A7F0E3D1A4B2-0001" plus NUL */
#define MSG_IP_MAX 48   /* INET6_ADDRSTRLEN + NUL */

/* Body type from MAIL FROM BODY= (RFC 6152, RFC 3030). */
enum msg_body {
	MSG_BODY_7BIT = 0,  /* default when BODY= is absent */
	MSG_BODY_8BITMIME,  /* RFC 6152 */
	MSG_BODY_BINARYMIME, /* RFC 3030; only with BDAT */
	MSG_BODY_COUNT      /* sentinel */
};

/* The TLS session of a connection after STARTTLS (RFC 3207); on == false in clear. */
#define MSG_TLS_SNI_MAX 256 /* RFC 6066 §3: a host name, at most 255 octets, plus NUL */
struct msg_tls {
	bool on;                     /* core: the handshake completed */
	char version[16];            /* core: "TLSv1.2", "TLSv1.3" */
	char cipher[64];             /* core: IANA name, e.g. "TLS_AES_128_GCM_SHA256" */
	char sni[MSG_TLS_SNI_MAX];   /* core: server name the client asked for, "" if none;
	                                only [A-Za-z0-9.-_], anything else became '?' */
};

struct msg_env {
	char id[MSG_ID_MAX];        /* core: unique, stable across redelivery */
	int64_t received_us;        /* core: wall clock, microseconds since epoch */
	char client_ip[MSG_IP_MAX]; /* core: textual peer address, no brackets */
	uint16_t client_port;       /* core */
	char *helo;                 /* proto: HELO/EHLO argument, NULL before it */
	bool esmtp;                 /* proto: EHLO (true) or HELO (false) */
	char *mail_from;            /* proto: reverse path without <>, "" for null sender */
	char **rcpts;               /* proto: forward paths without <> */
	size_t num_rcpts;
	enum msg_body body;         /* proto */
	bool smtputf8;              /* proto: MAIL FROM ... SMTPUTF8 (RFC 6531) */
	uint64_t size;              /* proto: message bytes received (after unstuffing) */
	struct msg_tls tls;         /* core, through smtp_sess_tls_done(); kept for the session */
	char dnsbl_zone[256];       /* core: the first --dnsbl zone listing the client, "" if none */
	char dnsbl_addr[16];        /* core: its answer (127.0.0.x) */
};

const char *msg_body_name(enum msg_body b);

#endif
