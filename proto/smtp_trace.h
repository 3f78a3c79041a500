/*
 * smtp_trace.h - trace header fields added to every stored message.
 */
#ifndef OMX_SMTP_TRACE_H
#define OMX_SMTP_TRACE_H

#include "../core/bb.h"
#include "msg.h"

/*
 * smtp_trace_received appends a complete RFC 5321 §4.4 Received: field,
 * folded and ending in CRLF, built from `env` (helo, client_ip, id,
 * received_us, esmtp, smtputf8, rcpts) and our `hostname`:
 *
 *   Received: from HELO ([IP])
 *           by HOSTNAME (oceanmx) with ESMTP id ID
 *           for <RCPT>;            (only with exactly one recipient)
 *           Thu, 26 Nov 2026 08:30:00 +0000
 *
 * WITH is SMTP (HELO), ESMTP (EHLO) or UTF8SMTP (SMTPUTF8, RFC 6531 §3.7.3),
 * with an S after STARTTLS (ESMTPS, UTF8SMTPS; RFC 3848), then on a line of
 * its own the comment "(version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256)".
 * Returns 0, or -ENOMEM/-E2BIG from the builder.
 */
int smtp_trace_received(struct bb *out, const struct msg_env *env, const char *hostname);

#endif
