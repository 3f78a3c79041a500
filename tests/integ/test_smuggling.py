"""
test_smuggling - SMTP smuggling (CVE-2023-51764/51765/51766) against the live
server, from corpora/smtp-smuggling (see its SOURCE.md and expected.tsv).

For every variant: send sessions/commands.txt one command at a time, then the
variant's .data.bin in ONE write, then QUIT; read every reply until close.

NOT-EOD rows (the fake end-of-data must not end DATA):
  - exactly one reply between the data and QUIT's 221 (the end-of-data reply
    of the one message), or a 421/5xx followed by close;
  - never a 354 (the smuggled "data" was never a command), never a second 250;
  - with the default --bare-lf reject, rows with a bare CR/LF get 550 5.5.2 and
    nothing is delivered; rows with only NUL may be accepted (250) and then the
    ONE stored message contains the smuggled lines as text;
  - no maildir file with Return-Path <smuggled@sender.example>, ever.
ENDS-DATA rows (a genuine CRLF.CRLF is inside the bytes): DATA ends there; the
text after it is the client's own pipelined input (not smuggling at this hop);
checked: the first end-of-data reply is the first reply, and no delivered
message holds bytes after the genuine terminator.
The same NOT-EOD replay is repeated with --bare-lf normalise, where every
variant must yield exactly one 250 and one stored message from test@.
"""

import os

from lib import Conn, Server, Skip, T_DELIVER, corpora_dir, parse_queue_id, run

SMUGGLED = "smuggled@sender.example"


def load():
    root = os.path.join(corpora_dir(), "smtp-smuggling")
    if not os.path.isfile(os.path.join(root, "expected.tsv")):
        raise Skip("corpus %s not found (set OMX_CORPORA)" % root)
    rows = []
    with open(os.path.join(root, "expected.tsv")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            vid, hexs, exp = line.rstrip("\n").split("\t")[:3]
            rows.append((vid, bytes.fromhex(hexs), exp))
    with open(os.path.join(root, "sessions", "commands.txt")) as f:
        cmds = [l.rstrip("\r\n") for l in f if l.strip()]
    aiosmtpd_cmds = ["HELO example.com", "MAIL FROM:<sender@example.com>", "RCPT TO:<rcpt1@example.com>", "DATA"]
    out = []
    for vid, seq, exp in rows:
        with open(os.path.join(root, "sessions", vid + ".data.bin"), "rb") as f:
            data = f.read()
        out.append((vid, seq, exp, aiosmtpd_cmds if vid.startswith("aiosmtpd") else cmds, data))
    if len(out) < 18:
        raise Skip("corpus incomplete: %d rows in expected.tsv" % len(out))
    return out


def replay(t, srv, cmds, data):
    c = Conn(srv.port)
    t.expect(c.greeting, 220, c, "greeting")
    for cmd, want in zip(cmds, (250, 250, 250, 354)):
        t.expect(c.cmd(cmd), want, c, cmd)
    c.send_quiet(data, "variant data")
    c.transcript.append("C: (variant data was) " + repr(data)[2:-1][:2000])
    c.send("QUIT\r\n")
    got = c.replies_until_close()
    return c, got


def has_bare(seq):
    s = seq.replace(b"\r\n", b"")
    return b"\r" in s or b"\n" in s


def main(t):
    rows = load()
    with Server() as srv:
        md = srv.maildir
        acked = []  # queue ids from 250 replies, with the row
        for vid, seq, exp, cmds, data in rows:
            with t.case("reject/" + vid):
                c, got = replay(t, srv, cmds, data)
                codes = [r.code for r in got]
                print("  note: reject/%s (%s): replies %s" % (vid, exp, " ".join(str(x) for x in codes)))
                if exp == "NOT-EOD":
                    t.check(354 not in codes, "a second 354: the smuggled DATA was taken as a command: %r" % got, c)
                    # One end-of-data reply, then 221 to our QUIT (or a 421/5xx and close).
                    ok = (len(got) == 2 and got[1].code == 221) or (len(got) == 1 and got[0].code in (421, 521, 554))
                    t.check(ok, "want exactly one end-of-data reply then 221 (or 421/5xx and close), got %r" % got, c)
                    t.check(codes.count(250) <= 1, "more than one 250: %r" % got, c)
                    if has_bare(seq) or vid.startswith("aiosmtpd"):
                        t.check(got[0].code == 550 and got[0].enhanced == "5.5.2",
                                "bare CR/LF in DATA with the default --bare-lf reject: want 550 5.5.2, got %r" % got[0],
                                c)
                    if got[0].code == 250:
                        acked.append((parse_queue_id(got[0]), vid, "one"))
                else:  # ENDS-DATA: the genuine CRLF.CRLF ends the message
                    t.check(got and got[0].code in (250, 550, 554), "first reply should end DATA: %r" % got, c)
                    t.check(got[-1].code in (221, 421), "session did not end with 221/421: %r" % got, c)
                    if got[0].code == 250:
                        acked.append((parse_queue_id(got[0]), vid, "first"))
                    for r in got[1:]:
                        if r.code == 250 and parse_queue_id(r):
                            acked.append((parse_queue_id(r), vid, "client-own"))

        with t.case("reject/maildir"):
            ids = [a[0] for a in acked]
            t.check(all(ids), "250 without a queue id: %r" % acked)
            found = md.wait_ids(ids, T_DELIVER)
            for qid, vid, kind in acked:
                t.check(found[qid], "%s: 250'd message %s not delivered" % (vid, qid))
                for d in found[qid]:
                    t.check(d.error is None, "%s: %s" % (d.name, d.error))
                    if kind == "one":
                        t.check(d.return_path == "test@sender.example",
                                "%s: message has Return-Path <%s>" % (vid, d.return_path))
                        t.check(b"SMUGGLED EMAIL" in d.content and b"mail FROM:<smuggled@" in d.content,
                                "%s: the accepted message does not hold the smuggled lines as text" % vid)
                    if kind == "first":
                        t.check(b"SMUGGLED EMAIL" not in d.content,
                                "%s: bytes after the genuine CRLF.CRLF ended up in the first message" % vid)
            # Only an ENDS-DATA row's own pipelined second transaction may come from smuggled@.
            own = [q for q, v, k in acked if k == "client-own"]
            for d in md.read_all():
                t.check(d.return_path != SMUGGLED or any(q in d.name for q in own),
                        "a message from <%s> was delivered that no ENDS-DATA row sent as its own: %s"
                        % (SMUGGLED, d.name))

    with Server("--bare-lf", "normalise") as srv:
        md = srv.maildir
        acked = []
        for vid, seq, exp, cmds, data in rows:
            if exp != "NOT-EOD":
                continue
            with t.case("normalise/" + vid):
                c, got = replay(t, srv, cmds, data)
                codes = [r.code for r in got]
                print("  note: normalise/%s: replies %s" % (vid, " ".join(str(x) for x in codes)))
                t.check(354 not in codes, "a second 354: the smuggled DATA was taken as a command: %r" % got, c)
                t.check(len(got) == 2 and got[1].code == 221,
                        "want one end-of-data reply and 221, got %r" % got, c)
                if b"\x00" not in data:
                    t.check(got[0].code == 250, "--bare-lf normalise: want 250 for one message, got %r" % got[0], c)
                if got[0].code == 250:
                    acked.append((parse_queue_id(got[0]), vid))
        with t.case("normalise/maildir"):
            found = md.wait_ids([a[0] for a in acked], T_DELIVER)
            for qid, vid in acked:
                t.check(len(found[qid]) >= 1, "%s: 250'd message %s not delivered" % (vid, qid))
                for d in found[qid]:
                    t.check(d.return_path in ("test@sender.example", "sender@example.com"),
                            "%s: Return-Path <%s>" % (vid, d.return_path))
                    t.check(b"SMUGGL" in d.content or b"NO SMUGGLING" in d.content,
                            "%s: smuggled text missing from the one message" % vid)
                    body = d.content
                    t.check(b"\n" not in body.replace(b"\r\n", b""),
                            "%s: a bare LF was stored despite --bare-lf normalise" % vid)
                    t.check(b"\r" not in body.replace(b"\r\n", b""),
                            "%s: a bare CR was stored despite --bare-lf normalise" % vid)
            for d in md.read_all():
                t.check(d.return_path != SMUGGLED, "a message from <%s> was delivered: %s" % (SMUGGLED, d.name))


if __name__ == "__main__":
    run(main)
