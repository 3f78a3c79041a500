/*
 * sink_exec.c - "exec:PATH[?concurrency=N&timeout=S]": one process per
 * message, running the program at PATH (absolute; no shell, no PATH
 * search) with:
 *   stdin   the message as stored (our trace fields, then the client's
 *           bytes): a private unlinked temporary file, so it is seekable
 *   stdout  /dev/null
 *   stderr  a pipe: its first line is the reason of a refusal
 *   env     OMX_ID, OMX_MAIL_FROM, OMX_RCPT_TO (comma separated),
 *           OMX_CLIENT_IP, OMX_HELO, OMX_JSON (the path of the message
 *           document, docs/json.md, in a private 0700 directory; removed
 *           when the process ends), and PATH; nothing else of ours
 * Exit 0 is delivered, 75 (EX_TEMPFAIL, sysexits.h) retried, any other
 * status permanent with the first line of stderr (sanitised, sink_text.h);
 * death by a signal is retried. At the timeout (default 60 s) the whole
 * process group gets SIGKILL and the message is retried.
 *
 * Up to `concurrency` (default 4) processes per delivery worker run at
 * once: tx_commit starts one when a slot is free, flush waits (poll on
 * pidfds and stderr pipes) until every process of the batch has ended,
 * calling done() for each. Each child gets its own process group, an
 * empty signal mask and default signal actions (the server blocks or
 * ignores some); every descriptor of ours is O_CLOEXEC, and the spawn
 * closes every descriptor above 2 (closefrom), so it inherits only 0, 1, 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../core/bb.h"
#include "sink.h"
#include "sink_doc.h"
#include "sink_fs.h"
#include "sink_query.h"
#include "sink_text.h"

#define EXEC_CONCURRENCY_DEFAULT 4
#define EXEC_CONCURRENCY_MAX 256
#define EXEC_TIMEOUT_DEFAULT 60
#define EXEC_TIMEOUT_MAX 86400
#define EXEC_STDERR_KEEP 512 /* bytes of stderr kept; the rest is read and dropped */
#define EXEC_TEMPFAIL 75     /* EX_TEMPFAIL, sysexits.h */
#define EXEC_PATH_DEFAULT "/usr/local/bin:/usr/bin:/bin"

extern char **environ;

struct exec_conf {
	char *path;
	char *env_path;  /* PATH for the child: the server's */
	char *tmp_base;  /* where each worker makes its private directory */
	char *authserv_id;
	unsigned concurrency;
	unsigned timeout_s;
};

struct sink_tx {
	struct exec_state *st;
	struct sink_tx *next;
	const struct msg_env *env;
	struct sink_doc doc;
	int raw_fd;            /* the message, the child's stdin */
	char json_name[MSG_ID_MAX + 8];
	bool json_written;
	pid_t pid;             /* 0 until started */
	int pidfd;             /* readable when the child has ended */
	int err_fd;            /* read end of its stderr, -1 at EOF */
	uint8_t err[EXEC_STDERR_KEEP];
	size_t err_len;
	int64_t deadline_ms;
	bool killed;
	sink_done_fn *done;
	void *arg;
};

struct exec_state {
	const struct exec_conf *conf;
	char dir[PATH_MAX];   /* private 0700 directory of this worker */
	int dir_fd;
	int devnull;
	struct sink_tx *waiting, **waiting_tail;
	struct sink_tx **running; /* concurrency slots, NULL when free */
	unsigned num_running;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conf_free(struct exec_conf *c)
{
	if (c == NULL) {
		return;
	}
	free(c->path); c->path = NULL;
	free(c->env_path); c->env_path = NULL;
	free(c->tmp_base); c->tmp_base = NULL;
	free(c->authserv_id); c->authserv_id = NULL;
	free(c);
}

static int exec_configure(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	struct exec_conf *c = calloc(1, sizeof(*c));
	const char *q = strchr(arg, '?'), *tmp = getenv("TMPDIR"), *path = getenv("PATH");
	size_t path_len = q ? (size_t)(q - arg) : strlen(arg);
	struct span cur, key, val;
	bool has_val;
	uint64_t n;

	if (c == NULL) {
		return sink_err(out_err, "exec: out of memory");
	}
	c->concurrency = EXEC_CONCURRENCY_DEFAULT;
	c->timeout_s = EXEC_TIMEOUT_DEFAULT;
	if (path_len == 0 || arg[0] != '/') {
		conf_free(c);
		return sink_err(out_err, "exec: want an absolute path (exec:/PATH[?concurrency=N&timeout=S]), got \"%s\"", arg);
	}
	c->path = strndup(arg, path_len);
	c->env_path = strdup(path && path[0] ? path : EXEC_PATH_DEFAULT);
	c->tmp_base = strdup(tmp && tmp[0] == '/' ? tmp : "/tmp");
	c->authserv_id = strdup(ctx->hostname ? ctx->hostname : "localhost");
	if (c->path == NULL || c->env_path == NULL || c->tmp_base == NULL || c->authserv_id == NULL) {
		conf_free(c);
		return sink_err(out_err, "exec: out of memory");
	}
	cur = q ? span_cstr(q + 1) : span_make(NULL, 0);
	while (sink_query_next(&cur, &key, &val, &has_val)) {
		if (span_eq(key, span_cstr("concurrency")) && sink_query_uint(val, 1, EXEC_CONCURRENCY_MAX, &n)) {
			c->concurrency = (unsigned)n;
		} else if (span_eq(key, span_cstr("timeout")) && sink_query_uint(val, 1, EXEC_TIMEOUT_MAX, &n)) {
			c->timeout_s = (unsigned)n;
		} else {
			sink_err(out_err,
				"exec: bad option \"%.*s\" in \"%s\" (known: concurrency=1..%d, timeout=1..%d seconds)",
				(int)(val.p + val.len - key.p), key.p, arg, EXEC_CONCURRENCY_MAX, EXEC_TIMEOUT_MAX);
			conf_free(c);
			return -1;
		}
	}
	struct stat sb;
	const char *bad = NULL;

	if (stat(c->path, &sb) != 0) {
		bad = strerror(errno);
	} else if (!S_ISREG(sb.st_mode)) {
		bad = "not a regular file";
	} else if (access(c->path, X_OK) != 0) {
		bad = strerror(errno);
	}
	if (bad != NULL) {
		sink_err(out_err, "exec: %s: %s", c->path, bad);
		conf_free(c);
		return -1;
	}
	*out_conf = c;
	return 0;
}

static void exec_unconfigure(void *conf)
{
	conf_free(conf);
}

static int exec_worker_init(const void *conf, void **out_state)
{
	const struct exec_conf *c = conf;
	struct exec_state *st = calloc(1, sizeof(*st));
	int err;

	if (st == NULL || (st->running = calloc(c->concurrency, sizeof(*st->running))) == NULL) {
		free(st);
		return -ENOMEM;
	}
	st->conf = c;
	st->waiting_tail = &st->waiting;
	st->dir_fd = -1;
	st->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	snprintf(st->dir, sizeof(st->dir), "%s/oceanmx-exec.XXXXXX", c->tmp_base);
	if (st->devnull < 0 || mkdtemp(st->dir) == NULL) { /* mkdtemp: mode 0700 */
		err = -errno;
		goto fail;
	}
	if ((st->dir_fd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		err = -errno;
		rmdir(st->dir);
		goto fail;
	}
	*out_state = st;
	return 0;
fail:
	if (st->devnull >= 0) {
		close(st->devnull);
	}
	free(st->running);
	free(st);
	return err;
}

static void exec_worker_fini(void *state)
{
	struct exec_state *st = state;

	close(st->dir_fd);
	close(st->devnull);
	rmdir(st->dir);
	free(st->running);
	free(st);
}

/* fd_high moves fd above 2, so no dup2 onto 0..2 in the child is a no-op that keeps O_CLOEXEC. */
static int fd_high(int fd)
{
	int hi;

	if (fd < 0 || fd > 2) {
		return fd;
	}
	hi = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return hi;
}

static void tx_free(struct sink_tx *tx)
{
	struct exec_state *st = tx->st;

	sink_doc_fini(&tx->doc);
	if (tx->raw_fd >= 0) {
		close(tx->raw_fd);
	}
	if (tx->err_fd >= 0) {
		close(tx->err_fd);
	}
	if (tx->pidfd >= 0) {
		close(tx->pidfd);
	}
	if (tx->json_written) {
		unlinkat(st->dir_fd, tx->json_name, 0);
	}
	free(tx);
}

static int exec_tx_begin(void *state, struct sink_tx **out_tx, const struct msg_env *env)
{
	struct exec_state *st = state;
	struct sink_tx *tx = calloc(1, sizeof(*tx));

	if (tx == NULL) {
		return -ENOMEM;
	}
	tx->st = st;
	tx->env = env;
	tx->err_fd = tx->pidfd = -1;
	tx->raw_fd = fd_high(openat(st->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
	if (tx->raw_fd < 0 || sink_doc_init(&tx->doc) != 0) {
		int err = tx->raw_fd < 0 ? -errno : -ENOMEM;

		tx_free(tx);
		return err;
	}
	*out_tx = tx;
	return 0;
}

static int exec_tx_write(struct sink_tx *tx, struct span bytes)
{
	int rc = sink_write_all(tx->raw_fd, bytes.p, bytes.len);

	return rc != 0 ? rc : sink_doc_feed(&tx->doc, bytes);
}

static void exec_tx_abort(struct sink_tx *tx)
{
	tx_free(tx);
}

/* env_add appends "NAME=value" (value NULL: empty) to the block; offsets go to offs. */
static int env_add(struct bb *b, size_t *offs, size_t *num, const char *name, const char *value)
{
	offs[(*num)++] = b->len;
	return bb_printf(b, "%s=%s", name, value ? value : "") != 0 || bb_append(b, "", 1) != 0 ? -ENOMEM : 0;
}

/* spawn starts the child of tx. 0 or -errno. */
static int spawn(struct exec_state *st, struct sink_tx *tx)
{
	const struct exec_conf *c = st->conf;
	const struct msg_env *e = tx->env;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	struct bb block;
	size_t offs[8], num = 0;
	char *envp[9], *argv[2] = { c->path, NULL }, json_path[PATH_MAX + MSG_ID_MAX + 16];
	int pipefd[2] = { -1, -1 }, rc;

	snprintf(json_path, sizeof(json_path), "%s/%s", st->dir, tx->json_name);
	bb_init(&block, 0);
	rc = env_add(&block, offs, &num, "OMX_ID", e->id);
	rc = rc ? rc : env_add(&block, offs, &num, "OMX_MAIL_FROM", e->mail_from);
	if (rc == 0) {
		offs[num++] = block.len;
		rc = bb_append_str(&block, "OMX_RCPT_TO=");
		for (size_t i = 0; rc == 0 && i < e->num_rcpts; i++) {
			rc = (i > 0 ? bb_append(&block, ",", 1) : 0) || bb_append_str(&block, e->rcpts[i]) ? -ENOMEM : 0;
		}
		rc = rc ? rc : bb_append(&block, "", 1);
	}
	rc = rc ? rc : env_add(&block, offs, &num, "OMX_CLIENT_IP", e->client_ip);
	rc = rc ? rc : env_add(&block, offs, &num, "OMX_HELO", e->helo);
	rc = rc ? rc : env_add(&block, offs, &num, "OMX_JSON", json_path);
	rc = rc ? rc : env_add(&block, offs, &num, "PATH", c->env_path);
	if (rc != 0) {
		bb_fini(&block);
		return -ENOMEM;
	}
	for (size_t i = 0; i < num; i++) {
		envp[i] = (char *)block.p + offs[i];
	}
	envp[num] = NULL;

	if (pipe2(pipefd, O_CLOEXEC) != 0) {
		rc = -errno;
		bb_fini(&block);
		return rc;
	}
	pipefd[0] = fd_high(pipefd[0]);
	pipefd[1] = fd_high(pipefd[1]);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, tx->raw_fd, 0);
	posix_spawn_file_actions_adddup2(&fa, st->devnull, 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	/* Ours are O_CLOEXEC, but not every descriptor of the process is (nor
	 * what the server inherited): the child gets 0, 1 and 2 only. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	if (lseek(tx->raw_fd, 0, SEEK_SET) != 0) {
		rc = -errno;
	} else {
		rc = -posix_spawn(&tx->pid, c->path, &fa, &at, argv, envp);
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	bb_fini(&block);
	close(pipefd[1]);
	if (rc != 0) {
		close(pipefd[0]);
		tx->pid = 0;
		return rc;
	}
	tx->err_fd = pipefd[0];
	tx->pidfd = (int)syscall(SYS_pidfd_open, tx->pid, 0);
	if (tx->pidfd < 0) {
		/* Cannot watch it: stop it now rather than lose track of it. */
		rc = -errno;
		kill(-tx->pid, SIGKILL);
		waitpid(tx->pid, NULL, 0);
		tx->pid = 0;
		return rc;
	}
	tx->deadline_ms = now_ms() + (int64_t)c->timeout_s * 1000;
	return 0;
}

/* drain_stderr reads what the pipe holds: the first bytes are kept, the rest dropped. */
static void drain_stderr(struct sink_tx *tx)
{
	uint8_t sink[4096];

	while (tx->err_fd >= 0) {
		size_t room = sizeof(tx->err) - tx->err_len;
		ssize_t n = room > 0 ? read(tx->err_fd, tx->err + tx->err_len, room) : read(tx->err_fd, sink, sizeof(sink));

		if (n > 0) {
			tx->err_len += room > 0 ? (size_t)n : 0;
			continue;
		}
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n == 0) {
			close(tx->err_fd);
			tx->err_fd = -1;
		}
		return; /* EAGAIN: nothing more now */
	}
}

/* finish reaps the child of tx, answers done() and frees tx. */
static void finish(struct sink_tx *tx)
{
	const struct exec_conf *c = tx->st->conf;
	char why[512], line[SINK_TEXT_MAX + 1];
	enum sink_rc rc;
	int status = 0;

	while (waitpid(tx->pid, &status, 0) < 0 && errno == EINTR) {
	}
	drain_stderr(tx);
	sink_text_line(line, sizeof(line), span_make(tx->err, tx->err_len));
	if (tx->killed) {
		rc = SINK_TEMPFAIL;
		snprintf(why, sizeof(why), "exec: killed after the timeout of %us", c->timeout_s);
	} else if (WIFSIGNALED(status)) {
		rc = SINK_TEMPFAIL;
		snprintf(why, sizeof(why), "exec: killed by signal %d%s%s", WTERMSIG(status), line[0] ? ": " : "", line);
	} else if (WEXITSTATUS(status) == 0) {
		rc = SINK_OK;
	} else {
		rc = WEXITSTATUS(status) == EXEC_TEMPFAIL ? SINK_TEMPFAIL : SINK_PERMFAIL;
		snprintf(why, sizeof(why), "exec: exit %d%s%s", WEXITSTATUS(status), line[0] ? ": " : "", line);
	}
	tx->done(tx->arg, rc, rc == SINK_OK ? NULL : why);
	tx_free(tx);
}

/* start_waiting spawns waiting children while slots are free. */
static void start_waiting(struct exec_state *st)
{
	while (st->waiting != NULL && st->num_running < st->conf->concurrency) {
		struct sink_tx *tx = st->waiting;
		int rc;

		st->waiting = tx->next;
		if (st->waiting == NULL) {
			st->waiting_tail = &st->waiting;
		}
		if ((rc = spawn(st, tx)) != 0) {
			char why[PATH_MAX + 64];

			snprintf(why, sizeof(why), "exec: %s: %s", st->conf->path, strerror(-rc));
			tx->done(tx->arg, SINK_TEMPFAIL, why);
			tx_free(tx);
			continue;
		}
		for (unsigned i = 0; i < st->conf->concurrency; i++) {
			if (st->running[i] == NULL) {
				st->running[i] = tx;
				break;
			}
		}
		st->num_running++;
	}
}

static void exec_tx_commit(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	struct exec_state *st = tx->st;
	struct bb doc;
	int rc, fd = -1;

	tx->done = done;
	tx->arg = arg;
	bb_init(&doc, 0);
	rc = sink_doc_finish(&tx->doc, &doc, tx->env, st->conf->authserv_id);
	sink_doc_fini(&tx->doc);
	rc = rc ? rc : bb_append(&doc, "\n", 1);
	snprintf(tx->json_name, sizeof(tx->json_name), "%s.json", tx->env->id);
	if (rc == 0) {
		fd = openat(st->dir_fd, tx->json_name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
		rc = fd < 0 ? -errno : 0;
		tx->json_written = fd >= 0;
	}
	rc = rc ? rc : sink_write_all(fd, doc.p, doc.len);
	if (fd >= 0 && close(fd) != 0 && rc == 0) {
		rc = -errno;
	}
	bb_fini(&doc);
	if (rc != 0) {
		char why[128];

		snprintf(why, sizeof(why), "exec: cannot write the document: %s", strerror(-rc));
		done(arg, SINK_TEMPFAIL, why);
		tx_free(tx);
		return;
	}
	tx->next = NULL;
	*st->waiting_tail = tx;
	st->waiting_tail = &tx->next;
	start_waiting(st); /* the first processes run while the batch is still being read */
}

static void exec_flush(void *state)
{
	struct exec_state *st = state;
	struct pollfd pfd[2 * EXEC_CONCURRENCY_MAX];
	struct sink_tx *owner[2 * EXEC_CONCURRENCY_MAX];
	bool is_err[2 * EXEC_CONCURRENCY_MAX];

	start_waiting(st);
	while (st->num_running > 0) {
		int64_t now = now_ms(), wait = INT32_MAX;
		nfds_t n = 0;

		for (unsigned i = 0; i < st->conf->concurrency; i++) {
			struct sink_tx *tx = st->running[i];

			if (tx == NULL) {
				continue;
			}
			if (!tx->killed && now >= tx->deadline_ms) {
				kill(-tx->pid, SIGKILL); /* its group: a script's children too */
				tx->killed = true;
			}
			if (!tx->killed && tx->deadline_ms - now < wait) {
				wait = tx->deadline_ms - now;
			}
			pfd[n] = (struct pollfd){ .fd = tx->pidfd, .events = POLLIN };
			is_err[n] = false;
			owner[n++] = tx;
			if (tx->err_fd >= 0) {
				pfd[n] = (struct pollfd){ .fd = tx->err_fd, .events = POLLIN };
				is_err[n] = true;
				owner[n++] = tx;
			}
		}
		if (poll(pfd, n, (int)wait) < 0 && errno != EINTR) {
			continue;
		}
		for (nfds_t k = 0; k < n; k++) {
			struct sink_tx *tx = owner[k];

			if (pfd[k].revents == 0) {
				continue;
			}
			if (is_err[k]) {
				drain_stderr(tx);
				continue;
			}
			/* the child ended */
			for (unsigned i = 0; i < st->conf->concurrency; i++) {
				if (st->running[i] == tx) {
					st->running[i] = NULL;
				}
			}
			st->num_running--;
			for (nfds_t j = k + 1; j < n; j++) {
				if (owner[j] == tx) {
					owner[j] = NULL; /* its stderr entry: tx is gone */
					pfd[j].revents = 0;
				}
			}
			finish(tx);
		}
		start_waiting(st);
	}
}

const struct sink_ops sink_exec_ops = {
	.name = "exec",
	.abi = SINK_ABI_VERSION,
	.configure = exec_configure,
	.unconfigure = exec_unconfigure,
	.worker_init = exec_worker_init,
	.worker_fini = exec_worker_fini,
	.tx_begin = exec_tx_begin,
	.tx_write = exec_tx_write,
	.tx_commit = exec_tx_commit,
	.tx_abort = exec_tx_abort,
	.flush = exec_flush,
};
