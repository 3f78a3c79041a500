"""
test_proxy - the PROXY protocol listener (--listen-proxy) behind a real
HAProxy from Debian: the client connects from 127.0.0.3 to HAProxy on
127.0.0.1, HAProxy connects to oceanmx from 127.0.0.1 with send-proxy (v1)
or send-proxy-v2, and the client's address (127.0.0.3, not HAProxy's) must
arrive everywhere: the Received: field, the JSON envelope, the log.
Also: a connection from outside --proxy-trusted is closed without a
greeting, a malformed header closes the connection, and a HAProxy health
check (v2 LOCAL, via `check send-proxy-v2 check-send-proxy`) is harmless.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from lib import Server, Skip, T_IO, free_port, run, require_tool


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class HAProxy:
    def __init__(self, tmp, backends):
        """backends: list of (listen_port, server_port, send_proxy_keyword)."""
        self.cfg = os.path.join(tmp, "haproxy.cfg")
        lines = ["global", "    maxconn 256", "defaults", "    mode tcp", "    timeout connect 5s",
                 "    timeout client 60s", "    timeout server 60s"]
        for i, (lport, sport, kw) in enumerate(backends):
            lines += ["frontend f%d" % i, "    bind 127.0.0.1:%d" % lport, "    default_backend b%d" % i,
                      "backend b%d" % i,
                      "    server s 127.0.0.1:%d %s check inter 500ms check-send-proxy" % (sport, kw)]
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(tmp, "haproxy.log"), "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=self.log, stderr=self.log)
        for lport, _, _ in backends:
            if not wait_port(lport):
                self.stop()
                raise Skip("haproxy did not start: " + open(os.path.join(tmp, "haproxy.log")).read()[-500:])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def smtp_via(t, port, content, source="127.0.0.3"):
    """smtp_via sends one message through port from `source`; returns the queue id."""
    s = socket.create_connection(("127.0.0.1", port), timeout=T_IO, source_address=(source, 0))
    f = s.makefile("rb")

    def reply():
        lines = []
        while True:
            ln = f.readline()
            t.check(ln, "connection closed; got %r" % lines)
            lines.append(ln)
            if ln[3:4] != b"-":
                return lines

    def cmd(line, code):
        s.sendall(line + b"\r\n")
        r = reply()
        t.check(r[-1].startswith(code), "%r: want %r, got %r" % (line, code, r))
        return r

    t.check(reply()[-1].startswith(b"220"), "greeting through haproxy")
    cmd(b"EHLO client.test", b"250")
    cmd(b"MAIL FROM:<a@x.test>", b"250")
    cmd(b"RCPT TO:<b@y.test>", b"250")
    cmd(b"DATA", b"354")
    r = cmd(content + b".", b"250")
    cmd(b"QUIT", b"221")
    s.close()
    m = re.search(rb"queued as (\S+)", r[-1])
    return m.group(1).decode()


def main(t):
    require_tool(shutil.which("haproxy") or "/usr/sbin/haproxy", "haproxy")
    tmp = tempfile.mkdtemp(prefix="omx-proxy-")
    p1, p2 = free_port(), free_port()
    h1, h2 = free_port(), free_port()
    jdir = os.path.join(tmp, "json")
    with Server("--listen-proxy", "127.0.0.1:%d" % p1, "--listen-proxy", "127.0.0.1:%d" % p2,
                "--proxy-trusted", "127.0.0.1/32", "--sink", "json:" + jdir, "--log-level", "info") as srv:
        hp = HAProxy(tmp, [(h1, p1, "send-proxy"), (h2, p2, "send-proxy-v2")])
        try:
            for name, port in (("v1", h1), ("v2", h2)):
                with t.case("client_address_through_haproxy_%s" % name):
                    content = b"Subject: via haproxy %s\r\n\r\nhello\r\n" % name.encode()
                    qid = smtp_via(t, port, content)
                    got = srv.maildir.wait_ids([qid])[qid]
                    t.check(got, "message %s not delivered" % qid)
                    d = got[0]
                    t.check(d.content == content, "content differs: %r" % d.content[:200])
                    t.check(b"[127.0.0.3]" in d.received and b"127.0.0.1" not in d.received,
                            "Received: names the balancer, not the client: %r" % d.received)
                    path = os.path.join(jdir, qid + ".json")
                    deadline = time.monotonic() + 30
                    while not os.path.exists(path) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    env = json.load(open(path))["envelope"]
                    t.check(env["client"]["ip"] == "127.0.0.3", "JSON envelope client: %r" % env["client"])
                    t.check(srv.wait_log(r"proxy\.client client=127\.0\.0\.3 port=\d+ version=%s" % name[1]),
                            "no proxy.client line for %s" % name)
            with t.case("health_checks_are_local"):
                # HAProxy's checks (every 500 ms, check-send-proxy) send LOCAL (v2) / PROXY lines.
                # A check that closes before the server has read its header
                # leaves no line, and a loaded machine (an ASan build beside
                # other work) has seen 11 s without one: wait up to 30 s.
                time.sleep(1.5)
                t.check(srv.wait_log(r"proxy\.client client=127\.0\.0\.1 port=\d+ version=\d local=yes", 30),
                        "no health check seen\n" + srv.stderr_tail())
                t.check(srv.running(), "server died on health checks")
        finally:
            hp.stop()

        with t.case("untrusted_peer_closed_without_greeting"):
            s = socket.create_connection(("127.0.0.1", p1), timeout=T_IO, source_address=("127.0.0.2", 0))
            s.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 25\r\n")
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            s.close()
            t.check(data == b"", "a peer outside --proxy-trusted got %r" % data)
            t.check(srv.wait_log("not in --proxy-trusted"), "refusal not logged")

        with t.case("malformed_header_closed"):
            for bad in (b"EHLO x\r\n", b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n", b"PROXY " + b"9" * 200):
                s = socket.create_connection(("127.0.0.1", p1), timeout=T_IO)
                s.sendall(bad)
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                s.close()
                t.check(data == b"", "%r: got %r instead of a close" % (bad[:30], data))

        with t.case("header_and_first_command_in_one_write"):
            s = socket.create_connection(("127.0.0.1", p1), timeout=T_IO)
            s.sendall(b"PROXY TCP4 192.0.2.9 127.0.0.1 4321 25\r\n")
            f = s.makefile("rb")
            t.check(f.readline().startswith(b"220"), "no greeting after the header")
            s.sendall(b"EHLO c\r\nQUIT\r\n")
            rest = f.read()
            s.close()
            t.check(b"221" in rest, "no 221: %r" % rest)
            t.check(srv.wait_log("proxy.client client=192.0.2.9 port=4321"), "header's client not taken")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(main)
