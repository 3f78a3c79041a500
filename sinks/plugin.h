/*
 * plugin.h - the C plugin interface of oceanmx (the "plugin:PATH.so[?ARGS]"
 * sink): your code, called for every accepted message with its envelope,
 * its authentication verdicts and the parsed message. The heir of
 * OceanMail's onMailDroppedOff hook. Installed as <oceanmx/sinks/plugin.h>.
 *
 * A plugin is a shared object that defines one symbol:
 *
 *     #include <oceanmx/sinks/plugin.h>
 *
 *     static int my_init(const char *args, void **out_state, char *err, size_t err_len) { ... }
 *     static enum omx_plugin_rc my_deliver(void *state, const struct omx_plugin_message *m,
 *                                          char *why, size_t why_len) { ... }
 *     static void my_fini(void *state) { ... }
 *
 *     const struct omx_plugin omx_plugin = {
 *         .abi = OMX_PLUGIN_ABI_VERSION, .name = "mine",
 *         .init = my_init, .deliver = my_deliver, .fini = my_fini,
 *     };
 *
 * built with `cc -shared -fPIC -I/usr/local/include mine.c -o mine.so` and
 * loaded with `--sink plugin:/path/mine.so?ARGS`. It is loaded at start-up
 * (and by check-config); a file that cannot be loaded, lacks the symbol or
 * was built for another OMX_PLUGIN_ABI_VERSION is a configuration error.
 *
 * Life cycle and threads:
 *   init(args)     once per delivery worker thread (one per shard), at
 *                  start-up; args is the text after '?' ("" if none). A
 *                  failure (non-zero, with a message in err) stops the
 *                  start-up. Each worker has its own state.
 *   deliver(state, message)   per message, on that worker's thread; calls on
 *                  one state never overlap, calls on different states run
 *                  in parallel. It may block (the worker waits; SMTP goes on).
 *   fini(state)    at shut-down, on the worker's thread.
 *
 * deliver returns:
 *   OMX_PLUGIN_OK        the message is yours, durably: it leaves the spool
 *                        once every sink has it
 *   OMX_PLUGIN_TEMPFAIL  try again later (backoff, the same message and id)
 *   OMX_PLUGIN_PERMFAIL  never: the message goes to SPOOL/failed/
 * with a reason in `why` (NUL-terminated, at most why_len bytes) for the
 * two failures. A TEMPFAIL whose reason ends with "retry_after=<N>s" is
 * not tried again for at least N seconds (at most a day). Delivery is at least once: after a TEMPFAIL of another
 * sink, or a crash, the same message comes again with the same
 * envelope->id; use it as an idempotency key.
 *
 * Everything the message view points to is borrowed for the duration of
 * the deliver call only; copy what you keep. The message functions of
 * <oceanmx/proto/message.h> (message_subject, message_addrs, message_text,
 * message_attachment, message_part_sha256, ...) are provided by the oceanmx
 * binary; use them on msg->doc, read-only (never message_feed/end/free).
 * The plugin runs inside the server: a crash in it is a crash of oceanmx.
 */
#ifndef OMX_PLUGIN_H
#define OMX_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/message.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this header or of proto/message.h. */
#define OMX_PLUGIN_ABI_VERSION 1u
/* The name of the one symbol a plugin defines. */
#define OMX_PLUGIN_SYMBOL "omx_plugin"

enum omx_plugin_rc {
	OMX_PLUGIN_OK = 0,   /* delivered, durably */
	OMX_PLUGIN_TEMPFAIL, /* retry later */
	OMX_PLUGIN_PERMFAIL, /* dead letter: SPOOL/failed/ */
	OMX_PLUGIN_RC_COUNT  /* sentinel */
};

/* The SMTP envelope. Strings are NUL-terminated, never NULL unless said. */
struct omx_plugin_envelope {
	const char *id;              /* queue id from the 250 reply; stable across redeliveries */
	int64_t received_us;         /* when it was accepted, microseconds since the epoch */
	const char *client_ip;       /* textual, no brackets */
	uint16_t client_port;
	const char *helo;            /* HELO/EHLO argument; NULL if none */
	bool esmtp;                  /* EHLO (true) or HELO */
	const char *mail_from;       /* reverse path without <>; "" for the null sender */
	const char *const *rcpts;    /* forward paths without <>, in RCPT order */
	size_t num_rcpts;
	const char *body;            /* "7BIT", "8BITMIME" or "BINARYMIME" (BODY=) */
	bool smtputf8;               /* MAIL FROM ... SMTPUTF8 */
	uint64_t size;               /* bytes of the message as spooled (our Received: field + the client's) */
};

/* One DKIM signature's verdict (RFC 8601 §2.7.1). NULL: not reported. */
struct omx_plugin_dkim {
	const char *result;          /* "pass", "fail", "neutral", "policy", "temperror", "permerror" */
	const char *domain;          /* header.d */
	const char *selector;        /* header.s */
	const char *algorithm;       /* header.a */
	const char *identity;        /* header.i */
	const char *reason;
};

/*
 * The verdicts of the server's own Authentication-Results field, the same
 * as the "auth" section of the JSON document (docs/json.md). Results are
 * RFC 8601 result names; "none" when a method did not report.
 */
struct omx_plugin_auth {
	const struct omx_plugin_dkim *dkim; /* one per signature checked */
	size_t num_dkim;
	const char *spf;             /* the MAIL FROM identity (RFC 7208) */
	const char *spf_helo;        /* the HELO identity */
	const char *dmarc;           /* RFC 7489 */
	const char *dmarc_policy;    /* policy.dmarc: the policy applied; NULL if none */
	const char *dmarc_from;      /* header.from: the From: domain; NULL if none */
	const char *arc;             /* RFC 8617 */
	const char *header;          /* our whole Authentication-Results value, unfolded; NULL if none */
};

/* What deliver gets. New fields are only ever added at the end (check struct_size). */
struct omx_plugin_message {
	size_t struct_size;          /* sizeof(struct omx_plugin_message) in the server */
	const struct omx_plugin_envelope *envelope;
	const struct omx_plugin_auth *auth;
	const struct message *doc;   /* the parsed message: proto/message.h */
	const uint8_t *raw;          /* the message as stored: our Authentication-Results and */
	size_t raw_len;              /* Received fields, then the client's bytes (CRLF) */
};

struct omx_plugin {
	uint32_t abi;                /* OMX_PLUGIN_ABI_VERSION, checked at load */
	const char *name;            /* for logs */
	/* init: 0, or non-zero with a message in err (NUL-terminated, at most err_len bytes). */
	int (*init)(const char *args, void **out_state, char *err, size_t err_len);
	enum omx_plugin_rc (*deliver)(void *state, const struct omx_plugin_message *msg, char *why, size_t why_len);
	void (*fini)(void *state);   /* may be NULL */
};

#ifdef __cplusplus
}
#endif

#endif
