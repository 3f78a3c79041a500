#!/usr/bin/env bash
# bench/opensmtpd_peer.sh - OpenSMTPD as a benchmark peer, in its own Debian root.
#
# Debian's opensmtpd package conflicts with postfix (both provide mail-transport-agent) and the
# tests need Postfix on the host, so OpenSMTPD lives in a separate minimal Debian 12 root made
# with debootstrap (from the host's Debian mirror) and runs there with chroot. chroot shares the
# host's network namespace: 127.0.0.1:PORT inside is 127.0.0.1:PORT on the host.
#
#   bench/opensmtpd_peer.sh setup       debootstrap the root and install opensmtpd in it (once,
#                                       about 50 MB of downloads, 135 MB on disk; skipped when it exists)
#   bench/opensmtpd_peer.sh start PORT  empty the queue and the maildir, write the configuration
#                                       for 127.0.0.1:PORT, check it (smtpd -n) and exec smtpd in
#                                       the foreground (smtpd -d: logs to stderr); callers put it
#                                       in the background (and in a cgroup, for its CPU)
#   bench/opensmtpd_peer.sh stop        stop every process running in the root (TERM, then KILL)
#   bench/opensmtpd_peer.sh pids        print the pids of the processes running in the root
#   bench/opensmtpd_peer.sh maildir     print the host path of the maildir (new/ holds the mail)
#   bench/opensmtpd_peer.sh root        print the root's path
#   bench/opensmtpd_peer.sh clean       empty the maildir and the queue (refused while running)
#   bench/opensmtpd_peer.sh remove      stop, then delete the whole root
#
# Environment: OSMTPD_ROOT (default /var/lib/oceanmx-bench/opensmtpd-root), OSMTPD_MIRROR (default:
# the host's Debian mirror from /etc/apt/sources.list*), OSMTPD_DOMAIN (default y.test, the
# recipient domain of bench/peers.sh and bench/suite.sh).
#
# The configuration: listen on 127.0.0.1 port PORT, accept mail from local (loopback) clients for
# any recipient of OSMTPD_DOMAIN, and deliver every recipient into one maildir owned by the
# unprivileged user "bench" of the root (/var/mail/bench inside the root). "smtp limit max-mails"
# is raised from its default of 100 messages per session (bench clients send ~1000 per session);
# nothing else is tuned. See bench/README.md.
set -Eeuo pipefail

OSMTPD_ROOT=${OSMTPD_ROOT:-/var/lib/oceanmx-bench/opensmtpd-root}
DOMAIN=${OSMTPD_DOMAIN:-y.test}
SUITE=bookworm
CONF=/etc/oceanmx-bench/smtpd.conf    # inside the root
MAILBOX=/var/mail/bench                # inside the root
SPOOL=/var/spool/smtpd                 # inside the root (compiled into smtpd)

log() { printf '%s opensmtpd_peer: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '9,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot)"

host_mirror() {   # the host's Debian archive (not -security), else deb.debian.org
    local m
    m=$({
        grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
            awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; break}}'
        grep -hsiE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
    } | grep -E '/debian/?$' | head -n 1)
    echo "${m:-http://deb.debian.org/debian}"
}

root_pids() {   # every process whose root directory is the chroot or below it
    local real p r        # (smtpd's privilege-separated processes chroot again, e.g. to /var/empty)
    real=$(readlink -f "$OSMTPD_ROOT")
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        [[ $r == "$real" || $r == "$real"/* ]] && echo "${p#/proc/}"
    done
    return 0
}

# ---------------------------------------------------------------- setup
PARTIAL=""; MOUNTED=()
setup_cleanup() {
    local rc=$? m
    trap - EXIT
    for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    if ((rc != 0)) && [[ -n $PARTIAL ]]; then
        log "setup failed; the incomplete root stays in $PARTIAL (removed by the next setup)"
    fi
    exit "$rc"
}

do_setup() {
    if [[ -x $OSMTPD_ROOT/usr/sbin/smtpd ]]; then
        log "$OSMTPD_ROOT exists: setup skipped ($(chroot "$OSMTPD_ROOT" dpkg-query -W -f '${Package} ${Version}' opensmtpd 2>/dev/null))"
        return 0
    fi
    [[ -e $OSMTPD_ROOT ]] && die "$OSMTPD_ROOT exists but has no usr/sbin/smtpd: remove it (bench/opensmtpd_peer.sh remove) and run setup again"
    local mirror=${OSMTPD_MIRROR:-$(host_mirror)}
    PARTIAL="$OSMTPD_ROOT.partial"
    trap setup_cleanup EXIT
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2 ||
            die "apt-get install debootstrap failed"
    fi
    if [[ -e $PARTIAL ]]; then
        log "removing the incomplete root of an earlier setup: $PARTIAL"
        umount "$PARTIAL/proc" 2>/dev/null || true
        [[ -z $(findmnt -rn -o TARGET | grep -F "$PARTIAL/") ]] || die "something is still mounted under $PARTIAL"
        rm -rf --one-file-system "$PARTIAL"
    fi
    mkdir -p "$(dirname "$OSMTPD_ROOT")"
    log "debootstrap --variant=minbase $SUITE $PARTIAL $mirror (first run: downloads about 50 MB)"
    if ! debootstrap --variant=minbase "$SUITE" "$PARTIAL" "$mirror" >"$PARTIAL.log" 2>&1; then
        tail -n 15 "$PARTIAL.log" >&2
        [[ -f $PARTIAL/debootstrap/debootstrap.log ]] && tail -n 15 "$PARTIAL/debootstrap/debootstrap.log" >&2
        die "debootstrap of Debian $SUITE from $mirror into $PARTIAL failed (log: $PARTIAL.log). Is the mirror reachable (set OSMTPD_MIRROR) and is there room on $(dirname "$OSMTPD_ROOT")?"
    fi
    # services must not start inside the root while packages are installed (smtpd would bind :25)
    printf '#!/bin/sh\nexit 101\n' >"$PARTIAL/usr/sbin/policy-rc.d"
    chmod 755 "$PARTIAL/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$PARTIAL/etc/resolv.conf"
    mount -t proc proc "$PARTIAL/proc"; MOUNTED+=("$PARTIAL/proc")
    log "installing opensmtpd inside the root"
    if ! chroot "$PARTIAL" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
            sh -c 'echo "opensmtpd opensmtpd/mailname string bench.test" | debconf-set-selections &&
                   apt-get update -q && apt-get install -y -q --no-install-recommends opensmtpd' >>"$PARTIAL.log" 2>&1; then
        tail -n 20 "$PARTIAL.log" >&2
        die "apt-get install opensmtpd inside $PARTIAL failed (log: $PARTIAL.log)"
    fi
    chroot "$PARTIAL" apt-get clean
    rm -rf "$PARTIAL"/var/lib/apt/lists/*   # 80 MB of indexes, not needed to run
    # the delivery user; smtpd looks for ~/.forward before each delivery, so the home must exist
    chroot "$PARTIAL" useradd --system --create-home --home-dir /home/bench --shell /usr/sbin/nologin bench
    umount "$PARTIAL/proc"; MOUNTED=()
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$PARTIAL/etc/hosts"
    echo bench.test >"$PARTIAL/etc/mailname"
    mv "$PARTIAL.log" "$PARTIAL/oceanmx-bench-setup.log"
    mv "$PARTIAL" "$OSMTPD_ROOT"
    PARTIAL=""
    log "ready: $OSMTPD_ROOT ($(chroot "$OSMTPD_ROOT" dpkg-query -W -f '${Package} ${Version}' opensmtpd), $(du -sh --one-file-system "$OSMTPD_ROOT" | cut -f1))"
}

# ---------------------------------------------------------------- start / stop
need_root() {
    [[ -x $OSMTPD_ROOT/usr/sbin/smtpd ]] || die "no OpenSMTPD root at $OSMTPD_ROOT: run bench/opensmtpd_peer.sh setup first"
}

do_clean() {
    need_root
    [[ -z $(root_pids) ]] || die "processes are running in $OSMTPD_ROOT: stop first"
    local d
    rm -rf "${OSMTPD_ROOT:?}$MAILBOX"
    for d in corrupt incoming purge queue temporary offline; do
        [[ -d $OSMTPD_ROOT$SPOOL/$d ]] && find "$OSMTPD_ROOT$SPOOL/$d" -mindepth 1 -delete
    done
    return 0
}

do_start() {
    local port=${1:-}
    [[ $port =~ ^[1-9][0-9]*$ ]] || die "usage: bench/opensmtpd_peer.sh start PORT"
    need_root
    [[ -z $(root_pids) ]] || die "OpenSMTPD is already running in $OSMTPD_ROOT (pids $(root_pids | tr '\n' ' ')): bench/opensmtpd_peer.sh stop"
    do_clean
    local uid gid
    uid=$(chroot "$OSMTPD_ROOT" id -u bench) gid=$(chroot "$OSMTPD_ROOT" id -g bench)
    install -d -m 700 -o "$uid" -g "$gid" "$OSMTPD_ROOT$MAILBOX"
    # smtpd resolves each client's address to a name (asr, its own resolver): /etc/hosts only,
    # no DNS ("lookup" is asr's keyword; like smtpd_peername_lookup = no for Postfix)
    printf '# written by bench/opensmtpd_peer.sh: no DNS for smtpd\nlookup file\n' >"$OSMTPD_ROOT/etc/resolv.conf"
    mkdir -p "$OSMTPD_ROOT$(dirname "$CONF")"
    cat >"$OSMTPD_ROOT$CONF" <<EOF
# written by bench/opensmtpd_peer.sh: loopback only, every recipient of $DOMAIN into one maildir
table bench { "@" = "bench" }
listen on 127.0.0.1 port $port hostname osmtpd.bench.test
# the bench clients send about 1000 messages per session (default limit: 100)
smtp limit max-mails 1000000
action "local" maildir "$MAILBOX" virtual <bench>
match from local for domain "$DOMAIN" action "local"
EOF
    chroot "$OSMTPD_ROOT" /usr/sbin/smtpd -n -f "$CONF" >&2 || die "smtpd -n rejects $OSMTPD_ROOT$CONF"
    exec chroot "$OSMTPD_ROOT" /usr/sbin/smtpd -d -f "$CONF"
}

do_stop() {
    [[ -d $OSMTPD_ROOT ]] || return 0
    local pids i
    pids=$(root_pids)
    [[ -n $pids ]] || return 0
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -n $(root_pids) ]] || return 0
        sleep 0.1
    done
    pids=$(root_pids)
    log "still running after 10 s, killing: $pids"
    kill -KILL $pids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [[ -n $(root_pids) ]] || return 0; sleep 0.1; done
    die "processes left in $OSMTPD_ROOT: $(root_pids | tr '\n' ' ')"
}

do_remove() {
    do_stop
    local r
    for r in "$OSMTPD_ROOT" "$OSMTPD_ROOT.partial"; do
        [[ -e $r ]] || continue
        umount "$r/proc" 2>/dev/null || true
        [[ -z $(findmnt -rn -o TARGET | grep -F "$r/") ]] || die "something is still mounted under $r"
        rm -rf --one-file-system "$r" "$r.log"
        log "removed $r"
    done
}

case ${1:-} in
    setup) do_setup ;;
    start) do_start "${2:-}" ;;
    stop) do_stop ;;
    pids) need_root; root_pids ;;
    maildir) echo "$OSMTPD_ROOT$MAILBOX" ;;
    root) echo "$OSMTPD_ROOT" ;;
    clean) do_clean ;;
    remove) do_remove ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
