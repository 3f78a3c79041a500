#!/usr/bin/env bash
# bench/rspamd.sh - the cost of spam verdicts (issue 15): W1 with and without
# --rspamd, against Debian's rspamd started here on loopback (the same minimal
# config as tests/integ/test_rspamd.py: stock rules, no Redis, no network
# modules, RSPAMD_WORKERS normal workers).
#
# Sets, in alternating order per round, each against a fresh server (DKIM, ARC,
# SPF, DMARC off in both, so the difference is rspamd's; spool on /var/tmp):
#   plain    W1: MESSAGES x SIZE B over CONNECTIONS persistent sessions
#   rspamd   the same with --rspamd (every message checked)
#   paced    plain again, open loop at the rspamd set's rate (-R): delivery
#            costs more per message at a lower rate (fewer messages per sink
#            batch), so oceanmx's added CPU is rspamd minus paced
# For each: msg/s and transaction latency p50/p99 (oceanmx-load; with its
# chaining, a transaction is one round trip: its MAIL/RCPT/DATA ride with the
# previous final dot, so this is the final dot to the 250 plus one round trip),
# oceanmx's CPU per message (utime + stime from /proc), rspamd's CPU per
# message (all its processes). Writes bench/results/rspamd-DATE.md: medians,
# ratios, and oceanmx's added CPU per message; prints a summary (msg/s ratio,
# p50/p99, oceanmx CPU µs/msg with and without rspamd and the difference).
#
# rspamd 3.4 answers every request with "Connection: close", so each check is
# a new connection: RSPAMD_VIA=unix makes it one on rspamd's UNIX socket
# (--rspamd unix:PATH) instead of TCP. PERF=1 records the server of the last
# rspamd run with perf record -g and adds where its CPU went (by thread and
# by library) to the report. OMX_BIN_B=PATH (another build, e.g. the one
# before a change) adds the set rspamd_b, the rspamd set with that binary,
# run next to it in every round, so two builds compare within one run
# (thread by thread; the report gives the ratio of the client's threads).
#
# Env: ROUNDS (2), MESSAGES (5000), CONNECTIONS (20), SIZE (4096),
#      RSPAMD_WORKERS (2), RSPAMD_VIA (tcp), PERF (0), OMX_BIN, OMX_BIN_B,
#      OMX_LOAD_BIN, OUT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMX="${OMX_BIN:-$ROOT/build/oceanmx}"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
OUT="${OUT:-$ROOT/bench/results}"
ROUNDS="${ROUNDS:-2}"
MESSAGES="${MESSAGES:-5000}"
CONNECTIONS="${CONNECTIONS:-20}"
SIZE="${SIZE:-4096}"
RSPAMD_WORKERS="${RSPAMD_WORKERS:-2}"
RSPAMD_VIA="${RSPAMD_VIA:-tcp}"
PERF="${PERF:-0}"
SETS=(plain rspamd paced)
OMX_B="${OMX_BIN_B:-}"
if [[ -n $OMX_B ]]; then SETS+=(rspamd_b); fi
PACE=0
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s rspamd: %s\n' "$(date +%T)" "$*" >&2; }

command -v rspamd >/dev/null || { echo "rspamd: not installed (Debian package rspamd)" >&2; exit 1; }
omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-rspamd.XXXXXX)"
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/res"
OMX_PID=""
RS_PID=""
cleanup() {
	if [[ -n $OMX_PID ]]; then kill -TERM "$OMX_PID" 2>/dev/null || true; wait "$OMX_PID" 2>/dev/null || true; fi
	if [[ -n $RS_PID ]]; then kill -TERM -- "-$RS_PID" 2>/dev/null || true; wait "$RS_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# rspamd's minimal local config (see tests/integ/test_rspamd.py), its normal workers on TCP and a UNIX socket.
RS="$WORK/rspamd"
RS_PORT=$(free_port)
RS_SOCK="$RS/run/normal.sock"
rspamd_start "$RS" "$(printf 'bind_socket = "127.0.0.1:%s";\nbind_socket = "%s mode=0600";\ncount = %s;\n' \
	"$RS_PORT" "$RS_SOCK" "$RSPAMD_WORKERS")" "$(printf 'bind_socket = "127.0.0.1:%s";\n' "$(free_port)")"
log "waiting for rspamd on 127.0.0.1:$RS_PORT (loading its rules takes a while)"
for _ in $(seq 600); do
	if curl -s -m 2 "http://127.0.0.1:$RS_PORT/ping" 2>/dev/null | grep -q pong; then break; fi
	sleep 0.5
done
curl -s -m 2 "http://127.0.0.1:$RS_PORT/ping" | grep -q pong || { log "rspamd did not start"; tail "$RS/out.log"; exit 1; }

thread_cpu_us() { # thread_cpu_us PID: "group µs" per thread group (name without its digits)
	local t
	for t in /proc/"$1"/task/*; do
		printf '%s %s\n' "$(tr -d '0-9' <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
	done | awk -v hz="$(getconf CLK_TCK)" '{a[$1] += $2} END {for (k in a) printf "%s %d\n", k, a[k] * 1000000 / hz}'
}

rspamd_cpu_us() { # all processes of rspamd's session (main, workers)
	local t=0 p
	for p in $(pgrep -s "$RS_PID"); do t=$((t + $(cpu_us "$p" 2>/dev/null || echo 0))); done
	echo "$t"
}

run() {
	local r=$1 set=$2 port d=$WORK/run-$1-$2 args=() rs0 bin=$OMX
	mkdir -p "$d"
	local load=(-c "$CONNECTIONS" -m "$MESSAGES")
	if [[ $set == rspamd_b ]]; then bin=$OMX_B; fi
	if [[ $set == rspamd* && $RSPAMD_VIA == unix ]]; then args=(--rspamd "unix:$RS_SOCK");
	elif [[ $set == rspamd* ]]; then args=(--rspamd "http://127.0.0.1:$RS_PORT"); fi
	if [[ $set == paced ]]; then load=(-c "$CONNECTIONS" -m "$MESSAGES" -R "$PACE"); fi
	port=$(free_port)
	"$bin" serve --listen "127.0.0.1:$port" --spool "$d/spool" --sink "maildir:$d/maildir" --hostname bench.test \
		--max-connections-per-ip 0 --shutdown-timeout 5 --dkim off --spf off --dmarc off --arc off \
		"${args[@]}" >"$WORK/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$set: server did not start"; tail "$WORK/server.log"; exit 1; }
	rs0=$(rspamd_cpu_us)
	local perf_pid=""
	if [[ $PERF == 1 && $set == rspamd && $r == "$ROUNDS" ]]; then
		perf record -q -g -p "$OMX_PID" -o "$WORK/perf.data" >"$WORK/perf.log" 2>&1 &
		perf_pid=$!
	fi
	"$LOAD" -q --json -s "$SIZE" "${load[@]}" "127.0.0.1:$port" >"$WORK/res/$r-$set.json" ||
		log "$set: oceanmx-load reported failures"
	if [[ -n $perf_pid ]]; then
		kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
		perf report -i "$WORK/perf.data" --no-children --sort comm -g none -q 2>/dev/null | grep -v '^$' | head -12 \
			>"$WORK/res/perf-comm.txt" || true
		perf report -i "$WORK/perf.data" --no-children --sort comm,dso -g none -q 2>/dev/null | grep -v '^$' |
			head -16 >"$WORK/res/perf-dso.txt" || true
	fi
	cpu_us "$OMX_PID" >"$WORK/res/$r-$set.txt"
	thread_cpu_us "$OMX_PID" >"$WORK/res/$r-$set.thr"
	echo $(($(rspamd_cpu_us) - rs0)) >"$WORK/res/$r-$set.rs"
	kill -TERM "$OMX_PID"; wait "$OMX_PID" 2>/dev/null || true; OMX_PID=""
	if [[ $set == rspamd* ]] && ! grep -rq "^X-Spam-Status: " "$d/maildir/new" 2>/dev/null; then
		log "rspamd: no X-Spam-Status in the stored messages"; exit 1
	fi
	rm -rf "$d"
	if [[ $set == rspamd ]]; then
		PACE=$($PY -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["msgs_per_s"])))' "$WORK/res/$r-$set.json")
	fi
	log "round $r $set: $($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' \
		"$WORK/res/$r-$set.json") msg/s"
}

log "$ROUNDS rounds of ${SETS[*]}"
for r in $(seq "$ROUNDS"); do
	order=(plain rspamd paced) # paced needs this round's rspamd rate
	if ((r % 2 == 0)); then order=(rspamd paced plain); fi
	if [[ -n $OMX_B ]] && ((r % 2 == 1)); then order+=(rspamd_b); elif [[ -n $OMX_B ]]; then order=(rspamd_b "${order[@]}"); fi
	for set in "${order[@]}"; do run "$r" "$set"; done
done

report="$OUT/rspamd-$STAMP.md"
STAMP=$STAMP VIA=$RSPAMD_VIA $PY - "$WORK/res" "$ROUNDS" "$MESSAGES" "$CONNECTIONS" "$SIZE" "$RSPAMD_WORKERS" \
	"${SETS[@]}" >"$report" <<'EOF'
import json, os, platform, statistics, sys
d, rounds, msgs, conns, size, workers = sys.argv[1:7]
sets = sys.argv[7:]
via = os.environ.get("VIA", "tcp")
res = {}
for s in sets:
    for r in range(1, int(rounds) + 1):
        j = json.load(open(os.path.join(d, "%d-%s.json" % (r, s))))
        srv_us = int(open(os.path.join(d, "%d-%s.txt" % (r, s))).read())
        rs_us = int(open(os.path.join(d, "%d-%s.rs" % (r, s))).read())
        n = max(1, j["messages"]["delivered"])
        thr = {}
        for line in open(os.path.join(d, "%d-%s.thr" % (r, s))):
            k, v = line.split()
            k = k.rstrip("-")
            thr[k] = thr.get(k, 0) + int(v) / n
        res.setdefault(s, []).append(dict(rate=j["msgs_per_s"], srv=srv_us / n, rs=rs_us / n, thr=thr,
                                          nodeliver=sum(v for k, v in thr.items() if k != "omx-deliver"),
                                          p50=j["latency_us"]["p50"], p99=j["latency_us"]["p99"],
                                          fail=j["messages"]["failed"] + j["connection_errors"]))
med = lambda s, k: statistics.median(x[k] for x in res[s])
out = ["# Spam verdicts from rspamd: W1 with and without --rspamd (bench/rspamd.sh), %s\n" % os.environ.get("STAMP", "")]
out.append("W1: %s messages of %s B over %s persistent sessions, oceanmx-load on the same machine, a fresh "
           "server per run, DKIM/ARC/SPF/DMARC off in both sets, maildir sink on the disk; rspamd 3.4 (Debian) "
           "with %s normal workers, stock rules without Redis or network modules, asked over %s; %s rounds in "
           "alternating order, medians. Latency is oceanmx-load's per transaction (chained: the final dot to "
           "the 250 plus one round trip).\n" % (msgs, size, conns, workers,
                                                 "its UNIX socket" if via == "unix" else "TCP", rounds))
out.append("| set | msg/s | runs | vs plain | p50 | p99 | oceanmx CPU/msg | rspamd CPU/msg | failures |")
out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in sets:
    out.append("| %s | %.0f | %s | %.2f | %.2f ms | %.2f ms | %.1f µs | %.0f µs | %d |" % (
        s, med(s, "rate"), ", ".join("%.0f" % x["rate"] for x in res[s]), med(s, "rate") / med("plain", "rate"),
        med(s, "p50") / 1000, med(s, "p99") / 1000, med(s, "srv"), med(s, "rs"),
        sum(x["fail"] for x in res[s])))
out.append("\noceanmx's added CPU per message with rspamd: %.1f µs against the paced run at the same rate "
           "(%.1f µs against the unpaced plain run, which batches deliveries better); target < 20 µs."
           % (med("rspamd", "srv") - med("paced", "srv"), med("rspamd", "srv") - med("plain", "srv")))
out.append("\nSummary (with rspamd / without):")
out.append("- msg/s: %.0f / %.0f, ratio %.3f" % (med("rspamd", "rate"), med("plain", "rate"),
                                                med("rspamd", "rate") / med("plain", "rate")))
out.append("- latency p50: %.2f ms / %.2f ms (paced at the same rate: %.2f ms)" % (
    med("rspamd", "p50") / 1000, med("plain", "p50") / 1000, med("paced", "p50") / 1000))
out.append("- latency p99: %.2f ms / %.2f ms (paced at the same rate: %.2f ms)" % (
    med("rspamd", "p99") / 1000, med("plain", "p99") / 1000, med("paced", "p99") / 1000))
out.append("- oceanmx CPU: %.1f µs/msg / %.1f µs/msg unpaced, %.1f µs/msg paced; added %.1f µs/msg (vs paced)"
           % (med("rspamd", "srv"), med("plain", "srv"), med("paced", "srv"),
              med("rspamd", "srv") - med("paced", "srv")))
groups = sorted({k for s in sets for x in res[s] for k in x["thr"]})
tmed = lambda s, k: statistics.median(x["thr"].get(k, 0) for x in res[s])
if "rspamd_b" in res:
    cli = lambda s: statistics.median(x["thr"].get("omx-rspamd", 0) + x["thr"].get("omx-verify", 0) for x in res[s])
    out.append("- rspamd_b (OMX_BIN_B, the same set with another build): oceanmx CPU %.1f µs/msg (rspamd %.1f), "
               "added %.1f µs/msg vs paced (rspamd %.1f); the client's threads (omx-rspamd + omx-verify, which "
               "hands each check on): %.1f µs/msg with this build, %.1f with OMX_BIN_B, ratio %.2f"
               % (med("rspamd_b", "srv"), med("rspamd", "srv"), med("rspamd_b", "srv") - med("paced", "srv"),
                  med("rspamd", "srv") - med("paced", "srv"), cli("rspamd"), cli("rspamd_b"),
                  cli("rspamd") / max(cli("rspamd_b"), 0.001)))
out.append("- oceanmx CPU without the delivery threads (the maildir sink's, whose cost per message depends on "
           "the rate and the file system more than on rspamd): %.1f µs/msg with rspamd, %.1f paced, %.1f unpaced; "
           "added %.1f µs/msg (vs paced)" % (med("rspamd", "nodeliver"), med("paced", "nodeliver"),
                                             med("plain", "nodeliver"), med("rspamd", "nodeliver") - med("paced", "nodeliver")))
out.append("\noceanmx CPU per message by thread group (µs, medians; from /proc/PID/task, whole server life):\n")
out.append("| set | " + " | ".join(groups) + " |")
out.append("| --- |" + " --- |" * len(groups))
for s in sets:
    out.append("| %s | " % s + " | ".join("%.1f" % tmed(s, g) for g in groups) + " |")
for name, title in (("perf-comm.txt", "by thread"), ("perf-dso.txt", "by thread and library")):
    p = os.path.join(d, name)
    if os.path.exists(p):
        out.append("\nperf record -g of the last rspamd run's server, %s:\n\n```\n%s```" % (title, open(p).read()))
out.append("\nMachine: %s, %d CPUs, kernel %s; load average after: %s." % (
    platform.node(), os.cpu_count(), platform.release(), open("/proc/loadavg").read().split()[0]))
print("\n".join(out))
EOF
cat "$report"
