"""
test_dkim_server - DKIM verification inside the server (issue 5): messages
arrive over SMTP, the verify pool checks their signatures against keys a
real DNS server on loopback serves (dns_server.py, the dkim-arc-stalwart
keys), and every stored message starts with our Authentication-Results
field, with the client's bytes unchanged below our Received: field.
Forged Authentication-Results fields that claim our authserv-id are
removed (RFC 8601 §5), foreign ones kept; --dkim-temperror tempfail answers
451 when a key lookup times out; --dkim off stores no verdict.
"""

import json
import os
import re
import smtplib
import time

from lib import Conn, Server, Skip, check_delivered, corpora_dir, crlf, parse_queue_id, run

try:
    from dns_server import DnsServer, parse_zone
except ImportError as e:  # python3-dnslib missing
    DnsServer = None
    IMPORT_ERR = str(e)

# file -> number of dkim=pass expected (005 is left out: its x= has expired).
MESSAGES = {"001.eml": 2, "002.eml": 1, "003.eml": 2, "004.eml": 1, "006.eml": 1}
KEY_004 = "s1024-2013-q3._domainkey.facebookmail.com"


def send(port, content, expect=250, sender="a@x.test"):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=60)
    try:
        s.ehlo()
        s.mail(sender)
        s.rcpt("b@y.test")
        code, resp = s.data(content)
        if code != expect:
            raise AssertionError("end of data: %d %r (want %d)" % (code, resp, expect))
        return parse_queue_id(resp.decode()) if code == 250 else None
    finally:
        s.close()


def authres(d):
    return b"".join(d.authres).decode("utf-8", "replace")


def main(t):
    if DnsServer is None:
        raise Skip("python3-dnslib missing (%s)" % IMPORT_ERR)
    base = os.path.join(corpora_dir(), "dkim-arc-stalwart")
    if not os.path.isdir(base):
        raise Skip("corpus %s absent" % base)
    with open(os.path.join(base, "keys.zone")) as f:
        zone = parse_zone(f.read())
    # SPF records for the SPF cases (RFC 7208): one that authorises loopback, one that refuses all.
    zone["spf-ok.example.net"] = [(300, [b"v=spf1 ip4:127.0.0.0/8 -all"])]
    zone["spf-bad.example.net"] = [(300, [b"v=spf1 -all"])]
    # DMARC (RFC 7489) records for both: reject when not aligned.
    zone["_dmarc.spf-ok.example.net"] = [(300, [b"v=DMARC1; p=reject"])]
    zone["_dmarc.spf-bad.example.net"] = [(300, [b"v=DMARC1; p=reject"])]
    zone["spf-early.example.net"] = [(300, [b"v=spf1 ip4:127.0.0.0/8 -all"])]
    msgs = {}
    for name in MESSAGES:
        with open(os.path.join(base, "dkim", name), "rb") as f:
            msgs[name] = f.read()
    dns = DnsServer(zone, {KEY_004: "timeout"}).start()
    dns_ok = DnsServer(zone).start()
    try:
        srv = Server("--dns", "127.0.0.1:%d" % dns_ok.port)
        jdir = os.path.join(srv.tmp, "json")
        srv.args += ["--sink", "json:" + jdir]
        with srv:
            for name, npass in MESSAGES.items():
                with t.case("corpus_%s_verified_in_server" % name):
                    content = msgs[name].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                    qid = send(srv.port, content)
                    d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                    ar = authres(d)
                    t.check(ar.startswith("Authentication-Results: mx.test;"), "no A-R of ours on top: %r" % ar)
                    got = len(re.findall(r"dkim=pass", ar))
                    t.check(got == npass, "%s: %d dkim=pass, want %d:\n%s" % (name, got, npass, ar))

            with t.case("json_auth_dkim_section"):
                content = msgs["001.eml"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                qid = send(srv.port, content)
                check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                path = os.path.join(jdir, qid + ".json")
                deadline = time.monotonic() + 30
                while not os.path.exists(path) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with open(path) as f:
                    doc = json.load(f)
                dk = doc["auth"]["dkim"]
                t.check(doc["auth"]["spf"]["result"] == "none" and doc["auth"]["spf"]["smtp_mailfrom"] == "a@x.test"
                        and doc["auth"]["spf"]["helo"]["smtp_helo"] == "client.test", "auth.spf: %r" % doc["auth"]["spf"])
                t.check(doc["auth"]["dmarc"]["result"] == "none" and
                        doc["auth"]["dmarc"].get("header_from") == "football.example.com",
                        "auth.dmarc: %r" % doc["auth"]["dmarc"])
                t.check([(x["result"], x["domain"], x["selector"], x["algorithm"]) for x in dk] ==
                        [("pass", "football.example.com", "brisbane", "ed25519-sha256"),
                         ("pass", "football.example.com", "test", "rsa-sha256")],
                        "auth.dkim: %r" % dk)

            with t.case("spf_pass_fail_none_in_server"):
                for sender, want in (("a@spf-ok.example.net", "spf=pass smtp.mailfrom=a@spf-ok.example.net"),
                                     ("a@spf-bad.example.net", "spf=fail"),
                                     ("a@x.test", "spf=none smtp.mailfrom=a@x.test")):
                    content = crlf("Subject: spf %s\n\nhello\n" % sender)
                    qid = send(srv.port, content, sender=sender)
                    d = check_delivered(t, srv.maildir, qid, sender, ["b@y.test"], content)
                    ar = authres(d).replace("\r\n\t", " ")
                    t.check(want in ar, "%s: want %r in %r" % (sender, want, ar))
                    t.check("smtp.helo=client.test" in ar, "no HELO identity result: %r" % ar)

            with t.case("spf_starts_at_mail_from"):
                # RFC 7208 §2.4: the check belongs to MAIL FROM, and starting it
                # there lets its DNS overlap RCPT and DATA. The client stops
                # after MAIL's 250 until the DNS server has seen the query for
                # the sender's domain, so this fails if the check starts later.
                c = Conn(srv.port)
                t.check(c.cmd("EHLO client.test").code == 250, "EHLO")
                t.check(c.cmd("MAIL FROM:<a@spf-early.example.net>").code == 250, "MAIL")
                deadline = time.monotonic() + 20
                while ("spf-early.example.net", "TXT") not in dns_ok.queries and time.monotonic() < deadline:
                    time.sleep(0.02)
                t.check(("spf-early.example.net", "TXT") in dns_ok.queries,
                        "no SPF query for the MAIL FROM domain before RCPT/DATA: %r" % dns_ok.queries[-5:])
                t.check(c.cmd("RCPT TO:<b@y.test>").code == 250, "RCPT")
                t.check(c.cmd("DATA").code == 354, "DATA")
                content = crlf("Subject: early\n\nhello\n")
                r = c.cmd(content + b".")
                t.check(r.code == 250, "end of data: %r" % (r,))
                c.close()
                d = check_delivered(t, srv.maildir, parse_queue_id(r), "a@spf-early.example.net",
                                    ["b@y.test"], content)
                t.check("spf=pass smtp.mailfrom=a@spf-early.example.net" in authres(d).replace("\r\n\t", " "),
                        "verdict: %r" % authres(d))

            with t.case("arc_in_server"):
                # RFC 8617: the two real chains of the stalwart corpus validate
                # (keys served by the same DNS server); one with its body
                # changed fails; a message without ARC sets is arc=none.
                for name in ("001.eml", "002.eml"):
                    with open(os.path.join(base, "arc", name), "rb") as f:
                        content = crlf(f.read())
                    qid = send(srv.port, content)
                    d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                    ar = authres(d).replace("\r\n\t", " ")
                    t.check("arc=pass" in ar, "%s: want arc=pass in %r" % (name, ar))
                    if name == "001.eml":
                        head, sep, body = content.partition(b"\r\n\r\n")
                        bad = head + sep + body.replace(b"a", b"b", 1)
                        qid = send(srv.port, bad)
                        d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], bad)
                        ar = authres(d).replace("\r\n\t", " ")
                        t.check("arc=fail" in ar and "ARC-Message-Signature" in ar,
                                "changed body: want arc=fail naming the AMS in %r" % ar)
                content = crlf("Subject: no chain\n\nhello\n")
                qid = send(srv.port, content)
                d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                t.check("arc=none" in authres(d), "no ARC sets: %r" % authres(d))

            with t.case("dmarc_in_server_annotates"):
                for dom, want in (("spf-ok.example.net", "dmarc=pass"), ("spf-bad.example.net", "dmarc=fail")):
                    sender = "a@" + dom
                    content = crlf("From: <%s>\nSubject: dmarc %s\n\nhello\n" % (sender, dom))
                    qid = send(srv.port, content, sender=sender)
                    d = check_delivered(t, srv.maildir, qid, sender, ["b@y.test"], content)
                    ar = authres(d).replace("\r\n\t", " ")
                    t.check(want in ar and "header.from=" + dom in ar, "%s: want %r in %r" % (dom, want, ar))
                content = crlf("Subject: no From\n\nhello\n")
                qid = send(srv.port, content)
                d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                t.check("dmarc=none" in authres(d), "no From: %r" % authres(d))

            with t.case("tampered_body_fails"):
                content = msgs["002.eml"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                i = content.index(b"\r\n\r\n") + 4
                content = content[:i] + b"TAMPERED " + content[i:]
                qid = send(srv.port, content)
                d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                t.check("dkim=fail" in authres(d), "tampered body: %r" % authres(d))

            with t.case("unsigned_is_none_and_forged_verdict_removed"):
                content = crlf("Authentication-Results: mx.test; dkim=pass header.d=bank.example\n"
                               "Authentication-Results: other.example; spf=pass\n"
                               "Authentication-Results: MX.TEST (forged); dkim=pass\n"
                               "Subject: unsigned\n\nhello\n")
                qid = send(srv.port, content)
                got = srv.maildir.wait_ids([qid])[qid]
                t.check(got, "message %s not delivered" % qid)
                d = got[0]
                ar = authres(d)
                t.check("dkim=none" in ar and "bank.example" not in ar, "our verdict: %r" % ar)
                t.check(b"other.example; spf=pass" in d.content, "a foreign A-R field was removed")
                t.check(b"header.d=bank.example" not in d.content and b"(forged)" not in d.content,
                        "a forged A-R claiming mx.test was kept: %r" % d.content[:300])
                t.check(d.content.endswith(b"Subject: unsigned\r\n\r\nhello\r\n"), "content changed: %r" % d.content)

        with Server("--dns", "127.0.0.1:%d" % dns.port, "--dns-timeout", "500",
                    "--dkim-temperror", "tempfail") as srv:
            with t.case("temperror_tempfails_when_asked"):
                content = msgs["004.eml"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                send(srv.port, content, expect=451)
                t.check(srv.maildir.count() == 0, "a tempfailed message was stored")

        with Server("--dns", "127.0.0.1:%d" % dns.port, "--dns-timeout", "500") as srv:
            with t.case("temperror_annotated_by_default"):
                content = msgs["004.eml"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                qid = send(srv.port, content)
                d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                t.check("dkim=temperror" in authres(d), "timeout: %r" % authres(d))

        # The verify pool's DNS cache keeps a SERVFAIL briefly (5 s), not for
        # the record's TTL: the same key is not asked again at once, and is
        # asked again (and passes) once that time is over.
        dns_sf = DnsServer(zone, {KEY_004: "servfail"}).start()
        try:
            with Server("--dns", "127.0.0.1:%d" % dns_sf.port) as srv:
                with t.case("cached_servfail_expires"):
                    content = msgs["004.eml"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                    d = check_delivered(t, srv.maildir, send(srv.port, content), "a@x.test", ["b@y.test"], content)
                    t.check("dkim=temperror" in authres(d), "servfail: %r" % authres(d))
                    del dns_sf.specials[KEY_004.lower()]
                    asked = sum(1 for q in dns_sf.queries if q[0] == KEY_004.lower())
                    d = check_delivered(t, srv.maildir, send(srv.port, content), "a@x.test", ["b@y.test"], content)
                    t.check("dkim=temperror" in authres(d), "SERVFAIL not cached: %r" % authres(d))
                    t.check(sum(1 for q in dns_sf.queries if q[0] == KEY_004.lower()) == asked,
                            "the key was asked again within 5 s")
                    time.sleep(6)
                    d = check_delivered(t, srv.maildir, send(srv.port, content), "a@x.test", ["b@y.test"], content)
                    t.check("dkim=pass" in authres(d), "the cached SERVFAIL did not expire: %r" % authres(d))
        finally:
            dns_sf.stop()

        with Server("--dns", "127.0.0.1:%d" % dns_ok.port, "--dmarc-enforce", "on") as srv:
            with t.case("dmarc_reject_enforced_550"):
                sender = "a@spf-bad.example.net"
                content = crlf("From: <%s>\nSubject: enforced\n\nhello\n" % sender)
                s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=60)
                s.ehlo()
                s.mail(sender)
                s.rcpt("b@y.test")
                code, resp = s.data(content)
                s.close()
                t.check(code == 550 and resp.startswith(b"5.7.1"), "p=reject enforced: %d %r" % (code, resp))
                ok = crlf("From: <a@spf-ok.example.net>\nSubject: aligned\n\nhello\n")
                qid = send(srv.port, ok, sender="a@spf-ok.example.net")
                check_delivered(t, srv.maildir, qid, "a@spf-ok.example.net", ["b@y.test"], ok)
                t.check(srv.maildir.count() == 1, "the rejected message was stored")

        with Server("--dns", "127.0.0.1:%d" % dns_ok.port, "--dmarc-enforce", "on") as srv:
            # Issue 13: a header field longer than 64 KiB before From: made the
            # verifier stop reading the header (dmarc=none, 250 for a p=reject spoof).
            def long_field(name, size):
                lines = [name + ": start"]
                while sum(len(x) + 2 for x in lines) < size:
                    lines.append("\t" + "x" * 72)
                return "\n".join(lines) + "\n"

            def data(content, sender="a@x.test"):
                s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=60)
                try:
                    s.ehlo()
                    s.mail(sender)
                    s.rcpt("b@y.test")
                    return s.data(content)
                finally:
                    s.close()

            spoof_from = "From: Boss <ceo@spf-bad.example.net>\nSubject: wire money\n\nnow\n"
            with t.case("dmarc_enforce_long_fields_before_from_550"):
                for what, pad in (("40 KB X-", long_field("X-Pad", 40 * 1024)),
                                  ("70 KB X-", long_field("X-Pad", 70 * 1024)),
                                  ("70 KB Received", long_field("Received", 70 * 1024)),
                                  ("70 KB Received + 70 KB X-",
                                   long_field("Received", 70 * 1024) + long_field("X-Pad", 70 * 1024))):
                    code, resp = data(crlf(pad + spoof_from))
                    t.check(code == 550 and resp.startswith(b"5.7.1"), "%s: %d %r" % (what, code, resp))
                t.check(srv.maildir.count() == 0, "a spoof was stored")
            with t.case("dmarc_enforce_unreadable_from_550"):
                # a From padded past what can be read is permerror, and rejected when enforcing
                big_from = "From: Boss " + ("(" + "y" * 72 + ")\n\t") * 1000 + " <ceo@spf-bad.example.net>\n"
                code, resp = data(crlf(big_from + "Subject: x\n\nnow\n"))
                t.check(code == 550 and resp.startswith(b"5.7.1"), "padded From: %d %r" % (code, resp))
                t.check(srv.maildir.count() == 0, "a spoof was stored")
            with t.case("dmarc_enforce_two_froms_550"):
                # RFC 5322 allows one From field; a second naming a p=reject domain
                # (or two addresses in one) must not slip past enforcement.
                for what, hdr in (("two From fields", "From: <a@spf-ok.example.net>\nFrom: Boss <ceo@spf-bad.example.net>\n"),
                                  ("two addresses", "From: <a@spf-ok.example.net>, Boss <ceo@spf-bad.example.net>\n")):
                    code, resp = data(crlf(hdr + "Subject: x\n\nnow\n"), sender="a@spf-ok.example.net")
                    t.check(code == 550 and resp.startswith(b"5.7.1"), "%s: %d %r" % (what, code, resp))
                t.check(srv.maildir.count() == 0, "a spoof was stored")
            with t.case("dmarc_enforce_long_field_legitimate_passes"):
                sender = "a@spf-ok.example.net"
                content = crlf(long_field("Received", 70 * 1024) + long_field("X-Long", 70 * 1024) +
                               "From: <%s>\nSubject: long but fine\n\nhello\n" % sender)
                qid = send(srv.port, content, sender=sender)
                d = check_delivered(t, srv.maildir, qid, sender, ["b@y.test"], content)
                ar = authres(d).replace("\r\n\t", " ")
                t.check("dmarc=pass" in ar and "header.from=spf-ok.example.net" in ar, "long field: %r" % ar)

        with Server("--dkim", "off", "--spf", "off", "--dmarc", "off", "--arc", "off") as srv:
            with t.case("dkim_and_spf_off_store_no_verdict"):
                content = msgs["002.eml"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                qid = send(srv.port, content)
                d = check_delivered(t, srv.maildir, qid, "a@x.test", ["b@y.test"], content)
                t.check(not d.authres, "--dkim, --spf, --dmarc and --arc off stored %r" % authres(d))

        with Server("--dkim", "off", "--dmarc", "off", "--dns", "127.0.0.1:%d" % dns_ok.port) as srv:
            with t.case("dkim_off_spf_only"):
                content = msgs["002.eml"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                qid = send(srv.port, content, sender="a@spf-ok.example.net")
                d = check_delivered(t, srv.maildir, qid, "a@spf-ok.example.net", ["b@y.test"], content)
                ar = authres(d)
                t.check("spf=pass" in ar and "dkim=" not in ar, "--dkim off: %r" % ar)

        with Server("--dkim", "off", "--arc", "off", "--dns", "127.0.0.1:%d" % dns_ok.port) as srv:
            with t.case("dmarc_without_dkim_reads_from"):
                # DMARC needs the From field even when no signature is checked.
                sender = "a@spf-ok.example.net"
                content = crlf("From: <%s>\nSubject: spf only\n\nhello\n" % sender)
                qid = send(srv.port, content, sender=sender)
                d = check_delivered(t, srv.maildir, qid, sender, ["b@y.test"], content)
                ar = authres(d).replace("\r\n\t", " ")
                t.check("dmarc=pass" in ar and "header.from=spf-ok.example.net" in ar and " dkim=" not in ar
                        and " arc=" not in ar, "--dkim off --arc off: %r" % ar)
    finally:
        dns.stop()
        dns_ok.stop()


if __name__ == "__main__":
    run(main)
