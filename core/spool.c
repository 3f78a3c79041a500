/* spool.c - spool file format and blocking helpers; see spool.h. */
#include "spool.h"

#include "crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int spool_head_format(struct bb *out, const struct msg_env *env)
{
	int rc = bb_printf(out,
			   "OMX1\nid %s\nreceived_us %" PRId64 "\nclient %s %u\nhelo %s\nesmtp %d\n"
			   "smtputf8 %d\nbody %s\nfrom %s\n",
			   env->id, env->received_us, env->client_ip, env->client_port, env->helo ? env->helo : "",
			   env->esmtp ? 1 : 0, env->smtputf8 ? 1 : 0, msg_body_name(env->body),
			   env->mail_from ? env->mail_from : "");

	/* tls VERSION CIPHER SNI|- (after STARTTLS only; core sanitised all three: no spaces) */
	if (rc == 0 && env->tls.on) {
		rc = bb_printf(out, "tls %s %s %s\n", env->tls.version, env->tls.cipher,
			       env->tls.sni[0] != '\0' ? env->tls.sni : "-");
	}
	for (size_t i = 0; rc == 0 && i < env->num_rcpts; i++) {
		rc = bb_printf(out, "rcpt %s\n", env->rcpts[i]);
	}
	return rc ? rc : bb_append(out, "\n", 1);
}

void spool_trailer_format(char *out, uint64_t msg_len, uint32_t crc, uint32_t auth_len)
{
	snprintf(out, SPOOL_TRAILER_LEN + 1, "\nOMXEND %016" PRIx64 " %08" PRIx32 " %08" PRIx32 "\n", msg_len, crc,
		 auth_len);
}

/* hex_field parses exactly n lower-case hex digits. */
static bool hex_field(const uint8_t *p, int n, uint64_t *out)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++) {
		uint8_t h = p[i];
		unsigned d = (h >= '0' && h <= '9') ? (unsigned)(h - '0') : (h >= 'a' && h <= 'f') ? (unsigned)(h - 'a' + 10) : 16;

		if (d == 16) {
			return false;
		}
		v = v * 16 + d;
	}
	*out = v;
	return true;
}

void spool_entry_fini(struct spool_entry *e)
{
	free(e->env.helo); e->env.helo = NULL;
	free(e->env.mail_from); e->env.mail_from = NULL;
	for (size_t i = 0; i < e->env.num_rcpts; i++) {
		free(e->env.rcpts[i]); e->env.rcpts[i] = NULL;
	}
	free(e->env.rcpts); e->env.rcpts = NULL;
	e->env.num_rcpts = 0;
	if (e->mapped) {
		if (e->data != NULL) {
			munmap(e->data, e->data_len ? e->data_len : 1);
		}
		e->data = NULL;
		e->mapped = false;
	} else {
		free(e->data); e->data = NULL;
	}
}

static char *dup_span(struct span s)
{
	char *p = malloc(s.len + 1);

	if (p != NULL) {
		memcpy(p, s.p, s.len);
		p[s.len] = '\0';
	}
	return p;
}

static int parse_head_line(struct msg_env *env, struct span key, struct span val)
{
	char tmp[64];

	if (span_eq(key, SPAN_LIT("id"))) {
		if (val.len == 0 || val.len >= MSG_ID_MAX) {
			return -EINVAL;
		}
		memcpy(env->id, val.p, val.len);
		env->id[val.len] = '\0';
	} else if (span_eq(key, SPAN_LIT("received_us"))) {
		uint64_t v;

		if (!span_get_dec_u64(&val, &v, INT64_MAX) || val.len) {
			return -EINVAL;
		}
		env->received_us = (int64_t)v;
	} else if (span_eq(key, SPAN_LIT("client"))) {
		struct span ip;
		uint64_t port;

		if (!span_take_until(&val, &ip, ' ') || ip.len >= MSG_IP_MAX || !span_skip(&val, 1) ||
		    !span_get_dec_u64(&val, &port, 65535)) {
			return -EINVAL;
		}
		memcpy(env->client_ip, ip.p, ip.len);
		env->client_ip[ip.len] = '\0';
		env->client_port = (uint16_t)port;
	} else if (span_eq(key, SPAN_LIT("helo"))) {
		free(env->helo);
		if ((env->helo = dup_span(val)) == NULL) {
			return -ENOMEM;
		}
	} else if (span_eq(key, SPAN_LIT("esmtp"))) {
		env->esmtp = span_eq(val, SPAN_LIT("1"));
	} else if (span_eq(key, SPAN_LIT("smtputf8"))) {
		env->smtputf8 = span_eq(val, SPAN_LIT("1"));
	} else if (span_eq(key, SPAN_LIT("body"))) {
		env->body = MSG_BODY_7BIT;
		for (int b = 0; b < MSG_BODY_COUNT; b++) {
			snprintf(tmp, sizeof(tmp), "%s", msg_body_name((enum msg_body)b));
			if (span_eq(val, span_cstr(tmp))) {
				env->body = (enum msg_body)b;
			}
		}
	} else if (span_eq(key, SPAN_LIT("from"))) {
		free(env->mail_from);
		if ((env->mail_from = dup_span(val)) == NULL) {
			return -ENOMEM;
		}
	} else if (span_eq(key, SPAN_LIT("rcpt"))) {
		char **r = realloc(env->rcpts, (env->num_rcpts + 1) * sizeof(*r));

		if (r == NULL) {
			return -ENOMEM;
		}
		env->rcpts = r;
		if ((r[env->num_rcpts] = dup_span(val)) == NULL) {
			return -ENOMEM;
		}
		env->num_rcpts++;
	} else if (span_eq(key, SPAN_LIT("tls"))) {
		struct span ver, cipher;

		if (!span_take_until(&val, &ver, ' ') || !span_skip(&val, 1) || !span_take_until(&val, &cipher, ' ') ||
		    !span_skip(&val, 1) || ver.len >= sizeof(env->tls.version) ||
		    cipher.len >= sizeof(env->tls.cipher) || val.len >= sizeof(env->tls.sni)) {
			return -EINVAL;
		}
		memcpy(env->tls.version, ver.p, ver.len);
		env->tls.version[ver.len] = '\0';
		memcpy(env->tls.cipher, cipher.p, cipher.len);
		env->tls.cipher[cipher.len] = '\0';
		if (!span_eq(val, SPAN_LIT("-"))) {
			memcpy(env->tls.sni, val.p, val.len);
			env->tls.sni[val.len] = '\0';
		}
		env->tls.on = true;
	}
	/* Unknown keys are ignored so that a newer head stays readable. */
	return 0;
}

int spool_parse(struct spool_entry *out, uint8_t *data, size_t len)
{
	struct span c = span_make(data, len), line;
	uint64_t msg_len, crc, auth_len;
	struct span tr;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!span_eat_ci(&c, "OMX1\n") || c.len < SPOOL_TRAILER_LEN) {
		return -EINVAL;
	}
	tr = span_make(data + len - SPOOL_TRAILER_LEN, SPOOL_TRAILER_LEN);
	if (!span_eat_ci(&tr, "\nOMXEND ")) {
		return -EINVAL;
	}
	if (!hex_field(tr.p, 16, &msg_len) || tr.p[16] != ' ' || !hex_field(tr.p + 17, 8, &crc) ||
	    tr.p[25] != ' ' || !hex_field(tr.p + 26, 8, &auth_len) || tr.p[34] != '\n') {
		return -EINVAL;
	}
	c.len -= SPOOL_TRAILER_LEN;
	for (;;) {
		struct span key;

		if (!span_take_until(&c, &line, '\n')) {
			rc = -EINVAL;
			goto fail;
		}
		span_skip(&c, 1);
		if (line.len == 0) {
			break;
		}
		if (!span_take_until(&line, &key, ' ')) {
			rc = -EINVAL;
			goto fail;
		}
		span_skip(&line, 1);
		if ((rc = parse_head_line(&out->env, key, line)) != 0) {
			goto fail;
		}
	}
	if (msg_len > c.len || c.len - msg_len != auth_len || crc32c_update(0, c.p, c.len) != (uint32_t)crc ||
	    out->env.id[0] == '\0' || out->env.num_rcpts == 0) {
		rc = -EINVAL;
		goto fail;
	}
	out->env.size = msg_len;
	out->msg = span_make(c.p, msg_len);
	out->auth = span_make(c.p + msg_len, auth_len);
	out->data = data;
	out->data_len = len;
	return 0;
fail:
	spool_entry_fini(out); /* data is not ours on failure: spool_entry_fini frees only NULL data */
	return rc;
}

/*
 * spool_read_small reads a small file into the heap and parses it; closes
 * fd. Reading beats mapping here: a delivery worker's munmap makes the
 * kernel shoot down the mapping on every CPU the process runs on (an IPI
 * per message), and a few KiB copy for less than that costs.
 */
static int spool_read_small(struct spool_entry *out, int fd, size_t len)
{
	uint8_t *data = malloc(len);
	size_t got = 0;
	int rc = 0;

	if (data == NULL) {
		close(fd);
		return -ENOMEM;
	}
	while (got < len) {
		ssize_t n = pread(fd, data + got, len - got, (off_t)got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			rc = n < 0 ? -errno : -EINVAL; /* shorter than fstat said: not ours to trust */
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (rc == 0) {
		rc = spool_parse(out, data, len);
	}
	if (rc != 0) {
		free(data);
	}
	return rc;
}

int spool_load(struct spool_entry *out, int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void *data;
	int rc;

	if (fd < 0) {
		return -errno;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (st.st_size <= 0) {
		close(fd);
		return -EINVAL; /* never acknowledged: a committed file has a trailer */
	}
	if (st.st_size <= SPOOL_READ_MAX) {
		return spool_read_small(out, fd, (size_t)st.st_size);
	}
	data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	rc = data == MAP_FAILED ? -errno : 0;
	close(fd);
	if (rc != 0) {
		return rc;
	}
	rc = spool_parse(out, data, (size_t)st.st_size);
	if (rc != 0) {
		munmap(data, (size_t)st.st_size);
		return rc;
	}
	out->mapped = true;
	return 0;
}

static int mkdir_one(const char *p)
{
	return (mkdir(p, 0700) == 0 || errno == EEXIST) ? 0 : -errno;
}

int spool_open(struct spool_dirs *out, const char *spool_dir)
{
	static const char *const sub[] = { "q", "free", "failed" };
	int *fds[] = { &out->q, &out->free, &out->failed };
	char p[4096];
	int rc;

	out->q = out->free = out->failed = -1;
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
	int *fds[] = { &d->q, &d->free, &d->failed };

	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0) {
			close(*fds[i]);
		}
		*fds[i] = -1;
	}
}

struct spool_pool {
	pthread_mutex_t mu;
	uint32_t n, cap;
	char (*names)[MSG_ID_MAX];
};

struct spool_pool *spool_pool_new(uint32_t cap)
{
	struct spool_pool *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		return NULL;
	}
	p->names = calloc(cap ? cap : 1, sizeof(*p->names));
	if (p->names == NULL) {
		free(p);
		return NULL;
	}
	p->cap = cap;
	pthread_mutex_init(&p->mu, NULL);
	return p;
}

void spool_pool_free(struct spool_pool *p)
{
	if (p == NULL) {
		return;
	}
	pthread_mutex_destroy(&p->mu);
	free(p->names); p->names = NULL;
	free(p);
}

bool spool_pool_put(struct spool_pool *p, const char *name)
{
	bool ok = false;

	if (strlen(name) >= MSG_ID_MAX) {
		return false;
	}
	pthread_mutex_lock(&p->mu);
	if (p->n < p->cap) {
		strcpy(p->names[p->n++], name);
		ok = true;
	}
	pthread_mutex_unlock(&p->mu);
	return ok;
}

bool spool_pool_get(struct spool_pool *p, char *out)
{
	bool ok = false;

	pthread_mutex_lock(&p->mu);
	if (p->n > 0) {
		memcpy(out, p->names[--p->n], MSG_ID_MAX);
		ok = true;
	}
	pthread_mutex_unlock(&p->mu);
	return ok;
}

bool spool_pool_has_room(struct spool_pool *p)
{
	bool ok;

	pthread_mutex_lock(&p->mu);
	ok = p->n < p->cap;
	pthread_mutex_unlock(&p->mu);
	return ok;
}

void spool_make_id(char out[MSG_ID_MAX], int64_t received_us, unsigned shard, uint32_t seq)
{
	/* 13 hex digits of microseconds keep ids sortable by arrival until 2112. */
	snprintf(out, MSG_ID_MAX, "%013" PRIX64 "%02X%04X", (uint64_t)received_us, shard & 0xff, seq & 0xffff);
}
