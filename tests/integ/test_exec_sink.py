"""
test_exec_sink - the exec:PATH sink with shell scripts: delivered (the raw
message on stdin byte for byte, the envelope in OMX_* variables, OMX_JSON
a readable document removed afterwards, only fds 0-2 inherited, stdout
discarded, the script in a process group of its own with no signal
blocked); exit 75 retried; exit 1 dead-lettered with the first line of
stderr (sanitised) as the reason; a hanging script (and its child) killed
at the timeout and retried; several scripts at once; config errors.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import time

from lib import Conn, Server, T_DELIVER, crlf, ehlo, free_port, omx_bin, run, send_message


def script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, stat.S_IRWXU)
    return path


def wait_for(pred, timeout=T_DELIVER):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return None


def wait_log(srv, pattern, timeout=T_DELIVER):
    return wait_for(lambda: re.search(pattern, srv.stderr_text()), timeout)


def delivered(srv, qid):
    """delivered: every sink took it, so the spool owes it nobody (deliver.ok is logged at info, not shown)."""
    return qid not in srv.spool_pending() and not os.path.exists(os.path.join(srv.spool, "failed", qid))


def send(t, srv, rcpts=("bob@y.test",), n=0):
    c = Conn(srv.port)
    ehlo(t, c)
    body = crlf("From: ann@x.test\nTo: bob@y.test\nSubject: exec %d\n\nline one\n.dotted\n" % n)
    _, qid = send_message(t, c, "ann@x.test", list(rcpts), body)
    c.cmd("QUIT")
    c.close()
    return qid, body


def main(t):
    srv = Server()
    out = os.path.join(srv.tmp + "-out")
    os.makedirs(out)
    ok = script(os.path.join(srv.tmp, "ok.sh"),
                'set -e\nd=%s/$OMX_ID\nmkdir "$d"\ncat > "$d/stdin"\nenv > "$d/env"\n'
                'cp "$OMX_JSON" "$d/json"\necho "$OMX_JSON" > "$d/json_path"\nls /proc/self/fd > "$d/fds"\n'
                # The shell reads its own status without forking: a shell may
                # block signals for a moment around a fork of its own.
                'while IFS= read -r l; do case "$l" in SigBlk*|SigIgn*) echo "$l";; esac; done < /proc/$$/status > "$d/sig"\n'
                'ps -o pgid= -p $$ | tr -d " " > "$d/pgid"\n'
                'echo "$$" > "$d/pid"\necho to-stdout\nexit 0\n' % out)
    srv.args = ["--sink", "exec:%s?concurrency=3" % ok]
    with srv:
        with t.case("delivered"):
            qid, body = send(t, srv, ("bob@y.test", "carl@y.test"))
            d = os.path.join(out, qid)
            t.check(wait_for(lambda: os.path.exists(os.path.join(d, "pid"))), "script did not run:\n%s" % srv.stderr_tail())
            t.check(wait_for(lambda: delivered(srv, qid)), "not delivered:\n%s" % srv.stderr_tail())
            stdin = open(os.path.join(d, "stdin"), "rb").read()
            t.check(stdin.endswith(body) and stdin.startswith(b"Authentication-Results: mx.test;"),
                    "stdin is not the message as stored: %r" % stdin[:120])
            md = srv.maildir.wait_ids([qid])[qid]
            t.check(md and md[0].raw.endswith(stdin[stdin.index(b"\r\nReceived:") + 2:]), "stdin differs from the maildir copy")
            env = dict(l.split("=", 1) for l in open(os.path.join(d, "env")).read().splitlines() if "=" in l)
            want = {"OMX_ID": qid, "OMX_MAIL_FROM": "ann@x.test", "OMX_RCPT_TO": "bob@y.test,carl@y.test",
                    "OMX_CLIENT_IP": "127.0.0.1", "OMX_HELO": "client.test"}
            for k, v in want.items():
                t.check(env.get(k) == v, "%s=%r, want %r" % (k, env.get(k), v))
            t.check(not [k for k in env if k.startswith("OMX_") and k not in want and k != "OMX_JSON"],
                    "unexpected variables %r" % sorted(env))
            doc = json.load(open(os.path.join(d, "json")))
            t.check(doc["envelope"]["id"] == qid and doc["subject"] == "exec 0", "document %r" % doc.get("envelope"))
            jpath = open(os.path.join(d, "json_path")).read().strip()
            t.check(wait_for(lambda: not os.path.exists(jpath)), "OMX_JSON %s not removed" % jpath)
            t.check(stat.S_IMODE(os.stat(os.path.dirname(jpath)).st_mode) == 0o700, "temp dir not private")
            fds = sorted(int(x) for x in open(os.path.join(d, "fds")).read().split())
            t.check(fds == [0, 1, 2, 3], "fds of a command the script ran: %r (want 0 1 2 and ls's own 3)" % fds)
            sig = open(os.path.join(d, "sig")).read()
            t.check("SigBlk:\t0000000000000000" in sig, "signals blocked in the script: %r" % sig)
            t.check(open(os.path.join(d, "pgid")).read().strip() == open(os.path.join(d, "pid")).read().strip(),
                    "not its own process group")
            t.check("to-stdout" not in srv.stderr_text(), "stdout reached the server's log")

        with t.case("concurrent"):
            qids = [send(t, srv, n=i)[0] for i in range(6)]
            t.check(wait_for(lambda: all(delivered(srv, q) for q in qids)),
                    "not all delivered:\n%s" % srv.stderr_tail())

    srv = Server(shards=1)
    tf = script(os.path.join(srv.tmp, "tf.sh"), 'cat > /dev/null\necho "try later" >&2\nexit 75\n')
    srv.args = ["--sink", "exec:" + tf]
    with srv:
        with t.case("exit_75_tempfail"):
            qid, _ = send(t, srv)
            m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid)
            t.check(m and m.group(1) == "exec: exit 75: try later", "reason %r" % (m and m.group(1)))
            t.check(qid in srv.spool_pending() and not os.listdir(os.path.join(srv.spool, "failed")),
                    "a tempfail left the queue")
    srv2 = Server(shards=1)
    perm = script(os.path.join(srv2.tmp, "perm.sh"),
                  'cat > /dev/null\nprintf \'no such "user" \\001here\\nsecond line\\n\' >&2\nexit 1\n')
    srv2.args = ["--sink", "exec:" + perm]
    with srv2:
        with t.case("exit_1_permfail_with_reason"):
            qid, _ = send(t, srv2)
            m = wait_log(srv2, r"%s deliver\.permfail reason=\"([^\"]*)\"" % qid)
            t.check(m and m.group(1) == "exec: exit 1: no such ?user? ?here", "reason %r" % (m and m.group(1)))
            t.check(os.path.exists(os.path.join(srv2.spool, "failed", qid)), "not in SPOOL/failed")

    srv = Server(shards=1)
    pidfile = os.path.join(srv.tmp, "child.pid")
    hang = script(os.path.join(srv.tmp, "hang.sh"), 'sleep 300 &\necho $! > %s\nwait\n' % pidfile)
    srv.args = ["--sink", "exec:%s?timeout=1" % hang]
    with srv:
        with t.case("hang_killed_at_timeout"):
            qid, _ = send(t, srv)
            m = wait_log(srv, r"%s deliver\.tempfail reason=\"([^\"]*)\"" % qid)
            t.check(m and m.group(1) == "exec: killed after the timeout of 1s", "reason %r" % (m and m.group(1)))
            pid = int(open(pidfile).read())

            def gone():
                try:
                    with open("/proc/%d/stat" % pid) as f:
                        return f.read().split()[2] == "Z"
                except FileNotFoundError:
                    return True
            t.check(wait_for(gone, 10), "the script's child %d survived the kill of its process group" % pid)

    with t.case("config_errors"):
        noexec = os.path.join(out, "noexec.sh")
        with open(noexec, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(noexec, 0o644)
        for spec, want in (("exec:relative.sh", "absolute path"), ("exec:/nonexistent/x", "No such file"),
                           ("exec:/etc", "not a regular file"), ("exec:" + noexec, "Permission denied"),
                           ("exec:/bin/true?concurrency=0", "bad option"), ("exec:/bin/true?nope=1", "bad option")):
            p = subprocess.run([omx_bin(), "serve", "--listen", "127.0.0.1:%d" % free_port(), "--spool",
                                "/nonexistent-spool", "--sink", spec], capture_output=True, text=True, timeout=30)
            t.check(p.returncode != 0 and want in p.stderr, "%s: exit %d, stderr %r" % (spec, p.returncode, p.stderr))

        shutil.rmtree(out, ignore_errors=True)


run(main)
