/*
 * sink_maildir.c - "maildir:DIR": one file per message in DIR/new/.
 *
 * Maildir protocol: write DIR/tmp/NAME, make it durable, rename it into
 * DIR/new/NAME, make the directory durable. NAME is "<sec>.<id>.<host>",
 * built from the stable spool id, so a redelivery after a crash replaces
 * the same file instead of adding a copy (rename is atomic).
 *
 * Not O_TMPFILE + linkat into new/ (one directory operation instead of
 * three, 0.94x the CPU per message in W1): the link raises the inode's
 * link count from 0, and on ext4 without a journal the directory's fsync
 * does not write that inode's block (only the directory's own), so a
 * crash could leave new/ naming an inode that is free on disk while the
 * spool has already recorded the message delivered. Created in tmp/, the
 * inode is written with its data by the syncfs, before the rename.
 *
 * Maildir has no envelope, so the file starts with delivery fields:
 *   Return-Path: <sender>         (RFC 5321 §4.4; <> for the null sender)
 *   Delivered-To: <rcpt>          one per envelope recipient, in order
 * followed by the spooled message (our Received: field, then the bytes
 * the client sent).
 *
 * Writes are coalesced: the delivery fields and the message's small pieces
 * (our trace fields, the client's bytes) are gathered in the tx up to
 * MAILDIR_COALESCE bytes and written together, so a typical message is one
 * write(2) into the file system instead of three; a large piece is written
 * from where it is, after what was gathered, in one writev(2).
 *
 * Group commit: tx_commit only queues; flush() makes every queued file
 * durable with one syncfs(), renames them, and syncs new/ once for the
 * whole batch. Measured against an fdatasync per file, one after another
 * or all at once through an io_uring ring (bench/spool_log.py sync): syncfs
 * took the least time and CPU per file (docs/spool.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/bb.h"
#include "sink.h"
#include "sink_fs.h"

struct maildir_conf {
	char *dir;
	char *host; /* hostname with '/' and ':' escaped, per the maildir spec */
};

#define MAILDIR_COALESCE (64u * 1024) /* bytes gathered before a write(2) */
#define MAILDIR_SMALL    (16u * 1024) /* pieces from this size on are not copied */

struct sink_tx {
	struct maildir_state *st;
	struct sink_tx *next;
	int fd;
	int err;   /* the write at tx_commit's error (-errno), reported at flush() */
	struct bb pending; /* bytes not yet written (coalesced writes, below) */
	char name[256];
	sink_done_fn *done;
	void *arg;
};

struct maildir_state {
	const struct maildir_conf *conf;
	int tmp_fd, new_fd;     /* directory descriptors */
	struct sink_tx *pending; /* committed, waiting for flush() */
	struct sink_tx **pending_tail;
};

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];

			buf[i] = '\0';
			if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
				return -errno;
			}
			buf[i] = c;
		}
	}
	return 0;
}

static int maildir_configure(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	static const char *const sub[] = { "tmp", "new", "cur" };
	struct maildir_conf *c;
	struct bb host;
	int rc;

	if (*arg == '\0') {
		if (asprintf(out_err, "maildir: missing directory (maildir:DIR)") < 0) {
			*out_err = NULL;
		}
		return -1;
	}
	for (size_t i = 0; i < 3; i++) {
		char p[4096];

		snprintf(p, sizeof(p), "%s/%s", arg, sub[i]);
		if ((rc = mkdir_p(p)) != 0) {
			if (asprintf(out_err, "maildir: %s: %s", p, strerror(-rc)) < 0) {
				*out_err = NULL;
			}
			return -1;
		}
	}
	bb_init(&host, 512);
	rc = 0;
	for (const char *h = ctx->hostname; *h && rc == 0; h++) {
		/* Maildir: '/' and ':' in the host part are written as \057 and \072. */
		if (*h == '/') {
			rc = bb_append_str(&host, "\\057");
		} else if (*h == ':') {
			rc = bb_append_str(&host, "\\072");
		} else {
			rc = bb_append(&host, h, 1);
		}
	}
	c = calloc(1, sizeof(*c));
	if (rc != 0 || c == NULL || bb_append(&host, "", 1) != 0 || (c->dir = strdup(arg)) == NULL) {
		bb_fini(&host);
		free(c);
		if (asprintf(out_err, "maildir: out of memory") < 0) {
			*out_err = NULL;
		}
		return -1;
	}
	c->host = (char *)host.p; /* NUL-terminated above; ownership moves to conf */
	*out_conf = c;
	return 0;
}

static void maildir_unconfigure(void *conf)
{
	struct maildir_conf *c = conf;

	free(c->dir); c->dir = NULL;
	free(c->host); c->host = NULL;
	free(c);
}

static int maildir_worker_init(const void *conf, void **out_state)
{
	const struct maildir_conf *c = conf;
	struct maildir_state *st = calloc(1, sizeof(*st));
	char p[4096];

	if (st == NULL) {
		return -ENOMEM;
	}
	st->conf = c;
	st->pending_tail = &st->pending;
	snprintf(p, sizeof(p), "%s/tmp", c->dir);
	st->tmp_fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(p, sizeof(p), "%s/new", c->dir);
	st->new_fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->tmp_fd < 0 || st->new_fd < 0) {
		int err = -errno;

		if (st->tmp_fd >= 0) {
			close(st->tmp_fd);
		}
		free(st);
		return err;
	}
	*out_state = st;
	return 0;
}

static void maildir_worker_fini(void *state)
{
	struct maildir_state *st = state;

	close(st->tmp_fd);
	close(st->new_fd);
	free(st);
}


/* drop_file closes and removes a file that will not be delivered. */
static void drop_file(struct sink_tx *tx)
{
	if (tx->fd >= 0) {
		close(tx->fd);
		tx->fd = -1;
	}
	unlinkat(tx->st->tmp_fd, tx->name, 0);
	bb_fini(&tx->pending);
}

/* write_out writes what the tx gathered, then `more` (not copied), in one writev; 0 or -errno. */
static int write_out(struct sink_tx *tx, struct span more)
{
	struct iovec iov[2] = {
		{ tx->pending.p, tx->pending.len },
		{ (void *)(uintptr_t)more.p, more.len },
	};
	int rc = sink_writev_all(tx->fd, iov, 2);

	bb_reset(&tx->pending, 0);
	return rc;
}

static int maildir_tx_begin(void *state, struct sink_tx **out_tx, const struct msg_env *env)
{
	struct maildir_state *st = state;
	struct sink_tx *tx = calloc(1, sizeof(*tx));
	int rc;

	if (tx == NULL) {
		return -ENOMEM;
	}
	tx->st = st;
	snprintf(tx->name, sizeof(tx->name), "%lld.%s.%s", (long long)(env->received_us / 1000000), env->id,
		 st->conf->host);
	tx->fd = openat(st->tmp_fd, tx->name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (tx->fd < 0) {
		rc = -errno;
		free(tx);
		return rc;
	}
	bb_init(&tx->pending, 0);
	rc = bb_reserve(&tx->pending, 8192);
	if (rc == 0) {
		rc = bb_printf(&tx->pending, "Return-Path: <%s>\r\n", env->mail_from ? env->mail_from : "");
	}
	for (size_t i = 0; rc == 0 && i < env->num_rcpts; i++) {
		rc = bb_printf(&tx->pending, "Delivered-To: <%s>\r\n", env->rcpts[i]);
	}
	if (rc != 0) {
		drop_file(tx);
		free(tx);
		return rc;
	}
	*out_tx = tx;
	return 0;
}

static int maildir_tx_write(struct sink_tx *tx, struct span bytes)
{
	if (bytes.len < MAILDIR_SMALL && tx->pending.len + bytes.len <= MAILDIR_COALESCE) {
		return bb_append_span(&tx->pending, bytes);
	}
	return write_out(tx, bytes);
}

static void maildir_tx_abort(struct sink_tx *tx)
{
	drop_file(tx);
	free(tx);
}

static void maildir_tx_commit(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	struct maildir_state *st = tx->st;

	tx->err = write_out(tx, span_make(NULL, 0));
	bb_fini(&tx->pending);
	tx->done = done;
	tx->arg = arg;
	tx->next = NULL;
	*st->pending_tail = tx;
	st->pending_tail = &tx->next;
}

static void maildir_flush(void *state)
{
	struct maildir_state *st = state;
	struct sink_tx *tx, *ok = NULL, **ok_tail = &ok, *next;
	int err = 0;

	if (st->pending == NULL) {
		return;
	}
	/* 1. Every queued file durable with one syncfs(2): one device flush for
	 * the batch, where an fdatasync per file costs one flush each on a
	 * filesystem without a journal to merge them. */
	if (syncfs(st->tmp_fd) != 0) {
		err = errno;
	}
	/* 2. Into new/: the consumer only ever sees complete files. */
	for (tx = st->pending; tx != NULL; tx = next) {
		int perr = err;

		next = tx->next;
		close(tx->fd);
		tx->fd = -1;
		if (perr == 0 && tx->err != 0) {
			perr = -tx->err;
		}
		if (perr == 0 && renameat(st->tmp_fd, tx->name, st->new_fd, tx->name) != 0) {
			perr = errno;
		}
		if (perr == 0) {
			tx->next = NULL;
			*ok_tail = tx;
			ok_tail = &tx->next;
			continue;
		}
		char why[512];

		snprintf(why, sizeof(why), "maildir: %s: %s", tx->name, strerror(perr));
		tx->done(tx->arg, SINK_TEMPFAIL, why);
		drop_file(tx);
		free(tx);
	}
	st->pending = NULL;
	st->pending_tail = &st->pending;
	/* 3. The renames durable: one fsync of new/ for the batch. */
	err = (ok != NULL && fsync(st->new_fd) != 0) ? errno : 0;
	for (tx = ok; tx != NULL; tx = next) {
		next = tx->next;
		if (err != 0) {
			tx->done(tx->arg, SINK_TEMPFAIL, strerror(err));
		} else {
			tx->done(tx->arg, SINK_OK, NULL);
		}
		free(tx);
	}
}

const struct sink_ops sink_maildir_ops = {
	.name = "maildir",
	.abi = SINK_ABI_VERSION,
	.configure = maildir_configure,
	.unconfigure = maildir_unconfigure,
	.worker_init = maildir_worker_init,
	.worker_fini = maildir_worker_fini,
	.tx_begin = maildir_tx_begin,
	.tx_write = maildir_tx_write,
	.tx_commit = maildir_tx_commit,
	.tx_abort = maildir_tx_abort,
	.flush = maildir_flush,
};
