#!/usr/bin/env bash
# bench/peers.sh - oceanmx against Postfix and OpenSMTPD peers, measured in the same run on this machine.
#
# Peers (all on 127.0.0.1, fresh instance for every measurement):
#   oceanmx    build/oceanmx serve, spool + maildir sink (durable before 250)
#   sink       Postfix smtp-sink: answers 250 and stores nothing (the ceiling)
#   postfix    a private Postfix instance (bench/postfix_peer.sh): smtpd -> cleanup -> qmgr ->
#              virtual(8) into one maildir
#   opensmtpd  OpenSMTPD in its own Debian root (bench/opensmtpd_peer.sh; Debian's package conflicts
#              with postfix): smtpd -> queue -> mda (mail.maildir) into one maildir
# Workload: smtp-source -d -s SESSIONS -m MESSAGES -l SIZE (many messages per connection).
# Figures per measurement: messages/s (smtp-source wall clock, and until the last message is in
# the maildir), server CPU per message (cgroup v2 cpu.stat of the server's own cgroup), fsync-like
# calls per message (perf, counted in the server's cgroup only) and device flushes per message
# (/proc/diskstats, the whole device). Every server is measured REPEATS times, interleaved; the
# table shows median and min-max, and ratios of each peer to oceanmx from the same run.
# For oceanmx the CPU is also split by thread role (/proc/PID/task), and each round also times
# the floors of what oceanmx does per message (omx-sync-bench: the Maildir protocol alone, the
# spool's group commit alone), so the report can set each part against the least it can cost
# here (see "Where oceanmx's CPU goes" in the report).
# See bench/README.md. Everything runs on loopback and is bounded in time; all processes that
# this script starts are stopped on exit.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/.." && pwd)
PY=/usr/bin/python3
PROBE=("$PY" "$HERE/smtp_probe.py")

MESSAGES=${BENCH_MESSAGES:-20000}
SESSIONS=${BENCH_SESSIONS:-20}
SIZE=${BENCH_SIZE:-4096}
REPEATS=${BENCH_REPEATS:-3}
SERVERS=${BENCH_SERVERS:-"oceanmx sink postfix opensmtpd"}
OMX_BIN=${OMX_BIN:-$ROOT/build/oceanmx}
SYNC_BENCH=${SYNC_BENCH:-$(dirname "$OMX_BIN")/omx-sync-bench}   # the floors; skipped when absent
RESULTS_DIR=${BENCH_RESULTS_DIR:-$HERE/results}
BASE_DIR=${BENCH_DIR:-/var/tmp}
SOURCE_TIMEOUT=${BENCH_SOURCE_TIMEOUT:-1200}     # bound on one smtp-source run (seconds)
DELIVERY_TIMEOUT=${BENCH_DELIVERY_TIMEOUT:-1200} # bound on waiting for the maildir to fill
STALL_TIMEOUT=${BENCH_STALL_TIMEOUT:-120}        # give up when the maildir stops growing this long
KEEP=${BENCH_KEEP:-0}                            # 1: keep spools/maildirs/queues of every run
SETTLE=${BENCH_SETTLE:-$(($(cat /proc/sys/vm/dirty_expire_centisecs 2>/dev/null || echo 3000) / 100 + 5))} # after a server that deleted files

usage() {
    cat <<EOF
usage: bench/peers.sh [-m MESSAGES] [-r REPEATS] [-s SESSIONS] [-l SIZE] [-S "SERVERS"]

  -m N   messages per measurement      (BENCH_MESSAGES, default 20000)
  -r N   measurements per server       (BENCH_REPEATS, default 3)
  -s N   parallel SMTP sessions         (BENCH_SESSIONS, default 20)
  -l N   payload bytes per message      (BENCH_SIZE, default 4096)
  -S L   servers, in order, of: oceanmx sink postfix opensmtpd (BENCH_SERVERS, default all four)

Other environment: OMX_BIN (default build/oceanmx), SYNC_BENCH (default omx-sync-bench next to
OMX_BIN; the floors are left out without it), BENCH_DIR (where the temporary spools live,
default /var/tmp), BENCH_RESULTS_DIR (default bench/results), BENCH_KEEP=1 (keep the data),
BENCH_SOURCE_TIMEOUT, BENCH_DELIVERY_TIMEOUT, BENCH_STALL_TIMEOUT (bounds, seconds), BENCH_SETTLE
(seconds to wait after Postfix or OpenSMTPD, whose deletions would slow the next run's file
creation on ext4 without a journal; default dirty_expire_centisecs / 100 + 5), OSMTPD_ROOT
(OpenSMTPD's Debian root, made by bench/opensmtpd_peer.sh setup on first use: about 50 MB of downloads).
Prints a markdown table and writes it to \$BENCH_RESULTS_DIR/peers-DATE.md.
EOF
}

while getopts "m:r:s:l:S:h" o; do
    case $o in
        m) MESSAGES=$OPTARG ;; r) REPEATS=$OPTARG ;; s) SESSIONS=$OPTARG ;; l) SIZE=$OPTARG ;;
        S) SERVERS=$OPTARG ;; h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
    esac
done
for v in MESSAGES REPEATS SESSIONS SIZE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "peers: $v must be a positive integer" >&2; exit 2; }
done
for s in $SERVERS; do
    case $s in oceanmx|sink|postfix|opensmtpd) ;; *) echo "peers: unknown server '$s'" >&2; exit 2 ;; esac
done

log() { printf '%s peers: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now_ns() { date +%s%N; }

[[ $(id -u) == 0 ]] || die "run as root (cgroups, perf, a private Postfix instance)"
PFPEER="$HERE/postfix_peer.sh"
OSMTPD="$HERE/opensmtpd_peer.sh"

# ---------------------------------------------------------------- packages (only if missing)
need_pkgs=()
for pair in smtp-source:postfix smtp-sink:postfix postfix:postfix postconf:postfix \
            findmnt:util-linux timeout:coreutils script:bsdutils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_pkgs+=("${pair#*:}")
done
[[ -x $PY ]] || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    log "installing ${need_pkgs[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2
fi
PERF=$(command -v perf || true)
if [[ " $SERVERS " == *" opensmtpd "* ]]; then
    # once per machine: a Debian root with opensmtpd (skipped when it exists)
    "$OSMTPD" setup || die "OpenSMTPD's root could not be set up (see above); leave it out with -S \"oceanmx sink postfix\""
    OSMTPD_MAILDIR=$("$OSMTPD" maildir)
    rm -rf "$OSMTPD_MAILDIR".kept-*   # an interrupted run's (see the end of measure)
    OSMTPD_ROOTDIR=$("$OSMTPD" root)
fi

# ---------------------------------------------------------------- state and cleanup
WORK=""; CG_TOP=""; CG_REL=""; CGROOT=""
CUR_KIND=""; CUR_PID=""; CUR_PFCFG=""; CUR_CG=""; PERF_PID=""; SRC_PID=""

kill_cg() {   # kill every process left in cgroup $1 (only processes this script started)
    local cg=$1 i
    [[ -d $cg ]] || return 0
    if [[ -s $cg/cgroup.procs ]]; then
        if [[ -e $cg/cgroup.kill ]]; then
            echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
        else
            while read -r p; do kill -KILL "$p" 2>/dev/null || true; done <"$cg/cgroup.procs"
        fi
        for ((i = 0; i < 50; i++)); do [[ -s $cg/cgroup.procs ]] || break; sleep 0.1; done
    fi
    rmdir "$cg" 2>/dev/null || true
}

wait_pid_exit() {   # wait_pid_exit PID SECONDS: 0 when gone
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        # a zombie child of ours is gone for our purposes
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
    return 0
}

stop_server() {
    local kind=$CUR_KIND
    CUR_KIND=""
    case $kind in
        oceanmx|sink)
            if [[ -n $CUR_PID ]] && kill -0 "$CUR_PID" 2>/dev/null; then
                kill -TERM "$CUR_PID" 2>/dev/null || true
                wait_pid_exit "$CUR_PID" 40 || { log "$kind pid $CUR_PID did not stop, killing"; kill -KILL "$CUR_PID" 2>/dev/null || true; }
            fi
            [[ -n $CUR_PID ]] && { wait "$CUR_PID" 2>/dev/null || true; }
            ;;
        postfix)
            if [[ -n $CUR_PFCFG && -d $CUR_PFCFG ]]; then
                "$PFPEER" stop "$(dirname "$CUR_PFCFG")" || true
                if [[ -n $CUR_CG ]]; then
                    local i
                    for ((i = 0; i < 150; i++)); do [[ -s $CUR_CG/cgroup.procs ]] || break; sleep 0.1; done
                fi
            fi
            ;;
        opensmtpd)
            # CUR_PID is smtpd's parent process (opensmtpd_peer.sh start execs it): on TERM it
            # stops its children; opensmtpd_peer.sh stop catches anything left in the root
            if [[ -n $CUR_PID ]] && kill -0 "$CUR_PID" 2>/dev/null; then
                kill -TERM "$CUR_PID" 2>/dev/null || true
                wait_pid_exit "$CUR_PID" 40 || log "opensmtpd pid $CUR_PID did not stop"
            fi
            "$OSMTPD" stop || true
            [[ -n $CUR_PID ]] && { wait "$CUR_PID" 2>/dev/null || true; }
            ;;
    esac
    [[ -n $CUR_CG ]] && kill_cg "$CUR_CG"
    CUR_PID=""; CUR_PFCFG=""; CUR_CG=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $SRC_PID ]]; then kill -TERM "$SRC_PID" 2>/dev/null; wait "$SRC_PID" 2>/dev/null; fi
    if [[ -n $PERF_PID ]]; then kill -INT "$PERF_PID" 2>/dev/null; wait_pid_exit "$PERF_PID" 5 || kill -KILL "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; fi
    stop_server
    if [[ -n $CG_TOP && -d $CG_TOP ]]; then
        local d
        for d in "$CG_TOP"/*/; do [[ -d $d ]] && kill_cg "${d%/}"; done
        rmdir "$CG_TOP" 2>/dev/null
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 ]]; then
            log "kept everything under $WORK"
        else
            # bulky data goes, the small logs stay for a post-mortem
            rm -rf "$WORK"/*/spool "$WORK"/*/maildir "$WORK"/*/pf/queue "$WORK"/*/pf/mail "$WORK"/*/pf/data "$WORK"/floors-* 2>/dev/null
            [[ -n ${OSMTPD_MAILDIR:-} ]] && { rm -rf "$OSMTPD_MAILDIR".kept-*; "$OSMTPD" clean; }
            log "logs of this run: $WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- work dir, binary, cgroups
mkdir -p "$BASE_DIR" "$RESULTS_DIR"
WORK=$(mktemp -d "$BASE_DIR/oceanmx-bench.XXXXXX")
chmod 755 "$WORK"   # Postfix daemons and virtual(8) (as nobody) walk through it

if [[ ! -x $OMX_BIN ]]; then
    log "building $OMX_BIN"
    cmake -S "$ROOT" -B "$ROOT/build" >&2 && cmake --build "$ROOT/build" -j"$(nproc)" >&2
fi
# others may rebuild build/ while we run: measure a private copy
cp "$OMX_BIN" "$WORK/oceanmx"
OMX="$WORK/oceanmx"

for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    if [[ $(stat -f -c %T "$d" 2>/dev/null) == cgroup2fs ]]; then CGROOT=$d; break; fi
done
if [[ -n $CGROOT ]] && mkdir "$CGROOT/oceanmx-bench.$$" 2>/dev/null; then
    CG_REL="oceanmx-bench.$$"; CG_TOP="$CGROOT/$CG_REL"
    CPU_METHOD="cgroup v2 cpu.stat ($CG_TOP/<run>)"
else
    CGROOT=""
    CPU_METHOD="procfs (utime+stime of the server pid and its reaped children; Postfix: every process with MAIL_CONFIG of the instance; OpenSMTPD: every process in its root and their reaped children)"
    log "no writable cgroup v2: falling back to /proc sampling"
fi

FS_DEV=$(findmnt -n -o MAJ:MIN -T "$WORK" | tr -d ' ')
DISK_NAME=$(awk -v mm="$FS_DEV" '$1":"$2 == mm {print $3}' /proc/diskstats)
if [[ -z $DISK_NAME ]] || [[ $(awk -v n="$DISK_NAME" '$3 == n {print NF}' /proc/diskstats) -lt 20 ]]; then
    DISK_NAME=""
    log "the spool's device ($FS_DEV) has no flush counters in /proc/diskstats: flushes n/a"
fi
FSTYPE=$(findmnt -n -o FSTYPE -T "$WORK")
case $FSTYPE in
    ext4) SYNC_EVENT=ext4:ext4_sync_file_enter; SYNC_SPLIT=1 ;;   # its datasync field splits fdatasync/fsync
    xfs) SYNC_EVENT=xfs:xfs_file_fsync; SYNC_SPLIT=0 ;;
    btrfs) SYNC_EVENT=btrfs:btrfs_sync_file; SYNC_SPLIT=1 ;;
    *) SYNC_EVENT=""; SYNC_SPLIT=0 ;;
esac
if [[ -n $PERF && -n $SYNC_EVENT && -n $CG_TOP ]]; then
    mkdir "$CG_TOP/probe"
    if ! timeout 20 "$PERF" stat -a -x, -o "$WORK/perf-probe.txt" -e "$SYNC_EVENT" -G "$CG_REL/probe" -- true >/dev/null 2>&1; then
        log "perf cannot count $SYNC_EVENT per cgroup here: fsync counts n/a"; SYNC_EVENT=""
    fi
    rmdir "$CG_TOP/probe"
else
    SYNC_EVENT=""
fi

disk_flushes() {
    if [[ -n $DISK_NAME ]]; then awk -v n="$DISK_NAME" '$3 == n {print $19}' /proc/diskstats; else echo ""; fi
}

cg_cpu() {   # cg_cpu CGDIR -> "user_us system_us total_us"
    awk '/^usage_usec/ {t=$2} /^user_usec/ {u=$2} /^system_usec/ {s=$2} END {print u, s, t}' "$1/cpu.stat"
}

server_cpu() {   # "user system total" microseconds of the current server
    if [[ -n $CUR_CG ]]; then
        cg_cpu "$CUR_CG"
    elif [[ $CUR_KIND == postfix ]]; then
        local mpid
        mpid=$("$PFPEER" pid "$(dirname "$CUR_PFCFG")")
        "${PROBE[@]}" cpu --pid "$mpid" --environ "MAIL_CONFIG=$CUR_PFCFG"
    elif [[ $CUR_KIND == opensmtpd ]]; then
        "${PROBE[@]}" cpu --root "$OSMTPD_ROOTDIR"
    else
        "${PROBE[@]}" cpu --pid "$CUR_PID"
    fi
}

new_cg() {   # new_cg NAME -> prints the cgroup dir ("" without cgroups)
    if [[ -n $CG_TOP ]]; then mkdir "$CG_TOP/$1" && echo "$CG_TOP/$1"; else echo ""; fi
}

listen_overflows() {   # TcpExt ListenOverflows of the whole machine (connections the accept queue had no room for)
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 } else print (c ? $c : 0) }' /proc/net/netstat
}

warn_notes() {   # warn_notes LOG REGEX [SED]: "N warning/error lines, first: A/B; " if LOG has lines matching REGEX
    local n
    n=$(grep -cE "$2" "$1" 2>/dev/null || true)
    ((n > 0)) || return 0
    printf '%s warning/error lines, first: %s; ' "$n" \
        "$(grep -E "$2" "$1" | sed -E "${3:-}" | awk '!seen[$0]++' | head -n 2 | cut -c1-100 | tr '\n' '/' | sed 's|/$||')"
}

# omx_threads PID: oceanmx's CPU so far in clock ticks by thread role, "shard=N verify=N deliver=N
# other=N iouring=N". iouring is the process's total less its named threads: io_uring's workers,
# live or exited (they exit when idle and their time stays in the process's total).
omx_threads() {
    local pid=$1 t
    [[ -r /proc/$pid/stat ]] || return 0
    {
        for t in /proc/"$pid"/task/*; do
            echo "$(cat "$t/comm" 2>/dev/null) $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
        done
        echo "TOTAL $(awk '{print $14 + $15}' "/proc/$pid/stat")"
    } | awk '$1 == "TOTAL" {tot = $2; next}
             $1 ~ /^iou-/ {next}
             {role = "other"; if ($1 ~ /^omx-shard/) role = "shard"; else if ($1 ~ /^omx-verify/) role = "verify"; else if ($1 ~ /^omx-deliver/) role = "deliver"
              r[role] += $2; named += $2}
             END {printf "shard=%d verify=%d deliver=%d other=%d iouring=%d\n", r["shard"], r["verify"], r["deliver"], r["other"], tot - named}'
}

count_files() { find "$1" -mindepth 1 -maxdepth 1 -type f 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- machine info
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -n)"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel: $(uname -srm)"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME") (debian_version $(cat /etc/debian_version 2>/dev/null))"
    echo "memory: $(awk '/^MemTotal/ {t=$2} /^MemAvailable/ {a=$2} END {printf "MemTotal %d MiB, MemAvailable %d MiB", t/1024, a/1024}' /proc/meminfo)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "spool filesystem: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$WORK") (dir $WORK)"
    echo "spool device: ${DISK_NAME:-n/a} ($FS_DEV), write cache: $(cat "/sys/block/$DISK_NAME/queue/write_cache" 2>/dev/null || echo n/a)"
    echo "oceanmx: $("$OMX" --version 2>&1 | head -1), binary $(sha256sum "$OMX_BIN" | cut -c1-16) built $(date -u -r "$OMX_BIN" +%Y-%m-%dT%H:%M:%SZ), tree $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$ROOT" status --porcelain -- core proto sinks CMakeLists.txt 2>/dev/null) ]] && echo ' (uncommitted changes in core/proto/sinks)' ), build type $(awk -F= '/^CMAKE_BUILD_TYPE:/ {print ($2 == "" ? "default (RelWithDebInfo)" : $2)}' "$(dirname "$OMX_BIN")/CMakeCache.txt" 2>/dev/null)"
    echo "postfix: $(postconf -d -h mail_version 2>/dev/null)"
    if [[ -n ${OSMTPD_MAILDIR:-} ]]; then
        osroot=$OSMTPD_ROOTDIR
        echo "opensmtpd: $(chroot "$osroot" dpkg-query -W -f '${Version}' opensmtpd 2>/dev/null) (Debian package, in the Debian $(cat "$osroot/etc/debian_version") root $osroot; queue and maildir there, filesystem $(findmnt -n -o SOURCE,FSTYPE -T "$osroot" | tr -s ' ')$( [[ $(findmnt -n -o MAJ:MIN -T "$osroot" | tr -d ' ') != "$FS_DEV" ]] && echo ', NOT the spool device: its flushes are not in the device figure'))"
    fi
    echo "cpu accounting: $CPU_METHOD"
    if [[ -n $SYNC_EVENT ]]; then echo "fsync counting: perf stat -a -G <server cgroup> -e $SYNC_EVENT"; else echo "fsync counting: n/a"; fi
    echo "workload: smtp-source -d -s $SESSIONS -m $MESSAGES -l $SIZE -f a@x.test -t b@y.test 127.0.0.1:PORT; $REPEATS measurements per server, order per round: $SERVERS"
} >"$WORK/machine.txt"
log "work dir $WORK"
sed 's/^/    /' "$WORK/machine.txt" >&2

# ---------------------------------------------------------------- servers
start_oceanmx() {   # RUN PORT
    local run=$1 port=$2
    CUR_KIND=oceanmx; CUR_CG=$(new_cg "$(basename "$run")")
    (
        [[ -n $CUR_CG ]] && echo "$BASHPID" >"$CUR_CG/cgroup.procs"
        cd "$run"
        exec "$OMX" serve --listen "127.0.0.1:$port" --spool "$run/spool" --sink "maildir:$run/maildir" \
            --hostname bench.test --shutdown-timeout 10
    ) >"$run/server.log" 2>&1 &
    CUR_PID=$!
}

start_sink() {
    local run=$1 port=$2
    CUR_KIND=sink; CUR_CG=$(new_cg "$(basename "$run")")
    (
        [[ -n $CUR_CG ]] && echo "$BASHPID" >"$CUR_CG/cgroup.procs"
        exec smtp-sink -u nobody "127.0.0.1:$port" 1000
    ) >"$run/server.log" 2>&1 &
    CUR_PID=$!
}

start_postfix() {   # RUN PORT: the private instance of bench/postfix_peer.sh in RUN/pf
    local run=$1 port=$2 pf=$1/pf
    "$PFPEER" setup "$pf" "$port"
    CUR_KIND=postfix; CUR_PFCFG="$pf/etc"; CUR_CG=$(new_cg "$(basename "$run")")
    if ! (
        [[ -n $CUR_CG ]] && echo "$BASHPID" >"$CUR_CG/cgroup.procs"
        exec "$PFPEER" start "$pf"
    ) >"$run/server.log" 2>&1; then
        tail -n 20 "$pf/maillog" >&2 2>/dev/null || true
        die "private Postfix instance did not start (see $pf/maillog)"
    fi
    CUR_PID=$("$PFPEER" pid "$pf")
}

start_opensmtpd() {   # RUN PORT: smtpd in OpenSMTPD's root (bench/opensmtpd_peer.sh), in the foreground
    local run=$1 port=$2
    CUR_KIND=opensmtpd; CUR_CG=$(new_cg "$(basename "$run")")
    (
        [[ -n $CUR_CG ]] && echo "$BASHPID" >"$CUR_CG/cgroup.procs"
        exec "$OSMTPD" start "$port"
    ) >"$run/server.log" 2>&1 &
    CUR_PID=$!
}

# ---------------------------------------------------------------- one measurement
RUNS_TSV="$WORK/runs.tsv"
printf 'server\trep\tmessages\tdelivered\tsource_rc\tsource_ns\tdeliver_ns\tuser_us\tsys_us\tcpu_us\tclient_cpu_us\tflushes\tfsyncs\tthreads\tnotes\n' >"$RUNS_TSV"

measure() {   # measure SERVER REP
    local server=$1 rep=$2 run port maildir="" expected=0 notes=""
    run="$WORK/$server-$rep"
    mkdir -p "$run"
    port=$("${PROBE[@]}" free-port)
    log "[$rep/$REPEATS] $server on 127.0.0.1:$port"
    case $server in
        oceanmx) start_oceanmx "$run" "$port"; maildir="$run/maildir/new" ;;
        sink) start_sink "$run" "$port" ;;
        postfix) start_postfix "$run" "$port"; maildir="$run/pf/mail/maildir/new" ;;
        opensmtpd) start_opensmtpd "$run" "$port"; maildir="$OSMTPD_MAILDIR/new" ;;
    esac
    "${PROBE[@]}" wait 127.0.0.1 "$port" --timeout 30 || { cat "$run/server.log" >&2; die "$server does not greet"; }

    # a probe message must arrive before we measure anything
    "${PROBE[@]}" send 127.0.0.1 "$port" --from probe@x.test --to b@y.test --timeout 30 \
        || { cat "$run/server.log" >&2; die "$server refused the probe message"; }
    if [[ -n $maildir ]]; then
        local i
        for ((i = 0; i < 300; i++)); do [[ $(count_files "$maildir") -ge 1 ]] && break; sleep 0.1; done
        [[ $(count_files "$maildir") -ge 1 ]] || die "$server: the probe message did not reach $maildir within 30 s"
        expected=$((MESSAGES + 1))
    fi

    # counters before
    local perf_out="$run/perf.txt" src_cg cpu0 cpu1 fl0 fl1 ov0 ov1 t0 t1 t2 src_rc=0 delivered="" th0="" th1=""
    if [[ -n $SYNC_EVENT && -n $CUR_CG ]]; then
        local g="$CG_REL/$(basename "$CUR_CG")"
        if [[ $SYNC_SPLIT == 1 ]]; then
            # two counters: datasync == 1 (fdatasync) and datasync == 0 (fsync), in this order
            "$PERF" stat -a -x, -o "$perf_out" -e "$SYNC_EVENT" --filter 'datasync == 1' \
                -e "$SYNC_EVENT" --filter 'datasync == 0' -G "$g,$g" 2>"$run/perf.err" &
        else
            "$PERF" stat -a -x, -o "$perf_out" -e "$SYNC_EVENT" -G "$g" 2>"$run/perf.err" &
        fi
        PERF_PID=$!
        sleep 1   # perf needs a moment to attach
    fi
    src_cg=$(new_cg "client-$server-$rep")
    fl0=$(disk_flushes)
    ov0=$(listen_overflows)
    cpu0=$(server_cpu)
    [[ $server == oceanmx ]] && th0=$(omx_threads "$CUR_PID")
    t0=$(now_ns)
    (
        [[ -n $src_cg ]] && echo "$BASHPID" >"$src_cg/cgroup.procs"
        exec timeout -k 5 "$SOURCE_TIMEOUT" smtp-source -d -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
            -f a@x.test -t b@y.test "127.0.0.1:$port"
    ) >"$run/source.out" 2>"$run/source.err" &
    SRC_PID=$!
    wait "$SRC_PID" || src_rc=$?
    SRC_PID=""
    t1=$(now_ns)
    ov1=$(listen_overflows)
    ((ov1 == ov0)) || notes+="accept queue overflowed $((ov1 - ov0)) times during smtp-source (TcpExtListenOverflows); "
    if [[ -n $maildir ]]; then
        local backlog=$((expected - $(count_files "$maildir")))
        notes+="not yet in the maildir when smtp-source ended: $backlog; "
    fi
    [[ $src_rc == 0 ]] || { notes+="smtp-source exit $src_rc: $(head -c 200 "$run/source.err" | tr '\t\n' '  '); "; log "$server: smtp-source exited $src_rc"; }

    # wait for delivery (bounded; reported as incomplete otherwise)
    t2=$t1
    if [[ -n $maildir ]]; then
        local n last=-1 last_change=$SECONDS deadline=$((SECONDS + DELIVERY_TIMEOUT))
        while :; do
            n=$(count_files "$maildir")
            ((n >= expected)) && break
            if ((n != last)); then last=$n; last_change=$SECONDS; fi
            if ((SECONDS - last_change >= STALL_TIMEOUT || SECONDS >= deadline)); then
                notes+="delivery incomplete: $((n - 1))/$MESSAGES in the maildir after waiting; "
                log "$server: only $((n - 1)) of $MESSAGES delivered"
                break
            fi
            sleep 0.2
        done
        t2=$(now_ns)
        delivered=$(($(count_files "$maildir") - 1))
    fi
    cpu1=$(server_cpu)
    [[ $server == oceanmx ]] && th1=$(omx_threads "$CUR_PID")
    fl1=$(disk_flushes)
    local fsyncs=""
    if [[ -n $PERF_PID ]]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait_pid_exit "$PERF_PID" 10 || kill -KILL "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=""
        fsyncs=$(awk -F, -v ev="$SYNC_EVENT" '$3 == ev {s += $1} END {if (NR) print s+0}' "$perf_out" 2>/dev/null || true)
        if [[ $SYNC_SPLIT == 1 && -n $fsyncs ]]; then
            notes+=$(awk -F, -v ev="$SYNC_EVENT" -v m="$MESSAGES" '$3 == ev {v[++n] = $1} END {if (n == 2) printf "fdatasync %.2f + fsync %.2f per msg; ", v[1] / m, v[2] / m}' "$perf_out")
        fi
    fi
    local client_cpu=""
    if [[ -n $src_cg ]]; then client_cpu=$(cg_cpu "$src_cg" | awk '{print $3}'); kill_cg "$src_cg"; fi

    stop_server
    if [[ $server == oceanmx ]]; then
        # the shards' own counters, printed at shutdown
        notes+=$(awk '/shard.stop/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "messages") m += kv[2]; if (kv[1] == "fsync") f += kv[2]; if (kv[1] == "dirsync") d += kv[2]; if (kv[1] == "refused") r += kv[2] } }
                     END { if (NR) printf "oceanmx shard counters: messages=%d fsync=%d dirsync=%d refused=%d; ", m, f, d, r }' "$run/server.log")
        local errs
        errs=$(grep -cE ' (err|warn|crit) ' "$run/server.log" || true)
        if ((errs > 0)); then
            notes+="oceanmx logged $errs warn/err lines: $(grep -E ' (err|warn|crit) ' "$run/server.log" | cut -d' ' -f2- | cut -c1-120 | sort | uniq -c | head -n 3 | sed 's/^ *//' | tr '\n' ' ')"
            notes+="; "
        fi
        local left
        left=$(find "$run/spool" -type f 2>/dev/null | wc -l)
        ((left == 0)) || notes+="$left files left in the spool; "
    elif [[ $server == postfix ]]; then
        local L="$run/pf/maillog"
        notes+="postfix maillog: status=sent $(grep -c 'status=sent' "$L" || true), status=deferred $(grep -c 'status=deferred' "$L" || true), status=bounced $(grep -c 'status=bounced' "$L" || true); "
        notes+=$(warn_notes "$L" '(warning|error|fatal|panic):' 's/^.*postfix\/([a-z-]+)\[[0-9]+\]: /\1: /')
    elif [[ $server == opensmtpd ]]; then
        local L="$run/server.log"
        notes+="opensmtpd log: result=Ok $(grep -c 'mda delivery.* result=Ok' "$L" || true), result=TempFail $(grep -c 'result=TempFail' "$L" || true), result=PermFail $(grep -c 'result=PermFail' "$L" || true); "
        notes+=$(warn_notes "$L" '^(warn|fatal|error)')
    fi

    local threads=""
    if [[ -n $th0 && -n $th1 ]]; then   # CPU per role in this window, microseconds
        threads=$(paste -d' ' <(tr ' ' '\n' <<<"$th0") <(tr ' ' '\n' <<<"$th1") |
            awk -v tck="$(getconf CLK_TCK)" '{split($1, a, "="); split($2, b, "="); printf "%s%s=%.0f", (NR > 1 ? " " : ""), a[1], (b[2] - a[2]) * 1e6 / tck}')
    fi
    read -r u0 s0 c0 <<<"$cpu0"
    read -r u1 s1 c1 <<<"$cpu1"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$server" "$rep" "$MESSAGES" "$delivered" "$src_rc" "$((t1 - t0))" "$([[ -n $maildir ]] && echo $((t2 - t0)))" \
        "$((u1 - u0))" "$((s1 - s0))" "$((c1 - c0))" "$client_cpu" \
        "$([[ -n $fl0 && -n $fl1 ]] && echo $((fl1 - fl0)))" "$fsyncs" "$threads" "$notes" >>"$RUNS_TSV"
    log "$server: $(awk -v ns=$((t1 - t0)) -v m="$MESSAGES" 'BEGIN {printf "%.0f msg/s accepted", m / (ns / 1e9)}')$([[ -n $maildir ]] && awk -v ns=$((t2 - t0)) -v m="$MESSAGES" 'BEGIN {printf ", %.0f msg/s delivered", m / (ns / 1e9)}'), $(awk -v c=$((c1 - c0)) -v m="$MESSAGES" 'BEGIN {printf "%.0f us CPU/msg", c / m}')"

    # The spools and maildirs stay until the end (cleanup): on ext4 without a
    # journal, as here, allocating an inode skips every free one deleted in
    # the last half minute or so (ialloc.c recently_deleted()), so removing
    # 20,000 files made the next run's creates in the same block group scan
    # them all: up to half of a delivery thread's time went there (perf),
    # whichever server ran next. OpenSMTPD's one maildir must be empty for its next
    # measurement: moved aside, not deleted, for the same reason (bench/ext4_deletes.sh: right
    # after 60,000 deletions creating a file cost 4-14x, 100 s later still 1.2x).
    if [[ $server == opensmtpd ]]; then mv "$OSMTPD_MAILDIR" "$OSMTPD_MAILDIR.kept-$rep"; fi
    sync   # start the next measurement without the previous one's dirty data
    # Postfix and OpenSMTPD delete a queue file per message as they go: on ext4 without a
    # journal the next server's creates would walk past those inodes while they are recent
    # (the last dirty_expire_centisecs, 30 s, or so) in every block group they share. Wait.
    if [[ $server == postfix || $server == opensmtpd ]] && ((SETTLE > 0)); then
        log "$server deleted files: waiting ${SETTLE}s before the next measurement"
        sleep "$SETTLE"
    fi
}

# ---------------------------------------------------------------- floors
# The least each part of oceanmx's per-message work costs on this machine, timed alone by
# omx-sync-bench (process CPU, as the servers' CPU above): the Maildir protocol for 4 KiB files
# in batches of 8 (the maildir sink's batches under this load hold about that many), and the
# spool's group commit in batches of 2 records (about what a batch holds under W1), every
# variant it knows; the report takes the cheapest. The third floor, the SMTP exchange, is
# smtp-sink's own CPU per message above.
FLOORS_TSV="$WORK/floors.tsv"
printf 'rep\tmaildir_cpu_us\tcommit_cpu_us\tcommit_best_cpu_us\tcommit_best\n' >"$FLOORS_TSV"
floors() {   # floors REP
    local d="$WORK/floors-$1" m out
    [[ -x $SYNC_BENCH ]] || return 0
    mkdir -p "$d"
    log "[$1/$REPEATS] floors: $SYNC_BENCH maildir / commit"
    m=$(maildir_floor_us "$SYNC_BENCH" "$d") && out=$("$SYNC_BENCH" commit "$d" 2 4096 1) ||
        { log "omx-sync-bench failed: floors left out"; return 0; }
    awk '$1 == "commit" && $2 == "fdatasync" {c = $7}
         $1 == "commit" && $3 == "wall" && (b == "" || $7 < b) {b = $7; bn = $2}
         END {printf "%s\t%s\t%s\t%s\t%s\n", rep, m, c, b, bn}' rep="$1" m="$m" <<<"$out" >>"$FLOORS_TSV"
    # Its files stay until the end, as the servers' do (see the end of measure)
}
[[ -x $SYNC_BENCH ]] || log "no $SYNC_BENCH: the floors are left out (build it: cmake --build build)"

for ((rep = 1; rep <= REPEATS; rep++)); do
    for server in $SERVERS; do
        measure "$server" "$rep"
    done
    floors "$rep"
done

# ---------------------------------------------------------------- report
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.txt"
stamp=$(date +%Y-%m-%d-%H%M%S)
out="$RESULTS_DIR/peers-$stamp.md"
"$PY" "$HERE/peers_report.py" --machine "$WORK/machine.txt" --runs "$RUNS_TSV" --floors "$FLOORS_TSV" >"$out"
cat "$out"
log "written $out"
