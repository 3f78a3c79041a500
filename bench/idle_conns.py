#!/usr/bin/python3
"""Memory cost of idle SMTP connections to a running server (oceanmx, or any SMTP server).

Opens N connections to HOST:PORT, waits for every 220 greeting, lets them sit idle, and
measures the server process's memory before and after (VmRSS and RssAnon from
/proc/PID/status, divided by N), then the kernel's socket memory and slab from /proc, then
closes them all. Source addresses are spread over 127.0.0.2.. (--sources) so that a per-address
connection limit is not what we measure.

    bench/idle_conns.py --pid PID --port 2525 [-n 5000] [--sources 50] [--json FILE]
"""
import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time


def status_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmSize", "VmData", "Threads"):
                out[k] = int(v.split()[0])
    return out


def sockstat():
    out = {}
    with open("/proc/net/sockstat") as f:
        for line in f:
            proto, _, rest = line.partition(":")
            vals = rest.split()
            out[proto] = {vals[i]: int(vals[i + 1]) for i in range(0, len(vals) - 1, 2)}
    return out


def meminfo_kb():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Slab", "SUnreclaim", "MemAvailable"):
                out[k] = int(v.split()[0])
    return out


def snapshot(pid):
    return {"status": status_kb(pid), "sockstat": sockstat(), "meminfo": meminfo_kb(),
            "fds": len(os.listdir("/proc/%d/fd" % pid))}


def raise_nofile(n):
    want = n + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise the hard limit
            return
        except (ValueError, OSError):
            want = hard
    if soft == resource.RLIM_INFINITY or soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_idle(host, port, n, sources, batch, timeout):
    """Returns (greeted sockets, counters). Keeps at most `batch` handshakes in flight."""
    sel = selectors.DefaultSelector()
    greeted, buf = [], {}
    stats = {"refused": 0, "errors": 0, "rejected_greeting": 0, "first_error": ""}
    started = 0
    pending = 0
    deadline = time.monotonic() + timeout

    def fail(s, why, key="errors"):
        nonlocal pending
        stats[key] += 1
        if not stats["first_error"]:
            stats["first_error"] = why
        sel.unregister(s)
        s.close()
        buf.pop(s, None)
        pending -= 1

    while (started < n or pending) and time.monotonic() < deadline:
        while started < n and pending < batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            if sources > 0:
                s.bind(("127.0.0.%d" % (2 + started % sources), 0))
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                stats["refused"] += 1
                stats["first_error"] = stats["first_error"] or os.strerror(rc)
                s.close()
                started += 1
                continue
            sel.register(s, selectors.EVENT_READ)
            buf[s] = b""
            started += 1
            pending += 1
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError as e:
                fail(s, str(e))
                continue
            if not data:
                fail(s, "closed before the greeting")
                continue
            buf[s] += data
            while b"\r\n" in buf[s]:
                line, _, rest = buf[s].partition(b"\r\n")
                buf[s] = rest
                if line.startswith(b"220 "):
                    sel.unregister(s)
                    buf.pop(s)
                    greeted.append(s)
                    pending -= 1
                    break
                if not line.startswith(b"220-"):
                    fail(s, "greeting %r" % line[:80], "rejected_greeting")
                    break
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    stats["timed_out"] = pending
    return greeted, stats


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="server process id (memory is read from /proc/PID)")
    p.add_argument("-n", "--connections", type=int, default=5000)
    p.add_argument("--sources", type=int, default=50,
                   help="spread client addresses over 127.0.0.2..127.0.0.(1+K); 0 = let the kernel pick")
    p.add_argument("--batch", type=int, default=200, help="handshakes in flight at once")
    p.add_argument("--timeout", type=float, default=180, help="bound on opening all connections (s)")
    p.add_argument("--settle", type=float, default=2.0, help="idle time before measuring (s)")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()

    raise_nofile(a.connections)
    page = os.sysconf("SC_PAGE_SIZE")
    before = snapshot(a.pid)
    t0 = time.monotonic()
    socks, stats = open_idle(a.host, a.port, a.connections, a.sources, a.batch, a.timeout)
    t_open = time.monotonic() - t0
    time.sleep(a.settle)
    held = snapshot(a.pid)
    # still connected? a server that closed them would show as readable EOF
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed_by_server = sum(1 for _ in sel.select(timeout=0))
    sel.close()
    for s in socks:
        s.close()
    time.sleep(a.settle)
    after = snapshot(a.pid)

    n = len(socks)
    d = lambda k: held["status"].get(k, 0) - before["status"].get(k, 0)
    tcp_mem_pages = held["sockstat"]["TCP"]["mem"] - before["sockstat"]["TCP"]["mem"]
    res = {
        "requested": a.connections,
        "greeted": n,
        "refused": stats["refused"],
        "rejected_greeting": stats["rejected_greeting"],
        "errors": stats["errors"],
        "timed_out": stats["timed_out"],
        "first_error": stats["first_error"],
        "readable_while_idle": closed_by_server,
        "open_seconds": round(t_open, 2),
        "server_fds_delta": held["fds"] - before["fds"],
        "vmrss_kb": [before["status"]["VmRSS"], held["status"]["VmRSS"], after["status"]["VmRSS"]],
        "rssanon_kb": [before["status"].get("RssAnon"), held["status"].get("RssAnon"),
                       after["status"].get("RssAnon")],
        "vmrss_bytes_per_conn": round(d("VmRSS") * 1024 / n) if n else None,
        "rssanon_bytes_per_conn": round(d("RssAnon") * 1024 / n) if n else None,
        "tcp_mem_pages": [before["sockstat"]["TCP"]["mem"], held["sockstat"]["TCP"]["mem"],
                          after["sockstat"]["TCP"]["mem"]],
        "tcp_mem_bytes_per_conn": round(tcp_mem_pages * page / n) if n else None,
        "tcp_inuse": [before["sockstat"]["TCP"]["inuse"], held["sockstat"]["TCP"]["inuse"],
                      after["sockstat"]["TCP"]["inuse"]],
        "slab_kb": [before["meminfo"]["Slab"], held["meminfo"]["Slab"], after["meminfo"]["Slab"]],
        "slab_bytes_per_conn": round((held["meminfo"]["Slab"] - before["meminfo"]["Slab"]) * 1024 / n) if n else None,
        "page_size": page,
    }
    print("idle connections: %d of %d greeted in %.1f s (refused %d, bad greeting %d, errors %d, "
          "timed out %d%s); %d became readable while idle (closed by the server or sent data)"
          % (n, a.connections, t_open, stats["refused"], stats["rejected_greeting"], stats["errors"],
             stats["timed_out"], (", first: " + stats["first_error"]) if stats["first_error"] else "",
             closed_by_server))
    print("server pid %d: VmRSS %d -> %d kB (%+d kB, %s B/conn), RssAnon %s -> %s kB (%s B/conn); "
          "after closing: VmRSS %d kB, RssAnon %s kB; open fds %+d"
          % (a.pid, res["vmrss_kb"][0], res["vmrss_kb"][1], d("VmRSS"), res["vmrss_bytes_per_conn"],
             res["rssanon_kb"][0], res["rssanon_kb"][1], res["rssanon_bytes_per_conn"],
             res["vmrss_kb"][2], res["rssanon_kb"][2], res["server_fds_delta"]))
    print("kernel (whole machine, both ends of every loopback connection): TCP mem %d -> %d pages "
          "(%s B/conn), TCP inuse %d -> %d; Slab %d -> %d kB (%s B/conn)"
          % (res["tcp_mem_pages"][0], res["tcp_mem_pages"][1], res["tcp_mem_bytes_per_conn"],
             res["tcp_inuse"][0], res["tcp_inuse"][1], res["slab_kb"][0], res["slab_kb"][1],
             res["slab_bytes_per_conn"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if n == a.connections else 1


if __name__ == "__main__":
    sys.exit(main())
