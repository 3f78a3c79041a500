#!/usr/bin/env python3
"""
hostile.py - each attack against an oceanmx that is serving a normal W1 load
at the same time (oceanmx-load: 20 sessions, 4 KiB, closed loop), driven by
bench/hostile.sh.

Every attack runs between two clean runs (clean, attack 1, clean, attack 2,
..., clean), each on a fresh server with its own spool and maildir, and its
ratio is against the mean of its two neighbours: this machine is shared, and
its throughput drifts by a quarter over minutes.

The attacker is a process of its own (this script with --attack NAME) in a
CPU cgroup capped at --attacker-cpu cores (default 0.5), beside a spinner at
SCHED_IDLE in the same cgroup that takes whatever the attacker leaves of the
cap. So every run, clean or not, gives the same half core to "the attacker's
side", and the ratio shows what the attack costs the server, not how much of
this 2-core machine a Python attacker takes (on the internet the attacker's
CPU is someone else's). Without a writable cpu cgroup it runs uncapped and
says so.

Per run: the normal clients' msg/s and p99, the server's peak memory (VmHWM),
the attack's peak connections and its own acknowledged messages; then the
server is stopped, started again on the same spool (so nothing acknowledged
is merely late) and the maildir counted: lost = acknowledged - delivered,
duplicated = the other way. Attackers use other loopback addresses
(127.1.x.y), as they would be other hosts, so the per-address limits apply
to them and not to the normal clients.

    hostile.py --bin build/oceanmx --load build/oceanmx-load --out FILE.md [--duration S] [--only a,b]

Exit status 1 when an attack leaves the normal clients below --min-ratio
(0.8) of the clean runs' msg/s, or loses an acknowledged message.
"""

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integ"))
from lib import make_cert  # noqa: E402


def split255(b):
    """split255: a TXT value as the 255-octet character-strings DNS needs (RFC 1035 3.3.14)."""
    return [b[i:i + 255] for i in range(0, len(b), 255)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def vm_hwm(pid):
    try:
        for ln in open("/proc/%d/status" % pid):
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) * 1024
    except OSError:
        pass
    return 0


def addr(i):
    """addr gives attacker address number i: 127.1.x.y (never 127.0.0.1, the normal clients')."""
    return "127.1.%d.%d" % (i // 250, 1 + i % 250)


def connect(i, port, timeout=10):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((addr(i), 0))
    s.connect(("127.0.0.1", port))
    return s


# ---------------------------------------------------------------- attacks
# Each is a function (ctx) -> None that runs until ctx.stop is set; it counts
# connections in ctx.conns (peak open) and its own 250s in ctx.acked.


class Ctx:
    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.conns = 0
        self.peak = 0
        self.acked = 0
        self.sent = 0

    def opened(self, n=1):
        with self.lock:
            self.conns += n
            self.peak = max(self.peak, self.conns)

    def closed(self, n=1):
        with self.lock:
            self.conns -= n


def idle_conns(n, per_addr):
    def attack(ctx):
        socks = []
        for i in range(n):
            if ctx.stop.is_set():
                break
            try:
                s = connect(i // per_addr, ctx.port)
                s.setblocking(False)
                socks.append(s)
                ctx.opened()
            except OSError:
                time.sleep(0.01)
        ctx.stop.wait()
        for s in socks:
            s.close()
        ctx.closed(len(socks))
    return attack


def pipelining_flood(ctx):
    """pipelining_flood: 50 sessions sending EHLO without ever reading a reply."""
    socks = []
    for i in range(50):
        try:
            s = connect(i // 10, ctx.port)
            s.setblocking(False)
            socks.append(s)
            ctx.opened()
        except OSError:
            pass
    chunk = b"EHLO flood.test\r\n" * 4096
    while not ctx.stop.is_set():
        wrote = False
        for s in socks:
            try:
                s.send(chunk)
                wrote = True
            except (BlockingIOError, OSError):
                pass
        if not wrote:
            time.sleep(0.05)  # every socket full: the server stopped reading them
    for s in socks:
        s.close()


def conn_flood(ctx):
    """conn_flood: one address connecting as fast as 4 threads can, closing at once."""
    def w():
        while not ctx.stop.is_set():
            try:
                s = connect(7, ctx.port, timeout=2)
                ctx.opened()
                with ctx.lock:
                    ctx.sent += 1
                try:
                    s.recv(256)
                except OSError:
                    pass
                s.close()
                ctx.closed()
            except OSError:
                time.sleep(0.001)
    ths = [threading.Thread(target=w) for _ in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()


def greet_ehlo(s):
    """greet_ehlo reads the greeting, says EHLO and reads its reply; returns the reader."""
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO attacker.test\r\n")
    while True:
        ln = f.readline()
        if not ln or ln[3:4] == b" ":
            break
    return f


def send_raw_sessions(ctx, nthreads, body_fn, mail_from="a@x.test", cmd_fn=None):
    """send_raw_sessions: nthreads sessions each looping one transaction with body_fn() as content."""
    def w(k):
        while not ctx.stop.is_set():
            try:
                s = connect(20 + k, ctx.port, timeout=30)
            except OSError:
                time.sleep(0.05)
                continue
            ctx.opened()
            try:
                f = greet_ehlo(s)
                if cmd_fn:
                    cmd_fn(s, f)
                    continue
                while not ctx.stop.is_set():
                    s.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n" % mail_from(k).encode()
                              if callable(mail_from) else b"MAIL FROM:<%s>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n" % mail_from.encode())
                    codes = [f.readline()[:3] for _ in range(3)]
                    if codes[2] != b"354":
                        break
                    s.sendall(body_fn() + b"\r\n.\r\n")
                    ln = f.readline()
                    with ctx.lock:
                        ctx.sent += 1
                        if ln.startswith(b"250"):
                            ctx.acked += 1
                    if not ln.startswith((b"250", b"4", b"5")):
                        break
            except OSError:
                pass
            finally:
                s.close()
                ctx.closed()
    ths = [threading.Thread(target=w, args=(k,)) for k in range(nthreads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()


def long_lines(ctx):
    """long_lines: 1 MB command lines, and messages with 1 MB lines in DATA."""
    line = b"X" * (1 << 20)

    def cmd(s, f):
        while not ctx.stop.is_set():
            s.sendall(b"NOOP " + line + b"\r\n")
            if not f.readline():
                return
    t1 = threading.Thread(target=send_raw_sessions, args=(ctx, 2, None), kwargs={"cmd_fn": cmd})
    t1.start()
    send_raw_sessions(ctx, 2, lambda: b"Subject: long\r\n\r\n" + line)
    t1.join()


def mime_bombs():
    deep = ["Subject: deep\r\nMIME-Version: 1.0\r\n"]
    for i in range(50000):
        deep.append("Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n" % (i, i))
    deep = "".join(deep).encode() + b"\r\nend\r\n"
    wide = [b"Subject: wide\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"w\"\r\n\r\n"]
    wide += [b"--w\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(100000)]
    wide = b"".join(wide) + b"--w--\r\n"
    return [deep, wide]


def mime_attack(ctx):
    bombs = mime_bombs()
    k = [0]

    def body():
        k[0] += 1
        return bombs[k[0] % 2]
    send_raw_sessions(ctx, 2, body)


def big_plain_attack(ctx):
    """big_plain_attack: plain messages of the MIME bombs' sizes, no structure:
    what the bombs cost beyond their bytes is the difference of the two rows."""
    sizes = [len(b) for b in mime_bombs()]
    line = b"x" * 76 + b"\r\n"
    plain = [b"Subject: big\r\n\r\n" + line * (n // len(line)) for n in sizes]
    k = [0]

    def body():
        k[0] += 1
        return plain[k[0] % 2]
    send_raw_sessions(ctx, 2, body)


def nul_attack(ctx):
    def body():
        return (b"From: <a\x00b@x.test>\r\nSubject: Invoice\x00 tail\r\nX-Nul: \x00\x00\x00\r\n\r\n"
                + b"body\x00with\x00nuls\r\n" * 200)
    send_raw_sessions(ctx, 2, body)


def der_len(n):
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der(tag, body):
    return bytes([tag]) + der_len(len(body)) + body


def big_rsa_spki(bits):
    """big_rsa_spki: a SubjectPublicKeyInfo with a random odd `bits`-bit modulus and e=65537."""
    n = random.getrandbits(bits) | (1 << (bits - 1)) | 1
    nb = n.to_bytes(bits // 8, "big")
    rsakey = der(0x30, der(0x02, b"\x00" + nb) + der(0x02, (65537).to_bytes(3, "big")))
    algo = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    return der(0x30, algo + der(0x03, b"\x00" + rsakey))


def dkim_attack(ctx):
    sig = base64.b64encode(os.urandom(2048)).decode()
    bh = base64.b64encode(os.urandom(32)).decode()

    def body():
        return ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=big.test; s=k16384;\r\n"
                " h=from:subject; bh=%s;\r\n b=%s\r\nFrom: <a@big.test>\r\nSubject: huge key\r\n\r\nhello\r\n"
                % (bh, sig)).encode()
    send_raw_sessions(ctx, 4, body, mail_from="a@big.test")


def spf_attack(ctx):
    n = [0]

    def frm(k):
        n[0] += 1
        return "a@d%d.amp.test" % (n[0] % 1000)
    send_raw_sessions(ctx, 4, lambda: b"From: <a@amp.test>\r\nSubject: spf\r\n\r\nhello\r\n", mail_from=frm)


def spf_zone():
    z = {}
    for i in range(1000):
        mech = " ".join("a:v%d.d%d.amp.test" % (j, i) for j in range(5))
        mech += " " + " ".join("include:c%d.amp.test" % j for j in range(1, 4))
        z["d%d.amp.test" % i] = [(300, [("v=spf1 %s -all" % mech).encode()])]
    for j in range(1, 40):
        z["c%d.amp.test" % j] = [(300, [("v=spf1 include:c%d.amp.test a:x%d.amp.test -all" % (j + 1, j)).encode()])]
    z["k16384._domainkey.big.test"] = [(300, split255(b"v=DKIM1; k=rsa; p=" + base64.b64encode(big_rsa_spki(16384))))]
    return z



def tls_abandon(ctx):
    """tls_abandon: STARTTLS then a ClientHello, the server's first flight read
    (its key exchange and signature made), then the connection dropped, from 4
    threads as fast as they go; beside them 200 connections stalled halfway
    through a ClientHello (each holds a slot until --timeout-tls)."""
    import ssl
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    sctx.check_hostname = False
    sctx.verify_mode = ssl.CERT_NONE

    def starttls(s):
        f = greet_ehlo(s)
        s.sendall(b"STARTTLS\r\n")
        return f.readline().startswith(b"220")

    def hello():
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = sctx.wrap_bio(inc, out, server_side=False, server_hostname="bench.test")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return out.read()

    stalled = []
    for i in range(200):
        try:
            s = connect(400 + i // 50, ctx.port)
            if starttls(s):
                s.sendall(hello()[:60])
                stalled.append(s)
                ctx.opened()
            else:
                s.close()
        except OSError:
            pass

    def w(k):
        n = 0
        while not ctx.stop.is_set():
            n += 1
            try:
                s = connect(300 + k * 16 + n % 16, ctx.port, timeout=10)
            except OSError:
                time.sleep(0.01)
                continue
            ctx.opened()
            try:
                if starttls(s):
                    s.sendall(hello())
                    if s.recv(16384):
                        with ctx.lock:
                            ctx.sent += 1
            except OSError:
                pass
            finally:
                s.close()
                ctx.closed()
    ths = [threading.Thread(target=w, args=(k,)) for k in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    for s in stalled:
        s.close()
    ctx.closed(len(stalled))


ATTACKS = [
    ("slowloris", "2,000 idle connections", idle_conns(2000, 90), []),
    ("conns10k", "10,000 concurrent connections", idle_conns(10000, 90), []),
    ("pipeline", "pipelining flood, replies never read (50 sessions)", pipelining_flood, []),
    ("connflood", "connection flood from one address (4 threads)", conn_flood, []),
    ("longlines", "1 MB command lines and 1 MB DATA lines (4 sessions)", long_lines, []),
    ("spf", "SPF amplification: 1000 domains, include chains, void lookups (4 sessions)", spf_attack, []),
    ("dkim16k", "16384-bit DKIM key (4 sessions)", dkim_attack, []),
    ("mime", "MIME bombs: 50,000 levels, 100,000 parts (2 sessions)", mime_attack, []),
    ("bigplain", "plain messages of the MIME bombs' sizes, no structure (2 sessions)", big_plain_attack, []),
    ("nul", "NUL bytes in headers and body (2 sessions)", nul_attack, []),
    ("tls", "TLS handshakes abandoned after the server's first flight (4 threads) + 200 stalled mid-ClientHello,"
     " RSA-2048 certificate", tls_abandon, []),
    ("tlsdual", "the same with an RSA-2048 and an ECDSA P-256 certificate for the name (README: TLS)",
     tls_abandon, []),
]


# ---------------------------------------------------------------- runner


def count_files(md):
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len([x for x in os.listdir(os.path.join(md, sub)) if not x.startswith(".")])
        except FileNotFoundError:
            pass
    return n


class CpuCap:
    """CpuCap: a CPU cgroup (v1 cpu.cfs_quota_us, or v2 cpu.max) holding the
    attacker's side at `cores`, with a SCHED_IDLE spinner in it for the whole
    run; None of it when no cgroup is writable (self.path is then None)."""

    def __init__(self, cores):
        self.path, self.v2, self.spinner = None, False, None
        name = "omx-hostile-%d" % os.getpid()
        period = 100000
        for root, v2 in (("/sys/fs/cgroup/cpu", False), ("/sys/fs/cgroup", True)):
            try:
                if v2 and "cpu" not in open(os.path.join(root, "cgroup.subtree_control")).read().split():
                    continue
                path = os.path.join(root, name)
                os.mkdir(path)
                if v2:
                    open(os.path.join(path, "cpu.max"), "w").write("%d %d" % (int(cores * period), period))
                else:
                    open(os.path.join(path, "cpu.cfs_period_us"), "w").write(str(period))
                    open(os.path.join(path, "cpu.cfs_quota_us"), "w").write(str(int(cores * period)))
                self.path, self.v2 = path, v2
                break
            except OSError:
                continue
        if self.path:
            self.spinner = self.spawn([sys.executable, os.path.abspath(__file__), "--spin"])

    def spawn(self, argv, **kw):
        """spawn starts argv inside the cgroup (or plainly, without one)."""
        path = self.path

        def enter():
            if path:
                open(os.path.join(path, "cgroup.procs"), "w").write(str(os.getpid()))
        return subprocess.Popen(argv, preexec_fn=enter, **kw)

    def close(self):
        if self.spinner:
            self.spinner.kill()
            self.spinner.wait()
        if self.path:
            for _ in range(50):
                try:
                    os.rmdir(self.path)
                    break
                except OSError:
                    time.sleep(0.1)


def spin():
    """spin burns what the attacker leaves of the cap, at the lowest priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    while True:
        pass


def attack_main(name, port):
    """attack_main runs one attack in this process until SIGTERM, then prints its counts as JSON."""
    fn = {n: f for n, _, f, _ in ATTACKS}[name]
    ctx = Ctx(port)
    signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
    th = threading.Thread(target=fn, args=(ctx,), daemon=True)
    th.start()
    while not ctx.stop.is_set():
        ctx.stop.wait(0.2)
    th.join(timeout=60)
    print(json.dumps({"peak": ctx.peak, "acked": ctx.acked, "sent": ctx.sent}), flush=True)


def start_server(a, argv, log):
    srv = subprocess.Popen(argv, stdout=log, stderr=log)
    port = int(argv[argv.index("--listen") + 1].rsplit(":", 1)[1])
    deadline = time.time() + 20
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            ok = s.recv(64).startswith(b"220")
            s.close()
            if ok:
                return srv
        except OSError:
            pass
        if time.time() > deadline or srv.poll() is not None:
            raise SystemExit("server did not start (log %s)" % log.name)
        time.sleep(0.05)


def stop_server(srv):
    srv.send_signal(signal.SIGTERM)
    try:
        return srv.wait(timeout=30)
    except subprocess.TimeoutExpired:
        srv.kill()
        srv.wait()
        return "hung"


# Hardening flags every run (clean ones too) is given, as README "Hardening"
# recommends for a server on the internet; --max-input-rate is the default.
SERVER_LIMITS = ["--max-tls-rate", "10"]


def one_run(a, cap, name, dns_port):
    tmp = tempfile.mkdtemp(prefix="omx-hostile-", dir=a.dir)
    port = free_port()
    md = os.path.join(tmp, "maildir")
    log = open(os.path.join(tmp, "server.log"), "wb")
    argv = [a.bin, "serve", "--listen", "127.0.0.1:%d" % port, "--hostname", "bench.test",
            "--spool", os.path.join(tmp, "spool"), "--sink", "maildir:" + md,
            "--max-connections", "12000", "--dns", "127.0.0.1:%d" % dns_port,
            "--dns-timeout", "1000", "--shutdown-timeout", "5"] + SERVER_LIMITS + (a.tls_dual_args if name == "tlsdual" else a.tls_args)
    srv = start_server(a, argv, log)
    att = None
    try:
        if name != "clean":
            att = cap.spawn([sys.executable, os.path.abspath(__file__), "--attack", name, "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
            time.sleep(a.settle)
        r = subprocess.run([a.load, "--json", "-q", "-d", str(a.duration), "-c", "20", "--max-errors", "0",
                            "127.0.0.1:%d" % port], capture_output=True, text=True)
        try:
            res = json.loads(r.stdout)
        except ValueError:
            res = {"msgs_per_s": 0, "latency_us": {"p99": 0}, "messages": {"delivered": 0}, "connection_errors": -1}
        counts = {"peak": 0, "acked": 0, "sent": 0}
        if att:
            att.send_signal(signal.SIGTERM)
            try:
                out, _ = att.communicate(timeout=90)
                counts = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                att.kill()
                att.wait()
        hwm = vm_hwm(srv.pid)
        alive = srv.poll() is None
        acked = res["messages"]["delivered"] + counts["acked"]
        rc = stop_server(srv)
        # Started again on the same spool: whatever was acknowledged and not
        # yet delivered is delivered now, so a count short of it is a loss.
        srv = start_server(a, argv, log)
        deadline, last, still = time.time() + 120, -1, time.time()
        while time.time() < deadline:
            n = count_files(md)
            if n >= acked:
                break
            if n != last:
                last, still = n, time.time()
            elif time.time() - still > 10:
                break  # nothing new for 10 s
            time.sleep(0.2)
        time.sleep(0.5)
        delivered = count_files(md)
        stop_server(srv)
        return {"name": name, "msgs_per_s": res["msgs_per_s"], "p99_ms": res["latency_us"]["p99"] / 1000.0,
                "load_errors": res.get("connection_errors", 0), "failed": res["messages"].get("failed", 0),
                "hwm": hwm, "peak_conns": counts["peak"], "attack_sent": counts["sent"],
                "attack_acked": counts["acked"], "acked": acked, "delivered": delivered,
                "lost": max(0, acked - delivered), "dup": max(0, delivered - acked), "alive": alive, "rc": rc}
    finally:
        if att and att.poll() is None:
            att.kill()
        if srv.poll() is None:
            srv.kill()
        log.close()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def cert_args(d, kind):
    """cert_args: a self-signed certificate for bench.test: --tls-cert/--tls-key arguments."""
    crt, key = make_cert(d, kind, kind, "bench.test", ("bench.test",))
    return ["--tls-cert", crt, "--tls-key", key]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--load")
    ap.add_argument("--out")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds the attack runs before the load starts")
    ap.add_argument("--min-ratio", type=float, default=0.8)
    ap.add_argument("--attacker-cpu", type=float, default=0.5, help="cores the attacker's cgroup may use")
    ap.add_argument("--only", default="")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--attack", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--spin", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.spin:
        spin()
    if a.attack:
        attack_main(a.attack, a.port)
        return
    if not (a.bin and a.load and a.out):
        ap.error("--bin, --load and --out are required")
    from dns_server import DnsServer
    only = set(x for x in a.only.split(",") if x)
    attacks = [x for x in ATTACKS if not only or x[0] in only]
    certdir = tempfile.mkdtemp(prefix="omx-hostile-cert-", dir=a.dir)
    tls = any(x[0].startswith("tls") for x in attacks)
    a.tls_args = cert_args(certdir, "rsa") if tls else []
    a.tls_dual_args = a.tls_args + cert_args(certdir, "ec") if tls else []
    cap = CpuCap(a.attacker_cpu)
    capnote = ("The attacker's side (the attack process, and a SCHED_IDLE spinner that takes what it leaves) is held"
               " to %.2g cores in every run, clean ones included, by the cgroup %s."
               % (a.attacker_cpu, cap.path) if cap.path else
               "No writable CPU cgroup here: the attacker ran uncapped, so its own CPU on this machine is in the"
               " figures.")
    print(capnote, flush=True)
    dns = DnsServer(spf_zone())
    dns.start()
    rows, cleans = [], []
    try:
        cleans.append(one_run(a, cap, "clean", dns.port))
        print("clean: %.0f msg/s p99 %.1f ms" % (cleans[-1]["msgs_per_s"], cleans[-1]["p99_ms"]), flush=True)
        for name, desc, fn, _ in attacks:
            r = one_run(a, cap, name, dns.port)
            r["desc"] = desc
            rows.append(r)
            print("%s: %.0f msg/s p99 %.1f ms, VmHWM %.0f MiB, peak attack conns %d, attack sent %d acked %d, "
                  "acked %d delivered %d" % (name, r["msgs_per_s"], r["p99_ms"], r["hwm"] / 1048576, r["peak_conns"],
                                            r["attack_sent"], r["attack_acked"], r["acked"], r["delivered"]),
                  flush=True)
            cleans.append(one_run(a, cap, "clean", dns.port))
            print("clean: %.0f msg/s p99 %.1f ms" % (cleans[-1]["msgs_per_s"], cleans[-1]["p99_ms"]), flush=True)
    finally:
        dns.stop()
        cap.close()
        shutil.rmtree(certdir, ignore_errors=True)
    bad = []
    cl = [c["msgs_per_s"] for c in cleans]
    out = ["# hostile load: normal W1 clients (oceanmx-load, 20 sessions, 4 KiB, %d s) beside each attack" % a.duration,
           "",
           capnote,
           "",
           "Every server (clean runs too) ran with %s and the default --max-input-rate (16M per connection)."
           % " ".join(SERVER_LIMITS),
           "",
           "Each attack ran between two clean runs (no attack); its ratio is against their mean. Clean runs: %s msg/s"
           " (p99 %s ms), VmHWM up to %.0f MiB; lost/dup counted after a restart on the same spool."
           % (", ".join("%.0f" % x for x in cl), ", ".join("%.1f" % c["p99_ms"] for c in cleans),
              max(c["hwm"] for c in cleans) / 1048576),
           "",
           "| attack | attack conns (peak) | attack sent | msg/s | ratio | p99 ms | VmHWM MiB | acked (attack) "
           "| delivered | lost | dup | verdict |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for c in cleans:
        if c["lost"] or c["dup"]:
            bad.append("clean")
    for i, r in enumerate(rows):
        base = (cl[i] + cl[i + 1]) / 2
        ratio = r["msgs_per_s"] / base if base else 0
        ok = ratio >= a.min_ratio and r["lost"] == 0 and r["alive"]
        if not ok:
            bad.append(r["name"])
        out.append("| %s: %s | %d | %d | %.0f | %.2f | %.1f | %.0f | %d (%d) | %d | %d | %d | %s |"
                   % (r["name"], r["desc"], r["peak_conns"], r["attack_sent"], r["msgs_per_s"], ratio, r["p99_ms"],
                      r["hwm"] / 1048576, r["acked"], r["attack_acked"], r["delivered"], r["lost"], r["dup"],
                      "ok" if ok else ("FAIL" + ("" if r["alive"] else " (server died)"))))
    out.append("")
    out.append("attack sent: messages the attack sent (longlines, mime, bigplain, nul, dkim16k, spf), connections"
               " it opened (connflood), or handshakes it abandoned after the server's first flight (tls).")
    text = "\n".join(out) + "\n"
    with open(a.out, "a") as f:
        f.write(text)
    print(text)
    if bad:
        print("below %.2f of the clean throughput or lost mail: %s" % (a.min_ratio, ", ".join(sorted(set(bad)))))
        sys.exit(1)


if __name__ == "__main__":
    main()
