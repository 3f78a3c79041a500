#!/usr/bin/env bash
# bench/dkim.sh - throughput through the server with DKIM verification on
# and off, measured in one interleaved run (issue 5: on must keep >= 80%).
#
#   bench/dkim.sh [rsa|ed25519]     (env: BENCH_MESSAGES=10000 BENCH_REPEATS=3)
#
# oceanmx-load signs every message (a key it makes once), a DNS server on
# loopback (tests/integ/dns_server.py, python3-dnslib) serves the key, and
# oceanmx verifies with --dns pointing at it. Prints msg/s and server CPU
# per message for each run (and the part spent on the verify workers and
# the DNS thread, read from /proc/PID/task before the server stops), the
# medians and the on/off ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/.." && pwd)
ALG=${1:-rsa}; N=${BENCH_MESSAGES:-10000}; R=${BENCH_REPEATS:-3}
OMX=${OMX_BIN:-$root/build/oceanmx}; LOAD=${LOAD_BIN:-$root/build/oceanmx-load}
work=$(mktemp -d /var/tmp/oceanmx-dkim.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
# A domain unbound does not keep to itself (it answers test. and invalid. locally).
from=load@loadgen.example.net
"$LOAD" --dkim "$ALG" --dkim-key "$work/key.pem" --dkim-dns "$work/zone" --from $from --print-message >/dev/null 2>&1
sed 's/ IN TXT ( / 300 IN TXT /; s/ )$//' "$work/zone" > "$work/zone.flat"
/usr/bin/python3 "$root/tests/integ/dns_server.py" "$work/zone.flat" > "$work/dns.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q PORT "$work/dns.out" 2>/dev/null && break; sleep 0.1; done
dport=$(awk '/PORT/{print $2}' "$work/dns.out")
declare -A rate cpu vcpu
echo "# DKIM $ALG, $N messages, 20 connections, $(nproc) CPUs, $(uname -r), $(date -u +%FT%TZ)"
for r in $(seq "$R"); do
  for mode in on off; do
    d="$work/run-$r-$mode"; mkdir -p "$d"; port=$((27000 + RANDOM % 2000))
    "$OMX" serve --listen 127.0.0.1:$port --hostname bench.test --spool "$d/spool" --sink "maildir:$d/md" \
      --dns 127.0.0.1:$dport --dkim $mode 2>"$d/log" &
    spid=$!; pids+=($spid)
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    "$LOAD" -q -c 20 -m "$N" --dkim "$ALG" --dkim-key "$work/key.pem" --from $from --json 127.0.0.1:$port > "$d/out.json" 2>"$d/load.err"
    t=$(awk '{print $14+$15}' /proc/$spid/stat)
    # CPU of the verify workers and the DNS thread alone (the verifier's own cost, less noisy than the whole server's)
    vt=$(cat /proc/$spid/task/*/stat 2>/dev/null | awk '$2 ~ /^\(omx-verify/ {s += $14 + $15} END {print s + 0}')
    dt=$(cat /proc/$spid/task/*/stat 2>/dev/null | awk '$2 ~ /^\(omx-dns/ {s += $14 + $15} END {print s + 0}')
    kill -TERM $spid; wait $spid || true
    m=$(/usr/bin/python3 -c "import json; print(round(json.load(open('$d/out.json'))['msgs_per_s']))")
    c=$((t * 10000 / N))   # clock ticks of 10 ms -> microseconds per message
    vc=$((vt * 10000 / N)); dc=$((dt * 10000 / N))
    pass=$( (grep -rl "dkim=pass" "$d/md/new" 2>/dev/null || true) | wc -l)
    echo "round $r dkim=$mode: $m msg/s, server CPU $c us/msg (verify workers $vc, DNS thread $dc), dkim=pass in $pass of $N stored"
    rate[$mode]+="$m "; cpu[$mode]+="$c "; vcpu[$mode]+="$vc "
  done
done
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
on=$(echo "${rate[on]}" | med); off=$(echo "${rate[off]}" | med)
echo "median: on $on msg/s ($(echo "${cpu[on]}" | med) us/msg), off $off msg/s ($(echo "${cpu[off]}" | med) us/msg), on/off = $(awk "BEGIN {printf \"%.2f\", $on/$off}")"
echo "median verify-worker CPU: on $(echo "${vcpu[on]}" | med) us/msg, off $(echo "${vcpu[off]}" | med) us/msg"
