"""
test_lmtp_sink - the lmtp: sink against Dovecot's LMTP server (Debian
dovecot-lmtpd), started here on loopback with a private config (see
dovecot.py): messages received over SMTP land in real mailboxes, which are
read back and compared byte for byte (after the fields Dovecot adds: its
Return-Path, Delivered-To and Received; Dovecot stores LF line ends, so the
CRLF we sent is compared as LF). Over the unix socket and over TCP
(PIPELINING, one connection per delivery worker, reused); an unknown user is
a permanent failure (SPOOL/failed, reason logged); Dovecot stopped is a
temporary failure, and the message arrives once Dovecot is back; kill -9 of
oceanmx while messages are owed, then a restart, delivers every acknowledged
one; a server that answers garbage is a temporary failure.
"""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from dovecot import Dovecot, strip_fields
from lib import Conn, Server, T_DELIVER, crlf, ehlo, omx_bin, run, scale, send_message

USERS = ["alice@example.test", "bob@example.test"]
OURS = (b"return-path", b"delivered-to", b"received", b"authentication-results")


def content_of(t, raw, who):
    """content_of strips Dovecot's fields and our trace fields; checks their order and returns the rest."""
    removed, rest = strip_fields(raw, OURS)
    names = [r.split(b":", 1)[0].lower() for r in removed]
    # Dovecot writes Delivered-To only when the transaction had one recipient.
    k = 3 if names[1:2] == [b"delivered-to"] else 2
    t.check(names[0] == b"return-path" and names[k - 1] == b"received",
            "%s: Dovecot's fields not first: %r" % (who, removed[:3]))
    t.check(b"with LMTP" in removed[k - 1], "%s: not Dovecot's Received: %r" % (who, removed[k - 1]))
    t.check(names[k:] == [b"authentication-results", b"received"],
            "%s: our A-R + Received fields not next: %r" % (who, removed[k:]))
    t.check(removed[k].startswith(b"Authentication-Results: mx.test;"), "%s: A-R %r" % (who, removed[k]))
    return removed[:k], rest


def lf(b):
    return b.replace(b"\r\n", b"\n")


def wait_log(srv, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, srv.stderr_text())
        if m:
            return m
        time.sleep(0.1)
    return None


def spool_files(srv, sub):
    try:
        return sorted(os.listdir(os.path.join(srv.spool, sub)))
    except FileNotFoundError:
        return []


def spool_ls(srv):
    """spool_ls: the output of `oceanmx spool ls` (the messages a sink still owes)."""
    r = subprocess.run([omx_bin(), "spool", "ls", "--spool", srv.spool], capture_output=True, text=True, timeout=60)
    return r.stdout if r.returncode == 0 else "(spool ls failed: %s)" % r.stderr


def queued(srv):
    r = subprocess.run([omx_bin(), "spool", "stats", "--spool", srv.spool], capture_output=True, text=True, timeout=60)
    m = re.search(r"^queued (\d+)$", r.stdout, re.M)
    return int(m.group(1)) if m else -1


def has_retry_option():
    out = subprocess.run([omx_bin(), "--help"], capture_output=True, text=True, timeout=30)
    return "--sink-retry-first" in out.stdout + out.stderr


def main(t):
    tmp = tempfile.mkdtemp(prefix="omx-integ-lmtp-")
    srv = Server(sink=False, tmp=tmp)
    dv = None
    try:
        dv = Dovecot(tmp, USERS).start()
        run_cases(t, srv, dv)
        run_kill9(t, srv, dv)
        run_garbage(t, tmp)
    finally:
        if dv is not None:
            dv.stop()
        if os.environ.get("OMX_KEEP_TMP", "") in ("", "0"):
            shutil.rmtree(tmp, ignore_errors=True)


def run_cases(t, srv, dv):
    # 1. unix socket: two recipients, an 8-bit body, lines starting with dots.
    srv.args = ["--sink", "lmtp:unix:%s?timeout=20" % dv.sock]
    body = ("From: Ann <ann@x.test>\nTo: alice@example.test, bob@example.test\nSubject: over LMTP\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            "caf\u00e9 \u2013 gr\u00fc\u00dfe\n.leading dot\n..two dots\n.\nlast line\n")
    content = crlf(body)
    with srv:
        c = Conn(srv.port)
        ehlo(t, c)
        _, qid = send_message(t, c, "ann@x.test", USERS, content, mail_params="BODY=8BITMIME")
        c.cmd("QUIT")

        with t.case("unix_socket_delivered_byte_exact"):
            for u in USERS:
                got = dv.wait_mailbox(u, 1, T_DELIVER)
                t.check(len(got) == 1, "%s: %d messages in the mailbox, want 1\n%s" % (u, len(got), dv.log_tail()))
                removed, rest = content_of(t, got[0], u)
                t.check(rest == lf(content), "%s: content differs:\n sent   %r\n stored %r" % (u, lf(content)[:200], rest[:200]))
            t.check(b"Return-Path: <ann@x.test>" in got[0], "Return-Path: %r" % got[0][:80])

        with t.case("spool_empty_after_delivery"):
            deadline = time.monotonic() + T_DELIVER
            while queued(srv) != 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            t.check(queued(srv) == 0, "the spool still owes:\n%s" % spool_ls(srv))

    # 2. TCP with PIPELINING: many messages over one reused connection per worker.
    n = scale(40, 10)
    dv_connects_before = dv.log_text().count("Connect from 127.0.0.1")
    srv.args = ["--sink", "lmtp:127.0.0.1:%d" % dv.port]
    before = len(dv.mailbox("bob@example.test"))
    with srv:
        c = Conn(srv.port)
        ehlo(t, c)
        sent = []
        for i in range(n):
            m = crlf("From: ann@x.test\nTo: bob@example.test\nSubject: tcp %d\n\nmessage number %d\n" % (i, i))
            send_message(t, c, "ann@x.test", ["bob@example.test"], m)
            sent.append(lf(m))
        c.cmd("QUIT")

        with t.case("tcp_pipelined_many_messages"):
            got = dv.wait_mailbox("bob@example.test", before + n, T_DELIVER)
            t.check(len(got) == before + n, "bob has %d messages, want %d" % (len(got), before + n))
            rests = sorted(content_of(t, g, "bob")[1] for g in got)
            for m in sent:
                t.check(m in rests, "message %r not stored exactly" % m[:60])
            connects = dv.log_text().count("Connect from 127.0.0.1") - dv_connects_before
            t.check(1 <= connects <= srv.shards,
                    "%d LMTP connections for %d messages (want one per delivery worker, at most %d)"
                    % (connects, n, srv.shards))

    # 3. an unknown user: a permanent failure; a known one beside it still gets the message.
    srv.args = ["--sink", "lmtp:unix:%s" % dv.sock]
    with srv:
        c = Conn(srv.port)
        ehlo(t, c)
        _, q_unknown = send_message(t, c, "ann@x.test", ["nobody@example.test"],
                                    crlf("Subject: to nobody\n\nhi\n"))
        before = len(dv.mailbox("alice@example.test"))
        _, q_mixed = send_message(t, c, "ann@x.test", ["alice@example.test", "nobody@example.test"],
                                  crlf("Subject: mixed\n\nhi\n"))
        c.cmd("QUIT")

        with t.case("unknown_user_permfail_to_failed"):
            m = wait_log(srv, r"%s deliver\.permfail reason=\"([^\"]*)\"" % q_unknown, T_DELIVER)
            t.check(m, "no deliver.permfail for %s:\n%s" % (q_unknown, srv.stderr_tail()))
            t.check("nobody@example.test" in m.group(1) and "550 5.1.1" in m.group(1),
                    "reason %r does not name the recipient and the 550 5.1.1" % m.group(1))
            failed = spool_files(srv, "failed")
            t.check(any(q_unknown in f for f in failed), "%s not in SPOOL/failed: %r" % (q_unknown, failed))

        with t.case("mixed_recipients_permfail_after_partial_delivery"):
            m = wait_log(srv, r"%s deliver\.permfail" % q_mixed, T_DELIVER)
            t.check(m, "no deliver.permfail for %s" % q_mixed)
            t.check(re.search(r"lmtp %s lmtp\.rcpt rcpt=<nobody@example.test> result=permfail" % q_mixed,
                              srv.stderr_text()), "the failed recipient is not logged")
            got = dv.mailbox("alice@example.test")
            t.check(len(got) == before + 1, "alice has %d messages, want %d" % (len(got), before + 1))

    # 4. Dovecot down: tempfail; Dovecot back: delivered (at the retry).
    retry_opt = has_retry_option()
    srv.args = ["--sink", "lmtp:unix:%s" % dv.sock] + (["--sink-retry-first", "1"] if retry_opt else [])
    dv.stop()
    with srv:
        c = Conn(srv.port)
        ehlo(t, c)
        before = len(dv.mailbox("alice@example.test"))
        _, qid = send_message(t, c, "ann@x.test", ["alice@example.test"], crlf("Subject: later\n\nwhile down\n"))
        c.cmd("QUIT")

        with t.case("dovecot_down_tempfail"):
            m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid, T_DELIVER)
            t.check(m, "no deliver.tempfail for %s:\n%s" % (qid, srv.stderr_tail()))
            t.check("connect:" in m.group(1), "reason %r does not say the connect failed" % m.group(1))
            t.check(qid in spool_ls(srv), "%s is not in the spool any more:\n%s" % (qid, spool_ls(srv)))

        with t.case("dovecot_back_delivered"):
            if not retry_opt:
                print("    note: no --sink-retry-first in this build; waiting for the built-in 30 s retry")
            dv.start()
            got = dv.wait_mailbox("alice@example.test", before + 1, T_DELIVER)
            t.check(len(got) == before + 1, "alice has %d messages after Dovecot came back, want %d\n%s"
                    % (len(got), before + 1, srv.stderr_tail()))
            t.check(content_of(t, got[-1], "alice")[1] == b"Subject: later\n\nwhile down\n", "content %r" % got[-1])


def garbage_server(path, stop):
    """garbage_server: a unix-socket 'LMTP server' that greets, then answers every command with nonsense."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(8)
    ls.settimeout(0.2)
    conns = []
    while not stop.is_set():
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        conns.append(c)
        try:
            c.sendall(b"220 fake ready\r\n")
            c.settimeout(5)
            if c.recv(4096):
                c.sendall(b"hello there, this is not a reply\r\n")
        except OSError:
            pass
    for c in conns:
        c.close()
    ls.close()


def run_garbage(t, tmp):
    path = os.path.join(tmp, "garbage.sock")
    stop = threading.Event()
    th = threading.Thread(target=garbage_server, args=(path, stop), daemon=True)
    th.start()
    own = os.path.join(tmp, "garbage")  # a spool of its own
    os.makedirs(own, exist_ok=True)
    srv = Server(sink=False, tmp=own)
    srv.args = ["--sink", "lmtp:unix:%s?timeout=5" % path]
    try:
        with srv:
            c = Conn(srv.port)
            ehlo(t, c)
            _, qid = send_message(t, c, "ann@x.test", ["alice@example.test"], crlf("Subject: g\n\nx\n"))
            c.cmd("QUIT")
            with t.case("garbage_answer_is_temporary"):
                m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid, T_DELIVER)
                t.check(m, "no deliver.tempfail for %s:\n%s" % (qid, srv.stderr_tail()))
                t.check("LHLO: unparseable reply" in m.group(1), "reason %r" % m.group(1))
                t.check(qid in spool_ls(srv), "%s left the spool" % qid)
    finally:
        stop.set()
        th.join()


def run_kill9(t, srv, dv):
    """Messages owed to a stopped Dovecot survive kill -9 of oceanmx; after both restart, each
    acknowledged message is delivered (at least once), compared by SHA-256 of its content."""
    srv.args = ["--sink", "lmtp:unix:%s" % dv.sock, "--sink-retry-first", "1"]
    dv.stop()
    before = len(dv.mailbox("bob@example.test"))
    with srv:
        c = Conn(srv.port)
        ehlo(t, c)
        sent = {}
        for i in range(20):
            m = crlf("From: ann@x.test\nSubject: crash %d\n\n%s\n" % (i, "z" * (i * 37)))
            _, q = send_message(t, c, "ann@x.test", ["bob@example.test"], m)
            sent[q] = hashlib.sha256(lf(m)).hexdigest()
        c.cmd("QUIT")
        with t.case("kill9_with_messages_owed_then_restart"):
            t.check(wait_log(srv, r"deliver\.tempfail", T_DELIVER), "no tempfail while Dovecot is down")
            srv.kill()
            dv.start()
            srv.start()
            got = dv.wait_mailbox("bob@example.test", before + len(sent), T_DELIVER)
            hashes = [hashlib.sha256(content_of(t, g, "bob")[1]).hexdigest() for g in got[before:]]
            missing = [q for q, h in sent.items() if h not in hashes]
            t.check(not missing, "%d of %d acknowledged messages not delivered: %r\n%s"
                    % (len(missing), len(sent), missing[:5], srv.stderr_tail()))


if __name__ == "__main__":
    run(main)
