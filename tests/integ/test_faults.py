"""
test_faults - fault injection: the spool and the maildir on a FUSE
passthrough that fails on demand (tests/integ/faultfs.py), a stream-sink
consumer that stops answering, and a DNS server that is down, slow or
answers garbage.

Spool on faultfs: disk full mid-message gives 452 4.3.1, an I/O error at
write or at fsync 451 4.3.0, never a 250; every 250'd message is delivered
byte for byte and the service resumes once the fault clears. Maildir on
faultfs: delivery fails for now, the message waits in the spool and is
delivered when the fault clears (--sink-retry-first 1). Stream sink whose
consumer reads but never answers: the message is retried at timeout= and
delivered once a consumer answers. DNS down/slow/garbage: 250 with
spf=temperror (the default --dkim-temperror accept), nothing lost.
Skips with the reason when /dev/fuse, fusepy or root is missing.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

from lib import (Conn, HERE, Server, Skip, T_DELIVER, check_delivered, crlf, ehlo, parse_queue_id, run,
                 send_message, dot_stuff)

PY = "/usr/bin/python3"


class FaultFS:
    """FaultFS mounts faultfs.py over a fresh directory; set(mode) switches the fault."""

    def __init__(self, base, name):
        self.root = os.path.join(base, name + ".root")
        self.mnt = os.path.join(base, name)
        self.ctl = os.path.join(base, name + ".ctl")
        os.makedirs(self.root)
        os.makedirs(self.mnt)
        self.set("none")
        self.log = open(os.path.join(base, name + ".log"), "wb")
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "faultfs.py"), self.root, self.mnt, self.ctl],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Skip("faultfs did not mount (%s)" % open(self.log.name).read()[-300:].strip())
            time.sleep(0.05)

    def set(self, mode):
        with open(self.ctl + ".tmp", "w") as f:
            f.write(mode + "\n")
        os.rename(self.ctl + ".tmp", self.ctl)
        time.sleep(0.05)  # mtime granularity: each switch is seen

    def close(self):
        subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def need_fuse():
    if not os.path.exists("/dev/fuse"):
        raise Skip("/dev/fuse missing (no FUSE in this kernel or container)")
    r = subprocess.run([PY, "-c", "import fusepy"], capture_output=True)
    if r.returncode != 0:
        raise Skip("python module fusepy missing (Debian package python3-fusepy)")
    if os.geteuid() != 0:
        raise Skip("mounting faultfs needs root")


def msg(tag, n, size=200):
    body = "".join("%s line %d %s\n" % (tag, k, "x" * 60) for k in range(max(1, size // 70)))
    return crlf("From: <a@x.test>\nSubject: %s %d\nMessage-ID: <%s-%d@faults.test>\n\n%s" % (tag, n, tag, n, body))


def data_reply(c, content, mid_hook=None):
    """data_reply sends MAIL/RCPT/DATA and the content (calling mid_hook half-way); returns the reply."""
    for cmd, want in (("MAIL FROM:<a@x.test>", 250), ("RCPT TO:<b@y.test>", 250), ("DATA", 354)):
        r = c.cmd(cmd)
        if r.code != want:
            return r
    body = dot_stuff(content) + b".\r\n"
    half = len(body) // 2
    c.send_quiet(body[:half], "first half")
    if mid_hook:
        time.sleep(0.2)
        mid_hook()
    c.send_quiet(body[half:], "second half")
    return c.reply()


def spool_faults(t, base):
    fs = FaultFS(base, "spoolfs")
    acked = {}
    try:
        with Server("--spool", fs.mnt, "--spool-segment-size", "1M", "--spool-max-size", "64M",
                    "--sink-retry-first", "1") as srv:
            c = Conn(srv.port)
            ehlo(t, c)
            n = [0]

            def one(want, mode=None, enhanced=None, size=200000):
                n[0] += 1
                content = msg("spool", n[0], size)
                hook = (lambda: fs.set(mode)) if mode else None
                r = data_reply(c, content, hook)
                fs.set("none")
                if r.code == 250:
                    acked[parse_queue_id(r)] = content
                t.expect(r, want, c, "end of data (%s)" % (mode or "no fault"), enhanced=enhanced)
                return r

            def failing(times, want, mode, enhanced, size=200000):
                # Each on a fresh connection: a failed transaction may leave the session unusable.
                nonlocal c
                for _ in range(times):
                    one(want, mode, enhanced, size=size)
                    c.close()
                    c = Conn(srv.port)
                    ehlo(t, c)

            def resume():
                # A segment the worker failed to make while the fault was on is
                # made again as soon as a transaction needs one, so the first
                # message after the fault clears gets its 250.
                n[0] += 1
                content = msg("spool", n[0], 200000)
                r = data_reply(c, content)
                if r.code == 250:
                    acked[parse_queue_id(r)] = content
                t.expect(r, 250, c, "end of data right after the fault has cleared")

            with t.case("spool_clean_message_accepted"):
                one(250)
            with t.case("spool_disk_full_mid_message_452"):
                one(452, "enospc", "4.3.1")
            with t.case("spool_resumes_after_disk_full"):
                resume()
            with t.case("spool_resumes_at_once_after_segments_ran_out_under_disk_full"):
                # Enough failed messages under the fault to use up the free
                # segments, so the worker's attempts to make more fail too.
                failing(30, 452, "enospc", "4.3.1", size=100000)
                resume()
            with t.case("spool_eio_at_write_451"):
                failing(5, 451, "eio-write", "4.3.0")
            with t.case("spool_resumes_after_eio_write"):
                c.close()
                c = Conn(srv.port)
                ehlo(t, c)
                resume()
            with t.case("spool_eio_at_fsync_451"):
                # The fault is on before the final dot: the data lands in the page cache, the flush fails.
                failing(10, 451, "eio-fsync", "4.3.0", size=2000)
            with t.case("spool_resumes_after_eio_fsync"):
                c.close()
                c = Conn(srv.port)
                ehlo(t, c)
                resume()
                for _ in range(2):
                    one(250)
            with t.case("spool_every_acked_message_delivered"):
                for q, content in acked.items():
                    check_delivered(t, srv.maildir, q, "a@x.test", ["b@y.test"], content)
                names = [d.content for d in srv.maildir.read_all()]
                t.check(len(names) == len(acked), "%d files in the maildir, %d messages acknowledged"
                        % (len(names), len(acked)))
                print("  note: spool faults: %d acknowledged, %d delivered, 0 lost" % (len(acked), len(names)))
            c.close()
    finally:
        fs.close()


def maildir_faults(t, base):
    fs = FaultFS(base, "mdfs")
    try:
        with Server("--sink-retry-first", "1", "--sink-retry-max", "2", sink=False) as srv:
            srv.args += []  # keep the default spool (temp dir)
            srv.stop()
            srv.args = ["--sink", "maildir:" + fs.mnt, "--sink-retry-first", "1", "--sink-retry-max", "2"]
            srv.maildir.path = fs.mnt
            srv.start()
            c = Conn(srv.port)
            ehlo(t, c)
            with t.case("maildir_eio_delivery_waits_then_resumes"):
                fs.set("eio-write")
                content = msg("maildir", 1)
                _, q = send_message(t, c, "a@x.test", ["b@y.test"], content)
                time.sleep(3)
                t.check(srv.maildir.count() == 0, "delivered although the maildir fails")
                t.check(srv.running(), "server died on a failing sink")
                fs.set("none")
                check_delivered(t, srv.maildir, q, "a@x.test", ["b@y.test"], content)
            with t.case("maildir_full_delivery_waits_then_resumes"):
                fs.set("enospc")
                content = msg("maildir", 2)
                _, q = send_message(t, c, "a@x.test", ["b@y.test"], content)
                time.sleep(3)
                t.check(srv.maildir.count() == 1, "delivered although the maildir is full")
                fs.set("none")
                check_delivered(t, srv.maildir, q, "a@x.test", ["b@y.test"], content)
            with t.case("maildir_fsync_eio_delivery_waits_then_resumes"):
                fs.set("eio-fsync")
                content = msg("maildir", 3)
                _, q = send_message(t, c, "a@x.test", ["b@y.test"], content)
                time.sleep(3)
                fs.set("none")
                check_delivered(t, srv.maildir, q, "a@x.test", ["b@y.test"], content)
                t.check(all(d.error is None for d in srv.maildir.read_all()), "a partial file in new/")
            c.close()
    finally:
        fs.close()


class Mute:
    """Mute is a stream-sink consumer on TCP that reads every frame; it answers only when answering is set."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.answering = False
        self.got = {}
        self.frames = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        buf = b""
        while True:
            m = re.match(rb"MSG (\S+) (\d+) (\d+)\n", buf)
            if m and len(buf) >= m.end() + int(m.group(2)) + int(m.group(3)) + 1:
                end = m.end() + int(m.group(2)) + int(m.group(3))
                mid, raw = m.group(1).decode(), buf[m.end() + int(m.group(2)):end]
                buf = buf[end + 1:]
                self.frames += 1
                if self.answering:
                    self.got[mid] = raw
                    s.sendall(b"OK %s\n" % mid.encode())
                continue
            try:
                d = s.recv(1 << 20)
            except OSError:
                return
            if not d:
                return
            buf += d


def stream_sink_mute(t):
    cons = Mute()
    with Server("--sink", "tcp:127.0.0.1:%d?timeout=2" % cons.port, "--sink-retry-first", "1",
                "--sink-retry-max", "2", sink=False) as srv:
        with t.case("stream_consumer_stops_answering_message_waits_then_delivered"):
            c = Conn(srv.port)
            ehlo(t, c)
            sent = {}
            for i in range(5):
                content = msg("stream", i)
                _, q = send_message(t, c, "a@x.test", ["b@y.test"], content)
                sent[q] = content
            c.close()
            deadline = time.monotonic() + 30
            while cons.frames < 10 and time.monotonic() < deadline:
                time.sleep(0.1)
            t.check(cons.frames >= 10, "not retried after the consumer's timeout: %d frames" % cons.frames)
            cons.answering = True
            deadline = time.monotonic() + T_DELIVER
            while set(sent) - set(cons.got) and time.monotonic() < deadline:
                time.sleep(0.1)
            lost = set(sent) - set(cons.got)
            t.check(not lost, "not delivered after the consumer answered: %r" % sorted(lost))
            for q, content in sent.items():
                t.check(cons.got[q].endswith(content), "%s: stored bytes differ" % q)
            print("  note: %d frames to a mute consumer before it answered, all %d delivered"
                  % (cons.frames - len(sent), len(sent)))
    cons.ls.close()


def dns_faults(t):
    try:
        sys.path.insert(0, HERE)
        from dns_server import DnsServer
    except ImportError as e:
        print("  note: DNS cases skipped: python3-dnslib missing (%s)" % e)
        return
    dns = DnsServer({"ok.example.net": [(300, [b"v=spf1 ip4:127.0.0.0/8 -all"])]},
                    {"slow.example.net": "timeout", "junk.example.net": "malformed",
                     "fail.example.net": "servfail", "big.example.net": "badtxt"})
    dns.start()
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))  # bound, never read: a resolver that is down (queries vanish)
    try:
        for label, port, senders in (("answering", dns.port, ("ok", "slow", "junk", "fail", "big")),
                                     ("down", dead.getsockname()[1], ("ok",))):
            with Server("--dns", "127.0.0.1:%d" % port, "--dns-timeout", "700") as srv:
                c = Conn(srv.port)
                ehlo(t, c)
                for who in senders:
                    with t.case("dns_%s_%s_accepted_and_marked" % (label, who)):
                        sender = "a@%s.example.net" % who
                        content = crlf("From: <%s>\nSubject: dns %s\n\nhello\n" % (sender, who))
                        _, q = send_message(t, c, sender, ["b@y.test"], content)
                        d = check_delivered(t, srv.maildir, q, sender, ["b@y.test"], content)
                        ar = b"".join(d.authres).decode("utf-8", "replace").replace("\r\n\t", " ")
                        want = "spf=pass" if (who == "ok" and label == "answering") else "spf="
                        t.check(want in ar, "%s: Authentication-Results %r lacks %s" % (sender, ar, want))
                        if who in ("slow", "fail") or label == "down":
                            t.check("spf=temperror" in ar, "%s: want spf=temperror: %r" % (sender, ar))
                c.close()
    finally:
        dns.stop()
        dead.close()


def main(t):
    base = tempfile.mkdtemp(prefix="omx-faults-")
    try:
        fuse_ok = True
        try:
            need_fuse()
        except Skip as e:
            fuse_ok = False
            print("  note: FUSE cases skipped: %s" % e)
        if fuse_ok:
            spool_faults(t, base)
            maildir_faults(t, base)
        stream_sink_mute(t)
        dns_faults(t)
        if not fuse_ok and t.passed == 0:
            raise Skip("no FUSE")
    finally:
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    run(main)
