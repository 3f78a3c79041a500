/*
 * tls.h - STARTTLS (RFC 3207) in the server: BoringSSL's libssl driven over
 * memory BIOs, so every byte on the socket still goes through the shard's
 * ring and nothing here reads, writes or blocks on a socket.
 *
 * Data flow of one connection (core/shard.c):
 *   recv CQE (ciphertext, in a pbuf) --tls_conn_feed (copies)--> read BIO
 *   --tls_conn_handshake / tls_conn_read--> plaintext into the session
 *   replies (plaintext) --tls_conn_write (seals)--> appended to `wire`, the
 *   conn's bb of bytes to send; core swaps it with its send buffer, so the
 *   memory lent to the kernel is never written by libssl.
 *
 * Certificates: a tls_store is one immutable set of SSL_CTXs built by the
 * main thread from --tls-cert/--tls-key pairs; the client's SNI picks the
 * pair whose names (SAN DNS names, else the subject CN; "*.x" matches one
 * label) match, the first pair is the default. A tls_holder keeps the
 * current store; SIGHUP builds a new store and swaps it in (tls_holder_set).
 * Stores are reference counted: each tls_conn holds one for its whole
 * life, so a swap never touches a session in flight.
 *
 * Only oceanmx links this (library omx_tls): Criterion's test binaries load
 * OpenSSL's libcrypto, whose symbols collide with BoringSSL's.
 */
#ifndef OMX_TLS_H
#define OMX_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/msg.h"
#include "bb.h"
#include "span.h"

#define TLS_CERTS_MAX 16 /* --tls-cert/--tls-key pairs */

struct tls_store;
struct tls_holder;
struct tls_conn;

enum tls_rc {
	TLS_OK = 0,   /* handshake done / plaintext returned */
	TLS_WANT,     /* needs more ciphertext from the peer */
	TLS_CLOSED,   /* the peer sent close_notify */
	TLS_ERROR,    /* fatal: reason in err */
	TLS_RC_COUNT  /* sentinel */
};

/*
 * tls_store_new loads the `num` certificate chains and keys (PEM files;
 * RSA or ECDSA) into a new store with one reference. NULL on error, with a
 * malloc'd "FILE: reason" in *out_err. Main thread; it reads files.
 */
struct tls_store *tls_store_new(const char *const *certs, const char *const *keys, unsigned num, char **out_err);

/* tls_store_ref returns a new reference; tls_store_unref drops one (NULL: nothing). Any thread. */
struct tls_store *tls_store_ref(struct tls_store *st);
void tls_store_unref(struct tls_store *st);

/* tls_store_describe writes "NAME[,NAME...]" of pair i (for logs); false past the end. */
bool tls_store_describe(const struct tls_store *st, unsigned i, char *out, size_t out_len);
/* tls_store_key_kind names the key of pair i ("RSA", "ECDSA P-256", ...; static); NULL past the end. */
const char *tls_store_key_kind(const struct tls_store *st, unsigned i);

/* tls_holder_new takes the reference `st`. tls_holder_free drops it (NULL: nothing). */
struct tls_holder *tls_holder_new(struct tls_store *st);
void tls_holder_free(struct tls_holder *h);

/* tls_holder_get returns a new reference to the current store. Any thread. */
struct tls_store *tls_holder_get(struct tls_holder *h);

/* tls_holder_set makes `st` (its reference taken) current and drops the old one. Any thread. */
void tls_holder_set(struct tls_holder *h, struct tls_store *st);

/*
 * tls_conn_new starts a server session with a reference of its own to
 * `st`. Sealed records and alerts are appended to *wire (borrowed: it must
 * outlive the tls_conn; core may swap its contents between calls). NULL on
 * ENOMEM.
 */
struct tls_conn *tls_conn_new(struct tls_store *st, struct bb *wire);

/* tls_conn_free drops the session and its store reference; NULL does nothing. */
void tls_conn_free(struct tls_conn *t);

/* tls_conn_feed copies ciphertext from the socket into the session: 0 or -ENOMEM. */
int tls_conn_feed(struct tls_conn *t, struct span in);

/* tls_conn_buffered tells how many ciphertext octets were fed and not yet taken. */
size_t tls_conn_buffered(const struct tls_conn *t);

/* tls_conn_handshake advances the handshake: TLS_OK when done, TLS_WANT, or TLS_ERROR. */
enum tls_rc tls_conn_handshake(struct tls_conn *t, char *err, size_t err_len);

/*
 * tls_conn_read decrypts up to `cap` octets into out: TLS_OK with
 * *out_len > 0, TLS_WANT when no complete record is buffered, TLS_CLOSED,
 * TLS_ERROR.
 */
enum tls_rc tls_conn_read(struct tls_conn *t, uint8_t *out, size_t cap, size_t *out_len, char *err, size_t err_len);

/* tls_conn_write seals all of `in` into the wire buffer: 0, or -1 with err. */
int tls_conn_write(struct tls_conn *t, struct span in, char *err, size_t err_len);

/* tls_conn_close_notify appends a close_notify alert (RFC 8446 §6.1), once. */
void tls_conn_close_notify(struct tls_conn *t);

/* tls_conn_info fills version, cipher and SNI of an established session (out->on is set). */
void tls_conn_info(const struct tls_conn *t, struct msg_tls *out);

/* tls_conn_resumed tells whether the handshake resumed a session (a ticket). */
bool tls_conn_resumed(const struct tls_conn *t);

#endif
