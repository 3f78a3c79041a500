/*
 * spool.h - the durable queue: one file per accepted message in SPOOL/q/.
 *
 * File layout (text head, raw message, fixed trailer):
 *
 *   OMX1\n
 *   id <id>\n  received_us <n>\n  client <ip> <port>\n  helo <name>\n
 *   esmtp 0|1\n  smtputf8 0|1\n  body 7BIT|8BITMIME|BINARYMIME\n
 *   from <addr>\n  [tls <version> <cipher> <sni|->\n]  rcpt <addr>\n ... \n
 *                                               (blank line ends the head)
 *   <message: our Received: field, then the bytes the client sent>
 *   <auth: our Authentication-Results field(s), CRLF-terminated, or nothing>
 *   \nOMXEND <16 hex: message length> <8 hex: CRC-32C of message + auth>
 *          <8 hex: auth length>\n              (SPOOL_TRAILER_LEN bytes)
 *
 * The auth block comes after the message because verification finishes
 * only at its end; delivery puts it in front of the message (RFC 8601:
 * added at the top, like trace fields).
 *
 * A file is committed when its trailer is present and both length and
 * checksum match (blocks may reach a journal-less disk in any order):
 * core writes the trailer last, then fdatasync()s the file and fsync()s the
 * directory before answering 250. A file without a valid trailer was never
 * acknowledged and is removed at start-up. Values never hold CR, LF or NUL
 * (proto validated them), so the line format needs no escaping.
 *
 * Writing happens on the shards through their rings (core/shard.c); the
 * blocking functions here are for start-up recovery and delivery workers.
 */
#ifndef OMX_SPOOL_H
#define OMX_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/msg.h"
#include "bb.h"

#define SPOOL_TRAILER_LEN 43 /* "\nOMXEND " + 16 hex + " " + 8 hex + " " + 8 hex + "\n" */

/* spool_head_format appends the head (through the blank line) for env. */
int spool_head_format(struct bb *out, const struct msg_env *env);

/*
 * spool_trailer_format writes the trailer for a message of msg_len bytes
 * followed by an auth block of auth_len bytes, whose crc32c_update()
 * checksum over both is `crc`, into out[SPOOL_TRAILER_LEN + 1].
 */
void spool_trailer_format(char *out, uint64_t msg_len, uint32_t crc, uint32_t auth_len);

/* A loaded spool entry: owns the file bytes and the envelope strings. */
struct spool_entry {
	struct msg_env env;
	uint8_t *data;
	size_t data_len;
	bool mapped;     /* data is a read-only file mapping (spool_load), else malloc'd */
	struct span msg; /* the message, inside data */
	struct span auth; /* our Authentication-Results field(s), inside data; may be empty */
};

/*
 * spool_parse fills *out from a whole file image, taking ownership of
 * `data` (malloc'd) on success only. Returns 0, or -EINVAL for a file that
 * is incomplete or malformed (never acknowledged), or -ENOMEM.
 */
int spool_parse(struct spool_entry *out, uint8_t *data, size_t len);

#define SPOOL_READ_MAX (64 * 1024) /* files up to this size are read, larger ones mapped */

/*
 * spool_load reads (up to SPOOL_READ_MAX) or maps read-only dirfd/name and
 * parses it; -errno from I/O or spool_parse. A mapping keeps a large
 * message in the page cache instead of the worker's heap.
 */
int spool_load(struct spool_entry *out, int dirfd, const char *name);

void spool_entry_fini(struct spool_entry *e);

/* The spool's directories, opened once at start-up. */
struct spool_dirs {
	int q;      /* committed messages, one file each, named by id */
	int free;   /* delivered files kept for reuse (see struct spool_pool) */
	int failed; /* messages a sink refused for good */
};

/* spool_open creates SPOOL/{q,free,failed} and opens them. 0 or -errno. */
int spool_open(struct spool_dirs *out, const char *spool_dir);
void spool_close(struct spool_dirs *d);

/*
 * Spool file reuse. Creating and deleting a file per message makes the
 * filesystem allocate and free an inode per message; ext4 without a journal
 * then skips every inode freed in the last minute when it allocates the
 * next one, and that scan became most of the server's CPU. So a delivered
 * file is renamed into SPOOL/free/ and its name goes into its shard's pool;
 * the next message opens it with O_TRUNC, writes it there, and renames it
 * into SPOOL/q/ before its batch sync: no inode is allocated or freed.
 *
 * The pool is shared by a shard (takes) and its delivery worker (puts):
 * one short critical section each. Only small files are kept
 * (SPOOL_REUSE_MAX_BYTES), at most `cap` per pool.
 */
#define SPOOL_REUSE_MAX_BYTES (256u * 1024)

struct spool_pool;

struct spool_pool *spool_pool_new(uint32_t cap);
void spool_pool_free(struct spool_pool *p);
/* spool_pool_put adds a name (copied); false when the pool is full. */
bool spool_pool_put(struct spool_pool *p, const char *name);
/* spool_pool_get takes a name into out[MSG_ID_MAX]; false when empty. */
bool spool_pool_get(struct spool_pool *p, char *out);
/* spool_pool_has_room tells whether a put would succeed now. */
bool spool_pool_has_room(struct spool_pool *p);

/* spool_make_id formats a unique id from the time, the shard and a counter. */
void spool_make_id(char out[MSG_ID_MAX], int64_t received_us, unsigned shard, uint32_t seq);

#endif
