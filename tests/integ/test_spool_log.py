"""
test_spool_log - the spool as a log (docs/spool.md), through real clients:

- a sink that is down (the maildir's tmp/ made immutable with chattr +i, which
  stops root too) keeps thousands of records in the log; `oceanmx spool stats`
  counts them; kill -9, a restart finds them all and delivers every one;
- a spool that fills up while the sink is down answers 452 4.3.1, and accepts
  mail again once the sink is back and the log drained (after a restart,
  since the first retry is 30 s away);
- a torn record at a segment's tail (half a record, or a whole one with a
  flipped byte) is ignored at restart: the records before it are delivered,
  the server appends after a restart;
- kill -9 under load with 64 KiB segments (so segments are recycled many
  times a second) and with delivery running: every acknowledged message is
  delivered, and only a few twice;
- `oceanmx spool ls|show|retry|delete` on a live server.
"""

import os
import re
import signal
import subprocess
import threading
import time

from lib import (Conn, Server, Skip, T_DELIVER, crlf, ehlo, omx_bin, parse_queue_id, run, scale,
                 send_message)


def chattr(path, flag):
    r = subprocess.run(["chattr", flag, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return r.returncode == 0


def block_sink(srv):
    tmp = os.path.join(srv.maildir_path, "tmp")
    os.makedirs(tmp, exist_ok=True)
    if not chattr(tmp, "+i"):
        raise Skip("chattr +i does not work here (needs root on ext2/3/4, xfs or btrfs)")
    return tmp


def spool_cmd(srv, *args):
    r = subprocess.run([omx_bin(), "spool"] + list(args) + ["--spool", srv.spool], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def queued(srv):
    rc, out, err = spool_cmd(srv, "stats")
    m = re.search(r"^queued (\d+)$", out, re.M)
    return int(m.group(1)) if m else -1


def send_many(port, n, tag, conns=4):
    """send_many: n messages over `conns` pipelining sessions; returns {queue id: content}."""
    acked, lock = {}, threading.Lock()

    def worker(w):
        c = Conn(port)
        c.cmd("EHLO load.test")
        for k in range(w, n, conns):
            content = crlf("Subject: %s %d\nMessage-ID: <%s-%d@x.test>\n\nbody %d\n" % (tag, k, tag, k, k))
            c.send("MAIL FROM:<s@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n")
            if c.reply().code != 250 or c.reply().code != 250:
                break
            if c.reply().code != 354:
                break
            c.send(content.encode() if isinstance(content, str) else content)
            c.send(b".\r\n")
            r = c.reply()
            if r.code != 250:
                break
            with lock:
                acked[parse_queue_id(r)] = content
        c.close()

    ths = [threading.Thread(target=worker, args=(w,)) for w in range(conns)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return acked


def main(t):
    thousands_then_restart(t)
    fills_while_sink_down(t)
    torn_tail(t)
    kill_during_recycle_and_delivery(t)


def thousands_then_restart(t):
    n = scale(3000, 600)
    with Server() as srv:
        tmp = block_sink(srv)
        try:
            with t.case("sink_down_keeps_thousands_in_the_log"):
                acked = send_many(srv.port, n, "many")
                t.check(len(acked) == n, "only %d of %d acknowledged" % (len(acked), n))
                t.check(queued(srv) == n, "spool stats: queued %d, want %d" % (queued(srv), n))
                rc, out, _ = spool_cmd(srv, "ls")
                t.check(rc == 0 and len(out.splitlines()) == n + 1, "spool ls: %d lines" % len(out.splitlines()))
                q = sorted(acked)[0]
                rc, out, _ = spool_cmd(srv, "show", q)
                t.check(rc == 0 and ("id %s" % q) in out and "Subject: many" in out, "spool show: %r" % out[:300])
            srv.kill()
        finally:
            chattr(tmp, "-i")
        with t.case("restart_delivers_every_one"):
            t0 = time.monotonic()
            srv.start()
            found = srv.maildir.wait_ids(sorted(acked), T_DELIVER * 2)
            missing = [q for q in acked if not found[q]]
            t.check(not missing, "%d of %d missing after restart" % (len(missing), len(acked)))
            print("  note: %d undelivered records: restart + delivery took %.2f s" % (n, time.monotonic() - t0))
            m = re.search(r"spool.recover records=(\d+) pending=(\d+) ms=(\d+)", srv.stderr_text())
            t.check(m and int(m.group(2)) == n, "recovery line: %r" % (m.group(0) if m else None))
            deadline = time.monotonic() + T_DELIVER
            while queued(srv) != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            t.check(queued(srv) == 0, "still queued after delivery: %d" % queued(srv))


def fills_while_sink_down(t):
    # 2 shards x 512 KiB of 64 KiB segments; 8 KiB messages.
    with Server("--spool-segment-size", "64K", "--spool-max-size", "1M") as srv:
        tmp = block_sink(srv)
        try:
            with t.case("spool_fills_up_452"):
                c = Conn(srv.port)
                ehlo(t, c)
                body = crlf("Subject: fill\n\n" + ("y" * 78 + "\n") * 100)
                got452, acked = False, []
                for i in range(400):
                    r, _ = send_message(t, c, "a@x.test", ["b@y.test"], body, want=None)
                    q = parse_queue_id(r) if r.code == 250 else None
                    if r.code == 452:
                        t.check(r.enhanced == "4.3.1", "452 with %s" % r.enhanced)
                        got452 = True
                        break
                    t.expect(r, 250, c)
                    acked.append(q)
                t.check(got452, "no 452 after %d messages" % len(acked))
                t.check(len(acked) > 20, "452 after only %d messages" % len(acked))
                c.close()
            srv.stop()
        finally:
            chattr(tmp, "-i")
        with t.case("sink_back_log_drains_and_mail_is_accepted_again"):
            srv.start()
            found = srv.maildir.wait_ids(acked)
            t.check(all(found.values()), "%d acknowledged messages not delivered" % sum(1 for v in found.values() if not v))
            c = Conn(srv.port)
            ehlo(t, c)
            ok = crlf("Subject: after\n\nagain\n")
            deadline = time.monotonic() + T_DELIVER
            while True:
                r, _ = send_message(t, c, "a@x.test", ["b@y.test"], ok, want=None)
                q = parse_queue_id(r) if r.code == 250 else None
                if r.code == 250 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            t.expect(r, 250, c, "after the log drained")
            t.check(srv.maildir.wait_ids([q])[q], "message after the drain not delivered")
            c.close()


def last_nonzero(path):
    with open(path, "rb") as f:
        data = f.read()
    return len(data.rstrip(b"\0")), data


def torn_tail(t):
    with Server(shards=1) as srv:
        tmp = block_sink(srv)
        try:
            c = Conn(srv.port)
            ehlo(t, c)
            acked = []
            for i in range(3):
                _, q = send_message(t, c, "a@x.test", ["b@y.test"], crlf("Subject: torn %d\n\nx\n" % i))
                acked.append(q)
            c.close()
            srv.kill()
        finally:
            chattr(tmp, "-i")
        seg = None
        for f in sorted(os.listdir(os.path.join(srv.spool, "log"))):
            if f.endswith(".seg"):
                n, data = last_nonzero(os.path.join(srv.spool, "log", f))
                if n > 4096:
                    seg, tail, image = os.path.join(srv.spool, "log", f), (n + 7) // 8 * 8, data
        with t.case("torn_record_at_the_tail_is_ignored"):
            t.check(seg is not None, "no segment with records")
            first = image[4096:tail]
            rec1 = first[:len(first) // 3]  # about the first record
            with open(seg, "r+b") as f:
                f.seek(tail)
                f.write(rec1[: len(rec1) // 2])  # half a record: torn
            srv.start()
            found = srv.maildir.wait_ids(acked)
            t.check(all(found.values()), "records before the torn one not delivered: %r" % found)
            t.check(all(len(v) == 1 for v in found.values()), "delivered twice: %r" % found)
            c = Conn(srv.port)
            ehlo(t, c)
            _, q = send_message(t, c, "a@x.test", ["b@y.test"], crlf("Subject: after torn\n\nok\n"))
            t.check(srv.maildir.wait_ids([q])[q], "new message after a torn tail not delivered")
            c.close()
            srv.stop()
            rc, out, _ = spool_cmd(srv, "stats")
            t.check(rc == 0 and "queued 0" in out, "stats after: %r" % out)


def kill_during_recycle_and_delivery(t):
    n_kill = scale(2500, 500)
    with Server("--spool-segment-size", "64K") as srv:
        with t.case("kill9_while_segments_recycle_and_delivery_runs"):
            acked, lock, stop = {}, threading.Lock(), threading.Event()

            def worker(w):
                k = 0
                while not stop.is_set():
                    try:
                        c = Conn(srv.port)
                        c.cmd("EHLO k.test")
                        for _ in range(50):
                            k += 1
                            content = crlf("Subject: k %d %d\n\n%s\n" % (w, k, "z" * (k % 3000)))
                            c.send("MAIL FROM:<s@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n")
                            if c.reply().code != 250 or c.reply().code != 250 or c.reply().code != 354:
                                raise EOFError
                            c.send(content)
                            c.send(b".\r\n")
                            r = c.reply()
                            if r.code != 250:
                                raise EOFError
                            with lock:
                                acked[parse_queue_id(r)] = content
                        c.close()
                    except Exception:
                        return

            ths = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(6)]
            for th in ths:
                th.start()
            deadline = time.monotonic() + T_DELIVER * 3
            while len(acked) < n_kill and time.monotonic() < deadline:
                time.sleep(0.01)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(timeout=30)
            stop.set()
            for th in ths:
                th.join(timeout=30)
            before = srv.maildir.count()
            srv.start()
            found = srv.maildir.wait_ids(sorted(acked), T_DELIVER * 2)
            missing = [q for q in acked if not found[q]]
            t.check(not missing, "%d of %d acknowledged missing" % (len(missing), len(acked)))
            exact = sum(1 for q, c in acked.items() if found[q] and found[q][0].content == c)
            t.check(exact == len(acked), "%d of %d delivered exactly" % (exact, len(acked)))
            recov = re.findall(r"spool.recover records=(\d+) pending=(\d+)", srv.stderr_text())
            pending = int(recov[-1][1]) if recov else -1
            print("  note: %d acknowledged, %d delivered before the kill, %d redelivered or pending at restart"
                  % (len(acked), before, pending))
            t.check(0 <= pending < len(acked), "restart redelivers everything (%d of %d)" % (pending, len(acked)))


if __name__ == "__main__":
    run(main)
