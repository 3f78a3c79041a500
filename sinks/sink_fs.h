/*
 * sink_fs.h - small file helpers shared by the sinks that write files
 * (maildir, json). Blocking: sinks run on delivery workers, never shards.
 */
#ifndef OMX_SINK_FS_H
#define OMX_SINK_FS_H

#include <stddef.h>
#include <sys/uio.h>

/* sink_write_all writes all of p[0..len) to fd, retrying short writes and EINTR. 0 or -errno. */
int sink_write_all(int fd, const void *p, size_t len);

/* sink_writev_all is sink_write_all for n pieces in one writev(2); it advances iov. 0 or -errno. */
int sink_writev_all(int fd, struct iovec *iov, int n);

#endif
