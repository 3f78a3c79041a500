"""
test_smtplib - Python smtplib (and raw sockets for what smtplib cannot do:
PIPELINING, BDAT) against the live server; every message is checked byte for
byte in the maildir, with Return-Path and Delivered-To matching the envelope.
"""

import smtplib

from lib import (Conn, Server, T_DELIVER, check_delivered, crlf, ehlo, parse_queue_id, run, scale,
                 send_message)

MAX_SIZE = 20 * 1024 * 1024


def msg(subject, body, extra=""):
    return crlf("From: a@x.test\nTo: b@y.test\nSubject: %s\nMessage-ID: <%s@x.test>\n%s\n%s" %
                (subject, subject.replace(" ", "-"), extra, body))


def smtplib_send(t, port, mail_from, rcpts, content, mail_options=(), helo=False):
    """smtplib_send sends with smtplib's own mail/rcpt/data and returns the queue id."""
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=60)
    try:
        if helo:
            code, _ = s.helo()
            t.check(code == 250, "HELO: %d" % code)
        else:
            code, _ = s.ehlo()
            t.check(code == 250, "EHLO: %d" % code)
        code, resp = s.mail(mail_from, list(mail_options))
        t.check(code == 250, "MAIL FROM:<%s> %s: %d %r" % (mail_from, mail_options, code, resp))
        for r in rcpts:
            code, resp = s.rcpt(r)
            t.check(code == 250, "RCPT TO:<%s>: %d %r" % (r, code, resp))
        code, resp = s.data(content)
        t.check(code == 250, "end of data: %d %r" % (code, resp))
        t.check(resp.decode().startswith("2.0.0"), "end of data without enhanced code 2.0.0: %r" % resp)
        qid = parse_queue_id(resp.decode("utf-8", "replace"))
        t.check(qid is not None, "no queue id in %r" % resp)
        s.quit()
        return qid
    finally:
        s.close()


def main(t):
    with Server("--max-message-size", str(MAX_SIZE), "--max-recipients", "100") as srv:
        md = srv.maildir
        port = srv.port

        with t.case("ehlo_extensions"):
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=60)
            code, _ = s.ehlo()
            t.check(code == 250, "EHLO %d" % code)
            for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking"):
                t.check(s.has_extn(ext), "EHLO does not advertise %s: %r" % (ext.upper(), s.esmtp_features))
            t.check(s.esmtp_features.get("size", "") == str(MAX_SIZE),
                    "SIZE advertises %r, want %d" % (s.esmtp_features.get("size"), MAX_SIZE))
            for ext in ("auth", "starttls"):
                t.check(not s.has_extn(ext), "EHLO advertises %s, which oceanmx does not offer" % ext.upper())
            s.quit()

        with t.case("plain_message"):
            content = msg("plain", "Hello, world.\nSecond line.\n")
            qid = smtplib_send(t, port, "a@x.test", ["b@y.test"], content)
            d = check_delivered(t, md, qid, "a@x.test", ["b@y.test"], content)
            t.check(b"mx.test" in d.received, "Received field lacks our hostname: %r" % d.received)
            t.check(qid.encode() in d.received, "Received field lacks the queue id %s: %r" % (qid, d.received))

        with t.case("helo_not_ehlo"):
            content = msg("helo", "sent after HELO\n")
            qid = smtplib_send(t, port, "a@x.test", ["b@y.test"], content, helo=True)
            check_delivered(t, md, qid, "a@x.test", ["b@y.test"], content)

        with t.case("fifty_recipients_smtplib"):
            rcpts = ["r%02d@y.test" % i for i in range(50)]
            content = msg("fifty", "to fifty recipients\n")
            qid = smtplib_send(t, port, "a@x.test", rcpts, content)
            check_delivered(t, md, qid, "a@x.test", rcpts, content)

        with t.case("fifty_recipients_pipelined"):
            rcpts = ["p%02d@y.test" % i for i in range(50)]
            content = msg("pipelined", "MAIL, 50 RCPT and DATA in one write\n")
            c = Conn(port)
            ehlo(t, c)
            c.send("MAIL FROM:<a@x.test>\r\n" + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n")
            t.expect(c.reply(), 250, c, "pipelined MAIL")
            for r in rcpts:
                t.expect(c.reply(), 250, c, "pipelined RCPT " + r)
            t.expect(c.reply(), 354, c, "pipelined DATA")
            c.send_quiet(content + b".\r\n", "content")
            r = t.expect(c.reply(), 250, c, "end of data", enhanced="2.0.0")
            qid = parse_queue_id(r)
            t.check(qid, "no queue id: %r" % r, c)
            t.expect(c.cmd("QUIT"), 221, c)
            c.close()
            check_delivered(t, md, qid, "a@x.test", rcpts, content, conn=c)

        with t.case("null_sender"):
            content = msg("bounce", "a delivery status notification\n")
            qid = smtplib_send(t, port, "<>", ["b@y.test"], content)
            check_delivered(t, md, qid, "", ["b@y.test"], content)

        with t.case("dot_stuffing"):
            body = ".\n..\n...\n.leading dot\n..two dots\n. space\nmid . dot\n.\n\n.\nend\n"
            content = msg("dots", body)
            qid = smtplib_send(t, port, "a@x.test", ["b@y.test"], content)
            check_delivered(t, md, qid, "a@x.test", ["b@y.test"], content)

        with t.case("dot_stuffing_raw"):
            # The client stuffs by hand; the stored message must be unstuffed.
            c = Conn(port)
            ehlo(t, c)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<b@y.test>"), 250, c)
            t.expect(c.cmd("DATA"), 354, c)
            c.send(b"Subject: raw dots\r\n\r\n..\r\n...x\r\n.. \r\nx.\r\n.\r\n")
            r = t.expect(c.reply(), 250, c, "end of data")
            qid = parse_queue_id(r)
            c.cmd("QUIT")
            check_delivered(t, md, qid, "a@x.test", ["b@y.test"],
                            b"Subject: raw dots\r\n\r\n.\r\n..x\r\n. \r\nx.\r\n", conn=c)

        with t.case("eight_bit_body"):
            high = bytes(range(0x80, 0x100))
            content = (b"From: a@x.test\r\nTo: b@y.test\r\nSubject: 8bit\r\n"
                       b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                       + "Grüße, ça va? 日本語 🎉\r\n".encode("utf-8") + high + b"\r\n"
                       + bytes(range(0x20, 0x7f)) + b"\r\n\t tab and controls \x01\x07\x1b\r\n")
            qid = smtplib_send(t, port, "a@x.test", ["b@y.test"], content, mail_options=["BODY=8BITMIME"])
            check_delivered(t, md, qid, "a@x.test", ["b@y.test"], content)

        with t.case("smtputf8_addresses"):
            sender = "jösé@exämple.test"
            rcpt = "ünïcödé@y.test"
            content = ("From: José <%s>\r\nTo: <%s>\r\nSubject: ¡SMTPUTF8!\r\n\r\nnon-ASCII envelope\r\n"
                       % (sender, rcpt)).encode("utf-8")
            qid = smtplib_send(t, port, sender, [rcpt], content, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
            d = check_delivered(t, md, qid, sender, [rcpt], content)
            t.check(b"UTF8SMTP" in d.received, "Received lacks 'with UTF8SMTP' (RFC 6531 §3.7.3): %r" % d.received)

        with t.case("many_messages_one_connection"):
            n = scale(100, 30)
            c = Conn(port)
            ehlo(t, c)
            sent = []
            for i in range(n):
                content = msg("one-conn-%03d" % i, ("line %d of message %d\n" % (0, i)) * (i % 7 + 1))
                rc = ["m%d@y.test" % i] + (["second@y.test"] if i % 3 == 0 else [])
                _, qid = send_message(t, c, "s%d@x.test" % i, rc, content)
                sent.append((qid, "s%d@x.test" % i, rc, content))
            t.expect(c.cmd("QUIT"), 221, c)
            c.close()
            ids = [s[0] for s in sent]
            t.check(len(set(ids)) == n, "queue ids are not unique: %d distinct of %d" % (len(set(ids)), n))
            md.wait_ids(ids)
            for qid, f, rc, content in sent:
                check_delivered(t, md, qid, f, rc, content, timeout=T_DELIVER)

        with t.case("bdat_chunks"):
            # BDAT content is exact octets: no dot-unstuffing, "\r\n.\r\n" is just data.
            part1 = b"From: a@x.test\r\nTo: b@y.test\r\nSubject: bdat\r\n\r\n"
            part2 = b"..not unstuffed\r\n.\r\nnot the end\r\n" + bytes(range(0x80, 0x100)) + b"\r\n"
            part3 = b"last chunk\r\n"
            c = Conn(port)
            ehlo(t, c)
            t.expect(c.cmd("MAIL FROM:<a@x.test> BODY=8BITMIME"), 250, c)
            t.expect(c.cmd("RCPT TO:<b@y.test>"), 250, c)
            c.send(b"BDAT %d\r\n" % len(part1) + part1)
            t.expect(c.reply(), 250, c, "BDAT 1")
            c.send(b"BDAT %d\r\n" % len(part2) + part2)
            t.expect(c.reply(), 250, c, "BDAT 2")
            c.send(b"BDAT %d LAST\r\n" % len(part3) + part3)
            r = t.expect(c.reply(), 250, c, "BDAT LAST", enhanced="2.0.0")
            qid = parse_queue_id(r)
            t.check(qid, "no queue id in %r" % r, c)
            t.expect(c.cmd("QUIT"), 221, c)
            check_delivered(t, md, qid, "a@x.test", ["b@y.test"], part1 + part2 + part3, conn=c)

        with t.case("bdat_pipelined_and_zero_last"):
            # MAIL, RCPT, two BDAT chunks and BDAT 0 LAST in one write (RFC 3030 §4.2).
            chunks = [b"Subject: bdat pipelined\r\n\r\n", b"x" * 70000 + b"\r\n", b"tail\r\n"]
            c = Conn(port)
            ehlo(t, c)
            data = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n"
            for ch in chunks:
                data += b"BDAT %d\r\n" % len(ch) + ch
            data += b"BDAT 0 LAST\r\n"
            c.send_quiet(data, "pipelined MAIL/RCPT/BDAT")
            for what in ("MAIL", "RCPT", "RCPT", "BDAT", "BDAT", "BDAT"):
                t.expect(c.reply(), 250, c, what)
            r = t.expect(c.reply(), 250, c, "BDAT 0 LAST", enhanced="2.0.0")
            qid = parse_queue_id(r)
            t.check(qid, "no queue id in %r" % r, c)
            # DATA on the same connection afterwards still works.
            content2 = msg("after-bdat", "DATA after BDAT\n")
            _, qid2 = send_message(t, c, "a@x.test", ["b@y.test"], content2)
            t.expect(c.cmd("QUIT"), 221, c)
            check_delivered(t, md, qid, "a@x.test", ["b@y.test", "c@y.test"], b"".join(chunks), conn=c)
            check_delivered(t, md, qid2, "a@x.test", ["b@y.test"], content2, conn=c)

        with t.case("large_message_3mb"):
            line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" * 15 + b"\r\n"  # 932 octets
            body = b"".join(b"%06d " % i + line for i in range(3300))
            content = b"Subject: large\r\n\r\n" + body
            qid = smtplib_send(t, port, "a@x.test", ["b@y.test"], content)
            check_delivered(t, md, qid, "a@x.test", ["b@y.test"], content)

        with t.case("max_length_text_lines"):
            # RFC 5321 §4.5.3.1.6: 998 octets + CRLF must be accepted.
            content = b"Subject: long lines\r\n\r\n" + (b"y" * 998 + b"\r\n") * 20
            qid = smtplib_send(t, port, "a@x.test", ["b@y.test"], content)
            check_delivered(t, md, qid, "a@x.test", ["b@y.test"], content)


if __name__ == "__main__":
    run(main)
