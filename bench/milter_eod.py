#!/usr/bin/python3
"""
bench/milter_eod.py - end-of-data latency with a milter for a client whose
message takes a while to arrive (issue 15: streaming the milter
conversation overlaps it with the transfer). One session sends MESSAGES
messages of SIZE bytes each, written in 64 KiB pieces PACE_MS apart (about
a 100 Mbit/s client at the defaults), and times the final dot to the
reply; oceanmx-load cannot pace the bytes of a message, and on loopback an
unpaced 1 MiB arrives in about a millisecond, leaving nothing to overlap.
The milter is OpenDKIM signing (test_milter.py's private daemon: Mode sv,
a key from opendkim-genkey): it
hashes the body as the chunks come. Sets per server binary: plain (no
milter) and opendkim; binaries alternate per round (ROUNDS). Writes
bench/results/milter-eod-DATE.md with the medians and ratios.

Usage: bench/milter_eod.py LABEL=BINARY [LABEL=BINARY ...]
Env: ROUNDS (3), MESSAGES (20), SIZE (1048576), PACE_MS (5), OUT.
"""
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
MESSAGES = int(os.environ.get("MESSAGES", "20"))
SIZE = int(os.environ.get("SIZE", str(1 << 20)))
PACE = float(os.environ.get("PACE_MS", "5")) / 1000
OUT = os.environ.get("OUT", os.path.join(ROOT, "bench", "results"))
PIECE = 65536

sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
from lib import free_port  # noqa: E402
from test_milter import Daemons, start_opendkim  # noqa: E402  (the tests' private OpenDKIM, signing)


def reply(f):
    while True:
        ln = f.readline()
        if not ln:
            raise EOFError("server closed")
        if ln[3:4] != b"-":
            return ln


def session(port):
    """session: the end-of-data latency of each message, in ms."""
    line = b"".join(bytes([0x41 + (k % 26)]) for k in range(76)) + b"\r\n"
    head = (b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: eod\r\n"
            b"Date: Mon, 7 Dec 2026 05:00:00 +0000\r\nMessage-ID: <%d@example.com>\r\n\r\n")
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO bench.test\r\n")
    reply(f)
    out = []
    for i in range(MESSAGES):
        msg = head % i + line * ((SIZE - len(head)) // len(line))
        for cmd in (b"MAIL FROM:<alice@example.com>", b"RCPT TO:<bob@example.org>", b"DATA"):
            s.sendall(cmd + b"\r\n")
            reply(f)
        for k in range(0, len(msg), PIECE):
            s.sendall(msg[k:k + PIECE])
            time.sleep(PACE)
        t0 = time.monotonic()
        s.sendall(b".\r\n")
        r = reply(f)
        out.append((time.monotonic() - t0) * 1000)
        if not r.startswith(b"250"):
            raise RuntimeError("end of data: %r" % r)
    s.sendall(b"QUIT\r\n")
    s.close()
    return out


def run(binary, work, milter):
    port = free_port()
    d = tempfile.mkdtemp(dir=work)
    args = [binary, "serve", "--listen", "127.0.0.1:%d" % port, "--spool", d + "/spool", "--sink",
            "maildir:" + d + "/md", "--hostname", "bench.test", "--dkim", "off", "--spf", "off", "--dmarc", "off",
            "--arc", "off", "--metrics", "none", "--shutdown-timeout", "5"]
    if milter:
        args += ["--milter", milter]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        return session(port)
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    bins = [a.split("=", 1) for a in sys.argv[1:]]
    if not bins or any(len(b) != 2 for b in bins):
        sys.exit(__doc__)
    work = tempfile.mkdtemp(prefix="oceanmx-eod-", dir="/var/tmp")
    d = Daemons()
    try:
        spec, _ = start_opendkim(d)
        res = {}
        for r in range(ROUNDS):
            order = bins if r % 2 == 0 else bins[::-1]
            for label, binary in order:
                for s, milter in (("plain", None), ("opendkim", spec)):
                    lat = run(binary, work, milter)
                    res.setdefault((label, s), []).extend(lat)
                    print("round %d %s %s: p50 %.2f ms" % (r + 1, label, s, statistics.median(lat)), file=sys.stderr)
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.gmtime())
    out = ["# Milter end-of-data latency, paced client (bench/milter_eod.py), %s\n" % stamp,
           "One session, %d messages of %d B per run, each written in 64 KiB pieces %.0f ms apart; the time from "
           "the final dot to the reply. opendkim = OpenDKIM 2.11 signing (Mode sv, relaxed/simple, tests/integ/test_milter.py's setup). DKIM/SPF/DMARC/"
           "ARC off, maildir sink, %d rounds alternating the binaries; medians over all messages.\n"
           % (MESSAGES, SIZE, PACE * 1000, ROUNDS),
           "| server | set | p50 | p90 | milter's added p50 |", "| --- | --- | --- | --- | --- |"]
    for label, _ in bins:
        base = statistics.median(res[(label, "plain")])
        for s in ("plain", "opendkim"):
            v = sorted(res[(label, s)])
            p50 = statistics.median(v)
            out.append("| %s | %s | %.2f ms | %.2f ms | %s |" % (label, s, p50, v[int(len(v) * 0.9)],
                                                                "%.2f ms" % (p50 - base) if s != "plain" else ""))
    if len(bins) == 2:
        a = [statistics.median(res[(bins[i][0], "opendkim")]) for i in (0, 1)]
        out.append("\nopendkim p50, %s / %s: %.3f." % (bins[1][0], bins[0][0], a[1] / a[0]))
    out.append("\nMachine: %s, %d CPUs, kernel %s; load average after: %s." % (
        platform.node(), os.cpu_count(), platform.release(), open("/proc/loadavg").read().split()[0]))
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "milter-eod-%s.md" % stamp)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
