#!/usr/bin/python3
"""dkim_verify.py MESSAGE DNSFILE - verify every DKIM-Signature of MESSAGE with
python3-dkim (Debian), an implementation independent of oceanmx-load's.
DNSFILE is the zone written by oceanmx-load --dkim-dns: lines
  NAME. IN TXT ( "part" "part" ... )
whose parts are joined into one TXT value. No network.
Exit 0: every signature verifies; 1: one does not; 2: usage/import error
(anything else: a crash)."""
import re
import sys

try:
    import dkim
except ImportError as e:
    print("cannot import dkim (Debian package python3-dkim): %s" % e)
    sys.exit(2)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    with open(sys.argv[1], "rb") as f:
        msg = f.read()
    recs = {}
    with open(sys.argv[2], "rb") as f:
        for line in f:
            m = re.match(rb"^(\S+)\s+IN\s+TXT\s+\((.*)\)\s*$", line)
            if m:
                recs[m.group(1).lower().rstrip(b".")] = b"".join(re.findall(rb'"([^"]*)"', m.group(2)))

    def dnsfunc(name, timeout=5):
        return recs.get(name.lower().rstrip(b"."))

    n = msg.count(b"\r\nDKIM-Signature:") + (1 if msg.startswith(b"DKIM-Signature:") else 0)
    if n == 0:
        print("no DKIM-Signature")
        return 1
    d = dkim.DKIM(msg)
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            print("signature %d does not verify: %s" % (i, e))
            return 1
        if not ok:
            print("signature %d does not verify" % i)
            return 1
    print("ok: %d signature(s) verify" % n)
    return 0


sys.exit(main())
