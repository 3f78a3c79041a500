"""
test_dmarc - DMARC end to end through `oceanmx verify --client-ip ...`:
constructed messages, SPF and DMARC records served by dns_server.py on
loopback, the PSL from Debian's publicsuffix package. Checks dmarc= in
Authentication-Results (header.from, policy.dmarc) and auth.dmarc.
"""

import json
import os
import subprocess

from lib import Skip, omx_bin, run

try:
    from dns_server import DnsServer
except ImportError as e:
    DnsServer = None
    IMPORT_ERR = str(e)

PSL = "/usr/share/publicsuffix/public_suffix_list.dat"
ZONE = {
    "example.com": [("TXT", ["v=spf1 ip4:192.0.2.1 -all"])],
    "_dmarc.example.com": [("TXT", ["v=DMARC1; p=reject; rua=mailto:d@example.com"])],
    "other.example": [("TXT", ["v=spf1 ip4:192.0.2.1 -all"])],
    "_dmarc.quarantine.example": [("TXT", ["v=DMARC1; p=quarantine; sp=none"])],
}


def verify(port, msg, ip, mail_from, helo="mx.other.example"):
    r = subprocess.run([omx_bin(), "verify", "--hostname", "mx.test", "--dns", "127.0.0.1:%d" % port,
                        "--dns-timeout", "1000", "--client-ip", ip, "--mail-from", mail_from, "--helo", helo, "-"],
                       input=msg, capture_output=True, timeout=60)
    out = r.stdout.decode()
    last = out.rstrip("\n").split("\n")[-1]
    return r, out[:len(out) - len(last) - 1], json.loads(last) if last.startswith("{") else None


def main(t):
    if DnsServer is None:
        raise Skip("dnslib not importable (Debian package python3-dnslib): %s" % IMPORT_ERR)
    if not os.access(omx_bin(), os.X_OK):
        raise Skip("%s not built" % omx_bin())
    if not os.path.exists(PSL):
        raise Skip("%s missing (Debian package publicsuffix)" % PSL)
    srv = DnsServer(rrsets=ZONE).start()
    try:
        with t.case("aligned SPF pass: dmarc=pass"):
            msg = b"From: A <a@example.com>\r\nSubject: x\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "192.0.2.1", "bounce@example.com")
            d = doc["dmarc"]
            t.check(d["result"] == "pass" and d["aligned"]["spf"] and not d["aligned"]["dkim"], "%r" % d)
            t.check("dmarc=pass" in hdr and "header.from=example.com" in hdr and "policy.dmarc=reject" in hdr,
                    hdr)
        with t.case("SPF fails, p=reject: dmarc=fail, disposition reject"):
            msg = b"From: a@example.com\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "198.51.100.7", "bounce@example.com")
            d = doc["dmarc"]
            t.check(d["result"] == "fail" and d["disposition"] == "reject" and d["policy"] == "reject", "%r" % d)
            t.check("dmarc=fail (p=reject dis=reject)" in hdr, hdr)
        with t.case("SPF passes for an unaligned domain: dmarc=fail"):
            msg = b"From: a@example.com\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "192.0.2.1", "x@other.example")
            t.check(doc["spf"]["result"] == "pass" and doc["dmarc"]["result"] == "fail", "%r" % doc)
        with t.case("subdomain From uses sp= of the organizational domain record"):
            msg = b"From: a@news.quarantine.example\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "192.0.2.1", "x@other.example")
            d = doc["dmarc"]
            t.check(d["record_domain"] == "quarantine.example" and d["policy"] == "none", "%r" % d)
        with t.case("no DMARC record: dmarc=none"):
            msg = b"From: a@other.example\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "192.0.2.1", "x@other.example")
            t.check(doc["dmarc"]["result"] == "none" and "dmarc=none" in hdr, "%r" % doc["dmarc"])
        with t.case("two From addresses: reported, not crashed on"):
            msg = b"From: a@example.com, b@example.com\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "192.0.2.1", "x@example.com")
            t.check(r.returncode == 0 and doc["dmarc"]["result"] == "permerror", "%r" % (doc and doc["dmarc"]))
        with t.case("no From field: dmarc=none"):
            msg = b"Subject: x\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "192.0.2.1", "x@example.com")
            t.check(r.returncode == 0 and doc["dmarc"]["result"] == "none", "%r" % (doc and doc["dmarc"]))
        # Issue 13: a field longer than 64 KiB before From: must not hide it (the server's cases
        # are in test_dkim_server.py; "oceanmx verify" reads the header the same way).
        fold = b"".join(b"\r\n\t" + b"x" * 72 for _ in range(1000))  # about 74 KB
        with t.case("70 KB Received: and X- fields before From: the From is still read"):
            msg = b"Received: start" + fold + b"\r\nX-Pad: start" + fold + b"\r\nFrom: a@example.com\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "198.51.100.7", "bounce@other.example")
            d = doc and doc["dmarc"]
            t.check(r.returncode == 0 and d["result"] == "fail" and d["disposition"] == "reject", "%r" % d)
        with t.case("a From too large to read: permerror, never none"):
            msg = b"From: Boss (" + fold + b") <a@example.com>\r\n\r\nhi\r\n"
            r, hdr, doc = verify(srv.port, msg, "198.51.100.7", "bounce@other.example")
            d = doc and doc["dmarc"]
            t.check(r.returncode == 0 and d["result"] == "permerror" and "dmarc=permerror" in hdr, "%r" % d)
    finally:
        srv.stop()


if __name__ == "__main__":
    run(main)
