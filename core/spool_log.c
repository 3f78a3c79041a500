/*
 * spool_log.c - the segment files of each shard's log: making, opening,
 * recycling, done files, recovery. Blocking; called by the main thread at
 * start-up and by delivery workers, never by a shard (the shard only takes
 * and seals segments, which touch memory under the log's mutex).
 * Format: spool.h; guide: docs/spool.md.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static const uint8_t done_magic[8] = { 'O', 'M', 'X', 'D', 'O', 'N', 'E', '1' };

static int mkdir_one(const char *p)
{
	return (mkdir(p, 0700) == 0 || errno == EEXIST) ? 0 : -errno;
}

int spool_write_sinks(const char *spool_dir, char *const *specs, unsigned n)
{
	char tmp[4096], dst[4096];
	FILE *f;
	int rc = 0;

	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", spool_dir, SPOOL_SINKS_FILE);
	snprintf(dst, sizeof(dst), "%s/%s", spool_dir, SPOOL_SINKS_FILE);
	if ((f = fopen(tmp, "we")) == NULL) {
		return -errno;
	}
	for (unsigned i = 0; i < n; i++) {
		fprintf(f, "%s\n", specs[i]);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = -errno;
	}
	if (fclose(f) != 0 && rc == 0) {
		rc = -errno;
	}
	if (rc == 0 && rename(tmp, dst) != 0) {
		rc = -errno;
	}
	return rc;
}

int spool_open(struct spool_dirs *out, const char *spool_dir)
{
	static const char *const sub[] = { "log", "failed", "ctl" };
	int *fds[] = { &out->log, &out->failed, &out->ctl };
	char p[4096];
	int rc;

	out->log = out->failed = out->ctl = -1;
	/* Create each component of spool_dir (like mkdir -p). */
	snprintf(p, sizeof(p), "%s", spool_dir);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = '\0';
			if ((rc = mkdir_one(p)) != 0) {
				return rc;
			}
			*s = '/';
		}
	}
	if ((rc = mkdir_one(p)) != 0) {
		return rc;
	}
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", spool_dir, sub[i]);
		if ((rc = mkdir_one(p)) != 0) {
			spool_close(out);
			return rc;
		}
		*fds[i] = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (*fds[i] < 0) {
			rc = -errno;
			spool_close(out);
			return rc;
		}
	}
	return 0;
}

void spool_close(struct spool_dirs *d)
{
	int *fds[] = { &d->log, &d->failed, &d->ctl };

	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0) {
			close(*fds[i]);
		}
		*fds[i] = -1;
	}
}

void spool_seg_name(char *out, size_t cap, unsigned shard, uint32_t n, const char *ext)
{
	snprintf(out, cap, "s%u-%" PRIu32 ".%s", shard, n, ext);
}

/* parse_seg_name reads "s<shard>-<n>.seg"; false for other names. */
static bool parse_seg_name(const char *name, unsigned *out_shard, uint32_t *out_n)
{
	unsigned s, n;
	int end = 0;

	if (sscanf(name, "s%u-%u.seg%n", &s, &n, &end) != 2 || name[end] != '\0') {
		return false;
	}
	*out_shard = s;
	*out_n = n;
	return true;
}

struct spool_log *spool_log_new(int dirfd, unsigned shard, uint64_t seg_size, uint64_t max_size, uint32_t num_sinks)
{
	struct spool_log *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		return NULL;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->dirfd = dirfd;
	l->shard = shard;
	l->seg_size = seg_size;
	l->max_segs = (uint32_t)(max_size / seg_size);
	if (l->max_segs < 3) {
		l->max_segs = 3; /* one active, one spill, one being recycled */
	}
	l->reserve = 2;
	l->num_sinks = num_sinks;
	return l;
}

static void seg_free(struct spool_seg *s)
{
	if (s == NULL) {
		return;
	}
	if (s->fd >= 0) {
		close(s->fd);
	}
	if (s->done_fd >= 0) {
		close(s->done_fd);
	}
	free(s->done); s->done = NULL;
	free(s);
}

void spool_log_free(struct spool_log *l)
{
	if (l == NULL) {
		return;
	}
	for (uint32_t i = 0; i < l->num_segs; i++) {
		seg_free(l->segs[i]);
	}
	free(l->segs); l->segs = NULL;
	free(l->free); l->free = NULL;
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static uint32_t count_segs(const struct spool_log *l)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < l->num_segs; i++) {
		n += l->segs[i] != NULL;
	}
	return n;
}

/* table_put stores seg at its number, growing the arrays. Called with mu held. */
static int table_put(struct spool_log *l, struct spool_seg *seg)
{
	if (seg->n >= l->cap_segs) {
		uint32_t cap = seg->n + 16;
		struct spool_seg **ns = realloc(l->segs, cap * sizeof(*ns));
		uint32_t *nf;

		if (ns == NULL) {
			return -ENOMEM;
		}
		memset(ns + l->cap_segs, 0, (cap - l->cap_segs) * sizeof(*ns));
		l->segs = ns;
		nf = realloc(l->free, cap * sizeof(*nf));
		if (nf == NULL) {
			return -ENOMEM;
		}
		l->free = nf;
		l->cap_segs = cap;
	}
	l->segs[seg->n] = seg;
	if (seg->n >= l->num_segs) {
		l->num_segs = seg->n + 1;
	}
	return 0;
}

static int pwrite_all(int fd, const void *p, size_t len, off_t off)
{
	const uint8_t *b = p;

	while (len > 0) {
		ssize_t n = pwrite(fd, b, len, off);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -errno;
		}
		if (n == 0) {
			return -EIO;
		}
		b += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* write_headers writes the segment header and resets the done file for seg->gen; then both durable. */
static int write_headers(struct spool_log *l, struct spool_seg *seg)
{
	struct spool_seg_hdr h = { .shard = l->shard, .n = seg->n, .gen = seg->gen, .std_size = l->seg_size };
	uint8_t hb[SPOOL_SEG_HDR_USED], db[SPOOL_DONE_HDR_LEN];
	int rc;

	spool_seg_hdr_encode(hb, &h);
	memcpy(db, done_magic, 8);
	for (int i = 0; i < 8; i++) {
		db[8 + i] = (uint8_t)(seg->gen >> (8 * i));
	}
	/* The segment header first: once it is durable, the old generation's
	 * records and done bytes mean nothing, whatever happens to the rest. */
	if ((rc = pwrite_all(seg->fd, hb, sizeof(hb), 0)) != 0 || fdatasync(seg->fd) != 0) {
		return rc ? rc : -errno;
	}
	if (ftruncate(seg->done_fd, SPOOL_DONE_HDR_LEN) != 0 ||
	    (rc = pwrite_all(seg->done_fd, db, sizeof(db), 0)) != 0 || fdatasync(seg->done_fd) != 0) {
		return rc ? rc : -errno;
	}
	if (seg->done != NULL) {
		memset(seg->done, 0, seg->done_cap);
	}
	seg->done_dirty = false;
	seg->num_slots = 0;
	seg->tail = SPOOL_SEG_HDR_LEN;
	return 0;
}

static struct spool_seg *seg_alloc(uint32_t n)
{
	struct spool_seg *s = calloc(1, sizeof(*s));

	if (s != NULL) {
		s->fd = s->done_fd = -1;
		s->n = n;
		s->tail = SPOOL_SEG_HDR_LEN;
	}
	return s;
}

/*
 * seg_fill gives a new segment file its blocks. posix_fallocate: allocated
 * but unwritten extents, so the first generation's appends also convert
 * extents (a metadata write per fdatasync); every later generation
 * overwrites written blocks. Zero-filling instead costs a full write of
 * the segment at creation; see docs/spool.md for the measurements.
 */
static int seg_fill(int fd, uint64_t size)
{
	int rc = posix_fallocate(fd, 0, (off_t)size);

	if (rc == EOPNOTSUPP || rc == EINVAL) {
		rc = ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
	}
	return -rc;
}

/* take_unrecycled picks a segment whose recycling failed, marking it SEG_RECYCLING; NULL if none. Under mu. */
static struct spool_seg *take_unrecycled(struct spool_log *l)
{
	for (uint32_t i = 0; l->num_unrecycled > 0 && i < l->num_segs; i++) {
		struct spool_seg *seg = l->segs[i];

		if (seg != NULL && seg->unrecycled && seg->state == SEG_SEALED && seg->live == 0) {
			seg->state = SEG_RECYCLING;
			return seg;
		}
	}
	return NULL;
}

/* can_grow: the pool can get a segment, from a failed recycling or a new file. Under mu. */
static bool can_grow(const struct spool_log *l)
{
	return l->num_unrecycled > 0 || count_segs(l) < l->max_segs;
}

int spool_log_make_segment(struct spool_log *l)
{
	char name[64];
	struct spool_seg *seg;
	uint32_t n;
	bool full;
	int rc;

	pthread_mutex_lock(&l->mu);
	seg = take_unrecycled(l);
	pthread_mutex_unlock(&l->mu);
	/* Before a new file: a segment a fault kept out of the pool. If it
	 * still fails (the fault may be that file's own), a new file may not. */
	if (seg != NULL && (rc = spool_log_recycle(l, seg)) == 0) {
		pthread_mutex_lock(&l->mu);
		l->make_err = 0;
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	pthread_mutex_lock(&l->mu);
	n = l->num_segs;
	full = count_segs(l) >= l->max_segs;
	pthread_mutex_unlock(&l->mu);
	if (full) {
		return seg != NULL ? rc : -ENOSPC; /* the failed recycle's error says more */
	}
	if ((seg = seg_alloc(n)) == NULL) {
		return -ENOMEM;
	}
	seg->gen = 1;
	spool_seg_name(name, sizeof(name), l->shard, n, "seg");
	seg->fd = openat(l->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	spool_seg_name(name, sizeof(name), l->shard, n, "done");
	seg->done_fd = openat(l->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (seg->fd < 0 || seg->done_fd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = seg_fill(seg->fd, l->seg_size)) != 0 || (rc = write_headers(l, seg)) != 0) {
		goto fail;
	}
	if (fsync(l->dirfd) != 0) {
		rc = -errno;
		goto fail;
	}
	seg->size = l->seg_size;
	pthread_mutex_lock(&l->mu);
	rc = table_put(l, seg);
	if (rc == 0) {
		seg->state = SEG_FREE;
		l->free[l->num_free++] = n;
		l->make_err = 0;
	}
	pthread_mutex_unlock(&l->mu);
	if (rc == 0) {
		return 0;
	}
fail:
	/* Leave no half-made file behind: its blocks are better free on a full disk. */
	spool_seg_name(name, sizeof(name), l->shard, n, "seg");
	unlinkat(l->dirfd, name, 0);
	spool_seg_name(name, sizeof(name), l->shard, n, "done");
	unlinkat(l->dirfd, name, 0);
	seg_free(seg);
	return rc;
}

int spool_log_take(struct spool_log *l, enum seg_state state, struct spool_seg **out, bool *out_wake,
		   uint64_t *io_ticket)
{
	int rc = 0;

	*out_wake = false;
	pthread_mutex_lock(&l->mu);
	if (l->num_free > 0) {
		struct spool_seg *seg = l->segs[l->free[--l->num_free]];

		seg->state = state;
		seg->live = 0;
		seg->tail = SPOOL_SEG_HDR_LEN;
		*out = seg;
	} else if (!can_grow(l)) {
		rc = -ENOSPC;
	} else if (l->make_err == 0) {
		rc = -EAGAIN;
	} else if (io_ticket == NULL || (*io_ticket != 0 && l->make_tries >= *io_ticket)) {
		rc = l->make_err; /* an attempt made since the caller asked failed too */
	} else {
		/* The failure may be over: ask for an attempt now rather than at
		 * the worker's next once-a-second retry (waiters share it). */
		if (*io_ticket == 0) {
			/* An attempt that begins after this ask (one running now
			 * may have begun under the fault). */
			*io_ticket = l->make_started + 1;
		}
		if (!l->make_now) {
			l->make_now = true;
			l->want_seg = true;
			*out_wake = true;
		}
		rc = -EAGAIN;
	}
	if (io_ticket != NULL && rc != -EAGAIN) {
		*io_ticket = 0;
	}
	if (l->num_free < l->reserve && can_grow(l) && !l->want_seg) {
		l->want_seg = true;
		*out_wake = true;
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

bool spool_log_make_begin(struct spool_log *l, bool backoff_over, bool *out_now)
{
	bool go;

	pthread_mutex_lock(&l->mu);
	*out_now = l->make_now; /* a transaction waits on this attempt: no back-off */
	go = l->want_seg && (l->make_now || backoff_over);
	if (go) {
		l->make_started++;
	}
	pthread_mutex_unlock(&l->mu);
	return go;
}

bool spool_log_make_done(struct spool_log *l, int rc)
{
	bool want;

	pthread_mutex_lock(&l->mu);
	l->make_tries++;
	l->make_now = false;
	if (rc == 0) {
		l->want_seg = l->num_free < l->reserve || l->num_unrecycled > 0;
	} else {
		l->make_err = rc;
		/* Asked again by the next take; segments a fault kept out of the
		 * pool are tried at the worker's once-a-second pace meanwhile. */
		l->want_seg = l->num_unrecycled > 0;
	}
	want = l->want_seg;
	pthread_mutex_unlock(&l->mu);
	return want;
}

bool spool_log_seal(struct spool_log *l, struct spool_seg *seg)
{
	bool empty;

	pthread_mutex_lock(&l->mu);
	seg->state = SEG_SEALED;
	empty = seg->live == 0;
	if (empty) {
		seg->state = SEG_RECYCLING;
	}
	pthread_mutex_unlock(&l->mu);
	return empty;
}

enum seg_state spool_log_state(struct spool_log *l, struct spool_seg *seg)
{
	enum seg_state st;

	pthread_mutex_lock(&l->mu);
	st = seg->state;
	pthread_mutex_unlock(&l->mu);
	return st;
}

void spool_log_ref(struct spool_log *l, struct spool_seg *seg)
{
	pthread_mutex_lock(&l->mu);
	seg->live++;
	pthread_mutex_unlock(&l->mu);
}

bool spool_log_unref(struct spool_log *l, struct spool_seg *seg)
{
	bool empty;

	pthread_mutex_lock(&l->mu);
	seg->live--;
	empty = seg->live == 0 && seg->state == SEG_SEALED;
	if (empty) {
		seg->state = SEG_RECYCLING;
	}
	pthread_mutex_unlock(&l->mu);
	return empty;
}

int spool_log_recycle(struct spool_log *l, struct spool_seg *seg)
{
	int rc = 0;

	if (seg->size != l->seg_size) {
		/* A spilled large message made it bigger (or a crash left it short):
		 * back to the standard size, so rejected or aborted large messages
		 * never keep their space (issue 13, bug 4). */
		if (ftruncate(seg->fd, (off_t)l->seg_size) != 0 || (rc = seg_fill(seg->fd, l->seg_size)) != 0) {
			rc = rc ? rc : -errno;
		} else {
			seg->size = l->seg_size;
		}
	}
	seg->gen++;
	if (rc == 0) {
		rc = write_headers(l, seg);
	}
	if (rc != 0) {
		spool_log_recycle_later(l, seg);
		return rc;
	}
	pthread_mutex_lock(&l->mu);
	seg->state = SEG_FREE;
	l->free[l->num_free++] = seg->n;
	if (seg->unrecycled) {
		seg->unrecycled = false;
		l->num_unrecycled--;
	}
	pthread_mutex_unlock(&l->mu);
	return 0;
}

void spool_log_recycle_later(struct spool_log *l, struct spool_seg *seg)
{
	/* Out of the pool until spool_log_make_segment tries it again (at the
	 * worker's pace, or at once for a waiting transaction). */
	pthread_mutex_lock(&l->mu);
	seg->state = SEG_SEALED;
	if (!seg->unrecycled) {
		seg->unrecycled = true;
		l->num_unrecycled++;
	}
	l->want_seg = true;
	pthread_mutex_unlock(&l->mu);
}

static int done_reserve(struct spool_seg *seg, uint32_t slot)
{
	if (slot >= seg->done_cap) {
		uint32_t cap = slot < 1024 ? 1024 : slot * 2;
		uint8_t *d = realloc(seg->done, cap);

		if (d == NULL) {
			return -ENOMEM;
		}
		memset(d + seg->done_cap, 0, cap - seg->done_cap);
		seg->done = d;
		seg->done_cap = cap;
	}
	return 0;
}

int spool_log_mark(struct spool_log *l, struct spool_seg *seg, uint32_t slot, uint8_t bits)
{
	int rc = done_reserve(seg, slot);

	(void)l;
	if (rc != 0) {
		return rc;
	}
	if ((seg->done[slot] | bits) == seg->done[slot]) {
		return 0;
	}
	seg->done[slot] |= bits;
	seg->done_dirty = true;
	return pwrite_all(seg->done_fd, &seg->done[slot], 1, (off_t)(SPOOL_DONE_HDR_LEN + slot));
}

uint8_t spool_log_done_bits(const struct spool_seg *seg, uint32_t slot)
{
	return slot < seg->done_cap ? seg->done[slot] : 0;
}

void spool_log_sync_done(struct spool_log *l)
{
	uint32_t n;

	pthread_mutex_lock(&l->mu);
	n = l->num_segs;
	pthread_mutex_unlock(&l->mu);
	for (uint32_t i = 0; i < n; i++) {
		struct spool_seg *seg;

		pthread_mutex_lock(&l->mu);
		seg = l->segs[i];
		pthread_mutex_unlock(&l->mu);
		if (seg != NULL && seg->done_dirty) {
			seg->done_dirty = false;
			if (fdatasync(seg->done_fd) != 0) {
				log_line(LOG_WARN, "spool", "done.sync shard=%u seg=%u error=\"%s\"", l->shard, seg->n,
					 strerror(errno));
			}
		}
	}
}

unsigned spool_shards_present(int dirfd)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	unsigned max = 0;

	if (d == NULL) {
		if (fd >= 0) {
			close(fd);
		}
		return 0;
	}
	rewinddir(d);
	while ((e = readdir(d)) != NULL) {
		unsigned s;
		uint32_t n;

		if (parse_seg_name(e->d_name, &s, &n) && s + 1 > max) {
			max = s + 1;
		}
	}
	closedir(d);
	return max;
}

struct recover_ctx {
	struct spool_log *l;
	struct spool_seg *seg;
	uint8_t all;
	spool_found_fn *fn;
	void *arg;
	uint32_t pending;
};

static void recover_one(void *arg, const struct spool_rec_hdr *h, uint64_t off, uint64_t len)
{
	struct recover_ctx *rc = arg;
	uint8_t done = spool_log_done_bits(rc->seg, h->slot);
	struct spool_found f;

	if ((done & SPOOL_DONE_REMOVED) || (done & rc->all) == rc->all) {
		return;
	}
	f.seg = rc->seg;
	f.off = off;
	f.len = len;
	f.slot = h->slot;
	f.done = done;
	memcpy(f.id, h->id, sizeof(f.id));
	rc->seg->live++;
	rc->pending++;
	rc->fn(rc->arg, &f);
}

/* seg_load opens one existing segment, reads its header and done file, and scans it. */
static int seg_load(struct spool_log *l, uint32_t n, spool_found_fn *fn, void *arg, uint32_t *out_records)
{
	char name[64];
	struct spool_seg *seg = seg_alloc(n);
	struct spool_seg_hdr h;
	uint8_t hb[SPOOL_SEG_HDR_USED], db[SPOOL_DONE_HDR_LEN];
	struct stat st;
	struct recover_ctx ctx;
	uint32_t count = 0;
	uint64_t end = SPOOL_SEG_HDR_LEN;
	int rc;

	if (seg == NULL) {
		return -ENOMEM;
	}
	spool_seg_name(name, sizeof(name), l->shard, n, "seg");
	seg->fd = openat(l->dirfd, name, O_RDWR | O_CLOEXEC);
	spool_seg_name(name, sizeof(name), l->shard, n, "done");
	seg->done_fd = openat(l->dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (seg->fd < 0 || seg->done_fd < 0 || fstat(seg->fd, &st) != 0) {
		rc = -errno;
		seg_free(seg);
		return rc;
	}
	seg->size = (uint64_t)st.st_size;
	if (pread(seg->fd, hb, sizeof(hb), 0) != (ssize_t)sizeof(hb) || !spool_seg_hdr_decode(&h, hb, sizeof(hb)) ||
	    h.n != n || h.shard != l->shard) {
		/* Its making was cut short (no durable header): nothing in it was
		 * ever acknowledged. Make it anew. */
		seg->gen = 1;
		if (seg->size != l->seg_size) {
			if (ftruncate(seg->fd, (off_t)l->seg_size) != 0 || seg_fill(seg->fd, l->seg_size) != 0) {
				rc = -errno;
				seg_free(seg);
				return rc;
			}
			seg->size = l->seg_size;
		}
		if ((rc = write_headers(l, seg)) != 0) {
			seg_free(seg);
			return rc;
		}
	} else {
		seg->gen = h.gen;
		if (pread(seg->done_fd, db, sizeof(db), 0) == (ssize_t)sizeof(db) && memcmp(db, done_magic, 8) == 0) {
			uint64_t dgen = 0;

			for (int i = 0; i < 8; i++) {
				dgen |= (uint64_t)db[8 + i] << (8 * i);
			}
			if (dgen == seg->gen && fstat(seg->done_fd, &st) == 0 && st.st_size > SPOOL_DONE_HDR_LEN) {
				uint32_t nd = (uint32_t)(st.st_size - SPOOL_DONE_HDR_LEN);

				if (done_reserve(seg, nd) == 0 &&
				    pread(seg->done_fd, seg->done, nd, SPOOL_DONE_HDR_LEN) < 0) {
					memset(seg->done, 0, seg->done_cap);
				}
			}
		}
		if (seg->size > SPOOL_SEG_HDR_LEN) {
			uint8_t *map = mmap(NULL, (size_t)seg->size, PROT_READ, MAP_PRIVATE, seg->fd, 0);

			if (map == MAP_FAILED) {
				rc = -errno;
				seg_free(seg);
				return rc;
			}
			memset(&ctx, 0, sizeof(ctx));
			ctx.l = l;
			ctx.seg = seg;
			ctx.all = (uint8_t)((1u << (l->num_sinks < SPOOL_SINK_BITS ? l->num_sinks : SPOOL_SINK_BITS)) - 1);
			ctx.fn = fn;
			ctx.arg = arg;
			madvise(map, (size_t)seg->size, MADV_SEQUENTIAL);
			count = spool_scan(map, (size_t)seg->size, seg->gen, recover_one, &ctx, &end);
			munmap(map, (size_t)seg->size);
		}
	}
	seg->num_slots = count;
	seg->tail = end;
	*out_records += count;
	pthread_mutex_lock(&l->mu);
	rc = table_put(l, seg);
	pthread_mutex_unlock(&l->mu);
	if (rc != 0) {
		seg_free(seg);
		return rc;
	}
	if (seg->live > 0) {
		seg->state = SEG_SEALED; /* appends go to a fresh segment after a restart */
	} else if (count > 0 || seg->size != l->seg_size) {
		seg->state = SEG_RECYCLING;
		if ((rc = spool_log_recycle(l, seg)) != 0) {
			log_line(LOG_WARN, "spool", "recycle shard=%u seg=%u error=\"%s\"", l->shard, n, strerror(-rc));
		}
	} else {
		seg->state = SEG_FREE;
		pthread_mutex_lock(&l->mu);
		l->free[l->num_free++] = n;
		pthread_mutex_unlock(&l->mu);
	}
	return 0;
}

int spool_log_recover(struct spool_log *l, spool_found_fn *fn, void *arg, uint32_t *out_records)
{
	int fd = dup(l->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	uint32_t *ns = NULL, num = 0, cap = 0;
	int rc = 0;

	*out_records = 0;
	if (d == NULL) {
		rc = -errno;
		if (fd >= 0) {
			close(fd);
		}
		return rc;
	}
	rewinddir(d);
	while ((e = readdir(d)) != NULL) {
		unsigned s;
		uint32_t n;

		if (!parse_seg_name(e->d_name, &s, &n) || s != l->shard) {
			continue;
		}
		if (num == cap) {
			uint32_t *nn = realloc(ns, (cap = cap ? cap * 2 : 16) * sizeof(*nn));

			if (nn == NULL) {
				rc = -ENOMEM;
				break;
			}
			ns = nn;
		}
		ns[num++] = n;
	}
	closedir(d);
	/* In number order: records are redelivered roughly oldest first. */
	for (uint32_t i = 1; i < num; i++) {
		for (uint32_t j = i; j > 0 && ns[j - 1] > ns[j]; j--) {
			uint32_t t = ns[j];

			ns[j] = ns[j - 1];
			ns[j - 1] = t;
		}
	}
	for (uint32_t i = 0; rc == 0 && i < num; i++) {
		rc = seg_load(l, ns[i], fn, arg, out_records);
	}
	free(ns);
	return rc;
}
