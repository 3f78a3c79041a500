"""
test_plugin_sink - the plugin: sink with the example SQLite plugin
(sinks/examples/sqlite_plugin.c, built as build/sqlite_plugin.so): messages
sent over SMTP are read back from the database with Python's sqlite3 and
compared with what was sent (envelope, subject, header addresses, text,
attachments' names, sizes and SHA-256). A plugin that cannot be loaded or
whose init fails stops the start-up with a clear error, and check-config
catches the load error too.
"""

import base64
import hashlib
import os
import re
import sqlite3
import subprocess
import time

from lib import Conn, Server, Skip, T_DELIVER, crlf, ehlo, omx_bin, run, send_message


def plugin_path():
    p = os.environ.get("OMX_PLUGIN") or os.path.join(os.path.dirname(omx_bin()), "sqlite_plugin.so")
    if not os.path.exists(p):
        raise Skip("%s not built (Debian package libsqlite3-dev, then rebuild)" % p)
    return p


def queued(srv):
    r = subprocess.run([omx_bin(), "spool", "stats", "--spool", srv.spool], capture_output=True, text=True, timeout=60)
    m = re.search(r"^queued (\d+)$", r.stdout, re.M)
    return int(m.group(1)) if m else -1


def b64(b):
    s = base64.b64encode(b).decode()
    return "\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def mime_message(att1, att2):
    return crlf(
        "From: Ann Example <ann@x.test>\nTo: Bob <bob@y.test>, carl@y.test\nCc: dan@z.test\n"
        "Subject: =?utf-8?q?caf=C3=A9?= report\nMessage-ID: <p1@x.test>\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"BB\"\n\n"
        "--BB\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
        "Gr=FC=DFe aus der Datenbank\n"
        "--BB\nContent-Type: application/pdf; name=\"report.pdf\"\n"
        "Content-Disposition: attachment; filename=\"report.pdf\"\nContent-Transfer-Encoding: base64\n\n"
        + b64(att1) + "\n"
        "--BB\nContent-Type: image/png\n"
        "Content-Disposition: attachment; filename*=utf-8''gr%C3%BC%C3%9F.png\nContent-Transfer-Encoding: base64\n\n"
        + b64(att2) + "\n--BB--\n")


def query(db, sql, *args):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_rows(db, n, timeout=T_DELIVER):
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        try:
            got = query(db, "SELECT count(*) FROM messages")[0][0]
        except sqlite3.Error:
            got = 0
        if got >= n:
            return got
        time.sleep(0.05)
    return got


def main(t):
    so = plugin_path()
    srv = Server(sink=False)
    db = os.path.join(srv.tmp, "mail.db")
    srv.args = ["--sink", "plugin:%s?%s" % (so, db)]
    att1, att2 = os.urandom(3000), os.urandom(70000)
    with srv:
        c = Conn(srv.port)
        ehlo(t, c)
        _, q1 = send_message(t, c, "ann@x.test", ["bob@y.test", "carl@y.test"], mime_message(att1, att2))
        _, q2 = send_message(t, c, "", ["bob@y.test"], crlf("From: daemon@x.test\nSubject: plain\n\njust text\n"))
        c.cmd("QUIT")

        with t.case("rows_written"):
            got = wait_rows(db, 2)
            t.check(got == 2, "%d rows in messages, want 2\n%s" % (got, srv.stderr_tail()))

        with t.case("envelope_subject_text"):
            rows = query(db, "SELECT id, client_ip, helo, mail_from, subject, text, dkim, spf, dmarc, size "
                             "FROM messages ORDER BY received_us")
            (i1, ip, helo, mf, subj, text, dkim, spf, dmarc, size), r2 = rows
            t.check(i1 == q1 and r2[0] == q2, "ids %r, want %s, %s" % ([r[0] for r in rows], q1, q2))
            t.check(ip == "127.0.0.1" and helo == "client.test" and mf == "ann@x.test", "envelope %r" % (rows[0],))
            t.check(subj == "caf\u00e9 report", "subject %r" % subj)
            t.check(text.replace("\r\n", "\n").strip() == "Gr\u00fc\u00dfe aus der Datenbank", "text %r" % text)
            t.check(dkim == "none", "dkim %r for an unsigned message" % dkim)
            t.check(spf and dmarc, "spf %r dmarc %r" % (spf, dmarc))
            sent = len(mime_message(att1, att2))
            t.check(sent < size < sent + 512, "size %d, want the %d bytes sent + our Received: field" % (size, sent))
            t.check(r2[3] == "" and r2[4] == "plain" and r2[5].strip() == "just text", "second message %r" % (r2,))

        with t.case("recipients_and_addresses"):
            rc = query(db, "SELECT rcpt FROM recipients WHERE message_id = ? ORDER BY pos", q1)
            t.check([r[0] for r in rc] == ["bob@y.test", "carl@y.test"], "recipients %r" % rc)
            ad = query(db, "SELECT field, name, email FROM addresses WHERE message_id = ? ORDER BY rowid", q1)
            want = [("from", "Ann Example", "ann@x.test"), ("to", "Bob", "bob@y.test"), ("to", "", "carl@y.test"),
                    ("cc", "", "dan@z.test")]
            t.check(ad == want, "addresses %r, want %r" % (ad, want))

        with t.case("attachments_names_types_hashes"):
            at = query(db, "SELECT filename, content_type, size, sha256 FROM attachments WHERE message_id = ? "
                           "ORDER BY rowid", q1)
            want = [("report.pdf", "application/pdf", len(att1), hashlib.sha256(att1).hexdigest()),
                    ("gr\u00fc\u00df.png", "image/png", len(att2), hashlib.sha256(att2).hexdigest())]
            t.check(at == want, "attachments %r, want %r" % (at, want))
            t.check(query(db, "SELECT count(*) FROM attachments WHERE message_id = ?", q2)[0][0] == 0,
                    "attachments for the plain message")

        with t.case("spool_empty"):
            deadline = time.monotonic() + T_DELIVER
            while queued(srv) != 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            t.check(queued(srv) == 0, "oceanmx spool stats: %d queued" % queued(srv))

    # kill -9 while the plugin waits on a locked database, then restart: every
    # acknowledged message is in the database exactly once (rows keyed by id).
    srv2 = Server(sink=False)
    db2 = os.path.join(srv2.tmp, "mail.db")
    srv2.args = ["--sink", "plugin:%s?%s" % (so, db2), "--sink-retry-first", "1"]
    n = 40
    with srv2:
        lock = None
        try:
            with t.case("kill9_mid_delivery_then_restart"):
                deadline = time.monotonic() + T_DELIVER
                while not os.path.exists(db2) and time.monotonic() < deadline:
                    time.sleep(0.05)
                lock = sqlite3.connect(db2, timeout=30)
                lock.execute("BEGIN IMMEDIATE")  # the plugin's writes now wait (busy_timeout)
                c = Conn(srv2.port)
                ehlo(t, c)
                acked = {}
                for i in range(n):
                    body = crlf("From: ann@x.test\nSubject: crash %d\n\nbody %d\n" % (i, i))
                    _, q = send_message(t, c, "ann@x.test", ["bob@y.test"], body)
                    acked[q] = i
                c.cmd("QUIT")
                time.sleep(0.5)
                srv2.kill()
                lock.rollback()
                lock.close()
                lock = None
                t.check(wait_rows(db2, 0, 0) == 0, "rows written through the lock?")
                srv2.start()
                got = wait_rows(db2, n)
                t.check(got == n, "%d rows after the restart, want %d\n%s" % (got, n, srv2.stderr_tail()))
                ids = {r[0]: r[1] for r in query(db2, "SELECT id, subject FROM messages")}
                t.check(set(ids) == set(acked), "ids differ: missing %r, extra %r"
                        % (sorted(set(acked) - set(ids))[:5], sorted(set(ids) - set(acked))[:5]))
                t.check(all(ids[q] == "crash %d" % i for q, i in acked.items()), "subjects do not match their ids")
                t.check(query(db2, "SELECT count(*) FROM recipients")[0][0] == n, "recipients duplicated")
        finally:
            if lock is not None:
                lock.close()

    with t.case("load_error_is_a_config_error"):
        for spec, want in (("plugin:/nonexistent/x.so", "cannot load"),
                           ("plugin:" + so.replace("sqlite_plugin.so", "test_plugin_badabi.so"), "ABI")):
            if "badabi" in spec and not os.path.exists(spec[len("plugin:"):]):
                continue
            r = subprocess.run([omx_bin(), "check-config", "--sink", spec], capture_output=True, text=True, timeout=60)
            t.check(r.returncode != 0 and want in r.stderr, "check-config %s: status %d, stderr %r"
                    % (spec, r.returncode, r.stderr))
            r = subprocess.run([omx_bin(), "serve", "--listen", "127.0.0.1:0", "--spool", os.path.join(srv.tmp, "s2"),
                                "--sink", spec], capture_output=True, text=True, timeout=60)
            t.check(r.returncode != 0 and want in r.stderr, "serve %s: status %d, stderr %r"
                    % (spec, r.returncode, r.stderr))

    with t.case("init_failure_stops_startup"):
        r = subprocess.run([omx_bin(), "serve", "--listen", "127.0.0.1:0", "--spool", os.path.join(srv.tmp, "s3"),
                            "--sink", "plugin:" + so], capture_output=True, text=True, timeout=60)
        t.check(r.returncode != 0 and "usage: plugin:sqlite_plugin.so?DATABASE_FILE" in r.stderr,
                "serve: status %d, stderr %r" % (r.returncode, r.stderr))
    srv.cleanup()
    srv2.cleanup()


if __name__ == "__main__":
    run(main)
