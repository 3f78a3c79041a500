/*
 * spool.h - the durable queue: an append-only log of records in reused,
 * preallocated segment files, one set per shard. docs/spool.md is the
 * reader's guide; this is the format, where it is written (all integers
 * little-endian, offsets in bytes):
 *
 *   SPOOL/log/s<shard>-<n>.seg   a segment, SPOOL_SEG_SIZE bytes (--spool-
 *                                segment-size), made once and reused forever
 *     [0, 4096)  segment header:
 *        0 magic "OMXSEG1\0"   8 u32 version (1)   12 u32 shard   16 u32 n
 *       20 u32 data offset (4096)  24 u64 generation  32 u64 standard size
 *       40 u32 CRC-32C of bytes [0, 40)   the rest of the block is zero
 *     [4096, ...)  records, each starting at an 8-byte aligned offset:
 *        0 u32 magic "OMXR"  4 u16 type (1 = message)  6 u16 header length (64)
 *        8 u64 generation (the segment's when written)  16 u32 slot (0, 1, ...)
 *       20 u32 head_len  24 u64 msg_len  32 u32 auth_len  36 u32 zero
 *       40 id, NUL-padded to 24 bytes
 *       64 head: the envelope as text (spool_head_format), head_len bytes
 *          message: our Received: field, then the client's bytes, msg_len
 *          auth: our Authentication-Results field(s), auth_len (may be 0)
 *          trailer, 16 bytes: u64 record length (64 + the three + 16),
 *          u32 CRC-32C, u32 magic "OMXE"; then zeros up to the next 8 bytes
 *       The CRC runs over head, message and auth in file order, then on over
 *       the 64 header bytes (so a spilled record can write its header last).
 *
 *   SPOOL/log/s<shard>-<n>.done  what was delivered from that segment:
 *        0 magic "OMXDONE1"   8 u64 generation   16 one byte per slot:
 *        bit i (0..6) set = sink i (in --sink order) has it; bit 7 = removed
 *        (dead-lettered or deleted). A generation that differs from the
 *        segment's means "nothing done".
 *
 * A record counts only when its magic, generation (equal to the segment
 * header's), slot (equal to its ordinal), lengths, trailer and checksum
 * are all valid; a scan stops at the first one that is not (a torn tail,
 * zeros, or the stale records of an earlier generation). Appends to a
 * segment are acknowledged in offset order, so nothing acknowledged lies
 * behind a torn record. A segment whose records are all done gets the next
 * generation (header rewritten, done file reset) and goes back to its
 * shard's free pool: no file is created, renamed or removed per message.
 *
 * A body larger than SPOOL_SPILL_BYTES streams into a free segment of its
 * own (extended past the standard size when needed, truncated back when it
 * is recycled); such a segment holds that one record.
 *
 * The pure functions here (encode, parse, scan) do no I/O; spool_log.c owns
 * the files.
 */
#ifndef OMX_SPOOL_H
#define OMX_SPOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/msg.h"
#include "bb.h"

#define SPOOL_SEG_HDR_LEN   4096u
#define SPOOL_SEG_HDR_USED  44u
#define SPOOL_REC_HDR_LEN   64u
#define SPOOL_REC_TRL_LEN   16u
#define SPOOL_REC_ALIGN     8u
#define SPOOL_REC_ID_LEN    24u
#define SPOOL_REC_MESSAGE   1u
#define SPOOL_DONE_HDR_LEN  16u
#define SPOOL_DONE_REMOVED  0x80u
#define SPOOL_SINK_BITS     7u            /* sinks with a done bit each (CFG_SINK_MAX) */
#define SPOOL_SEG_SIZE_DEF  (64ull << 20) /* --spool-segment-size default */
#define SPOOL_SEG_SIZE_MIN  (64ull << 10)
#define SPOOL_SPILL_BYTES   (128u * 1024) /* a body past this streams into a segment of its own */

/* spool_rec_padded is the space a record of `len` bytes takes in a segment. */
static inline uint64_t spool_rec_padded(uint64_t len)
{
	return (len + SPOOL_REC_ALIGN - 1) & ~(uint64_t)(SPOOL_REC_ALIGN - 1);
}

/* The fixed fields of a record header. */
struct spool_rec_hdr {
	uint64_t gen;
	uint32_t slot;
	uint32_t head_len, auth_len;
	uint64_t msg_len;
	char id[SPOOL_REC_ID_LEN]; /* NUL-terminated (ids are shorter) */
};

/* The fixed fields of a segment header. */
struct spool_seg_hdr {
	uint32_t shard, n;
	uint64_t gen;
	uint64_t std_size;
};

/* spool_seg_hdr_encode writes the header's first SPOOL_SEG_HDR_USED bytes. */
void spool_seg_hdr_encode(uint8_t out[SPOOL_SEG_HDR_USED], const struct spool_seg_hdr *h);
/* spool_seg_hdr_decode: true when magic, version and checksum are valid. */
bool spool_seg_hdr_decode(struct spool_seg_hdr *out, const uint8_t *p, size_t len);

/* spool_rec_hdr_encode writes SPOOL_REC_HDR_LEN bytes. */
void spool_rec_hdr_encode(uint8_t out[SPOOL_REC_HDR_LEN], const struct spool_rec_hdr *h);

/*
 * spool_rec_trailer_encode writes the SPOOL_REC_TRL_LEN trailer bytes for a
 * record whose payload (head, message, auth) CRC so far is `payload_crc`
 * and whose header is `hdr`; returns the record length (without padding).
 */
uint64_t spool_rec_trailer_encode(uint8_t out[SPOOL_REC_TRL_LEN], const uint8_t hdr[SPOOL_REC_HDR_LEN],
				  uint32_t payload_crc, uint64_t payload_len);

/*
 * spool_rec_check validates the record at p[0..avail) for generation `gen`
 * and slot `slot`. Returns true and the record's length without padding
 * in *out_len and its header in *out_hdr when it is whole and valid.
 */
bool spool_rec_check(struct spool_rec_hdr *out_hdr, uint64_t *out_len, const uint8_t *p, size_t avail,
		     uint64_t gen, uint32_t slot);

/*
 * spool_scan walks the records of a segment image seg[0..len) (from
 * SPOOL_SEG_HDR_LEN) for generation `gen`, calling fn for each valid one
 * in order (off = its offset, len = its length without padding), and stops
 * at the first invalid one. Returns the number of records; *out_end (may be
 * NULL) gets the offset where the scan stopped.
 */
typedef void spool_scan_fn(void *arg, const struct spool_rec_hdr *h, uint64_t off, uint64_t len);
uint32_t spool_scan(const uint8_t *seg, size_t len, uint64_t gen, spool_scan_fn *fn, void *arg,
		    uint64_t *out_end);

/* spool_head_format appends the envelope text (through the blank line) for env. */
int spool_head_format(struct bb *out, const struct msg_env *env);

/* A parsed record: the envelope strings are owned, the spans borrow `data`. */
struct spool_entry {
	struct msg_env env;
	uint8_t *data;       /* the record bytes (malloc'd or mapped) */
	size_t data_len;
	size_t map_len;      /* mapping length when mapped (data - map_skew is the mapping) */
	size_t map_skew;
	bool mapped;
	struct span msg;     /* the message, inside data */
	struct span auth;    /* our Authentication-Results field(s), inside data; may be empty */
};

/*
 * spool_rec_parse fills *out from one valid record rec[0..len) (as
 * spool_rec_check accepted it): the envelope from the head, spans for the
 * message and auth block. It does not take `rec`; spool_entry_fini frees
 * only the envelope unless out->data is set by the caller. 0, -EINVAL or
 * -ENOMEM.
 */
int spool_rec_parse(struct spool_entry *out, const uint8_t *rec, size_t len);

/*
 * spool_dead_parse reads a dead letter (SPOOL/failed/ID, written by the
 * delivery worker: the envelope text with "msg_len", "auth_len" and
 * "error" lines, an empty line, the message, our auth block) like
 * spool_rec_parse: the spans borrow data. 0, -EINVAL or -ENOMEM.
 */
int spool_dead_parse(struct spool_entry *out, const uint8_t *data, size_t len);

void spool_entry_fini(struct spool_entry *e);

/* spool_make_id formats a unique id from the time, the shard and a counter. */
void spool_make_id(char out[MSG_ID_MAX], int64_t received_us, unsigned shard, uint32_t seq);

/* --------------------------------------------------------- the log (spool_log.c) */

enum seg_state {
	SEG_FREE = 0,  /* in the pool: header written for its generation, no records */
	SEG_ACTIVE,    /* the shard appends to it */
	SEG_SPILL,     /* one large record streams into it */
	SEG_SEALED,    /* no more appends; recycled when live reaches 0 */
	SEG_RECYCLING, /* a worker is giving it its next generation */
	SEG_STATE_COUNT
};

struct spool_seg {
	int fd, done_fd;
	uint32_t n;
	uint64_t gen;
	uint64_t size;       /* current file size */
	enum seg_state state; /* guarded by the log's mu */
	uint32_t live;       /* records reserved or queued, not yet done; guarded by mu */
	uint32_t num_slots;  /* records given a slot in this generation (shard or recovery) */
	uint64_t tail;       /* next append offset (ACTIVE: shard-owned) */
	uint8_t *done;       /* done bytes by slot, worker-owned */
	uint32_t done_cap;
	bool done_dirty;     /* done bytes written but not yet fdatasync'd (worker) */
	bool unrecycled;     /* SEALED and empty, but its recycling failed: tried again; mu */
};

/*
 * One shard's log: its segments and free pool, shared by the shard (takes
 * free segments, seals full ones) and its delivery worker (marks records
 * done, recycles, makes new segments). Every field marked "mu" is guarded
 * by mu; the critical sections are a few instructions.
 */
struct spool_log {
	pthread_mutex_t mu;
	unsigned shard;
	int dirfd;                 /* SPOOL/log */
	uint64_t seg_size;         /* standard segment size */
	uint32_t max_segs;         /* --spool-max-size / seg_size */
	struct spool_seg **segs;   /* by n; mu for the array, entries stay put */
	uint32_t num_segs, cap_segs;
	uint32_t *free;            /* stack of free segment numbers; mu */
	uint32_t num_free;
	bool want_seg;             /* the shard needs a segment made; mu */
	int make_err;              /* last failure making one (-ENOSPC ...); mu */
	bool make_now;             /* a take asked for an attempt at once, past the 1 s back-off; mu */
	uint64_t make_tries;       /* attempts to make a segment finished so far; mu */
	uint64_t make_started;     /* attempts begun (spool_log_make_begin); mu */
	uint32_t num_unrecycled;   /* segments whose recycling failed (unrecycled); mu */
	uint32_t reserve;          /* free segments the worker keeps ready */
	uint32_t num_sinks;
};

/* The spool's directories, opened once at start-up. */
struct spool_dirs {
	int log;    /* segments and done files */
	int failed; /* dead letters: one file per message a sink refused for good */
	int ctl;    /* requests from `oceanmx spool retry|delete` */
};

/*
 * SPOOL/sinks names the configured sinks, one spec per line in --sink order
 * (bit i of a done byte is line i+1), so `oceanmx spool` can tell what each
 * sink still owes without the server's configuration. Written at start-up.
 */
#define SPOOL_SINKS_FILE "sinks"

/* spool_write_sinks replaces SPOOL/sinks with specs[0..n). Blocking; 0 or -errno. */
int spool_write_sinks(const char *spool_dir, char *const *specs, unsigned n);

/* spool_open creates SPOOL/{log,failed,ctl} and opens them. 0 or -errno. */
int spool_open(struct spool_dirs *out, const char *spool_dir);
void spool_close(struct spool_dirs *d);

/* spool_log_new makes an empty log (no segments yet); NULL on ENOMEM. */
struct spool_log *spool_log_new(int dirfd, unsigned shard, uint64_t seg_size, uint64_t max_size,
				uint32_t num_sinks);
void spool_log_free(struct spool_log *l);

/*
 * spool_log_make_segment adds a segment to the free pool: it recycles one
 * whose recycling failed before (a transient I/O error or a full disk), or,
 * when there is none or it fails again, makes the next file (allocated,
 * header written, durable) unless that would pass --spool-max-size.
 * Blocking: main thread or the log's worker. 0 or -errno.
 */
int spool_log_make_segment(struct spool_log *l);

/*
 * spool_log_take takes a free segment for `state` (SEG_ACTIVE or
 * SEG_SPILL) into *out. 0; -EAGAIN when one is being made (try again
 * soon); -ENOSPC when the spool is at --spool-max-size or the disk is
 * full. Sets want_seg when the pool runs low; the caller then wakes the
 * worker (returned true in *out_wake). Any thread.
 *
 * io_ticket (may be NULL) is the caller's place in line for an attempt to
 * make a segment, 0 when it has none. When the last attempt failed (a full
 * disk, an I/O error), a take does not answer with that old failure: it
 * asks the worker for a fresh attempt at once, stores its ticket and
 * returns -EAGAIN; a take with a ticket whose attempt has finished gets
 * that attempt's outcome. So the first transaction after a fault clears
 * gets a segment, and while the fault holds each waiter gets the error of
 * an attempt made after it asked. *io_ticket is 0 again on any return but
 * -EAGAIN. Without io_ticket the last failure is answered at once.
 */
int spool_log_take(struct spool_log *l, enum seg_state state, struct spool_seg **out, bool *out_wake,
		   uint64_t *io_ticket);

/*
 * spool_log_make_begin tells the worker whether to try to make a segment
 * now: one is wanted, and a waiting transaction asked for it at once
 * (*out_now) or backoff_over (the worker's once-a-second pace for its own
 * reserve). A true return counts the attempt as begun, so a take that asks
 * while it runs waits for the next one: an attempt that began under a fault
 * never answers a transaction that came after the fault cleared. Worker.
 */
bool spool_log_make_begin(struct spool_log *l, bool backoff_over, bool *out_now);

/*
 * spool_log_make_done records the outcome of an attempt to make a segment
 * (0 or -errno from spool_log_make_segment) for the takes waiting on it.
 * Returns whether the pool still wants one. Worker thread.
 */
bool spool_log_make_done(struct spool_log *l, int rc);

/*
 * spool_log_seal ends appends to seg. Returns true when it has no live
 * record left, so the caller must have it recycled (by the worker).
 */
bool spool_log_seal(struct spool_log *l, struct spool_seg *seg);

/* spool_log_state reads seg's state under the log's lock. Any thread. */
enum seg_state spool_log_state(struct spool_log *l, struct spool_seg *seg);

/* spool_log_ref adds a live record to seg (reservation). */
void spool_log_ref(struct spool_log *l, struct spool_seg *seg);

/* spool_log_unref drops one; true when seg is sealed and now empty: recycle it. */
bool spool_log_unref(struct spool_log *l, struct spool_seg *seg);

/*
 * spool_log_recycle gives seg its next generation (truncated back to the
 * standard size, header rewritten and made durable, done file reset) and
 * returns it to the free pool. On failure (an I/O error, a full disk) it
 * stays out of the pool, marked unrecycled, and the worker's next attempt
 * to make a segment tries it again, so a fault that clears costs no
 * segment. Blocking: worker or main thread. 0 or -errno.
 */
int spool_log_recycle(struct spool_log *l, struct spool_seg *seg);

/*
 * spool_log_recycle_later leaves seg (SEG_RECYCLING, empty) for the worker's
 * next attempt to make a segment, as a failed recycle does: for a caller
 * that can not recycle it now (out of memory for the request). Any thread.
 */
void spool_log_recycle_later(struct spool_log *l, struct spool_seg *seg);

/*
 * spool_log_mark records done bits for seg's slot (OR'ed in); the worker
 * makes them durable with spool_log_sync_done. Worker only. 0 or -errno.
 */
int spool_log_mark(struct spool_log *l, struct spool_seg *seg, uint32_t slot, uint8_t bits);
uint8_t spool_log_done_bits(const struct spool_seg *seg, uint32_t slot);
void spool_log_sync_done(struct spool_log *l);

/* What recovery found in one segment, for its caller to queue. */
struct spool_found {
	struct spool_seg *seg;
	uint64_t off, len;
	uint32_t slot;
	uint8_t done;
	char id[SPOOL_REC_ID_LEN];
};
typedef void spool_found_fn(void *arg, const struct spool_found *f);

/*
 * spool_log_recover opens every SPOOL/log/s<shard>-*.seg of this log, scans
 * it, calls fn for each valid record that is not done for every sink, and
 * sets up the pool: segments with pending records are sealed, the others
 * free (recycled when they held records). Main thread. 0 or -errno.
 */
int spool_log_recover(struct spool_log *l, spool_found_fn *fn, void *arg, uint32_t *out_records);

/* spool_shards_present returns 1 + the highest shard number with a segment in dirfd (0 if none). */
unsigned spool_shards_present(int dirfd);

/* spool_seg_name formats "s<shard>-<n>.seg" or ".done". */
void spool_seg_name(char *out, size_t cap, unsigned shard, uint32_t n, const char *ext);

#endif
