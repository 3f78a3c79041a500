#!/usr/bin/python3
"""
bench/stream_outage.py - the stream sink's consumer stopped for OUTAGE
seconds during a load (issue 10): oceanmx-load sends MESSAGES (4 KiB, 20
sessions) while the example consumer (sinks/examples/stream_consumer.py,
storing each message under its id on a tmpfs) is killed after 3 s and
started again OUTAGE s later. Reports: acknowledged, delivered (unique ids
the consumer stored), lost (acknowledged and never stored), the backlog when
the consumer came back and the catch-up rate (backlog / time until the
spool owed nothing). Writes bench/results/stream-outage-DATE.md.

    bench/stream_outage.py [OUTAGE] [MESSAGES]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OMX = os.environ.get("OMX_BIN", os.path.join(ROOT, "build", "oceanmx"))
LOAD = os.environ.get("OMX_LOAD_BIN", os.path.join(ROOT, "build", "oceanmx-load"))
CONSUMER = os.path.join(ROOT, "sinks", "examples", "stream_consumer.py")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def owed(spool):
    out = subprocess.run([OMX, "spool", "stats", "--spool", spool], capture_output=True, text=True)
    for ln in out.stdout.splitlines():
        if ln.startswith("queued "):
            return int(ln.split()[1])
    return -1


def main():
    outage = float(sys.argv[1]) if len(sys.argv) > 1 else 30
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 30000
    tmp = tempfile.mkdtemp(dir="/var/tmp", prefix="omx-outage.")
    store = tempfile.mkdtemp(dir="/dev/shm", prefix="omx-outage-store.")
    sock = os.path.join(tmp, "c.sock")
    port = free_port()
    spool = os.path.join(tmp, "spool")
    srv = subprocess.Popen([OMX, "serve", "--listen", "127.0.0.1:%d" % port, "--spool", spool,
                            "--sink", "unix:%s?timeout=5" % sock, "--sink-retry-first", "1", "--sink-retry-max", "2",
                            "--metrics", "none", "--dkim", "off", "--spf", "off", "--dmarc", "off", "--arc", "off"],
                           stderr=subprocess.DEVNULL)
    cons = subprocess.Popen(["/usr/bin/python3", CONSUMER, "unix:" + sock, store])
    res = {}
    try:
        end = time.time() + 30
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.05)

        def load():
            out = subprocess.run([LOAD, "-m", str(n), "-c", "20", "--size", "4096", "--json", "127.0.0.1:%d" % port],
                                 capture_output=True, text=True, timeout=900)
            res.update(json.loads(out.stdout))
        th = threading.Thread(target=load)
        th.start()
        time.sleep(3)
        cons.kill()
        cons.wait()
        time.sleep(outage)
        backlog = owed(spool)
        stored_back = len([f for f in os.listdir(store) if f.endswith(".eml")])
        cons = subprocess.Popen(["/usr/bin/python3", CONSUMER, "unix:" + sock, store])
        t_back = time.time()
        th.join()
        while owed(spool) > 0 and time.time() - t_back < 600:
            time.sleep(0.2)
        t_done = time.time()
        acked = res["messages"]["delivered"]
        stored = len([f for f in os.listdir(store) if f.endswith(".eml")])
        lines = ["# Stream sink: consumer stopped %.0f s during a load (%s)" % (outage, time.strftime("%Y-%m-%d %H:%M")),
                 "", "oceanmx-load -m %d -c 20 --size 4096 (%.0f msg/s over the run); the example consumer storing "
                 "each message on tmpfs, killed 3 s in and back %.0f s later." % (n, res["msgs_per_s"], outage), "",
                 "| acknowledged | delivered (unique ids) | lost | backlog when it came back | caught up in | catch-up rate |",
                 "| --- | --- | --- | --- | --- | --- |",
                 "| %d | %d | %d | %d | %.1f s | %.0f msg/s |" % (acked, stored, max(0, acked - stored), backlog,
                                                            t_done - t_back,
                                                            (stored - stored_back) / max(t_done - t_back, 0.001))]
        print("\n".join(lines))
        with open(os.path.join(HERE, "results", "stream-outage-%s.md" % time.strftime("%Y-%m-%d-%H%M%S")), "w") as f:
            f.write("\n".join(lines) + "\n")
    finally:
        cons.kill()
        srv.terminate()
        srv.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
