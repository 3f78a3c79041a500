#!/usr/bin/env bash
# bench/suite.sh - oceanmx against its peers, every workload, one run, with
# the bundled load generator (build/oceanmx-load). Writes
# bench/results/suite-DATE.md (table, ratios to oceanmx, machine and kernel)
# and suite-DATE.svg (chart, gnuplot) plus the raw JSON reports.
#
#   bench/suite.sh                      full run (about 5-10 minutes)
#   SUITE_QUICK=1 bench/suite.sh        small counts (about 1-2 minutes)
#   SUITE_PEERS="oceanmx sink" bench/suite.sh
#
# Peers, each on its own free 127.0.0.1 port with private config and data
# under a temp dir (nothing system-wide is changed; everything started here
# is stopped on exit):
#   oceanmx   build/oceanmx, maildir sink (durable: fsync before 250)
#   sink      Postfix smtp-sink: stores nothing, the ceiling
#   postfix   a private Postfix instance (bench/postfix_peer.sh: smtpd ->
#             virtual(8) -> maildir)
#   aiosmtpd  Python aiosmtpd, a handler that writes each message to a file
#             (and verifies DKIM in W4, with python3-dkim)
#   haraka    Haraka from the npm registry, a plugin that writes each message
#             to a file (skipped if npm cannot install it)
#   opensmtpd OpenSMTPD delivering to a maildir, in its own Debian root
#             (bench/opensmtpd_peer.sh: Debian's opensmtpd conflicts with
#             postfix, which the tests need; the first run debootstraps it,
#             about 50 MB of downloads)
#
# Workloads (oceanmx-load): W1 4 KiB, 20 sessions, persistent; W2 100 KiB,
# 10 sessions; W3 one message per connection, 50 concurrent; W4 DKIM
# rsa-sha256 signed 4 KiB (verified where the peer can); W5 10,000 idle
# connections (server memory per connection, bench/idle_conns.py); W6 open
# loop at half of oceanmx's W1 rate (latency from the intended send time).
# Also: Postfix smtp-source against smtp-sink with W1's shape, next to
# oceanmx-load, to show the generator is not the bottleneck.
# Server CPU of a workload runs from its start until the peer is idle again,
# so work deferred past the 250 (Postfix's and OpenSMTPD's delivery into the
# maildir) is charged to the workload that caused it, not to the next one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMX="${OMX_BIN:-$ROOT/build/oceanmx}"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
PEERS="${SUITE_PEERS:-oceanmx sink postfix opensmtpd aiosmtpd haraka}"
OUT="${SUITE_OUT:-$ROOT/bench/results}"
PY=/usr/bin/python3
QUICK="${SUITE_QUICK:-0}"
if [[ $QUICK != 0 ]]; then
    N1=3000 N2=300 N3=600 N4=600 N5=2000 D6=3
else
    N1=20000 N2=2000 N3=4000 N4=4000 N5=10000 D6=10
fi
TO=rcpt@y.test FROM=load@x.test

log() { printf '%s suite: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (peers run as nobody/postfix, apt-get may be needed)"
PFPEER="$ROOT/bench/postfix_peer.sh"
OSMTPD="$ROOT/bench/opensmtpd_peer.sh"

# ---------------------------------------------------------------- packages
need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have smtp-sink || need_pkgs+=(postfix)
have gnuplot || need_pkgs+=(gnuplot-nox)
$PY -c 'import aiosmtpd' 2>/dev/null || need_pkgs+=(python3-aiosmtpd)
$PY -c 'import dkim, nacl' 2>/dev/null || need_pkgs+=(python3-dkim python3-nacl)
have npm || need_pkgs+=(npm)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# free_port, wait_greeting (the 220 within 30 s), omx_build_if_missing
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-suite.XXXXXX)"
chmod 755 "$WORK"
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/json"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# cgroup v2 for server CPU (usage_usec includes every process and thread).
CG_ROOT=""
for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    if [[ -f $d/cgroup.procs && -w $d ]] && mkdir "$d/oceanmx-suite.$$" 2>/dev/null; then
        CG_ROOT="$d/oceanmx-suite.$$"; break
    fi
done

CUR_PEER="" CUR_PID="" CUR_CG="" CUR_PFCFG=""
stop_peer() {
    [[ -n $CUR_PEER ]] || return 0
    case $CUR_PEER in
    postfix) "$PFPEER" stop "$(dirname "$CUR_PFCFG")" || true ;;
    esac
    if [[ -n $CUR_PID ]] && kill -0 "$CUR_PID" 2>/dev/null; then
        kill -TERM "$CUR_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$CUR_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CUR_PID" 2>/dev/null || true
    fi
    # smtpd's children (and anything else left in OpenSMTPD's root)
    [[ $CUR_PEER == opensmtpd ]] && { "$OSMTPD" stop || true; }
    # Anything of this peer still in its cgroup (Postfix children, node workers).
    if [[ -n $CUR_CG && -f $CUR_CG/cgroup.procs ]]; then
        for _ in $(seq 50); do
            [[ -s $CUR_CG/cgroup.procs ]] || break
            xargs -r kill -KILL <"$CUR_CG/cgroup.procs" 2>/dev/null || true
            sleep 0.1
        done
        rmdir "$CUR_CG" 2>/dev/null || true
    fi
    CUR_PEER="" CUR_PID="" CUR_CG=""
}
cleanup() {
    stop_peer
    [[ ${OSMTPD_USED:-0} == 1 && ${SUITE_KEEP:-0} == 0 ]] && { "$OSMTPD" clean || true; }
    [[ -n ${DNS_PID:-} ]] && kill "$DNS_PID" 2>/dev/null || true
    [[ -n $CG_ROOT ]] && rmdir "$CG_ROOT" 2>/dev/null || true
    if [[ ${SUITE_KEEP:-0} == 0 ]]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cg_cpu_us() { [[ -n $CUR_CG ]] && awk '/^usage_usec/ {print $2}' "$CUR_CG/cpu.stat" || echo ""; }
listen_overflows() {  # TcpExt ListenOverflows of the whole machine (accept queue full)
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 } else print (c ? $c : 0) }' /proc/net/netstat
}
settle() {  # wait until the peer is idle (< 5 ms of CPU in 0.5 s), at most 120 s
    [[ -n $CUR_CG ]] || return 0
    local a b deadline=$((SECONDS + 120))
    a=$(cg_cpu_us)
    while ((SECONDS < deadline)); do
        sleep 0.5
        b=$(cg_cpu_us)
        ((b - a < 5000)) && return 0
        a=$b
    done
    log "$CUR_PEER: still busy 120 s after the workload"
}
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
cg_rss_kb() {  # proportional set size of every process of the peer (shared pages split)
    [[ -n $CUR_CG ]] || { pss_kb "$CUR_PID"; return; }
    local t=0 p
    for p in $(cat "$CUR_CG/cgroup.procs"); do
        t=$((t + $(pss_kb "$p")))
    done
    echo "$t"
}
launch() {  # launch PEER CMD...: start in the peer's cgroup, in the background
    CUR_PEER=$1; shift
    CUR_CG=""
    if [[ -n $CG_ROOT ]]; then CUR_CG="$CG_ROOT/$CUR_PEER"; mkdir -p "$CUR_CG"; fi
    (
        [[ -n $CUR_CG ]] && echo "$BASHPID" >"$CUR_CG/cgroup.procs"
        exec "$@"
    ) >"$WORK/$CUR_PEER.log" 2>&1 &
    CUR_PID=$!
}

# ---------------------------------------------------------------- peers
start_oceanmx() {
    local d=$WORK/oceanmx; mkdir -p "$d"
    # Keys (W4) and SPF/DMARC records come from the suite's DNS server on
    # loopback, so verification does real work instead of failing lookups.
    launch oceanmx "$OMX" serve --listen "127.0.0.1:$1" --spool "$d/spool" --sink "maildir:$d/maildir" \
        --hostname bench.test --max-connections 20000 --max-connections-per-ip 0 --shutdown-timeout 5 \
        ${DNS_PORT:+--dns 127.0.0.1:$DNS_PORT}
}
start_sink() { launch sink smtp-sink -u nobody "127.0.0.1:$1" 1000; }
start_postfix() {
    # The private instance of bench/postfix_peer.sh (the one bench/peers.sh
    # measures): loopback, virtual(8) into one maildir owned by nobody, no
    # throttles, no DNS.
    local pf=$WORK/postfix
    "$PFPEER" setup "$pf" "$1"
    CUR_PFCFG="$pf/etc"
    # postfix start forks the master and returns; the master stays in the cgroup.
    launch postfix "$PFPEER" start "$pf"
    wait "$CUR_PID" || die "private Postfix did not start (see $pf/maillog)"
    CUR_PID=$("$PFPEER" pid "$pf")
}
start_opensmtpd() {
    # smtpd (Debian's OpenSMTPD) in the root of bench/opensmtpd_peer.sh, in
    # the foreground; every recipient of y.test into one maildir in the root.
    OSMTPD_USED=1
    launch opensmtpd "$OSMTPD" start "$1"
}
start_aiosmtpd() {
    local d=$WORK/aiosmtpd; mkdir -p "$d/mail"
    cat >"$d/server.py" <<'EOF'
# aiosmtpd peer of bench/suite.sh: writes each message to its own file; with
# a zone file (argv 3) it verifies DKIM with python3-dkim and refuses failures.
import asyncio, itertools, os, re, sys
from aiosmtpd.smtp import SMTP
port, outdir = int(sys.argv[1]), sys.argv[2]
zone = {}
if len(sys.argv) > 3:
    import dkim
    for line in open(sys.argv[3], "rb"):
        m = re.match(rb"^(\S+)\s+IN\s+TXT\s+\((.*)\)\s*$", line)
        if m:
            zone[m.group(1).lower().rstrip(b".")] = b"".join(re.findall(rb'"([^"]*)"', m.group(2)))
seq = itertools.count()
class Handler:
    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        with open(os.path.join(outdir, "%d.eml" % next(seq)), "wb") as f:
            f.write(data)
        if zone:
            try:
                ok = dkim.verify(data, dnsfunc=lambda n, timeout=5: zone.get(n.lower().rstrip(b".")))
            except Exception:
                ok = False
            if not ok:
                return "550 5.7.20 DKIM verification failed"
        return "250 2.0.0 Ok: queued"
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
srv = loop.run_until_complete(loop.create_server(lambda: SMTP(Handler(), hostname="aiosmtpd.bench.test"),
                                                 "127.0.0.1", port, backlog=4096))
loop.run_forever()
EOF
    launch aiosmtpd $PY "$d/server.py" "$1" "$d/mail" ${AIO_ZONE:+"$AIO_ZONE"}
}
HARAKA_DIR=$WORK/haraka-npm
haraka_install() {
    [[ -x $HARAKA_DIR/node_modules/.bin/haraka ]] && return 0
    have npm || return 1
    mkdir -p "$HARAKA_DIR"
    log "npm install Haraka (private prefix $HARAKA_DIR)"
    timeout 600 npm install --no-audit --no-fund --prefix "$HARAKA_DIR" Haraka >"$WORK/haraka-npm.log" 2>&1
}
start_haraka() {
    local d=$WORK/haraka port=$1
    rm -rf "$d"; mkdir -p "$d/mail"
    "$HARAKA_DIR/node_modules/.bin/haraka" -i "$d/srv" >/dev/null 2>&1 || return 1
    printf '[main]\nlisten=127.0.0.1:%s\nnodes=0\n' "$port" >"$d/srv/config/smtp.ini"
    printf 'omx_file\n' >"$d/srv/config/plugins"
    printf 'bench.test\n' >"$d/srv/config/me"
    printf 'LOGWARN\n' >"$d/srv/config/loglevel"
    cat >"$d/srv/plugins/omx_file.js" <<EOF
// bench/suite.sh peer: accept every recipient, write each message to a file.
const fs = require('fs');
let seq = 0;
exports.hook_rcpt = function (next) { next(OK); };
exports.hook_queue = function (next, connection) {
    const ws = fs.createWriteStream('$d/mail/' + process.pid + '.' + (seq++) + '.eml');
    ws.on('finish', () => next(OK));
    ws.on('error', () => next(DENYSOFT));
    connection.transaction.message_stream.pipe(ws);
};
EOF
    launch haraka "$HARAKA_DIR/node_modules/.bin/haraka" -c "$d/srv"
}

# ---------------------------------------------------------------- measuring
RES="$WORK/results.tsv"
printf 'peer\tworkload\tmsgs_s\tmib_s\tcpu_us_msg\tp99_ms\trss_mib\tdelivered\tfailed\tnote\n' >"$RES"

# measure PEER WORKLOAD NOTE ARGS...: one oceanmx-load run against the current peer
measure() {
    local peer=$1 w=$2 note=$3; shift 3
    local j="$WORK/json/$peer-$w.json" c0 c1 rc=0 o0 o1
    o0=$(listen_overflows)
    c0=$(cg_cpu_us)
    timeout -k 10 600 "$LOAD" --json -q --timeout 60 --from $FROM --to $TO "$@" "127.0.0.1:$PORT" >"$j" 2>"$j.err" || rc=$?
    settle   # deferred work (delivery into the maildir) belongs to this workload
    c1=$(cg_cpu_us)
    o1=$(listen_overflows)
    $PY - "$j" "$peer" "$w" "${c0:-}" "${c1:-}" "$(cg_rss_kb)" "$note" "$rc" "$((o1 - o0))" >>"$RES" <<'EOF'
import json, sys
j, peer, w, c0, c1, rss, note, rc, overflows = sys.argv[1:]
try:
    r = json.load(open(j))
except Exception:
    print("\t".join([peer, w, "", "", "", "", "", "0", "", "no report (exit %s)" % rc])); sys.exit()
d = r["messages"]["delivered"]
cpu = "%.0f" % ((int(c1) - int(c0)) / d) if c0 and c1 and d else ""
extra = []
if r.get("connection_errors"):
    extra.append("%d of %d sessions failed, setup p99 %.2f s" % (r["connection_errors"], r["connections_opened"],
                                                               r["setup_latency_us"]["p99"] / 1e6))
if int(overflows):
    extra.append("accept queue overflowed %s times (TcpExtListenOverflows)" % overflows)
if not r["ok"]:
    extra.append("FAILED: %s" % (r.get("first_error") or "incomplete"))
note = "; ".join([note] + extra if note else extra)
print("\t".join([peer, w, "%.0f" % r["msgs_per_s"], "%.2f" % r["mib_per_s"], cpu,
                 "%.2f" % (r["latency_us"]["p99"] / 1000), "%.1f" % (int(rss or 0) / 1024),
                 str(d), str(r["messages"]["failed"]), note.replace("\t", " ")]))
EOF
    log "$peer $w: $(tail -1 "$RES" | cut -f3-10 | tr '\t' ' ')"
}

W1_RATE=""
run_peer() {
    local peer=$1
    PORT=$(free_port)
    case $peer in
    haraka) haraka_install || { log "haraka: npm install failed, skipped"; SKIPPED+=("haraka: npm install failed (see haraka-npm.log)"); return; } ;;
    opensmtpd) "$OSMTPD" setup || { log "opensmtpd: setup failed, skipped"; SKIPPED+=("opensmtpd: bench/opensmtpd_peer.sh setup failed (debootstrap or apt-get in its root)"); return; } ;;
    esac
    "start_$peer" "$PORT" || { log "$peer: did not start"; SKIPPED+=("$peer: did not start"); stop_peer; return; }
    if ! wait_greeting "$PORT"; then
        log "$peer: no greeting on port $PORT"; tail -5 "$WORK/$peer.log" >&2 || true
        SKIPPED+=("$peer: no greeting"); stop_peer; return
    fi
    log "$peer on 127.0.0.1:$PORT"
    measure "$peer" W1 "" -m $N1 -c 20 --size 4096
    if [[ $peer == oceanmx ]]; then
        W1_RATE=$($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' "$WORK/json/oceanmx-W1.json")
    fi
    measure "$peer" W2 "" -m $N2 -c 10 --size 100k
    measure "$peer" W3 "" -m $N3 -c 50 -p 1 --size 4096
    local vnote="signed, not verified"
    case $peer in aiosmtpd) vnote="verified (python3-dkim)" ;; oceanmx) vnote="verified (DKIM, ARC, SPF and DMARC on; key from a loopback DNS server)" ;; esac
    if [[ $peer == aiosmtpd ]]; then
        stop_peer; PORT=$(free_port); AIO_ZONE="$WORK/dkim.zone" start_aiosmtpd "$PORT"; wait_greeting "$PORT" || true
    fi
    measure "$peer" W4 "$vnote" -m $N4 -c 20 --size 4096 --dkim rsa --dkim-key "$WORK/dkim.pem" --dkim-dns "$WORK/dkim.zone.new"
    if [[ $peer == aiosmtpd ]]; then
        stop_peer; PORT=$(free_port); start_aiosmtpd "$PORT"; wait_greeting "$PORT" || true
    fi
    if [[ -n $W1_RATE && $W1_RATE -gt 1 ]]; then
        measure "$peer" W6 "open loop at $((W1_RATE / 2)) msg/s" -d $D6 -R $((W1_RATE / 2)) -c 50 --size 4096
    fi
    case $peer in
    postfix) printf '%s\tW5\t\t\t\t\t\t\t\tn/a: one smtpd process per connection (process limit 200)\n' "$peer" >>"$RES" ;;
    *)
        local j="$WORK/json/$peer-W5.json" rc=0 mpid=$CUR_PID what="the server process"
        if [[ $peer == opensmtpd ]]; then
            # the sessions live in smtpd's "pony express" process (smtp, mta and mda)
            mpid="" what="smtpd's pony express process (holds the sessions)"
            for p in $("$OSMTPD" pids); do
                [[ $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == "smtpd: pony express"* ]] && mpid=$p
            done
        fi
        timeout -k 10 600 $PY "$ROOT/bench/idle_conns.py" --pid "${mpid:-0}" --port "$PORT" -n $N5 --sources 50 --timeout 60 \
            --json "$j" >"$j.out" 2>&1 || rc=$?
        $PY - "$j" "$peer" "$rc" "$what" >>"$RES" <<'EOF'
import json, sys
j, peer, rc, what = sys.argv[1:]
try:
    r = json.load(open(j))
    print("%s\tW5\t\t\t\t\t\t\t\t%s B/conn (anon RSS %s B/conn) of %s, %s of %s idle connections greeted"
          % (peer, r.get("vmrss_bytes_per_conn"), r.get("rssanon_bytes_per_conn"), what, r.get("greeted"), r.get("requested")))
except Exception as e:
    print("%s\tW5\t\t\t\t\t\t\t\tfailed (exit %s)" % (peer, rc))
EOF
        log "$peer W5: $(tail -1 "$RES" | cut -f10)"
        ;;
    esac
    stop_peer
}

# The DKIM key and zone are made once, so every peer gets the same records.
"$LOAD" --print-message --dkim rsa --dkim-key "$WORK/dkim.pem" --dkim-dns "$WORK/dkim.zone" --from $FROM --to $TO >/dev/null
# A DNS server on loopback serves the key to oceanmx (tests/integ/dns_server.py, python3-dnslib).
DNS_PORT=""
sed 's/ IN TXT ( / 300 IN TXT /; s/ )$//' "$WORK/dkim.zone" > "$WORK/dkim.zone.flat"
if $PY -c 'import dnslib' 2>/dev/null; then
    $PY "$ROOT/tests/integ/dns_server.py" "$WORK/dkim.zone.flat" > "$WORK/dns.out" 2>&1 &
    DNS_PID=$!
    for _ in $(seq 50); do grep -q PORT "$WORK/dns.out" 2>/dev/null && break; sleep 0.1; done
    DNS_PORT=$(awk '/PORT/{print $2}' "$WORK/dns.out")
fi

SKIPPED=()
for p in $PEERS; do
    case $p in oceanmx | sink | postfix | opensmtpd | aiosmtpd | haraka) run_peer "$p" ;; *) SKIPPED+=("$p: unknown peer") ;; esac
done

# The generator against smtp-source: same shape as W1, against smtp-sink, same run.
# Besides msg/s, each client's own CPU per message (getrusage of the child) and
# how busy smtp-sink was (its cgroup's CPU over the run, in cores): when the
# sink is near one core it is the ceiling and msg/s cannot tell the clients
# apart any more, but their CPU per message still can.
client_cpu() {  # client_cpu CPUFILE CMD...: run CMD, its stdout passes through, CPU seconds to CPUFILE
    local f=$1; shift
    $PY -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write("%.4f\n" % (u.ru_utime + u.ru_stime))
sys.exit(r.returncode)' "$f" "$@"
}
GEN_CMP=""
if have smtp-source && have smtp-sink; then
    PORT=$(free_port); start_sink "$PORT"; wait_greeting "$PORT"
    for rep in 1 2 3; do
        c0=$(cg_cpu_us); t0=$(date +%s.%N)
        client_cpu "$WORK/ss.cpu" smtp-source -d -s 20 -m $N1 -l 4096 -f $FROM -t $TO "127.0.0.1:$PORT" >/dev/null 2>&1 || true
        t1=$(date +%s.%N); c1=$(cg_cpu_us)
        ss=$($PY -c "print('%.0f' % ($N1 / ($t1 - $t0)))")
        ss_us=$($PY -c "print('%.1f' % (float(open('$WORK/ss.cpu').read()) * 1e6 / $N1))")
        ss_busy=$($PY -c "print('%.2f' % ((${c1:-0} - ${c0:-0}) / 1e6 / ($t1 - $t0)) if '${c0}' else '?')")
        c0=$(cg_cpu_us); t0=$(date +%s.%N)
        ol=$(client_cpu "$WORK/ol.cpu" "$LOAD" --json -q -m $N1 -c 20 --size 4096 --from $FROM --to $TO "127.0.0.1:$PORT" |
            $PY -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["msgs_per_s"])')
        t1=$(date +%s.%N); c1=$(cg_cpu_us)
        ol_us=$($PY -c "print('%.1f' % (float(open('$WORK/ol.cpu').read()) * 1e6 / $N1))")
        ol_busy=$($PY -c "print('%.2f' % ((${c1:-0} - ${c0:-0}) / 1e6 / ($t1 - $t0)) if '${c0}' else '?')")
        GEN_CMP+="| $rep | $ss | $ss_us | $ss_busy | $ol | $ol_us | $ol_busy | $($PY -c "print('%.2f' % ($ol / $ss))") | $($PY -c "print('%.2f' % ($ss_us / $ol_us))") |"$'\n'
        log "smtp-sink: smtp-source $ss msg/s ($ss_us us/msg), oceanmx-load $ol msg/s ($ol_us us/msg)"
    done
    stop_peer
fi

# ---------------------------------------------------------------- report
VERSIONS="postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
if [[ ${OSMTPD_USED:-0} == 1 ]]; then
    VERSIONS+=", opensmtpd $(chroot "$("$OSMTPD" root)" dpkg-query -W -f '${Version}' opensmtpd 2>/dev/null) (Debian $(cat "$("$OSMTPD" root)/etc/debian_version") root $("$OSMTPD" root), same filesystem as the peers' temp dir: $([[ $(stat -c %d "$("$OSMTPD" root)") == $(stat -c %d "$WORK") ]] && echo yes || echo no))"
fi
MD="$OUT/suite-$STAMP.md"
SVG="$OUT/suite-$STAMP.svg"
cp "$RES" "$OUT/suite-$STAMP.tsv"
$PY - "$RES" "$MD" "$SVG" "$WORK" <<EOF
import csv, os, subprocess, sys
res, md, svg, work = sys.argv[1:]
rows = list(csv.DictReader(open(res), delimiter="\t"))
base = {r["workload"]: r for r in rows if r["peer"] == "oceanmx"}
def ratio(r, k, inv=False):
    b = base.get(r["workload"], {}).get(k)
    try:
        v, b = float(r[k]), float(b)
        return "%.2f" % ((b / v) if inv else (v / b)) if b and v else ""
    except (TypeError, ValueError):
        return ""
names = {"W1": "W1 4 KiB, 20 sessions, persistent", "W2": "W2 100 KiB, 10 sessions",
         "W3": "W3 1 message per connection, 50 concurrent", "W4": "W4 DKIM rsa-sha256 signed 4 KiB",
         "W5": "W5 idle connections (memory)", "W6": "W6 open loop at half of oceanmx's W1 rate"}
out = []
out.append("# oceanmx against its peers (bench/suite.sh), %s\n" % "$STAMP")
out.append("One command: \`bench/suite.sh\`%s. Every figure below comes from this one run on this machine;" % (" (SUITE_QUICK=1)" if "$QUICK" != "0" else ""))
out.append("compare ratios, not absolute numbers, across machines. Ratios are peer / oceanmx for throughput")
out.append("and oceanmx / peer for costs (CPU, p99, memory): **> 1 means the peer is better**.\n")
out.append("## Machine\n")
out.append("- kernel: %s" % os.uname().release)
out.append("- cpu: %s x %d" % (next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"), os.cpu_count()))
mem = {l.split(":")[0]: l.split()[1] for l in open("/proc/meminfo")}
out.append("- memory: %d MiB" % (int(mem["MemTotal"]) // 1024))
out.append("- os: %s" % next((l.split("=",1)[1].strip().strip('"') for l in open("/etc/os-release") if l.startswith("PRETTY_NAME")), "?"))
out.append("- oceanmx tree: %s" % subprocess.run(["git", "-C", "$ROOT", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip())
out.append("- peers: %s" % """$VERSIONS""")
out.append("- load generator: build/oceanmx-load on the same machine (shares the CPUs with the server)")
out.append("- server CPU: cgroup v2 cpu.stat usage_usec of every process of the peer, per delivered message, from the start of the workload until the peer is idle again (< 5 ms of CPU in 0.5 s), so delivery after the 250 counts%s" % ("" if "$CG_ROOT" else " (n/a: no writable cgroup v2)"))
out.append("- memory: PSS (/proc/PID/smaps_rollup, shared pages split between processes) of every process of the peer after the workload\n")
out.append("## What each peer does before its 250\n")
out.append("| peer | stores | durable before 250 |")
out.append("| --- | --- | --- |")
out.append("| oceanmx | spool file, then maildir | yes: the spool file and its directory entry are synced (one syncfs per batch, `--spool-sync syncfs`) |")
out.append("| sink | nothing (Postfix smtp-sink) | no: the ceiling of this client on this machine |")
out.append("| postfix | queue file (cleanup), then virtual(8) into a maildir | yes: Postfix fsyncs the queue file |")
out.append("| opensmtpd | queue file, then mail.maildir into a maildir | no: the queue file is not fsynced; each maildir file is, at delivery |")
out.append("| aiosmtpd | one file per message, written by the handler | no fsync |")
out.append("| haraka | one file per message, written by a plugin | no fsync |\n")
if any(r["peer"] == "opensmtpd" for r in rows):
    out.append("OpenSMTPD listens with a backlog of 5 (SMTPD_BACKLOG, compiled in). When more handshakes than that")
    out.append("are pending, Linux answers with SYN cookies (net.ipv4.tcp_syncookies = 1 here), and a client's ACK that")
    out.append("arrives while the accept queue is full is dropped without a trace on the server. The client's socket is")
    out.append("open, the server never saw it, and since SMTP's server speaks first the client waits for a greeting")
    out.append("until oceanmx-load's 60 s timeout: the \"sessions failed\" and \"accept queue overflowed\" notes. Those")
    out.append("runs' msg/s include that wait. \`bench/peers.sh\` measures OpenSMTPD with smtp-source and records the")
    out.append("same overflow counter in its notes.\n")
for w in ["W1", "W2", "W3", "W4", "W6"]:
    wr = [r for r in rows if r["workload"] == w]
    if not wr:
        continue
    out.append("## %s\n" % names[w])
    out.append("| peer | msg/s | x | MiB/s | server CPU us/msg | x | p99 ms | x | PSS MiB | delivered | failed | note |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in wr:
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["peer"], r["msgs_s"], ratio(r, "msgs_s"), r["mib_s"], r["cpu_us_msg"], ratio(r, "cpu_us_msg", True),
            r["p99_ms"], ratio(r, "p99_ms", True), r["rss_mib"], r["delivered"], r["failed"], r["note"]))
    out.append("")
wr = [r for r in rows if r["workload"] == "W5"]
if wr:
    out.append("## %s\n" % names["W5"])
    out.append("| peer | result |")
    out.append("| --- | --- |")
    for r in wr:
        out.append("| %s | %s |" % (r["peer"], r["note"]))
    out.append("")
gen = """$GEN_CMP"""
if gen.strip():
    out.append("## The load generator is not the bottleneck\n")
    out.append("Against Postfix smtp-sink, W1's shape (%s messages of 4 KiB, 20 sessions, many messages" % "$N1")
    out.append("per session): Postfix \`smtp-source -d -s 20 -m %s -l 4096\` then \`oceanmx-load -m %s -c 20\`, alternating.\n" % ("$N1", "$N1"))
    out.append("Client CPU is each client's own (getrusage); sink busy is smtp-sink's CPU over the run in cores:")
    out.append("near 1.00 smtp-sink (one process) is the ceiling, and the msg/s ratio is capped by it while the")
    out.append("CPU ratio still shows how much more the generator could drive.\n")
    out.append("| round | smtp-source msg/s | its CPU µs/msg | sink busy | oceanmx-load msg/s | its CPU µs/msg | sink busy | msg/s ratio | CPU ratio |")
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    out.append(gen.rstrip())
    out.append("")
skipped = """$(printf '%s\n' "${SKIPPED[@]}")"""
if skipped.strip():
    out.append("## Not measured\n")
    for s in skipped.strip().splitlines():
        out.append("- " + s)
out.append("\nRaw figures: \`%s\` (one row per peer and workload)." % os.path.basename(md).replace(".md", ".tsv"))
out.append("\n![chart](%s)\n" % os.path.basename(svg))
open(md, "w").write("\n".join(out) + "\n")
# Chart: msg/s per workload, one bar per peer.
peers = []
for r in rows:
    if r["peer"] not in peers:
        peers.append(r["peer"])
ws = ["W1", "W2", "W3", "W4"]
dat = os.path.join(work, "chart.dat")
with open(dat, "w") as f:
    f.write("workload " + " ".join(peers) + "\n")
    for w in ws:
        vals = []
        for p in peers:
            v = [r["msgs_s"] for r in rows if r["peer"] == p and r["workload"] == w]
            vals.append(v[0] if v and v[0] else "0")
        f.write(w + " " + " ".join(vals) + "\n")
gp = """set terminal svg size 900,500 dynamic font 'sans,11'
set output '%s'
set title 'messages/s by workload (bench/suite.sh, %s)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set ylabel 'messages/s'
set logscale y
set yrange [1:*]
set grid ytics
plot for [i=2:%d] '%s' using i:xtic(1) title columnheader
""" % (svg, "$STAMP", len(peers) + 1, dat)
subprocess.run(["gnuplot"], input=gp, text=True, check=False)
EOF
cp "$WORK"/json/*.json "$OUT/" 2>/dev/null || true
mkdir -p "$OUT/suite-$STAMP.json" && mv "$OUT"/*-W[0-9].json "$OUT/suite-$STAMP.json/" 2>/dev/null || true
log "wrote $MD and $SVG"
cat "$MD"
