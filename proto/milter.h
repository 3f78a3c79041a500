/*
 * milter.h - the Sendmail milter protocol, version 6, as the MTA speaks it:
 * a pure packet writer for our commands and a bounded reader of the
 * milter's packets and replies. No I/O, no globals, no allocation beyond
 * the caller's byte builder: core/milter_client.c does the sockets.
 *
 * Wire format (libmilter's docs, Postfix MILTER_README): every packet is
 *   u32 length (big-endian, counts the command byte and the data)
 *   u8  command
 *   data, length - 1 bytes
 * Strings in data are NUL-terminated. Commands we send are SMFIC_*,
 * replies we read are SMFIR_* (the letters below).
 *
 * What oceanmx offers at negotiation (MILTER_OFFER_ACTIONS): add header
 * (SMFIF_ADDHDRS), change header (SMFIF_CHGHDRS, honoured only for a field
 * the message does not have, which libmilter defines as an add; see
 * core/milter_client.h), quarantine (SMFIF_QUARANTINE), and, only so that
 * negotiation succeeds, body replacement (SMFIF_CHGBODY), recipient
 * add/delete (SMFIF_ADDRCPT, SMFIF_DELRCPT, SMFIF_ADDRCPT_PAR) and sender
 * change (SMFIF_CHGFROM): libmilter ends the connection when the MTA does
 * not offer every action a milter registered, and common milters register
 * them whether or not their options use them (spamass-milter asks for
 * body and recipient changes even with -m and without -b). Such a reply
 * (MILTER_A_REFUSED) is never applied: the message is stored as received,
 * and the log line counts it (refused=N).
 */
#ifndef OMX_MILTER_H
#define OMX_MILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/bb.h"
#include "../core/span.h"

#define MILTER_VERSION    6u
#define MILTER_PKT_MAX    (1u << 20) /* a packet's length field we accept; libmilter's own cap is 2^18 for replies */
#define MILTER_CHUNK_MAX  65535u     /* SMFIC_BODY data bytes (libmilter MILTER_CHUNK_SIZE) */
#define MILTER_TEXT_MAX   512u       /* a reply text or quarantine reason we keep */
/* The field oceanmx writes on top of a message a milter quarantined (SMFIR_QUARANTINE); docs/json.md "milter". */
#define MILTER_QUARANTINE_FIELD "X-Milter-Quarantine"

/* Commands, MTA to milter (libmilter mfdef.h letters). */
#define SMFIC_ABORT   'A' /* abort the current transaction */
#define SMFIC_BODY    'B' /* a body chunk */
#define SMFIC_CONNECT 'C' /* hostname\0 family port(u16) address\0 */
#define SMFIC_MACRO   'D' /* for-command, then name\0value\0 pairs */
#define SMFIC_BODYEOB 'E' /* end of body */
#define SMFIC_HELO    'H' /* helo\0 */
#define SMFIC_HEADER  'L' /* name\0value\0 */
#define SMFIC_MAIL    'M' /* <addr>\0 args\0... */
#define SMFIC_EOH     'N' /* end of header */
#define SMFIC_OPTNEG  'O' /* u32 version, u32 actions, u32 protocol */
#define SMFIC_QUIT    'Q' /* close */
#define SMFIC_RCPT    'R' /* <addr>\0 args\0... */
#define SMFIC_DATA    'T' /* DATA (protocol v4+) */

/* Replies, milter to MTA. */
#define SMFIR_ADDRCPT    '+'
#define SMFIR_DELRCPT    '-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN   '4'
#define SMFIR_ACCEPT     'a'
#define SMFIR_REPLBODY   'b'
#define SMFIR_CONTINUE   'c'
#define SMFIR_DISCARD    'd'
#define SMFIR_CHGFROM    'e'
#define SMFIR_CONN_FAIL  'f'
#define SMFIR_ADDHEADER  'h'
#define SMFIR_INSHEADER  'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER  'm'
#define SMFIR_PROGRESS   'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT     'r'
#define SMFIR_SKIP       's'
#define SMFIR_TEMPFAIL   't'
#define SMFIR_REPLYCODE  'y'

/* Action flags (what the milter may do), in SMFIC_OPTNEG. */
#define SMFIF_ADDHDRS     0x001u
#define SMFIF_CHGBODY     0x002u
#define SMFIF_ADDRCPT     0x004u
#define SMFIF_DELRCPT     0x008u
#define SMFIF_CHGHDRS     0x010u
#define SMFIF_QUARANTINE  0x020u
#define SMFIF_CHGFROM     0x040u
#define SMFIF_ADDRCPT_PAR 0x080u
#define SMFIF_SETSYMLIST  0x100u

/* Protocol flags (steps the milter does not want, or answers no reply to). */
#define SMFIP_NOCONNECT   0x000001u
#define SMFIP_NOHELO      0x000002u
#define SMFIP_NOMAIL      0x000004u
#define SMFIP_NORCPT      0x000008u
#define SMFIP_NOBODY      0x000010u
#define SMFIP_NOHDRS      0x000020u
#define SMFIP_NOEOH       0x000040u
#define SMFIP_NR_HDR      0x000080u
#define SMFIP_NOUNKNOWN   0x000100u
#define SMFIP_NODATA      0x000200u
#define SMFIP_SKIP        0x000400u
#define SMFIP_RCPT_REJ    0x000800u
#define SMFIP_NR_CONN     0x001000u
#define SMFIP_NR_HELO     0x002000u
#define SMFIP_NR_MAIL     0x004000u
#define SMFIP_NR_RCPT     0x008000u
#define SMFIP_NR_DATA     0x010000u
#define SMFIP_NR_UNKN     0x020000u
#define SMFIP_NR_EOH      0x040000u
#define SMFIP_NR_BODY     0x080000u
#define SMFIP_HDR_LEADSPC 0x100000u

#define MILTER_OFFER_ACTIONS                                                                                   \
	(SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT |      \
	 SMFIF_ADDRCPT_PAR | SMFIF_CHGFROM)
/* Every skip and no-reply flag we can honour; not RCPT_REJ (we answer at end of data) nor HDR_LEADSPC. */
#define MILTER_OFFER_PROTO                                                                                     \
	(SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS |           \
	 SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP | SMFIP_NR_CONN |             \
	 SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH |         \
	 SMFIP_NR_BODY)

/* milter_rc: what the readers return. */
enum milter_rc {
	MILTER_OK = 0,    /* a packet or reply was read */
	MILTER_MORE,      /* the packet is not complete yet */
	MILTER_TOO_LONG,  /* length field above MILTER_PKT_MAX */
	MILTER_SYNTAX,    /* malformed: zero length, bad fields, unknown reply */
	MILTER_RC_COUNT   /* sentinel */
};

const char *milter_rc_name(enum milter_rc rc);

/* A packet as read: data borrows the input. */
struct milter_pkt {
	uint8_t cmd;
	struct span data;
};

/*
 * milter_pkt_next reads one packet from the front of `in` (not moved).
 * MILTER_OK: *out filled, *out_consumed is its whole size. MILTER_MORE:
 * wait for more bytes. MILTER_TOO_LONG / MILTER_SYNTAX: the stream is
 * unusable. The data span borrows `in`.
 */
__attribute__((warn_unused_result)) enum milter_rc milter_pkt_next(struct milter_pkt *out, size_t *out_consumed,
								   struct span in);

/* milter_act: a reply's meaning. */
enum milter_act {
	MILTER_A_CONTINUE = 0, /* SMFIR_CONTINUE: go on */
	MILTER_A_ACCEPT,       /* SMFIR_ACCEPT: accept, nothing more to this milter for the message */
	MILTER_A_REJECT,       /* SMFIR_REJECT: 5xx */
	MILTER_A_TEMPFAIL,     /* SMFIR_TEMPFAIL: 4xx */
	MILTER_A_DISCARD,      /* SMFIR_DISCARD: accept and drop */
	MILTER_A_REPLYCODE,    /* SMFIR_REPLYCODE: code (4xx or 5xx) and text */
	MILTER_A_ADDHEADER,    /* SMFIR_ADDHEADER: name, value */
	MILTER_A_INSHEADER,    /* SMFIR_INSHEADER: index, name, value */
	MILTER_A_CHGHEADER,    /* SMFIR_CHGHEADER: index (1-based), name, value ("" deletes) */
	MILTER_A_QUARANTINE,   /* SMFIR_QUARANTINE: reason */
	MILTER_A_PROGRESS,     /* SMFIR_PROGRESS: still working, restart the timer */
	MILTER_A_SKIP,         /* SMFIR_SKIP: send no more body */
	MILTER_A_OPTNEG,       /* SMFIC_OPTNEG answer: version, actions, protocol */
	MILTER_A_SETSYMLIST,   /* SMFIR_SETSYMLIST: ignored (we send a fixed macro set) */
	MILTER_A_REFUSED,      /* a modification we never apply (body, recipients, sender) */
	MILTER_A_SHUTDOWN,     /* SMFIR_SHUTDOWN, SMFIR_CONN_FAIL: the milter gives up */
	MILTER_A_COUNT         /* sentinel */
};

const char *milter_act_name(enum milter_act a);

struct milter_reply {
	enum milter_act act;
	uint8_t cmd;             /* the reply letter */
	uint32_t index;          /* INSHEADER / CHGHEADER */
	struct span name;        /* header name: printable ASCII but ':', 1..MILTER_TEXT_MAX bytes */
	struct span value;       /* header value: no NUL; CR/LF only as folding (checked by the caller) */
	unsigned code;           /* REPLYCODE: 400..599; REJECT 550, TEMPFAIL 451 */
	struct span text;        /* REPLYCODE text after the code and any enhanced status; QUARANTINE reason */
	uint32_t version, actions, protocol; /* OPTNEG */
};

/*
 * milter_reply_parse reads the meaning of packet `pkt` into *out (spans
 * borrow pkt's data). MILTER_OK or MILTER_SYNTAX (unknown letter, missing
 * NUL, a code outside 4xx/5xx, an empty header name, ...).
 */
__attribute__((warn_unused_result)) enum milter_rc milter_reply_parse(struct milter_reply *out,
								      const struct milter_pkt *pkt);

/*
 * Writers: each appends one whole packet to `out`. Strings are C strings
 * (no NUL inside by construction) or spans (a NUL inside would cut the
 * field short at the milter: the caller's envelope and headers hold none).
 * 0, -ENOMEM, or -E2BIG (the packet would pass MILTER_PKT_MAX, or a body
 * chunk passes MILTER_CHUNK_MAX).
 */
__attribute__((warn_unused_result)) int milter_put_optneg(struct bb *out, uint32_t version, uint32_t actions,
							  uint32_t protocol);
/* milter_put_cmd: a command without data (SMFIC_DATA, EOH, BODYEOB, ABORT, QUIT). */
__attribute__((warn_unused_result)) int milter_put_cmd(struct bb *out, uint8_t cmd);
/* milter_put_strs: command `cmd` with `num` NUL-terminated strings (HELO, MAIL, RCPT, HEADER). */
__attribute__((warn_unused_result)) int milter_put_strs(struct bb *out, uint8_t cmd, const struct span *strs,
							size_t num);
/* milter_put_macros: SMFIC_MACRO for command `for_cmd`, pairs[2i] = name, pairs[2i+1] = value. */
__attribute__((warn_unused_result)) int milter_put_macros(struct bb *out, uint8_t for_cmd, const char *const *pairs,
							  size_t num_pairs);
/* milter_put_connect: SMFIC_CONNECT; family '4', '6' or 'U' (unknown: no port, no address). */
__attribute__((warn_unused_result)) int milter_put_connect(struct bb *out, const char *hostname, char family,
							   uint16_t port, const char *addr);
/* milter_put_body: SMFIC_BODY with chunk (at most MILTER_CHUNK_MAX bytes). */
__attribute__((warn_unused_result)) int milter_put_body(struct bb *out, struct span chunk);


/*
 * milter_field_write appends "name: value\r\n" for a header field a milter
 * added: line breaks (LF or CRLF, as milters fold) become CRLF followed by
 * white space (a TAB is inserted where the milter gave none), so the value
 * can not start a field or end the header; other control bytes but TAB
 * become '?'; trailing breaks are dropped. The name is one
 * milter_reply_parse checked. 0 or -ENOMEM (out unchanged).
 */
__attribute__((warn_unused_result)) int milter_field_write(struct bb *out, struct span name, struct span value);

#endif
