"""
test_stream_sink - the stream sink (unix:PATH, tcp:HOST:PORT) end to end,
alone (no maildir sink), against the example consumer
sinks/examples/stream_consumer.py run as a subprocess (it stores DIR/ID.json
and DIR/ID.eml durably and drops duplicates by id) and against consumers in
this file that answer REJECT, garbage, or late (to watch the window):

  - normal flow on unix and tcp: every message byte-exact (our trace fields,
    then exactly the client's bytes) and its JSON document parsed;
  - the consumer down at start, then up: everything arrives;
  - the consumer killed mid-stream and restarted: everything arrives;
  - kill -9 of oceanmx mid-delivery, restart: every acknowledged message
    delivered at least once, compared by SHA-256 of the raw bytes;
  - REJECT: the message lands in SPOOL/failed, the reason in the log;
  - a consumer answering garbage: the connection is closed and logged, the
    messages arrive after the retry;
  - window=1 (never two unanswered) and window=1000 (many).
The server retries after 1 s (--sink-retry-first 1 --sink-retry-max 2).
"""

import hashlib
import json
import os
import re
import select
import signal
import socket
import socketserver
import subprocess
import threading
import time

from lib import (Conn, Server, T_DELIVER, T_IO, crlf, dot_stuff, ehlo, free_port, parse_queue_id, run, scale,
                 send_message)

HERE = os.path.dirname(os.path.abspath(__file__))
CONSUMER = os.path.join(HERE, "..", "..", "sinks", "examples", "stream_consumer.py")
RETRY = ["--sink-retry-first", "1", "--sink-retry-max", "2", "--log-level", "info"]


# ---------------------------------------------------------------- consumers


class Example:
    """Example runs the example consumer on ADDR, storing into DIR."""

    def __init__(self, addr, outdir):
        self.addr, self.outdir, self.proc = addr, outdir, None
        os.makedirs(outdir, exist_ok=True)

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", CONSUMER, self.addr, self.outdir],
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + T_IO
        while time.monotonic() < deadline:
            if self.ready():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("the example consumer exited with %s" % self.proc.returncode)
            time.sleep(0.02)
        raise RuntimeError("the example consumer is not listening on %s" % self.addr)

    def ready(self):
        kind, _, where = self.addr.partition(":")
        s = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET)
        try:
            if kind == "unix":
                s.connect(where)
            else:
                host, _, port = where.rpartition(":")
                s.connect((host, int(port)))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stored(self):
        return {n[:-4] for n in os.listdir(self.outdir) if n.endswith(".eml")}

    def wait(self, qids, timeout=T_DELIVER):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = set(qids) - self.stored()
            if not missing:
                return set()
            time.sleep(0.05)
        return set(qids) - self.stored()


class Scripted(socketserver.ThreadingUnixStreamServer):
    """Scripted is a consumer in this process on a unix socket: answer(conn_no, id, raw)
    gives the answer line (bytes) or None to hang up; with `late`, answers wait until
    no more message arrives for 50 ms (so the unanswered count shows the window)."""

    daemon_threads = True

    def __init__(self, path, answer, late=False):
        self.answer, self.late = answer, late
        self.lock = threading.Lock()
        self.conns = 0
        self.got = {}            # id -> raw bytes
        self.max_unanswered = 0
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, ScriptedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class ScriptedHandler(socketserver.BaseRequestHandler):
    def handle(self):
        srv, sock = self.server, self.request
        with srv.lock:
            srv.conns += 1
            n = srv.conns
        buf, pending = b"", []
        while True:
            m = re.match(rb"MSG (\S+) (\d+) (\d+)\n", buf)
            if m and len(buf) >= m.end() + int(m.group(2)) + int(m.group(3)) + 1:
                end = m.end() + int(m.group(2)) + int(m.group(3))
                mid, raw, buf = m.group(1).decode(), buf[m.end() + int(m.group(2)):end], buf[end + 1:]
                with srv.lock:
                    srv.got[mid] = raw
                a = srv.answer(n, mid, raw)
                if a is None:
                    return
                pending.append(a)
                srv.max_unanswered = max(srv.max_unanswered, len(pending))
                continue
            if pending and (not srv.late or not select.select([sock], [], [], 0.05)[0]):
                sock.sendall(b"".join(pending))  # at once, or late: after 50 ms without a message
                pending = []
                continue
            data = sock.recv(1 << 20)
            if not data:
                return
            buf += data


# ---------------------------------------------------------------- messages


def message(i, tag, size=0):
    body = "".join("line %d of message %d ..%s\n" % (k, i, "." * (k % 3)) for k in range(1 + i % 30))
    if size:
        body += ("x" * 76 + "\n") * (size // 77)
    return crlf("From: <s%d@x.test>\nTo: <r@y.test>\nSubject: %s %d\nMessage-ID: <%s-%d@x.test>\n\n.%s"
                % (i, tag, i, tag, i, body))


def send_many(t, port, tag, n, sizes=(0,), pipe=None):
    """send_many sends n messages over one connection; returns {qid: content}."""
    sent = {}
    c = Conn(port)
    ehlo(t, c)
    for i in range(n):
        content = message(i, tag, sizes[i % len(sizes)])
        _, qid = send_message(t, c, "s%d@x.test" % i, ["r@y.test"], content)
        sent[qid] = content
        if pipe is not None:
            pipe(qid, content)
    c.cmd("QUIT")
    c.close()
    return sent


TRACE = re.compile(rb"\A(Authentication-Results: mx\.test;[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)"
                   rb"(Received: from [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)\Z")


def check_stored(t, outdir, sent):
    """check_stored: each ID.eml is our A-R and Received fields then exactly the client's
    bytes; each ID.json is the document of that message."""
    for qid, content in sent.items():
        with open(os.path.join(outdir, qid + ".eml"), "rb") as f:
            raw = f.read()
        t.check(raw.endswith(content), "%s: the raw bytes do not end with what the client sent" % qid)
        t.check(TRACE.match(raw[:len(raw) - len(content)]),
                "%s: not exactly our trace fields before the client's bytes: %r" % (qid, raw[:400]))
        with open(os.path.join(outdir, qid + ".json"), "rb") as f:
            doc = json.loads(f.read())
        t.check(doc["schema"] == "oceanmx.message", "%s: schema %r" % (qid, doc.get("schema")))
        t.check(doc["envelope"]["id"] == qid, "%s: envelope id %r" % (qid, doc["envelope"]["id"]))
        t.check([r["email"] for r in doc["envelope"]["rcpt_to"]] == ["r@y.test"], "%s: rcpt_to" % qid)
        subj = re.search(rb"^Subject: (.*)\r$", content, re.M).group(1).decode()
        t.check(doc["subject"] == subj, "%s: subject %r want %r" % (qid, doc["subject"], subj))
        t.check(doc.get("auth"), "%s: no auth section: %r" % (qid, doc.get("auth")))


def wait_log(srv, pattern, timeout=T_DELIVER):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, srv.stderr_text())
        if m:
            return m
        time.sleep(0.05)
    return None


# ---------------------------------------------------------------- cases


def normal_flow(t, tmp, kind):
    out = os.path.join(tmp, "out-" + kind)
    addr = "unix:" + os.path.join(tmp, "c.sock") if kind == "unix" else "tcp:127.0.0.1:%d" % free_port()
    cons = Example(addr, out).start()
    opts = "" if kind == "unix" else "?connections=2"
    try:
        with Server("--sink", addr + opts, *RETRY, sink=False) as srv:
            with t.case("normal_flow_" + kind):
                sent = send_many(t, srv.port, kind, scale(40, 15), sizes=(0, 4096, 300000))
                missing = cons.wait(sent)
                t.check(not missing, "%d of %d messages not delivered: %s" % (len(missing), len(sent), sorted(missing)[:5]))
                check_stored(t, out, sent)
    finally:
        cons.kill()


def consumer_down_at_start(t, tmp):
    out = os.path.join(tmp, "out-down")
    addr = "unix:" + os.path.join(tmp, "down.sock")
    cons = Example(addr, out)
    try:
        with Server("--sink", addr + "?timeout=2", *RETRY, sink=False) as srv:
            with t.case("consumer_down_at_start_then_up"):
                sent = send_many(t, srv.port, "down", 10)
                t.check(wait_log(srv, r"stream\.connect sink=unix:\S+ conn=0 error=\"connect: No such file"),
                        "no log line for the failed connect")
                time.sleep(1)
                t.check(not os.path.exists(out) or not cons.stored(), "delivered with no consumer?")
                cons.start()
                missing = cons.wait(sent)
                t.check(not missing, "%d of %d not delivered once the consumer is up" % (len(missing), len(sent)))
                check_stored(t, out, sent)
    finally:
        cons.kill()


def consumer_killed_mid_stream(t, tmp):
    out = os.path.join(tmp, "out-kill")
    addr = "tcp:127.0.0.1:%d" % free_port()
    cons = Example(addr, out).start()
    try:
        with Server("--sink", addr + "?timeout=5", *RETRY, sink=False) as srv:
            with t.case("consumer_killed_mid_stream_and_restarted"):
                n = scale(300, 80)
                sent = {}
                killed = []

                def on_sent(qid, content):
                    sent[qid] = content
                    if not killed and len(cons.stored()) >= n // 4:
                        cons.kill()  # while messages stream to it
                        killed.append(len(cons.stored()))

                send_many(t, srv.port, "midkill", n, pipe=on_sent)
                # A slow (sanitized) server may still be streaming when the last
                # message is acknowledged: kill it then, as long as some are owed.
                deadline = time.monotonic() + T_DELIVER
                while not killed and time.monotonic() < deadline:
                    if len(cons.stored()) >= n // 4:
                        cons.kill()
                        killed.append(len(cons.stored()))
                    time.sleep(0.05)
                t.check(killed and killed[0] < n, "the consumer was never killed mid-stream (stored %d)"
                        % len(cons.stored()))
                cons.start()
                missing = cons.wait(sent)
                t.check(not missing, "%d of %d not delivered after the restart" % (len(missing), len(sent)))
                check_stored(t, out, sent)
                print("  note: consumer killed with %d stored; lost connections logged: %d" %
                      (killed[0], len(re.findall(r"stream\.lost", srv.stderr_text()))))
    finally:
        cons.kill()


def server_kill9(t, tmp):
    out = os.path.join(tmp, "out-kill9")
    addr = "unix:" + os.path.join(tmp, "k9.sock")
    cons = Example(addr, out).start()
    acked = {}
    try:
        srv = Server("--sink", addr, *RETRY, sink=False)
        with srv:
            with t.case("kill9_server_mid_delivery"):
                lock = threading.Lock()
                stop = threading.Event()

                def sender(w):
                    try:
                        c = Conn(srv.port)
                        ehlo(t, c)
                        i = 0
                        while not stop.is_set():
                            i += 1
                            content = message(w * 100000 + i, "k9")
                            c.send("MAIL FROM:<k@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n")
                            if [c.reply().code for _ in range(3)] != [250, 250, 354]:
                                return
                            c.send_quiet(dot_stuff(content) + b".\r\n", "content")
                            r = c.reply()
                            if r.code != 250:
                                return
                            with lock:
                                acked[parse_queue_id(r)] = content
                    except Exception:
                        return  # the server is gone

                ths = [threading.Thread(target=sender, args=(w,), daemon=True) for w in range(4)]
                for th in ths:
                    th.start()
                deadline = time.monotonic() + T_DELIVER
                while len(cons.stored()) < scale(100, 30) and time.monotonic() < deadline:
                    time.sleep(0.01)
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait()
                stop.set()
                for th in ths:
                    th.join(T_IO)
                with lock:
                    acked = dict(acked)
                undelivered = len(set(acked) - cons.stored())
                print("  note: kill -9 with %d acknowledged, %d of them not yet at the consumer" %
                      (len(acked), undelivered))
                t.check(undelivered > 0, "everything was delivered before the kill: nothing tested")
            with t.case("restart_delivers_every_acked_message"):
                srv.start()
                missing = cons.wait(acked)
                t.check(not missing, "%d of %d acknowledged messages missing after the restart" %
                        (len(missing), len(acked)))
                for qid, content in acked.items():
                    with open(os.path.join(out, qid + ".eml"), "rb") as f:
                        raw = f.read()
                    got = hashlib.sha256(raw[len(raw) - len(content):]).hexdigest()
                    t.check(got == hashlib.sha256(content).hexdigest(), "%s: SHA-256 of the raw bytes differs" % qid)
    finally:
        cons.kill()


def reject(t, tmp):
    path = os.path.join(tmp, "rej.sock")

    def answer(_, mid, raw):
        if b"Subject: reject" in raw:
            return ("REJECT %s 5.1.1 no such mailbox\n" % mid).encode()
        return ("OK %s\n" % mid).encode()

    cons = Scripted(path, answer)
    try:
        with Server("--sink", "unix:" + path, *RETRY, sink=False) as srv:
            with t.case("reject_goes_to_spool_failed_with_the_reason"):
                c = Conn(srv.port)
                ehlo(t, c)
                _, q_ok = send_message(t, c, "a@x.test", ["r@y.test"], crlf("Subject: keep\n\nhello\n"))
                _, q_rej = send_message(t, c, "a@x.test", ["r@y.test"], crlf("Subject: reject me\n\nhello\n"))
                c.cmd("QUIT")
                m = wait_log(srv, r"%s deliver\.permfail reason=\"([^\"]*)\"" % q_rej)
                t.check(m, "no deliver.permfail line for %s:\n%s" % (q_rej, srv.stderr_tail()))
                t.check(m.group(1) == "unix:%s: REJECT 5.1.1 no such mailbox" % path, "reason %r" % m.group(1))
                t.check(os.path.exists(os.path.join(srv.spool, "failed", q_rej)), "%s not in SPOOL/failed" % q_rej)
                t.check(wait_log(srv, r"%s deliver\.ok" % q_ok), "the other message was not delivered")
                t.check(not os.path.exists(os.path.join(srv.spool, "failed", q_ok)), "OK message in failed/")
    finally:
        cons.stop()


def garbage(t, tmp):
    path = os.path.join(tmp, "garbage.sock")

    def answer(conn_no, mid, raw):
        return b"HELLO THERE\n" if conn_no == 1 else ("OK %s\n" % mid).encode()

    cons = Scripted(path, answer)
    try:
        with Server("--sink", "unix:" + path, *RETRY, sink=False) as srv:
            with t.case("garbage_answer_closes_and_is_logged_then_retried"):
                sent = send_many(t, srv.port, "garbage", 5)
                t.check(wait_log(srv, r"stream\.bad_answer sink=unix:\S+ conn=0 error=\"unparseable answer\" "
                                      r"line=\"HELLO THERE\\x0a\""),
                        "no stream.bad_answer log line:\n%s" % srv.stderr_tail())
                for qid in sent:
                    t.check(wait_log(srv, r"%s deliver\.ok" % qid), "%s not delivered after the retry" % qid)
                t.check(cons.conns >= 2, "no reconnect after the garbage (%d connections)" % cons.conns)
                t.check(all(cons.got[q] .endswith(c) for q, c in sent.items()), "raw bytes differ")
    finally:
        cons.stop()


def windows(t, tmp):
    for window in (1, 1000):
        path = os.path.join(tmp, "w%d.sock" % window)
        cons = Scripted(path, lambda _, mid, raw: ("OK %s\n" % mid).encode(), late=True)
        try:
            with Server("--sink", "unix:%s?window=%d" % (path, window), *RETRY, sink=False) as srv:
                with t.case("window_%d" % window):
                    sent = {}
                    ths = []
                    lock = threading.Lock()

                    def one(w):
                        s = send_many(t, srv.port, "w%d-%d" % (window, w), scale(60, 20))
                        with lock:
                            sent.update(s)
                    for w in range(4):
                        ths.append(threading.Thread(target=one, args=(w,)))
                        ths[-1].start()
                    for th in ths:
                        th.join()
                    for qid in sent:
                        t.check(wait_log(srv, r"%s deliver\.ok" % qid), "%s not delivered" % qid)
                    t.check(all(cons.got[q].endswith(c) for q, c in sent.items()), "raw bytes differ")
                    print("  note: window=%d: at most %d messages unanswered" % (window, cons.max_unanswered))
                    if window == 1:
                        t.check(cons.max_unanswered == 1, "%d unanswered with window=1" % cons.max_unanswered)
                    else:
                        t.check(cons.max_unanswered > 1, "never more than one in flight with window=1000")
        finally:
            cons.stop()


def main(t):
    import tempfile
    tmp = tempfile.mkdtemp(prefix="omx-stream-")
    try:
        normal_flow(t, tmp, "unix")
        normal_flow(t, tmp, "tcp")
        consumer_down_at_start(t, tmp)
        consumer_killed_mid_stream(t, tmp)
        server_kill9(t, tmp)
        reject(t, tmp)
        garbage(t, tmp)
        windows(t, tmp)
    finally:
        if os.environ.get("OMX_KEEP_TMP", "") in ("", "0"):
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(main)
