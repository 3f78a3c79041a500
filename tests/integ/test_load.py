"""
test_load - the bundled load generator, build/oceanmx-load (or env
OMX_LOAD_BIN), in short runs against the live server and against Postfix's
smtp-sink. Checks the counts it reports (--json), its exit status, and on
oceanmx that every message it counted as delivered is in the maildir with
the generator's exact body and envelope. Also checks that failures are
reported: refused recipients and an unreachable port must exit 1.

No timing is asserted: throughput figures belong to bench/suite.sh.
"""

import json
import os
import signal
import subprocess
import time

from lib import REPO, Server, Skip, T_DELIVER, T_START, free_port, port_listening, run, scale

SMTP_SINK = "/usr/sbin/smtp-sink"


def load_bin():
    b = os.environ.get("OMX_LOAD_BIN") or os.path.join(REPO, "build", "oceanmx-load")
    if not os.path.isabs(b):
        b = os.path.join(REPO, b)
    if not os.access(b, os.X_OK):
        raise Skip("%s not built (cmake --build build)" % b)
    return b


def load(t, port, *args, want_rc=0, host="127.0.0.1"):
    """load runs oceanmx-load --json against host:port; returns the report."""
    cmd = [load_bin(), "--json", "--timeout", "20"] + list(args) + ["%s:%d" % (host, port)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=T_DELIVER * 2)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    t.check(p.returncode == want_rc, "%s: exit %d, want %d\n    stdout: %s\n    stderr: %s"
            % (" ".join(cmd), p.returncode, want_rc, out[-2000:], err[-2000:]))
    try:
        rep = json.loads(out)
    except ValueError:
        t.fail("%s: stdout is not one JSON object: %r" % (" ".join(cmd), out[-2000:]))
    t.check(rep["ok"] == (want_rc == 0), "report ok=%r with exit %d: %s" % (rep["ok"], p.returncode, out))
    return rep


def body_of(raw):
    i = raw.find(b"\r\n\r\n")
    return raw[i + 4:] if i >= 0 else None


def generated_body(t, *args):
    """generated_body: the body oceanmx-load sends with these options (its
    length depends on the header, so pass the same --from/--to/--size)."""
    p = subprocess.run([load_bin(), "--print-message"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    t.check(p.returncode == 0, "--print-message: exit %d %r" % (p.returncode, p.stderr))
    b = body_of(p.stdout)
    t.check(b, "--print-message wrote no header/body separator")
    return b


def check_counts(t, rep, n, rcpts=1, conns=None, tls=False):
    m = rep["messages"]
    t.check(m["attempted"] == n and m["delivered"] == n and m["failed"] == 0,
            "messages %r, want %d attempted and delivered" % (m, n))
    t.check(rep["connection_errors"] == 0, "connection errors: %r" % rep)
    t.check(rep["latency_us"]["count"] == n, "latency samples %d, want %d" % (rep["latency_us"]["count"], n))
    r = rep["replies"]
    t.check(r["4xx"] == 0 and r["5xx"] == 0 and r["invalid"] == 0, "non-2xx replies: %r" % r)
    if conns is not None:
        t.check(rep["connections_opened"] == conns, "connections opened %d, want %d"
                % (rep["connections_opened"], conns))
    # Per message: MAIL + RCPTs + end of data (DATA's 354 is a 3xx);
    # per session: greeting + EHLO + QUIT, and with --tls STARTTLS's 220
    # and the second EHLO.
    s = rep["connections_opened"]
    want2 = n * (1 + rcpts + 1) + (5 if tls else 3) * s
    t.check(r["2xx"] == want2, "2xx replies %d, want %d (%d sessions)" % (r["2xx"], want2, s))
    if rep["mode"] == "data":
        t.check(r["3xx"] == n, "354 replies %d, want %d" % (r["3xx"], n))


class Sink:
    """Sink runs Postfix's smtp-sink on a free loopback port (stores nothing)."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([SMTP_SINK, "-u", "nobody", "127.0.0.1:%d" % self.port, "1000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + T_START
        while time.monotonic() < deadline and self.proc.poll() is None and not port_listening(self.port):
            time.sleep(0.02)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def main(t):
    load_bin()
    n = scale(400, 100)
    with Server() as srv:
        md = srv.maildir
        with t.case("oceanmx_data_pipelined_%d" % n):
            rep = load(t, srv.port, "-m", str(n), "-c", "8", "--from", "load@x.test", "--to", "rcpt@y.test")
            check_counts(t, rep, n, conns=8)
            got = md.wait_count(n)
            t.check(got == n, "%d messages in the maildir, want %d" % (got, n))
            want = generated_body(t, "--from", "load@x.test", "--to", "rcpt@y.test")
            for d in md.read_all():
                t.check(d.error is None, "%s: %s" % (d.name, d.error))
                t.check(d.return_path == "load@x.test" and d.rcpts == ["rcpt@y.test"],
                        "%s: envelope %r %r" % (d.name, d.return_path, d.rcpts))
                t.check(body_of(d.content) == want, "%s: body differs from the generator's" % d.name)
        with t.case("oceanmx_bdat_churn_3_rcpts"):
            before = md.count()
            m = scale(60, 20)
            rep = load(t, srv.port, "-m", str(m), "-c", "6", "-p", "1", "-r", "3", "--mode", "bdat",
                       "--size", "1k:1,20k:1", "--to", "r@y.test")
            check_counts(t, rep, m, rcpts=3)
            t.check(rep["connections_opened"] >= m, "only %d connections for %d messages with -p 1"
                    % (rep["connections_opened"], m))
            got = md.wait_count(before + m)
            t.check(got == before + m, "%d new messages in the maildir, want %d" % (got - before, m))
            three = [d for d in md.read_all() if d.rcpts == ["r1@y.test", "r2@y.test", "r3@y.test"]]
            t.check(len(three) == m, "%d messages for r1..r3@y.test in RCPT order, want %d" % (len(three), m))
        with t.case("oceanmx_open_loop_duration"):
            rep = load(t, srv.port, "-d", "1", "-R", "50", "-c", "4", "--dkim", "ed25519", "--sender-domains", "3")
            t.check(rep["loop"] == "open" and rep["dkim"] == "ed25519-sha256", "report: %r" % rep)
            d = rep["messages"]["delivered"]
            t.check(0 < d <= 51 and rep["messages"]["failed"] == 0, "open loop delivered %d: %r" % (d, rep))

    with Server("--domains", "only.test") as srv:
        with t.case("refused_recipients_exit_1"):
            rep = load(t, srv.port, "-m", "20", "-c", "2", "--to", "rcpt@other.test", want_rc=1)
            m = rep["messages"]
            t.check(m["delivered"] == 0 and m["failed"] == 20, "messages %r, want 20 failed" % m)
            t.check(rep["replies"]["5xx"] >= 20, "replies %r, want a 5xx per message" % rep["replies"])
            t.check(rep["first_error"] and "RCPT" in rep["first_error"], "first_error %r" % rep["first_error"])

    with t.case("unreachable_port_exit_1"):
        rep = load(t, free_port(), "-m", "5", "-c", "2", "--max-errors", "4", want_rc=1)
        t.check(rep["connection_errors"] >= 2 and rep["messages"]["delivered"] == 0, "report %r" % rep)

    if not os.access(SMTP_SINK, os.X_OK):
        print("  (smtp-sink cases skipped: %s not found, Debian package postfix)" % SMTP_SINK)
        return
    with Sink() as sink:
        with t.case("smtp_sink_pipelined_and_churn"):
            if sink.proc.poll() is not None:
                t.fail("smtp-sink exited with %d: %r" % (sink.proc.returncode, sink.proc.stderr.read()))
            m = scale(2000, 400)
            rep = load(t, sink.port, "-m", str(m), "-c", "20")
            check_counts(t, rep, m, conns=20)
            rep = load(t, sink.port, "-m", str(m // 4), "-c", "10", "-p", "5", "-r", "2")
            check_counts(t, rep, m // 4, rcpts=2)
        with t.case("smtp_sink_tls_not_offered_exit_1"):
            rep = load(t, sink.port, "-m", "5", "-c", "1", "--tls", want_rc=1)
            t.check("does not offer STARTTLS" in (rep["first_error"] or ""), "first_error %r" % rep["first_error"])
            t.check(rep["connection_errors"] >= 1 and rep["messages"]["delivered"] == 0, "report %r" % rep)


if __name__ == "__main__":
    run(main)
