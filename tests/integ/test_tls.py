"""
test_tls - STARTTLS (RFC 3207) in the server, with real clients.

Certificates are made at test time with openssl: an RSA one for mx.rsa.test
and *.rsa.test (the default, given first) and an ECDSA P-256 one for
mx.ec.test. Checked:
- EHLO offers STARTTLS; STARTTLS with an argument gets 501;
- openssl s_client -starttls smtp: SNI picks the certificate (mx.ec.test ->
  ECDSA, a.rsa.test -> the RSA wildcard, none -> the default), -tls1_2 and
  -tls1_3;
- swaks --tls delivers;
- Python smtplib starttls(): the message byte-exact in the maildir, our
  Received field says ESMTPS with (version=... cipher=...), the json sink's
  envelope has tls {version, cipher, sni}, and null for a message in clear;
- CVE-2011-0411: "STARTTLS\\r\\nNOOP\\r\\n" in one write: the NOOP is never
  answered, neither in clear nor after the handshake;
- --tls-required on: MAIL in clear gets 530 5.7.0, after STARTTLS 250;
- a handshake abandoned midway is closed at --timeout-tls and logged, and
  garbage instead of a ClientHello is logged and closed;
- SIGHUP swaps the certificate while a TLS session is open: new handshakes
  see the new one, the open session still delivers; an unreadable key at
  the next SIGHUP keeps the certificates and logs why;
- oceanmx-load --tls delivers every message;
- --max-tls-rate: a client past its new sessions per minute gets 454 4.7.0
  to STARTTLS and goes on in clear; a resumed session does not count;
- a real MTA delivering over TLS: a private Postfix relays to oceanmx with
  smtp_tls_security_level = encrypt; the message arrives with ESMTPS and
  Postfix's log says the connection was TLS (needs root and postfix).
Needs openssl (Debian package openssl); swaks and oceanmx-load cases are
skipped without them.
"""

import json
import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time

from lib import (Conn, Server, Skip, T_DELIVER, T_IO, crlf, ehlo, make_cert, parse_queue_id, require_tool, run,
                 scale)

VERIFY_OFF = ["--dkim", "off", "--spf", "off", "--dmarc", "off", "--arc", "off"]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "load"))
from postfix_tls import PostfixTLS, missing_tools  # noqa: E402


def tls_args(certs):
    a = []
    for crt, key in certs:
        a += ["--tls-cert", crt, "--tls-key", key]
    return a


def s_client(port, *extra):
    """s_client runs openssl s_client -starttls smtp and returns its output (QUIT sent after the handshake)."""
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % port] + list(extra),
                       input=b"QUIT\r\n", capture_output=True, timeout=T_IO)
    return p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def subject_of(out):
    for ln in out.splitlines():
        if ln.startswith("subject="):
            return ln.split("CN", 1)[-1].strip(" =")
    return None


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_log(srv, text, timeout=T_IO):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in srv.stderr_text():
            return True
        time.sleep(0.05)
    return False


def smtplib_tls(port, sni=None):
    """smtplib_tls connects, says EHLO, STARTTLS (with SNI `sni`), EHLO again."""
    s = smtplib.SMTP("127.0.0.1", port, timeout=T_IO)
    s.ehlo("client.test")
    if sni is not None:
        s._host = sni  # smtplib sends its connect host as SNI; an IP sends none
    code, _ = s.starttls(context=client_ctx())
    s.ehlo("client.test")
    return s, code


def send_tls(t, s, content):
    """send_tls sends one message on an smtplib session; returns its queue id."""
    t.check(s.mail("a@x.test")[0] == 250 and s.rcpt("b@y.test")[0] == 250, "MAIL/RCPT refused")
    code, msg = s.data(content)
    t.check(code == 250, "end of data: %d %r" % (code, msg))
    return parse_queue_id(msg.decode("utf-8", "replace"))


def maildir_content(srv, qid):
    got = srv.maildir.wait_ids([qid], T_DELIVER)[qid]
    return got[0] if got else None


def main(t):
    require_tool("/usr/bin/openssl", "openssl")
    srv = Server(*VERIFY_OFF)
    d = srv.tmp
    rsa = make_cert(d, "rsa", "rsa", "mx.rsa.test", ["mx.rsa.test", "*.rsa.test"])
    ec = make_cert(d, "ec", "ec", "mx.ec.test", ["mx.ec.test"])
    jdir = os.path.join(d, "json")
    srv.args += tls_args([rsa, ec]) + ["--sink", "json:" + jdir, "--log-level", "info"]
    with srv:
        with t.case("ehlo_offers_starttls"):
            c = Conn(srv.port)
            r = ehlo(t, c)
            t.check("STARTTLS" in r.lines, "EHLO lines %r" % r.lines, c)
            t.expect(c.cmd("STARTTLS now"), 501, c, "STARTTLS with an argument")
            t.expect(c.cmd("QUIT"), 221, c, "QUIT")

        with t.case("s_client_sni_picks_the_certificate"):
            out = s_client(srv.port, "-servername", "mx.ec.test")
            t.check(subject_of(out) == "mx.ec.test", "SNI mx.ec.test got %r\n%s" % (subject_of(out), out[-1500:]))
            t.check("Server public key is 256 bit" in out, "not the ECDSA P-256 key:\n%s" % out[-1500:])
            out = s_client(srv.port, "-servername", "a.rsa.test")
            t.check(subject_of(out) == "mx.rsa.test", "SNI a.rsa.test (wildcard) got %r" % subject_of(out))
            t.check("Server public key is 2048 bit" in out, "not the RSA key:\n%s" % out[-1500:])
            out = s_client(srv.port, "-servername", "unknown.test")
            t.check(subject_of(out) == "mx.rsa.test", "unknown SNI: default wanted, got %r" % subject_of(out))
            out = s_client(srv.port)
            t.check(subject_of(out) == "mx.rsa.test", "no SNI: default wanted, got %r" % subject_of(out))

        with t.case("s_client_tls12_and_tls13"):
            out = s_client(srv.port, "-tls1_2")
            t.check("Protocol  : TLSv1.2" in out or "TLSv1.2, Cipher is ECDHE-" in out, "TLS 1.2:\n%s" % out[-1500:])
            out = s_client(srv.port, "-tls1_3", "-servername", "mx.ec.test")
            t.check("TLSv1.3, Cipher is TLS_" in out, "TLS 1.3:\n%s" % out[-1500:])
            out = s_client(srv.port, "-tls1_1")
            t.check("TLSv1.1, Cipher is" not in out and "Cipher is (NONE)" in out,
                    "TLS 1.1 must be refused:\n%s" % out[-1500:])

        with t.case("smtplib_starttls_byte_exact_received_json"):
            content = crlf("From: a@x.test\nTo: b@y.test\nSubject: over TLS\n\nline one\n.dot line\nend\n")
            s, code = smtplib_tls(srv.port, sni="mx.ec.test")
            t.check(code == 220, "STARTTLS answered %d" % code)
            qid = send_tls(t, s, content)
            s.quit()
            got = maildir_content(srv, qid)
            t.check(got is not None and got.content == content,
                    "content differs: %r" % (got.content if got else None))
            rec = got.received.decode("utf-8", "replace")
            t.check("with ESMTPS\r\n\t(version=TLSv1.3 cipher=TLS_" in rec, "Received: %r" % rec)
            path = os.path.join(jdir, qid + ".json")
            deadline = time.monotonic() + T_DELIVER
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            with open(path, encoding="utf-8") as f:
                env = json.load(f)["envelope"]
            tls = env.get("tls")
            t.check(tls is not None and tls["version"] == "TLSv1.3" and tls["cipher"].startswith("TLS_")
                    and tls["sni"] == "mx.ec.test", "envelope tls %r" % tls)
            t.check(wait_log(srv, "sni=mx.ec.test resumed=no"), "no tls.ok log line:\n%s" % srv.stderr_tail())
            # A message in clear: tls is null, Received says ESMTP.
            c = Conn(srv.port)
            ehlo(t, c)
            from lib import send_message
            _, qid = send_message(t, c, "a@x.test", ["b@y.test"], content)
            c.cmd("QUIT")
            got = maildir_content(srv, qid)
            t.check(got is not None and b"with ESMTP id" in got.received, "clear Received %r" % (got and got.received))
            path = os.path.join(jdir, qid + ".json")
            deadline = time.monotonic() + T_DELIVER
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            with open(path, encoding="utf-8") as f:
                t.check(json.load(f)["envelope"]["tls"] is None, "tls not null in clear")

        with t.case("cve_2011_0411_pipelined_plaintext_dropped"):
            c = Conn(srv.port)
            ehlo(t, c)
            c.send("STARTTLS\r\nNOOP\r\n")
            t.expect(c.reply(), 220, c, "STARTTLS")
            tls = client_ctx().wrap_socket(c.sock, server_hostname="mx.rsa.test")
            tls.settimeout(T_IO)
            tls.sendall(b"EHLO client.test\r\n")
            first = b""
            while not first.endswith(b"\r\n"):
                first += tls.recv(1)
            t.check(first.startswith(b"250-mx.test"), "first reply after the handshake %r (the NOOP answered?)" % first)
            rest = b""
            while not rest.endswith(b"250 BINARYMIME\r\n"):
                rest += tls.recv(4096)
            t.check(b"STARTTLS" not in rest, "STARTTLS offered again inside TLS: %r" % rest)
            tls.sendall(b"STARTTLS\r\nQUIT\r\n")
            buf = b""
            while b"221 " not in buf:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                buf += chunk
            t.check(buf.startswith(b"503 5.5.1 TLS already active\r\n221 "), "inside TLS: %r" % buf)
            tls.close()

        with t.case("garbage_instead_of_client_hello"):
            c = Conn(srv.port)
            ehlo(t, c)
            t.expect(c.cmd("STARTTLS"), 220, c, "STARTTLS")
            c.sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            c.sock.settimeout(T_IO)
            data = b""
            while True:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            t.check(b"250" not in data and b"500" not in data, "plaintext answer to garbage: %r" % data)
            t.check(wait_log(srv, "tls.fail phase=handshake reason=\"handshake: "), "no tls.fail line:\n%s"
                    % srv.stderr_tail())

        with t.case("swaks_tls"):
            if not shutil.which("swaks"):
                print("  (swaks not installed: case skipped)")
            else:
                p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(srv.port), "--tls",
                                    "--from", "s@x.test", "--to", "r@y.test", "--ehlo", "swaks.test"],
                                   capture_output=True, timeout=T_IO)
                out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
                if "requires Net::SSLeay" in out:
                    print("  (swaks without Net::SSLeay, Debian package libnet-ssleay-perl: case skipped)")
                else:
                    t.check(p.returncode == 0 and "queued as" in out,
                            "swaks exit %d:\n%s" % (p.returncode, out[-2000:]))
                    t.check("TLS started" in out, "swaks: no TLS:\n%s" % out)

        with t.case("oceanmx_load_tls"):
            from test_load import check_counts, load, load_bin
            try:
                load_bin()
            except Skip as e:
                print("  (%s: case skipped)" % e)
            else:
                n = scale(200, 60)
                rep = load(t, srv.port, "-m", str(n), "-c", "4", "--tls", "--to", "rcpt@y.test")
                check_counts(t, rep, n, conns=4, tls=True)
                t.check(rep["tls"]["handshakes"] == 4 and rep["tls"]["failures"] == 0, "tls %r" % rep["tls"])

        with t.case("sighup_swaps_the_certificate_in_flight"):
            # A TLS session open across the reload.
            s, _ = smtplib_tls(srv.port)
            new = make_cert(d, "new", "rsa", "mx.new.test", ["mx.new.test"])
            shutil.copy(new[0], rsa[0])
            shutil.copy(new[1], rsa[1])
            srv.signal(signal.SIGHUP)
            t.check(wait_log(srv, "tls.reload certificates=2"), "no tls.reload line:\n%s" % srv.stderr_tail())
            out = s_client(srv.port)
            t.check(subject_of(out) == "mx.new.test", "after SIGHUP the default is %r" % subject_of(out))
            out = s_client(srv.port, "-servername", "mx.ec.test")
            t.check(subject_of(out) == "mx.ec.test", "after SIGHUP SNI mx.ec.test got %r" % subject_of(out))
            content = crlf("Subject: across the reload\n\nstill here\n")
            qid = send_tls(t, s, content)
            s.quit()
            got = maildir_content(srv, qid)
            t.check(got is not None and got.content == content, "message across the reload not delivered")
            # An unreadable key: the certificates stay.
            os.unlink(rsa[1])
            srv.signal(signal.SIGHUP)
            t.check(wait_log(srv, "tls.reload error="), "no tls.reload error line:\n%s" % srv.stderr_tail())
            out = s_client(srv.port)
            t.check(subject_of(out) == "mx.new.test", "after a failed reload the default is %r" % subject_of(out))

    # --tls-required and --timeout-tls on a server of their own.
    srv = Server(*VERIFY_OFF)
    rsa = make_cert(srv.tmp, "rsa", "rsa", "mx.rsa.test", ["mx.rsa.test"])
    srv.args += tls_args([rsa]) + ["--tls-required", "on", "--timeout-tls", "2", "--log-level", "info"]
    with srv:
        with t.case("tls_required_530_then_accepted"):
            c = Conn(srv.port)
            ehlo(t, c)
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 530, c, "MAIL in clear", enhanced="5.7.0")
            c.cmd("QUIT")
            s, _ = smtplib_tls(srv.port)
            content = crlf("Subject: required\n\nbody\n")
            qid = send_tls(t, s, content)
            s.quit()
            got = maildir_content(srv, qid)
            t.check(got is not None and got.content == content, "message after STARTTLS not delivered")

        with t.case("abandoned_handshake_closed_at_timeout_tls"):
            c = Conn(srv.port)
            ehlo(t, c)
            t.expect(c.cmd("STARTTLS"), 220, c, "STARTTLS")
            c.sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
            c.sock.settimeout(T_IO)
            t0 = time.monotonic()
            data = c.sock.recv(4096)
            t.check(data == b"", "got %r instead of a close" % data)
            t.check(time.monotonic() - t0 < T_IO, "not closed")
            t.check(wait_log(srv, "tls.fail phase=handshake reason=\"no handshake within 2s\""),
                    "no timeout line:\n%s" % srv.stderr_tail())

    # --max-tls-rate 2: two full handshakes a minute per client; a resumed
    # session gives its token back (Postfix counts only uncached sessions).
    srv = Server(*VERIFY_OFF)
    srv.args += tls_args([make_cert(srv.tmp, "rrsa", "rsa", "mx.rate.test", ["mx.rate.test"])]) + \
        ["--max-tls-rate", "2", "--log-level", "info"]
    with srv:
        with t.case("new_tls_session_rate_454"):
            ctx = client_ctx()

            def starttls(session=None):
                c = Conn(srv.port)
                ehlo(t, c)
                r = c.cmd("STARTTLS")
                if r.code != 220:
                    return c, r, None
                tls = ctx.wrap_socket(c.sock, server_hostname="mx.rate.test", session=session)
                tls.settimeout(T_IO)
                tls.sendall(b"EHLO client.test\r\n")
                got = b""
                while b"\r\n250 " not in got and not got.startswith(b"250 "):
                    more = tls.recv(4096)
                    if not more:
                        break
                    got += more
                return c, r, tls

            first = starttls()[2]
            t.check(first is not None, "1st STARTTLS refused")
            sess = first.session
            first.sendall(b"QUIT\r\n")
            first.close()
            res = starttls(session=sess)[2]
            t.check(res is not None and res.session_reused, "2nd STARTTLS: not resumed (%r)" % res)
            res.close()
            second = starttls()[2]
            t.check(second is not None, "the 2nd full handshake was refused after a resumed one")
            second.close()
            c, r, tls = starttls()
            t.expect(r, 454, c, "3rd full handshake in a minute", enhanced="4.7.0")
            t.expect(c.cmd("MAIL FROM:<a@x.test>"), 250, c, "the session goes on in clear")
            c.cmd("QUIT")
            t.check(wait_log(srv, 'cmd=STARTTLS reason="TLS session rate"'), "no log line:\n%s" % srv.stderr_tail())

    # An RSA and an ECDSA certificate for the same names (RSA first, the
    # default): ECDSA for every client that can verify it, RSA for the rest.
    srv = Server(*VERIFY_OFF)
    srv.args += tls_args([make_cert(srv.tmp, "drsa", "rsa", "mx.dual.test", ["mx.dual.test"]),
                          make_cert(srv.tmp, "dec", "ec", "mx.dual.test", ["mx.dual.test"]),
                          make_cert(srv.tmp, "orsa", "rsa", "mx.other.test", ["mx.other.test"])])
    with srv:
        with t.case("rsa_and_ecdsa_for_one_name"):
            for extra, want, why in ((["-servername", "mx.dual.test"], "256 bit", "SNI, ECDSA offered"),
                                     ([], "256 bit", "no SNI: the default's names"),
                                     (["-servername", "mx.dual.test", "-tls1_2"], "256 bit", "TLS 1.2"),
                                     (["-servername", "mx.dual.test", "-sigalgs", "rsa_pss_rsae_sha256"], "2048 bit",
                                      "a client that verifies only RSA"),
                                     (["-servername", "mx.other.test"], "2048 bit", "another name: its own RSA pair")):
                out = s_client(srv.port, *extra)
                t.check("Server public key is " + want in out, "%s: want a %s key\n%s" % (why, want, out[-1500:]))
            # A Python client (OpenSSL defaults) completes STARTTLS with both pairs loaded.
            s, code = smtplib_tls(srv.port, sni="mx.dual.test")
            t.check(code == 220, "STARTTLS %r" % code)
            t.check(s.sock.getpeercert(binary_form=True) is not None, "no certificate")
            s.quit()
            t.check(wait_log(srv, 'key="ECDSA P-256"'), "tls.cert log line without the key kind:\n%s" % srv.stderr_tail())

    # A real MTA delivering over TLS, as a big provider would: Postfix's own
    # SMTP client relays to oceanmx and refuses to send in clear.
    why = missing_tools()
    with t.case("postfix_relays_over_starttls"):
        if why:
            print("    skip: postfix relay needs %s" % ", ".join(why), flush=True)
        else:
            srv = Server(*VERIFY_OFF)
            srv.args += tls_args([make_cert(srv.tmp, "rsa", "rsa", "mx.rsa.test", ["mx.rsa.test"])])
            with srv:
                with PostfixTLS(delivery="relay", relay_to=("127.0.0.1", srv.port)) as pf:
                    content = crlf("Subject: relayed by postfix\n\nover tls\n")
                    s = smtplib.SMTP("127.0.0.1", pf.port, timeout=T_IO)
                    s.sendmail("a@x.test", ["b@y.test"], content)
                    s.quit()
                    srv.maildir.wait_count(1, T_DELIVER)
                    got = srv.maildir.read_all()
                    t.check(len(got) == 1, "postfix's relay did not arrive; maillog:\n%s" % pf.maillog()[-2000:])
                    d = got[0]
                    t.check(b"with ESMTPS" in d.received and b"(version=TLSv1." in d.received,
                            "Received: %r" % d.received)
                    t.check(b"from pf.tls.test" in d.received, "not Postfix's HELO: %r" % d.received)
                    t.check(d.content.endswith(b"over tls\r\n"), "content %r" % d.content[-200:])
                    log = pf.maillog()
                    t.check("TLS connection established to 127.0.0.1" in log, "postfix: no TLS:\n%s" % log[-2000:])


if __name__ == "__main__":
    run(main)
