#!/usr/bin/env bash
# bench/json_sink.sh - what does the JSON document cost the server? (issue 4)
#
# W1 of the suite (4 KiB messages, 20 persistent sessions, closed loop)
# against oceanmx with different sink sets, in alternating rounds with a
# fresh server each run (the machine is shared and drifts):
#   maildir            the baseline
#   maildir+json       the json sink on the same disk: parsing, the document,
#                      and its files (.eml and .json: two more inodes per message)
#   maildir+json-raw-no the json sink without its .eml (json:DIR?raw=no): the
#                      maildir keeps the message, one file more per message
#   maildir+json-tmpfs the json sink's directory on tmpfs: the same parsing and
#                      document, without the disk cost of its files
# The spool and the maildir are on the disk (/var/tmp) in every run, each run
# in its own directories, all removed at the end.
# Writes bench/results/json-sink-DATE.md: msg/s and server CPU per message
# (medians), and each set's ratio to the baseline.
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
SETS=(maildir maildir+json maildir+json-raw-no maildir+json-tmpfs)
PY=python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s json-sink: %s\n' "$(date +%T)" "$*" >&2; }

omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-jsonsink.XXXXXX)"
TMPFS="$WORK/tmpfs"
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/res" "$TMPFS"
mount -t tmpfs -o size=4g oceanmx-bench "$TMPFS"
OMX_PID=""
cleanup() {
	if [[ -n $OMX_PID ]]; then kill -TERM "$OMX_PID" 2>/dev/null || true; wait "$OMX_PID" 2>/dev/null || true; fi
	umount "$TMPFS" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# run ROUND SET: one fresh server with the set's sinks, one load run.
run() {
	# Nothing is deleted on the disk until the end: on ext4 without a journal,
	# inodes freed in the last minutes make every new file slow to allocate
	# (recently_deleted()), which would charge one run for the previous one's
	# clean-up. tmpfs has no such effect.
	local r=$1 set=$2 port d=$WORK/run-$1-$2 sinks=() u s ticks
	rm -rf "${TMPFS:?}"/*
	mkdir -p "$d"
	sinks=(--sink "maildir:$d/maildir")
	case $set in
	maildir+json) sinks+=(--sink "json:$d/json") ;;
	maildir+json-raw-no) sinks+=(--sink "json:$d/json?raw=no") ;;
	maildir+json-tmpfs) sinks+=(--sink "json:$TMPFS/json") ;;
	esac
	port=$(free_port)
	"$OMX" serve --listen "127.0.0.1:$port" --spool "$d/spool" "${sinks[@]}" --hostname bench.test \
		--max-connections-per-ip 0 --shutdown-timeout 5 --dkim off --spf off --dmarc off --arc off >"$WORK/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$set: server did not start"; tail "$WORK/server.log"; exit 1; }
	"$LOAD" -q --json -c "$CONNECTIONS" -m "$MESSAGES" -s "$SIZE" "127.0.0.1:$port" >"$WORK/res/$r-$set.json" ||
		log "$set: oceanmx-load reported failures"
	# Wait until every message reached the sinks (the spool queue is empty),
	# so the server's CPU covers delivery too.
	for _ in $(seq 600); do
		[[ -z $(ls -A "$d/spool/q" 2>/dev/null) ]] && break
		sleep 0.1
	done
	read -r u s < <(awk '{print $14, $15}' "/proc/$OMX_PID/stat")
	ticks=$(getconf CLK_TCK)
	echo $(((u + s) * 1000000 / ticks)) >"$WORK/res/$r-$set.cpu_us"
	kill -TERM "$OMX_PID"; wait "$OMX_PID" 2>/dev/null || true; OMX_PID=""
	log "round $r $set: $($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' \
		"$WORK/res/$r-$set.json") msg/s"
}

log "$ROUNDS rounds of ${SETS[*]}: $MESSAGES x $SIZE B over $CONNECTIONS sessions (verification off)"
for r in $(seq "$ROUNDS"); do
	order=("${SETS[@]}")
	if ((r % 2 == 0)); then order=("${SETS[3]}" "${SETS[2]}" "${SETS[1]}" "${SETS[0]}"); fi
	for set in "${order[@]}"; do run "$r" "$set"; done
done

report="$OUT/json-sink-$STAMP.md"
$PY - "$WORK/res" "$ROUNDS" "$MESSAGES" "$CONNECTIONS" "$SIZE" "${SETS[@]}" >"$report" <<'EOF'
import json, os, platform, statistics, sys
d, rounds, msgs, conns, size = sys.argv[1:6]
sets = sys.argv[6:]
res = {}
for s in sets:
    for r in range(1, int(rounds) + 1):
        j = json.load(open(os.path.join(d, "%d-%s.json" % (r, s))))
        cpu = int(open(os.path.join(d, "%d-%s.cpu_us" % (r, s))).read())
        res.setdefault(s, []).append((j["msgs_per_s"], cpu / max(1, j["messages"]["delivered"]),
                                      j["messages"]["failed"] + j["connection_errors"]))
base = statistics.median(x[0] for x in res[sets[0]])
base_cpu = statistics.median(x[1] for x in res[sets[0]])
out = ["# The json sink's cost to W1 (bench/json_sink.sh), %s\n" % "STAMP"]
out.append("%s messages of %s B per run over %s persistent sessions, closed loop (oceanmx-load); DKIM, ARC, SPF "
           "and DMARC off; spool and maildir on the disk; %s rounds in alternating order, a fresh server per run; "
           "medians. Server CPU includes delivery (measured once the spool queue is empty).\n"
           % (msgs, size, conns, rounds))
out.append("| sinks | msg/s | runs | vs maildir | server CPU per message | vs maildir | failures |")
out.append("| --- | --- | --- | --- | --- | --- | --- |")
for s in sets:
    m = statistics.median(x[0] for x in res[s])
    c = statistics.median(x[1] for x in res[s])
    out.append("| %s | %.0f | %s | %.2f | %.0f µs | %.2f | %d |" % (
        s, m, ", ".join("%.0f" % x[0] for x in res[s]), m / base, c, c / base_cpu, sum(x[2] for x in res[s])))
out.append("\nMachine: %s, %d CPUs, kernel %s; disk: %s." % (
    platform.node(), os.cpu_count(), platform.release(), os.popen("findmnt -no FSTYPE,OPTIONS -T /var/tmp").read().strip()))
print("\n".join(out).replace("STAMP", os.environ.get("STAMP", "")))
EOF
cat "$report"
log "wrote $report"
