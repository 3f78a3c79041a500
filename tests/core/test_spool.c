/* test_spool.c - spool file format: round trip, and every truncation is rejected. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/spool.h"
#include "tests/support/guard.h"

static char *rcpts[] = { "a@example.com", "\"odd local\"@example.org" };

static void make_env(struct msg_env *e)
{
	memset(e, 0, sizeof(*e));
	strcpy(e->id, "19C2A7F0E3D1A0001");
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

static FILE *fopenat_w(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	cr_assert_not_null(f);
	return f;
}

static int truncate_at(int dfd, const char *name, off_t len)
{
	int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC), rc;

	if (fd < 0) {
		return -1;
	}
	rc = ftruncate(fd, len);
	close(fd);
	return rc;
}

static struct bb build_file(const char *msg)
{
	struct msg_env e;
	struct bb b;
	char tr[SPOOL_TRAILER_LEN + 1];

	make_env(&e);
	bb_init(&b, 0);
	cr_assert_eq(spool_head_format(&b, &e), 0);
	cr_assert_eq(bb_append_str(&b, msg), 0);
	spool_trailer_format(tr, strlen(msg), crc32c_update(0, msg, strlen(msg)), 0);
	cr_assert_eq(bb_append(&b, tr, SPOOL_TRAILER_LEN), 0);
	return b;
}

Test(spool, round_trip_keeps_envelope_and_bytes)
{
	const char *msg = "Received: x\r\n\r\nbody\r\n.\r\nOMXEND not a trailer\r\n";
	struct bb b = build_file(msg);
	struct spool_entry ent;
	uint8_t *copy = malloc(b.len);

	memcpy(copy, b.p, b.len);
	cr_assert_eq(spool_parse(&ent, copy, b.len), 0);
	cr_assert_str_eq(ent.env.id, "19C2A7F0E3D1A0001");
	cr_assert_eq(ent.env.received_us, 1764145800123456);
	cr_assert_str_eq(ent.env.client_ip, "2001:db8::1");
	cr_assert_eq(ent.env.client_port, 40123);
	cr_assert_str_eq(ent.env.helo, "client.example");
	cr_assert(ent.env.esmtp && ent.env.smtputf8);
	cr_assert_eq(ent.env.body, MSG_BODY_8BITMIME);
	cr_assert_str_eq(ent.env.mail_from, "");
	cr_assert_eq(ent.env.num_rcpts, 2);
	cr_assert_str_eq(ent.env.rcpts[1], "\"odd local\"@example.org");
	cr_assert_eq(ent.msg.len, strlen(msg));
	cr_assert_eq(memcmp(ent.msg.p, msg, ent.msg.len), 0);
	cr_assert_eq(ent.env.size, strlen(msg));
	spool_entry_fini(&ent);
	bb_fini(&b);
}

Test(spool, every_truncation_is_rejected)
{
	struct bb b = build_file("Subject: t\r\n\r\nhello\r\n");

	for (size_t n = 0; n < b.len; n++) {
		struct spool_entry ent;
		const uint8_t *g = guard_copy(b.p, n);
		uint8_t *copy = malloc(n ? n : 1);

		memcpy(copy, g, n);
		cr_assert_eq(spool_parse(&ent, copy, n), -EINVAL, "truncated at %zu accepted", n);
		free(copy);
		guard_release(g, n);
	}
	bb_fini(&b);
}

Test(spool, wrong_length_in_trailer_is_rejected)
{
	struct bb b = build_file("abc");
	struct spool_entry ent;
	uint8_t *copy;

	/* One byte more in the message than the trailer announces. */
	b.p[b.len - SPOOL_TRAILER_LEN - 1] = 'c';
	copy = malloc(b.len + 1);
	memcpy(copy, b.p, b.len - SPOOL_TRAILER_LEN);
	copy[b.len - SPOOL_TRAILER_LEN] = 'x';
	memcpy(copy + b.len - SPOOL_TRAILER_LEN + 1, b.p + b.len - SPOOL_TRAILER_LEN, SPOOL_TRAILER_LEN);
	cr_assert_eq(spool_parse(&ent, copy, b.len + 1), -EINVAL);
	free(copy);
	bb_fini(&b);
}

Test(spool, ids_are_unique_and_sortable)
{
	char a[MSG_ID_MAX], b[MSG_ID_MAX], c[MSG_ID_MAX];

	spool_make_id(a, 1764145800123456, 0, 1);
	spool_make_id(b, 1764145800123456, 0, 2);
	spool_make_id(c, 1764145800123457, 1, 0);
	cr_assert_str_neq(a, b);
	cr_assert_lt(strcmp(a, b), 0);
	cr_assert_lt(strcmp(b, c), 0);
	cr_assert_lt(strlen(a), MSG_ID_MAX);
}

/* Found by fuzz_spool: a trailer overlapping the magic line underflowed the length. */
Test(spool, trailer_overlapping_magic_is_rejected)
{
	static const char in[] = "OMX1\nOMXEND 0000000000000003 00000000 00000000\n";
	const uint8_t *g = guard_copy(in, sizeof(in) - 1);
	uint8_t *copy = malloc(sizeof(in) - 1);
	struct spool_entry ent;

	memcpy(copy, g, sizeof(in) - 1);
	cr_assert_eq(spool_parse(&ent, copy, sizeof(in) - 1), -EINVAL);
	free(copy);
	guard_release(g, sizeof(in) - 1);
}

/* A block of the message that never reached the disk (zeros) is caught by the checksum. */
Test(spool, lost_block_is_rejected_by_checksum)
{
	struct bb b = build_file("Subject: t\r\n\r\nhello world\r\n");
	struct spool_entry ent;
	uint8_t *copy = malloc(b.len);

	memcpy(copy, b.p, b.len);
	memset(copy + b.len - SPOOL_TRAILER_LEN - 8, 0, 4);
	cr_assert_eq(spool_parse(&ent, copy, b.len), -EINVAL);
	free(copy);
	bb_fini(&b);
}

Test(crc32c, known_answers)
{
	/* RFC 3720 B.4 test vectors. */
	uint8_t zeros[32] = { 0 }, ones[32], inc[32];

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++) {
		inc[i] = (uint8_t)i;
	}
	cr_assert_eq(crc32c_update(0, zeros, 32), 0x8A9136AAu);
	cr_assert_eq(crc32c_update(0, ones, 32), 0x62A8AB43u);
	cr_assert_eq(crc32c_update(0, inc, 32), 0x46DD794Eu);
	cr_assert_eq(crc32c_update(0, "123456789", 9), 0xE3069283u);
	/* Incremental equals whole, at every split. */
	for (size_t k = 0; k <= 32; k++) {
		cr_assert_eq(crc32c_update(crc32c_update(0, inc, k), inc + k, 32 - k), 0x46DD794Eu);
	}
}

Test(spool_pool, lifo_bounded_and_rejects_long_names)
{
	struct spool_pool *p = spool_pool_new(2);
	char out[MSG_ID_MAX];
	char longname[MSG_ID_MAX + 4];

	cr_assert_not(spool_pool_get(p, out), "empty pool gave a name");
	cr_assert(spool_pool_has_room(p));
	cr_assert(spool_pool_put(p, "A1"));
	cr_assert(spool_pool_put(p, "B2"));
	cr_assert_not(spool_pool_has_room(p));
	cr_assert_not(spool_pool_put(p, "C3"), "pool over its cap");
	cr_assert(spool_pool_get(p, out));
	cr_assert_str_eq(out, "B2");
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_assert_not(spool_pool_put(p, longname), "a name longer than an id was kept");
	cr_assert(spool_pool_get(p, out));
	cr_assert_str_eq(out, "A1");
	cr_assert_not(spool_pool_get(p, out));
	spool_pool_free(p);
}

/* The auth block sits between message and trailer; both are covered by the checksum. */
Test(spool, auth_block_round_trip)
{
	const char *msg = "Received: x\r\n\r\nbody\r\n";
	const char *auth = "Authentication-Results: mx.test; dkim=pass header.d=x.test\r\n";
	struct msg_env e;
	struct spool_entry ent;
	struct bb b;
	char tr[SPOOL_TRAILER_LEN + 1];
	uint32_t crc = crc32c_update(crc32c_update(0, msg, strlen(msg)), auth, strlen(auth));

	make_env(&e);
	bb_init(&b, 0);
	cr_assert_eq(spool_head_format(&b, &e), 0);
	cr_assert_eq(bb_append_str(&b, msg), 0);
	cr_assert_eq(bb_append_str(&b, auth), 0);
	spool_trailer_format(tr, strlen(msg), crc, (uint32_t)strlen(auth));
	cr_assert_eq(bb_append(&b, tr, SPOOL_TRAILER_LEN), 0);
	uint8_t *copy = malloc(b.len);
	memcpy(copy, b.p, b.len);
	cr_assert_eq(spool_parse(&ent, copy, b.len), 0);
	cr_assert_eq(ent.msg.len, strlen(msg));
	cr_assert_eq(memcmp(ent.msg.p, msg, ent.msg.len), 0);
	cr_assert_eq(ent.auth.len, strlen(auth));
	cr_assert_eq(memcmp(ent.auth.p, auth, ent.auth.len), 0);
	spool_entry_fini(&ent);
	/* A flipped byte in the auth block is caught too. */
	copy = malloc(b.len);
	memcpy(copy, b.p, b.len);
	copy[b.len - SPOOL_TRAILER_LEN - 3] ^= 1;
	cr_assert_eq(spool_parse(&ent, copy, b.len), -EINVAL);
	free(copy);
	bb_fini(&b);
}

/*
 * spool_load reads small files into the heap and maps large ones; both
 * give the same entry, and a damaged file is refused either way.
 */
static void load_check(size_t body_len)
{
	char dir[] = "/tmp/omx-spool-load.XXXXXX";
	char *msg = malloc(body_len + 1);
	struct spool_entry ent;
	struct bb b;
	int dfd;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	for (size_t i = 0; i < body_len; i++) {
		msg[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
	}
	msg[body_len] = '\0';
	b = build_file(msg);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert(dfd >= 0);
	f = fopenat_w(dfd, "m1");
	cr_assert_eq(fwrite(b.p, 1, b.len, f), b.len);
	fclose(f);
	cr_assert_eq(spool_load(&ent, dfd, "m1"), 0);
	cr_assert_eq(ent.mapped, b.len > SPOOL_READ_MAX);
	cr_assert_eq(ent.msg.len, body_len);
	cr_assert_eq(memcmp(ent.msg.p, msg, body_len), 0);
	cr_assert_str_eq(ent.env.rcpts[0], "a@example.com");
	spool_entry_fini(&ent);
	/* Cut the trailer short: never acknowledged, so refused. */
	cr_assert_eq(truncate_at(dfd, "m1", (off_t)b.len - 3), 0);
	cr_assert_eq(spool_load(&ent, dfd, "m1"), -EINVAL);
	cr_assert_eq(spool_load(&ent, dfd, "absent"), -ENOENT);
	unlinkat(dfd, "m1", 0);
	close(dfd);
	rmdir(dir);
	bb_fini(&b);
	free(msg);
}

Test(spool, load_small_file_is_read)
{
	load_check(4000);
}

Test(spool, load_large_file_is_mapped)
{
	load_check(SPOOL_READ_MAX + 1000);
}
