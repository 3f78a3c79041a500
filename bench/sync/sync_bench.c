/*
 * sync_bench.c - omx-sync-bench: the durability primitives of issue 14,
 * timed on the file system of DIR, the variants of each mode alternated
 * round by round (the machine is shared: only ratios in one run count).
 *
 *   omx-sync-bench maildir DIR [BATCH] [FILES] [ROUNDS]
 *       a maildir batch of BATCH 4 KiB files: create in tmp/, write, make
 *       the batch durable, rename into new/, fsync new/. The durable step:
 *       fdatasync one file after another (serial), one fdatasync per file
 *       all submitted at once through an io_uring ring (ring), or one
 *       syncfs(2) (syncfs, what sinks/sink_maildir.c does).
 *   omx-sync-bench commit DIR [BATCH] [RECORDS] [ROUNDS]
 *       the spool's group commit on a reused segment (written once): BATCH
 *       records of 4 KiB written through the ring then one fdatasync
 *       (fdatasync, what core/shard.c does), each write with RWF_DSYNC and
 *       no fsync (rwf_dsync), the segment opened O_DSYNC (o_dsync), the
 *       fdatasync linked to the batch's last write (linked), or opened
 *       O_DIRECT, the batch written as one block-aligned write that
 *       rewrites the partial block the last batch ended in (as a database
 *       log does), then fdatasync (odirect) or with RWF_DSYNC (odir_dsync).
 *       Buffered writes to ext4 can not be issued without blocking, so each
 *       costs an io_uring worker hand-off; a direct overwrite of written
 *       blocks is issued from the submitting thread.
 *   omx-sync-bench prealloc DIR [SEG_MIB] [ROUNDS]
 *       making a segment: posix_fallocate then fdatasync (fallocate, what
 *       core/spool_log.c does) against writing zeros then fdatasync
 *       (zerofill); then group commits of 16 records into the fresh segment
 *       (its first generation: with fallocate each flush also converts
 *       unwritten extents).
 *
 * Prints one line per variant: the median over rounds of wall and CPU time
 * (getrusage of the process: io_uring's workers are its threads), and of
 * the whole machine's busy time (/proc/stat: also interrupts and kernel
 * workers, which a direct write's completion runs in; meaningful on a quiet
 * machine only) per file, record or segment, then each variant's ratio to
 * the first.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS_MAX 32
#define VARIANTS_MAX 6
#define REC_LEN 4160 /* a 4 KiB message with the record's header and trailer */

struct stat_set {
	const char *name[VARIANTS_MAX];
	unsigned num;
	double wall[VARIANTS_MAX][ROUNDS_MAX], cpu[VARIANTS_MAX][ROUNDS_MAX], sys[VARIANTS_MAX][ROUNDS_MAX];
};

static struct io_uring ring;

static void die(const char *what)
{
	fprintf(stderr, "omx-sync-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* sys_busy_us: CPU time of the whole machine, every state but idle and iowait (/proc/stat). */
static double sys_busy_us(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	if (f == NULL || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
				&v[5], &v[6], &v[7]) != 8) {
		die("/proc/stat");
	}
	fclose(f);
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* ring_wait waits for n completions; exits on any failure. */
static void ring_wait(unsigned n)
{
	struct io_uring_cqe *cqe;

	io_uring_submit(&ring);
	for (unsigned i = 0; i < n; i++) {
		if (io_uring_wait_cqe(&ring, &cqe) != 0) {
			die("io_uring_wait_cqe");
		}
		if (cqe->res < 0) {
			errno = -cqe->res;
			die("ring op");
		}
		io_uring_cqe_seen(&ring, cqe);
	}
}

static struct io_uring_sqe *sqe_get(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	if (sqe == NULL) {
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
	}
	return sqe;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double s[ROUNDS_MAX];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_d);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void report(const char *mode, const char *unit, const struct stat_set *st, unsigned rounds)
{
	double w0 = median(st->wall[0], rounds), c0 = median(st->cpu[0], rounds), s0 = median(st->sys[0], rounds);

	for (unsigned v = 0; v < st->num; v++) {
		double w = median(st->wall[v], rounds), c = median(st->cpu[v], rounds), s = median(st->sys[v], rounds);

		printf("%s %-10s wall %9.1f us/%s  cpu %8.1f us/%s  machine %8.1f us/%s  ratio to %s: wall %.2f cpu %.2f"
		       " machine %.2f\n",
		       mode, st->name[v], w, unit, c, unit, s, unit, st->name[0], w / w0, c / c0, s0 > 0 ? s / s0 : 0);
	}
}

/* ------------------------------------------------------------ maildir */

static void maildir_round(int tmp, int new, unsigned variant, unsigned batch, unsigned files, unsigned round,
			  double *out_wall, double *out_cpu, double *out_sys)
{
	static char buf[4096];
	int fds[256];
	char name[64];
	double t0 = now_us(), c0 = cpu_us(), s0 = sys_busy_us();

	memset(buf, 'x', sizeof(buf));
	for (unsigned done = 0; done < files; done += batch) {
		for (unsigned i = 0; i < batch; i++) {
			snprintf(name, sizeof(name), "%u.%u.%u", round, variant, done + i);
			fds[i] = openat(tmp, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fds[i] < 0 || write(fds[i], buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
				die("maildir file");
			}
		}
		if (variant == 0) {
			if (syncfs(tmp) != 0) {
				die("syncfs");
			}
		} else if (variant == 1) {
			for (unsigned i = 0; i < batch; i++) {
				if (fdatasync(fds[i]) != 0) {
					die("fdatasync");
				}
			}
		} else {
			for (unsigned i = 0; i < batch; i++) {
				io_uring_prep_fsync(sqe_get(), fds[i], IORING_FSYNC_DATASYNC);
			}
			ring_wait(batch);
		}
		for (unsigned i = 0; i < batch; i++) {
			snprintf(name, sizeof(name), "%u.%u.%u", round, variant, done + i);
			close(fds[i]);
			if (renameat(tmp, name, new, name) != 0) {
				die("rename");
			}
		}
		if (fsync(new) != 0) {
			die("fsync new/");
		}
	}
	*out_wall = (now_us() - t0) / files;
	*out_cpu = (cpu_us() - c0) / files;
	*out_sys = (sys_busy_us() - s0) / files;
}

static void mode_maildir(const char *dir, unsigned batch, unsigned files, unsigned rounds)
{
	struct stat_set st = { .name = { "syncfs", "serial", "ring" }, .num = 3 };
	char p[4096];
	int tmp, new;

	snprintf(p, sizeof(p), "%s/tmp", dir);
	mkdir(p, 0700);
	tmp = open(p, O_RDONLY | O_DIRECTORY);
	snprintf(p, sizeof(p), "%s/new", dir);
	mkdir(p, 0700);
	new = open(p, O_RDONLY | O_DIRECTORY);
	if (tmp < 0 || new < 0) {
		die(dir);
	}
	files -= files % batch;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned k = 0; k < st.num; k++) {
			unsigned v = (k + r) % st.num; /* a different variant goes first each round */

			maildir_round(tmp, new, v, batch, files, r, &st.wall[v][r], &st.cpu[v][r], &st.sys[v][r]);
		}
	}
	printf("maildir: batches of %u files of 4 KiB, %u files per variant and round, %u rounds\n", batch, files,
	       rounds);
	report("maildir", "file", &st, rounds);
}

/* ------------------------------------------------------------ commit */

#define BLK 4096

/*
 * commit_direct writes the batch at `off` through an O_DIRECT fd as one
 * write of whole blocks: from the start of the block `off` falls in (its
 * head, what earlier batches wrote there, is kept in `img`) to the end of
 * the block the batch ends in. dsync: RWF_DSYNC instead of an fdatasync.
 */
static void commit_direct(int fd, bool dsync, unsigned batch, unsigned records, uint64_t off)
{
	static uint8_t *img;
	size_t cap = 128 * REC_LEN + 2 * BLK;

	if (img == NULL && posix_memalign((void **)&img, BLK, cap) != 0) {
		die("posix_memalign");
	}
	memset(img, 'r', cap);
	for (unsigned done = 0; done < records; done += batch) {
		uint64_t start = off & ~(uint64_t)(BLK - 1);
		uint64_t end = off + (uint64_t)batch * ((REC_LEN + 7) & ~7u);
		size_t len = (size_t)(((end + BLK - 1) & ~(uint64_t)(BLK - 1)) - start);
		struct io_uring_sqe *sqe = sqe_get();

		io_uring_prep_write(sqe, fd, img, (unsigned)len, start);
		if (dsync) {
			sqe->rw_flags = RWF_DSYNC;
		}
		ring_wait(1);
		if (!dsync) {
			io_uring_prep_fsync(sqe_get(), fd, IORING_FSYNC_DATASYNC);
			ring_wait(1);
		}
		off = end;
	}
}

/*
 * commit_batches writes `records` records from `off` in batches; variant 0:
 * writes then fdatasync, 1: RWF_DSYNC writes, 3: writes with the fdatasync
 * linked to the last (IOSQE_IO_LINK: one submission, and the worker that
 * did the write runs the flush).
 */
static void commit_batches(int fd, unsigned variant, unsigned batch, unsigned records, uint64_t off)
{
	static char buf[REC_LEN];

	memset(buf, 'r', sizeof(buf));
	for (unsigned done = 0; done < records; done += batch) {
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = sqe_get();

			io_uring_prep_write(sqe, fd, buf, sizeof(buf), off);
			if (variant == 1) {
				sqe->rw_flags = RWF_DSYNC;
			}
			if (variant == 3 && i == batch - 1) {
				sqe->flags |= IOSQE_IO_LINK;
				io_uring_prep_fsync(sqe_get(), fd, IORING_FSYNC_DATASYNC);
			}
			off += (sizeof(buf) + 7) & ~7ul;
		}
		ring_wait(variant == 3 ? batch + 1 : batch);
		if (variant != 1 && variant != 3) {
			io_uring_prep_fsync(sqe_get(), fd, IORING_FSYNC_DATASYNC);
			ring_wait(1);
		}
	}
}

static void mode_commit(const char *dir, unsigned batch, unsigned records, unsigned rounds)
{
	struct stat_set st = { .name = { "fdatasync", "rwf_dsync", "o_dsync", "linked", "odirect", "odir_dsync" },
			       .num = 6 };
	uint64_t seg = (uint64_t)records * REC_LEN + (1u << 20);
	char p[4096];
	int fd, fd_dsync, fd_direct;

	snprintf(p, sizeof(p), "%s/commit.seg", dir);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fd_dsync = open(p, O_RDWR | O_DSYNC | O_CLOEXEC);
	fd_direct = open(p, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0 || fd_dsync < 0 || fd_direct < 0 || posix_fallocate(fd, 0, (off_t)seg) != 0) {
		die("segment");
	}
	/* A reused segment: every block written once already. */
	commit_batches(fd, 0, 64, (unsigned)(seg / REC_LEN) - 1, 0);
	records -= records % batch;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned k = 0; k < st.num; k++) {
			unsigned v = (k + r) % st.num;
			double t0 = now_us(), c0 = cpu_us(), s0 = sys_busy_us();

			if (v >= 4) {
				commit_direct(fd_direct, v == 5, batch, records, 0);
			} else {
				commit_batches(v == 2 ? fd_dsync : fd, v, batch, records, 0);
			}
			st.wall[v][r] = (now_us() - t0) / records;
			st.cpu[v][r] = (cpu_us() - c0) / records;
			st.sys[v][r] = (sys_busy_us() - s0) / records;
		}
	}
	close(fd);
	close(fd_dsync);
	close(fd_direct);
	unlink(p);
	printf("commit: batches of %u records of %u bytes through io_uring, %u records per variant and round, %u rounds\n",
	       batch, REC_LEN, records, rounds);
	report("commit", "record", &st, rounds);
}

/* ------------------------------------------------------------ prealloc */

static void mode_prealloc(const char *dir, unsigned seg_mib, unsigned rounds)
{
	struct stat_set mk = { .name = { "fallocate", "zerofill" }, .num = 2 };
	struct stat_set gen1 = { .name = { "fallocate", "zerofill" }, .num = 2 };
	uint64_t size = (uint64_t)seg_mib << 20;
	unsigned records = (unsigned)(size / 2 / REC_LEN) & ~15u; /* half the segment */
	static char zeros[1 << 20];
	char p[4096];

	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned k = 0; k < mk.num; k++) {
			unsigned v = (k + r) % mk.num;
			double t0, c0, s0;
			int fd;

			snprintf(p, sizeof(p), "%s/prealloc-%u.seg", dir, v);
			t0 = now_us();
			c0 = cpu_us();
			s0 = sys_busy_us();
			fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0) {
				die("segment");
			}
			if (v == 0) {
				if (posix_fallocate(fd, 0, (off_t)size) != 0) {
					die("fallocate");
				}
			} else {
				for (uint64_t off = 0; off < size; off += sizeof(zeros)) {
					if (pwrite(fd, zeros, sizeof(zeros), (off_t)off) != (ssize_t)sizeof(zeros)) {
						die("zero fill");
					}
				}
			}
			if (fdatasync(fd) != 0) {
				die("fdatasync");
			}
			mk.wall[v][r] = now_us() - t0;
			mk.cpu[v][r] = cpu_us() - c0;
			mk.sys[v][r] = sys_busy_us() - s0;
			t0 = now_us();
			c0 = cpu_us();
			s0 = sys_busy_us();
			commit_batches(fd, 0, 16, records, 0);
			gen1.wall[v][r] = (now_us() - t0) / records;
			gen1.cpu[v][r] = (cpu_us() - c0) / records;
			gen1.sys[v][r] = (sys_busy_us() - s0) / records;
			close(fd);
			unlink(p);
		}
	}
	printf("prealloc: %u MiB segments, %u rounds; then %u records in batches of 16 into the fresh segment\n",
	       seg_mib, rounds, records);
	report("make", "segment", &mk, rounds);
	report("gen1-commit", "record", &gen1, rounds);
}

int main(int argc, char **argv)
{
	unsigned a = argc > 3 ? (unsigned)atoi(argv[3]) : 0, b = argc > 4 ? (unsigned)atoi(argv[4]) : 0,
		 c = argc > 5 ? (unsigned)atoi(argv[5]) : 0;

	if (argc < 3) {
		fprintf(stderr, "usage: omx-sync-bench maildir|commit|prealloc DIR [ARGS] (see sync_bench.c)\n");
		return 2;
	}
	if (io_uring_queue_init(256, &ring, 0) != 0) {
		die("io_uring_queue_init");
	}
	if (strcmp(argv[1], "maildir") == 0) {
		a = a ? a : 16;
		mode_maildir(argv[2], a > 256 ? 256 : a, b ? b : 2048, c ? (c > ROUNDS_MAX ? ROUNDS_MAX : c) : 5);
	} else if (strcmp(argv[1], "commit") == 0) {
		a = a ? a : 16;
		mode_commit(argv[2], a > 128 ? 128 : a, b ? b : 4096, c ? (c > ROUNDS_MAX ? ROUNDS_MAX : c) : 5);
	} else if (strcmp(argv[1], "prealloc") == 0) {
		mode_prealloc(argv[2], a ? a : 64, b ? (b > ROUNDS_MAX ? ROUNDS_MAX : b) : 5);
	} else {
		fprintf(stderr, "omx-sync-bench: unknown mode %s\n", argv[1]);
		return 2;
	}
	io_uring_queue_exit(&ring);
	return 0;
}
