"""
test_rspamd - spam verdicts from a real rspamd (Debian package rspamd)
started here on loopback as the current user, with a minimal local config
in the test's temp dir: the stock /etc/rspamd config with every module that
needs Redis or the network disabled, DNS pointed at a dead loopback port,
the test GTUBE patterns on. Checks, through oceanmx serve --rspamd:

  - SpamAssassin's GTUBE (rspamd: action reject) and rspamd's own add-header
    GTUBE are stored with X-Spam-Flag: YES, X-Spam-Score, X-Spam-Status
    naming the GTUBE symbol, and the JSON document's "spam" section; an
    ordinary message is stored with X-Spam-Flag: NO and action "no action";
  - forged X-Spam-* fields from the client are removed (ours are on top);
  - --spam-reject-score 10 answers 550 5.7.1 to GTUBE and 250 to the ham;
  - --spam-tempfail-action "add header" answers 451 4.7.1 to the add-header GTUBE;
  - rspamd stopped: --rspamd-fail open stores with X-Spam-Status: Unknown and
    error=, and the JSON "spam.error"; --rspamd-fail tempfail answers 451 4.7.1.
Skips with the reason when rspamd is not installed or does not start.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from lib import Conn, Server, Skip, T_DELIVER, crlf, ehlo, free_port, run, scale, send_message

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
GTUBE_SA = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_ADD_HEADER = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# Modules that need Redis or the network (DNS lists, maps, hashes): off.
DISABLED = ("rbl", "spf", "dkim", "dmarc", "arc", "fuzzy_check", "asn", "phishing", "neural", "ratelimit",
            "greylist", "replies", "history_redis", "url_reputation", "reputation", "dcc", "classifier-bayes",
            "emails", "multimap", "mx_check", "whitelist", "maillist", "trie", "once_received")


class Rspamd:
    """Rspamd runs rspamd -f in its own temp dir, normal worker on a free port."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="omx-rspamd-")
        self.port = free_port()
        self.sock = os.path.join(self.dir, "normal.sock")  # the same worker on a UNIX socket too
        self.proc = None
        local = os.path.join(self.dir, "local")
        for d in ("local/local.d", "local/override.d", "db", "run", "log"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        od = os.path.join(local, "override.d")
        self._w(od, "worker-normal.inc", 'bind_socket = "127.0.0.1:%d";\nbind_socket = "%s mode=0666";\ncount = 1;\n'
                % (self.port, self.sock))
        self._w(od, "worker-controller.inc", 'bind_socket = "127.0.0.1:%d";\n' % free_port())
        self._w(od, "worker-proxy.inc", 'bind_socket = "127.0.0.1:%d";\n' % free_port())
        self._w(od, "logging.inc", 'type = "console";\nlevel = "notice";\n')
        for m in DISABLED:
            self._w(od, m + ".conf", "enabled = false;\n")
        # A dead resolver fails fast; the test GTUBE variants (add header, ...) on.
        self._w(os.path.join(local, "local.d"), "options.inc",
                'dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }\n'
                'enable_test_patterns = true;\n')

    @staticmethod
    def _w(d, name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def start(self):
        cmd = [RSPAMD, "-f", "-c", "/etc/rspamd/rspamd.conf"]
        if os.geteuid() == 0:
            cmd.append("-i")  # root here: rspamd refuses privileged workers without it
        for k, v in (("LOCAL_CONFDIR", "local"), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log")):
            cmd.append("--var=%s=%s" % (k, os.path.join(self.dir, v)))
        self.log = open(os.path.join(self.dir, "rspamd.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        # Loading the stock rules takes tens of seconds on a busy 2-core box.
        deadline = time.time() + scale(180, 240)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Skip("rspamd exited at start (status %s): %s" % (self.proc.returncode, self.tail()))
            if self.ping():
                return
            time.sleep(0.5)
        raise Skip("rspamd did not answer on 127.0.0.1:%d in time: %s" % (self.port, self.tail()))

    def ping(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                return b"pong" in s.recv(4096)
        except OSError:
            return False

    def tail(self):
        try:
            with open(os.path.join(self.dir, "rspamd.log"), "rb") as f:
                return f.read()[-600:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def message(subject, body, extra=""):
    return crlf("From: Alice Example <alice@example.com>\nTo: Bob <bob@example.org>\nSubject: %s\n"
                "Date: Mon, 7 Dec 2026 05:00:00 +0000\nMessage-ID: <%s@example.com>\n%s\n%s\n"
                % (subject, subject.replace(" ", "."), extra, body))


HAM = "Hello Bob,\nare we still on for lunch tomorrow at noon? The usual place.\n\nAlice\n"


def top_fields(content):
    """top_fields: the header fields of a stored message, unfolded, as (name, value)."""
    head = content.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    out = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif ":" in line:
            n, v = line.split(":", 1)
            out.append((n, v.strip()))
    return out


def field(fields, name):
    return [v for n, v in fields if n.lower() == name.lower()]


def deliver_one(t, srv, content, want=250, jdir=None):
    c = Conn(srv.port)
    ehlo(t, c)
    r, qid = send_message(t, c, "alice@example.com", ["bob@example.org"], content, want=want)
    c.cmd("QUIT")
    c.close()
    if want != 250:
        return r, None, None
    got = srv.maildir.wait_ids([qid], timeout=T_DELIVER)
    doc = None
    if jdir is not None:
        deadline = time.time() + T_DELIVER
        while time.time() < deadline and doc is None:
            for p in glob.glob(os.path.join(jdir, "*.json")):
                if qid in os.path.basename(p):
                    with open(p) as f:
                        doc = json.load(f)
            time.sleep(0.1)
    t.check(len(got[qid]) == 1, "message %s not delivered" % qid)
    return r, got[qid][0], doc


def main(t):
    if not os.path.exists(RSPAMD):
        raise Skip("rspamd is not installed (Debian package rspamd)")
    rs = Rspamd()
    try:
        rs.start()
        url = "http://127.0.0.1:%d" % rs.port
        jtmp = tempfile.mkdtemp(prefix="omx-rspamd-json-")
        with Server("--rspamd", url, "--sink", "json:" + jtmp, "--dkim", "off", "--spf", "off",
                    "--log-level", "info") as srv:
            with t.case("gtube_spamassassin_marked"):
                r, d, doc = deliver_one(t, srv, message("gtube sa", GTUBE_SA), jdir=jtmp)
                f = top_fields(d.raw)
                t.check(field(f, "X-Spam-Flag") == ["YES"], "X-Spam-Flag: %r" % field(f, "X-Spam-Flag"))
                st = field(f, "X-Spam-Status")
                t.check(len(st) == 1 and st[0].startswith("Yes,") and "GTUBE(" in st[0]
                        and 'action="reject"' in st[0] and "engine=rspamd" in st[0], "X-Spam-Status: %r" % st)
                t.check(len(field(f, "X-Spam-Score")) == 1, "X-Spam-Score: %r" % field(f, "X-Spam-Score"))
                sp = doc and doc.get("spam")
                t.check(sp is not None and sp["engine"] == "rspamd" and sp["action"] == "reject"
                        and sp["is_spam"] is True and sp["error"] is None
                        and any(s["name"] == "GTUBE" for s in sp["symbols"])
                        and isinstance(sp["score"], (int, float)) and sp["score"] >= 10, "spam: %r" % sp)
            with t.case("gtube_rspamd_add_header_marked"):
                r, d, doc = deliver_one(t, srv, message("gtube add", GTUBE_ADD_HEADER), jdir=jtmp)
                f = top_fields(d.raw)
                st = field(f, "X-Spam-Status")
                t.check(len(st) == 1 and st[0].startswith("Yes,") and 'action="add header"' in st[0],
                        "X-Spam-Status: %r" % st)
                t.check(doc and doc["spam"]["action"] == "add header", "spam: %r" % (doc and doc.get("spam")))
            with t.case("ham_not_spam"):
                r, d, doc = deliver_one(t, srv, message("lunch", HAM), jdir=jtmp)
                f = top_fields(d.raw)
                st = field(f, "X-Spam-Status")
                t.check(field(f, "X-Spam-Flag") == ["NO"], "X-Spam-Flag: %r" % field(f, "X-Spam-Flag"))
                t.check(len(st) == 1 and st[0].startswith("No,") and 'action="no action"' in st[0],
                        "X-Spam-Status: %r" % st)
                sp = doc and doc.get("spam")
                t.check(sp is not None and sp["is_spam"] is False and sp["score"] < 6, "spam: %r" % sp)
            with t.case("forged_fields_removed"):
                forged = "X-Spam-Flag: NO\nX-Spam-Status: No, score=-100.00 engine=rspamd\nX-Spam-Score : -100\n"
                r, d, doc = deliver_one(t, srv, message("forged", GTUBE_SA, extra=forged), jdir=jtmp)
                f = top_fields(d.raw)
                t.check(field(f, "X-Spam-Flag") == ["YES"] and len(field(f, "X-Spam-Status")) == 1
                        and len(field(f, "X-Spam-Score")) == 1 and len(field(f, "X-Spam-Score ")) == 0,
                        "fields: %r" % [x for x in f if x[0].lower().startswith("x-spam")])
                t.check(doc and doc["spam"]["is_spam"] is True, "spam: %r" % (doc and doc.get("spam")))
            with t.case("log_line_has_verdict"):
                t.check(srv.wait_log(r"tx\.commit id=\S+ size=\d+ spam score=", timeout=10),
                        "no spam verdict in the tx.commit log line")
        shutil.rmtree(jtmp, ignore_errors=True)

        with Server("--rspamd", url, "--spam-reject-score", "10", "--spam-tempfail-action", "add header",
                    "--dkim", "off", "--spf", "off") as srv:
            with t.case("reject_score_550"):
                r, _, _ = deliver_one(t, srv, message("gtube reject", GTUBE_SA), want=550)
                t.expect(r, 550, None, "GTUBE with --spam-reject-score 10", enhanced="5.7.1")
            with t.case("tempfail_action_451"):
                r, _, _ = deliver_one(t, srv, message("gtube tempfail", GTUBE_ADD_HEADER), want=451)
                t.expect(r, 451, None, "add-header GTUBE with --spam-tempfail-action", enhanced="4.7.1")
            with t.case("reject_score_ham_250"):
                deliver_one(t, srv, message("lunch two", HAM))

        with Server("--rspamd", "unix:" + rs.sock, "--spam-reject-score", "10", "--dkim", "off", "--spf", "off") as srv:
            with t.case("unix_socket_reject_score_550"):
                r, _, _ = deliver_one(t, srv, message("gtube unix", GTUBE_SA), want=550)
                t.expect(r, 550, None, "GTUBE over rspamd's UNIX socket", enhanced="5.7.1")
            with t.case("unix_socket_ham_250"):
                deliver_one(t, srv, message("lunch unix", HAM))

        rs.stop()
        jtmp = tempfile.mkdtemp(prefix="omx-rspamd-json-")
        with Server("--rspamd", url, "--rspamd-timeout", "2000", "--sink", "json:" + jtmp) as srv:
            with t.case("down_fail_open_annotated"):
                r, d, doc = deliver_one(t, srv, message("down open", HAM), jdir=jtmp)
                f = top_fields(d.raw)
                st = field(f, "X-Spam-Status")
                t.check(len(st) == 1 and st[0].startswith("Unknown,") and "error=" in st[0], "X-Spam-Status: %r" % st)
                t.check(field(f, "X-Spam-Flag") == [], "X-Spam-Flag on a failed check: %r" % field(f, "X-Spam-Flag"))
                sp = doc and doc.get("spam")
                t.check(sp is not None and sp["error"] and sp["score"] is None, "spam: %r" % sp)
        shutil.rmtree(jtmp, ignore_errors=True)
        with Server("--rspamd", url, "--rspamd-fail", "tempfail", "--rspamd-timeout", "2000") as srv:
            with t.case("down_fail_tempfail_451"):
                r, _, _ = deliver_one(t, srv, message("down tempfail", HAM), want=451)
                t.expect(r, 451, None, "rspamd down with --rspamd-fail tempfail", enhanced="4.7.1")
    finally:
        rs.cleanup()


if __name__ == "__main__":
    run(main)
