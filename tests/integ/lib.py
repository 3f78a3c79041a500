"""
lib.py - shared helpers for the oceanmx integration tests (tests/integ/).

Every test_*.py script imports this module and calls run(main). It owns:
  - locating the server binary (env OMX_BIN, default build/oceanmx under the
    repo root) and the corpora (env OMX_CORPORA, default <repo>/../shared/corpora);
  - Server: a real `oceanmx serve` on a free 127.0.0.1 port with its own temp
    dir (spool/, maildir/, stderr logs); start() waits until the port listens
    and the greeting arrives; stop() sends SIGTERM and checks exit status 0 and
    that stderr holds no ASan/UBSan/LSan report; the temp dir is removed after;
  - Conn: a raw-socket SMTP client that keeps a transcript for failure reports;
  - maildir parsing: strips the Return-Path / Delivered-To / Received fields the
    maildir sink prepends and returns the exact content bytes;
  - Test: per-case PASS/FAIL bookkeeping; exit 0 = pass, 1 = fail, 77 = skip.

Only loopback addresses are used. Waiting is always "poll until done or a
generous timeout"; no test asserts on how long something took.
Run with Debian's /usr/bin/python3 (stdlib only).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
SANITIZED = os.environ.get("OMX_SANITIZED", "") not in ("", "0")

# Generous waits (never assertions on duration). ASan builds are ~3-5x slower.
T_IO = 60.0 if SANITIZED else 30.0        # one socket read
T_START = 90.0 if SANITIZED else 30.0     # server start until listening
T_DELIVER = 180.0 if SANITIZED else 60.0  # message visible in the maildir
T_EXIT = 120.0 if SANITIZED else 60.0     # process exit after SIGTERM

SAN_PATTERNS = (
    "runtime error:",
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "WARNING: ThreadSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
)

SKIP_RC = 77


def scale(normal, sanitized):
    """scale returns `sanitized` under OMX_SANITIZED=1, else `normal`."""
    return sanitized if SANITIZED else normal


def omx_bin():
    b = os.environ.get("OMX_BIN", "build/oceanmx")
    if not os.path.isabs(b):
        b = os.path.join(REPO, b)
    return b


def omx_verify(host, path, port, *extra, stdin=None, timeout_ms=2000):
    """omx_verify runs `oceanmx verify` on path ("-": stdin) with --hostname host,
    asking the DNS server on 127.0.0.1:port (none when port is None)."""
    args = [omx_bin(), "verify", "--hostname", host, "--dns-timeout", str(timeout_ms)]
    if port is not None:
        args += ["--dns", "127.0.0.1:%d" % port]
    args += list(extra) + [path]
    return subprocess.run(args, input=stdin, capture_output=True, timeout=60)


def read_tsv(path):
    """read_tsv returns the rows of a corpus TSV file as dicts keyed by its header ('#' stripped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        head = None
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if head is None:
                head = [c.lstrip("#") for c in cols]
                continue
            rows.append(dict(zip(head, cols)))
    return rows


def zone_dnsfunc(zone):
    """zone_dnsfunc gives dkimpy a dnsfunc answering TXT names from a parse_zone() dict."""
    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        recs = zone.get(n.rstrip(".").lower())
        return b"".join(recs[0][1]) if recs else None
    return dnsfunc


def corpora_dir():
    c = os.environ.get("OMX_CORPORA") or os.path.join(REPO, "..", "shared", "corpora")
    return os.path.abspath(c)


class Skip(Exception):
    """Raised to skip the whole test script (a required tool is missing)."""


class Failure(Exception):
    """Raised by Test.check/require helpers to abort one case."""


def require_tool(path, package):
    if not os.access(path, os.X_OK):
        raise Skip("%s not found (Debian package %s)" % (path, package))


# ---------------------------------------------------------------- certificates


def make_cert(d, name, kind="rsa", cn="localhost", sans=("localhost",), ips=()):
    """make_cert makes a self-signed certificate with the openssl CLI (Debian
    package openssl) in d: kind "rsa" (2048 bits) or "ec" (P-256), subject CN
    cn, subjectAltName DNS sans and IP ips. Returns (crt, key) paths."""
    crt, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    alg = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    san = ",".join(["DNS:" + x for x in sans] + ["IP:" + x for x in ips])
    p = subprocess.run(["openssl", "req", "-x509"] + alg + ["-nodes", "-keyout", key, "-out", crt, "-days", "2",
                        "-subj", "/CN=" + cn] + (["-addext", "subjectAltName=" + san] if san else []),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl req: exit %d: %s" % (p.returncode, p.stdout.decode(errors="replace")))
    return crt, key


# ---------------------------------------------------------------- ports


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_listening(port, host_hex="0100007F"):
    """port_listening reads /proc/net/tcp: is 127.0.0.1:port (or 0.0.0.0) in LISTEN?
    This does not open a connection, so it disturbs no connection limit."""
    want = ":%04X" % port
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                local, state = parts[1], parts[3]
                if state == "0A" and local.endswith(want) and local.split(":")[0] in (host_hex, "00000000"):
                    return True
    except OSError:
        pass
    return False


# ---------------------------------------------------------------- SMTP client


_CONNS = []  # open Conns, closed when a case fails so the server is not kept waiting


class Reply:
    def __init__(self, code, lines):
        self.code = code          # int, or None for EOF / garbage
        self.lines = lines        # texts after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """enhanced returns the RFC 3463 code of the last line ("5.5.1") or ''."""
        if not self.lines:
            return ""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.lines[-1])
        return m.group(1) if m else ""

    def __repr__(self):
        if self.code is None:
            return "<EOF>"
        return "%d %s" % (self.code, " | ".join(self.lines))


EOF = Reply(None, [])


class Conn:
    """Conn is a raw SMTP client socket with a transcript (C:/S: lines)."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=T_IO, greet=True):
        self.transcript = []
        self.buf = b""
        self.closed = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        _CONNS.append(self)
        self.greeting = None
        if greet:
            self.greeting = self.reply()

    def note(self, s):
        self.transcript.append("-- " + s)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        for ln in re.findall(rb"[^\n]*\n|[^\n]+$", data):
            self.transcript.append("C: " + _show(ln))
        if len(self.transcript) > 4000:
            self.transcript = self.transcript[:100] + ["-- (transcript cut)"] + self.transcript[-2000:]
        self.sock.sendall(data)

    def send_quiet(self, data, label):
        """send_quiet sends bulk data and records only a label in the transcript."""
        self.transcript.append("C: <%s: %d bytes>" % (label, len(data)))
        self.sock.sendall(data)

    def _line(self):
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except socket.timeout:
                self.transcript.append("-- no reply within %gs" % self.sock.gettimeout())
                raise Failure("timed out after %gs waiting for a reply\n    transcript:\n%s"
                              % (self.sock.gettimeout(), self.dump()))
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def reply(self):
        """reply reads one (possibly multi-line) reply; EOF on close.
        socket.timeout propagates (a missing reply is a failure)."""
        lines = []
        code = None
        while True:
            ln = self._line()
            if ln is None:
                if lines:
                    self.transcript.append("S: <EOF inside a reply>")
                    return Reply(None, lines)
                self.transcript.append("S: <EOF>")
                return EOF
            self.transcript.append("S: " + _show(ln))
            s = ln.decode("utf-8", "replace").rstrip("\r\n")
            m = re.match(r"^(\d{3})([ -])(.*)$", s) or re.match(r"^(\d{3})()$", s)
            if not m:
                return Reply(None, lines + [s])
            c = int(m.group(1))
            if code is not None and c != code:
                return Reply(None, lines + [s])
            code = c
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines)

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def replies_until_close(self, limit=10000):
        out = []
        while len(out) < limit:
            r = self.reply()
            if r is EOF:
                break
            out.append(r)
        return out

    def wait_eof(self):
        """wait_eof reads until the server closes; returns the replies seen."""
        return self.replies_until_close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self in _CONNS:
            _CONNS.remove(self)

    def dump(self):
        return "\n".join("      " + t for t in self.transcript[-200:])


def _show(b):
    s = repr(b)[2:-1]
    return s if len(s) <= 300 else s[:300] + "...(%d bytes)" % len(b)


def parse_queue_id(reply):
    """parse_queue_id extracts ID from '250 2.0.0 Ok: queued as ID' (<ID> too)."""
    text = reply if isinstance(reply, str) else reply.text
    m = re.search(r"queued as <?([A-Za-z0-9._+-]+)>?", text)
    return m.group(1) if m else None


# ---------------------------------------------------------------- maildir


class Delivered:
    def __init__(self, path, raw):
        self.path = path
        self.name = os.path.basename(path)
        self.raw = raw
        self.return_path = None
        self.rcpts = []
        self.received = b""
        self.content = b""
        self.error = None
        self._parse()

    def _parse(self):
        raw = self.raw
        pos = 0

        def line_at(p):
            e = raw.find(b"\r\n", p)
            if e < 0:
                return None, len(raw)
            return raw[p:e], e + 2

        ln, nxt = line_at(pos)
        if ln is None or not ln.startswith(b"Return-Path: "):
            self.error = "does not start with 'Return-Path: ' + CRLF"
            return
        rp = ln[len(b"Return-Path: "):].decode("utf-8", "replace")
        if not (rp.startswith("<") and rp.endswith(">")):
            self.error = "Return-Path not in <>: %r" % rp
            return
        self.return_path = rp[1:-1]
        pos = nxt
        while True:
            ln, nxt = line_at(pos)
            if ln is None or not ln.startswith(b"Delivered-To: "):
                break
            v = ln[len(b"Delivered-To: "):].decode("utf-8", "replace")
            if v.startswith("<") and v.endswith(">"):
                v = v[1:-1]
            self.rcpts.append(v)
            pos = nxt
        if not self.rcpts:
            self.error = "no Delivered-To line"
            return
        def fields_while(pos, wanted):
            """fields_while takes the folded fields from pos on while wanted(first line); returns (fields, pos)."""
            got = []
            while True:
                ln, nxt = line_at(pos)
                if ln is None or not wanted(ln):
                    return got, pos
                start = pos
                pos = nxt
                while pos < len(raw) and raw[pos:pos + 1] in (b" ", b"\t"):
                    ln, nxt = line_at(pos)
                    if ln is None:
                        break
                    pos = nxt
                got.append(raw[start:pos])

        # Our Authentication-Results field(s), folded, come next (RFC 8601: on top).
        self.authres, pos = fields_while(pos, lambda ln: ln.startswith(b"Authentication-Results: "))
        # Then our spam verdict, with --rspamd (verify/rspamd.h), folded.
        self.spam, pos = fields_while(
            pos, lambda ln: ln.split(b":", 1)[0] in (b"X-Spam-Flag", b"X-Spam-Score", b"X-Spam-Status"))
        # Then the header fields milters added (--milter, core/milter_client.h), folded.
        self.milter, pos = fields_while(
            pos, lambda ln: not ln.startswith(b"Received: ") and b":" in ln and ln[:1] not in (b" ", b"\t"))
        ln, nxt = line_at(pos)
        if ln is None or not ln.startswith(b"Received: "):
            self.error = "no Received: field after Delivered-To"
            return
        start = pos
        pos = nxt
        while pos < len(raw) and raw[pos:pos + 1] in (b" ", b"\t"):
            ln, nxt = line_at(pos)
            if ln is None:
                self.error = "unterminated Received continuation"
                return
            pos = nxt
        self.received = raw[start:pos]
        self.content = raw[pos:]


class Maildir:
    def __init__(self, path):
        self.path = path

    def files(self):
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.path, sub)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                if not n.startswith("."):
                    out.append(os.path.join(d, n))
        return sorted(out)

    def read_all(self):
        res = []
        for p in self.files():
            try:
                with open(p, "rb") as f:
                    res.append(Delivered(p, f.read()))
            except FileNotFoundError:
                continue
        return res

    def count(self):
        return len(self.files())

    def by_id(self, qid):
        pat = re.compile(r"(?<![A-Za-z0-9])" + re.escape(qid) + r"(?![A-Za-z0-9])")
        return [d for d in self.read_all() if pat.search(d.name)]

    def wait_ids(self, qids, timeout=T_DELIVER):
        """wait_ids polls until every queue id has a file; returns {id: [Delivered]}
        (missing ids map to [])."""
        qids = list(qids)
        deadline = time.monotonic() + timeout
        pats = {q: re.compile(r"(?<![A-Za-z0-9])" + re.escape(q) + r"(?![A-Za-z0-9])") for q in qids}
        while True:
            names = [os.path.basename(p) for p in self.files()]
            missing = [q for q in qids if not any(pats[q].search(n) for n in names)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        all_ = self.read_all()
        return {q: [d for d in all_ if pats[q].search(d.name)] for q in qids}

    def wait_count(self, n, timeout=T_DELIVER):
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.count()


def crlf(s):
    """crlf turns a text with \\n line ends into CRLF bytes."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def dot_stuff(content):
    """dot_stuff applies RFC 5321 §4.5.2 transparency to CRLF content."""
    out = re.sub(rb"(?m)^\.", b"..", content)
    return out


# ---------------------------------------------------------------- server


class Server:
    """Server runs `oceanmx serve` on 127.0.0.1 with its own temp dir.

    Use as a context manager: on a clean exit it is stopped with SIGTERM and
    checked (exit status 0, no sanitizer report); on an exception it is
    killed. The temp dir is removed at the end unless OMX_KEEP_TMP=1.
    """

    def __init__(self, *args, shards=2, hostname="mx.test", tmp=None, probe=True, sink=True):
        self.args = list(args)
        self.shards = shards
        self.hostname = hostname
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix="omx-integ-")
        self.spool = os.path.join(self.tmp, "spool")
        self.maildir_path = os.path.join(self.tmp, "maildir")
        self.maildir = Maildir(self.maildir_path)
        self.sink = sink
        self.probe = probe
        self.proc = None
        self.port = None
        self.runs = 0
        self.stderr_path = None
        self.logs = []

    def __enter__(self):
        _LIVE.append(self)
        self.start()
        return self

    def __exit__(self, et, ev, tb):
        try:
            if et is None:
                # The clean-exit check is a case of its own, so a failure here (exit
                # status, sanitizer report) does not hide the cases of later servers.
                label = "clean_exit[%s]" % (" ".join(self.args) or "defaults")
                if _CURRENT_TEST:
                    with _CURRENT_TEST.case(label):
                        self.stop()
                else:
                    self.stop()
            else:
                self.kill()
                tail = self.stderr_tail()
                if tail:
                    print("    server stderr (tail):\n" + tail)
        finally:
            self.cleanup()
        return False

    def cmdline(self):
        cmd = [omx_bin(), "serve", "--listen", "127.0.0.1:%d" % self.port,
               "--hostname", self.hostname, "--spool", self.spool, "--shards", str(self.shards)]
        if self.sink:
            cmd += ["--sink", "maildir:" + self.maildir_path]
        return cmd + self.args

    def start(self, port=None):
        if not os.access(omx_bin(), os.X_OK):
            raise Failure("server binary %s not found or not executable (build it, or set OMX_BIN)" % omx_bin())
        last = ""
        for attempt in range(3):
            self.port = port or free_port()
            self.runs += 1
            self.stderr_path = os.path.join(self.tmp, "stderr.%d.log" % self.runs)
            self.logs.append(self.stderr_path)
            err = open(self.stderr_path, "wb")
            env = dict(os.environ)
            env.setdefault("ASAN_OPTIONS", "halt_on_error=1:abort_on_error=0:detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
            self.proc = subprocess.Popen(self.cmdline(), stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
            err.close()
            deadline = time.monotonic() + T_START
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_listening(self.port):
                    break
                time.sleep(0.02)
            if self.proc.poll() is not None:
                last = self.stderr_tail()
                if port is None and re.search(r"in use|EADDRINUSE", last, re.I):
                    continue  # lost a race for the free port: retry on another
                raise Failure("server exited with status %s before listening; cmd: %s\n%s" %
                              (self.proc.returncode, " ".join(self.cmdline()), last))
            if not port_listening(self.port):
                self.kill()
                raise Failure("server not listening on 127.0.0.1:%d after %ds\n%s" % (self.port, T_START, self.stderr_tail()))
            if self.probe:
                c = Conn(self.port)
                g = c.greeting
                q = c.cmd("QUIT")
                c.wait_eof()
                c.close()
                if g.code != 220 or q.code != 221:
                    raise Failure("probe: greeting %r, QUIT %r\n%s" % (g, q, c.dump()))
            return self
        raise Failure("could not start the server on a free port:\n" + last)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=T_EXIT):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=T_EXIT):
        """stop: SIGTERM, wait, require exit 0 and a clean stderr."""
        if self.proc is None:
            return
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill()
            raise Failure("server did not exit within %ds of SIGTERM\n%s" % (timeout, self.stderr_tail()))
        self.check_sanitizers()
        if rc != 0:
            raise Failure("server exited with status %d after SIGTERM (want 0)\n%s" % (rc, self.stderr_tail()))

    def kill(self):
        """kill sends SIGKILL to our server process (by pid) and reaps it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def check_sanitizers(self):
        for p in self.logs:
            try:
                with open(p, "r", errors="replace") as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            for pat in SAN_PATTERNS:
                i = text.find(pat)
                if i >= 0:
                    raise Failure("sanitizer report in %s:\n%s" % (os.path.basename(p), text[max(0, i - 200):i + 3000]))

    def stderr_text(self):
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                return f.read()
        except (TypeError, FileNotFoundError):
            return ""

    def spool_pending(self):
        """spool_pending: the ids `oceanmx spool ls` shows as still owed to some sink."""
        out = subprocess.run([omx_bin(), "spool", "ls", "--spool", self.spool], capture_output=True, text=True)
        if out.returncode != 0:
            raise Failure("oceanmx spool ls: exit %d: %s" % (out.returncode, out.stderr))
        return {ln.split()[0] for ln in out.stdout.splitlines()[1:] if ln.strip()}

    def wait_log(self, pattern, timeout=10):
        """wait_log waits until the server's log (written asynchronously) matches
        the regular expression; returns the match, or None at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.stderr_text())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    def wait_log_count(self, pattern, n, timeout=10):
        """wait_log_count waits until the regular expression matches at least n
        times in the server's log; returns how many times it matched."""
        deadline = time.monotonic() + timeout
        while True:
            got = len(re.findall(pattern, self.stderr_text()))
            if got >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def stderr_tail(self, n=40):
        lines = self.stderr_text().splitlines()
        return "\n".join("      | " + l for l in lines[-n:])

    def cleanup(self):
        self.kill()
        if self in _LIVE:
            _LIVE.remove(self)
        if self.own_tmp and os.environ.get("OMX_KEEP_TMP", "") in ("", "0"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def conn(self, **kw):
        return Conn(self.port, **kw)


_LIVE = []
_CURRENT_TEST = None


def _on_term(signum, frame):
    # The runner's timeout sends SIGTERM to the process group: turn it into an
    # exception so every Server context manager kills its child and cleans up.
    raise SystemExit("terminated by signal %d (test timeout?)" % signum)


def _kill_live():
    for s in list(_LIVE):
        try:
            s.kill()
            s.cleanup()
        except Exception:
            pass


# ---------------------------------------------------------------- test harness


class Test:
    def __init__(self, name):
        self.name = name
        self.failed = []
        self.passed = 0
        self.cur = None

    def case(self, name):
        return _Case(self, name)

    def fail(self, msg, conn=None):
        """fail records a failure of the current case and aborts it."""
        if conn is not None:
            msg += "\n    transcript:\n" + conn.dump()
        raise Failure(msg)

    def check(self, cond, msg, conn=None):
        if not cond:
            self.fail(msg, conn)

    def expect(self, reply, code, conn=None, what="", enhanced=None):
        """expect: reply code must equal (or be in) `code`; optional enhanced code prefix."""
        codes = code if isinstance(code, (tuple, list, set)) else (code,)
        if reply.code not in codes:
            self.fail("%sexpected %s, got %r" % (what + ": " if what else "", "/".join(map(str, codes)), reply), conn)
        if enhanced and not reply.enhanced.startswith(enhanced):
            self.fail("%sexpected enhanced code %s, got %r" % (what + ": " if what else "", enhanced, reply), conn)
        return reply


class _Case:
    def __init__(self, t, name):
        self.t = t
        self.name = name

    def __enter__(self):
        self.t.cur = self.name
        self.t0 = time.monotonic()
        self.nconns = len(_CONNS)
        return self

    def _close_conns(self):
        for c in _CONNS[self.nconns:]:
            c.close()

    def __exit__(self, et, ev, tb):
        dt = time.monotonic() - self.t0
        if et is None:
            self.t.passed += 1
            print("  ok   %s (%.1fs)" % (self.name, dt), flush=True)
            return False
        if et is Skip:
            return False
        if issubclass(et, (KeyboardInterrupt, SystemExit)):
            return False
        self._close_conns()
        if et is Failure:
            msg = str(ev)
        else:
            msg = "%s: %s\n%s" % (et.__name__, ev, "".join(traceback.format_tb(tb)[-4:]))
        self.t.failed.append(self.name)
        print("  FAIL %s: %s" % (self.name, msg), flush=True)
        return True  # continue with the next case


def run(main):
    """run executes main(Test) and exits 0 (all cases passed), 1 or 77 (skip)."""
    signal.signal(signal.SIGTERM, _on_term)
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    t = Test(name)
    global _CURRENT_TEST
    _CURRENT_TEST = t
    rc = 0
    try:
        main(t)
    except Skip as e:
        print("SKIP: %s" % e, flush=True)
        rc = SKIP_RC
    except Failure as e:
        t.failed.append("(setup)")
        print("  FAIL (setup): %s" % e, flush=True)
    except BaseException as e:
        t.failed.append("(crash)")
        print("  FAIL (unexpected %s): %s\n%s" % (type(e).__name__, e, traceback.format_exc()), flush=True)
    finally:
        _kill_live()
    if rc == SKIP_RC:
        sys.exit(rc)
    if t.failed:
        print("RESULT: %d case(s) passed, %d failed: %s" % (t.passed, len(t.failed), ", ".join(t.failed)), flush=True)
        sys.exit(1)
    if t.passed == 0:
        print("RESULT: no case ran", flush=True)
        sys.exit(1)
    print("RESULT: %d case(s) passed" % t.passed, flush=True)
    sys.exit(0)


# ---------------------------------------------------------------- SMTP helpers


def ehlo(t, c, name="client.test"):
    r = c.cmd("EHLO " + name)
    t.expect(r, 250, c, "EHLO")
    return r


def send_message(t, c, mail_from, rcpts, content, mail_params="", want=250):
    """send_message runs one DATA transaction on an EHLO'd Conn, without
    pipelining; `content` is CRLF bytes (dot-stuffed here). Returns the final
    reply; with want=250, checks it and returns (reply, queue_id)."""
    t.expect(c.cmd("MAIL FROM:<%s>%s" % (mail_from, (" " + mail_params) if mail_params else "")), 250, c, "MAIL")
    for r in rcpts:
        t.expect(c.cmd("RCPT TO:<%s>" % r), 250, c, "RCPT")
    t.expect(c.cmd("DATA"), 354, c, "DATA")
    body = dot_stuff(content)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    c.send_quiet(body + b".\r\n", "message content")
    r = c.reply()
    if want is None:
        return r, None
    t.expect(r, want, c, "end of data")
    qid = parse_queue_id(r) if r.code == 250 else None
    if want == 250:
        t.check(qid is not None, "no queue id in end-of-data reply %r" % r, c)
    return r, qid


def check_delivered(t, md, qid, mail_from, rcpts, content, timeout=T_DELIVER, conn=None):
    """check_delivered waits for the queue id in the maildir and checks the
    envelope fields and the content byte for byte. Returns the Delivered."""
    got = md.wait_ids([qid], timeout)[qid]
    t.check(got, "message %s not in the maildir after %ds (files: %d)" % (qid, timeout, md.count()), conn)
    for d in got:
        t.check(d.error is None, "maildir file %s: %s; head: %r" % (d.name, d.error, d.raw[:300]))
        t.check(d.return_path == mail_from, "%s: Return-Path <%s>, want <%s>" % (d.name, d.return_path, mail_from))
        t.check(sorted(d.rcpts) == sorted(rcpts),
                "%s: Delivered-To %r, want %r" % (d.name, d.rcpts, rcpts))
        if d.content != content:
            t.fail("%s: content differs from what was sent: %s" % (d.name, diff_bytes(content, d.content)))
    return got[0]


def diff_bytes(want, got):
    n = min(len(want), len(got))
    i = 0
    while i < n and want[i] == got[i]:
        i += 1
    return ("lengths sent %d / stored %d, first difference at offset %d:\n      sent:   %r\n      stored: %r"
            % (len(want), len(got), i, want[max(0, i - 40):i + 60], got[max(0, i - 40):i + 60]))
