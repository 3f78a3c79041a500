#!/usr/bin/python3
"""
bench/tls_handshakes.py - full TLS handshakes per second with connection
churn (issue 11): oceanmx-load -p 1 --tls (one message per connection, so
every message costs a full STARTTLS handshake; oceanmx-load keeps no session
cache) against oceanmx and against a private Postfix (bench/load/postfix_tls.py,
delivery discard), for an RSA-2048 and an ECDSA P-256 certificate: both
servers get the same key and certificate files. Per round, in alternating
order (of the certificates and of the servers):

  oceanmx       spool on the disk (/var/tmp, where Postfix keeps its queue),
                maildir sink on tmpfs (/dev/shm): the durable work Postfix's
                queue does, without the maildir files Postfix's discard skips
  oceanmx-disk  the maildir on the disk too (the setup of the first figure,
                2026-12-07: 828 vs 400/s)
  postfix       smtpd with STARTTLS, delivery discard(8), queue on /var/tmp

Plus, once a round, oceanmx with the same churn in clear (no --tls), to
show what TLS adds. For each run: handshakes/s (= msg/s), the server's CPU per handshake (all its
threads; for Postfix its master and every process under it) and the client's
(oceanmx-load, which does its own X25519 and signature check). Prints the
medians, oceanmx/Postfix for each certificate (of the medians, and of the
two runs of each round, which share the machine's load best), Postfix's
server CPU per handshake over oceanmx's, and the ceiling the measured
CPU costs allow on this machine (CPUs * 1 s / (server + client CPU per
handshake)); writes bench/results/tls-handshakes-DATE.md.

    bench/tls_handshakes.py [ROUNDS] [MESSAGES]
Needs root (Postfix), postfix, openssl, build/oceanmx and build/oceanmx-load.
"""
import json
import os
import platform
import resource
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
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integ"))
from lib import make_cert  # noqa: E402
from postfix_tls import PostfixTLS, missing_tools, wait_greeting  # noqa: E402

OMX = os.environ.get("OMX_BIN", os.path.join(ROOT, "build", "oceanmx"))
LOAD = os.environ.get("OMX_LOAD_BIN", os.path.join(ROOT, "build", "oceanmx-load"))
DISK = "/var/tmp"
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else DISK
CONNS = 20
CERTS = {"rsa": ("RSA-2048", "rsa"), "ecdsa": ("ECDSA P-256", "ec")}  # label, lib.make_cert kind
SERVERS = ("oceanmx", "oceanmx-disk", "postfix")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def children_cpu_us():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1e6


def proc_cpu_us(pid):
    with open("/proc/%d/stat" % pid) as f:
        f_ = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f_[11:13]) * 1e6 / os.sysconf("SC_CLK_TCK")


def churn(port, n, server_cpu, tls=True):
    """churn: (handshakes/s, server CPU µs per handshake, client CPU µs per handshake)."""
    s0, c0 = server_cpu(), children_cpu_us()
    out = subprocess.run([LOAD, "-m", str(n), "-c", str(CONNS), "-p", "1", "--size", "4096", "--json"] +
                         (["--tls"] if tls else []) + ["127.0.0.1:%d" % port],
                         capture_output=True, text=True, timeout=900)
    c1, s1 = children_cpu_us(), server_cpu()
    if out.returncode != 0:
        raise SystemExit("oceanmx-load: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
    j = json.loads(out.stdout)
    done = max(1, j["messages"]["delivered"])
    return j["msgs_per_s"], (s1 - s0) / done, (c1 - c0) / done


def oceanmx_round(n, key, crt, maildir_base, tls=True):
    port = free_port()
    spool = tempfile.mkdtemp(dir=DISK, prefix="omx-tlsb.")
    md = tempfile.mkdtemp(dir=maildir_base, prefix="omx-tlsb-md.")
    p = subprocess.Popen([OMX, "serve", "--listen", "127.0.0.1:%d" % port, "--spool", spool + "/spool", "--sink",
                          "maildir:" + md + "/md", "--tls-cert", crt, "--tls-key", key, "--metrics", "none",
                          "--dkim", "off", "--spf", "off", "--dmarc", "off", "--arc", "off"],
                         stderr=subprocess.DEVNULL)
    try:
        if not wait_greeting(port, 30):
            raise SystemExit("oceanmx did not start")
        return churn(port, n, lambda: proc_cpu_us(p.pid), tls)
    finally:
        p.terminate()
        p.wait(60)
        shutil.rmtree(spool, ignore_errors=True)
        shutil.rmtree(md, ignore_errors=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    why = missing_tools()
    if why:
        raise SystemExit("needs " + ", ".join(why))
    tmp = tempfile.mkdtemp(prefix="omx-tlsb-certs.")
    files = {}
    for kind, (_, alg) in CERTS.items():
        crt, key = make_cert(tmp, kind, alg, "localhost", ("localhost",), ("127.0.0.1",))
        files[kind] = (key, crt)
    res = {}  # (kind, server) -> [(rate, srv_us, cli_us)]
    load0 = open("/proc/loadavg").read().split()[0]
    for r in range(rounds):
        kinds = ["clear"] + list(CERTS) if r % 2 == 0 else list(CERTS)[::-1] + ["clear"]
        for kind in kinds:
            for who in (SERVERS if r % 2 == 0 else SERVERS[::-1]) if kind != "clear" else ("oceanmx",):
                key, crt = files["rsa" if kind == "clear" else kind]
                if kind == "clear":  # the same churn without --tls: what TLS adds
                    v = oceanmx_round(n, key, crt, TMPFS, tls=False)
                elif who == "postfix":
                    with PostfixTLS(delivery="discard", cert_files=(key, crt)) as box:
                        v = churn(box.port, n, box.cpu_us)
                else:
                    v = oceanmx_round(n, key, crt, TMPFS if who == "oceanmx" else DISK)
                res.setdefault((kind, who), []).append(v)
                print("round %d %-5s %-12s %6.0f handshakes/s, server %5.0f µs, client %4.0f µs per handshake"
                      % (r + 1, kind, who, v[0], v[1], v[2]), flush=True)

    def med(kind, who, i):
        return statistics.median(x[i] for x in res[(kind, who)])

    ncpu = os.cpu_count()
    lines = ["# Full TLS handshakes per second, connection churn (%s)" % time.strftime("%Y-%m-%d %H:%M"), "",
             "oceanmx-load -m %d -c %d -p 1 --size 4096 --tls; each certificate self-signed, the same files for both "
             "servers; %d rounds, alternating. oceanmx: spool on %s, maildir sink on %s (oceanmx-disk: on %s); "
             "Postfix %s: smtpd, discard(8), queue on %s. CPU per handshake: user + system, all threads or processes "
             "of the server; the client is oceanmx-load on the same %d CPUs." % (
                 n, CONNS, rounds, DISK, TMPFS, DISK,
                 subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip(),
                 DISK, ncpu), ""]
    for kind, (label, _) in CERTS.items():
        lines += ["## %s" % label, "", "| server | handshakes/s per round | median | server CPU/handshake | "
                  "client CPU/handshake | ceiling (%d CPUs) |" % ncpu, "| --- | --- | --- | --- | --- | --- |"]
        for who in SERVERS:
            srv, cli = med(kind, who, 1), med(kind, who, 2)
            lines.append("| %s | %s | %.0f | %.0f µs | %.0f µs | %.0f/s |" % (
                who, ", ".join("%.0f" % x[0] for x in res[(kind, who)]), med(kind, who, 0), srv, cli,
                ncpu * 1e6 / (srv + cli)))
        pf = med(kind, "postfix", 0)
        per_round = [o[0] / p[0] for o, p in zip(res[(kind, "oceanmx")], res[(kind, "postfix")])]
        lines += ["", "%s: oceanmx / Postfix **%.2fx** (oceanmx-disk / Postfix %.2fx); per round %s (median %.2fx); "
                  "Postfix uses %.1fx oceanmx's server CPU per handshake" % (
                      label, med(kind, "oceanmx", 0) / pf, med(kind, "oceanmx-disk", 0) / pf,
                      ", ".join("%.2f" % x for x in per_round), statistics.median(per_round),
                      med(kind, "postfix", 1) / med(kind, "oceanmx", 1)), ""]
    clear = med("clear", "oceanmx", 1)
    lines.append("oceanmx without --tls (the same churn, setup 'oceanmx'): %s msg/s (median %.0f), server CPU %.0f µs, "
                 "client %.0f µs per message; TLS adds %.0f µs of server CPU per connection with RSA-2048, %.0f µs with "
                 "ECDSA P-256.\n" % (", ".join("%.0f" % x[0] for x in res[("clear", "oceanmx")]),
                                     med("clear", "oceanmx", 0), clear, med("clear", "oceanmx", 2),
                                     med("rsa", "oceanmx", 1) - clear, med("ecdsa", "oceanmx", 1) - clear))
    lines.append("ECDSA / RSA handshakes/s: oceanmx %.2fx, Postfix %.2fx." % (
        med("ecdsa", "oceanmx", 0) / med("rsa", "oceanmx", 0), med("ecdsa", "postfix", 0) / med("rsa", "postfix", 0)))
    lines.append("\nMachine: %s, %d CPUs, kernel %s; load average %s before, %s after (shared with other builds)." % (
        platform.node(), ncpu, platform.release(), load0, open("/proc/loadavg").read().split()[0]))
    print("\n".join(lines))
    out = os.path.join(HERE, "results", "tls-handshakes-%s.md" % time.strftime("%Y-%m-%d-%H%M%S"))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
