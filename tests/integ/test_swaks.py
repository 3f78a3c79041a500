"""
test_swaks - swaks (Debian package swaks) against the live server: a plain
message with exact content (--data @file), --pipeline, and a MIME message with
a binary attachment. swaks prints what it sends (" -> ") and receives ("<- ");
the content swaks reports sending (dot-unstuffed) must be byte-identical to
the maildir file's content, and the attachment must decode to the same bytes.
"""

import email
import email.policy
import os
import re
import subprocess

from lib import Server, T_IO, check_delivered, require_tool, run

SWAKS = "/usr/bin/swaks"


def swaks(t, srv, *args):
    cmd = [SWAKS, "--server", "127.0.0.1", "--port", str(srv.port), "--helo", "client.test",
           "--timeout", str(int(T_IO))] + list(args)
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=T_IO * 3)
    out = p.stdout.decode("utf-8", "replace")
    return p.returncode, out


def sent_content(out):
    """sent_content rebuilds the DATA content swaks sent from its transcript."""
    lines = out.splitlines()
    try:
        i = next(k for k, l in enumerate(lines) if l.startswith("<-  354"))
    except StopIteration:
        return None
    body = []
    for l in lines[i + 1:]:
        if l.startswith(" -> ") or l == " ->":
            s = l[4:]
            if s == ".":
                return b"".join(body)
            if s.startswith("."):
                s = s[1:]  # undo swaks' dot-stuffing
            body.append(s.encode("utf-8") + b"\r\n")
        elif l.startswith("<-"):
            break
    return None


def final_reply(out):
    """final_reply: the reply line after the end-of-data dot."""
    lines = out.splitlines()
    for k, l in enumerate(lines):
        if l == " -> .":
            for m in lines[k + 1:]:
                if m.startswith("<-") or m.startswith("<**"):
                    return m
    return ""


def main(t):
    require_tool(SWAKS, "swaks")
    with Server("--domains", "y.test") as srv:
        md = srv.maildir

        def check_run(rc, out, rcpts, pipelined=False):
            t.check(rc == 0, "swaks exited %d:\n%s" % (rc, out))
            fin = final_reply(out)
            m = re.match(r"<-  250 2\.0\.0 .*queued as <?([A-Za-z0-9._+-]+)>?", fin)
            t.check(m, "end-of-data reply %r, want 250 2.0.0 ... queued as ID\n%s" % (fin, out))
            if pipelined:
                t.check(re.search(r" -> MAIL FROM:.*\n -> RCPT TO:.*\n", out),
                        "swaks did not pipeline MAIL/RCPT (PIPELINING not advertised?):\n" + out)
            content = sent_content(out)
            t.check(content, "cannot find the DATA content in swaks' transcript:\n" + out)
            return check_delivered(t, md, m.group(1), "a@x.test", rcpts, content)

        with t.case("plain_exact_data"):
            path = os.path.join(srv.tmp, "data.txt")
            with open(path, "wb") as f:
                f.write(b"From: a@x.test\r\nTo: b@y.test\r\nSubject: swaks exact\r\n\r\n"
                        b".leading dot\r\n..two dots\r\nplain line\r\n")
            rc, out = swaks(t, srv, "--from", "a@x.test", "--to", "b@y.test", "--data", "@" + path)
            d = check_run(rc, out, ["b@y.test"])
            t.check(b"\r\n.leading dot\r\n..two dots\r\n" in d.content, "dot-unstuffing: %r" % d.content)

        with t.case("default_message"):
            rc, out = swaks(t, srv, "--from", "a@x.test", "--to", "b@y.test,c@y.test")
            check_run(rc, out, ["b@y.test", "c@y.test"])

        with t.case("pipeline"):
            rc, out = swaks(t, srv, "--pipeline", "--from", "a@x.test", "--to", "b@y.test,c@y.test,d@y.test",
                            "--header", "Subject: swaks pipelined")
            check_run(rc, out, ["b@y.test", "c@y.test", "d@y.test"], pipelined=True)

        with t.case("attachment"):
            blob = bytes((i * 7 + 3) % 256 for i in range(50000))
            path = os.path.join(srv.tmp, "blob.bin")
            with open(path, "wb") as f:
                f.write(blob)
            rc, out = swaks(t, srv, "--from", "a@x.test", "--to", "b@y.test", "--header", "Subject: attachment",
                            "--body", "see the attachment", "--attach-type", "application/octet-stream",
                            "--attach-name", "blob.bin", "--attach", "@" + path)
            d = check_run(rc, out, ["b@y.test"])
            m = email.message_from_bytes(d.content, policy=email.policy.default)
            parts = [p for p in m.iter_attachments()]
            t.check(len(parts) == 1, "want one attachment, found %d" % len(parts))
            got = parts[0].get_payload(decode=True)
            t.check(got == blob, "attachment differs: %d bytes stored vs %d sent" % (len(got or b""), len(blob)))
            t.check(parts[0].get_filename() == "blob.bin", "attachment name %r" % parts[0].get_filename())

        with t.case("rejected_recipient_exit_24"):
            # --domains y.test: z.test is refused with 550 5.7.1, swaks exits 24 (no RCPT accepted).
            rc, out = swaks(t, srv, "--from", "a@x.test", "--to", "b@z.test")
            t.check(rc == 24, "swaks exit %d, want 24 (no RCPTs accepted):\n%s" % (rc, out))
            t.check(re.search(r"<\*\* +550 5\.7\.1", out), "no '550 5.7.1' in swaks' transcript:\n" + out)

if __name__ == "__main__":
    run(main)
