"""
dovecot.py - a private Dovecot LMTP server for the integration tests (Debian
packages dovecot-core and dovecot-lmtpd), on loopback, with its own base_dir,
state_dir and log under a temp dir: lmtp on a unix socket and on a TCP port,
a passwd-file userdb with the given users, mail_location maildir under the
temp dir. Nothing outside the temp dir is touched.

Run as a normal user, Dovecot runs as that user and mail belongs to it; run
as root, Dovecot refuses mail users with uid 0, so the mail users take the
uid of "nobody" and the mail directory is theirs.
"""

import os
import pwd
import signal
import subprocess
import time

from lib import Skip, free_port, port_listening

DOVECOT = "/usr/sbin/dovecot"
LMTP = "/usr/lib/dovecot/lmtp"


class Dovecot:
    def __init__(self, tmp, users):
        if not os.access(DOVECOT, os.X_OK) or not os.access(LMTP, os.X_OK):
            raise Skip("Dovecot LMTP not installed (Debian packages dovecot-core and dovecot-lmtpd)")
        self.dir = os.path.join(tmp, "dovecot")
        self.mail = os.path.join(self.dir, "mail")
        self.base = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.base, "lmtp")
        self.log = os.path.join(self.dir, "dovecot.log")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.port = free_port()
        self.users = users
        self.proc = None
        os.makedirs(os.path.join(self.base, "state"), exist_ok=True)
        os.makedirs(self.mail, exist_ok=True)
        me = pwd.getpwuid(os.getuid())
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
            os.chown(self.mail, uid, gid)
            # nobody must reach the mail directory through the temp dirs.
            for d in (tmp, self.dir):
                os.chmod(d, 0o755)
        else:
            uid, gid = me.pw_uid, me.pw_gid
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            for u in users:
                f.write("%s:{PLAIN}x:%d:%d::%s\n" % (u, uid, gid, self.home(u)))
        group = __import__("grp").getgrgid(os.getgid()).gr_name
        with open(self.conf, "w") as f:
            f.write("""# oceanmx integration test: a private LMTP server
base_dir = {base}
state_dir = {base}/state
log_path = {log}
instance_name = omx-lmtp-test
protocols = lmtp
ssl = no
listen = 127.0.0.1
default_login_user = {me}
default_internal_user = {me}
default_internal_group = {group}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
""".format(base=self.base, log=self.log, me=me.pw_name, group=group, dir=self.dir, port=self.port))

    def home(self, user):
        return os.path.join(self.mail, user.split("@")[0])

    def start(self, timeout=30.0):
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=out)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.sock) and port_listening(self.port):
                return self
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise Skip("Dovecot did not start here (exit status %s):\n%s" % (self.proc.returncode, tail))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The master is gone; wait until its listeners are too.
        deadline = time.monotonic() + 10
        while port_listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_text(self):
        text = ""
        for name in ("dovecot.log", "stdout.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])

    def mailbox(self, user):
        """mailbox returns the raw bytes of every message in user's INBOX (new/ and cur/), sorted by name."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.home(user), "Maildir", sub)
            try:
                names = sorted(os.listdir(d))
            except FileNotFoundError:
                continue
            for n in names:
                with open(os.path.join(d, n), "rb") as f:
                    out.append(f.read())
        return out

    def wait_mailbox(self, user, n, timeout):
        deadline = time.monotonic() + timeout
        while True:
            got = self.mailbox(user)
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.05)


def strip_fields(raw, names):
    """strip_fields removes the leading header fields (with their continuation
    lines) whose names are in `names`, in any order, and returns (removed, rest)."""
    removed = []
    pos = 0
    while True:
        colon = raw.find(b":", pos)
        eol = raw.find(b"\n", pos)
        if colon < 0 or eol < 0 or colon > eol or raw[pos:colon].lower() not in names:
            break
        end = eol + 1
        while end < len(raw) and raw[end:end + 1] in (b" ", b"\t"):
            nxt = raw.find(b"\n", end)
            end = len(raw) if nxt < 0 else nxt + 1
        removed.append(raw[pos:end])
        pos = end
    return removed, raw[pos:]
