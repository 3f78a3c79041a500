"""
test_webhook_sink - the http:// and https:// sinks against a real HTTP
server on loopback (Python's http.server), https with certificates made
at test time by openssl: the document POSTed and signed (the signature
checked here with hmac, as a receiver would), Oceanmx-Message-Id and
Idempotency-Key, the receiver's own query parameters kept; raw=yes as
multipart/form-data whose parts are compared byte for byte; 500 with
Retry-After is retried (tempfail logged, and the second attempt delivered
when the server has --sink-retry-first); 400 dead-letters into
SPOOL/failed with the receiver's text; timeouts and refused connections
are retried; many requests in flight at once; https delivered with the
right CA and refused for a certificate naming another host; a missing
secret file is a configuration error.
"""

import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time

from lib import (Conn, Server, Skip, T_DELIVER, crlf, ehlo, free_port, omx_bin, run, send_message)


class Receiver:
    """Receiver is a threaded HTTP server recording every POST. `plan` is a
    list of (status, headers, body, delay) answers used in order; then 200."""

    def __init__(self, tls_ctx=None):
        self.requests = []
        self.plan = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rec.lock:
                    rec.inflight += 1
                    rec.max_inflight = max(rec.max_inflight, rec.inflight)
                    answer = rec.plan.pop(0) if rec.plan else (200, {}, b"ok", 0)
                status, hdrs, text, delay = answer
                if delay:
                    time.sleep(delay)
                with rec.lock:
                    rec.inflight -= 1
                    rec.requests.append({"path": self.path, "headers": dict((k.lower(), v) for k, v in self.headers.items()),
                                         "body": body, "status": status})
                try:
                    self.send_response(status)
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        if tls_ctx is not None:
            self.httpd.socket = tls_ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def delivered(self, n, timeout=T_DELIVER):
        """delivered waits until n requests were answered with 2xx; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                ok = [r for r in self.requests if 200 <= r["status"] < 300]
            if len(ok) >= n:
                return ok
            time.sleep(0.05)
        return ok


def wait_log(srv, pattern, timeout=T_DELIVER):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, srv.stderr_text())
        if m:
            return m
        time.sleep(0.05)
    return None


def verify_signature(secret, header, body, tolerance=300):
    """verify_signature is the receiver's check (docs/sinks.md): Stripe's scheme."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    t = int(parts["t"])
    want = hmac.new(secret, ("%d." % t).encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts["v1"]) and abs(time.time() - t) <= tolerance


def split_multipart(ctype, body):
    """split_multipart returns {name: (headers, bytes)} of a form-data body, byte-exact."""
    boundary = re.search(r'boundary=([^;\s]+)', ctype).group(1).encode()
    chunks = body.split(b"--" + boundary)
    assert chunks[0] == b"" and chunks[-1] == b"--\r\n", (chunks[0][:50], chunks[-1][:50])
    parts = {}
    for c in chunks[1:-1]:
        assert c.startswith(b"\r\n") and c.endswith(b"\r\n")
        head, _, data = c[2:-2].partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head).group(1).decode()
        parts[name] = (head.decode(), data)
    return parts


def content(n=0):
    return crlf("From: Ann <ann@x.test>\nTo: bob@y.test\nSubject: hook %d\nMessage-ID: <h%d@x.test>\n\n"
                "Hello \xfc\n.dot line\n" % (n, n)) .replace(b"\xc3\xbc", b"\xfc")


def send(t, srv, n=0, rcpts=("bob@y.test",)):
    c = Conn(srv.port)
    ehlo(t, c)
    body = content(n)
    _, qid = send_message(t, c, "ann@x.test", list(rcpts), body)
    c.cmd("QUIT")
    c.close()
    return qid, body


def make_certs(d):
    """make_certs writes a CA, a leaf for localhost and a leaf for wrong.test (signed by the CA)."""
    def sh(*a):
        subprocess.run(a, cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
       "-subj", "/CN=oceanmx test CA", "-keyout", "ca.key", "-out", "ca.pem")
    for name in ("localhost", "wrong.test"):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".csr")
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n" % name)
        sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
           "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem")


def tls_ctx(d, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, name + ".pem"), os.path.join(d, name + ".key"))
    return ctx


def main(t):
    if shutil.which("openssl") is None:
        raise Skip("openssl not installed (Debian package openssl)")
    secret = b"whsec_" + os.urandom(16).hex().encode()

    rec = Receiver()
    srv = Server()
    sec_path = os.path.join(srv.tmp, "secret")
    with open(sec_path, "wb") as f:
        f.write(secret + b"\n")
    srv.args = ["--sink", "http://127.0.0.1:%d/hook?secret_file=%s&token=abc&concurrency=8" % (rec.port, sec_path),
                "--sink-retry-first", "1", "--sink-retry-max", "2"]
    try:
        with srv:
            with t.case("json_signed"):
                qid, body = send(t, srv, 1, ("bob@y.test", "carl@y.test"))
                got = rec.delivered(1)
                t.check(len(got) == 1, "no request after %ds; log:\n%s" % (T_DELIVER, srv.stderr_tail()))
                r = got[0]
                h = r["headers"]
                t.check(r["path"] == "/hook?token=abc", "path %r (our options must be gone, the receiver's kept)" % r["path"])
                t.check(h.get("content-type") == "application/json", "content-type %r" % h.get("content-type"))
                t.check(h.get("oceanmx-message-id") == qid and h.get("idempotency-key") == qid,
                        "id headers %r/%r, want %s" % (h.get("oceanmx-message-id"), h.get("idempotency-key"), qid))
                t.check(verify_signature(secret, h.get("oceanmx-signature", "t=0,v1="), r["body"]),
                        "signature %r does not verify" % h.get("oceanmx-signature"))
                t.check(not verify_signature(b"other", h["oceanmx-signature"], r["body"]), "a wrong secret verifies")
                t.check(not verify_signature(secret, h["oceanmx-signature"], r["body"] + b" "), "a changed body verifies")
                doc = json.loads(r["body"])
                t.check(doc["schema"] == "oceanmx.message" and doc["envelope"]["id"] == qid, "document %r" % doc.get("envelope"))
                t.check([x["email"] for x in doc["envelope"]["rcpt_to"]] == ["bob@y.test", "carl@y.test"],
                        "rcpt_to %r" % doc["envelope"]["rcpt_to"])
                t.check(doc["subject"] == "hook 1", "subject %r" % doc["subject"])
                t.check(doc["auth"] is not None, "no auth section")

            with t.case("concurrent"):
                rec.plan = [(200, {}, b"ok", 0.3)] * 24
                n0 = len(rec.requests)
                c = Conn(srv.port)
                ehlo(t, c)
                for i in range(24):
                    send_message(t, c, "ann@x.test", ["bob@y.test"], content(100 + i))
                c.cmd("QUIT")
                got = rec.delivered(n0 + 24)
                t.check(len(got) >= n0 + 24, "%d of 24 delivered" % (len(got) - n0))
                t.check(rec.max_inflight > 1, "requests never overlapped (max in flight %d)" % rec.max_inflight)

            with t.case("500_retried_with_retry_after"):
                rec.plan = [(500, {"Retry-After": "7"}, b"busy now\nmore", 0)]
                qid, _ = send(t, srv, 2)
                m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid)
                t.check(m, "no tempfail logged for %s:\n%s" % (qid, srv.stderr_tail()))
                t.check("http 500: busy now" in m.group(1) and "retry_after=7s" in m.group(1), "reason %r" % m.group(1))
                # Retry-After (7 s) outweighs --sink-retry-max (2 s): the retry waits for it.
                m = srv.wait_log(r"%s deliver\.tempfail reason=\"[^\"]*\" attempt=1 retry_in=(\d+)s" % qid)
                t.check(m and int(m.group(1)) >= 6, "retry_in %r, want the receiver's 7 s" % (m and m.group(1)))
                t0 = time.monotonic()
                got = []
                while not got and time.monotonic() - t0 < T_DELIVER:
                    got = [r for r in rec.delivered(1) if r["headers"].get("oceanmx-message-id") == qid]
                    time.sleep(0.1)
                t.check(got, "not delivered at the retry")
                t.check(time.monotonic() - t0 > 4, "retried %.1fs after the 503, before its Retry-After" % (time.monotonic() - t0))

            with t.case("400_dead_letter"):
                rec.plan = [(400, {}, b"bad \"signature\"\x01", 0)]
                qid, _ = send(t, srv, 3)
                m = wait_log(srv, r"%s deliver\.permfail reason=\"([^\"]*)\"" % qid)
                t.check(m, "no permfail logged:\n%s" % srv.stderr_tail())
                t.check(m.group(1) == "http 400: bad ?signature??", "reason %r" % m.group(1))
                t.check(os.path.exists(os.path.join(srv.spool, "failed", qid)),
                        "not in SPOOL/failed: %r" % os.listdir(os.path.join(srv.spool, "failed")))
    finally:
        rec.close()

    # raw=yes: multipart/form-data, unsigned (no secret_file), parts byte-exact.
    rec = Receiver()
    srv = Server("--sink", "http://127.0.0.1:%d/?raw=yes" % rec.port)
    try:
        with srv:
            with t.case("raw_multipart"):
                qid, body = send(t, srv, 4)
                got = rec.delivered(1)
                t.check(got, "no request:\n%s" % srv.stderr_tail())
                r = got[0]
                t.check("oceanmx-signature" not in r["headers"], "signed without a secret")
                parts = split_multipart(r["headers"]["content-type"], r["body"])
                t.check(set(parts) == {"message", "raw"}, "parts %r" % list(parts))
                doc = json.loads(parts["message"][1])
                raw = parts["raw"][1]
                t.check(doc["envelope"]["id"] == qid, "document id %r" % doc["envelope"]["id"])
                t.check('filename="%s.eml"' % qid in parts["raw"][0], "raw part head %r" % parts["raw"][0])
                t.check(raw.endswith(body), "raw part does not end with the client's bytes")
                t.check(raw.startswith(b"Authentication-Results: mx.test;"), "raw part starts %r" % raw[:60])
                md = srv.maildir.wait_ids([qid])[qid]
                t.check(md and md[0].raw.endswith(raw[raw.index(b"\r\nReceived:") + 2:]),
                        "raw part differs from the maildir copy")
    finally:
        rec.close()

    # Timeouts and refused connections are retried.
    rec = Receiver()
    dead = free_port()
    srv = Server("--sink", "http://127.0.0.1:%d/?timeout=1" % rec.port, shards=1)
    try:
        with srv:
            with t.case("timeout_tempfail"):
                rec.plan = [(200, {}, b"late", 3)]
                qid, _ = send(t, srv, 5)
                m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid)
                t.check(m and "imeout" in m.group(1), "reason %r" % (m and m.group(1)))
    finally:
        rec.close()
    with Server("--sink", "http://127.0.0.1:%d/" % dead, shards=1) as srv:
        with t.case("refused_tempfail"):
            qid, _ = send(t, srv, 6)
            m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid)
            t.check(m and "onnect" in m.group(1), "reason %r" % (m and m.group(1)))
    with Server("--sink", "http://127.0.0.1:%d/" % dead, "--sink-retry-first", "1", "--sink-max-age", "3",
                shards=1) as srv:
        with t.case("expired_after_sink_max_age"):
            # A consumer down for longer than --sink-max-age: the message becomes a
            # dead letter with the last error, like Postfix's maximal_queue_lifetime.
            qid, _ = send(t, srv, 7)
            m = srv.wait_log(r"%s deliver\.permfail reason=\"expired after (\d+) attempts: ([^\"]*)\"" % qid)
            t.check(m and int(m.group(1)) >= 2 and "onnect" in m.group(2), "no expiry: %r\n%s" %
                    (m and m.groups(), srv.stderr_tail()))
            t.check(os.path.exists(os.path.join(srv.spool, "failed", qid)), "not in SPOOL/failed")

    # https: the right CA and host name delivers; a certificate for another host is refused.
    d = os.path.join(srv.tmp + "-certs")
    os.makedirs(d, exist_ok=True)
    try:
        make_certs(d)
        good = Receiver(tls_ctx(d, "localhost"))
        bad = Receiver(tls_ctx(d, "wrong.test"))
        ca = os.path.join(d, "ca.pem")
        srv = Server("--sink", "https://localhost:%d/in?ca_file=%s" % (good.port, ca),
                     "--sink", "https://localhost:%d/in?ca_file=%s" % (bad.port, ca), shards=1)
        try:
            with srv:
                with t.case("https_verified_and_wrong_host_refused"):
                    qid, body = send(t, srv, 7)
                    got = good.delivered(1)
                    t.check(got and json.loads(got[0]["body"])["envelope"]["id"] == qid,
                            "not delivered over https:\n%s" % srv.stderr_tail())
                    m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid)
                    t.check(m, "the wrong-host certificate was not refused:\n%s" % srv.stderr_tail())
                    t.check(not bad.requests, "a request reached the wrong-host server")
                    t.check(re.search(r"certificate|SSL|TLS", m.group(1)), "reason %r" % m.group(1))
        finally:
            good.close()
            bad.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)

    with t.case("config_errors"):
        for spec, want in (("http://127.0.0.1:1/?secret_file=/nonexistent/s", "secret_file /nonexistent/s"),
                           ("http://127.0.0.1:1/?concurrency=0", "concurrency"),
                           ("https:/x", "want https://HOST"),
                           ("http://127.0.0.1:1/?ca_file=/nonexistent", "ca_file")):
            p = subprocess.run([omx_bin(), "serve", "--listen", "127.0.0.1:%d" % free_port(), "--spool",
                                "/nonexistent-spool", "--sink", spec], capture_output=True, text=True, timeout=30)
            t.check(p.returncode != 0 and want in p.stderr, "%s: exit %d, stderr %r" % (spec, p.returncode, p.stderr))


run(main)
