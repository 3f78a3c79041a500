"""
test_privs - started as root with --user nobody, oceanmx binds a privileged
port (< 1024), then runs as nobody with no capabilities: /proc shows the
uids, gids and capability sets; mail sent to the privileged port is stored;
the spool and the maildir it creates belong to nobody. Without --user and
without an `oceanmx` user it keeps root and says why. Needs root and the
`nobody` user (Debian has both); skips otherwise.
"""

import os
import pwd
import shutil
import smtplib
import socket
import tempfile

from lib import Server, Skip, check_delivered, run


def free_privileged_port():
    for port in range(600, 1024):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise Skip("no free port below 1024")


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def main(t):
    if os.geteuid() != 0:
        raise Skip("not root: nothing to drop")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no nobody user")
    tmp = tempfile.mkdtemp(prefix="omx-privs-")
    os.chmod(tmp, 0o755)
    os.chown(tmp, nobody.pw_uid, nobody.pw_gid)  # sink directories are made after the drop
    port = free_privileged_port()
    with Server("--user", "nobody", "--listen", "127.0.0.1:%d" % port, tmp=tmp) as srv:
        with t.case("runs_as_nobody_without_capabilities"):
            st = proc_status(srv.proc.pid)
            t.check(st["Uid"] == [str(nobody.pw_uid)] * 4, "Uid %r" % st["Uid"])
            t.check(st["Gid"] == [str(nobody.pw_gid)] * 4, "Gid %r" % st["Gid"])
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                t.check(int(st[cap][0], 16) == 0, "%s %s" % (cap, st[cap][0]))
            t.check(srv.wait_log(r"privs\.drop user=nobody uid=%d" % nobody.pw_uid), "no privs.drop line")
        with t.case("privileged_port_serves_mail"):
            content = b"Subject: after the drop\r\n\r\nhello\r\n"
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30)
            s.sendmail("a@x.test", ["b@y.test"], content)
            s.quit()
            got = srv.maildir.wait_count(1)
            t.check(got, "not delivered")
            d = srv.maildir.read_all()[0]
            t.check(d.content == content, "content %r" % d.content)
        with t.case("files_belong_to_the_user"):
            for root, dirs, files in os.walk(srv.spool):
                for n in dirs + files:
                    p = os.path.join(root, n)
                    t.check(os.lstat(p).st_uid == nobody.pw_uid, "%s belongs to uid %d" % (p, os.lstat(p).st_uid))
            for n in os.listdir(os.path.join(srv.maildir_path, "new")):
                p = os.path.join(srv.maildir_path, "new", n)
                t.check(os.stat(p).st_uid == nobody.pw_uid, "%s belongs to uid %d" % (p, os.stat(p).st_uid))
    shutil.rmtree(tmp, ignore_errors=True)

    try:
        pwd.getpwnam("oceanmx")
        has_default = True
    except KeyError:
        has_default = False
    if not has_default:
        with Server() as srv:
            with t.case("no_default_user_keeps_root_and_says_why"):
                t.check(proc_status(srv.proc.pid)["Uid"][1] == "0", "not root")
                t.check(srv.wait_log(r"privs\.keep user=root reason=\"no oceanmx user"), "no privs.keep line")
    with t.case("unknown_user_is_an_error"):
        srv = Server("--user", "no-such-user-omx", probe=False)
        try:
            srv.start()
            t.fail("started with --user no-such-user-omx")
        except Exception as e:  # lib raises Failure when the server exits before listening
            t.check("no user \"no-such-user-omx\"" in str(e), "error: %s" % e)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    run(main)
