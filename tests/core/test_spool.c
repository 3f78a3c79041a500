/*
 * test_spool.c - the spool's record and segment formats (core/spool.c) and
 * the segment scanner: round trip, a torn record at the tail, a bad CRC in
 * the middle, a zero-filled tail, stale records of an earlier generation,
 * every truncation point; and the log's files (core/spool_log.c):
 * segments made, recycled (next generation, standard size) and recovered.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/spool.h"
#include "tests/support/guard.h"

static char *rcpts[] = { "a@example.com", "\"odd local\"@example.org" };

static void make_env(struct msg_env *e, const char *id)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->received_us = 1764145800123456;
	strcpy(e->client_ip, "2001:db8::1");
	e->client_port = 40123;
	e->helo = "client.example";
	e->esmtp = true;
	e->smtputf8 = true;
	e->body = MSG_BODY_8BITMIME;
	e->mail_from = "";
	e->rcpts = rcpts;
	e->num_rcpts = 2;
}

/* make_record appends one padded record for (gen, slot) to out, as the shard builds it. */
static size_t make_record(struct bb *out, uint64_t gen, uint32_t slot, const char *id, const char *msg,
			  const char *auth)
{
	struct msg_env env;
	struct bb payload;
	struct spool_rec_hdr h;
	uint8_t hdr[SPOOL_REC_HDR_LEN], trl[SPOOL_REC_TRL_LEN];
	static const uint8_t zeros[8];
	size_t head_len, start = out->len;
	uint64_t len;

	make_env(&env, id);
	bb_init(&payload, 0);
	cr_assert_eq(spool_head_format(&payload, &env), 0);
	head_len = payload.len;
	cr_assert_eq(bb_append_str(&payload, msg), 0);
	cr_assert_eq(bb_append_str(&payload, auth), 0);
	memset(&h, 0, sizeof(h));
	h.gen = gen;
	h.slot = slot;
	h.head_len = (uint32_t)head_len;
	h.msg_len = strlen(msg);
	h.auth_len = (uint32_t)strlen(auth);
	snprintf(h.id, sizeof(h.id), "%s", id);
	spool_rec_hdr_encode(hdr, &h);
	len = spool_rec_trailer_encode(trl, hdr, crc32c_update(0, payload.p, payload.len), payload.len);
	cr_assert_eq(len, SPOOL_REC_HDR_LEN + payload.len + SPOOL_REC_TRL_LEN);
	cr_assert_eq(bb_append(out, hdr, sizeof(hdr)), 0);
	cr_assert_eq(bb_append_span(out, bb_span(&payload)), 0);
	cr_assert_eq(bb_append(out, trl, sizeof(trl)), 0);
	cr_assert_eq(bb_append(out, zeros, spool_rec_padded(len) - len), 0);
	bb_fini(&payload);
	return out->len - start;
}

/* make_segment builds a segment image: header, then n records of generation gen. */
static void make_segment(struct bb *seg, uint64_t gen, unsigned n, size_t *offs)
{
	struct spool_seg_hdr sh = { .shard = 0, .n = 0, .gen = gen, .std_size = 1 << 20 };
	uint8_t hb[SPOOL_SEG_HDR_USED];

	bb_init(seg, 0);
	spool_seg_hdr_encode(hb, &sh);
	cr_assert_eq(bb_append(seg, hb, sizeof(hb)), 0);
	cr_assert_eq(bb_reserve(seg, SPOOL_SEG_HDR_LEN), 0);
	memset(seg->p + seg->len, 0, SPOOL_SEG_HDR_LEN - seg->len);
	seg->len = SPOOL_SEG_HDR_LEN;
	for (unsigned i = 0; i < n; i++) {
		char id[32], msg[128];

		snprintf(id, sizeof(id), "19C2A7F0E3D1A00%02u", i);
		snprintf(msg, sizeof(msg), "Received: x\r\nSubject: %u\r\n\r\nbody %u%s\r\n", i, i, i % 2 ? " odd" : "");
		if (offs != NULL) {
			offs[i] = seg->len;
		}
		make_record(seg, gen, i, id, msg, i == 1 ? "Authentication-Results: mx; none\r\n" : "");
	}
}

struct seen {
	unsigned n;
	uint64_t off[16];
};

static void on_rec(void *arg, const struct spool_rec_hdr *h, uint64_t off, uint64_t len)
{
	struct seen *s = arg;

	(void)len;
	cr_assert_eq(h->slot, s->n);
	s->off[s->n++] = off;
}

Test(spool_format, segment_header_round_trip_and_corruption)
{
	struct spool_seg_hdr in = { .shard = 3, .n = 7, .gen = 42, .std_size = 64 << 20 }, out;
	uint8_t b[SPOOL_SEG_HDR_USED];

	spool_seg_hdr_encode(b, &in);
	cr_assert(spool_seg_hdr_decode(&out, b, sizeof(b)));
	cr_assert_eq(out.shard, 3);
	cr_assert_eq(out.n, 7);
	cr_assert_eq(out.gen, 42);
	cr_assert_eq(out.std_size, 64 << 20);
	for (size_t i = 0; i < sizeof(b); i++) {
		b[i] ^= 0x10;
		cr_assert_not(spool_seg_hdr_decode(&out, b, sizeof(b)), "flipped byte %zu accepted", i);
		b[i] ^= 0x10;
	}
	cr_assert_not(spool_seg_hdr_decode(&out, b, sizeof(b) - 1));
}

Test(spool_format, record_round_trip)
{
	struct bb r;
	struct spool_rec_hdr h;
	struct spool_entry e;
	uint64_t len;
	const char *msg = "Received: from x\r\nSubject: hi\r\n\r\nbody\r\n";
	const char *auth = "Authentication-Results: mx.test; spf=pass\r\n";

	bb_init(&r, 0);
	make_record(&r, 5, 0, "19C2A7F0E3D1A0001", msg, auth);
	cr_assert_eq(r.len % SPOOL_REC_ALIGN, 0);
	cr_assert(spool_rec_check(&h, &len, r.p, r.len, 5, 0));
	cr_assert_str_eq(h.id, "19C2A7F0E3D1A0001");
	cr_assert_not(spool_rec_check(&h, &len, r.p, r.len, 6, 0), "another generation");
	cr_assert_not(spool_rec_check(&h, &len, r.p, r.len, 5, 1), "another slot");
	cr_assert_eq(spool_rec_parse(&e, r.p, (size_t)len), 0);
	cr_assert_str_eq(e.env.id, "19C2A7F0E3D1A0001");
	cr_assert_str_eq(e.env.client_ip, "2001:db8::1");
	cr_assert_eq(e.env.client_port, 40123);
	cr_assert_str_eq(e.env.helo, "client.example");
	cr_assert_str_eq(e.env.mail_from, "");
	cr_assert_eq(e.env.num_rcpts, 2);
	cr_assert_str_eq(e.env.rcpts[1], "\"odd local\"@example.org");
	cr_assert_eq(e.env.body, MSG_BODY_8BITMIME);
	cr_assert(e.env.smtputf8);
	cr_assert_eq(e.msg.len, strlen(msg));
	cr_assert_eq(memcmp(e.msg.p, msg, e.msg.len), 0);
	cr_assert_eq(e.auth.len, strlen(auth));
	cr_assert_eq(memcmp(e.auth.p, auth, e.auth.len), 0);
	spool_entry_fini(&e);
	bb_fini(&r);
}

Test(spool_format, record_every_truncation_and_every_flip_is_rejected)
{
	struct bb r;
	struct spool_rec_hdr h;
	uint64_t len, rlen;

	bb_init(&r, 0);
	make_record(&r, 1, 0, "19C2A7F0E3D1A0001", "Subject: t\r\n\r\nx\r\n", "");
	cr_assert(spool_rec_check(&h, &rlen, r.p, r.len, 1, 0));
	for (size_t n = 0; n < rlen; n++) {
		/* Guard pages: a read past n faults even without ASan. */
		const uint8_t *g = guard_copy(r.p, n);

		cr_assert_not(spool_rec_check(&h, &len, g, n, 1, 0), "accepted at %zu of %llu bytes", n,
			      (unsigned long long)rlen);
		guard_release(g, n);
	}
	for (size_t i = 0; i < rlen; i++) {
		if (i >= 36 && i < 40) {
			continue; /* reserved field: nonzero is rejected too, checked below */
		}
		r.p[i] ^= 0x01;
		cr_assert_not(spool_rec_check(&h, &len, r.p, r.len, 1, 0), "flipped byte %zu accepted", i);
		r.p[i] ^= 0x01;
	}
	r.p[36] = 1;
	cr_assert_not(spool_rec_check(&h, &len, r.p, r.len, 1, 0));
	bb_fini(&r);
}

Test(spool_scan, finds_every_record_then_stops_at_a_zero_tail)
{
	struct bb seg;
	struct seen s = { 0 };
	size_t offs[4];
	uint64_t end;

	make_segment(&seg, 9, 4, offs);
	cr_assert_eq(bb_reserve(&seg, 4096), 0);
	memset(seg.p + seg.len, 0, 4096);
	cr_assert_eq(spool_scan(seg.p, seg.len + 4096, 9, on_rec, &s, &end), 4);
	cr_assert_eq(s.n, 4);
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(s.off[i], offs[i]);
	}
	cr_assert_eq(end, seg.len);
	bb_fini(&seg);
}

Test(spool_scan, torn_record_at_the_tail_every_truncation_point)
{
	struct bb seg;
	size_t offs[3];
	uint64_t end;

	struct spool_rec_hdr h;
	uint64_t rlen;

	make_segment(&seg, 2, 3, offs);
	cr_assert(spool_rec_check(&h, &rlen, seg.p + offs[2], seg.len - offs[2], 2, 2));
	for (size_t n = offs[2]; n < offs[2] + rlen; n++) {
		const uint8_t *g = guard_copy(seg.p, n);

		cr_assert_eq(spool_scan(g, n, 2, NULL, NULL, &end), 2, "cut at %zu", n);
		cr_assert_eq(end, offs[2]);
		guard_release(g, n);
	}
	cr_assert_eq(spool_scan(seg.p, seg.len, 2, NULL, NULL, NULL), 3);
	bb_fini(&seg);
}

Test(spool_scan, torn_middle_of_a_record_with_zeros_in_place)
{
	struct bb seg;
	size_t offs[3];

	/* Blocks reach a journal-less disk in any order: the last record's
	 * middle may be zeros while its trailer made it. */
	make_segment(&seg, 2, 3, offs);
	memset(seg.p + offs[2] + SPOOL_REC_HDR_LEN, 0, 16);
	cr_assert_eq(spool_scan(seg.p, seg.len, 2, NULL, NULL, NULL), 2);
	bb_fini(&seg);
}

Test(spool_scan, bad_crc_in_the_middle_stops_there)
{
	struct bb seg;
	size_t offs[4];
	uint64_t end;

	make_segment(&seg, 3, 4, offs);
	seg.p[offs[1] + SPOOL_REC_HDR_LEN + 20] ^= 0x40;
	cr_assert_eq(spool_scan(seg.p, seg.len, 3, NULL, NULL, &end), 1);
	cr_assert_eq(end, offs[1]);
	bb_fini(&seg);
}

Test(spool_scan, stale_records_of_an_earlier_generation_are_not_read)
{
	struct bb old, cur;
	size_t offs[3];

	/* A recycled segment: generation 4 wrote three records, generation 5
	 * only one so far; what follows it is generation 4's. */
	make_segment(&old, 4, 3, offs);
	make_segment(&cur, 5, 1, NULL);
	memcpy(old.p + SPOOL_SEG_HDR_LEN, cur.p + SPOOL_SEG_HDR_LEN, cur.len - SPOOL_SEG_HDR_LEN);
	cr_assert_eq(spool_scan(old.p, old.len, 5, NULL, NULL, NULL), 1);
	cr_assert_eq(spool_scan(old.p, old.len, 4, NULL, NULL, NULL), 0);
	bb_fini(&old);
	bb_fini(&cur);
}

/* ---------------------------------------------------------------- the log files */

Test(spool_format, dead_letter_round_trip)
{
	struct msg_env env;
	struct spool_entry e;
	struct bb b;
	const char *msg = "Received: x\r\n\r\nbody\r\n", *auth = "Authentication-Results: mx; none\r\n";

	make_env(&env, "DEAD1");
	bb_init(&b, 0);
	cr_assert_eq(spool_head_format(&b, &env), 0);
	b.len--; /* as the delivery worker writes it: lengths and error before the empty line */
	cr_assert_eq(bb_printf(&b, "msg_len %zu\nauth_len %zu\nerror http 400: no\n\n%s%s", strlen(msg), strlen(auth),
			       msg, auth), 0);
	cr_assert_eq(spool_dead_parse(&e, b.p, b.len), 0);
	cr_assert_str_eq(e.env.id, "DEAD1");
	cr_assert_eq(e.env.num_rcpts, 2);
	cr_assert_str_eq(e.env.rcpts[1], "\"odd local\"@example.org");
	cr_assert(e.msg.len == strlen(msg) && memcmp(e.msg.p, msg, e.msg.len) == 0);
	cr_assert(e.auth.len == strlen(auth) && memcmp(e.auth.p, auth, e.auth.len) == 0);
	spool_entry_fini(&e);
	/* Cut anywhere, it is refused, never misread. */
	for (size_t n = 0; n < b.len; n++) {
		cr_assert_neq(spool_dead_parse(&e, b.p, n), 0, "accepted %zu of %zu bytes", n, b.len);
	}
	bb_fini(&b);
}

static char tmpdir[64];
static int dirfd_;

static void log_setup(void)
{
	strcpy(tmpdir, "/tmp/omx-test-spool-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	dirfd_ = open(tmpdir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(dirfd_, 0);
}

static void log_teardown(void)
{
	char cmd[128];

	close(dirfd_);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static void count_found(void *arg, const struct spool_found *f)
{
	unsigned *n = arg;

	(void)f;
	(*n)++;
}

Test(spool_log, make_take_recycle_recover, .init = log_setup, .fini = log_teardown)
{
	struct spool_log *l = spool_log_new(dirfd_, 0, 256 << 10, 1 << 30, 1);
	struct spool_seg *seg;
	struct bb img;
	struct stat st;
	bool wake;
	unsigned found = 0;
	uint32_t records = 0;
	size_t offs[3];

	cr_assert_not_null(l);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), -EAGAIN);
	cr_assert(wake, "an empty pool asks the worker for a segment");
	cr_assert_eq(spool_log_make_segment(l), 0);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), 0);
	cr_assert_eq(seg->gen, 1);
	/* Three records of generation 1, as the shard would write them. */
	make_segment(&img, 1, 3, offs);
	cr_assert_eq(pwrite(seg->fd, img.p + SPOOL_SEG_HDR_LEN, img.len - SPOOL_SEG_HDR_LEN, SPOOL_SEG_HDR_LEN),
		     (ssize_t)(img.len - SPOOL_SEG_HDR_LEN));
	spool_log_ref(l, seg);
	spool_log_ref(l, seg);
	spool_log_ref(l, seg);
	/* Sink 0 took the first record: only two are pending after a restart. */
	cr_assert_eq(spool_log_mark(l, seg, 0, 1), 0);
	spool_log_sync_done(l);
	spool_log_free(l);

	l = spool_log_new(dirfd_, 0, 256 << 10, 1 << 30, 1);
	cr_assert_eq(spool_log_recover(l, count_found, &found, &records), 0);
	cr_assert_eq(records, 3);
	cr_assert_eq(found, 2);
	seg = l->segs[0];
	cr_assert_eq(seg->state, SEG_SEALED);
	cr_assert_eq(seg->live, 2);
	cr_assert_not(spool_log_unref(l, seg));
	cr_assert(spool_log_unref(l, seg), "the last record done: recycle");
	/* A spill made it larger: recycling brings it back to the standard size. */
	cr_assert_eq(ftruncate(seg->fd, 1 << 20), 0);
	seg->size = 1 << 20;
	cr_assert_eq(spool_log_recycle(l, seg), 0);
	cr_assert_eq(seg->gen, 2);
	cr_assert_eq(fstat(seg->fd, &st), 0);
	cr_assert_eq(st.st_size, 256 << 10);
	cr_assert_eq(l->num_free, 1);
	spool_log_free(l);

	/* Generation 2 has no records: the old ones are never redelivered. */
	found = 0;
	l = spool_log_new(dirfd_, 0, 256 << 10, 1 << 30, 1);
	cr_assert_eq(spool_log_recover(l, count_found, &found, &records), 0);
	cr_assert_eq(found, 0);
	cr_assert_eq(records, 0);
	cr_assert_eq(l->num_free, 1);
	spool_log_free(l);
	bb_fini(&img);
}

Test(spool_log, max_size_answers_enospc, .init = log_setup, .fini = log_teardown)
{
	struct spool_log *l = spool_log_new(dirfd_, 1, 64 << 10, 192 << 10, 1);
	struct spool_seg *seg;
	bool wake;

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(spool_log_make_segment(l), 0);
	}
	cr_assert_eq(spool_log_make_segment(l), -ENOSPC);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), 0);
	}
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), -ENOSPC);
	spool_log_free(l);
}

/* After a failed make, a take with a ticket asks for a fresh attempt and gets its outcome, not the old failure. */
Test(spool_log, failed_make_is_tried_again_for_a_waiting_take, .init = log_setup, .fini = log_teardown)
{
	struct spool_log *l = spool_log_new(dirfd_, 2, 64 << 10, 1 << 30, 1);
	struct spool_seg *seg;
	uint64_t ticket = 0;
	bool wake;

	bool now;

	cr_assert_not_null(l);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), -EAGAIN, "none made yet");
	cr_assert(spool_log_make_begin(l, true, &now));
	spool_log_make_done(l, -EIO); /* the worker's attempt failed under a fault */
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), -EIO, "without a ticket: the last failure");
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &ticket), -EAGAIN, "a fresh attempt is asked for");
	cr_assert(wake);
	cr_assert_neq(ticket, 0);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &ticket), -EAGAIN, "still waiting for it");
	cr_assert_not(wake, "one attempt serves every waiter");
	cr_assert(spool_log_make_begin(l, false, &now));
	cr_assert(now);
	spool_log_make_done(l, -EIO); /* that attempt failed too: the waiter gets it */
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &ticket), -EIO);
	cr_assert_eq(ticket, 0);
	/* The fault clears: the next take asks again and gets the segment made. */
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &ticket), -EAGAIN);
	cr_assert(wake);
	cr_assert(spool_log_make_begin(l, false, &now));
	cr_assert_eq(spool_log_make_segment(l), 0);
	spool_log_make_done(l, 0);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &ticket), 0);
	cr_assert_eq(ticket, 0);
	spool_log_free(l);
}

/* An attempt that began under the fault and fails after a transaction asked does not answer it. */
Test(spool_log, attempt_begun_before_the_ask_does_not_answer_it, .init = log_setup, .fini = log_teardown)
{
	struct spool_log *l = spool_log_new(dirfd_, 2, 64 << 10, 1 << 30, 1);
	struct spool_seg *seg;
	uint64_t t1 = 0, t2 = 0;
	bool wake, now;

	cr_assert_not_null(l);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), -EAGAIN, "none made yet");
	cr_assert(spool_log_make_begin(l, true, &now), "one is wanted");
	spool_log_make_done(l, -ENOSPC); /* under the fault */
	cr_assert_not(spool_log_make_begin(l, true, &now), "not wanted again until a take asks");
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &t1), -EAGAIN, "transaction 1 asks");
	cr_assert(spool_log_make_begin(l, false, &now), "at once, past the back-off");
	cr_assert(now);
	/* The fault clears while that attempt still runs; transaction 2 asks. */
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &t2), -EAGAIN);
	spool_log_make_done(l, -ENOSPC); /* the attempt that began under the fault */
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &t1), -ENOSPC, "transaction 1 gets its attempt's outcome");
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &t2), -EAGAIN, "transaction 2 waits for a newer one");
	cr_assert(wake, "and asks for it");
	cr_assert(spool_log_make_begin(l, false, &now));
	cr_assert_eq(spool_log_make_segment(l), 0);
	spool_log_make_done(l, 0);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, &t2), 0, "transaction 2 gets a segment");
	spool_log_free(l);
}

/*
 * A recycle that fails (here: the segment's fd made read-only, as an I/O
 * error would) keeps the segment out of the pool, but not for good: the
 * next attempt to make a segment recycles it rather than a new file, even
 * at --spool-max-size, so a fault that clears costs no segment.
 */
Test(spool_log, failed_recycle_is_tried_again_before_a_new_file, .init = log_setup, .fini = log_teardown)
{
	struct spool_log *l = spool_log_new(dirfd_, 1, 64 << 10, 192 << 10, 1);
	struct spool_seg *seg, *got;
	char path[64];
	int rw, ro;
	bool wake, now;
	uint64_t gen;

	cr_assert_not_null(l);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(spool_log_make_segment(l), 0);
	}
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), 0);
	}
	gen = seg->gen;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", seg->fd);
	rw = dup(seg->fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(rw >= 0 && ro >= 0);
	cr_assert_eq(dup2(ro, seg->fd), seg->fd);
	cr_assert(spool_log_seal(l, seg), "sealed with no record: recycle it");
	cr_assert_lt(spool_log_recycle(l, seg), 0, "the header cannot be written");
	cr_assert_eq(l->num_unrecycled, 1);
	cr_assert_eq(seg->state, SEG_SEALED);

	/* At the size bound, a take still waits for it rather than answering ENOSPC. */
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &got, &wake, NULL), -EAGAIN);
	cr_assert(spool_log_make_begin(l, true, &now), "the worker is asked to try again");
	cr_assert_eq(dup2(rw, seg->fd), seg->fd); /* the fault clears */
	cr_assert_eq(spool_log_make_segment(l), 0);
	spool_log_make_done(l, 0);
	cr_assert_eq(l->num_segs, 3, "no new file");
	cr_assert_eq(l->num_unrecycled, 0);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &got, &wake, NULL), 0);
	cr_assert_eq(got, seg);
	cr_assert_gt(got->gen, gen);
	close(rw);
	close(ro);
	spool_log_free(l);
}

/* A recycle put off (no memory for the worker's request) is done by the next attempt to make a segment. */
Test(spool_log, recycle_put_off_is_done_by_the_next_make, .init = log_setup, .fini = log_teardown)
{
	struct spool_log *l = spool_log_new(dirfd_, 1, 64 << 10, 1 << 30, 1);
	struct spool_seg *seg, *got;
	bool wake, now;

	cr_assert_not_null(l);
	cr_assert_eq(spool_log_make_segment(l), 0);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), 0);
	cr_assert(spool_log_seal(l, seg));
	spool_log_recycle_later(l, seg);
	cr_assert_eq(l->num_unrecycled, 1);
	cr_assert(spool_log_make_begin(l, true, &now), "a make is wanted");
	cr_assert_eq(spool_log_make_segment(l), 0);
	spool_log_make_done(l, 0);
	cr_assert_eq(l->num_segs, 1, "no new file");
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &got, &wake, NULL), 0);
	cr_assert_eq(got, seg);
	cr_assert_eq(got->gen, 2);
	spool_log_free(l);
}

/* A segment that keeps failing its recycle does not stop the pool from growing by new files. */
Test(spool_log, segment_that_keeps_failing_does_not_block_new_files, .init = log_setup, .fini = log_teardown)
{
	struct spool_log *l = spool_log_new(dirfd_, 1, 64 << 10, 1 << 30, 1);
	struct spool_seg *seg, *got;
	char path[64];
	int ro;
	bool wake;

	cr_assert_not_null(l);
	cr_assert_eq(spool_log_make_segment(l), 0);
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &seg, &wake, NULL), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", seg->fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(ro, 0);
	cr_assert_eq(dup2(ro, seg->fd), seg->fd); /* this file's fault stays */
	cr_assert(spool_log_seal(l, seg));
	cr_assert_lt(spool_log_recycle(l, seg), 0);
	cr_assert_eq(spool_log_make_segment(l), 0, "its recycle fails again: a new file instead");
	cr_assert_eq(l->num_segs, 2);
	cr_assert_eq(l->num_unrecycled, 1, "still tried again later");
	cr_assert_eq(spool_log_take(l, SEG_ACTIVE, &got, &wake, NULL), 0);
	cr_assert_neq(got, seg);
	close(ro);
	spool_log_free(l);
}
