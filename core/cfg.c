/*
 * cfg.c - defaults, config file and flags; see cfg.h.
 *
 * One option table drives both the command line and the config file, so a
 * key can never exist in one and not the other. Unknown keys are errors.
 */
#include "cfg.h"
#include "milter_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

enum opt_type {
	OPT_STR = 0,  /* char * replaced */
	OPT_U32,      /* uint32_t */
	OPT_U64,      /* uint64_t, accepts K/M/G suffixes */
	OPT_LISTEN,   /* repeatable ADDR:PORT */
	OPT_LISTEN_PROXY, /* repeatable ADDR:PORT, PROXY protocol */
	OPT_CIDRS,    /* comma-separated address blocks, accumulated */
	OPT_SINK,     /* repeatable sink spec */
	OPT_BARE,     /* reject|normalise */
	OPT_LOGLEVEL, /* err..debug */
	OPT_SYNC,     /* syncfs|fsync */
	OPT_BOOL,     /* on|off */
	OPT_TEMPERR,  /* accept|tempfail */
	OPT_METRICS,  /* ADDR:PORT|none */
	OPT_LOGFMT,   /* text|json */
	OPT_TLSCERT,  /* repeatable PEM file */
	OPT_TLSKEY,   /* repeatable PEM file */
	OPT_FAILMODE, /* open|tempfail */
	OPT_SCORE,    /* a spam score, or off */
	OPT_ACTION,   /* an rspamd action we may enforce, or off */
	OPT_MILTER,   /* repeatable milter address */
	OPT_MILTERDEF, /* accept|tempfail|reject */
	OPT_TYPE_COUNT
};

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;
	uint64_t min, max;
};

#define O(n, t, f, lo, hi) { n, t, offsetof(struct cfg, f), lo, hi }
static const struct opt opts[] = {
	O("listen", OPT_LISTEN, listen, 0, 0),
	O("listen-proxy", OPT_LISTEN_PROXY, listen, 0, 0),
	O("proxy-trusted", OPT_CIDRS, proxy_trusted, 0, 0),
	O("hostname", OPT_STR, hostname, 0, 0),
	O("user", OPT_STR, user, 0, 0),
	O("shards", OPT_U32, shards, 0, 256),
	O("spool", OPT_STR, spool_dir, 0, 0),
	O("sink", OPT_SINK, sinks, 0, 0),
	O("domains", OPT_STR, domains, 0, 0),
	O("sink-retry-first", OPT_U32, sink_retry_first, 1, 86400),
	O("sink-retry-max", OPT_U32, sink_retry_max, 1, 86400),
	O("sink-max-age", OPT_U32, sink_max_age, 1, 365 * 86400),
	O("spool-forward-after", OPT_U32, spool_forward_after, 0, 365 * 86400),
	O("max-message-size", OPT_U64, max_msg_size, 1024, (uint64_t)1 << 40),
	O("max-recipients", OPT_U32, max_rcpts, 1, 100000),
	O("max-connections", OPT_U32, max_conns, 1, 1000000),
	O("max-connections-per-ip", OPT_U32, max_conns_per_ip, 0, 1000000),
	O("max-connection-rate", OPT_U32, max_conn_rate, 0, 1000000),
	O("max-message-rate", OPT_U32, max_msg_rate, 0, 1000000),
	O("max-tls-rate", OPT_U32, max_tls_rate, 0, 1000000),
	O("max-input-rate", OPT_U64, max_input_rate, 0, (uint64_t)1 << 40),
	O("dnsbl", OPT_STR, dnsbl, 0, 0),
	O("dnsbl-reject", OPT_BOOL, dnsbl_reject, 0, 0),
	O("max-bad-commands", OPT_U32, max_bad_cmds, 1, 100000),
	O("max-command-line", OPT_U32, max_cmd_line, 512, 65536),
	O("max-text-line", OPT_U32, max_text_line, 1000, 1u << 30),
	O("timeout-command", OPT_U32, timeout_cmd, 1, 86400),
	O("timeout-data", OPT_U32, timeout_data, 1, 86400),
	O("timeout-commit", OPT_U32, timeout_commit, 1, 86400),
	O("timeout-session", OPT_U32, timeout_session, 0, 604800),
	O("greet-delay", OPT_U32, greet_delay_ms, 0, 60000),
	O("shutdown-timeout", OPT_U32, shutdown_timeout, 0, 3600),
	O("bare-lf", OPT_BARE, bare_lf, 0, 0),
	O("recv-buffers", OPT_U32, recv_buffers, 1, 32768),
	O("recv-buffer-size", OPT_U32, recv_buffer_size, 512, 1u << 20),
	O("log-level", OPT_LOGLEVEL, log_level, 0, 0),
	O("log-format", OPT_LOGFMT, log_format, 0, 0),
	O("metrics", OPT_METRICS, metrics, 0, 0),
	O("spool-sync", OPT_SYNC, spool_sync, 0, 0),
	O("spool-segment-size", OPT_U64, spool_segment_size, 64ull << 10, 1ull << 32),
	O("spool-max-size", OPT_U64, spool_max_size, 1ull << 20, 1ull << 50),
	O("dkim", OPT_BOOL, dkim, 0, 0),
	O("spf", OPT_BOOL, spf, 0, 0),
	O("dmarc", OPT_BOOL, dmarc, 0, 0),
	O("dmarc-enforce", OPT_BOOL, dmarc_enforce, 0, 0),
	O("arc", OPT_BOOL, arc, 0, 0),
	O("psl", OPT_STR, psl, 0, 0),
	O("dkim-temperror", OPT_TEMPERR, dkim_temperror_tempfail, 0, 0),
	O("dkim-max-signatures", OPT_U32, dkim_max_sigs, 1, 64),
	O("verify-workers", OPT_U32, verify_workers, 0, 256),
	O("dns", OPT_STR, dns, 0, 0),
	O("dns-timeout", OPT_U32, dns_timeout_ms, 100, 60000),
	O("dns-cache-size", OPT_U64, dns_cache_size, 64 * 1024, (uint64_t)1 << 34),
	O("tls-cert", OPT_TLSCERT, tls_certs, 0, 0),
	O("tls-key", OPT_TLSKEY, tls_keys, 0, 0),
	O("tls-required", OPT_BOOL, tls_required, 0, 0),
	O("timeout-tls", OPT_U32, timeout_tls, 1, 3600),
	O("rspamd", OPT_STR, rspamd, 0, 0),
	O("rspamd-timeout", OPT_U32, rspamd_timeout_ms, 100, 600000),
	O("rspamd-fail", OPT_FAILMODE, rspamd_fail_tempfail, 0, 0),
	O("spam-reject-score", OPT_SCORE, spam_reject_score, 0, 0),
	O("spam-tempfail-action", OPT_ACTION, spam_tempfail_action, 0, 0),
	O("milter", OPT_MILTER, milters, 0, 0),
	O("milter-timeout", OPT_U32, milter_timeout_ms, 100, 3600000),
	O("milter-connect-timeout", OPT_U32, milter_connect_timeout_ms, 100, 3600000),
	O("milter-default-action", OPT_MILTERDEF, milter_default_action, 0, 0),
};
#undef O

void cfg_usage(FILE *f)
{
	fputs(
"NAME\n"
"    oceanmx - high-throughput inbound SMTP receiver (io_uring)\n"
"\n"
"SYNOPSIS\n"
"    oceanmx                      run with the embedded defaults (below)\n"
"    oceanmx serve [-c FILE] [OPTIONS]\n"
"    oceanmx check-config [-c FILE] [OPTIONS]\n"
"    oceanmx parse [--inline-max BYTES] [FILE|-]   print the JSON document of one message\n"
"    oceanmx verify [--client-ip IP --mail-from ADDR --helo NAME] [--dns ADDR[:PORT]]\n"
"                   [--hostname NAME] [--now UNIXTIME] [FILE|-]\n"
"                                 verify DKIM, ARC, SPF and DMARC of one message\n"
"    oceanmx spool ls|stats [--spool DIR]     the queue: messages, what each\n"
"                                 sink still owes, records per segment\n"
"    oceanmx spool show ID [--spool DIR]      one queued message, as stored\n"
"    oceanmx spool retry ID|delete ID [--spool DIR]\n"
"                                 deliver now / drop (safe while serving)\n"
"    oceanmx --help | --version\n"
"\n"
"DESCRIPTION\n"
"    oceanmx accepts mail over SMTP (RFC 5321) for your domains on one io_uring\n"
"    shard per CPU, writes every message durably to its spool (fsync, group-\n"
"    committed) before answering 250, and then delivers it to each configured\n"
"    sink, at least once. It never relays mail onward.\n"
"\n"
"    With no arguments it listens on 127.0.0.1:2525, accepts mail for any\n"
"    domain, and stores under ./var/ (spool ./var/spool, maildir ./var/maildir).\n"
"\n"
"OPTIONS\n"
"    Every option is also a config-file key: one `key value` per line, '#'\n"
"    starts a comment; flags given on the command line override the file.\n"
"\n"
"    -c, --config FILE          read options from FILE\n"
"    --listen ADDR:PORT         listen address, repeatable; IPv6 as [::1]:25\n"
"                               (default 127.0.0.1:2525)\n"
"    --listen-proxy ADDR:PORT   a listener behind a TCP load balancer (HAProxy\n"
"                               send-proxy / send-proxy-v2, AWS NLB): every\n"
"                               connection must begin with a PROXY protocol v1\n"
"                               or v2 header, whose client address is then used\n"
"                               everywhere (limits, SPF, Received:, logs).\n"
"                               Repeatable; without it, no PROXY header is read\n"
"    --proxy-trusted CIDR,...   who may send PROXY headers; a connection to a\n"
"                               --listen-proxy listener from elsewhere is closed\n"
"                               without a greeting (default 127.0.0.0/8,::1)\n"
"    --hostname NAME            name in the greeting and Received: (default:\n"
"                               the system host name)\n"
"    --user NAME                started as root, oceanmx binds its listeners,\n"
"                               reads its TLS keys and gives the spool to NAME,\n"
"                               then runs as NAME with no capabilities left\n"
"                               (default: oceanmx, when that user exists; root\n"
"                               keeps root). Not root: ignored\n"
"    --shards N                 shard threads, each with its own io_uring ring\n"
"                               and SO_REUSEPORT listener (default: online CPUs)\n"
"    --spool DIR                durable queue directory (default ./var/spool)\n"
"    --spool-sync fsync|syncfs  how a batch of messages becomes durable before\n"
"                               its 250: one fdatasync(2) of each log segment\n"
"                               the batch wrote, through the ring (default),\n"
"                               or one syncfs(2) of the spool's filesystem per\n"
"                               batch (only when the spool has a filesystem of\n"
"                               its own: it also flushes every other writer)\n"
"    --spool-segment-size BYTES size of each log segment file (default 64M);\n"
"                               a message is one record in a segment\n"
"    --spool-max-size BYTES     all segments together (default 8G); past it,\n"
"                               end of data answers 452 4.3.1\n"
"    --sink SPEC                delivery target, repeatable (at most 7); every\n"
"                               sink must accept a message before it leaves\n"
"                               the spool.\n"
"                               maildir:DIR  Maildir++ tmp/new/cur under DIR\n"
"                               (default maildir:./var/maildir)\n"
"                               json:DIR[?inline_max=BYTES&raw=yes|no]\n"
"                                 DIR/ID.json, the message as a JSON document\n"
"                                 (docs/json.md), beside DIR/ID.eml (the\n"
"                                 message; not with raw=no); attachments over\n"
"                                 inline_max (default 65536) as files in\n"
"                                 DIR/ID.att/\n"
"                               unix:PATH[?OPTIONS], tcp:HOST:PORT[?OPTIONS]\n"
"                                 stream each message to a consumer listening\n"
"                                 there, which acknowledges it (docs/sinks.md);\n"
"                                 window=N messages in flight per connection\n"
"                                 (64), connections=N (1), timeout=S per\n"
"                                 message (30), json=yes|no (yes),\n"
"                                 inline_max=BYTES (65536)\n"
"                               any sink: SPEC?sync=yes makes the reply to a\n"
"                                 message wait for that sink's answer: a retry\n"
"                                 or temporary failure answers 451 4.3.0, a\n"
"                                 refusal 550 5.7.1 with the consumer's reason,\n"
"                                 no answer by --timeout-commit 421 4.4.2\n"
"    --sink-retry-first S       first retry of a message a sink failed\n"
"                               temporarily (default 30); each later retry\n"
"                               waits twice as long as the one before\n"
"    --sink-retry-max S         the longest wait between retries (default 900);\n"
"                               a sink's Retry-After (webhooks) is honoured\n"
"                               when longer, up to a day\n"
"    --spool-forward-after S    a message a sink has refused temporarily for\n"
"                               this long is copied to a fresh segment, so the\n"
"                               segment it came in (whose other messages are\n"
"                               done) can be reused; once per message (default\n"
"                               900; 0 = never)\n"
"    --sink-max-age S           a message some sink still refuses temporarily\n"
"                               this long after it arrived is dead-lettered to\n"
"                               SPOOL/failed/ (default 432000, 5 days, like\n"
"                               Postfix's maximal_queue_lifetime)\n"
"    --domains LIST             accept recipients only in these domains, comma\n"
"                               separated; \".example.com\" also matches its\n"
"                               subdomains; others get 550 5.7.1 (default: any)\n"
"\n"
"  Limits\n"
"    --max-message-size BYTES   SIZE advertised in EHLO; larger messages get\n"
"                               552 5.3.4; K, M, G suffixes (default 35M)\n"
"    --max-recipients N         per transaction, then 452 4.5.3 (default 1000)\n"
"    --max-connections N        in total, then 421 4.7.0 (default 10000)\n"
"    --max-connections-per-ip N per client address, then 421 4.7.0; 0 means\n"
"                               unlimited (default 100)\n"
"    --max-connection-rate N    new connections per minute per client (IPv6\n"
"                               clients per /64), then 421 4.7.0; a burst of N\n"
"                               is allowed (default 0: no limit)\n"
"    --dnsbl ZONE,...           DNS blocklists asked for every client at connect\n"
"                               (RFC 5782; at most 8, e.g. zen.spamhaus.org),\n"
"                               through the verify pool's DNS cache, within\n"
"                               --dns-timeout; a listing goes into the JSON\n"
"                               envelope (dnsbl) and the log (default: none)\n"
"    --dnsbl-reject on|off      answer 554 5.7.1 naming the list instead of the\n"
"                               greeting when a zone lists the client (default\n"
"                               off: annotate only)\n"
"    --max-message-rate N       transactions (MAIL commands) per minute per\n"
"                               client, then 451 4.7.1 to MAIL (default 0: no\n"
"                               limit)\n"
"    --max-tls-rate N           new TLS sessions (full handshakes; resumed\n"
"                               sessions do not count) per minute per client,\n"
"                               then 454 4.7.0 to STARTTLS, like Postfix's\n"
"                               smtpd_client_new_tls_session_rate_limit; each\n"
"                               costs a signature and a key exchange, so an\n"
"                               internet-facing server should set it (e.g. 60)\n"
"                               (default 0: no limit)\n"
"    --max-input-rate BYTES     bytes per second one connection may send\n"
"                               (commands, data, TLS records), with a burst of\n"
"                               one second's worth; beyond it the connection is\n"
"                               not read until it is back within the rate, so\n"
"                               TCP slows the sender down: a few clients sending\n"
"                               large messages flat out cannot take the CPU\n"
"                               from the rest (default 16M: a 35 MB message in\n"
"                               about 2 s; K/M/G suffixes; 0: no limit)\n"
"    --max-bad-commands N       rejected commands per session before\n"
"                               421 4.7.0 and disconnect (default 20)\n"
"    --max-command-line BYTES   command line incl. CRLF, then 500 5.5.2\n"
"                               (default 2048; RFC 5321 requires >= 512)\n"
"    --max-text-line BYTES      DATA line incl. CRLF; a longer line makes the\n"
"                               message fail with 500 5.5.2 (default 65536;\n"
"                               RFC 5322 asks senders for <= 1000)\n"
"                               A command or DATA line still without LF 64 KiB\n"
"                               past its limit ends the session: 500 5.5.2\n"
"                               Line too long; closing connection.\n"
"    --bare-lf reject|normalise bare LF or CR inside DATA: reject the message\n"
"                               with 550 5.5.2 (default) or store it as CRLF.\n"
"                               Only CRLF.CRLF ever ends DATA.\n"
"\n"
"  Timeouts (RFC 5321 section 4.5.3.2), in seconds; expiry answers 421 4.4.2\n"
"    --timeout-command S        for each whole command line to arrive, counted\n"
"                               from the end of the previous one, so a client\n"
"                               dribbling a byte at a time is still cut off\n"
"                               (default 300; Postfix's smtpd does the same)\n"
"    --timeout-data S           waiting for each DATA/BDAT block (default 180)\n"
"    --timeout-commit S         our own limit from the final dot to the reply\n"
"                               (default 600)\n"
"    --timeout-session S        longest a connection may last; then 421 4.4.2\n"
"                               after the transaction in flight, if any is\n"
"                               committing (default 3600; 0 = no limit)\n"
"    --greet-delay MS           hold the 220 greeting; a client that talks\n"
"                               first gets 554 and is closed (default 0)\n"
"    --shutdown-timeout S       on SIGTERM/SIGINT, time given to transactions\n"
"                               in flight before 421 4.3.2 (default 30)\n"
"\n"
"  Sender authentication\n"
"    --dkim on|off              verify DKIM signatures (RFC 6376, 8301, 8463)\n"
"                               while the message arrives, on the verify pool,\n"
"                               and put an Authentication-Results field on top\n"
"                               of every stored message (default on)\n"
"    --spf on|off               check SPF (RFC 7208) for the MAIL FROM identity\n"
"                               (postmaster@HELO for <>) and the HELO identity;\n"
"                               the lookups start at MAIL FROM and run while\n"
"                               RCPT and DATA arrive; spf= results with\n"
"                               smtp.mailfrom / smtp.helo in the\n"
"                               Authentication-Results field (default on)\n"
"    --dmarc on|off             evaluate DMARC (RFC 7489) for the one From\n"
"                               domain, with record discovery at the domain and\n"
"                               its organizational domain (Public Suffix List),\n"
"                               DKIM and SPF alignment; dmarc= with header.from\n"
"                               and policy.dmarc in Authentication-Results\n"
"                               (default on)\n"
"    --dmarc-enforce on|off     answer 550 5.7.1 at the end of data when the\n"
"                               policy is reject (after pct=), or when the From\n"
"                               names no single domain (several From fields or\n"
"                               addresses, or too large to read); quarantine is\n"
"                               marked in Authentication-Results (default off)\n"
"    --arc on|off               validate ARC chains (RFC 8617): ARC-Seal,\n"
"                               ARC-Message-Signature and ARC-Authentication-\n"
"                               Results of every instance; arc= in\n"
"                               Authentication-Results (default on)\n"
"    --psl FILE                 Public Suffix List (default: Debian's\n"
"                               /usr/share/publicsuffix/public_suffix_list.dat)\n"
"    --dkim-temperror accept|tempfail\n"
"                               when a signature cannot be checked for now\n"
"                               (DNS timeout, SERVFAIL): store and annotate\n"
"                               (default), or answer 451 4.3.0 instead of 250\n"
"    --dkim-max-signatures N    signatures verified per message (default 8)\n"
"    --verify-workers N         verify pool threads (default: online CPUs)\n"
"    --dns ADDR[:PORT]          resolver to ask for keys (default: the servers\n"
"                               in /etc/resolv.conf); answers are cached by TTL\n"
"    --dns-timeout MS           per lookup, then temperror (default 5000)\n"
"    --dns-cache-size BYTES     DNS answers the verify pool keeps (TTL, negative\n"
"                               answers; failures 5 s), least recently used\n"
"                               evicted first (default 16M; K/M/G suffixes)\n"
"\n"
"  Spam verdicts (rspamd)\n"
"    --rspamd URL               ask rspamd (its HTTP protocol, POST URL/checkv2,\n"
"                               e.g. http://127.0.0.1:11333, or unix:PATH for\n"
"                               its bind_socket = \"PATH\") for a verdict on\n"
"                               every message, from the verify pool after the\n"
"                               end of data, with the envelope and our\n"
"                               Authentication-Results; the verdict goes into\n"
"                               X-Spam-Flag, X-Spam-Score and X-Spam-Status\n"
"                               (incoming fields of these names are removed),\n"
"                               the JSON \"spam\" section and the log\n"
"                               (default: no spam check)\n"
"    --rspamd-timeout MS        whole request, then the check failed (default\n"
"                               5000)\n"
"    --rspamd-fail open|tempfail\n"
"                               when the check fails (rspamd down, timeout, bad\n"
"                               reply): store with X-Spam-Status: Unknown\n"
"                               (default open), or answer 451 4.7.1\n"
"    --spam-reject-score N|off  answer 550 5.7.1 at the end of data when the\n"
"                               score is above N (default off)\n"
"    --spam-tempfail-action ACTION|off\n"
"                               answer 451 4.7.1 when rspamd's action is ACTION\n"
"                               (soft reject, reject, rewrite subject or add\n"
"                               header; default off); greylist is reported,\n"
"                               never enforced\n"
"\n"
"  Milters (Sendmail/Postfix milter protocol v6)\n"
"    --milter unix:PATH|inet:HOST:PORT[?OPTIONS]\n"
"                               run every message through this milter (e.g.\n"
"                               spamass-milter, opendkim, rspamd's proxy with\n"
"                               milter = yes, clamav-milter); repeatable (at\n"
"                               most 8), run in the given order, each on its\n"
"                               own connection per message once the end of\n"
"                               data has arrived. A reject or tempfail, at\n"
"                               any stage (even RCPT), is answered at the end\n"
"                               of data (550 5.7.1 / 451 4.7.1, with the\n"
"                               milter's text); discard answers 250 and\n"
"                               stores nothing; header fields a milter adds\n"
"                               go on top of the stored message; quarantine\n"
"                               sets \"milter\": {\"quarantine\"} in the JSON.\n"
"                               Never offered: body replacement, recipient\n"
"                               and sender changes; a change to a field the\n"
"                               client sent is not applied. OPTIONS override\n"
"                               the flags below for one milter: timeout=MS,\n"
"                               connect-timeout=MS, default-action=ACTION,\n"
"                               joined by & (default: no milter)\n"
"    --milter-timeout MS        wait for each reply of a milter, restarted by\n"
"                               its progress reports (default 10000)\n"
"    --milter-connect-timeout MS\n"
"                               connecting to a milter (default 5000)\n"
"    --milter-default-action accept|tempfail|reject\n"
"                               what a milter that is down, times out or\n"
"                               breaks the protocol is taken to say: go on\n"
"                               without it, 451 4.7.1 (default, as Postfix's\n"
"                               milter_default_action) or 550 5.7.1\n"
"\n"
"  TLS (STARTTLS, RFC 3207)\n"
"    --tls-cert FILE            PEM certificate chain (RSA or ECDSA), repeatable;\n"
"                               each pairs with the --tls-key of the same rank.\n"
"                               With one, EHLO offers STARTTLS. The client's SNI\n"
"                               picks the certificate whose names (SAN DNS names,\n"
"                               wildcards; else the subject CN) match; the first\n"
"                               is the default. Among pairs for the same names,\n"
"                               an ECDSA one is used when the client can verify\n"
"                               it (its signature costs a tenth of RSA-2048's),\n"
"                               else the first: give an RSA and an ECDSA pair to\n"
"                               serve every client. TLS 1.2 and 1.3, resumption\n"
"                               by tickets. SIGHUP reloads the files\n"
"    --tls-key FILE             PEM private key of the --tls-cert of that rank\n"
"    --tls-required on|off      answer MAIL before STARTTLS with 530 5.7.0\n"
"                               (default off: an MX must take mail in clear\n"
"                               from senders without TLS)\n"
"    --timeout-tls S            from STARTTLS to the end of the handshake; a\n"
"                               client that stalls is logged and closed\n"
"                               (default 30)\n"
"\n"
"  Receive pool (per shard; idle connections hold none of it)\n"
"    --recv-buffers N           provided receive buffers, a power of two\n"
"                               (default 256); when all are in use, reading\n"
"                               pauses and data waits in the socket\n"
"    --recv-buffer-size BYTES   size of each (default 32768)\n"
"\n"
"  Logging and metrics\n"
"    --log-level LEVEL          err, warn, notice (default), info (a line per\n"
"                               connection, and a tx.done line per transaction:\n"
"                               id, client, HELO, MAIL FROM, recipients, size,\n"
"                               DKIM/SPF/DMARC/ARC results, disposition, reply\n"
"                               code, duration) or debug; to stderr\n"
"    --log-format text|json     text (default): \"TIME LEVEL WHO EVENT key=value\"\n"
"                               lines; json: one JSON object per line with ts,\n"
"                               level, who, event and every key as a field\n"
"    --metrics ADDR:PORT|none   HTTP endpoint for Prometheus (default\n"
"                               127.0.0.1:9025; none turns it off): GET\n"
"                               /metrics (text format 0.0.4), /healthz (200\n"
"                               while the process runs), /readyz (200 when\n"
"                               listening with a writable spool and not\n"
"                               shutting down, else 503). If the default\n"
"                               address is taken, oceanmx runs without it (a\n"
"                               warning); an address given here must bind\n"
"\n"
"SIGNALS\n"
"    SIGHUP           reload the --tls-cert/--tls-key files: new handshakes\n"
"                     use them, sessions in flight keep theirs; when a file\n"
"                     cannot be read the old ones stay and the log says why\n"
"    SIGTERM, SIGINT  stop accepting, finish transactions in flight (up to\n"
"                     --shutdown-timeout), answer the rest 421 4.3.2, exit 0.\n"
"                     No acknowledged message is lost: what is not yet\n"
"                     delivered stays in the spool and is delivered on start.\n"
"\n"
"EXIT STATUS\n"
"    0 on a clean stop, 1 on a configuration error, 2 on a start-up failure.\n"
"\n"
"FILES\n"
"    SPOOL/log/s<shard>-<n>.seg   log segments: each accepted message is one\n"
"                     record (format: docs/spool.md); reused, never removed\n"
"    SPOOL/log/s<shard>-<n>.done  what each sink took from that segment\n"
"    SPOOL/ctl/       requests of `oceanmx spool retry|delete`\n"
"    SPOOL/failed/ID  messages a sink refused for good\n"
"    DIR/new/         delivered messages (maildir sink), one file per message\n", f);
}

void cfg_init(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->max_msg_size = 35ull << 20;
	c->max_rcpts = 1000;
	c->max_conns = 10000;
	c->max_conns_per_ip = 100;
	c->max_input_rate = 16ull << 20;
	c->max_bad_cmds = 20;
	c->max_cmd_line = 2048;
	c->max_text_line = 65536;
	c->sink_retry_first = 30;
	c->sink_retry_max = 900;
	c->sink_max_age = 5 * 86400;
	c->spool_forward_after = 900;
	c->timeout_cmd = 300;
	c->timeout_session = 3600;
	c->timeout_data = 180;
	c->timeout_commit = 600;
	c->greet_delay_ms = 0;
	c->shutdown_timeout = 30;
	c->bare_lf = SMTP_BARE_REJECT;
	c->recv_buffers = 256;
	c->dkim = true;
	c->spf = true;
	c->dmarc = true;
	c->arc = true;
	c->dkim_max_sigs = 8;
	c->dns_timeout_ms = 5000;
	c->dns_cache_size = 16u << 20;
	c->recv_buffer_size = 32768;
	c->log_level = LOG_NOTICE;
	c->spool_segment_size = 64ull << 20;
	c->spool_max_size = 8ull << 30;
	c->timeout_tls = 30;
	c->log_format = LOG_FMT_TEXT;
	c->rspamd_timeout_ms = 5000;
	c->milter_timeout_ms = MILTER_TIMEOUT_DEFAULT;
	c->milter_connect_timeout_ms = MILTER_CONNECT_TIMEOUT_DEFAULT;
	c->milter_default_action = MILTER_DEF_TEMPFAIL;
}

void cfg_fini(struct cfg *c)
{
	for (unsigned i = 0; i < c->num_listen; i++) {
		free(c->listen[i].text); c->listen[i].text = NULL;
	}
	for (unsigned i = 0; i < c->num_sinks; i++) {
		free(c->sinks[i]); c->sinks[i] = NULL;
	}
	for (unsigned i = 0; i < c->num_tls_certs; i++) {
		free(c->tls_certs[i]); c->tls_certs[i] = NULL;
	}
	for (unsigned i = 0; i < c->num_tls_keys; i++) {
		free(c->tls_keys[i]); c->tls_keys[i] = NULL;
	}
	free(c->hostname); c->hostname = NULL;
	free(c->user); c->user = NULL;
	free(c->dnsbl); c->dnsbl = NULL;
	for (unsigned i = 0; i < c->num_dnsbl_zones; i++) {
		free(c->dnsbl_zones[i]); c->dnsbl_zones[i] = NULL;
	}
	c->num_dnsbl_zones = 0;
	free(c->spool_dir); c->spool_dir = NULL;
	free(c->domains); c->domains = NULL;
	free(c->dns); c->dns = NULL;
	free(c->psl); c->psl = NULL;
	free(c->rspamd); c->rspamd = NULL;
	for (unsigned i = 0; i < c->num_milters; i++) {
		free(c->milters[i]); c->milters[i] = NULL;
	}
	c->num_milters = 0;
	free(c->spam_tempfail_action); c->spam_tempfail_action = NULL;
	free(c->config_file); c->config_file = NULL;
	free(c->metrics.text); c->metrics.text = NULL;
}

static int fail(char **out_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char **out_err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(out_err, fmt, ap) < 0) {
		*out_err = NULL;
	}
	va_end(ap);
	return -1;
}

/* parse_listen accepts "1.2.3.4:25", "[::1]:25", "*:25" (all IPv4) and "[::]:25". */
static int parse_listen(struct cfg_listen *l, const char *v)
{
	char host[256];
	const char *port;
	struct addrinfo hints, *res = NULL;

	if (v[0] == '[') {
		const char *e = strchr(v, ']');

		if (e == NULL || e[1] != ':' || (size_t)(e - v - 1) >= sizeof(host)) {
			return -1;
		}
		memcpy(host, v + 1, (size_t)(e - v - 1));
		host[e - v - 1] = '\0';
		port = e + 2;
	} else {
		const char *e = strrchr(v, ':');

		if (e == NULL || (size_t)(e - v) >= sizeof(host)) {
			return -1;
		}
		memcpy(host, v, (size_t)(e - v));
		host[e - v] = '\0';
		port = e + 1;
	}
	if (strcmp(host, "*") == 0) {
		strcpy(host, "0.0.0.0");
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	if (*port == '\0' || getaddrinfo(host, port, &hints, &res) != 0) {
		return -1;
	}
	memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
	l->addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	l->text = strdup(v);
	return l->text ? 0 : -1;
}

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long n;
	uint64_t mul = 1;

	if (*v < '0' || *v > '9') {
		return -1;
	}
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0) {
		return -1;
	}
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	default: break;
	}
	if (*end != '\0' || n > UINT64_MAX / mul) {
		return -1;
	}
	*out = n * mul;
	return 0;
}

static const struct opt *opt_find(const char *name)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (strcmp(opts[i].name, name) == 0) {
			return &opts[i];
		}
	}
	return NULL;
}

static int opt_apply(struct cfg *c, const struct opt *o, const char *v, const char *where, char **out_err)
{
	char *base = (char *)c + o->off;
	uint64_t n;

	switch (o->type) {
	case OPT_STR: {
		char **dst = (char **)(void *)base;
		char *dup = strdup(v);

		if (dup == NULL) {
			return fail(out_err, "%s: %s: out of memory", where, o->name);
		}
		free(*dst);
		*dst = dup;
		return 0;
	}
	case OPT_U32:
	case OPT_U64:
		if (parse_u64(v, &n) != 0 || n < o->min || n > o->max) {
			return fail(out_err, "%s: %s: \"%s\" is not a number in %llu..%llu", where, o->name, v,
				    (unsigned long long)o->min, (unsigned long long)o->max);
		}
		if (o->type == OPT_U32) {
			*(uint32_t *)(void *)base = (uint32_t)n;
		} else {
			*(uint64_t *)(void *)base = n;
		}
		return 0;
	case OPT_LISTEN:
	case OPT_LISTEN_PROXY:
		if (c->num_listen == CFG_LISTEN_MAX) {
			return fail(out_err, "%s: %s: at most %d addresses in all", where, o->name, CFG_LISTEN_MAX);
		}
		if (parse_listen(&c->listen[c->num_listen], v) != 0) {
			return fail(out_err, "%s: %s: \"%s\" is not ADDR:PORT (IPv6 as [ADDR]:PORT)", where, o->name, v);
		}
		c->listen[c->num_listen].proxy = o->type == OPT_LISTEN_PROXY;
		c->num_listen++;
		return 0;
	case OPT_CIDRS: {
		const char *p = v;

		while (*p != '\0') {
			char one[80];
			size_t len = strcspn(p, ", \t");

			if (len == 0 || len >= sizeof(one)) {
				return fail(out_err, "%s: %s: bad list \"%s\" (ADDR[/BITS],...)", where, o->name, v);
			}
			memcpy(one, p, len);
			one[len] = '\0';
			if (c->num_proxy_trusted == CFG_CIDR_MAX) {
				return fail(out_err, "%s: %s: at most %d address blocks", where, o->name, CFG_CIDR_MAX);
			}
			if (!ip_cidr_parse(&c->proxy_trusted[c->num_proxy_trusted], one)) {
				return fail(out_err, "%s: %s: \"%s\" is not ADDR or ADDR/BITS", where, o->name, one);
			}
			c->num_proxy_trusted++;
			p += len;
			p += strspn(p, ", \t");
		}
		return 0;
	}
	case OPT_SINK:
		if (c->num_sinks == CFG_SINK_MAX) {
			return fail(out_err, "%s: sink: at most %d sinks", where, CFG_SINK_MAX);
		}
		if ((c->sinks[c->num_sinks] = strdup(v)) == NULL) {
			return fail(out_err, "%s: sink: out of memory", where);
		}
		c->num_sinks++;
		return 0;
	case OPT_TLSCERT:
	case OPT_TLSKEY: {
		char **dst = o->type == OPT_TLSCERT ? c->tls_certs : c->tls_keys;
		unsigned *num = o->type == OPT_TLSCERT ? &c->num_tls_certs : &c->num_tls_keys;

		if (*num == CFG_TLS_MAX) {
			return fail(out_err, "%s: %s: at most %d files", where, o->name, CFG_TLS_MAX);
		}
		if ((dst[*num] = strdup(v)) == NULL) {
			return fail(out_err, "%s: %s: out of memory", where, o->name);
		}
		(*num)++;
		return 0;
	}
	case OPT_BARE:
		if (strcmp(v, "reject") == 0) {
			c->bare_lf = SMTP_BARE_REJECT;
		} else if (strcmp(v, "normalise") == 0 || strcmp(v, "normalize") == 0) {
			c->bare_lf = SMTP_BARE_NORMALISE;
		} else {
			return fail(out_err, "%s: bare-lf: \"%s\" is not reject or normalise", where, v);
		}
		return 0;
	case OPT_BOOL:
	case OPT_TEMPERR: {
		bool *dst = (bool *)(void *)base;
		const char *yes = o->type == OPT_BOOL ? "on" : "tempfail", *no = o->type == OPT_BOOL ? "off" : "accept";

		if (strcmp(v, yes) == 0) {
			*dst = true;
		} else if (strcmp(v, no) == 0) {
			*dst = false;
		} else {
			return fail(out_err, "%s: %s: \"%s\" is not %s or %s", where, o->name, v, yes, no);
		}
		return 0;
	}
	case OPT_SYNC:
		if (strcmp(v, "syncfs") == 0) {
			c->spool_sync = SPOOL_SYNC_SYNCFS;
		} else if (strcmp(v, "fsync") == 0) {
			c->spool_sync = SPOOL_SYNC_FSYNC;
		} else {
			return fail(out_err, "%s: spool-sync: \"%s\" is not syncfs or fsync", where, v);
		}
		return 0;
	case OPT_LOGLEVEL: {
		int l = log_parse_level(v);

		if (l < 0) {
			return fail(out_err, "%s: log-level: \"%s\" is not err, warn, notice, info or debug", where, v);
		}
		c->log_level = l;
		return 0;
	}
	case OPT_METRICS: {
		struct cfg_listen l;

		if (strcmp(v, "none") == 0) {
			free(c->metrics.text); c->metrics.text = NULL;
			c->metrics_off = true;
			return 0;
		}
		memset(&l, 0, sizeof(l));
		if (parse_listen(&l, v) != 0) {
			return fail(out_err, "%s: metrics: \"%s\" is not ADDR:PORT (IPv6 as [ADDR]:PORT) or none", where, v);
		}
		free(c->metrics.text);
		c->metrics = l;
		c->metrics_off = false;
		return 0;
	}
	case OPT_LOGFMT: {
		int f = log_parse_format(v);

		if (f < 0) {
			return fail(out_err, "%s: log-format: \"%s\" is not text or json", where, v);
		}
		c->log_format = f;
		return 0;
	}
	case OPT_FAILMODE:
		if (strcmp(v, "open") == 0 || strcmp(v, "tempfail") == 0) {
			c->rspamd_fail_tempfail = strcmp(v, "tempfail") == 0;
			return 0;
		}
		return fail(out_err, "%s: %s: \"%s\" is not open or tempfail", where, o->name, v);
	case OPT_SCORE: {
		char *e;
		double d;

		if (strcmp(v, "off") == 0) {
			c->spam_reject_on = false;
			return 0;
		}
		d = strtod(v, &e);
		if (e == v || *e != '\0' || !(d > -1e6 && d < 1e6)) {
			return fail(out_err, "%s: %s: \"%s\" is not a score (e.g. 15 or 7.5) or off", where, o->name, v);
		}
		c->spam_reject_score = d;
		c->spam_reject_on = true;
		return 0;
	}
	case OPT_ACTION: {
		static const char *const ok[] = { "soft reject", "reject", "rewrite subject", "add header" };
		char **dst = (char **)(void *)base;

		if (strcmp(v, "off") == 0) {
			free(*dst); *dst = NULL;
			return 0;
		}
		for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
			if (strcmp(v, ok[i]) == 0) {
				free(*dst);
				if ((*dst = strdup(v)) == NULL) {
					return fail(out_err, "%s: %s: out of memory", where, o->name);
				}
				return 0;
			}
		}
		return fail(out_err, "%s: %s: \"%s\" is not soft reject, reject, rewrite subject, add header or off"
			    " (greylist is reported, never enforced)", where, o->name, v);
	}
	case OPT_MILTER: {
		struct milter_conf mc;
		char *err = NULL;

		if (c->num_milters == CFG_MILTER_MAX) {
			return fail(out_err, "%s: %s: at most %d milters", where, o->name, CFG_MILTER_MAX);
		}
		if (milter_conf_parse(&mc, v, MILTER_TIMEOUT_DEFAULT, MILTER_CONNECT_TIMEOUT_DEFAULT, MILTER_DEF_TEMPFAIL,
				      &err) != 0) {
			int rc = fail(out_err, "%s: %s: %s", where, o->name, err ? err : "invalid");

			free(err);
			return rc;
		}
		if ((c->milters[c->num_milters] = strdup(v)) == NULL) {
			return fail(out_err, "%s: %s: out of memory", where, o->name);
		}
		c->num_milters++;
		return 0;
	}
	case OPT_MILTERDEF: {
		enum milter_default d;

		if (!milter_default_parse(v, &d)) {
			return fail(out_err, "%s: %s: \"%s\" is not accept, tempfail or reject", where, o->name, v);
		}
		c->milter_default_action = (int)d;
		return 0;
	}
	case OPT_TYPE_COUNT:
		break;
	}
	return fail(out_err, "%s: %s: internal error", where, o->name);
}

/* cfg_read_stream applies "key value" lines from f; `path` names it in errors. */
static int cfg_read_stream(struct cfg *c, FILE *f, const char *path, char **out_err)
{
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	ssize_t n;
	int rc = 0;

	while (rc == 0 && (n = getline(&line, &cap, f)) != -1) {
		char where[512], *k, *v, *e;
		const struct opt *o;

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (memchr(line, '\0', (size_t)n) != NULL) {
			rc = fail(out_err, "%s: NUL byte in the line", where);
			break;
		}
		if ((e = strchr(line, '#')) != NULL) {
			*e = '\0';
		}
		k = line + strspn(line, " \t\r\n");
		if (*k == '\0') {
			continue;
		}
		v = k + strcspn(k, " \t=\r\n");
		if (*v != '\0') {
			*v++ = '\0';
		}
		v += strspn(v, " \t=");
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) {
			*--e = '\0';
		}
		if ((o = opt_find(k)) == NULL) {
			rc = fail(out_err, "%s: %s: unknown key", where, k);
		} else if (*v == '\0') {
			rc = fail(out_err, "%s: %s: missing value", where, k);
		} else {
			rc = opt_apply(c, o, v, where, out_err);
		}
	}
	free(line);
	return rc;
}

static int cfg_read_file(struct cfg *c, const char *path, char **out_err)
{
	FILE *f = fopen(path, "r");
	int rc;

	if (f == NULL) {
		return fail(out_err, "%s: %s", path, strerror(errno));
	}
	rc = cfg_read_stream(c, f, path, out_err);
	fclose(f);
	return rc;
}

int cfg_parse_text(struct cfg *c, const char *text, size_t len, const char *name, char **out_err)
{
	FILE *f;
	int rc;

	if (len == 0) {
		return 0;
	}
	f = fmemopen((void *)(uintptr_t)text, len, "r");
	if (f == NULL) {
		return fail(out_err, "%s: %s", name, strerror(errno));
	}
	rc = cfg_read_stream(c, f, name, out_err);
	fclose(f);
	return rc;
}

int cfg_parse_args(struct cfg *c, int argc, char **argv, int first, char **out_err)
{
	/* The file first, so that flags override it wherever -c appears. */
	for (int i = first; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc) {
				return fail(out_err, "command line: %s: missing FILE", argv[i]);
			}
			free(c->config_file);
			c->config_file = strdup(argv[i + 1]);
			if (cfg_read_file(c, argv[i + 1], out_err) != 0) {
				return -1;
			}
			i++;
		}
	}
	for (int i = first; i < argc; i++) {
		const char *a = argv[i], *v;
		char name[64];
		const struct opt *o;
		const char *eq;

		if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			i++;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			return fail(out_err, "command line: unexpected argument \"%s\" (see --help)", a);
		}
		a += 2;
		eq = strchr(a, '=');
		if (eq != NULL) {
			if ((size_t)(eq - a) >= sizeof(name)) {
				return fail(out_err, "command line: --%s: unknown option", a);
			}
			memcpy(name, a, (size_t)(eq - a));
			name[eq - a] = '\0';
			v = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", a);
			if (i + 1 >= argc) {
				return fail(out_err, "command line: --%s: missing value", name);
			}
			v = argv[++i];
		}
		if ((o = opt_find(name)) == NULL) {
			return fail(out_err, "command line: --%s: unknown option (see --help)", name);
		}
		if (opt_apply(c, o, v, "command line", out_err) != 0) {
			return -1;
		}
	}
	return 0;
}

int cfg_finish(struct cfg *c, char **out_err)
{
	if (c->num_listen == 0 && parse_listen(&c->listen[c->num_listen++], "127.0.0.1:2525") != 0) {
		return fail(out_err, "default listen address: internal error");
	}
	if (c->hostname == NULL) {
		char h[256];

		if (gethostname(h, sizeof(h) - 1) != 0) {
			strcpy(h, "localhost");
		}
		h[sizeof(h) - 1] = '\0';
		c->hostname = strdup(h);
	}
	if (c->spool_dir == NULL) {
		c->spool_dir = strdup("./var/spool");
	}
	if (c->dnsbl != NULL && c->num_dnsbl_zones == 0) {
		const char *p = c->dnsbl;

		while (*p != '\0') {
			size_t len = strcspn(p, ", \t");

			if (len > 0) {
				bool ok = len < 250;

				for (size_t k = 0; ok && k < len; k++) {
					ok = (p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z') ||
					     (p[k] >= '0' && p[k] <= '9') || p[k] == '-' || p[k] == '.' || p[k] == '_';
				}
				if (!ok || p[0] == '.') {
					return fail(out_err, "dnsbl: \"%.*s\" is not a DNS zone name", (int)len, p);
				}
				if (c->num_dnsbl_zones == sizeof(c->dnsbl_zones) / sizeof(c->dnsbl_zones[0])) {
					return fail(out_err, "dnsbl: at most %zu zones", sizeof(c->dnsbl_zones) / sizeof(c->dnsbl_zones[0]));
				}
				if ((c->dnsbl_zones[c->num_dnsbl_zones++] = strndup(p, len)) == NULL) {
					return fail(out_err, "out of memory");
				}
			}
			p += len;
			p += strspn(p, ", \t");
		}
	}
	if (c->num_proxy_trusted == 0) {
		/* The balancer on this host: nothing else may name clients. */
		(void)ip_cidr_parse(&c->proxy_trusted[c->num_proxy_trusted++], "127.0.0.0/8");
		(void)ip_cidr_parse(&c->proxy_trusted[c->num_proxy_trusted++], "::1");
	}
	if (c->num_sinks == 0) {
		c->sinks[c->num_sinks++] = strdup("maildir:./var/maildir");
	}
	if (c->hostname == NULL || c->spool_dir == NULL || c->sinks[0] == NULL) {
		return fail(out_err, "out of memory");
	}
	for (const char *p = c->hostname; *p; p++) {
		if (*p <= ' ' || *p >= 0x7f || *p == '/' ) {
			return fail(out_err, "hostname: \"%s\" must be a plain DNS name", c->hostname);
		}
	}
	if (c->sink_retry_max < c->sink_retry_first) {
		return fail(out_err, "sink-retry-max: %u is less than sink-retry-first (%u)", c->sink_retry_max,
			    c->sink_retry_first);
	}
	if (!c->metrics_off && c->metrics.text == NULL) {
		struct cfg_listen l;

		memset(&l, 0, sizeof(l));
		if (parse_listen(&l, CFG_METRICS_DEFAULT) != 0) {
			return fail(out_err, "default metrics address: internal error");
		}
		c->metrics = l;
		c->metrics_default = true;
	}
	if (c->num_tls_certs != c->num_tls_keys) {
		return fail(out_err, "tls-cert: %u certificates but %u keys (give them in pairs)", c->num_tls_certs,
			    c->num_tls_keys);
	}
	if (c->tls_required && c->num_tls_certs == 0) {
		return fail(out_err, "tls-required: on without a tls-cert and tls-key");
	}
	if ((c->recv_buffers & (c->recv_buffers - 1)) != 0) {
		return fail(out_err, "recv-buffers: %u is not a power of two", c->recv_buffers);
	}
	if (c->shards == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		c->shards = n > 0 ? (unsigned)n : 1;
		if (c->shards > 64) {
			c->shards = 64;
		}
	}
	return 0;
}
