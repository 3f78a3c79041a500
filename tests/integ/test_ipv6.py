"""
test_ipv6 - one server listening on IPv4 and IPv6 loopback at once (every
shard has an SO_REUSEPORT socket per --listen): a message over [::1] is
accepted, and its Received: field names the client as an IPv6 address
literal (RFC 5321 §4.1.3). Skipped when the machine has no IPv6 loopback.
"""

import socket

from lib import Server, Skip, check_delivered, crlf, free_port, run


def v6_port():
    s = socket.socket(socket.AF_INET6)
    try:
        s.bind(("::1", 0))
    except OSError as e:
        raise Skip("no IPv6 loopback here: %s" % e)
    p = s.getsockname()[1]
    s.close()
    return p


def main(t):
    port6 = v6_port()
    with Server("--listen", "[::1]:%d" % port6) as srv:
        with t.case("message_over_ipv6"):
            c = socket.create_connection(("::1", port6), timeout=30)
            f = c.makefile("rwb")

            def cmd(line, want):
                if line is not None:
                    f.write(line.encode() + b"\r\n")
                    f.flush()
                last = b""
                while True:
                    ln = f.readline()
                    t.check(ln, "connection closed waiting for %d after %r" % (want, line))
                    if ln[3:4] != b"-":
                        last = ln
                        break
                t.check(last.startswith(str(want).encode()), "%r: got %r, want %d" % (line, last, want))
                return last.decode()

            cmd(None, 220)
            cmd("EHLO v6.test", 250)
            cmd("MAIL FROM:<six@x.test>", 250)
            cmd("RCPT TO:<r@y.test>", 250)
            cmd("DATA", 354)
            content = crlf("Subject: over IPv6\n\nhello\n")
            f.write(content + b".\r\n")
            f.flush()
            r = cmd(None, 250)
            qid = r.split()[-1]
            cmd("QUIT", 221)
            c.close()
            d = check_delivered(t, srv.maildir, qid, "six@x.test", ["r@y.test"], content)
            t.check(b"[IPv6:::1]" in d.raw, "Received: does not name [IPv6:::1]: %r" % d.raw[:400])

        with t.case("ipv4_listener_still_works"):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            t.check(s.recv(100).startswith(b"220 "), "no greeting on IPv4")
            s.close()


if __name__ == "__main__":
    run(main)
