"""
test_spf - the OpenSPF RFC 7208 suite (../shared/corpora/spf-openspf, 203
cases in 16 scenarios) through `oceanmx verify --spf-only`, with the real
resolver (libunbound) asking a real DNS server on loopback
(dns_server.py) that serves each scenario's zone: A, AAAA, MX, PTR, TXT
and CNAME records, NXDOMAIN for absent names, NODATA for absent types, and
no answer at all for the suite's TIMEOUT names.

Each case runs check_host() for the MAIL FROM identity (postmaster@HELO
for the null sender) and must give one of the expected results; where the
suite gives an explanation, the exp= text must match it ("DEFAULT": no
exp= text). Then the full mode on one scenario: Authentication-Results
with spf= for both identities, and the JSON auth.spf section.
"""

import json
import os
import subprocess

from lib import Skip, corpora_dir, omx_bin, run

try:
    from dns_server import DnsServer
except ImportError as e:  # python3-dnslib missing
    DnsServer = None
    IMPORT_ERR = str(e)

HOST = "mx.test.example"
TIMEOUT_MS = 800


def unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"\\": "\\", "t": "\t", "r": "\r", "n": "\n"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def load(corp):
    zones, timeouts, cases = {}, {}, []
    with open(os.path.join(corp, "rfc7208-tests.zone.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            sc, name, rtype, value = line.rstrip("\n").split("\t")
            name = name.rstrip(".").lower()
            z = zones.setdefault(sc, {})
            if rtype == "TIMEOUT":
                timeouts.setdefault(sc, set()).add(name)
                continue
            if rtype in ("TXT", "SPF"):
                v = json.loads(value)
            elif rtype == "MX":
                pref, host = value.split(" ", 1)
                v = (int(pref), host)
            else:
                v = value
            z.setdefault(name, []).append((rtype, v))
    with open(os.path.join(corp, "rfc7208-tests.cases.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            sc, tid, spec, host, mailfrom, helo, expected, exp = line.rstrip("\n").split("\t")
            cases.append(dict(scenario=sc, id=tid, spec=spec, host=host, mailfrom=mailfrom, helo=helo,
                              expected=expected.split("|"), exp=None if exp == "-" else unescape(exp)))
    return zones, timeouts, cases


def spf_run(port, host, mailfrom, helo, *extra, spf_only=True, stdin=None):
    args = [omx_bin(), "verify", "--hostname", HOST, "--dns", "127.0.0.1:%d" % port,
            "--dns-timeout", str(TIMEOUT_MS), "--client-ip", host, "--mail-from", mailfrom, "--helo", helo]
    if spf_only:
        args.append("--spf-only")
    args += list(extra)
    return subprocess.run(args, input=stdin, capture_output=True, timeout=60)


def parse(r):
    out = r.stdout.decode("utf-8", "replace")
    last = out.rstrip("\n").split("\n")[-1]
    return out[:len(out) - len(last) - 1], json.loads(last)


def main(t):
    if DnsServer is None:
        raise Skip("dnslib not importable (Debian package python3-dnslib): %s" % IMPORT_ERR)
    if not os.access(omx_bin(), os.X_OK):
        raise Skip("%s not built" % omx_bin())
    corp = os.path.join(corpora_dir(), "spf-openspf")
    if not os.path.isdir(corp):
        raise Skip("SPF corpus not found under %s (set OMX_CORPORA)" % corp)
    zones, timeouts, cases = load(corp)

    with t.case("RFC 7208 suite: %d cases" % len(cases)):
        bad, counts, first_choice = [], {}, 0
        for sc in sorted({c["scenario"] for c in cases}, key=int):
            srv = DnsServer(rrsets=zones.get(sc, {}), timeouts=timeouts.get(sc, ())).start()
            try:
                for c in [c for c in cases if c["scenario"] == sc]:
                    r = spf_run(srv.port, c["host"], c["mailfrom"], c["helo"])
                    if r.returncode != 0:
                        bad.append("%s: exit %d: %s" % (c["id"], r.returncode, r.stderr[-300:]))
                        continue
                    hdr, doc = parse(r)
                    spf = doc["spf"]
                    got = spf["result"]
                    counts[got] = counts.get(got, 0) + 1
                    if got not in c["expected"]:
                        bad.append("%s (scenario %s, %s): got %s want %s (%s)"
                                   % (c["id"], sc, c["spec"], got, "|".join(c["expected"]), spf["reason"]))
                        continue
                    if got == c["expected"][0]:
                        first_choice += 1
                    if "spf=%s" % got not in hdr:
                        bad.append("%s: A-R lacks spf=%s: %r" % (c["id"], got, hdr))
                    if c["exp"] is not None:
                        want = None if c["exp"] == "DEFAULT" else c["exp"]
                        if spf["explanation"] != want:
                            bad.append("%s: explanation %r want %r" % (c["id"], spf["explanation"], want))
            finally:
                srv.stop()
        for b in bad:
            print("    mismatch: " + b)
        t.check(not bad, "%d of %d cases differ" % (len(bad), len(cases)))
        print("    %d cases pass (%d with the preferred result); results %s"
              % (len(cases), first_choice, ", ".join("%s=%d" % kv for kv in sorted(counts.items()))))

    with t.case("full mode: spf= for smtp.mailfrom and smtp.helo, JSON auth.spf"):
        # scenario 14: e9.example.com is "v=spf1 a:%{H} -all"; msgbas2x.cos.example.com has an A
        srv = DnsServer(rrsets=zones["14"], timeouts=timeouts.get("14", ())).start()
        try:
            body = b"From: test@e9.example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
            r = spf_run(srv.port, "192.168.218.40", "test@e9.example.com", "msgbas2x.cos.example.com", "-",
                        spf_only=False, stdin=body)
            t.check(r.returncode == 0, "exit %d: %s" % (r.returncode, r.stderr[-300:]))
            hdr, doc = parse(r)
            t.check(doc["spf"]["result"] == "pass" and doc["spf"]["identity"] == "mailfrom",
                    "auth.spf: %r" % doc["spf"])
            t.check(doc["spf"]["helo"] is not None and doc["spf"]["helo"]["identity"] == "helo",
                    "auth.spf.helo: %r" % doc["spf"])
            t.check("spf=pass smtp.mailfrom=test@e9.example.com" in hdr, "A-R: %r" % hdr)
            t.check("smtp.helo=msgbas2x.cos.example.com" in hdr, "A-R: %r" % hdr)
            t.check(doc["dkim"] == [] and "dkim=none" in hdr, "dkim=none expected: %r" % hdr)
            t.check("dmarc=" in hdr and doc["dmarc"]["from_domain"] == "e9.example.com", "dmarc: %r" % hdr)
        finally:
            srv.stop()

    with t.case("null sender: postmaster@HELO"):
        srv = DnsServer(rrsets=zones["14"], timeouts=timeouts.get("14", ())).start()
        try:
            r = spf_run(srv.port, "192.168.218.40", "<>", "e9.example.com")
            hdr, doc = parse(r)
            t.check(doc["spf"]["sender"] == "postmaster@e9.example.com", "sender %r" % doc["spf"])
            t.check("smtp.mailfrom=postmaster@e9.example.com" in hdr, "A-R: %r" % hdr)
        finally:
            srv.stop()

    with t.case("bad client IP is a permerror, without DNS"):
        srv = DnsServer().start()
        try:
            r = spf_run(srv.port, "not-an-ip", "a@example.com", "x.example.com")
            hdr, doc = parse(r)
            t.check(doc["spf"]["result"] == "permerror", "got %r" % doc["spf"])
            t.check(not srv.queries, "queries sent: %r" % srv.queries)
        finally:
            srv.stop()


if __name__ == "__main__":
    run(main)
