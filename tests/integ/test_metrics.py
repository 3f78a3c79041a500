"""
test_metrics - the --metrics endpoint and --log-format json (issue 12):
/healthz, /readyz (200; 503 during shutdown), 404, 405, 400, HEAD, the
slow-client timeout and the cap on scrapers; /metrics checked with
promtool (Debian package prometheus) and its counters against the mail
that was sent (smtplib); a real Prometheus server on loopback scraping
every second while mail flows, queried through /api/v1/query for the
number of accepted messages; JSON log lines with a tx.done per message;
--metrics none and an address that is taken.
"""

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from lib import (SANITIZED, Conn, Server, T_EXIT, ehlo, free_port, omx_bin, port_listening, run, scale,
                 send_message)

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
IO = 60 if SANITIZED else 20


def http(port, method="GET", path="/metrics", raw=None, timeout=IO):
    """http sends one request (or `raw` bytes) and returns (status, headers, body) of the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(raw if raw is not None else ("%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, path)).encode())
    data = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break  # after a whole answer (we never read the body of a refused request)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0])
    hdrs = {k.lower(): v for k, _, v in (l.partition(": ") for l in lines[1:])}
    return (int(m.group(1)) if m else None), hdrs, body


def samples(text):
    """samples parses an exposition into {name{labels}: value} (labels as written)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        out[k] = float(v)
    return out


def metrics(port):
    code, hdrs, body = http(port)
    assert code == 200, code
    return samples(body.decode())


def mail(port, n, rcpt="b@y.test"):
    with smtplib.SMTP("127.0.0.1", port, timeout=IO) as s:
        for i in range(n):
            s.sendmail("a@x.test", [rcpt], "Subject: m %d\r\n\r\nbody %d\r\n" % (i, i))


def endpoints(t):
    mport = free_port()
    with Server("--metrics", "127.0.0.1:%d" % mport) as srv:
        with t.case("healthz_readyz_404_405_400_head"):
            code, hdrs, body = http(mport, path="/healthz")
            t.check(code == 200 and body == b"ok\n", "/healthz: %r %r" % (code, body))
            t.check(hdrs.get("connection") == "close", "no Connection: close: %r" % hdrs)
            code, _, body = http(mport, path="/readyz")
            t.check(code == 200, "/readyz while serving: %r %r" % (code, body))
            code, _, _ = http(mport, path="/nope")
            t.check(code == 404, "/nope: %r" % code)
            code, hdrs, _ = http(mport, method="POST")
            t.check(code == 405 and "GET" in hdrs.get("allow", ""), "POST: %r %r" % (code, hdrs))
            code, _, _ = http(mport, raw=b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
            t.check(code == 400, "garbage: %r" % code)
            code, _, _ = http(mport, raw=b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
            t.check(code == 400, "over-long head: %r" % code)
            code, hdrs, body = http(mport, method="HEAD")
            t.check(code == 200 and body == b"" and int(hdrs.get("content-length", "0")) > 1000,
                    "HEAD /metrics: %r %r %r" % (code, hdrs, body[:50]))
            t.check(hdrs.get("content-type", "").startswith("text/plain; version=0.0.4"), "content type %r" % hdrs)

        with t.case("slow_client_cut_and_scraper_cap"):
            idle = [socket.create_connection(("127.0.0.1", mport), timeout=IO) for _ in range(8)]
            time.sleep(0.5)
            try:
                code, _, body = http(mport, path="/healthz")
            finally:
                for s in idle[1:]:
                    s.close()
            t.check(code == 503, "a 9th exchange while 8 are open: want 503, got %r %r" % (code, body))
            t0 = time.monotonic()
            idle[0].settimeout(IO)
            t.check(idle[0].recv(100) == b"", "a silent client got an answer")
            waited = time.monotonic() - t0
            t.check(waited < scale(15, 40), "a silent client held its slot %.1fs" % waited)
            idle[0].close()
            code, _, _ = http(mport, path="/healthz")
            t.check(code == 200, "after the slow clients went: %r" % code)

        with t.case("counters_match_the_mail_sent"):
            before = metrics(mport)
            mail(srv.port, 5)
            c = Conn(srv.port)
            ehlo(t, c)
            t.expect(c.cmd("MAIL FROM:<a@x.test> SIZE=999999999999"), 552, c)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<b@y.test>"), 250, c)
            t.expect(c.cmd("DATA"), 354, c)
            c.send(b"Subject: bare\nLF\r\n.\r\n")  # bare LF: 550 at the final dot
            t.expect(c.reply(), 550, c, "bare LF")
            c.cmd("QUIT")
            c.close()
            want = {"oceanmx_messages_accepted_total": 5, 'oceanmx_messages_rejected_total{code="550"}': 1,
                    "oceanmx_transactions_aborted_total": 1, 'oceanmx_smtp_replies_total{code="552"}': 1,
                    "oceanmx_message_size_bytes_count": 5, "oceanmx_transaction_latency_seconds_count": 5}
            deadline = time.monotonic() + IO
            while True:
                m = metrics(mport)
                got = {k: m.get(k, 0) - before.get(k, 0) for k in want}
                if got == want or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            t.check(got == want, "counter deltas: want %r, got %r" % (want, got))
            t.check(m["oceanmx_connections_accepted_total"] >= 3, "connections accepted %r" % m)
            t.check(m['oceanmx_dkim_results_total{result="none"}'] >= 5, "dkim none %r" % m)
            t.check(m['oceanmx_transaction_latency_seconds_bucket{le="+Inf"}'] ==
                    m["oceanmx_transaction_latency_seconds_count"], "+Inf bucket != count")
            sink = [k for k in m if k.startswith("oceanmx_sink_deliveries_total{")]
            t.check(len(sink) == 1 and 'sink="maildir:' in sink[0], "per-sink series: %r" % sink)
            deadline = time.monotonic() + IO
            while metrics(mport).get(sink[0], 0) < 5 and time.monotonic() < deadline:
                time.sleep(0.2)
            t.check(metrics(mport).get(sink[0], 0) >= 5, "sink deliveries never reached 5")

        with t.case("promtool_check_metrics"):
            if not os.access(PROMTOOL, os.X_OK):
                print("  note: skipped, %s not found (Debian package prometheus)" % PROMTOOL)
                return
            _, _, body = http(mport)
            p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60)
            t.check(p.returncode == 0, "promtool check metrics: rc %d\n%s%s" % (p.returncode, p.stdout.decode(),
                                                                                 p.stderr.decode()))
            t.check(b"# TYPE oceanmx_messages_accepted_total counter" in body, "no TYPE line")

        with t.case("readyz_503_during_shutdown"):
            mid = Conn(srv.port)
            ehlo(t, mid)
            t.expect(mid.cmd("MAIL FROM:<a@x.test>"), 250, mid)
            t.expect(mid.cmd("RCPT TO:<b@y.test>"), 250, mid)
            t.expect(mid.cmd("DATA"), 354, mid)
            mid.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
            srv.signal(signal.SIGTERM)
            deadline = time.monotonic() + IO
            code = None
            while time.monotonic() < deadline:
                code, _, body = http(mport, path="/readyz")
                if code == 503:
                    break
                time.sleep(0.1)
            t.check(code == 503 and b"shutting down" in body, "/readyz after SIGTERM: %r %r" % (code, body))
            code, _, _ = http(mport, path="/healthz")
            t.check(code == 200, "/healthz during shutdown: %r" % code)
            mid.send(b"second half\r\n.\r\n")
            t.expect(mid.reply(), 250, mid, "end of data during shutdown")
            mid.close()
            t.check(srv.wait_exit(T_EXIT) == 0, "exit status after SIGTERM")
            t.check(not port_listening(mport), "metrics port still open after exit")


def json_logs(t):
    with Server("--metrics", "none", "--log-format", "json", "--log-level", "info") as srv:
        with t.case("json_log_lines_and_tx_done"):
            mail(srv.port, 3)
            c = Conn(srv.port)
            ehlo(t, c, name='evil"\\name')
            send_message(t, c, '"q\\"uote"@x.test', ["b@y.test"], b"Subject: x\r\n\r\nhi\r\n")
            c.cmd("QUIT")
            c.close()
            deadline = time.monotonic() + IO
            while srv.stderr_text().count('"event":"tx.done"') < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            objs = []
            for line in srv.stderr_text().splitlines():
                try:
                    objs.append(json.loads(line))
                except ValueError:
                    t.fail("not a JSON line: %r" % line)
            for o in objs:
                t.check(all(k in o for k in ("ts", "level", "who", "event")), "missing keys: %r" % o)
            done = [o for o in objs if o["event"] == "tx.done"]
            t.check(len(done) == 4, "tx.done lines: %d" % len(done))
            evil = [o for o in done if "uote" in o.get("mail_from", "")]  # shards' lines interleave
            t.check(len(evil) == 1, "no tx.done for the quoted sender: %r" % done)
            d = evil[0]
            t.check(d["code"] == 250 and d["disposition"] == "accepted" and d["rcpts"] == 1 and d["size"] > 0,
                    "tx.done fields: %r" % d)
            t.check(d["helo"] == 'evil\\x22\\x5cname' and d["mail_from"] == "\\x22q\\x5c\\x22uote\\x22@x.test",
                    "client text not escaped: %r" % d)
            t.check(d["client"] == "127.0.0.1" and d["dkim"] == "none" and "duration_ms" in d, "%r" % d)
        with t.case("metrics_none_listens_nowhere"):
            t.check('"metrics":"none"' in srv.stderr_text(), "start line does not say metrics none")


def taken_address(t):
    with t.case("explicit_address_taken_fails_start"):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        tmp = tempfile.mkdtemp(prefix="omx-integ-")
        try:
            p = subprocess.run([omx_bin(), "serve", "--listen", "127.0.0.1:%d" % free_port(),
                                "--spool", tmp + "/spool", "--sink", "maildir:" + tmp + "/md",
                                "--metrics", "127.0.0.1:%d" % port], capture_output=True, timeout=IO * 3)
            t.check(p.returncode == 2 and b"metrics" in p.stderr, "rc %d: %r" % (p.returncode, p.stderr[-300:]))
        finally:
            s.close()
            shutil.rmtree(tmp, ignore_errors=True)


def prometheus(t):
    with t.case("prometheus_scrapes_while_mail_flows"):
        if not os.access(PROMETHEUS, os.X_OK):
            print("SKIP: %s not found (Debian package prometheus)" % PROMETHEUS)
            return
        mport, pport = free_port(), free_port()
        tmp = tempfile.mkdtemp(prefix="omx-prom-")
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: oceanmx\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % mport)
        log = open(os.path.join(tmp, "prometheus.log"), "wb")
        prom = subprocess.Popen([PROMETHEUS, "--config.file=" + os.path.join(tmp, "prometheus.yml"),
                                 "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % pport, "--log.level=warn"],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)

        def query(q):
            u = "http://127.0.0.1:%d/api/v1/query?query=%s" % (pport, urllib.request.quote(q))
            with urllib.request.urlopen(u, timeout=10) as r:
                j = json.load(r)
            res = j["data"]["result"]
            return float(res[0]["value"][1]) if res else None

        try:
            deadline = time.monotonic() + 60
            while not port_listening(pport) and prom.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if prom.poll() is not None or not port_listening(pport):
                with open(os.path.join(tmp, "prometheus.log"), "rb") as f:
                    tail = f.read()[-500:].decode(errors="replace")
                print("SKIP: prometheus could not start here: %s" % tail)
                return
            per = scale(20, 7)
            n = 3 * per
            with Server("--metrics", "127.0.0.1:%d" % mport) as srv:
                for i in range(3):  # mail flows while the scrapes run
                    mail(srv.port, per)
                    time.sleep(1)
                deadline = time.monotonic() + 60
                got = None
                while time.monotonic() < deadline:
                    try:
                        got = query("oceanmx_messages_accepted_total")
                        up = query('up{job="oceanmx"}')
                    except (OSError, ValueError, KeyError):
                        got = up = None
                    if got == n and up == 1:
                        break
                    time.sleep(0.5)
                t.check(got == n, "Prometheus says %r messages accepted, %d were sent" % (got, n))
                t.check(up == 1, "up{job=oceanmx} = %r" % up)
                replies = query('sum(oceanmx_smtp_replies_total{code="250"})')
                t.check(replies is not None and replies >= 3 * n, "250 replies in Prometheus: %r" % replies)
        finally:
            prom.terminate()
            try:
                prom.wait(timeout=30)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
            log.close()
            shutil.rmtree(tmp, ignore_errors=True)


def main(t):
    endpoints(t)
    json_logs(t)
    taken_address(t)
    prometheus(t)


if __name__ == "__main__":
    run(main)
