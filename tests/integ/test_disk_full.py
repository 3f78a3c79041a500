"""
test_disk_full - the spool on a filesystem that fills up (a small tmpfs
mounted for the test): once a message no longer fits, end of data answers
452 4.3.1 (never 250, never a crash), the segment it spilled into goes back
to the standard size (issue 13 bug 4: no spool file keeps a rejected
message's size), the session goes on, and the next message is accepted and
delivered. The log's segments are small here (--spool-segment-size 64K) so
that several fit on the 1 MiB disk. Needs root (mount); skipped with the
reason otherwise.
"""

import os
import subprocess
import tempfile
import time

from lib import Conn, Server, Skip, check_delivered, crlf, ehlo, run, send_message


def main(t):
    mnt = tempfile.mkdtemp(prefix="omx-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        os.rmdir(mnt)
        raise Skip("cannot mount a tmpfs for the spool (needs root): %s" % r.stdout.decode().strip())
    try:
        run_full(t, mnt)
    finally:
        subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)


def run_full(t, mnt):
    spool = os.path.join(mnt, "spool")
    # The maildir is elsewhere: only the spool fills up.
    seg = 64 * 1024
    with Server("--spool", spool, "--max-message-size", "8M", "--spool-segment-size", str(seg)) as srv:
        c = Conn(srv.port)
        ehlo(t, c)
        with t.case("small_message_fits"):
            small = crlf("Subject: fits\n\nsmall\n")
            _, q = send_message(t, c, "a@x.test", ["b@y.test"], small)
            check_delivered(t, srv.maildir, q, "a@x.test", ["b@y.test"], small)

        with t.case("message_larger_than_the_disk_gets_452"):
            big = crlf("Subject: too big for the disk\n\n" + ("x" * 998 + "\n") * 2000)  # ~2 MB > 1 MiB tmpfs
            r, _ = send_message(t, c, "a@x.test", ["b@y.test"], big, want=None)
            t.expect(r, 452, c, "end of data on a full spool", enhanced="4.3.1")
            logdir = os.path.join(spool, "log")
            deadline = time.monotonic() + 10
            while True:
                sizes = {f: os.path.getsize(os.path.join(logdir, f)) for f in os.listdir(logdir) if f.endswith(".seg")}
                if all(v == seg for v in sizes.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            t.check(sizes and all(v == seg for v in sizes.values()),
                    "a segment kept the rejected message's size: %r" % sizes)

        with t.case("session_goes_on_and_next_message_is_accepted"):
            ok = crlf("Subject: after the full disk\n\nagain\n")
            _, q = send_message(t, c, "a@x.test", ["b@y.test"], ok)
            check_delivered(t, srv.maildir, q, "a@x.test", ["b@y.test"], ok)
            t.expect(c.cmd("QUIT"), 221, c)


if __name__ == "__main__":
    run(main)
