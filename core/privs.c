/* privs.c - dropping root after start-up; see privs.h. */
#include "privs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define PRIVS_DEFAULT_USER "oceanmx"

static int fail(char **out_err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **out_err, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(out_err, fmt, ap) < 0) {
		*out_err = NULL;
	}
	va_end(ap);
	return rc;
}

/* mkdir_owned creates each missing component of path (0750) owned by uid:gid. */
static int mkdir_owned(const char *path, uid_t uid, gid_t gid)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0') {
			continue;
		}
		buf[i] = '\0';
		if (mkdir(buf, 0750) == 0) {
			if (chown(buf, uid, gid) != 0) {
				return -errno;
			}
		} else if (errno != EEXIST) {
			return -errno;
		}
		buf[i] = i < n ? '/' : '\0';
	}
	return 0;
}

static uid_t tree_uid;
static gid_t tree_gid;

static int chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	if ((st->st_uid != tree_uid || st->st_gid != tree_gid) && lchown(path, tree_uid, tree_gid) != 0) {
		return errno != 0 ? errno : EIO;
	}
	return 0;
}

int privs_drop(const struct cfg *cfg, char **out_err)
{
	const char *name = cfg->user != NULL ? cfg->user : PRIVS_DEFAULT_USER;
	struct passwd *pw;
	int rc;

	*out_err = NULL;
	if (geteuid() != 0) {
		if (cfg->user != NULL) {
			log_line(LOG_NOTICE, "main", "privs user=%s ignored: not started as root (uid %u)", cfg->user,
				 (unsigned)geteuid());
		}
		return 0;
	}
	errno = 0;
	pw = getpwnam(name);
	if (pw == NULL) {
		if (cfg->user != NULL) {
			return fail(out_err, -ENOENT, "user: no user \"%s\" (--user)", name);
		}
		log_line(LOG_WARN, "main", "privs.keep user=root reason=\"no %s user: create one, or set --user\"",
			 PRIVS_DEFAULT_USER);
		return 0;
	}
	if (pw->pw_uid == 0) {
		log_line(LOG_WARN, "main", "privs.keep user=%s reason=\"uid 0 asked for\"", name);
		return 0;
	}
	/* The spool is ours to give away; sink directories are created after
	 * the drop, so they belong to the user from the start. */
	if ((rc = mkdir_owned(cfg->spool_dir, pw->pw_uid, pw->pw_gid)) != 0) {
		return fail(out_err, rc, "spool %s: %s", cfg->spool_dir, strerror(-rc));
	}
	tree_uid = pw->pw_uid;
	tree_gid = pw->pw_gid;
	if ((rc = nftw(cfg->spool_dir, chown_one, 32, FTW_PHYS | FTW_MOUNT)) != 0) {
		return fail(out_err, rc > 0 ? -rc : -EIO, "spool %s: cannot give it to %s: %s", cfg->spool_dir, name,
			    strerror(rc > 0 ? rc : errno));
	}
	if (initgroups(name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		rc = -errno;
		return fail(out_err, rc, "cannot become %s: %s", name, strerror(-rc));
	}
	/* A setuid that could be undone is no drop at all. */
	if (setuid(0) == 0 || geteuid() == 0) {
		return fail(out_err, -EPERM, "still root after becoming %s", name);
	}
	/* Keep core dumps possible (setuid cleared the flag); they hold no
	 * more than this user may read. */
	(void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	log_line(LOG_NOTICE, "main", "privs.drop user=%s uid=%u gid=%u", name, (unsigned)pw->pw_uid,
		 (unsigned)pw->pw_gid);
	return 0;
}
