"""
test_crash - durability across kill -9: nothing acknowledged is ever lost.

A pool of Python senders (each message with a unique Message-ID, recording
whether it got 250 and its queue id) plus smtp-source as background load
run against the server; once enough messages were acknowledged the server
gets SIGKILL mid-load. It is restarted on the same spool and maildir, killed
again at once (during recovery), restarted again, and then EVERY message that got a 250 must be in the maildir (duplicates allowed,
with the same queue id in the file name), byte for byte; no file may be a
partial message (maildir tmp/ -> new/), and the restarted server must work.
"""

import os
import re
import signal
import subprocess
import threading
import time

from lib import Conn, Server, T_DELIVER, T_IO, crlf, dot_stuff, parse_queue_id, run, scale

SMTP_SOURCE = "/usr/sbin/smtp-source"


class Pool:
    def __init__(self, port, threads):
        self.port = port
        self.lock = threading.Lock()
        self.sent = {}      # msgid -> (content, rcpts)
        self.acked = {}     # msgid -> queue id
        self.errors = []    # protocol errors seen before the kill (bugs)
        self.killed = threading.Event()
        self.ths = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for th in self.ths:
            th.start()

    def n_acked(self):
        with self.lock:
            return len(self.acked)

    def worker(self, w):
        n = 0
        while not self.killed.is_set():
            try:
                c = Conn(self.port, timeout=T_IO)
            except OSError:
                return  # server gone
            try:
                if c.greeting.code != 220 or c.cmd("EHLO pool%d.test" % w).code != 250:
                    raise EOFError
                for _ in range(25):  # new connection every 25 messages
                    n += 1
                    msgid = "crash-%d-%d@pool.test" % (w, n)
                    rcpts = ["r%d@y.test" % (n % 3)] + (["extra@y.test"] if n % 4 == 0 else [])
                    body = "".join("line %d of %s ..%s\n" % (k, msgid, "." * (k % 3)) for k in range(1 + n % 40))
                    content = crlf("From: <pool%d@x.test>\nSubject: %s\nMessage-ID: <%s>\n\n.%s" %
                                   (w, msgid, msgid, body))
                    with self.lock:
                        self.sent[msgid] = (content, rcpts)
                    data = "MAIL FROM:<pool%d@x.test>\r\n" % w + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts)
                    c.send(data + "DATA\r\n")  # PIPELINING
                    for _ in range(1 + len(rcpts)):
                        r = c.reply()
                        if r.code != 250:
                            raise EOFError(r)
                    r = c.reply()
                    if r.code != 354:
                        raise EOFError(r)
                    c.send_quiet(dot_stuff(content) + b".\r\n", "content")
                    r = c.reply()
                    if r.code != 250:
                        raise EOFError(r)
                    qid = parse_queue_id(r)
                    with self.lock:
                        self.acked[msgid] = qid
                c.cmd("QUIT")
            except Exception as e:  # OSError, EOFError, lib.Failure (timeout)
                if not self.killed.is_set():
                    with self.lock:
                        self.errors.append("%r\n%s" % (e, c.dump()))
                    return
                return
            finally:
                c.close()


def stop_all(srv, pool, bg):
    """stop_all: SIGKILL the server (by pid), then let the senders and smtp-source end."""
    pool.killed.set()
    if srv.running():
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=30)
    for th in pool.ths:
        if th.is_alive():
            th.join(timeout=T_IO * 2)
    if bg is not None and bg.poll() is None:
        try:
            bg.wait(timeout=T_IO)
        except subprocess.TimeoutExpired:
            bg.kill()
            bg.wait()


def main(t):
    # Both ways the spool makes a batch durable: one syncfs per batch (the
    # default) and per-file fdatasync plus a directory fsync.
    for mode in ("syncfs", "fsync"):
        crash_cycle(t, mode)


def crash_cycle(t, mode):
    kill_after = scale(3000, 800)
    with Server("--spool-sync", mode) as srv:
        md = srv.maildir
        pool = Pool(srv.port, scale(6, 4))
        bg = None
        with t.case("load_then_kill9_%s" % mode):
            if os.access(SMTP_SOURCE, os.X_OK):
                bg = subprocess.Popen([SMTP_SOURCE, "-s", "4", "-m", "1000000", "-l", "8192", "-M", "client.test",
                                       "-f", "bg@x.test", "-t", "bg@y.test", "127.0.0.1:%d" % srv.port],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                print("  note: %s missing (Debian package postfix): no background load" % SMTP_SOURCE)
            pool.start()
            deadline = time.monotonic() + T_DELIVER * 3
            while pool.n_acked() < kill_after and time.monotonic() < deadline and not pool.errors:
                time.sleep(0.01)
            t.check(not pool.errors, "sender errors before the kill:\n" + "\n".join(pool.errors[:3]))
            t.check(pool.n_acked() >= kill_after, "only %d messages acknowledged before the deadline"
                    % pool.n_acked())
            t.check(bg is None or bg.poll() is None, "smtp-source ended before the kill (rc %s)" %
                    (bg.poll() if bg else None))
            stop_all(srv, pool, bg)
            srv.check_sanitizers()
            print("  note: %d messages sent by the pool, %d acknowledged before kill -9"
                  % (len(pool.sent), len(pool.acked)))
        stop_all(srv, pool, bg)  # also when the case failed half-way
        acked = dict(pool.acked)
        sent = dict(pool.sent)

        with t.case("kill9_again_during_recovery_%s" % mode):
            # Restart and kill -9 at once, while the spool is being redelivered: recovery itself
            # must be crash-safe (no loss, no half-written file in new/).
            srv.start()
            srv.kill()
            srv.check_sanitizers()
            print("  note: %d files in the maildir at the second kill" % md.count())

        with t.case("restart_delivers_every_acked_message_%s" % mode):
            srv.start()
            t.check(all(acked.values()), "a 250 without queue id")
            found = md.wait_ids(sorted(set(acked.values())), T_DELIVER * 2)
            missing = [(m, q) for m, q in acked.items() if not found[q]]
            t.check(not missing, "%d of %d acknowledged messages missing after restart, e.g. %r"
                    % (len(missing), len(acked), missing[:5]))

        with t.case("every_file_complete_and_exact_%s" % mode):
            seen = {}
            for d in md.read_all():
                t.check(d.error is None, "%s: %s (a half-delivered message?) head %r" % (d.name, d.error, d.raw[:200]))
                m = re.search(rb"^Message-ID: <(crash-[^>]+)>\r\n", d.content, re.M)
                if not m:
                    t.check(d.return_path == "bg@x.test" and d.content.endswith(b"\r\n"),
                            "%s: unknown or truncated message: %r" % (d.name, d.content[-100:]))
                    continue
                msgid = m.group(1).decode()
                content, rcpts = sent[msgid]
                t.check(d.content == content, "%s: content of %s differs (%d vs %d octets)"
                        % (d.name, msgid, len(d.content), len(content)))
                t.check(sorted(d.rcpts) == sorted(rcpts), "%s: Delivered-To %r want %r" % (d.name, d.rcpts, rcpts))
                seen.setdefault(msgid, []).append(d.name)
            for msgid, names in seen.items():
                q = acked.get(msgid)
                if q:
                    t.check(all(q in n for n in names), "%s acked as %s but stored as %r" % (msgid, q, names))
            print("  note: %d pool messages in the maildir (%d acked), %d files in all"
                  % (len(seen), len(acked), md.count()))

        with t.case("restarted_server_accepts_mail_%s" % mode):
            c = Conn(srv.port)
            t.expect(c.cmd("EHLO after.test"), 250, c)
            t.expect(c.cmd("MAIL FROM:<after@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<after@y.test>"), 250, c)
            t.expect(c.cmd("DATA"), 354, c)
            c.send(b"Subject: after restart\r\n\r\nstill works\r\n.\r\n")
            r = t.expect(c.reply(), 250, c, "end of data")
            q = parse_queue_id(r)
            t.check(q not in set(acked.values()), "queue id %s reused after restart" % q, c)
            c.cmd("QUIT")
            got = md.wait_ids([q])[q]
            t.check(got and got[0].content == b"Subject: after restart\r\n\r\nstill works\r\n",
                    "message after restart not delivered exactly", c)


if __name__ == "__main__":
    run(main)
