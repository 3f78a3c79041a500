/*
 * privs.h - dropping root after start-up, as Postfix's master and OpenSMTPD
 * do: main binds the listeners (port 25 needs root), reads the TLS keys,
 * prepares the spool, and then becomes --user with no capabilities left.
 * Everything created afterwards (spool segments, sink files) belongs to
 * that user.
 */
#ifndef OMX_PRIVS_H
#define OMX_PRIVS_H

#include "cfg.h"

/*
 * privs_drop becomes cfg->user (default "oceanmx" when that user exists)
 * when the process runs as root: first it creates the spool directory and
 * any missing parent (those it creates belong to the user) and gives the
 * spool tree to the user, then it sets the user's groups, gid and uid.
 * Not root, "root", or the default user missing: nothing to do (logged).
 * Main thread, before the worker threads start. 0, or -errno with a
 * message in *out_err (malloc'd).
 */
int privs_drop(const struct cfg *cfg, char **out_err);

#endif
