#!/usr/bin/python3
"""
bench/sink_rate.py - messages/s the webhook and exec sinks deliver to a
trivial receiver on the same machine (issue 10's "messages/s each sink
delivers with a trivial consumer").

For each sink: oceanmx (release build, 2 shards, that sink alone) takes N
messages of 4 KiB from oceanmx-load (20 sessions); the receiver notes the
time of each arrival; the rate is N / (last arrival - first arrival). The
SMTP-side rate (accepted msgs/s, from oceanmx-load) is printed beside it.
Receivers: an HTTP server (Python http.server, threaded, answers 204),
and for exec a shell script `cat >/dev/null` that records its arrival.

  bench/sink_rate.py [-n 3000] [--out bench/results/sink-rate-DATE.md]
"""

import argparse
import http.server
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OMX = os.path.join(ROOT, "build", "oceanmx")
LOAD = os.path.join(ROOT, "build", "oceanmx-load")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class HttpReceiver:
    def __init__(self):
        self.times = []
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec.times.append(time.monotonic())
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 256
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self):
        return len(self.times)

    def span(self):
        return self.times[-1] - self.times[0]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ExecReceiver:
    def __init__(self, tmp):
        self.log = os.path.join(tmp, "arrivals")
        self.script = os.path.join(tmp, "recv.sh")
        with open(self.script, "w") as f:
            # one line per message: the arrival time (ns), appended atomically (< PIPE_BUF)
            f.write("#!/bin/sh\ncat >/dev/null\necho \"$(date +%%s%%N)\" >> %s\n" % self.log)
        os.chmod(self.script, 0o755)

    def _times(self):
        try:
            with open(self.log) as f:
                return [int(x) / 1e9 for x in f.read().split()]
        except FileNotFoundError:
            return []

    def count(self):
        return len(self._times())

    def span(self):
        t = sorted(self._times())
        return t[-1] - t[0]

    def close(self):
        pass


def run_one(label, spec, rec, n, tmp):
    port = free_port()
    spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
    srv = subprocess.Popen([OMX, "serve", "--listen", "127.0.0.1:%d" % port, "--spool", spool, "--shards", "2",
                            "--hostname", "mx.bench", "--sink", spec],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, label + ".log"), "w"))
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        load = subprocess.run([LOAD, "-c", "20", "-m", str(n), "-s", "4096", "127.0.0.1:%d" % port],
                              capture_output=True, text=True)
        m = re.search(r"([\d.,]+)\s*msg/s", load.stdout + load.stderr)
        smtp_rate = m.group(1) if m else "?"
        deadline = time.time() + 600
        while rec.count() < n and time.time() < deadline:
            time.sleep(0.2)
        got = rec.count()
        rate = (got - 1) / rec.span() if got > 1 else 0.0
        return got, rate, smtp_rate
    finally:
        srv.terminate()
        srv.wait(timeout=60)
        rec.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--out")
    a = ap.parse_args()
    for b in (OMX, LOAD):
        if not os.access(b, os.X_OK):
            sys.exit("build first: %s missing" % b)
    rows = []
    with tempfile.TemporaryDirectory(prefix="omx-sinkrate-") as tmp:
        for label, make in (
            ("http json", lambda: HttpReceiver()),
            ("http raw=yes", lambda: HttpReceiver()),
            ("exec", lambda: ExecReceiver(tmp)),
        ):
            rec = make()
            if label == "exec":
                spec = "exec:%s?concurrency=4" % rec.script
            else:
                sec = os.path.join(tmp, "secret")
                with open(sec, "w") as f:
                    f.write("whsec_bench\n")
                spec = "http://127.0.0.1:%d/hook?secret_file=%s%s" % (rec.port, sec, "&raw=yes" if "raw" in label else "")
            got, rate, smtp = run_one(label.replace(" ", "_").replace("=", ""), spec, rec, a.n, tmp)
            rows.append((label, spec.split("?")[0].split(":")[0], got, rate, smtp))
            print("%-14s delivered %d/%d  %.0f msg/s  (SMTP side %s msg/s)" % (label, got, a.n, rate, smtp), flush=True)
    cpu = ""
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    except (OSError, AttributeError):
        pass
    text = ["# sink delivery rate (bench/sink_rate.py)", "",
            "%s, %d CPUs, kernel %s; %d messages of 4 KiB, oceanmx-load -c 20, 2 shards, each sink alone;"
            " receivers on the same machine." % (cpu, os.cpu_count(), platform.release(), a.n), "",
            "| sink | delivered | delivered msg/s | SMTP accepted msg/s |", "| --- | --- | --- | --- |"]
    for label, _, got, rate, smtp in rows:
        text.append("| %s | %d | %.0f | %s |" % (label, got, rate, smtp))
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
