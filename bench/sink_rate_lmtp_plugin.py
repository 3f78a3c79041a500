#!/usr/bin/env python3
"""
bench/sink_rate_lmtp_plugin.py - how many messages/s do the lmtp and plugin sinks deliver? (issue 10)

    bench/sink_rate_lmtp_plugin.py lmtp   [--messages N] [--size BYTES] [--connections C] [--rounds R]
    bench/sink_rate_lmtp_plugin.py plugin [...]

lmtp:   the lmtp: sink into a private Dovecot LMTP server (tests/integ/dovecot.py:
        unix socket, maildir under a temp dir on /var/tmp), one recipient.
plugin: the plugin: sink with the example SQLite plugin (build/sqlite_plugin.so),
        the database under a temp dir on /var/tmp.

oceanmx-load sends N messages (closed loop, 20 sessions, 4 KiB) as fast as the
server takes them; the SMTP side is faster than either sink, so the messages
queue in the spool and the delivery workers (one per shard, --shards 2) drain
it. The rate is N over the time from the start of the load to the last message
in the mailbox / the database (polled every 20 ms); the SMTP rate is printed
beside it. Writes bench/results/sink-rate-SINK-DATE.md. Run as root or as a
user; Dovecot needs the Debian packages dovecot-core and dovecot-lmtpd.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))

from dovecot import Dovecot  # noqa: E402
from lib import free_port, port_listening  # noqa: E402

OMX = os.environ.get("OMX_BIN", os.path.join(ROOT, "build", "oceanmx"))
LOAD = os.environ.get("OMX_LOAD_BIN", os.path.join(ROOT, "build", "oceanmx-load"))
PLUGIN = os.environ.get("OMX_PLUGIN", os.path.join(ROOT, "build", "sqlite_plugin.so"))


def count_maildir(path):
    try:
        return len(os.listdir(os.path.join(path, "Maildir", "new")))
    except FileNotFoundError:
        return 0


def count_sqlite(path):
    try:
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM messages").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def one_round(kind, args, work):
    port = free_port()
    spool = os.path.join(work, "spool")
    dv = None
    if kind == "lmtp":
        dv = Dovecot(work, ["alice@example.test"]).start()
        sink = "lmtp:unix:%s" % dv.sock
        count = lambda: count_maildir(dv.home("alice@example.test"))  # noqa: E731
    else:
        db = os.path.join(work, "mail.db")
        sink = "plugin:%s?%s" % (PLUGIN, db)
        count = lambda: count_sqlite(db)  # noqa: E731
    log = open(os.path.join(work, "omx.log"), "wb")
    omx = subprocess.Popen([OMX, "serve", "--listen", "127.0.0.1:%d" % port, "--hostname", "mx.bench",
                            "--spool", spool, "--shards", "2", "--sink", sink], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not port_listening(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        t0 = time.monotonic()
        out = subprocess.run([LOAD, "-m", str(args.messages), "-c", str(args.connections), "-s", str(args.size),
                              "--to", "alice@example.test", "127.0.0.1:%d" % port],
                             capture_output=True, text=True, timeout=600)
        t_load = time.monotonic() - t0
        m = re.search(r"([0-9.]+) msg/s", out.stdout)
        smtp_rate = float(m.group(1)) if m else args.messages / t_load
        deadline = time.monotonic() + 600
        n = 0
        while time.monotonic() < deadline:
            n = count()
            if n >= args.messages:
                break
            time.sleep(0.02)
        t_all = time.monotonic() - t0
        if n < args.messages:
            raise SystemExit("only %d of %d delivered; server log %s" % (n, args.messages, log.name))
        return args.messages / t_all, smtp_rate
    finally:
        omx.terminate()
        omx.wait(timeout=60)
        log.close()
        if dv is not None:
            dv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sink", choices=("lmtp", "plugin"))
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rates, smtp = [], []
    for r in range(args.rounds):
        work = tempfile.mkdtemp(prefix="oceanmx-sinkrate-", dir="/var/tmp")
        try:
            rate, s = one_round(args.sink, args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rates.append(rate)
        smtp.append(s)
        print("round %d: %s delivers %.0f msg/s (SMTP side %.0f msg/s)" % (r + 1, args.sink, rate, s), flush=True)
    stamp = datetime.datetime.utcnow().strftime("%Y-%m-%d-%H%M%S")
    out = os.path.join(ROOT, "bench", "results", "sink-rate-%s-%s.md" % (args.sink, stamp))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("# sink delivery rate: %s\n\n" % args.sink)
        f.write("%s, %d CPUs, kernel %s; %d messages of %d bytes, %d sessions, --shards 2, %d rounds\n\n"
                % (platform.node(), os.cpu_count(), platform.release(), args.messages, args.size,
                   args.connections, args.rounds))
        f.write("| round | delivered msg/s | SMTP-side msg/s |\n| --- | --- | --- |\n")
        for i, (a, b) in enumerate(zip(rates, smtp)):
            f.write("| %d | %.0f | %.0f |\n" % (i + 1, a, b))
        f.write("| median | %.0f | %.0f |\n" % (statistics.median(rates), statistics.median(smtp)))
    print("median: %s delivers %.0f msg/s; written %s" % (args.sink, statistics.median(rates), out))


if __name__ == "__main__":
    main()
