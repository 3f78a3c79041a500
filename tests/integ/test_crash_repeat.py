"""
test_crash_repeat - kill -9 under load, 20 times on the same spool and
maildir, restarting each time; then every message that got a 250 must be
in the maildir exactly as sent, counted by a unique token per message.

Each cycle: start the server on the spool of the previous cycles (it
recovers and redelivers what it owes), run oceanmx-load as background load
(open loop, -R) and a pool of Python senders whose messages carry a unique
X-Token field; once the pool has CRASH_ACKS acknowledgements (or after a
few seconds) the server gets SIGKILL. At the end one last start delivers
what is left, and we count: acknowledged, delivered, lost (must be 0),
duplicated (delivered more than once: allowed, at least once, reported),
and delivered without a 250 (allowed: the kill came between the flush and
the reply). Every stored pool message must be byte-exact and complete.

Env: OMX_CRASH_CYCLES (default 20), OMX_CRASH_ACKS (acks per cycle before
the kill, default 300); e.g. OMX_CRASH_CYCLES=100 OMX_CRASH_ACKS=1000 for a
long run (set OMX_TEST_TIMEOUT accordingly).
"""

import os
import re
import subprocess
import threading
import time

from lib import Conn, REPO, Server, T_DELIVER, T_IO, crlf, dot_stuff, parse_queue_id, run, scale

LOAD = os.path.join(REPO, "build", "oceanmx-load")
CYCLES = int(os.environ.get("OMX_CRASH_CYCLES", "20"))
ACKS = int(os.environ.get("OMX_CRASH_ACKS", str(scale(300, 60))))
TOKEN_RE = re.compile(rb"^X-Token: (ct-[0-9]+-[0-9]+-[0-9]+)\r\n", re.M)


class Senders:
    """Senders: `threads` sessions sending token'd messages until stop; acked maps token -> queue id."""

    def __init__(self, port, cycle, sent, acked, threads=4):
        self.port, self.cycle, self.sent, self.acked = port, cycle, sent, acked
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.n_acked = 0
        self.errors = []
        self.ths = [threading.Thread(target=self.worker, args=(w,), daemon=True) for w in range(threads)]
        for th in self.ths:
            th.start()

    def worker(self, w):
        n = 0
        while not self.stop.is_set():
            try:
                c = Conn(self.port, timeout=T_IO)
            except OSError:
                return
            try:
                if c.greeting.code != 220 or c.cmd("EHLO crash%d.test" % w).code != 250:
                    raise EOFError("greeting/EHLO")
                for _ in range(10):
                    n += 1
                    tok = "ct-%d-%d-%d" % (self.cycle, w, n)
                    body = "".join("%s line %d %s\n" % (tok, k, "." * (k % 4)) for k in range(1 + n % 60))
                    content = crlf("From: <w%d@x.test>\nSubject: %s\nX-Token: %s\n\n.%s" % (w, tok, tok, body))
                    with self.lock:
                        self.sent[tok] = content
                    c.send("MAIL FROM:<w%d@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n" % w)
                    for want in (250, 250, 354):
                        r = c.reply()
                        if r.code != want:
                            raise EOFError(r)
                    c.send_quiet(dot_stuff(content) + b".\r\n", "content")
                    r = c.reply()
                    if r.code != 250:
                        raise EOFError(r)
                    with self.lock:
                        self.acked[tok] = parse_queue_id(r)
                        self.n_acked += 1
                c.cmd("QUIT")
            except Exception as e:
                if not self.stop.is_set():
                    with self.lock:
                        self.errors.append("%r" % e)
                return
            finally:
                c.close()

    def join(self):
        self.stop.set()
        for th in self.ths:
            th.join(timeout=T_IO * 2)


def main(t):
    sent, acked = {}, {}
    errors = []
    with Server("--sink-retry-first", "1") as srv:
        md = srv.maildir
        srv.kill()
        t0 = time.monotonic()
        with t.case("kill9_under_load_%d_times" % CYCLES):
            for cycle in range(CYCLES):
                srv.start()
                bg = None
                if os.access(LOAD, os.X_OK):
                    bg = subprocess.Popen([LOAD, "-q", "-d", "3600", "-R", "300", "-c", "4", "--max-errors", "0",
                                           "--timeout", "5", "127.0.0.1:%d" % srv.port],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                pool = Senders(srv.port, cycle, sent, acked)
                deadline = time.monotonic() + scale(4, 15)
                while pool.n_acked < ACKS and time.monotonic() < deadline and not pool.errors:
                    time.sleep(0.005)
                pool.stop.set()      # from here on, an EOF is the kill's, not an error
                srv.kill()           # SIGKILL mid-load
                pool.join()
                if bg is not None:
                    bg.kill()
                    bg.wait()
                errors += pool.errors
                srv.check_sanitizers()
            t.check(not errors, "sender errors while the server was up: %r" % errors[:3])
            print("  note: %d cycles in %.0fs: %d sent by the pool, %d acknowledged"
                  % (CYCLES, time.monotonic() - t0, len(sent), len(acked)))

        with t.case("every_acknowledged_token_delivered_once_or_more"):
            srv.start()
            t.check(all(acked.values()), "a 250 without a queue id")
            # Queue ids appear in the file names; one set lookup per id (wait_ids is quadratic).
            want = set(acked.values())
            deadline = time.monotonic() + T_DELIVER * 2
            while True:
                have = set()
                for p in md.files():
                    have.update(re.split(r"[^A-Za-z0-9]+", os.path.basename(p)))
                missing_ids = want - have
                if not missing_ids or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            seen = {}
            bad = []
            others = 0
            for d in md.read_all():
                m = TOKEN_RE.search(d.content)
                if d.error is not None or not m:
                    if d.error is not None or not d.content.endswith(b"\r\n"):
                        bad.append("%s: %s" % (d.name, d.error or "truncated"))
                    others += 1
                    continue
                tok = m.group(1).decode()
                if d.content != sent.get(tok):
                    bad.append("%s: %s differs from what was sent" % (d.name, tok))
                seen[tok] = seen.get(tok, 0) + 1
            lost = [tok for tok in acked if tok not in seen]
            dups = sum(1 for tok in seen if seen[tok] > 1)
            extra = sum(1 for tok in seen if tok not in acked)
            print("  note: tokens acknowledged %d, delivered %d, lost %d, duplicated %d, delivered without a 250 %d;"
                  " %d background (oceanmx-load) files" % (len(acked), sum(1 for tok in acked if tok in seen),
                                                          len(lost), dups, extra, others))
            print("CRASH_REPEAT cycles=%d acked=%d lost=%d duplicated=%d unacked_delivered=%d"
                  % (CYCLES, len(acked), len(lost), dups, extra))
            t.check(not bad, "%d bad files, e.g. %r" % (len(bad), bad[:5]))
            t.check(not lost, "%d acknowledged messages lost, e.g. %r" % (len(lost), [(k, acked[k]) for k in lost[:5]]))
            t.check(not missing_ids, "%d queue ids of acknowledged messages have no file, e.g. %r"
                    % (len(missing_ids), sorted(missing_ids)[:5]))


if __name__ == "__main__":
    run(main)
