"""
test_cli - the command line a user meets first: --help documents every
option the config table accepts, --version, check-config accepts the shipped
example config and rejects a bad one with file:line, unknown commands and
flags fail with exit status 1 and a clear message.
"""

import os
import re
import subprocess
import tempfile

import time

from lib import free_port, omx_bin, port_listening, run

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def omx(*args):
    r = subprocess.run([omx_bin()] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def main(t):
    example = os.path.join(REPO, "deploy", "oceanmx.conf")

    with t.case("help_documents_every_config_key"):
        rc, out, _ = omx("--help")
        t.check(rc == 0, "--help exit %d" % rc)
        for section in ("SYNOPSIS", "OPTIONS", "SIGNALS", "EXIT STATUS"):
            t.check(section in out, "--help has no %s section" % section)
        keys = set()
        with open(example) as f:
            for ln in f:
                m = re.match(r"#?\s*([a-z][a-z0-9-]+)\s", ln)
                if m and not ln.startswith("# ") or (m and ln.startswith("# shards")):
                    keys.add(m.group(1))
        t.check(len(keys) > 15, "too few keys found in %s: %r" % (example, keys))
        for k in sorted(keys):
            t.check("--" + k in out, "--help does not document --%s" % k)

    with t.case("version"):
        rc, out, _ = omx("--version")
        t.check(rc == 0 and re.match(r"oceanmx \d+\.\d+", out), "--version: %d %r" % (rc, out))

    with t.case("check_config_accepts_example"):
        d = tempfile.mkdtemp(prefix="omx-cli-")
        rc, out, err = omx("check-config", "-c", example, "--spool", d + "/spool", "--sink", "maildir:" + d + "/md")
        t.check(rc == 0, "check-config of the example: exit %d\n%s%s" % (rc, out, err))

    with t.case("check_config_names_file_and_line"):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("hostname ok.test\nmax-recipients lots\n")
            bad = f.name
        rc, _, err = omx("check-config", "-c", bad)
        os.unlink(bad)
        t.check(rc == 1, "check-config of a bad file: exit %d (want 1)" % rc)
        t.check("%s:2: max-recipients:" % bad in err, "error does not name file:line:key: %r" % err)

    with t.case("unknown_command_and_flag"):
        rc, _, err = omx("frobnicate")
        t.check(rc == 1 and "unknown command" in err, "unknown command: %d %r" % (rc, err))
        rc, _, err = omx("serve", "--no-such-flag", "1")
        t.check(rc == 1 and "no-such-flag" in err, "unknown flag: %d %r" % (rc, err))

    with t.case("busy_port_is_a_startup_failure"):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        d = tempfile.mkdtemp(prefix="omx-cli-")
        rc, _, err = omx("serve", "--listen", "127.0.0.1:%d" % port, "--spool", d + "/spool",
                         "--sink", "maildir:" + d + "/md", "--shards", "1")
        s.close()
        t.check(rc == 2, "listening on a busy port: exit %d (want 2)\n%s" % (rc, err))
        t.check("Address already in use" in err, "no clear reason for the failed start: %r" % err)

    with t.case("second_instance_on_the_same_port_refused"):
        # SO_REUSEPORT would let a second server share the port silently.
        d = tempfile.mkdtemp(prefix="omx-cli-")
        port = free_port()
        first = subprocess.Popen([omx_bin(), "serve", "--listen", "127.0.0.1:%d" % port, "--spool", d + "/s1",
                                  "--sink", "maildir:" + d + "/m1", "--shards", "1"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not port_listening(port) and time.monotonic() < deadline:
                time.sleep(0.02)
            t.check(port_listening(port), "first server did not start")
            rc, _, err = omx("serve", "--listen", "127.0.0.1:%d" % port, "--spool", d + "/s2",
                             "--sink", "maildir:" + d + "/m2", "--shards", "1")
            t.check(rc == 2 and "already in use" in err, "second server on a taken port: %d %r" % (rc, err))
        finally:
            first.terminate()
            first.wait(30)


if __name__ == "__main__":
    run(main)
