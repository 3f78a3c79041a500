#!/usr/bin/python3
"""
postfix_tls - a private Postfix smtpd on a free 127.0.0.1 port that offers
STARTTLS (smtpd_tls_security_level = may) with a fresh self-signed
certificate (openssl req; CN and subjectAltName localhost and 127.0.0.1),
for oceanmx-load's --tls tests (tests/integ/test_load_tls.py) and
measurements (`postfix_tls.py bench`, below).

The instance has its own config, queue and data directories under one
temporary directory (like bench/peers.sh): the system's Postfix and its
config are never touched. Delivery: "maildir" (virtual(8), every recipient
of y.test into one maildir, owned by nobody), "discard" (discard(8):
the queue still gets every message, nothing is written after it), or
"relay" (everything relayed to relay_to=(host, port) with
smtp_tls_security_level = encrypt: Postfix as a sending MTA that insists on TLS).
cert_files=(key, chain) serves a given key and certificate chain instead (RSA
or ECDSA: smtpd_tls_chain_files, Postfix >= 3.4), so a benchmark can give
Postfix and oceanmx the same certificate.
Needs root (postfix start) and the Debian packages postfix and openssl.

    python3 bench/load/postfix_tls.py bench [--load BIN] [--base BIN] [--repeats N] [--messages N]

runs, interleaved and REPEATS times each: a W1-shaped closed loop (20 sessions,
4 KiB messages) from --base and from --load against smtp-sink (the non-TLS
path before/after), then --load with and without --tls against this Postfix
(discard delivery), and prints a markdown table of messages/s (medians and
ratios). Everything it starts is stopped at the end.
"""

import argparse
import grp
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "integ"))
from lib import make_cert  # noqa: E402

POSTFIX = "/usr/sbin/postfix"
OPENSSL = "/usr/bin/openssl"
SMTP_SINK = "/usr/sbin/smtp-sink"


def missing_tools():
    """missing_tools names what this fixture needs and cannot find (empty: ready)."""
    why = []
    if os.geteuid() != 0:
        why.append("root (postfix start)")
    for path, pkg in ((POSTFIX, "postfix"), (OPENSSL, "openssl")):
        if not os.access(path, os.X_OK):
            why.append("%s (Debian package %s)" % (path, pkg))
    return why


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_greeting(port, timeout):
    """wait_greeting: True once 127.0.0.1:port answers with a 220 line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


MAIN_CF = """\
# private instance of bench/load/postfix_tls.py: loopback only, STARTTLS offered
compatibility_level = 3.6
config_directory = {pf}/etc
queue_directory = {pf}/queue
data_directory = {pf}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.tls.test
mydomain = tls.test
myorigin = $myhostname
mydestination =
relay_domains =
relayhost =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtputf8_enable = no
smtpd_peername_lookup = no
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
in_flow_delay = 0
# STARTTLS (RFC 3207), offered and not required; no session cache: every
# handshake is a full one
smtpd_tls_security_level = may
smtpd_tls_chain_files = {pf}/etc/key.pem, {pf}/etc/cert.pem
smtpd_tls_session_cache_database =
smtpd_tls_loglevel = 0
smtpd_tls_received_header = yes
# every recipient of y.test: {delivery}
virtual_mailbox_domains = y.test
virtual_mailbox_base = {pf}/mail
virtual_mailbox_maps = static:maildir/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
virtual_transport = {transport}
# no syslog daemon here: log to a file (postlogd is part of the instance)
maillog_file_prefixes = {pf}
maillog_file = {pf}/maillog
{relay}"""

# delivery="relay": everything goes on to relay_to over TLS, as a big provider
# delivering to an MX that offers STARTTLS (used by tests/integ/test_tls.py)
RELAY_CF = """relayhost = [{host}]:{port}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_tls_session_cache_database =
smtp_helo_name = pf.tls.test
"""

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixTLS:
    """PostfixTLS: with PostfixTLS(...) as pf: pf.port, pf.cert, pf.maildir_count(), pf.maillog()."""

    def __init__(self, delivery="maildir", base_dir="/var/tmp", start_timeout=60, relay_to=None, cert_files=None):
        if delivery not in ("maildir", "discard", "relay"):
            raise ValueError("delivery: maildir, discard or relay (with relay_to=(host, port))")
        if (delivery == "relay") != (relay_to is not None):
            raise ValueError("relay_to goes with delivery=relay")
        self.delivery = delivery
        self.relay_to = relay_to
        self.cert_files = cert_files
        self.start_timeout = start_timeout
        self.dir = tempfile.mkdtemp(prefix="omx-pftls.", dir=base_dir)
        os.chmod(self.dir, 0o755)  # Postfix daemons and virtual(8) (as nobody) walk through it
        self.pf = os.path.join(self.dir, "pf")
        self.etc = os.path.join(self.pf, "etc")
        self.cert = os.path.join(self.etc, "cert.pem")
        self.maildir = os.path.join(self.pf, "mail", "maildir", "new")
        self.port = free_port()
        self.started = False

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *a):
        self.stop()

    def start(self):
        for d in ("etc", "queue", "data", "mail"):
            os.makedirs(os.path.join(self.pf, d), exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(os.path.join(self.pf, "data"), pwd.getpwnam("postfix").pw_uid, -1)
        os.chown(os.path.join(self.pf, "mail"), nobody.pw_uid, grp.getgrnam("nogroup").gr_gid)
        os.chmod(self.pf, 0o755)
        os.chmod(os.path.join(self.pf, "mail"), 0o755)
        key = os.path.join(self.etc, "key.pem")
        if self.cert_files:
            shutil.copyfile(self.cert_files[0], key)
            shutil.copyfile(self.cert_files[1], self.cert)
        else:
            crt, made_key = make_cert(self.etc, "made", "rsa", "localhost", ("localhost",), ("127.0.0.1",))
            os.replace(made_key, key)
            os.replace(crt, self.cert)
        os.chmod(key, 0o600)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            relay = RELAY_CF.format(host=self.relay_to[0], port=self.relay_to[1]) if self.relay_to else ""
            cf = MAIN_CF.format(pf=self.pf, uid=nobody.pw_uid, gid=nobody.pw_gid, delivery=self.delivery,
                                transport="virtual" if self.delivery == "maildir" else "discard", relay=relay)
            if self.relay_to:
                cf = cf.replace("virtual_mailbox_domains = y.test", "virtual_mailbox_domains =")
            f.write(cf)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        p = subprocess.run([POSTFIX, "-c", self.etc, "start"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=self.start_timeout)
        self.started = True
        if p.returncode != 0:
            raise RuntimeError("postfix -c %s start: exit %d: %s\n%s" % (self.etc, p.returncode,
                               p.stdout.decode(errors="replace"), self.maillog()[-2000:]))
        if not wait_greeting(self.port, self.start_timeout):
            raise RuntimeError("private Postfix does not greet on 127.0.0.1:%d\n%s" % (self.port, self.maillog()[-2000:]))

    def master_pid(self):
        try:
            with open(os.path.join(self.pf, "queue", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def cpu_us(self):
        """cpu_us: user + system CPU of the master and every process under it, reaped ones included, in µs."""
        kids, stat = {}, {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    f_ = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kids.setdefault(int(f_[1]), []).append(int(d))
            stat[int(d)] = sum(int(x) for x in f_[11:15])  # utime stime cutime cstime
        todo, ticks = [self.master_pid()], 0
        while todo:
            pid = todo.pop()
            if pid is None:
                continue
            ticks += stat.get(pid, 0)
            todo.extend(kids.get(pid, []))
        return ticks * 1000000 // os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.started:
            self.started = False
            pid = self.master_pid()
            subprocess.run([POSTFIX, "-c", self.etc, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)
            deadline = time.monotonic() + 30
            while pid is not None and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                if pid is not None:
                    # stop did not work: end the master (ours: its pid file is in our queue dir)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        if os.environ.get("OMX_KEEP_TMP", "") in ("", "0"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def maildir_count(self):
        try:
            return len(os.listdir(self.maildir))
        except FileNotFoundError:
            return 0

    def wait_maildir(self, n, timeout):
        """wait_maildir: the count once it reaches n, or the last count after timeout."""
        deadline = time.monotonic() + timeout
        got = self.maildir_count()
        while got < n and time.monotonic() < deadline:
            time.sleep(0.1)
            got = self.maildir_count()
        return got

    def maillog(self):
        try:
            with open(os.path.join(self.pf, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


# ---------------------------------------------------------------- bench

def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_run(binary, port, args, timeout):
    """load_run: the --json report, plus "client_cpu_us_per_msg" (user + system of the run)."""
    cmd = [binary, "--json", "-q"] + args + ["127.0.0.1:%d" % port]
    cpu0 = children_cpu()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    cpu = children_cpu() - cpu0
    try:
        rep = json.loads(p.stdout)
    except ValueError:
        raise RuntimeError("%s: exit %d, no JSON: %r %r" % (" ".join(cmd), p.returncode, p.stdout[-500:], p.stderr[-500:]))
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode, rep.get("first_error")))
    rep["client_cpu_us_per_msg"] = cpu * 1e6 / max(rep["messages"]["delivered"], 1)
    return rep


def bench(a):
    w1 = ["-m", str(a.messages), "-c", "20", "--size", "4096"]
    rows = []   # (what, [msg/s...], [notes], [client CPU us/msg...])

    def series(name):
        rows.append((name, [], [], []))
        return rows[-1]

    sink_base = series("smtp-sink, W1, --base (before)")
    sink_new = series("smtp-sink, W1, --load (after)")
    sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", "127.0.0.1:%d" % (sport := free_port()), "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_greeting(sport, 30):
            raise RuntimeError("smtp-sink does not greet")
        for r in range(a.repeats):
            for row, b in ((sink_base, a.base), (sink_new, a.load)) if r % 2 == 0 else ((sink_new, a.load), (sink_base, a.base)):
                rep = load_run(b, sport, w1, 600)
                row[1].append(rep["msgs_per_s"])
                row[3].append(rep["client_cpu_us_per_msg"])
    finally:
        sink.terminate()
        sink.wait(timeout=30)

    pf_plain = series("Postfix (TLS offered), W1, plaintext")
    pf_tls = series("Postfix (TLS offered), W1, --tls")
    pf_churn_plain = series("Postfix (TLS offered), -p 1 (churn), plaintext")
    pf_churn_tls = series("Postfix (TLS offered), -p 1 (churn), --tls")
    churn = ["-m", str(max(a.messages // 10, 200)), "-c", "20", "-p", "1", "--size", "4096"]
    with PostfixTLS(delivery="discard") as pf:
        # warm up: every smtpd process and the queue once
        load_run(a.load, pf.port, ["-m", "200", "-c", "20", "--tls"], 300)
        for r in range(a.repeats):
            order = [(pf_plain, w1, []), (pf_tls, w1, ["--tls"]), (pf_churn_plain, churn, []),
                     (pf_churn_tls, churn, ["--tls"])]
            if r % 2 == 1:
                order = [order[1], order[0], order[3], order[2]]
            for row, args, extra in order:
                rep = load_run(a.load, pf.port, args + extra, 900)
                row[1].append(rep["msgs_per_s"])
                row[3].append(rep["client_cpu_us_per_msg"])
                if rep.get("tls"):
                    row[2].append("handshake p50 %.0f us p99 %.0f us (%s)" % (
                        rep["tls"]["handshake_us"]["p50"], rep["tls"]["handshake_us"]["p99"], rep["tls"]["session"]))

    def med(row, i=1):
        return statistics.median(row[i])

    out = []
    out.append("| run | msg/s median | min-max | client CPU us/msg (median) | notes |")
    out.append("| --- | ---: | --- | ---: | --- |")
    for name, vals, extra, cpu in rows:
        out.append("| %s | %.0f | %.0f-%.0f | %.1f | %s |" % (name, statistics.median(vals), min(vals), max(vals),
                                                             statistics.median(cpu), extra[-1] if extra else ""))
    out.append("")
    out.append("- non-TLS path after/before (smtp-sink): msg/s %.3f, client CPU per message %.3f"
               % (med(sink_new) / med(sink_base), med(sink_new, 3) / med(sink_base, 3)))
    out.append("- Postfix W1: --tls / plaintext: %.3f" % (med(pf_tls) / med(pf_plain)))
    out.append("- Postfix churn: --tls / plaintext: %.3f" % (med(pf_churn_tls) / med(pf_churn_plain)))
    out.append("- %d repeats each, interleaved; W1 = %s; churn = %s; %d CPUs, load average %s at the end" % (
        a.repeats, " ".join(w1), " ".join(churn), os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3])))
    print("\n".join(out))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="measure (see the module doc)")
    b.add_argument("--load", default=os.path.join(here, "..", "..", "build", "oceanmx-load"))
    b.add_argument("--base", help="an older oceanmx-load for the before/after (default: --load)")
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--messages", type=int, default=20000)
    a = ap.parse_args()
    if a.base is None:
        a.base = a.load
    why = missing_tools()
    if why or not os.access(SMTP_SINK, os.X_OK):
        sys.exit("postfix_tls: needs %s" % ", ".join(why + ([] if os.access(SMTP_SINK, os.X_OK) else [SMTP_SINK])))
    bench(a)


if __name__ == "__main__":
    main()
