#!/usr/bin/python3
"""Small helpers for the bench scripts (standard library only).

    smtp_probe.py wait HOST PORT [--timeout S]
        connect until a server answers with a 220 greeting (then QUIT); exit 1 on timeout
    smtp_probe.py send HOST PORT --from ADDR --to ADDR [--timeout S]
        send one small message with smtplib; exit 1 unless it was accepted (250)
    smtp_probe.py cpu --pid PID [--environ KEY=VALUE]
        CPU time in microseconds (user system total) from /proc, for hosts without a writable
        cgroup v2: utime+stime+cutime+cstime of PID, plus utime+stime of every other live
        process whose environment holds KEY=VALUE (Postfix daemons inherit MAIL_CONFIG)
    smtp_probe.py cpu --root DIR
        the same for every live process whose root directory is DIR or below it (OpenSMTPD in
        its chroot, whose privilege-separated processes chroot again): utime+stime+cutime+cstime
        of each, so children they reaped count once
    smtp_probe.py free-port
        print a TCP port on 127.0.0.1 that is free right now
"""
import argparse
import os
import smtplib
import socket
import sys
import time


def cmd_wait(a):
    deadline = time.monotonic() + a.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((a.host, a.port), timeout=5) as s:
                f = s.makefile("rb")
                while True:
                    line = f.readline(4096)
                    if not line:
                        raise OSError("closed before the greeting")
                    if line.startswith(b"220 "):
                        s.sendall(b"QUIT\r\n")
                        return 0
                    if not line.startswith(b"220-"):
                        raise OSError("unexpected greeting %r" % line)
        except OSError as e:
            last = e
            time.sleep(0.1)
    print("smtp_probe: no 220 greeting from %s:%d within %ss (%s)" % (a.host, a.port, a.timeout, last),
          file=sys.stderr)
    return 1


def cmd_send(a):
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: bench probe\r\n"
           "Message-ID: <probe.%d.%d@bench.test>\r\n\r\nprobe message of bench/peers.sh\r\n"
           % (a.mail_from, a.rcpt, os.getpid(), time.time_ns()))
    try:
        with smtplib.SMTP(a.host, a.port, timeout=a.timeout) as s:
            s.ehlo("probe.bench.test")
            refused = s.sendmail(a.mail_from, [a.rcpt], msg)
            if refused:
                print("smtp_probe: refused %r" % refused, file=sys.stderr)
                return 1
    except (OSError, smtplib.SMTPException) as e:
        print("smtp_probe: sending to %s:%d failed: %s" % (a.host, a.port, e), file=sys.stderr)
        return 1
    return 0


def _stat_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime=14, stime=15, cutime=16, cstime=17 (1-based)
    return [int(fields[i - 3]) for i in (14, 15, 16, 17)]


def _in_root(pid, root):
    try:
        r = os.readlink("/proc/%s/root" % pid)
    except OSError:
        return False
    return r == root or r.startswith(root + "/")


def cmd_cpu(a):
    hz = os.sysconf("SC_CLK_TCK")
    user = system = 0
    if a.root:
        root = os.path.realpath(a.root)
        for d in os.listdir("/proc"):
            if not d.isdigit() or not _in_root(d, root):
                continue
            try:
                ut, st, cut, cst = _stat_ticks(int(d))
            except OSError:
                continue
            user += ut + cut
            system += st + cst
    if a.pid:
        try:
            ut, st, cut, cst = _stat_ticks(a.pid)
            user += ut + cut
            system += st + cst
        except OSError:
            pass
    if a.environ:
        needle = a.environ.encode() + b"\0"
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == a.pid or (a.root and _in_root(d, root)):
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    env = b"\0" + f.read()
                if b"\0" + needle not in env:
                    continue
                ut, st, _, _ = _stat_ticks(int(d))
            except OSError:
                continue
            user += ut
            system += st
    us = 1000000 // hz
    print(user * us, system * us, (user + system) * us)
    return 0


def cmd_free_port(a):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("host")
    w.add_argument("port", type=int)
    w.add_argument("--timeout", type=float, default=30)
    s = sub.add_parser("send")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--from", dest="mail_from", default="probe@x.test")
    s.add_argument("--to", dest="rcpt", default="b@y.test")
    s.add_argument("--timeout", type=float, default=30)
    c = sub.add_parser("cpu")
    c.add_argument("--pid", type=int, default=0)
    c.add_argument("--environ", default="")
    c.add_argument("--root", default="")
    sub.add_parser("free-port")
    a = p.parse_args()
    if a.cmd == "cpu" and not (a.pid or a.root):
        p.error("cpu needs --pid or --root")
    return {"wait": cmd_wait, "send": cmd_send, "cpu": cmd_cpu, "free-port": cmd_free_port}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
