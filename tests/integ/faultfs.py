"""
faultfs.py - a FUSE passthrough filesystem that fails on demand (fault
injection for tests/integ/test_faults.py).

    faultfs.py ROOT MOUNTPOINT CONTROL_FILE

Every operation goes to the same path under ROOT. Before each write,
fsync, create and truncate it reads CONTROL_FILE (only when its mtime
changed): one line "MODE [SUBSTRING]". MODE is none, enospc (write, create,
truncate and fsync answer ENOSPC), eio-write (write answers EIO), eio-fsync
(fsync answers EIO) or eio (both); with a SUBSTRING only paths containing
it fail. Runs in the foreground until unmounted (umount MOUNTPOINT).
Debian's python3-fusepy; needs /dev/fuse and root (or fusermount).
"""

import errno
import os
import sys
import threading

try:
    from fusepy import FUSE, FuseOSError, Operations  # Debian names the module fusepy
except ImportError:
    from fuse import FUSE, FuseOSError, Operations

ATTRS = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid", "st_blocks")


class FaultFS(Operations):
    def __init__(self, root, ctl):
        self.root = root
        self.ctl = ctl
        self.ctl_mtime = None
        self.mode, self.sub = "none", ""
        # fusepy serves operations on several threads, and reading the control
        # file releases the GIL: without the lock a second operation could see
        # the new mtime recorded but the old mode still set.
        self.mu = threading.Lock()

    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _fault(self, op, path):
        with self.mu:
            try:
                m = os.stat(self.ctl).st_mtime_ns
                if m != self.ctl_mtime:
                    words = open(self.ctl).read().split()
                    self.mode = words[0] if words else "none"
                    self.sub = words[1] if len(words) > 1 else ""
                    self.ctl_mtime = m
            except OSError:
                self.mode = "none"
            mode, sub = self.mode, self.sub
        if mode == "none" or (sub and sub not in path):
            return
        err = None
        if mode == "enospc" and op in ("write", "create", "truncate", "fsync"):
            err = errno.ENOSPC
        elif mode in ("eio", "eio-write") and op == "write":
            err = errno.EIO
        elif mode in ("eio", "eio-fsync") and op == "fsync":
            err = errno.EIO
        if err:
            raise FuseOSError(err)

    # -- metadata
    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path))
        return {k: getattr(st, k) for k in ATTRS}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def statfs(self, path):
        s = os.statvfs(self._p(path))
        return {k: getattr(s, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                            "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def access(self, path, amode):
        if not os.access(self._p(path), amode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._p(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._p(path), times)

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def link(self, target, source):
        os.link(self._p(source), self._p(target))

    def symlink(self, target, source):
        os.symlink(source, self._p(target))

    def readlink(self, path):
        return os.readlink(self._p(path))

    # -- data
    def open(self, path, flags):
        return os.open(self._p(path), flags)

    def create(self, path, mode, fi=None):
        self._fault("create", path)
        return os.open(self._p(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)  # read back later (mmap, pread)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._fault("write", path)
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._fault("truncate", path)
        os.truncate(self._p(path) if fh is None else fh, length)

    def fsync(self, path, datasync, fh):
        self._fault("fsync", path)
        (os.fdatasync if datasync else os.fsync)(fh)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: faultfs.py ROOT MOUNTPOINT CONTROL_FILE")
    root, mnt, ctl = sys.argv[1:]
    FUSE(FaultFS(os.path.abspath(root), os.path.abspath(ctl)), mnt, foreground=True, nothreads=False)


if __name__ == "__main__":
    main()
