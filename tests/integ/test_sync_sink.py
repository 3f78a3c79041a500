"""
test_sync_sink - "?sync=yes" sinks answer inside the SMTP transaction
(docs/sinks.md "Answering in the SMTP transaction"):

  - the stream sink as sync (a scripted consumer in this file deciding by the
    Subject) beside the maildir sink (async): OK -> 250 and in both;
    RETRY -> 451 4.3.0 with its text and never in the maildir; REJECT ->
    550 5.7.1 with the consumer's text (cleaned) and never in the maildir
    nor SPOOL/failed;
  - a consumer that does not answer: the client gets 421 at --timeout-commit,
    other sessions are served meanwhile, and the server goes on;
  - pipelined transactions on one connection: each its own answer, in order;
  - the exec sink as sync: exit 0 / 75 / 1 -> 250 / 451 / 550 with the first
    stderr line;
  - kill -9 while a sync answer is pending, restart: every message that got
    250 is in the maildir.
"""

import os
import re
import socket
import socketserver
import stat
import threading
import time

from lib import Conn, Server, T_DELIVER, crlf, dot_stuff, ehlo, run, scale, send_message

RETRY = ["--sink-retry-first", "1", "--sink-retry-max", "2", "--log-level", "info"]


class Consumer(socketserver.ThreadingUnixStreamServer):
    """Consumer is a stream-sink consumer on a unix socket that answers by the
    message's Subject: "ok" OK, "retry" RETRY, "reject" REJECT (with blanks
    to squeeze: the text is cleaned), "hang" nothing at all."""

    daemon_threads = True

    def __init__(self, path, hang=True):
        self.lock = threading.Lock()
        self.got = {}  # id -> subject
        self.hang = hang
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        srv = self.server
        try:
            while (head := self.rfile.readline()):
                _, mid, jlen, rlen = head.split()
                self.rfile.read(int(jlen))
                raw = self.rfile.read(int(rlen))
                self.rfile.read(1)
                m = re.search(rb"^Subject: (\w+)", raw, re.M)
                subj = m.group(1).decode() if m else ""
                with srv.lock:
                    srv.got[mid.decode()] = subj
                if subj == "retry":
                    self.wfile.write(b"RETRY " + mid + b" busy now, come back\n")
                elif subj == "reject":
                    self.wfile.write(b"REJECT " + mid + b" 5.1.1 no such   user\n")
                elif subj == "hang" and srv.hang:
                    continue
                else:
                    self.wfile.write(b"OK " + mid + b"\n")
        except (OSError, ValueError):
            return


def msg(subject, i=0):
    return crlf("From: <a@x.test>\nTo: <b@y.test>\nSubject: %s %d\n\nbody %d\n" % (subject, i, i))


def one(t, port, subject, i=0, want=250):
    c = Conn(port)
    ehlo(t, c)
    r, qid = send_message(t, c, "a@x.test", ["b@y.test"], msg(subject, i), want=want)
    c.cmd("QUIT")
    c.close()
    return r, qid


def wait_for(pred, timeout=T_DELIVER):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return None


def ids_in_log(srv, pattern):
    return set(re.findall(pattern, srv.stderr_text()))


def stream_cases(t, tmp):
    path = os.path.join(tmp, "c.sock")
    cons = Consumer(path)
    try:
        with Server("--sink", "unix:%s?sync=yes&timeout=%d" % (path, scale(3, 6)), "--timeout-commit",
                    str(scale(2, 4)), *RETRY) as srv:
            md = srv.maildir
            with t.case("ok_250_and_delivered_to_every_sink"):
                _, qid = one(t, srv.port, "ok")
                t.check(qid in cons.got, "the sync consumer did not have %s before the 250" % qid)
                t.check(md.wait_ids([qid])[qid], "%s not in the maildir" % qid)

            with t.case("retry_451_and_never_delivered"):
                r, _ = one(t, srv.port, "retry", want=451)
                t.check(r.enhanced == "4.3.0", "enhanced %r" % r.enhanced)
                t.check("busy now, come back" in r.text, "the consumer's text is not in %r" % r)
                rid = [k for k, v in cons.got.items() if v == "retry"]
                t.check(len(rid) == 1, "consumer saw %r" % cons.got)
                t.check(wait_for(lambda: rid[0] in srv.stderr_text() and "removed=yes" in srv.stderr_text(), 10),
                        "no deliver.sync removed log line")
                time.sleep(scale(1.5, 3))  # more than --sink-retry-first: a retry would have come
                t.check(not md.by_id(rid[0]), "%s reached the maildir after 451" % rid[0])
                t.check(not os.path.exists(os.path.join(srv.spool, "failed", rid[0])), "dead-lettered")
                t.check(list(cons.got.values()).count("retry") == 1, "asked again: %r" % cons.got)

            with t.case("reject_550_with_the_consumers_text"):
                r, _ = one(t, srv.port, "reject", want=550)
                t.check(r.enhanced == "5.7.1", "enhanced %r" % r.enhanced)
                # The consumer's own words, cleaned (tests/proto/test_reply.c has the hostile cases).
                t.check(r.lines == ["5.7.1 Rejected: 5.1.1 no such user"], "reply %r" % r)
                rid = [k for k, v in cons.got.items() if v == "reject"][0]
                time.sleep(scale(1.5, 3))
                t.check(not md.by_id(rid), "%s reached the maildir after 550" % rid)
                t.check(not os.path.exists(os.path.join(srv.spool, "failed", rid)), "dead-lettered after 550")

            with t.case("no_answer_421_at_timeout_commit_and_others_served"):
                c = Conn(srv.port)
                ehlo(t, c)
                t0 = time.monotonic()
                t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
                t.expect(c.cmd("RCPT TO:<b@y.test>"), 250, c)
                t.expect(c.cmd("DATA"), 354, c)
                c.send_quiet(dot_stuff(msg("hang")) + b".\r\n", "message")
                # Meanwhile another session is served (the shard never waits).
                c2 = Conn(srv.port)
                ehlo(t, c2)
                t.expect(c2.cmd("NOOP"), 250, c2)
                c2.cmd("QUIT")
                c2.close()
                r = c.reply()
                dt = time.monotonic() - t0
                t.expect(r, (421, 451), c, "end of data with a silent consumer")
                t.check(dt >= scale(2, 4) - 0.5, "answered after %.1fs, before --timeout-commit" % dt)
                c.close()
                # The consumer's silence ends at the sink's timeout; then mail flows again.
                _, qid = one(t, srv.port, "ok", 7)
                t.check(md.wait_ids([qid])[qid], "%s not in the maildir" % qid)

            with t.case("pipelined_each_its_own_answer_in_order"):
                c = Conn(srv.port)
                ehlo(t, c)
                batch = b""
                for i, subj in enumerate(("ok", "reject", "retry", "ok")):
                    batch += b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
                    batch += dot_stuff(msg(subj, 100 + i)) + b".\r\n"
                c.send(batch)
                codes = []
                for _ in range(4):
                    codes += [c.reply().code for _ in range(4)]
                t.check(codes == [250, 250, 354, 250, 250, 250, 354, 550, 250, 250, 354, 451, 250, 250, 354, 250],
                        "replies %r" % codes, c)
                c.cmd("QUIT")
                c.close()
            t.check(srv.running(), "server died")
    finally:
        cons.stop()


def exec_cases(t, tmp):
    sc = os.path.join(tmp, "decide.sh")
    with open(sc, "w") as f:
        f.write("#!/bin/sh\n"
                "s=$(grep -m1 '^Subject:' | tr -d '\\r')\n"
                "case \"$s\" in\n"
                "  *retry*) echo 'queue full' >&2; exit 75 ;;\n"
                "  *reject*) printf 'no such user here\\nsecond line\\n' >&2; exit 1 ;;\n"
                "esac\nexit 0\n")
    os.chmod(sc, stat.S_IRWXU)
    with Server("--sink", "exec:%s?sync=yes&timeout=10" % sc, *RETRY) as srv:
        with t.case("exec_sync_ok_retry_reject"):
            _, qid = one(t, srv.port, "ok")
            t.check(srv.maildir.wait_ids([qid])[qid], "%s not in the maildir" % qid)
            r, _ = one(t, srv.port, "retry", want=451)
            t.check(r.enhanced == "4.3.0", "%r" % r)
            r, _ = one(t, srv.port, "reject", want=550)
            t.check(r.enhanced == "5.7.1" and r.text.endswith("Rejected: no such user here"), "%r" % r)
            time.sleep(scale(1.5, 3))
            t.check(srv.maildir.count() == 1, "maildir has %d messages, want 1" % srv.maildir.count())


def crash_case(t, tmp):
    path = os.path.join(tmp, "k.sock")
    cons = Consumer(path)
    srv = Server("--sink", "unix:%s?sync=yes&timeout=60" % path, "--timeout-commit", "60", *RETRY)
    try:
        with t.case("kill9_while_a_sync_answer_is_pending"):
            srv.start()
            acked = [one(t, srv.port, "ok", i)[1] for i in range(5)]
            c = Conn(srv.port)
            ehlo(t, c)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<b@y.test>"), 250, c)
            t.expect(c.cmd("DATA"), 354, c)
            c.send_quiet(dot_stuff(msg("hang")) + b".\r\n", "message")
            t.check(wait_for(lambda: "hang" in cons.got.values(), 20), "the consumer never got the message")
            srv.kill()
            c.close()
            cons.hang = False  # after the restart it answers OK to everything
            srv.start()
            got = srv.maildir.wait_ids(acked)
            lost = [q for q in acked if not got[q]]
            t.check(not lost, "acknowledged, then lost after kill -9: %r" % lost)
            srv.stop()
    finally:
        srv.kill()
        srv.cleanup()
        cons.stop()


def main(t):
    tmp = os.environ.get("TMPDIR", "/tmp")
    d = os.path.join(tmp, "omx-sync-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)
    try:
        stream_cases(t, d)
        exec_cases(t, d)
        crash_case(t, d)
    finally:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
        os.rmdir(d)


run(main)
