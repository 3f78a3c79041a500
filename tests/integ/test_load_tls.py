"""
test_load_tls - oceanmx-load --tls (STARTTLS, RFC 3207) against a private
Postfix smtpd that offers it (bench/load/postfix_tls.py: own config, queue
and maildir, a fresh self-signed certificate; the system's Postfix is not
touched), and against servers that get STARTTLS wrong.

- Postfix: short --tls runs (DATA pipelined; BDAT with churn and a 200 KiB
  message, so bodies span many records and encryption batches) must deliver
  every message: the maildir holds each one with the generator's exact body
  and Postfix's "(using TLSv1.x ...)" Received trace, Postfix's log shows
  starttls=1 for every session, exit 0. --tls-ca with the server's
  certificate verifies by IP address and by host name (SNI); --tls-verify
  without it must fail the handshake with the verification reason.
- oceanmx (no STARTTLS yet): --tls exits 1 saying the server does not
  offer it.
- A scripted server offering STARTTLS: a 454 reply, plaintext after the 220,
  and non-TLS bytes or a close during the handshake must each exit 1 with
  the reason, counted as connection (and handshake) errors.

The Postfix cases need root, postfix and openssl; without them they are
reported as skipped and the other cases still run.
"""

import os
import socket
import sys
import threading

from lib import REPO, Server, T_DELIVER, run, scale
from test_load import body_of, check_counts, generated_body, load, load_bin

sys.path.insert(0, os.path.join(REPO, "bench", "load"))
from postfix_tls import PostfixTLS, missing_tools  # noqa: E402


class FakeStartTLS:
    """FakeStartTLS offers STARTTLS on 127.0.0.1 and then misbehaves as `mode` says:
    454 (refuse), inject (plaintext right after the 220), garbage (non-TLS bytes
    for the ClientHello), close (hang up on the ClientHello), stall (never answer
    the ClientHello)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sessions = 0
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.sock.close()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        self.sessions += 1
        c.settimeout(20)
        try:
            f = c.makefile("rb")
            c.sendall(b"220 fake ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                u = line.strip().upper()
                if u.startswith(b"EHLO"):
                    c.sendall(b"250-fake\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                elif u == b"STARTTLS":
                    break
                elif u == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"503 5.5.1 say STARTTLS first\r\n")
            if self.mode == "454":
                c.sendall(b"454 4.7.0 TLS not available due to local problem\r\n")
                f.readline()  # QUIT, or the client hangs up
                return
            if self.mode == "inject":
                c.sendall(b"220 2.0.0 Ready to start TLS\r\n250 injected in plaintext\r\n")
            else:
                c.sendall(b"220 2.0.0 Ready to start TLS\r\n")
            hello = c.recv(4096)  # the ClientHello
            if hello and self.mode == "garbage":
                c.sendall(b"this is not a TLS record\r\n" * 4)
            if self.mode in ("garbage", "inject", "stall"):
                c.recv(4096)  # until the client gives up
        except OSError:
            pass
        finally:
            c.close()


def tls_report(t, rep, sessions):
    tls = rep.get("tls")
    t.check(tls is not None, "no tls object in the report: %r" % rep)
    t.check(tls["handshakes"] == sessions and tls["failures"] == 0,
            "tls %r, want %d handshakes and no failures" % (tls, sessions))
    t.check(tls["session"].startswith("TLSv1."), "tls session %r" % tls["session"])
    t.check(tls["handshake_us"]["count"] == sessions and tls["handshake_us"]["p50"] > 0,
            "handshake histogram %r" % tls["handshake_us"])
    return tls


def maildir_bodies(pf):
    """maildir_bodies: (header, body) of every message, CRLF line ends (Postfix stores LF)."""
    out = []
    for name in sorted(os.listdir(pf.maildir)):
        with open(os.path.join(pf.maildir, name), "rb") as f:
            raw = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        i = raw.find(b"\r\n\r\n")
        out.append((raw[:i + 2] if i >= 0 else raw, body_of(raw)))
    return out


def postfix_cases(t):
    n = scale(300, 100)
    with PostfixTLS(delivery="maildir") as pf:
        with t.case("postfix_tls_data_pipelined_%d" % n):
            rep = load(t, pf.port, "-m", str(n), "-c", "6", "--tls", "--from", "load@x.test", "--to", "rcpt@y.test")
            check_counts(t, rep, n, conns=6, tls=True)
            tls_report(t, rep, 6)
            t.check(rep["tls"]["verify"] is False, "verify %r without --tls-verify" % rep["tls"]["verify"])
            got = pf.wait_maildir(n, T_DELIVER)
            t.check(got == n, "%d messages in Postfix's maildir, want %d" % (got, n))
            want = generated_body(t, "--from", "load@x.test", "--to", "rcpt@y.test")
            for head, body in maildir_bodies(pf):
                t.check(body == want, "a delivered body differs from the generator's (%d vs %d octets)"
                        % (len(body or b""), len(want)))
                t.check(b"(using TLSv1." in head and b"with ESMTPS" in head,
                        "no TLS in Postfix's Received field: %r" % head[:600])
            log = pf.maillog()
            tls_sessions = sum(1 for line in log.splitlines() if "disconnect from" in line and "starttls=1" in line)
            t.check(tls_sessions >= 6, "Postfix logged %d sessions with starttls=1, want >= 6" % tls_sessions)

        with t.case("postfix_tls_bdat_churn_200k"):
            before = pf.maildir_count()
            m = scale(40, 16)
            rep = load(t, pf.port, "-m", str(m), "-c", "4", "-p", "1", "--tls", "--mode", "bdat",
                       "--size", "1k:1,200k:1", "--from", "load@x.test", "--to", "rcpt@y.test")
            check_counts(t, rep, m, tls=True)
            tls_report(t, rep, rep["connections_opened"])
            t.check(rep["connections_opened"] >= m, "only %d sessions for %d messages with -p 1"
                    % (rep["connections_opened"], m))
            got = pf.wait_maildir(before + m, T_DELIVER)
            t.check(got == before + m, "%d new messages in Postfix's maildir, want %d" % (got - before, m))
            want = set()
            for i in range(2):
                want.add(generated_body(t, "--print-message=%d" % i, "--size", "1k:1,200k:1",
                                        "--from", "load@x.test", "--to", "rcpt@y.test"))
            big = 0
            for _, body in maildir_bodies(pf):
                if len(body or b"") > 100000:
                    big += 1
                    t.check(body in want, "a 200 KiB body differs from the generator's")
            t.check(big > 0, "no 200 KiB message among %d" % m)

        with t.case("postfix_tls_ca_verifies_ip_and_name"):
            rep = load(t, pf.port, "-m", "10", "-c", "2", "--tls", "--tls-ca", pf.cert, "--to", "rcpt@y.test")
            check_counts(t, rep, 10, tls=True)
            t.check(tls_report(t, rep, 2)["verify"] is True, "verify flag %r" % rep["tls"])
            # a name: SNI localhost, checked against the certificate's DNS name
            rep = load(t, pf.port, "-m", "10", "-c", "2", "--tls", "--tls-ca", pf.cert, "--to", "rcpt@y.test",
                       host="localhost")
            check_counts(t, rep, 10, tls=True)

        with t.case("postfix_tls_verify_self_signed_fails"):
            rep = load(t, pf.port, "-m", "5", "-c", "1", "--tls", "--tls-verify", "--max-errors", "2",
                       "--to", "rcpt@y.test", want_rc=1)
            err = rep["first_error"] or ""
            t.check(err.startswith("TLS handshake:") and "certificate verification failed" in err,
                    "first_error %r" % err)
            t.check(rep["tls"]["failures"] >= 1 and rep["tls"]["failures"] == rep["connection_errors"]
                    and rep["messages"]["delivered"] == 0, "report %r" % rep)


def main(t):
    load_bin()
    why = missing_tools()
    if why:
        print("  (Postfix cases skipped: need %s)" % ", ".join(why))
    else:
        postfix_cases(t)

    with Server() as srv:
        with t.case("oceanmx_no_starttls_exit_1"):
            rep = load(t, srv.port, "-m", "5", "-c", "2", "--tls", want_rc=1)
            t.check("does not offer STARTTLS" in (rep["first_error"] or ""), "first_error %r" % rep["first_error"])
            t.check(rep["connection_errors"] >= 1 and rep["messages"]["delivered"] == 0, "report %r" % rep)

    cases = (
        ("454", "STARTTLS: 454 ", False),
        ("inject", "TLS handshake: plaintext after the 220 to STARTTLS", True),
        ("garbage", "TLS handshake: ", True),
        ("close", "TLS handshake: connection closed by the server", True),
        ("stall", "TLS handshake: no progress within 1 s", True),
    )
    for mode, want, handshake in cases:
        with FakeStartTLS(mode) as fake, t.case("starttls_%s_exit_1" % mode):
            rep = load(t, fake.port, "-m", "3", "-c", "1", "--tls", "--max-errors", "2",
                       "--timeout", "1" if mode == "stall" else "10", want_rc=1)
            err = rep["first_error"] or ""
            t.check(err.startswith(want), "first_error %r, want it to start with %r" % (err, want))
            t.check(rep["connection_errors"] >= 1 and rep["messages"]["delivered"] == 0, "report %r" % rep)
            t.check(rep["tls"]["handshakes"] == 0, "tls %r" % rep["tls"])
            if handshake:
                t.check(rep["tls"]["failures"] >= 1, "handshake failures not counted: %r" % rep["tls"])


if __name__ == "__main__":
    run(main)
