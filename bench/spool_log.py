#!/usr/bin/python3
"""
bench/spool_log.py - issue 14 figures for the spool log: W1 (oceanmx-load,
20 sessions, 4 KiB, maildir sink) against two oceanmx binaries, alternating,
with server CPU per message over all threads (utime + stime of the process
from /proc, kernel included), and the recovery time of a spool holding N
undelivered 4 KiB messages with the delivery rate after.

  bench/spool_log.py w1 NEW_BIN BASE_BIN [ROUNDS] [MESSAGES]
  bench/spool_log.py recovery BIN [MESSAGES]
  bench/spool_log.py sync [DIR] [ROUNDS]

sync: the durability primitives, each variant alternated round by round on
the file system of DIR (default /var/tmp) with build/omx-sync-bench
(bench/sync/sync_bench.c), printed as ratios to what oceanmx does:
  maildir  a maildir batch of 16 and of 64 files made durable by syncfs
           (sinks/sink_maildir.c), by fdatasync one after another, or by
           one fdatasync per file all at once through an io_uring ring;
  commit   the spool's group commit of 16 and of 64 records: writes then one
           fdatasync (core/shard.c), RWF_DSYNC writes, or an O_DSYNC file;
  prealloc a 64 MiB segment made by posix_fallocate (core/spool_log.c) or by
           writing zeros, and the group commit in its first generation.
SPOOL_BENCH_MAILDIR_IN=/dev/shm (w1): the maildir on tmpfs, to see the
server's own work without the sink's file system. SPOOL_BENCH_MAILDIR_FRESH=1
(w1): each run's maildir on a fresh ext4 without a journal in a loop file, so
no run pays for the inodes the one before deleted.
"""
import json, os, re, shutil, socket, subprocess, sys, tempfile, time

LOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "oceanmx-load")
TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_greeting(port):
    end = time.time() + 30
    while time.time() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), 1)
            if s.recv(100).startswith(b"220"):
                s.sendall(b"QUIT\r\n"); s.close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("no greeting on %d" % port)


def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK


def maildir_of(tmp):
    # SPOOL_BENCH_MAILDIR_IN=/dev/shm puts the maildir on tmpfs: the spool and the
    # server's own work without the sink's file system (whose inode allocation
    # on a journal-less ext4 depends on what was deleted in the last minutes).
    base = os.environ.get("SPOOL_BENCH_MAILDIR_IN")
    if os.environ.get("SPOOL_BENCH_MAILDIR_FRESH"):
        return tmp + "/mdfs/maildir"
    return os.path.join(base, "omx-md-" + os.path.basename(tmp)) if base else tmp + "/maildir"


def maildir_fs(tmp, up):
    # SPOOL_BENCH_MAILDIR_FRESH=1: each run's maildir on a fresh ext4 without a
    # journal (like this disk) in a loop file: the same file system state for
    # every run, whatever the runs before deleted.
    if not os.environ.get("SPOOL_BENCH_MAILDIR_FRESH"):
        return
    img, mnt = tmp + "/mdfs.img", tmp + "/mdfs"
    if up:
        os.makedirs(mnt)
        subprocess.run(["truncate", "-s", "4G", img], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", img], check=True)
        subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    else:
        subprocess.run(["umount", mnt], check=True)


def start(binary, tmp, *extra):
    port = free_port()
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:%d" % port, "--spool", tmp + "/spool",
                          "--sink", "maildir:" + maildir_of(tmp), "--hostname", "bench.test",
                          "--shutdown-timeout", "10"] + list(extra), stderr=open(tmp + "/err", "ab"))
    wait_greeting(port)
    return p, port


def w1(new, base, rounds, n):
    res = {"new": [], "base": []}
    for r in range(rounds):
        for name, b in (("new", new), ("base", base)) if r % 2 == 0 else (("base", base), ("new", new)):
            tmp = tempfile.mkdtemp(prefix="omx-bench-", dir="/var/tmp")
            maildir_fs(tmp, True)
            p, port = start(b, tmp)
            c0 = cpu(p.pid)
            out = subprocess.run([LOAD, "-m", str(n), "-c", "20", "--size", "4096", "--json",
                                  "127.0.0.1:%d" % port], stdout=subprocess.PIPE, check=True).stdout
            rep = json.loads(out)
            # Delivery is part of the server's work: wait until the maildir holds them all.
            end = time.time() + 120
            while time.time() < end and len(os.listdir(maildir_of(tmp) + "/new")) < n:
                time.sleep(0.1)
            c1 = cpu(p.pid)
            p.terminate(); p.wait()
            maildir_fs(tmp, False)
            shutil.rmtree(maildir_of(tmp), ignore_errors=True)
            res[name].append((rep["msgs_per_s"], (c1 - c0) / n * 1e6))
            print("round %d %-4s %8.0f msg/s  %6.1f us CPU/msg (all threads, incl. delivery)" %
                  (r, name, rep["msgs_per_s"], (c1 - c0) / n * 1e6), flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
    for k in res:
        v = sorted(x[0] for x in res[k]); c = sorted(x[1] for x in res[k])
        print("%s: median %.0f msg/s, %.1f us/msg" % (k, v[len(v) // 2], c[len(c) // 2]))
    rn = sorted(a[0] / b[0] for a, b in zip(res["new"], res["base"]))
    print("ratio new/base msg/s per round: %s" % ", ".join("%.2f" % x for x in rn))


def recovery(binary, n):
    tmp = tempfile.mkdtemp(prefix="omx-bench-", dir="/var/tmp")
    md = tmp + "/maildir"
    os.makedirs(md + "/tmp")
    subprocess.run(["chattr", "+i", md + "/tmp"], check=True)  # the sink is down: everything stays queued
    p, port = start(binary, tmp)
    subprocess.run([LOAD, "-m", str(n), "-c", "20", "--size", "4096", "--json", "127.0.0.1:%d" % port],
                   stdout=subprocess.DEVNULL, check=True)
    p.kill(); p.wait()
    subprocess.run(["chattr", "-i", md + "/tmp"], check=True)
    subprocess.run(["sync"])
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"])  # a cold start, as after a power loss
    t0 = time.time()
    p, port = start(binary, tmp)
    t_up = time.time() - t0
    err = open(tmp + "/err").read()
    m = re.findall(r"spool.recover records=(\d+) pending=(\d+) ms=(\d+)", err)[-1]
    while len(os.listdir(md + "/new")) < n and time.time() - t0 < 600:
        time.sleep(0.2)
    t_all = time.time() - t0
    got = len(os.listdir(md + "/new"))
    p.terminate(); p.wait()
    print("recovery: %s records scanned, %s pending, scan %s ms; serving after %.2f s; %d delivered in %.1f s"
          " after start: %.0f msg/s" % (m[0], m[1], m[2], t_up, got, t_all, got / (t_all - t_up)))
    shutil.rmtree(tmp, ignore_errors=True)


def sync(base, rounds):
    tool = os.path.join(os.path.dirname(LOAD), "omx-sync-bench")
    tmp = tempfile.mkdtemp(prefix="omx-sync-", dir=base)
    try:
        for args in (["maildir", tmp, "16", "1024"], ["maildir", tmp, "64", "1024"],
                     ["commit", tmp, "16", "4096"], ["commit", tmp, "64", "4096"], ["prealloc", tmp, "64"]):
            subprocess.run([tool] + args + [str(rounds)], check=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "sync":
        sync(sys.argv[2] if len(sys.argv) > 2 else "/var/tmp", int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    elif sys.argv[1] == "w1":
        w1(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 2,
           int(sys.argv[5]) if len(sys.argv) > 5 else 20000)
    else:
        recovery(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 100000)
