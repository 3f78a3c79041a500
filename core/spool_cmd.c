/*
 * spool_cmd.c - `oceanmx spool ls|stats|show ID|retry ID|delete ID [--spool DIR]`.
 *
 * ls, stats and show only read the log (the scan of docs/spool.md over a
 * private read-only mapping), so they are safe while the server runs; what
 * they print is a snapshot. retry and delete leave a request file in
 * SPOOL/ctl that the delivery worker holding the message acts on within a
 * second (or at the next start), so the log is only ever written by the
 * server.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"

struct rec_info {
	unsigned shard;
	uint32_t seg, slot;
	uint8_t done;
	uint64_t off, len;
	char id[SPOOL_REC_ID_LEN + 1];
};

struct seg_view {
	unsigned shard;
	uint32_t n;
	uint64_t gen, size;
	uint32_t records, pending;
	const uint8_t *map;
	uint8_t *done;
	size_t done_len;
};

struct scan_all {
	int dirfd;
	unsigned num_sinks;
	char sink_names[SPOOL_SINK_BITS][256]; /* from SPOOL/sinks, "" when unknown */
	uint8_t all;
	struct seg_view *segs;
	size_t num_segs;
	struct rec_info *recs;
	size_t num_recs, cap_recs;
	struct seg_view *cur;
};

static void on_rec(void *arg, const struct spool_rec_hdr *h, uint64_t off, uint64_t len)
{
	struct scan_all *a = arg;
	struct seg_view *v = a->cur;
	uint8_t done = h->slot < v->done_len ? v->done[h->slot] : 0;

	if ((done & SPOOL_DONE_REMOVED) || (done & a->all) == a->all) {
		return;
	}
	v->pending++;
	if (a->num_recs == a->cap_recs) {
		a->cap_recs = a->cap_recs ? a->cap_recs * 2 : 1024;
		a->recs = realloc(a->recs, a->cap_recs * sizeof(*a->recs));
		if (a->recs == NULL) {
			fprintf(stderr, "oceanmx spool: out of memory\n");
			exit(1);
		}
	}
	a->recs[a->num_recs] = (struct rec_info){ v->shard, v->n, h->slot, done, off, len, "" };
	memcpy(a->recs[a->num_recs].id, h->id, SPOOL_REC_ID_LEN);
	a->num_recs++;
}

static int rec_by_id(const void *x, const void *y)
{
	const struct rec_info *a = x, *b = y;
	int c = strcmp(a->id, b->id);

	if (c != 0) {
		return c;
	}
	if (a->shard != b->shard) {
		return a->shard < b->shard ? -1 : 1;
	}
	return a->seg < b->seg ? -1 : a->seg > b->seg;
}

/*
 * merge_copies makes one entry of the records that share an id. A record
 * copied forward (docs/spool.md) is live in two places from the moment
 * its copy is durable until the old slot is marked removed, or for good
 * after a crash in between, and the copy's done byte may lag the
 * original's. It is one message: a sink that has either copy has it.
 */
static void merge_copies(struct scan_all *a)
{
	size_t k = 0;

	if (a->num_recs == 0) {
		return;
	}
	qsort(a->recs, a->num_recs, sizeof(*a->recs), rec_by_id);
	for (size_t i = 0; i < a->num_recs; i++) {
		if (k > 0 && strcmp(a->recs[k - 1].id, a->recs[i].id) == 0) {
			a->recs[k - 1].done |= a->recs[i].done;
			if ((a->recs[k - 1].done & a->all) == a->all) {
				k--; /* every sink has it, between the two copies */
			}
			continue;
		}
		a->recs[k++] = a->recs[i];
	}
	a->num_recs = k;
}

static void load_seg(struct scan_all *a, const char *name, unsigned shard, uint32_t n)
{
	int fd = openat(a->dirfd, name, O_RDONLY | O_CLOEXEC), dfd;
	struct spool_seg_hdr h;
	struct seg_view *v;
	struct stat st;
	char dname[64];
	uint8_t db[SPOOL_DONE_HDR_LEN];

	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < SPOOL_SEG_HDR_LEN) {
		if (fd >= 0) {
			close(fd);
		}
		return;
	}
	a->segs = realloc(a->segs, (a->num_segs + 1) * sizeof(*a->segs));
	if (a->segs == NULL) {
		exit(1);
	}
	v = &a->segs[a->num_segs++];
	memset(v, 0, sizeof(*v));
	v->shard = shard;
	v->n = n;
	v->size = (uint64_t)st.st_size;
	v->map = mmap(NULL, v->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (v->map == MAP_FAILED || !spool_seg_hdr_decode(&h, v->map, v->size)) {
		if (v->map != MAP_FAILED) {
			munmap((void *)v->map, v->size);
		}
		v->map = NULL;
		return;
	}
	v->gen = h.gen;
	spool_seg_name(dname, sizeof(dname), shard, n, "done");
	dfd = openat(a->dirfd, dname, O_RDONLY | O_CLOEXEC);
	if (dfd >= 0 && fstat(dfd, &st) == 0 && pread(dfd, db, sizeof(db), 0) == (ssize_t)sizeof(db) &&
	    memcmp(db, "OMXDONE1", 8) == 0 && st.st_size > SPOOL_DONE_HDR_LEN) {
		uint64_t dgen = 0;

		for (int i = 0; i < 8; i++) {
			dgen |= (uint64_t)db[8 + i] << (8 * i);
		}
		if (dgen == v->gen) {
			v->done_len = (size_t)(st.st_size - SPOOL_DONE_HDR_LEN);
			v->done = calloc(1, v->done_len);
			if (v->done == NULL || pread(dfd, v->done, v->done_len, SPOOL_DONE_HDR_LEN) < 0) {
				v->done_len = 0;
			}
		}
	}
	if (dfd >= 0) {
		close(dfd);
	}
	a->cur = v;
	v->records = spool_scan(v->map, v->size, v->gen, on_rec, a, NULL);
}

static int scan_spool(struct scan_all *a, const char *spool)
{
	char p[4096];
	DIR *d;
	struct dirent *e;

	snprintf(p, sizeof(p), "%s/log", spool);
	a->dirfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (a->dirfd < 0 || (d = opendir(p)) == NULL) {
		fprintf(stderr, "oceanmx spool: %s: %s\n", p, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		unsigned s, n;
		int end = 0;

		if (sscanf(e->d_name, "s%u-%u.seg%n", &s, &n, &end) == 2 && e->d_name[end] == '\0') {
			load_seg(a, e->d_name, s, n);
		}
	}
	closedir(d);
	merge_copies(a);
	return 0;
}

static const struct seg_view *view_of(const struct scan_all *a, const struct rec_info *r)
{
	for (size_t i = 0; i < a->num_segs; i++) {
		if (a->segs[i].shard == r->shard && a->segs[i].n == r->seg) {
			return &a->segs[i];
		}
	}
	return NULL;
}

static void owes(const struct scan_all *a, uint8_t done, char *out, size_t cap)
{
	size_t k = 0;

	out[0] = '\0';
	for (unsigned s = 0; s < a->num_sinks && s < SPOOL_SINK_BITS; s++) {
		if (!(done & (1u << s))) {
			k += (size_t)snprintf(out + k, cap - k, "%s%u", k ? "," : "", s);
			if (k >= cap) {
				break;
			}
		}
	}
}

/*
 * read_sinks takes the number and names of the sinks from SPOOL/sinks (the
 * server writes it at start-up); without it, one sink is assumed.
 */
static void read_sinks(struct scan_all *a, const char *spool)
{
	char p[4096], line[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", spool, SPOOL_SINKS_FILE);
	if ((f = fopen(p, "re")) == NULL) {
		return;
	}
	a->num_sinks = 0;
	while (fgets(line, sizeof(line), f) != NULL && a->num_sinks < SPOOL_SINK_BITS) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(a->sink_names[a->num_sinks], sizeof(a->sink_names[0]), "%.255s", line);
		a->num_sinks++;
	}
	fclose(f);
	if (a->num_sinks == 0) {
		a->num_sinks = 1;
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: oceanmx spool ls|stats [--spool DIR] [--sinks N]\n"
			"       oceanmx spool show|retry|delete ID [--spool DIR]\n");
	return 1;
}

int cmd_spool(int argc, char **argv)
{
	const char *spool = "./var/spool", *verb, *id = NULL;
	struct scan_all a;
	bool sinks_given = false;
	int rc = 0;

	memset(&a, 0, sizeof(a));
	a.num_sinks = 1;
	if (argc < 2) {
		return usage();
	}
	verb = argv[1];
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--spool") == 0 && i + 1 < argc) {
			spool = argv[++i];
		} else if (strcmp(argv[i], "--sinks") == 0 && i + 1 < argc) {
			a.num_sinks = (unsigned)atoi(argv[++i]);
			sinks_given = true;
		} else if (id == NULL && argv[i][0] != '-') {
			id = argv[i];
		} else {
			return usage();
		}
	}
	if (!sinks_given) {
		read_sinks(&a, spool);
	}
	a.all = (uint8_t)((1u << (a.num_sinks < SPOOL_SINK_BITS ? a.num_sinks : SPOOL_SINK_BITS)) - 1);
	if (strcmp(verb, "retry") == 0 || strcmp(verb, "delete") == 0) {
		char p[4096];
		int fd;

		if (id == NULL || strlen(id) >= SPOOL_REC_ID_LEN || strchr(id, '/') != NULL || id[0] == '.') {
			return usage();
		}
		snprintf(p, sizeof(p), "%s/ctl/%s.%s", spool, id, verb);
		fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			fprintf(stderr, "oceanmx spool: %s: %s\n", p, strerror(errno));
			return 1;
		}
		close(fd);
		printf("%s %s: requested (the server acts on it within a second, or at its next start)\n", verb, id);
		return 0;
	}
	if (strcmp(verb, "ls") != 0 && strcmp(verb, "stats") != 0 && strcmp(verb, "show") != 0) {
		return usage();
	}
	if ((strcmp(verb, "show") == 0) != (id != NULL)) {
		return usage();
	}
	if (scan_spool(&a, spool) != 0) {
		return 1;
	}
	if (strcmp(verb, "ls") == 0) {
		printf("%-20s %-10s %10s %-16s %-8s %s\n", "ID", "WHERE", "SIZE", "RECEIVED", "OWES", "FROM -> RCPTS");
	}
	int64_t oldest = INT64_MAX;
	const char *oldest_id = NULL;
	uint64_t owed[SPOOL_SINK_BITS] = { 0 }, bytes = 0;
	bool found = false;

	for (size_t i = 0; i < a.num_recs; i++) {
		const struct rec_info *r = &a.recs[i];
		const struct seg_view *v = view_of(&a, r);
		struct spool_entry e;
		char where[32], ow[32];

		if (v == NULL || spool_rec_parse(&e, v->map + r->off, (size_t)r->len) != 0) {
			continue;
		}
		bytes += r->len;
		for (unsigned s = 0; s < a.num_sinks && s < SPOOL_SINK_BITS; s++) {
			owed[s] += !(r->done & (1u << s));
		}
		if (e.env.received_us < oldest) {
			oldest = e.env.received_us;
			oldest_id = (const char *)v->map + r->off + 40;
		}
		snprintf(where, sizeof(where), "s%u-%u/%u", r->shard, r->seg, r->slot);
		owes(&a, r->done, ow, sizeof(ow));
		if (strcmp(verb, "ls") == 0) {
			time_t t = (time_t)(e.env.received_us / 1000000);
			struct tm tm;
			char ts[32];

			gmtime_r(&t, &tm);
			strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
			printf("%-20s %-10s %10llu %-16s %-8s <%s> ->", e.env.id, where,
			       (unsigned long long)e.env.size, ts, ow, e.env.mail_from);
			for (size_t k = 0; k < e.env.num_rcpts; k++) {
				printf(" <%s>", e.env.rcpts[k]);
			}
			printf("\n");
		} else if (strcmp(verb, "show") == 0 && strcmp(e.env.id, id) == 0) {
			found = true;
			printf("id %s\nwhere %s offset %llu length %llu\nowes sinks %s\n", e.env.id, where,
			       (unsigned long long)r->off, (unsigned long long)r->len, ow[0] ? ow : "none");
			printf("client %s %u\nhelo %s\nfrom <%s>\n", e.env.client_ip, e.env.client_port,
			       e.env.helo ? e.env.helo : "", e.env.mail_from);
			for (size_t k = 0; k < e.env.num_rcpts; k++) {
				printf("rcpt <%s>\n", e.env.rcpts[k]);
			}
			printf("\n");
			fwrite(e.auth.p, 1, e.auth.len, stdout);
			fwrite(e.msg.p, 1, e.msg.len, stdout);
		}
		spool_entry_fini(&e);
	}
	if (strcmp(verb, "show") == 0 && !found) {
		fprintf(stderr, "oceanmx spool: %s: not queued\n", id);
		rc = 1;
	}
	if (strcmp(verb, "stats") == 0) {
		printf("queued %zu\nqueued_bytes %llu\n", a.num_recs, (unsigned long long)bytes);
		if (oldest_id != NULL) {
			printf("oldest %.*s age_s %lld\n", SPOOL_REC_ID_LEN, oldest_id,
			       (long long)(time(NULL) - oldest / 1000000));
		}
		for (unsigned s = 0; s < a.num_sinks && s < SPOOL_SINK_BITS; s++) {
			printf("sink %u owes %llu%s%s\n", s, (unsigned long long)owed[s], a.sink_names[s][0] ? " " : "",
			       a.sink_names[s]);
		}
		printf("segments %zu\n", a.num_segs);
		for (size_t i = 0; i < a.num_segs; i++) {
			const struct seg_view *v = &a.segs[i];

			printf("segment s%u-%u gen %llu size %llu records %u pending %u\n", v->shard, v->n,
			       (unsigned long long)v->gen, (unsigned long long)v->size, v->records, v->pending);
		}
	}
	for (size_t i = 0; i < a.num_segs; i++) {
		if (a.segs[i].map != NULL) {
			munmap((void *)a.segs[i].map, a.segs[i].size);
		}
		free(a.segs[i].done);
	}
	free(a.segs);
	free(a.recs);
	close(a.dirfd);
	return rc;
}
