#!/usr/bin/env bash
# bench/dns_cache.sh - what the DNS thread costs per message when sender
# domains repeat, for a base build against this one, in one run (issue 14:
# the DNS answer cache in the verify pool; goal: at most 5 us per message).
#
#   bench/dns_cache.sh        (env below)
#
# Every message comes from one of DOMAINS sender domains (oceanmx-load
# --sender-domains), so SPF (MAIL FROM and HELO) and DMARC ask the same few
# hundred names again and again; bench/dns_delay.py answers them at once on
# loopback. Before each server stops, its threads' CPU is read from
# /proc/PID/task: the "omx-dns" threads (ours and libunbound's, which
# inherits the name; schedstat, in ns) and the whole process (clock ticks). Rounds alternate the two builds
# (the machine is shared and drifts; ratios within a run are what count).
#
# The base build is BASE_REF (default: where this branch left main) built
# once in a directory of its own under /var/tmp, unless BASE_BIN names a
# binary already built.
#
# Env: ROUNDS (2), MESSAGES (20000), DOMAINS (100), CONNECTIONS (50),
#      SIZE (4096), BASE_REF, BASE_BIN, OMX_BIN, OMX_LOAD_BIN.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMX="${OMX_BIN:-$ROOT/build/oceanmx}"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
ROUNDS="${ROUNDS:-2}"
MESSAGES="${MESSAGES:-20000}"
DOMAINS="${DOMAINS:-100}"
CONNECTIONS="${CONNECTIONS:-50}"
SIZE="${SIZE:-4096}"
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s dns-cache: %s\n' "$(date +%T)" "$*" >&2; }

omx_build_if_missing "$OMX" "$LOAD" "$ROOT"
if [[ -z ${BASE_BIN:-} ]]; then
	BASE_REF="${BASE_REF:-$(git -C "$ROOT" merge-base HEAD main)}"
	rev=$(git -C "$ROOT" rev-parse --short "$BASE_REF")
	bdir="/var/tmp/oceanmx-base-$rev"
	BASE_BIN="$bdir/build/oceanmx"
	if [[ ! -x $BASE_BIN ]]; then
		log "building the base ($rev) in $bdir"
		rm -rf "$bdir"; mkdir -p "$bdir/src"
		git -C "$ROOT" archive "$BASE_REF" | tar -x -C "$bdir/src"
		cmake -S "$bdir/src" -B "$bdir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMX_TESTS=OFF >/dev/null
		cmake --build "$bdir/build" -j"$(nproc)" --target oceanmx >/dev/null
	fi
fi

WORK="$(mktemp -d /var/tmp/oceanmx-dnscache.XXXXXX)"
OMX_PID="" DNS_PID=""
stop_all() {
	local p
	for p in $OMX_PID $DNS_PID; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $OMX_PID $DNS_PID; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	OMX_PID="" DNS_PID=""
}
trap 'stop_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# run NAME BIN: a fresh DNS responder and server, one load run; prints a result line.
run() {
	local name=$1 bin=$2 d=$WORK/$1 port dport dns_t dns_us all_t rate q
	mkdir -p "$d"
	$PY "$ROOT/bench/dns_delay.py" --delay-ms 0 >"$d/dns.out" 2>"$d/dns.err" &
	DNS_PID=$!
	for _ in $(seq 50); do grep -q PORT "$d/dns.out" 2>/dev/null && break; sleep 0.1; done
	dport=$(awk '/^PORT/ {print $2}' "$d/dns.out")
	port=$(free_port)
	"$bin" serve --listen "127.0.0.1:$port" --spool "$d/spool" --sink "maildir:$d/maildir" \
		--hostname bench.test --max-connections-per-ip 0 --shutdown-timeout 5 \
		--dns "127.0.0.1:$dport" >"$d/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$name: server did not start"; tail "$d/server.log" >&2; exit 1; }
	"$LOAD" -q --json -c "$CONNECTIONS" -m "$MESSAGES" -s "$SIZE" --sender-domains "$DOMAINS" \
		"127.0.0.1:$port" >"$d/load.json" || log "$name: oceanmx-load reported failures"
	# nanoseconds on CPU (schedstat): clock ticks are too coarse for a few us per message
	dns_t=$(for t in /proc/$OMX_PID/task/*; do
		if grep -q '^omx-dns' "$t/comm" 2>/dev/null; then awk '{print $1}' "$t/schedstat"; fi
	done | awk '{s += $1} END {printf "%.0f", s}')
	all_t=$(awk '{print $14 + $15}' /proc/$OMX_PID/stat)
	stop_all
	rate=$($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' "$d/load.json")
	q=$(sed -n 's/^queries \([0-9]*\) .*/\1/p' "$d/dns.err")
	dns_us=$(awk -v t="$dns_t" -v m="$MESSAGES" 'BEGIN {printf "%.2f", t / 1000 / m}')
	# clock ticks of 10 ms -> microseconds per message
	printf '%s %s %s %s %s %s\n' "$name" "$rate" "$dns_us" "$((all_t * 10000 / MESSAGES))" \
		"${q:-0}" "$(grep -o 'dns.cache .*' "$d/server.log" || echo -)" >>"$WORK/results"
	log "$name: $rate msg/s, DNS threads $dns_us us/msg, server $((all_t * 10000 / MESSAGES)) us/msg, ${q:-0} DNS queries"
	rm -rf "$d"
}

echo "# DNS thread CPU per message, $MESSAGES x $SIZE B from $DOMAINS sender domains over $CONNECTIONS sessions;"
echo "# base $BASE_BIN vs $OMX; $(nproc) CPUs, $(uname -r), $(date -u +%FT%TZ)"
for r in $(seq "$ROUNDS"); do
	if ((r % 2)); then
		run "r$r-base" "$BASE_BIN"; run "r$r-new" "$OMX"
	else
		run "r$r-new" "$OMX"; run "r$r-base" "$BASE_BIN"
	fi
done
$PY - "$WORK/results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split(None, 5) for l in open(sys.argv[1]) if l.strip()]
print("| run | msg/s | DNS threads us/msg | server us/msg | DNS queries | cache counters |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print("| %s | %s | %s | %s | %s | %s |" % tuple(r))
def med(kind, i):
    return statistics.median(float(r[i]) for r in rows if r[0].endswith(kind))
b, n = med("-base", 2), med("-new", 2)
print("\nmedian DNS-thread CPU per message: base %.2f us, new %.2f us (goal: at most 5); "
      "msg/s base %d, new %d (new/base %.2f); server CPU per message base %d us, new %d us"
      % (b, n, med("-base", 1), med("-new", 1), med("-new", 1) / max(1, med("-base", 1)),
         med("-base", 3), med("-new", 3)))
EOF
