#!/usr/bin/python3
"""
bench/proxy.py - the PROXY protocol listener's cost (issue 11): W1
(oceanmx-load, 20 sessions, 4 KiB) through one HAProxy to one oceanmx,
once to a plain --listen (HAProxy without send-proxy) and once to a
--listen-proxy (send-proxy-v2), alternating ROUNDS times in one run.
Prints msg/s per round, medians and the ratio proxy/plain; writes
bench/results/proxy-DATE.md. Needs haproxy, build/oceanmx, build/oceanmx-load.

    bench/proxy.py [ROUNDS] [MESSAGES]
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
OMX = os.environ.get("OMX_BIN", os.path.join(ROOT, "build", "oceanmx"))
LOAD = os.environ.get("OMX_LOAD_BIN", os.path.join(ROOT, "build", "oceanmx-load"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on %d" % port)


def w1(port, n):
    out = subprocess.run([LOAD, "-m", str(n), "-c", "20", "--size", "4096", "--json", "127.0.0.1:%d" % port],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit("oceanmx-load: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
    return json.loads(out.stdout)["msgs_per_s"]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    if shutil.which("haproxy") is None:
        raise SystemExit("needs haproxy")
    tmp = tempfile.mkdtemp(dir="/var/tmp", prefix="omx-proxyb.")
    plain, proxied = free_port(), free_port()
    f_plain, f_proxy = free_port(), free_port()
    omx = subprocess.Popen([OMX, "serve", "--listen", "127.0.0.1:%d" % plain, "--listen-proxy",
                            "127.0.0.1:%d" % proxied, "--spool", tmp + "/spool", "--sink", "maildir:" + tmp + "/md",
                            "--metrics", "none", "--max-connections-per-ip", "0"], stderr=subprocess.DEVNULL)
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("global\n    maxconn 512\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n"
                "    timeout server 60s\n"
                "frontend plain\n    bind 127.0.0.1:%d\n    default_backend plain\n"
                "backend plain\n    server s 127.0.0.1:%d\n"
                "frontend proxied\n    bind 127.0.0.1:%d\n    default_backend proxied\n"
                "backend proxied\n    server s 127.0.0.1:%d send-proxy-v2\n" % (f_plain, plain, f_proxy, proxied))
    hp = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = {"plain": [], "proxy": []}
    try:
        wait_port(plain)
        wait_port(f_plain)
        wait_port(f_proxy)
        for r in range(rounds):
            for who in (("plain", "proxy") if r % 2 == 0 else ("proxy", "plain")):
                v = w1(f_plain if who == "plain" else f_proxy, n)
                res[who].append(v)
                print("round %d %-6s %7.0f msg/s" % (r, who, v), flush=True)
    finally:
        hp.terminate()
        omx.terminate()
        hp.wait(30)
        omx.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)
    mp, mx = statistics.median(res["plain"]), statistics.median(res["proxy"])
    lines = ["# PROXY listener behind HAProxy (%s)" % time.strftime("%Y-%m-%d %H:%M"), "",
             "W1 (oceanmx-load -m %d -c 20 --size 4096) through one HAProxy, %d rounds alternating." % (n, rounds), "",
             "| listener | msg/s per round | median |", "| --- | --- | --- |",
             "| --listen (HAProxy without send-proxy) | %s | %.0f |" % (", ".join("%.0f" % x for x in res["plain"]), mp),
             "| --listen-proxy (send-proxy-v2) | %s | %.0f |" % (", ".join("%.0f" % x for x in res["proxy"]), mx),
             "", "proxy / plain: **%.2fx**" % (mx / mp)]
    print("\n".join(lines))
    with open(os.path.join(HERE, "results", "proxy-%s.md" % time.strftime("%Y-%m-%d-%H%M%S")), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
