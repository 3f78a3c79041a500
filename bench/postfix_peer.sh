#!/usr/bin/env bash
# bench/postfix_peer.sh - a private Postfix instance as a benchmark peer (bench/peers.sh, bench/suite.sh).
#
#   bench/postfix_peer.sh setup DIR PORT   write the instance under DIR: DIR/etc (main.cf, master.cf),
#                                          DIR/queue, DIR/data, DIR/mail (the maildir is DIR/mail/maildir)
#   bench/postfix_peer.sh start DIR        postfix -c DIR/etc start (bounded to 60 s); the master
#                                          forks and stays in the caller's cgroup
#   bench/postfix_peer.sh stop DIR         postfix -c DIR/etc stop, then wait (30 s) for the master to exit
#   bench/postfix_peer.sh pid DIR          print the master's pid
#   bench/postfix_peer.sh maildir DIR      print the maildir (new/ holds the mail)
#
# The instance has its own config_directory, queue_directory and data_directory under DIR;
# /etc/postfix is not touched. master.cf has one smtpd on 127.0.0.1:PORT, nothing chrooted;
# main.cf accepts y.test with virtual_mailbox_domains and delivers every recipient with virtual(8)
# into one maildir owned by nobody. Throttles that would slow 20 parallel sessions from one client
# are off, no DNS for the client, and it logs to DIR/maillog through postlogd (no syslog daemon).
# DIR and its parents must be searchable by the postfix and nobody users.
set -Eeuo pipefail

die() { printf 'postfix_peer: error: %s\n' "$*" >&2; exit 1; }

cmd=${1:-}
pf=${2:-}
[[ -n $pf ]] || die "usage: bench/postfix_peer.sh {setup DIR PORT|start DIR|stop DIR|pid DIR|maildir DIR}"
[[ $pf == /* ]] || pf="$PWD/$pf"

do_setup() {
    local port=${1:-}
    [[ $port =~ ^[1-9][0-9]*$ ]] || die "usage: bench/postfix_peer.sh setup DIR PORT"
    mkdir -p "$pf/etc" "$pf/queue" "$pf/data" "$pf/mail"
    chown postfix "$pf/data"
    chown nobody:nogroup "$pf/mail"
    chmod 755 "$pf" "$pf/mail"
    cat >"$pf/etc/main.cf" <<EOF
# private instance of bench/postfix_peer.sh: loopback only, virtual(8) delivery into one maildir
compatibility_level = 3.6
config_directory = $pf/etc
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.bench.test
mydomain = bench.test
myorigin = \$myhostname
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
# no DNS for the loopback client
smtpd_peername_lookup = no
# do not throttle 20 parallel sessions from one client
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
in_flow_delay = 0
# delivery: every recipient of y.test into one maildir, owned by nobody
virtual_mailbox_domains = y.test
virtual_mailbox_base = $pf/mail
virtual_mailbox_maps = static:maildir/
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
virtual_minimum_uid = 100
# no syslog daemon here: log to a file (postlogd is part of the instance)
maillog_file_prefixes = $pf
maillog_file = $pf/maillog
EOF
    cat >"$pf/etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
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
EOF
}

master_pid() { tr -d ' ' <"$pf/queue/pid/master.pid" 2>/dev/null; }

do_stop() {
    [[ -d $pf/etc ]] || return 0
    timeout -k 5 60 postfix -c "$pf/etc" stop >/dev/null 2>&1 || true
    local mpid i
    mpid=$(master_pid || true)
    [[ -n $mpid ]] || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$mpid" 2>/dev/null || return 0
        # a zombie (child of the caller, not yet reaped) is gone for our purposes
        [[ $(awk '{print $3}' "/proc/$mpid/stat" 2>/dev/null) == Z ]] && return 0
        sleep 0.1
    done
    return 0
}

case $cmd in
    setup) do_setup "${3:-}" ;;
    start) [[ -f $pf/etc/main.cf ]] || die "no instance in $pf: run setup first"
           exec timeout -k 5 60 postfix -c "$pf/etc" start ;;
    stop) do_stop ;;
    pid) master_pid || die "no master.pid in $pf/queue/pid" ;;
    maildir) echo "$pf/mail/maildir" ;;
    *) die "unknown command '$cmd' (setup DIR PORT|start DIR|stop DIR|pid DIR|maildir DIR)" ;;
esac
