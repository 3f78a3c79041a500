/*
 * tls.h - STARTTLS (RFC 3207) for oceanmx-load: BoringSSL's libssl driven
 * over in-memory BIOs, so every byte on the socket still goes through the
 * worker's io_uring ring; nothing here reads or writes a socket.
 *
 * Data flow of one connection:
 *   recv CQE (ciphertext) --ltls_feed (copies)--> SSL --ltls_read--> plaintext replies
 *   plaintext iovecs --ltls_write (encrypts, bounded)--> pending ciphertext
 *   pending --ltls_take_out--> the send buffer, owned by the ltls until ltls_sent
 * The send buffer and the pending buffer are two separate allocations, so
 * writes by SSL (records, handshake flights, alerts) while a send is in
 * flight never move the memory the kernel is reading.
 *
 * One struct ltls_ctx per run (an SSL_CTX; shared by the threads), one
 * struct ltls per connection slot (kept across sessions; ltls_begin starts
 * a new TLS session, ltls_end drops it). Only the tool links this: the
 * Criterion tests must not load BoringSSL (see CMakeLists.txt).
 */
#ifndef OMX_LOAD_TLS_H
#define OMX_LOAD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Ciphertext queued before a send is submitted (ltls_write's max_out). */
#define LTLS_OUT_BATCH (64 * 1024)

struct ltls_ctx;
struct ltls;

struct ltls_opts {
	const char *host; /* target host as given: SNI (if a name) and the verified identity */
	bool verify;      /* check the certificate chain and that it names host */
	const char *ca_file; /* PEM trust anchors for verify; NULL = the system's */
};

enum ltls_rc {
	LTLS_OK = 0, /* handshake done / plaintext returned */
	LTLS_WANT,   /* needs more ciphertext from the peer */
	LTLS_CLOSED, /* the peer sent close_notify */
	LTLS_ERROR,  /* fatal: reason in err */
	LTLS_RC_COUNT /* sentinel */
};

/* ltls_ctx_new makes the run's client context; NULL with a reason in err. */
struct ltls_ctx *ltls_ctx_new(const struct ltls_opts *o, char *err, size_t err_len);
void ltls_ctx_free(struct ltls_ctx *x);

/* ltls_new allocates one slot's state (no session yet); NULL on ENOMEM. */
struct ltls *ltls_new(void);
void ltls_free(struct ltls *t);

/* ltls_begin starts a client session on t (ends any previous one): 0, or -1 with err. */
int ltls_begin(struct ltls *t, struct ltls_ctx *x, char *err, size_t err_len);

/* ltls_end drops the session and any queued bytes; the buffers stay for the next one. */
void ltls_end(struct ltls *t);

/* ltls_feed hands ciphertext from the socket to the session (copied): 0 or -1 (ENOMEM). */
int ltls_feed(struct ltls *t, const uint8_t *p, size_t len);

/* ltls_handshake advances the handshake: LTLS_OK when done, LTLS_WANT, or LTLS_ERROR. */
enum ltls_rc ltls_handshake(struct ltls *t, char *err, size_t err_len);

/*
 * ltls_read decrypts up to cap octets into out: LTLS_OK with *out_len > 0,
 * LTLS_WANT when no complete record is buffered, LTLS_CLOSED, LTLS_ERROR.
 */
enum ltls_rc ltls_read(struct ltls *t, uint8_t *out, size_t cap, size_t *out_len, char *err, size_t err_len);

/*
 * ltls_write encrypts plaintext from the front of the iovec array
 * (*iov, *num_iov), advancing it past what was consumed, until the array is
 * empty or max_out octets of ciphertext are pending. Small iovecs are
 * gathered so that records are full (16 KiB) where the data allows.
 * 0, or -1 with err.
 */
int ltls_write(struct ltls *t, struct iovec **iov, size_t *num_iov, size_t max_out, char *err, size_t err_len);

/*
 * ltls_take_out moves the pending ciphertext into the send buffer and
 * lends it: out_p and out_len stay valid until ltls_sent or ltls_end. False
 * when nothing is pending or the send buffer is still lent.
 */
bool ltls_take_out(struct ltls *t, const uint8_t **out_p, size_t *out_len);

/* ltls_sent returns the send buffer (its bytes are on the wire). */
void ltls_sent(struct ltls *t);

/* ltls_pending tells whether ciphertext waits for ltls_take_out. */
bool ltls_pending(const struct ltls *t);

/* ltls_describe writes "TLSv1.3 TLS_AES_128_GCM_SHA256" for an established session. */
void ltls_describe(const struct ltls *t, char *out, size_t out_len);

#endif
