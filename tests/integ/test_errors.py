"""
test_errors - raw-socket error paths and limits, one fresh connection per
case (so the bad-command limit of one case never leaks into another):
500 unknown, 501 syntax, 503 sequence, 555 unknown parameter, 552 size,
452 recipients, 500 line too long, bad-command limit, early talker, per-IP
and total connection limits, command/data timeouts, domain policy,
pipelined replies in order, bare LF policy, RSET, QUIT, and
--max-input-rate (a sender past it is slowed down, not refused, and its
message arrives intact).
"""

import time

from lib import (Conn, Server, T_IO, check_delivered, crlf, ehlo, parse_queue_id, run, scale,
                 send_message)


def fresh(t, srv, helo=True):
    c = Conn(srv.port)
    t.expect(c.greeting, 220, c, "greeting")
    if helo:
        ehlo(t, c)
    return c


def expect_close(t, c, what):
    """expect_close: after a 421 the server must close the connection."""
    rest = c.wait_eof()
    t.check(not rest, "%s: replies after the 421 instead of a close: %r" % (what, rest), c)


def main(t):
    limits = ["--max-message-size", "10000", "--max-recipients", "5", "--max-command-line", "512",
              "--max-bad-commands", "3", "--domains", "a.test,b.test"]
    with Server(*limits) as srv:
        md = srv.maildir

        with t.case("unknown_command_500"):
            c = fresh(t, srv)
            t.expect(c.cmd("FROBNICATE now"), 500, c, "unknown command", enhanced="5.5.")
            t.expect(c.cmd("NOOP"), 250, c, "NOOP after an unknown command")
            t.expect(c.cmd("QUIT"), 221, c)

        with t.case("syntax_501"):
            c = fresh(t, srv, helo=False)
            t.expect(c.cmd("HELO"), 501, c, "HELO without a domain")
            ehlo(t, c)
            # A malformed path: 501, or 553 "mailbox syntax incorrect" (RFC 5321 §4.3.2 lists both).
            t.expect(c.cmd("MAIL FROM:<a@x.test"), (501, 553), c, "MAIL with an unterminated path")
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c, "MAIL after the syntax error")
            c.close()
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<no-at-sign.a.test"), (501, 553), c, "RCPT with an unterminated path")
            t.expect(c.cmd("RCPT FROM:<x@a.test>"), 501, c, "RCPT without TO:")
            c.close()
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL TO:<a@x.test>"), 501, c, "MAIL without FROM:")
            t.expect(c.cmd("MAIL FROM:<a@x.test> SIZE=abc"), 501, c, "SIZE with a non-numeric value (RFC 1870)")
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c, "MAIL after the syntax errors")
            t.expect(c.cmd("QUIT"), 221, c)

        with t.case("out_of_sequence_503"):
            c = fresh(t, srv)
            t.expect(c.cmd("RCPT TO:<x@a.test>"), 503, c, "RCPT before MAIL", enhanced="5.5.1")
            t.expect(c.cmd("DATA"), 503, c, "DATA before MAIL")
            c.close()
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("DATA"), 503, c, "DATA before RCPT")
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 503, c, "nested MAIL")
            c.close()
            c = fresh(t, srv, helo=False)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 503, c, "MAIL before HELO/EHLO")
            t.expect(c.cmd("QUIT"), 221, c)

        with t.case("unknown_parameter_555"):
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test> FOO=BAR"), 555, c, "unknown MAIL parameter", enhanced="5.5.4")
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<x@a.test> FOO=BAR"), 555, c, "unknown RCPT parameter")
            t.expect(c.cmd("QUIT"), 221, c)

        with t.case("size_declared_552"):
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test> SIZE=10001"), 552, c, "SIZE above the limit", enhanced="5.3.4")
            t.expect(c.cmd("MAIL FROM:<a@x.test> SIZE=10000"), 250, c, "SIZE equal to the limit")
            t.expect(c.cmd("QUIT"), 221, c)

        with t.case("size_actual_552_then_continue"):
            c = fresh(t, srv)
            big = b"Subject: too big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 200  # 16 KB > 10000
            r, _ = send_message(t, c, "a@x.test", ["x@a.test"], big, want=None)
            t.expect(r, 552, c, "DATA beyond --max-message-size", enhanced="5.3.4")
            small = b"Subject: small\r\n\r\nfits\r\n"
            _, qid = send_message(t, c, "a@x.test", ["x@a.test"], small)
            t.expect(c.cmd("QUIT"), 221, c)
            check_delivered(t, md, qid, "a@x.test", ["x@a.test"], small, conn=c)
            # BDAT announcing more than the limit: 552 before a single chunk
            # octet is read, and the connection closes (reading gigabytes only
            # to discard them would keep it busy until --timeout-data).
            for count in (len(big), 10 ** 12):
                c = fresh(t, srv)
                t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
                t.expect(c.cmd("RCPT TO:<x@a.test>"), 250, c)
                t.expect(c.cmd("BDAT %d LAST" % count), 552, c, "BDAT %d beyond --max-message-size" % count,
                         enhanced="5.3.4")
                t.check(c.wait_eof() == [], "connection closed after BDAT %d, nothing more said" % count, c)
            for d in md.read_all():
                t.check(b"Subject: too big" not in d.content, "the 552'd message was delivered: %s" % d.name)

        with t.case("too_many_recipients_452"):
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            rc = ["r%d@a.test" % i for i in range(5)]
            for r in rc:
                t.expect(c.cmd("RCPT TO:<%s>" % r), 250, c)
            t.expect(c.cmd("RCPT TO:<r5@a.test>"), 452, c, "6th recipient with --max-recipients 5",
                     enhanced="4.5.3")
            t.expect(c.cmd("DATA"), 354, c, "DATA with the 5 accepted recipients")
            content = b"Subject: five\r\n\r\nfive recipients\r\n"
            c.send(content + b".\r\n")
            r = t.expect(c.reply(), 250, c, "end of data")
            t.expect(c.cmd("QUIT"), 221, c)
            check_delivered(t, md, parse_queue_id(r), "a@x.test", rc, content, conn=c)

        with t.case("line_too_long_500"):
            c = fresh(t, srv)
            t.expect(c.cmd("NOOP " + "a" * 700), 500, c, "700-octet command line, limit 512", enhanced="5.5.2")
            t.expect(c.cmd("NOOP"), 250, c, "NOOP after the long line (resynchronised at CRLF)")
            c.send_quiet(b"NOOP " + b"b" * 50000 + b"\r\n", "50 KB command line")
            r = c.reply()
            t.expect(r, 500, c, "50 KB command line", enhanced="5.5.2")
            t.expect(c.cmd("NOOP"), 250, c, "NOOP after the 50 KB line")
            # 64 KiB past the limit with no LF: not a client; 500 ... closing.
            c.send_quiet(b"NOOP " + b"b" * 200000 + b"\r\n", "200 KB command line")
            rs = c.replies_until_close(5)
            # (here --max-bad-commands 3 may say 421 first: either way it closes)
            t.check(len(rs) == 2 and rs[0].code == 500 and rs[1].code in (421, 500) and "closing" in rs[1].text,
                    "200 KB command line: want 500, then 500 ... closing and EOF; got %r" % rs, c)

        with t.case("bad_command_limit_421"):
            c = fresh(t, srv)
            got = []
            for i in range(6):
                r = c.cmd("BOGUS%d" % i)
                got.append(r)
                if r.code != 500:
                    break
            codes = [r.code for r in got]
            # --max-bad-commands 3: the first 2 are plain errors; 421 follows the 3rd or 4th.
            t.check(codes[:2] == [500, 500], "first bad commands: %r" % got, c)
            t.check(len(codes) in (3, 4) and codes[-1] == 421,
                    "no 421 at the 3rd/4th bad command with --max-bad-commands 3: %r" % got, c)
            if got[-1].code == 421:
                expect_close(t, c, "bad-command limit")

        with t.case("domain_policy"):
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<x@c.test>"), 550, c, "domain not in --domains", enhanced="5.7.1")
            t.expect(c.cmd("RCPT TO:<x@a.test>"), 250, c, "listed domain a.test")
            t.expect(c.cmd("RCPT TO:<y@B.TEST>"), 250, c, "listed domain, other case (RFC 5321 §2.4)")
            t.expect(c.cmd("RCPT TO:<postmaster>"), 250, c, "<postmaster> (RFC 5321 §4.5.1)")
            t.expect(c.cmd("DATA"), 354, c)
            content = b"Subject: policy\r\n\r\nto listed domains and postmaster\r\n"
            c.send(content + b".\r\n")
            r = t.expect(c.reply(), 250, c, "end of data")
            c.cmd("QUIT")
            qid = parse_queue_id(r)
            got = md.wait_ids([qid])[qid]
            t.check(got, "message %s not delivered" % qid, c)
            d = got[0]
            t.check(d.content == content, "content differs: %r" % d.content[:200])
            t.check(sorted(x.lower() for x in d.rcpts) == ["postmaster", "x@a.test", "y@b.test"],
                    "Delivered-To %r, want x@a.test, y@B.TEST, postmaster" % d.rcpts)
            t.check(not any("c.test" in x for x in d.rcpts), "rejected recipient delivered: %r" % d.rcpts)
            c2 = fresh(t, srv)
            t.expect(c2.cmd("MAIL FROM:<a@x.test>"), 250, c2)
            t.expect(c2.cmd("RCPT TO:<Postmaster>"), 250, c2, "<Postmaster> is case-insensitive (RFC 5321 §4.5.1)")
            t.expect(c2.cmd("RCPT TO:<x@a.test.evil>"), 550, c2, "suffix of a listed domain")
            t.expect(c2.cmd("QUIT"), 221, c2)

        with t.case("pipelined_replies_in_order"):
            c = fresh(t, srv)
            c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<1@a.test>\r\nRCPT TO:<2@c.test>\r\n"
                   "RCPT TO:<3@b.test>\r\nNOOP\r\nDATA\r\n")
            want = [250, 250, 550, 250, 250, 354]
            got = [c.reply() for _ in want]
            t.check([r.code for r in got] == want, "pipelined replies %r, want %r" % (got, want), c)
            m1 = b"Subject: first\r\n\r\none\r\n"
            m2 = b"Subject: second\r\n\r\ntwo\r\n"
            # End of data, then a whole second transaction in the same write.
            c.send(m1 + b".\r\nRSET\r\nMAIL FROM:<b@x.test>\r\nRCPT TO:<4@a.test>\r\nDATA\r\n")
            want = [250, 250, 250, 250, 354]
            got = [c.reply() for _ in want]
            t.check([r.code for r in got] == want, "replies after end of data %r, want %r" % (got, want), c)
            q1 = parse_queue_id(got[0])
            c.send(m2 + b".\r\nQUIT\r\n")
            r2 = t.expect(c.reply(), 250, c, "second end of data")
            t.expect(c.reply(), 221, c, "pipelined QUIT")
            t.check(c.wait_eof() == [], "data after 221", c)
            check_delivered(t, md, q1, "a@x.test", ["1@a.test", "3@b.test"], m1, conn=c)
            check_delivered(t, md, parse_queue_id(r2), "b@x.test", ["4@a.test"], m2, conn=c)

        with t.case("rset_clears_transaction"):
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<x@a.test>"), 250, c)
            t.expect(c.cmd("RSET"), 250, c)
            t.expect(c.cmd("DATA"), 503, c, "DATA after RSET")
            t.expect(c.cmd("QUIT"), 221, c)

        with t.case("quit_221_and_close"):
            c = fresh(t, srv)
            t.expect(c.cmd("QUIT"), 221, c, "QUIT", enhanced="2.0.0")
            t.check(c.wait_eof() == [], "server did not close after 221", c)

        with t.case("bare_lf_rejected_by_default"):
            c = fresh(t, srv)
            for bad, what in ((b"Subject: bare lf\r\n\r\nline\nwith bare LF\r\n", "bare LF"),
                              (b"Subject: bare cr\r\n\r\nline\rwith bare CR\r\n", "bare CR")):
                r, _ = send_message(t, c, "a@x.test", ["x@a.test"], bad, want=None)
                t.expect(r, 550, c, "DATA with a " + what, enhanced="5.5.2")
            good = b"Subject: clean\r\n\r\nclean after the rejects\r\n"
            _, qid = send_message(t, c, "a@x.test", ["x@a.test"], good)
            t.expect(c.cmd("QUIT"), 221, c)
            check_delivered(t, md, qid, "a@x.test", ["x@a.test"], good, conn=c)
            for d in md.read_all():
                t.check(b"with bare" not in d.content, "a rejected bare CR/LF message was delivered: %s" % d.name)

    with Server("--bare-lf", "normalise") as srv:
        with t.case("bare_lf_normalise"):
            c = fresh(t, srv)
            sent = b"Subject: normalise\r\n\r\nbare\nLF\r\nend\nof it\r\n"
            r, qid = send_message(t, c, "a@x.test", ["x@a.test"], sent)
            t.expect(c.cmd("QUIT"), 221, c)
            check_delivered(t, srv.maildir, qid, "a@x.test", ["x@a.test"],
                            b"Subject: normalise\r\n\r\nbare\r\nLF\r\nend\r\nof it\r\n", conn=c)

    delay = scale(300, 1000)
    with Server("--greet-delay", str(delay)) as srv:
        with t.case("early_talker_554"):
            c = Conn(srv.port, greet=False)
            c.send("EHLO early.test\r\n")  # before the greeting
            got = c.wait_eof()
            t.check(got and got[0].code == 554, "early talker: want 554 first, got %r" % got, c)
            t.check(len(got) == 1, "early talker: want 554 and close, got %r" % got, c)
        with t.case("patient_client_after_greet_delay"):
            c = Conn(srv.port)
            t.expect(c.greeting, 220, c, "greeting after --greet-delay")
            ehlo(t, c)
            t.expect(c.cmd("QUIT"), 221, c)

    with Server("--max-connections-per-ip", "2", "--max-connections", "4") as srv:
        time.sleep(0.5)  # let the server finish closing its readiness-probe connection
        with t.case("connections_per_ip_421"):
            a = [Conn(srv.port, source="127.0.0.2") for _ in range(2)]
            for c in a:
                t.expect(c.greeting, 220, c, "connection within the per-IP limit")
            x = Conn(srv.port, source="127.0.0.2", greet=False)
            got = x.wait_eof()
            t.check(got and got[0].code == 421 and got[0].enhanced == "4.7.0" and len(got) == 1,
                    "3rd connection from 127.0.0.2 with --max-connections-per-ip 2: want 421 4.7.0 and close,"
                    " got %r" % got, x)
            y = Conn(srv.port, source="127.0.0.3")
            t.expect(y.greeting, 220, y, "another IP is not limited by 127.0.0.2's connections")
            a[0].cmd("QUIT")
            a[0].wait_eof()
            # The slot frees once the server has seen the close: poll (bounded).
            ok = False
            for _ in range(int(T_IO * 10)):
                z = Conn(srv.port, source="127.0.0.2", greet=False)
                r = z.reply()
                if r.code == 220:
                    ok = True
                    z.cmd("QUIT")
                    z.close()
                    break
                z.close()
                time.sleep(0.1)
            t.check(ok, "127.0.0.2 never got a slot back after closing one connection")
            for c in a + [y]:
                c.close()
        time.sleep(0.5)
        with t.case("connections_total_421"):
            conns = []
            for i in range(4):
                c = Conn(srv.port, source="127.0.0.%d" % (10 + i))
                conns.append(c)
                t.expect(c.greeting, 220, c, "connection %d within --max-connections 4" % (i + 1))
            x = Conn(srv.port, source="127.0.0.20", greet=False)
            got = x.wait_eof()
            t.check(got and got[0].code == 421 and len(got) == 1,
                    "5th connection with --max-connections 4: want 421 and close, got %r" % got, x)
            for c in conns:
                c.close()

    with Server("--timeout-command", "2", "--timeout-data", "2") as srv:
        with t.case("command_timeout_421"):
            c = fresh(t, srv, helo=False)
            got = c.wait_eof()  # send nothing
            t.check(len(got) == 1 and got[0].code == 421 and got[0].enhanced == "4.4.2",
                    "idle client with --timeout-command 2: want 421 4.4.2 and close, got %r" % got, c)
        with t.case("command_timeout_in_transaction"):
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            got = c.wait_eof()
            t.check(len(got) == 1 and got[0].code == 421 and got[0].enhanced == "4.4.2",
                    "idle after MAIL: want 421 4.4.2 and close, got %r" % got, c)
        with t.case("data_timeout_421"):
            c = fresh(t, srv)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c)
            t.expect(c.cmd("RCPT TO:<x@a.test>"), 250, c)
            t.expect(c.cmd("DATA"), 354, c)
            c.send(b"Subject: stalled\r\n\r\nhalf a mess")
            got = c.wait_eof()
            t.check(len(got) == 1 and got[0].code == 421 and got[0].enhanced == "4.4.2",
                    "stalled DATA with --timeout-data 2: want 421 4.4.2 and close, got %r" % got, c)
            # A later message gets through; the stalled one never appears.
            c2 = fresh(t, srv)
            ok = b"Subject: after\r\n\r\nafter the timeout\r\n"
            _, qid = send_message(t, c2, "a@x.test", ["x@a.test"], ok)
            c2.cmd("QUIT")
            check_delivered(t, srv.maildir, qid, "a@x.test", ["x@a.test"], ok, conn=c2)
            for d in srv.maildir.read_all():
                t.check(b"stalled" not in d.content, "the timed-out message was delivered: %s" % d.name)

    with Server("--max-connection-rate", "3", "--max-message-rate", "2") as srv:
        # The server's start-up probe used one connection of the burst.
        with t.case("connection_rate_421"):
            got = []
            for i in range(3):
                c = Conn(srv.port)
                got.append(c.greeting)
                if c.greeting.code == 220:
                    c.cmd("QUIT")
                c.close()
            t.check([r.code for r in got[:2]] == [220, 220] and got[2].code == 421 and got[2].enhanced == "4.7.0",
                    "4th connection in a minute with --max-connection-rate 3: %r" % got)
        with t.case("message_rate_451"):
            # Another address (127.0.0.2) has its own buckets.
            c = Conn(srv.port, source="127.0.0.2")
            t.expect(c.greeting, 220, c)
            ehlo(t, c)
            for i in range(2):
                t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c, "MAIL %d of 2" % (i + 1))
                t.expect(c.cmd("RSET"), 250, c)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 451, c, "3rd MAIL in a minute", enhanced="4.7.1")
            t.expect(c.cmd("NOOP"), 250, c, "the session goes on")
            t.expect(c.cmd("QUIT"), 221, c)

    # --max-input-rate 1M: a burst of 1 MB, then 1 MB/s. 3 MB cannot arrive
    # in less than about 2 s however fast the client sends (a lower bound:
    # a slow machine only makes it slower), and nothing is lost or cut.
    with Server("--max-input-rate", "1M", "--max-message-size", "10M") as srv:
        with t.case("input_rate_slows_the_sender_down"):
            content = crlf("Subject: fast sender\n\n" + ("y" * 76 + "\n") * (3 * 1000 * 1000 // 77))
            c = fresh(t, srv)
            t0 = time.monotonic()
            _, qid = send_message(t, c, "a@x.test", ["b@y.test"], content)
            took = time.monotonic() - t0
            t.check(took >= 1.5, "%d bytes in %.2f s with --max-input-rate 1M" % (len(content), took))
            t.expect(c.cmd("NOOP"), 250, c, "the session goes on")
            check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)


if __name__ == "__main__":
    run(main)
