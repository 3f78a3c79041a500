#!/usr/bin/env python3
"""
soak.py - mixed traffic for DURATION seconds with kill -9 every few minutes,
checking that memory stays flat and that every acknowledged message is
delivered exactly as sent. Driven by bench/soak.sh (and tests/integ/test_soak.py).

Traffic, all at once:
  - senders (Python threads) of messages from 1 KB to 10 MB (70% 1-8 KB,
    25% 16-256 KB, 5% 1-10 MB), a third of those under 256 KB DKIM-signed
    (dkimpy, rsa-sha256, key served by tests/integ/dns_server.py), each
    with a unique X-Soak-Token; sessions end after 1-5 messages (churn);
    each sender records the SHA-256 of the exact bytes of every message
    that got a 250;
  - oceanmx-load at 100 msg/s with a new session per message (churn; not
    tracked per message);
  - bad clients: garbage commands, DATA cut off mid-body, replies never
    read, NUL bytes, bare LF, a 1 MB command line;
  - kill -9 of the server every --kill-every seconds, restarted on the same
    spool and maildir.
Memory: VmRSS sampled --warmup seconds after each start and at the end of
that server's life; "flat" means the last sample of each life is at most
max(32 MiB, 1.5 x) its warm-up sample.
Checked as it goes, so a long soak keeps its disk flat: every 2 s the
maildir's files are read, and a file whose token was acknowledged (its
SHA-256 compared), or that has no token (oceanmx-load's), is counted and
removed, as a consumer of the maildir would; a file whose 250 has not been
seen yet waits for a later pass. At the end: one clean start, wait for
delivery, then every acknowledged token must have been delivered with the
SHA-256 that was sent (our Return-Path/Delivered-To/Authentication-Results/
Received fields stripped): lost, corrupt and duplicated are counted (a
redelivery after a kill -9 of a file already taken away counts as a
duplicate, as it would for a consumer). Exit 0 only with no loss, no
corruption and flat memory.
"""

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integ"))
from lib import Delivered, Maildir, dot_stuff  # noqa: E402

TOKEN_RE = re.compile(rb"^X-Soak-Token: (sk-[0-9-]+)\r\n", re.M)
FILLER = None


def split255(b):
    """split255: a TXT value as the 255-octet character-strings DNS needs (RFC 1035 3.3.14)."""
    return [b[i:i + 255] for i in range(0, len(b), 255)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss(pid):
    try:
        for ln in open("/proc/%d/status" % pid):
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Soak:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="omx-soak-", dir=a.dir)
        self.spool = os.path.join(self.tmp, "spool")
        self.md = os.path.join(self.tmp, "maildir")
        self.port = free_port()
        self.proc = None
        self.runs = 0
        self.lock = threading.Lock()
        self.acked = {}          # token -> sha256 hex
        self.sent = 0
        self.bad_sessions = 0
        self.stop = threading.Event()
        self.mem = []            # (warm rss, end rss, seconds alive)
        self.kills = 0
        self.signer = None
        self.seen = {}           # token -> times delivered
        self.corrupt = []
        self.untracked = 0       # delivered files without a token (oceanmx-load's)
        self.judged = set()      # paths counted in the final pass

    # -- server
    def start(self):
        for attempt in range(5):
            if self.try_start():
                return
            # Our port was taken meanwhile as the local port of some outgoing
            # connection (EADDRINUSE): every client reads self.port, so move.
            self.port = free_port()
        raise SystemExit("soak: server did not start (see %s)" % self.log_path)

    def try_start(self):
        self.runs += 1
        self.log_path = os.path.join(self.tmp, "server.%d.log" % self.runs)
        log = open(self.log_path, "wb")
        args = [self.a.bin, "serve", "--listen", "127.0.0.1:%d" % self.port, "--hostname", "soak.test",
                "--spool", self.spool, "--sink", "maildir:" + self.md, "--sink-retry-first", "1",
                "--max-message-size", "12M", "--timeout-command", "10", "--shutdown-timeout", "5"]
        if self.dns_port:
            args += ["--dns", "127.0.0.1:%d" % self.dns_port, "--dns-timeout", "1000"]
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()
        self.t_start = time.monotonic()
        self.warm = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                ok = s.recv(64).startswith(b"220")
                s.close()
                if ok:
                    return True
            except OSError:
                time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return False

    def sample_warm(self):
        if self.warm is None and time.monotonic() - self.t_start >= self.a.warmup:
            self.warm = rss(self.proc.pid)

    def end_life(self, how):
        end = rss(self.proc.pid)
        if self.warm is not None:
            self.mem.append((self.warm, end, time.monotonic() - self.t_start))
        if how == "kill":
            self.proc.kill()
            self.kills += 1
        else:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    # -- delivered messages
    def check_files(self, md, final):
        """check_files counts and removes the delivered files it can judge:
        acknowledged tokens (SHA-256 compared) and files without a token;
        with final, every file is judged and nothing is removed."""
        for p in md.files():
            if p in self.judged:
                continue  # counted by an earlier final pass
            try:
                raw = open(p, "rb").read()
            except FileNotFoundError:
                continue  # replaced by a redelivery between listdir and open
            m = TOKEN_RE.search(raw)
            tok = m.group(1).decode() if m else None
            if tok is not None and tok not in self.acked and not final:
                continue  # its 250 may still be on the way
            if tok is not None:
                d = Delivered(p, raw)
                h = hashlib.sha256(d.content).hexdigest()
                self.seen[tok] = self.seen.get(tok, 0) + 1
                if tok in self.acked and (d.error or h != self.acked[tok]):
                    self.corrupt.append("%s (%s)" % (tok, d.error or "sha256 differs"))
            else:
                self.untracked += 1
            if final:
                self.judged.add(p)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass

    def checker(self):
        md = Maildir(self.md)
        while not self.stop.is_set():
            self.check_files(md, False)
            self.stop.wait(2.0)

    # -- messages
    def make(self, w, n):
        r = random.random()
        if r < 0.70:
            size = random.randint(1024, 8192)
        elif r < 0.95:
            size = random.randint(16 << 10, 256 << 10)
        else:
            size = random.randint(1 << 20, 10 << 20)
        tok = "sk-%d-%d" % (w, n)
        head = ("From: <w%d@soak.test>\r\nTo: <r@y.test>\r\nSubject: soak %s size %d\r\nX-Soak-Token: %s\r\n"
                "Message-ID: <%s@soak.test>\r\n\r\n" % (w, tok, size, tok, tok)).encode()
        off = random.randint(0, len(FILLER) - size - 1)
        body = FILLER[off:off + size]
        body = body[:body.rfind(b"\r\n") + 2] if b"\r\n" in body else body + b"\r\n"
        msg = head + body
        if self.signer and size < (256 << 10) and random.random() < 0.33:
            msg = self.signer(msg) + msg
        return tok, msg

    def sender(self, w):
        n = 0
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            except OSError:
                time.sleep(0.2)
                continue
            try:
                f = s.makefile("rb")
                if not f.readline().startswith(b"220"):
                    raise EOFError
                s.sendall(b"EHLO soak%d.test\r\n" % w)
                while True:
                    ln = f.readline()
                    if not ln.startswith(b"250"):
                        raise EOFError
                    if ln[3:4] == b" ":
                        break
                for _ in range(random.randint(1, 5)):
                    if self.stop.is_set():
                        break
                    n += 1
                    tok, msg = self.make(w, n)
                    s.sendall(b"MAIL FROM:<w%d@soak.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n" % w)
                    codes = [f.readline()[:3] for _ in range(3)]
                    if codes != [b"250", b"250", b"354"]:
                        raise EOFError(codes)
                    s.sendall(dot_stuff(msg) + b".\r\n")
                    with self.lock:
                        self.sent += 1
                    ln = f.readline()
                    if ln.startswith(b"250"):
                        with self.lock:
                            self.acked[tok] = hashlib.sha256(msg).hexdigest()
                    elif not ln:
                        raise EOFError
                s.sendall(b"QUIT\r\n")
            except (OSError, EOFError):
                time.sleep(0.1)  # a kill -9, most likely: reconnect
            finally:
                s.close()

    def bad_client(self, k):
        acts = [b"GARBAGE\x00\xff\r\nHELO\r\nMAIL FROM:<<<>\r\nRCPT TO:\r\nDATA\r\n",
                b"EHLO bad.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nSubject: cut\r\n\r\nhalf a",
                b"EHLO bad.test\r\n" * 5000,
                b"EHLO bad.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nX: a\nbare\x00lf\r\n.\r\n",
                b"NOOP " + b"A" * (1 << 20) + b"\r\n"]
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.sendall(random.choice(acts))
                time.sleep(random.random())
                s.close()  # never reads the replies
                with self.lock:
                    self.bad_sessions += 1
            except OSError:
                time.sleep(0.2)
            time.sleep(0.2)


def setup_dkim(tmpdir):
    """setup_dkim returns (signer, zone) with dkimpy, or (None, {}) without it or openssl."""
    try:
        import dkim
    except ImportError:
        return None, {}
    key = os.path.join(tmpdir, "dkim.pem")
    if subprocess.run(["openssl", "genrsa", "-out", key, "2048"], capture_output=True).returncode != 0:
        return None, {}
    pub = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"], capture_output=True).stdout
    import base64
    priv = open(key, "rb").read()
    zone = {"soak._domainkey.soak.test": [(300, split255(b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)))]}

    def signer(msg):
        return dkim.sign(msg, b"soak", b"soak.test", priv, include_headers=[b"from", b"to", b"subject"],
                         linesep=b"\r\n")
    return signer, zone


def main():
    global FILLER
    ap = argparse.ArgumentParser()
    ap.add_argument("duration", type=int)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--kill-every", type=int, default=0, help="seconds between kill -9 (default: duration/3, at most 180)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--min-free-gb", type=float, default=4.0,
                    help="end the traffic early when the file system of --dir has less free (default 4)")
    a = ap.parse_args()
    kill_every = a.kill_every or max(20, min(180, a.duration // 3))
    random.seed(1)
    line = b"".join(b"%05d the quick brown fox jumps over the lazy dog .. soak filler\r\n" % i for i in range(2000))
    FILLER = (line * (11 * (1 << 20) // len(line) + 1))
    sk = Soak(a)
    sk.signer, zone = setup_dkim(sk.tmp)
    sk.dns_port = None
    dns = None
    if zone:
        from dns_server import DnsServer
        dns = DnsServer(zone)
        dns.start()
        sk.dns_port = dns.port
    sk.start()
    ths = [threading.Thread(target=sk.sender, args=(w,), daemon=True) for w in range(a.senders)]
    ths += [threading.Thread(target=sk.bad_client, args=(k,), daemon=True) for k in range(2)]
    ths.append(threading.Thread(target=sk.checker, daemon=True))
    for th in ths:
        th.start()
    t0 = time.monotonic()
    next_kill = t0 + kill_every
    # Delivered files are checked and removed as they come (about 2.4 GB a
    # minute on a 2-core machine); should the checker fall behind, the
    # traffic ends early rather than fill the disk shared with everything else.
    early = None

    def low_disk():
        return shutil.disk_usage(sk.tmp).free < a.min_free_gb * (1 << 30)
    while time.monotonic() - t0 < a.duration and early is None:
        bg = subprocess.Popen([a.load, "-q", "-d", "3600", "-R", "100", "-p", "1", "-c", "4", "--max-errors", "0",
                               "--size", "1k:60,8k:30,64k:10", "--timeout", "5", "127.0.0.1:%d" % sk.port],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.monotonic() - t0 < a.duration and time.monotonic() < next_kill:
            sk.sample_warm()
            if low_disk():
                early = time.monotonic() - t0
                print("soak: traffic ended at %.0f s: less than %.1f GB free on %s" % (early, a.min_free_gb, a.dir),
                      flush=True)
                break
            time.sleep(0.2)
        if time.monotonic() - t0 < a.duration and early is None:
            sk.end_life("kill")
            bg.kill()
            bg.wait()
            print("soak: kill -9 at %.0f s (%d acknowledged so far)" % (time.monotonic() - t0, len(sk.acked)), flush=True)
            next_kill = time.monotonic() + kill_every
            sk.start()
        else:
            bg.kill()
            bg.wait()
    sk.stop.set()
    for th in ths:
        th.join(timeout=120)
    sk.end_life("term")
    elapsed = time.monotonic() - t0
    # Deliver what is owed, then compare.
    sk.start()
    want = set(sk.acked)
    md = Maildir(sk.md)
    deadline = time.monotonic() + 300
    while True:
        sk.check_files(md, True)
        if want <= set(sk.seen) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    sk.end_life("term")
    if dns:
        dns.stop()
    seen, corrupt = sk.seen, sk.corrupt
    lost = sorted(want - set(seen))
    dups = sum(1 for t in seen if seen[t] > 1)
    unacked = sum(1 for t in seen if t not in want)
    flat = all(end <= max(warm + (32 << 20), warm * 1.5) for warm, end, _ in sk.mem)
    ok = not lost and not corrupt and flat
    rows = ["| life | alive s | VmRSS at warm-up MiB | at end MiB |", "| ---: | ---: | ---: | ---: |"]
    rows += ["| %d | %.0f | %.1f | %.1f |" % (i + 1, al, w / 1048576, e / 1048576) for i, (w, e, al) in enumerate(sk.mem)]
    text = "\n".join([
        "# soak: %d s of mixed traffic, kill -9 every %d s%s" % (
            a.duration, kill_every, "" if early is None else " (traffic ended at %.0f s: disk below %.1f GB free)"
            % (early, a.min_free_gb)), "",
        "Senders: %d (1 KB-10 MB, %s), oceanmx-load 100 msg/s one message per session, 2 bad clients;"
        " %d kill -9, %d server lives; files checked and removed as they arrived (%d more without a token,"
        " oceanmx-load's)." % (a.senders, "a third of those < 256 KB DKIM-signed" if sk.signer
                               else "unsigned: python3-dkim or openssl missing", sk.kills, len(sk.mem),
                               sk.untracked), "",
        "| duration s | sent | acknowledged | delivered (acked) | lost | corrupt | duplicated | delivered without 250 | bad sessions | memory flat | result |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        "| %.0f | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s |" % (
            elapsed, sk.sent, len(want), len(want & set(seen)), len(lost), len(corrupt), dups, unacked,
            sk.bad_sessions, "yes" if flat else "NO", "PASS" if ok else "FAIL"), "",
    ] + rows) + "\n"
    if lost:
        text += "\nlost (first 10): %s\n" % ", ".join(lost[:10])
    if corrupt:
        text += "\ncorrupt (first 10): %s\n" % ", ".join(corrupt[:10])
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text)
    if not a.keep:
        shutil.rmtree(sk.tmp, ignore_errors=True)
    else:
        print("soak: kept %s" % sk.tmp)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
