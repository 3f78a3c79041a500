#!/usr/bin/env bash
# bench/stream_sink.sh - W1 with the stream sink alone against the maildir sink alone (issue 10)
#
# W1 of the suite (4 KiB messages, 20 persistent sessions, closed loop,
# oceanmx-load) against a fresh oceanmx per run, in alternating rounds:
#   maildir   --sink maildir:DIR (a file per message, made durable per batch)
#   stream    --sink unix:SOCK, the example consumer on the same machine
#             storing nothing (sinks/examples/stream_consumer.py SOCK -)
#   stream-raw  the same with ?json=no (no parse, no document)
# For each run: the SMTP-side msg/s (oceanmx-load), the messages/s the sink
# delivered (from the start of the load until the spool queue is empty), and
# the CPU per message of the server and of the consumer. The spool and the
# maildir are on the disk (/var/tmp), each run in its own directories, all
# removed at the end. Verification is off (it is not what this measures).
# Writes bench/results/stream-sink-DATE.md with medians and ratios to maildir.
#
# Env: ROUNDS (3), MESSAGES (20000), CONNECTIONS (20), SIZE (4096),
#      OMX_BIN, OMX_LOAD_BIN, OUT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMX="${OMX_BIN:-$ROOT/build/oceanmx}"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
OUT="${OUT:-$ROOT/bench/results}"
ROUNDS="${ROUNDS:-3}"
MESSAGES="${MESSAGES:-20000}"
CONNECTIONS="${CONNECTIONS:-20}"
SIZE="${SIZE:-4096}"
SETS=(maildir stream stream-raw)
PY=/usr/bin/python3
CONSUMER="$ROOT/sinks/examples/stream_consumer.py"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s stream-sink: %s\n' "$(date +%T)" "$*" >&2; }

omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-streamsink.XXXXXX)"
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/res"
OMX_PID=""
CONS_PID=""
cleanup() {
	if [[ -n $OMX_PID ]]; then kill -TERM "$OMX_PID" 2>/dev/null || true; wait "$OMX_PID" 2>/dev/null || true; fi
	if [[ -n $CONS_PID ]]; then kill -TERM "$CONS_PID" 2>/dev/null || true; wait "$CONS_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }

# run ROUND SET: one fresh server (and consumer) with the set's sink, one load run.
run() {
	local r=$1 set=$2 port d=$WORK/run-$1-$2 sink t0 t1
	mkdir -p "$d"
	case $set in
	maildir) sink="maildir:$d/maildir" ;;
	stream) sink="unix:$d/c.sock" ;;
	stream-raw) sink="unix:$d/c.sock?json=no" ;;
	esac
	if [[ $set == stream* ]]; then
		$PY "$CONSUMER" "unix:$d/c.sock" - &
		CONS_PID=$!
		for _ in $(seq 100); do [[ -S $d/c.sock ]] && break; sleep 0.05; done
	fi
	port=$(free_port)
	"$OMX" serve --listen "127.0.0.1:$port" --spool "$d/spool" --sink "$sink" --hostname bench.test \
		--max-connections-per-ip 0 --shutdown-timeout 5 --dkim off --spf off --dmarc off --arc off >"$WORK/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$set: server did not start"; tail "$WORK/server.log"; exit 1; }
	t0=$(now_ms)
	"$LOAD" -q --json -c "$CONNECTIONS" -m "$MESSAGES" -s "$SIZE" "127.0.0.1:$port" >"$WORK/res/$r-$set.json" ||
		log "$set: oceanmx-load reported failures"
	# Delivered once the spool queue is empty: the sink's messages/s counts to there.
	for _ in $(seq 1200); do
		[[ -z $(ls -A "$d/spool/q" 2>/dev/null) ]] && break
		sleep 0.05
	done
	t1=$(now_ms)
	echo "$((t1 - t0)) $(cpu_us "$OMX_PID") $([[ -n $CONS_PID ]] && cpu_us "$CONS_PID" || echo 0)" >"$WORK/res/$r-$set.txt"
	kill -TERM "$OMX_PID"; wait "$OMX_PID" 2>/dev/null || true; OMX_PID=""
	if [[ -n $CONS_PID ]]; then kill -TERM "$CONS_PID"; wait "$CONS_PID" 2>/dev/null || true; CONS_PID=""; fi
	log "round $r $set: $($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' \
		"$WORK/res/$r-$set.json") msg/s SMTP, delivered in $((t1 - t0)) ms"
}

log "$ROUNDS rounds of ${SETS[*]}: $MESSAGES x $SIZE B over $CONNECTIONS sessions (verification off)"
for r in $(seq "$ROUNDS"); do
	order=("${SETS[@]}")
	if ((r % 2 == 0)); then order=("${SETS[2]}" "${SETS[1]}" "${SETS[0]}"); fi
	for set in "${order[@]}"; do run "$r" "$set"; done
done

report="$OUT/stream-sink-$STAMP.md"
STAMP=$STAMP $PY - "$WORK/res" "$ROUNDS" "$MESSAGES" "$CONNECTIONS" "$SIZE" "${SETS[@]}" >"$report" <<'EOF'
import json, os, platform, statistics, sys
d, rounds, msgs, conns, size = sys.argv[1:6]
sets = sys.argv[6:]
res = {}
for s in sets:
    for r in range(1, int(rounds) + 1):
        j = json.load(open(os.path.join(d, "%d-%s.json" % (r, s))))
        ms, srv_us, cons_us = map(int, open(os.path.join(d, "%d-%s.txt" % (r, s))).read().split())
        n = max(1, j["messages"]["delivered"])
        res.setdefault(s, []).append(dict(smtp=j["msgs_per_s"], delivered=n * 1000.0 / max(1, ms),
                                          srv=srv_us / n, cons=cons_us / n,
                                          fail=j["messages"]["failed"] + j["connection_errors"]))
med = lambda s, k: statistics.median(x[k] for x in res[s])
out = ["# The stream sink against the maildir sink on W1 (bench/stream_sink.sh), %s\n" % os.environ.get("STAMP", "")]
out.append("%s messages of %s B per run over %s persistent sessions, closed loop (oceanmx-load); one sink per "
           "run; DKIM, ARC, SPF and DMARC off; spool (and maildir) on the disk; the stream consumer is "
           "`sinks/examples/stream_consumer.py SOCK -` (Python, stores nothing) on the same machine; %s rounds "
           "in alternating order, a fresh server per run; medians. *Delivered* counts from the start of the "
           "load until the spool queue is empty; server CPU includes delivery.\n" % (msgs, size, conns, rounds))
out.append("| sink | SMTP msg/s | runs | vs maildir | delivered msg/s | vs maildir | server CPU/msg | consumer CPU/msg | failures |")
out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in sets:
    out.append("| %s | %.0f | %s | %.2f | %.0f | %.2f | %.0f µs | %.0f µs | %d |" % (
        s, med(s, "smtp"), ", ".join("%.0f" % x["smtp"] for x in res[s]), med(s, "smtp") / med(sets[0], "smtp"),
        med(s, "delivered"), med(s, "delivered") / med(sets[0], "delivered"), med(s, "srv"), med(s, "cons"),
        sum(x["fail"] for x in res[s])))
out.append("\nMachine: %s, %d CPUs, kernel %s; disk: %s." % (
    platform.node(), os.cpu_count(), platform.release(), os.popen("findmnt -no FSTYPE,OPTIONS -T /var/tmp").read().strip()))
print("\n".join(out))
EOF
cat "$report"
log "wrote $report"
