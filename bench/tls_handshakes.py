#!/usr/bin/python3
"""
bench/tls_handshakes.py - full TLS handshakes per second with connection
churn (issue 11): oceanmx-load -p 1 --tls (one message per connection, so
every message costs a full STARTTLS handshake; oceanmx-load keeps no session
cache) against oceanmx and against a private Postfix (bench/load/postfix_tls.py,
delivery discard) with certificates of the same kind (RSA-2048, self-signed),
alternating, ROUNDS times each, in one run. Prints msg/s (= handshakes/s) per
round, the medians and the ratio oceanmx/Postfix; writes
bench/results/tls-handshakes-DATE.md.

    bench/tls_handshakes.py [ROUNDS] [MESSAGES]
Needs root (Postfix), postfix, openssl, build/oceanmx and build/oceanmx-load.
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(HERE, "load"))
from postfix_tls import PostfixTLS, missing_tools, wait_greeting  # noqa: E402

OMX = os.environ.get("OMX_BIN", os.path.join(ROOT, "build", "oceanmx"))
LOAD = os.environ.get("OMX_LOAD_BIN", os.path.join(ROOT, "build", "oceanmx-load"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def churn(port, n):
    out = subprocess.run([LOAD, "-m", str(n), "-c", "20", "-p", "1", "--size", "4096", "--tls", "--json",
                          "127.0.0.1:%d" % port], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit("oceanmx-load: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
    return json.loads(out.stdout)["msgs_per_s"]


def oceanmx_round(n, tmp):
    key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-keyout", key, "-out", crt], check=True, capture_output=True)
    port = free_port()
    spool = tempfile.mkdtemp(dir="/var/tmp", prefix="omx-tlsb.")
    p = subprocess.Popen([OMX, "serve", "--listen", "127.0.0.1:%d" % port, "--spool", spool + "/spool", "--sink",
                          "maildir:" + spool + "/md", "--tls-cert", crt, "--tls-key", key, "--metrics", "none",
                          "--dkim", "off", "--spf", "off", "--dmarc", "off", "--arc", "off"],
                         stderr=subprocess.DEVNULL)
    try:
        if not wait_greeting(port, 30):
            raise SystemExit("oceanmx did not start")
        return churn(port, n)
    finally:
        p.terminate()
        p.wait(60)
        shutil.rmtree(spool, ignore_errors=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    why = missing_tools()
    if why:
        raise SystemExit("needs " + ", ".join(why))
    tmp = tempfile.mkdtemp(prefix="omx-tlsb-certs.")
    omx, pf = [], []
    for r in range(rounds):
        for who in (("oceanmx", "postfix") if r % 2 == 0 else ("postfix", "oceanmx")):
            if who == "oceanmx":
                v = oceanmx_round(n, tmp)
                omx.append(v)
            else:
                with PostfixTLS(delivery="discard") as box:
                    v = churn(box.port, n)
                pf.append(v)
            print("round %d %-8s %7.0f handshakes/s" % (r, who, v), flush=True)
    mo, mp = statistics.median(omx), statistics.median(pf)
    lines = ["# Full TLS handshakes per second, connection churn (%s)" % time.strftime("%Y-%m-%d %H:%M"),
             "", "oceanmx-load -m %d -c 20 -p 1 --size 4096 --tls, RSA-2048 self-signed, %d rounds alternating." % (n, rounds),
             "", "| server | handshakes/s per round | median |", "| --- | --- | --- |",
             "| oceanmx (maildir sink, verification off) | %s | %.0f |" % (", ".join("%.0f" % x for x in omx), mo),
             "| Postfix smtpd (discard) | %s | %.0f |" % (", ".join("%.0f" % x for x in pf), mp),
             "", "oceanmx / Postfix: **%.2fx**" % (mo / mp)]
    print("\n".join(lines))
    out = os.path.join(HERE, "results", "tls-handshakes-%s.md" % time.strftime("%Y-%m-%d-%H%M%S"))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
