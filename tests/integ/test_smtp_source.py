"""
test_smtp_source - Postfix's smtp-source (Debian package postfix) against the
live server: many parallel sessions, one message per connection and (-d) many
messages per connection. Every message must arrive, and byte for byte.

smtp-source's content is predictable but not fixed (Date: and Message-Id:
change), so the test first runs smtp-source with the same -l against a small
capture server of its own, learns the content template (header lines, the
variable ones, and the exact body), then checks each maildir file against it.
"""

import re
import socket
import subprocess
import threading

from lib import Server, T_DELIVER, T_IO, require_tool, run, scale

SMTP_SOURCE = "/usr/sbin/smtp-source"
LENGTH = 4096


class Capture:
    """Capture is a minimal SMTP server on 127.0.0.1 that records DATA contents."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.lock = threading.Lock()
        self.stop = False
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 capture ESMTP\r\n")
        data = None
        while True:
            line = f.readline()
            if not line:
                break
            if data is not None:
                if line == b".\r\n":
                    with self.lock:
                        self.messages.append(b"".join(data))
                    data = None
                    c.sendall(b"250 2.0.0 Ok\r\n")
                else:
                    data.append(line[1:] if line.startswith(b".") else line)
                continue
            u = line.upper()
            if u.startswith(b"EHLO"):
                c.sendall(b"250-capture\r\n250 PIPELINING\r\n")
            elif u.startswith(b"DATA"):
                data = []
                c.sendall(b"354 go\r\n")
            elif u.startswith(b"QUIT"):
                c.sendall(b"221 bye\r\n")
                break
            else:
                c.sendall(b"250 ok\r\n")
        c.close()

    def close(self):
        self.stop = True
        self.sock.close()


def split(content):
    i = content.find(b"\r\n\r\n")
    if i < 0:
        return None, None
    return content[:i + 2].split(b"\r\n")[:-1], content[i + 4:]


def learn_template(t):
    cap = Capture()
    try:
        p = subprocess.run([SMTP_SOURCE, "-s", "2", "-m", "4", "-l", str(LENGTH), "-M", "client.test",
                            "-f", "a@x.test", "-t", "b@y.test", "127.0.0.1:%d" % cap.port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=T_IO * 2)
        t.check(p.returncode == 0, "smtp-source against the capture server: exit %d %r" % (p.returncode, p.stdout))
    finally:
        cap.close()
    t.check(len(cap.messages) == 4, "capture server got %d messages, want 4" % len(cap.messages))
    heads = []
    body = None
    for m in cap.messages:
        h, b = split(m)
        t.check(h is not None, "captured message without a header/body separator: %r" % m[:200])
        if body is None:
            body = b
        t.check(b == body, "smtp-source bodies differ between messages; cannot check byte-exactly")
        heads.append(h)
    t.check(len({len(h) for h in heads}) == 1, "header counts differ: %r" % heads)
    template = []
    for i, line in enumerate(heads[0]):
        name = line.split(b":", 1)[0]
        if name.lower() in (b"date", b"message-id"):
            template.append((name, None))  # variable field: same name, any value
        else:
            t.check(all(h[i] == line for h in heads), "header line %d varies: %r" % (i, [h[i] for h in heads]))
            template.append((name, line))
    t.check(len(body) >= LENGTH, "captured body is %d octets, want >= %d" % (len(body), LENGTH))
    return template, body


def check_message(t, d, template, body):
    t.check(d.error is None, "%s: %s" % (d.name, d.error))
    t.check(d.return_path == "a@x.test" and d.rcpts == ["b@y.test"],
            "%s: envelope %r %r" % (d.name, d.return_path, d.rcpts))
    h, b = split(d.content)
    t.check(h is not None, "%s: no header/body separator" % d.name)
    t.check(b == body, "%s: body differs from smtp-source's (%d vs %d octets)" % (d.name, len(b), len(body)))
    t.check(len(h) == len(template), "%s: %d header lines, want %d: %r" % (d.name, len(h), len(template), h))
    for line, (name, exact) in zip(h, template):
        if exact is None:
            t.check(line.startswith(name + b": ") and re.match(rb"^[\x20-\x7e]+$", line),
                    "%s: header %r, want a %s field" % (d.name, line, name))
        else:
            t.check(line == exact, "%s: header %r, want %r" % (d.name, line, exact))
    mid = [l for l in h if l.lower().startswith(b"message-id:")]
    return mid[0] if mid else None


def source(t, srv, *args):
    p = subprocess.run([SMTP_SOURCE] + list(args) + ["-l", str(LENGTH), "-M", "client.test",
                                                     "-f", "a@x.test", "-t", "b@y.test",
                                                     "127.0.0.1:%d" % srv.port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=T_DELIVER * 3)
    t.check(p.returncode == 0, "smtp-source %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                                p.stdout.decode("utf-8", "replace")[-2000:]))


def main(t):
    require_tool(SMTP_SOURCE, "postfix")
    template, body = None, None
    with t.case("learn_template"):
        template, body = learn_template(t)
    if template is None:
        return
    n1 = scale(500, 100)
    n2 = scale(200, 50)
    with Server() as srv:
        md = srv.maildir
        with t.case("parallel_sessions_%d_messages" % n1):
            source(t, srv, "-s", "10", "-m", str(n1))
            got = md.wait_count(n1)
            t.check(got == n1, "%d messages in the maildir, want %d" % (got, n1))
            for d in md.read_all():
                check_message(t, d, template, body)
        with t.case("same_connection_%d_messages" % n2):
            before = set(md.files())
            source(t, srv, "-d", "-s", "4", "-m", str(n2))
            got = md.wait_count(n1 + n2)
            t.check(got == n1 + n2, "%d new messages in the maildir, want %d" % (got - len(before), n2))
            for d in md.read_all():
                if d.path not in before:
                    check_message(t, d, template, body)
        srv.stop()
        with t.case("no_duplicates_after_stop"):
            t.check(md.count() == n1 + n2, "%d files after shutdown, want %d" % (md.count(), n1 + n2))


if __name__ == "__main__":
    run(main)
