/*
 * sink_json.c - "json:DIR[?inline_max=BYTES&raw=yes|no]": for every accepted
 * message, DIR/ID.eml (the spooled message: our Received: field + the
 * client's bytes; not with raw=no, for when another sink keeps the message)
 * and DIR/ID.json (its document, docs/json.md, with the envelope).
 * Attachments up to inline_max decoded bytes (default 65536) are inline in
 * the document as base64; larger ones are written to DIR/ID.att/PART_ID
 * and the document gives that path (relative to DIR).
 *
 * The message is parsed while tx_write streams it (the MIME parser is
 * incremental), so only bodies and small attachments are held in memory.
 * Durability as the maildir sink: flush() makes the batch durable with one
 * syncfs(), then publishes, and fsyncs DIR once per batch. The .json is
 * written under a ".tmp" name and renamed last, so a reader that sees
 * ID.json finds the rest complete; the .eml and attachment files are
 * written under their own names at once (a reader looks for them only
 * through the .json), which saves a rename per file, the largest cost of
 * this sink on ext4. Names come from env->id, so a redelivery replaces the
 * same files: a file that already exists is then written under a ".tmp"
 * name and renamed over it, so a reader never sees it half written.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/bb.h"
#include "../proto/message.h"
#include "../proto/msgdoc.h"
#include "sink.h"
#include "sink_doc.h"
#include "sink_fs.h"
#include "sink_query.h"

#define JSON_INLINE_MAX_DEFAULT 65536
#define JSON_MAX_FILES 1001 /* .eml, and one per attachment (MIME_PARTS_MAX) */

struct json_conf {
	char *dir;
	size_t inline_max;
	bool raw;           /* write ID.eml (raw=yes, default); raw=no when another sink keeps the message */
	char *authserv_id;  /* our hostname: our A-R field fills the "auth" section */
};

struct json_file {
	char tmp[320], final[320]; /* relative to DIR; tmp "" when written under final at once */
	int fd;
	uint32_t part;             /* part index of an attachment file, UINT32_MAX for .eml/.json */
};

struct sink_tx {
	struct json_state *st;
	struct sink_tx *next;
	const struct msg_env *env;
	struct message *msg;
	struct json_file *files; /* .eml (unless raw=no), then attachments, last = .json */
	size_t num_files, files_cap;
	int eml;                 /* slot of the .eml, -1 with raw=no */
	bool att_dir;            /* DIR/ID.att was made: sync it too */
	int err;
	sink_done_fn *done;
	void *arg;
};

struct json_state {
	const struct json_conf *conf;
	int dir_fd;
	struct sink_tx *pending;
	struct sink_tx **pending_tail;
};

/* json_options reads "inline_max=BYTES&raw=yes|no" (either, in any order) into c. */
static int json_options(struct json_conf *c, const char *opts, const char *arg, char **out_err)
{
	struct span cur = span_cstr(opts), key, val;
	bool has_val;

	while (sink_query_next(&cur, &key, &val, &has_val)) {
		uint64_t n;

		if (span_eq(key, span_cstr("inline_max")) && has_val) {
			if (!sink_query_uint(val, 0, UINT64_MAX / 2, &n)) {
				return sink_err(out_err, "json: inline_max: not a number of bytes in \"%s\"", arg);
			}
			c->inline_max = (size_t)n;
		} else if (!(span_eq(key, span_cstr("raw")) && has_val && sink_query_bool(val, &c->raw))) {
			return sink_err(out_err, "json: unknown option \"%.*s\" in \"%s\" (known: inline_max=BYTES, raw=yes|no)",
				       (int)(val.p + val.len - key.p), (const char *)key.p, arg);
		}
	}
	return 0;
}

static int json_configure(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	struct json_conf *c;
	const char *q = strchr(arg, '?');
	size_t dir_len = q ? (size_t)(q - arg) : strlen(arg);

	if (dir_len == 0) {
		return sink_err(out_err, "json: missing directory (json:DIR[?inline_max=BYTES&raw=yes|no])");
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->dir = strndup(arg, dir_len)) == NULL ||
	    (c->authserv_id = strdup(ctx->hostname ? ctx->hostname : "localhost")) == NULL) {
		if (c != NULL) {
			free(c->dir);
		}
		free(c);
		return sink_err(out_err, "json: out of memory");
	}
	c->inline_max = JSON_INLINE_MAX_DEFAULT;
	c->raw = true;
	if (q != NULL && json_options(c, q + 1, arg, out_err) != 0) {
		free(c->dir);
		free(c->authserv_id);
		free(c);
		return -1;
	}
	if (mkdir(c->dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;

		sink_err(out_err, "json: %s: %s", c->dir, strerror(e));
		free(c->dir);
		free(c->authserv_id);
		free(c);
		return -1;
	}
	*out_conf = c;
	return 0;
}

static void json_unconfigure(void *conf)
{
	struct json_conf *c = conf;

	free(c->authserv_id); c->authserv_id = NULL;
	free(c->dir); c->dir = NULL;
	free(c);
}

static int json_worker_init(const void *conf, void **out_state)
{
	struct json_state *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		return -ENOMEM;
	}
	st->conf = conf;
	st->pending_tail = &st->pending;
	st->dir_fd = open(st->conf->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dir_fd < 0) {
		int err = -errno;

		free(st);
		return err;
	}
	*out_state = st;
	return 0;
}

static void json_worker_fini(void *state)
{
	struct json_state *st = state;

	close(st->dir_fd);
	free(st);
}


/*
 * add_file opens a file of the message for writing: under DIR/<final> at
 * once when `direct` and the name is new, else under DIR/<final>.tmp (to
 * be renamed at flush). Returns its slot or -errno.
 */
static int add_file(struct sink_tx *tx, const char *final, uint32_t part, bool direct)
{
	struct json_file *f;

	if (tx->num_files >= JSON_MAX_FILES + 1) {
		return -E2BIG;
	}
	if (tx->num_files == tx->files_cap) {
		/* Grown on demand: most messages need two files (.eml, .json),
		 * and a table for the worst case cost a 650 KB calloc per message. */
		size_t cap = tx->files_cap ? tx->files_cap * 2 : 2;

		if ((f = reallocarray(tx->files, cap, sizeof(*f))) == NULL) {
			return -ENOMEM;
		}
		tx->files = f;
		tx->files_cap = cap;
	}
	f = &tx->files[tx->num_files];
	snprintf(f->final, sizeof(f->final), "%s", final);
	f->tmp[0] = '\0';
	f->fd = direct ? openat(tx->st->dir_fd, f->final, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
	if (f->fd < 0 && (!direct || errno == EEXIST)) {
		snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", final);
		f->fd = openat(tx->st->dir_fd, f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	}
	if (f->fd < 0) {
		return -errno;
	}
	f->part = part;
	return (int)tx->num_files++;
}

/* on_part_data: attachments past inline_max go to DIR/ID.att/PART_ID as they stream. */
static int on_part_data(void *arg, const struct message_part *p, uint64_t size_before, struct span data)
{
	struct sink_tx *tx = arg;
	const struct json_conf *c = tx->st->conf;
	uint32_t idx = message_part_index(p);
	int slot = -1, rc;

	if (size_before + data.len <= c->inline_max) {
		return 0;
	}
	for (size_t i = 0; i < tx->num_files; i++) {
		if (tx->files[i].part == idx) {
			slot = (int)i;
		}
	}
	if (slot < 0) {
		char name[320];
		struct span kept;

		snprintf(name, sizeof(name), "%s.att", tx->env->id);
		if (mkdirat(tx->st->dir_fd, name, 0700) != 0 && errno != EEXIST) {
			return -errno;
		}
		tx->att_dir = true;
		snprintf(name, sizeof(name), "%s.att/%s", tx->env->id, message_part_id(p));
		if ((slot = add_file(tx, name, idx, true)) < 0) {
			return slot;
		}
		/* The bytes so far are still kept by the message (keep_max = inline_max). */
		if (message_part_content(p, &kept) && kept.len == size_before &&
		    (rc = sink_write_all(tx->files[slot].fd, kept.p, kept.len)) != 0) {
			return rc;
		}
	}
	return sink_write_all(tx->files[slot].fd, data.p, data.len);
}

static void tx_free(struct sink_tx *tx, bool unlink_tmp)
{
	for (size_t i = 0; i < tx->num_files; i++) {
		if (tx->files[i].fd >= 0) {
			close(tx->files[i].fd);
		}
		if (unlink_tmp) {
			/* Never published: a file written under its own name goes too. */
			unlinkat(tx->st->dir_fd, tx->files[i].tmp[0] ? tx->files[i].tmp : tx->files[i].final, 0);
		}
	}
	message_free(tx->msg);
	free(tx->files);
	free(tx);
}

static int json_tx_begin(void *state, struct sink_tx **out_tx, const struct msg_env *env)
{
	struct json_state *st = state;
	struct sink_tx *tx = calloc(1, sizeof(*tx));
	char name[320];
	int rc;

	if (tx == NULL) {
		return -ENOMEM;
	}
	tx->st = st;
	tx->env = env;
	struct message_opts mo = { .keep_max = st->conf->inline_max, .part_data = on_part_data, .arg = tx };

	if ((tx->msg = message_new(&mo)) == NULL) {
		tx_free(tx, false);
		return -ENOMEM;
	}
	tx->eml = -1;
	snprintf(name, sizeof(name), "%s.eml", env->id);
	if (st->conf->raw && (tx->eml = add_file(tx, name, UINT32_MAX, true)) < 0) {
		rc = tx->eml;
		tx_free(tx, true);
		return rc;
	}
	*out_tx = tx;
	return 0;
}

static int json_tx_write(struct sink_tx *tx, struct span bytes)
{
	int rc = tx->eml >= 0 ? sink_write_all(tx->files[tx->eml].fd, bytes.p, bytes.len) : 0;

	return rc != 0 ? rc : message_feed(tx->msg, bytes.p, bytes.len);
}

static void json_tx_abort(struct sink_tx *tx)
{
	tx_free(tx, true);
}

static const char *att_path(void *arg, const struct message_part *p)
{
	struct sink_tx *tx = arg;

	for (size_t i = 0; i < tx->num_files; i++) {
		if (tx->files[i].part == message_part_index(p)) {
			return tx->files[i].final;
		}
	}
	return NULL;
}

static void json_tx_commit(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	struct json_state *st = tx->st;
	struct msgdoc_opts o = {
		.inline_max = st->conf->inline_max, .att_path = att_path, .arg = tx, .authserv_id = st->conf->authserv_id,
	};
	struct bb doc;
	char name[320];
	int rc, slot;

	tx->done = done;
	tx->arg = arg;
	bb_init(&doc, 0);
	rc = sink_doc_write(&doc, tx->msg, tx->env, &o);
	snprintf(name, sizeof(name), "%s.json", tx->env->id);
	if (rc == 0 && (slot = add_file(tx, name, UINT32_MAX, false)) < 0) {
		rc = slot;
	}
	if (rc == 0) {
		rc = sink_write_all(tx->files[tx->num_files - 1].fd, doc.p, doc.len);
	}
	bb_fini(&doc);
	tx->err = rc;
	tx->next = NULL;
	*st->pending_tail = tx;
	st->pending_tail = &tx->next;
}

static void json_flush(void *state)
{
	struct json_state *st = state;
	struct sink_tx *tx, *ok = NULL, **ok_tail = &ok, *next;
	int dir_err = 0;

	/* 1. every file of the batch durable with one syncfs (as the spool's group
	 * commit does: one journal commit instead of an fdatasync per file). */
	int sync_err = st->pending != NULL && syncfs(st->dir_fd) != 0 ? -errno : 0;

	for (tx = st->pending; tx != NULL; tx = next) {
		char why[512];
		int err = tx->err ? tx->err : sync_err;

		next = tx->next;
		/* 2. renamed, the .json last. */
		for (size_t i = 0; err == 0 && i < tx->num_files; i++) {
			if (tx->files[i].tmp[0] != '\0' &&
			    renameat(st->dir_fd, tx->files[i].tmp, st->dir_fd, tx->files[i].final) != 0) {
				err = -errno;
			}
		}
		if (err != 0) {
			snprintf(why, sizeof(why), "json: %s: %s", tx->env->id, strerror(-err));
			tx->done(tx->arg, SINK_TEMPFAIL, why);
			tx_free(tx, true);
			continue;
		}
		tx->next = NULL;
		*ok_tail = tx;
		ok_tail = &tx->next;
	}
	st->pending = NULL;
	st->pending_tail = &st->pending;
	/* 3. the directory once for the batch (attachment subdirectories too). */
	if (ok != NULL && fsync(st->dir_fd) != 0) {
		dir_err = errno;
	}
	for (tx = ok; tx != NULL; tx = next) {
		next = tx->next;
		if (dir_err == 0 && tx->att_dir) {
			char name[320];
			int fd;

			snprintf(name, sizeof(name), "%s.att", tx->env->id);
			fd = openat(st->dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0 || fsync(fd) != 0) {
				dir_err = errno;
			}
			if (fd >= 0) {
				close(fd);
			}
		}
		if (dir_err != 0) {
			tx->done(tx->arg, SINK_TEMPFAIL, strerror(dir_err));
		} else {
			tx->done(tx->arg, SINK_OK, NULL);
		}
		tx_free(tx, false);
	}
}

const struct sink_ops sink_json_ops = {
	.name = "json",
	.abi = SINK_ABI_VERSION,
	.configure = json_configure,
	.unconfigure = json_unconfigure,
	.worker_init = json_worker_init,
	.worker_fini = json_worker_fini,
	.tx_begin = json_tx_begin,
	.tx_write = json_tx_write,
	.tx_commit = json_tx_commit,
	.tx_abort = json_tx_abort,
	.flush = json_flush,
};
