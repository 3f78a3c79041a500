#!/usr/bin/env bash
# bench/metrics_cost.sh - what the metrics endpoint costs (issue 12)
#
# W1 of the suite (4 KiB messages, 20 persistent sessions, closed loop,
# oceanmx-load) against a fresh oceanmx per run, in alternating rounds:
#   idle     --metrics on a free port, nobody scrapes it
#   scraped  the same, with GET /metrics every second during the load (as
#            Prometheus with scrape_interval 1s; a Python urllib loop)
# For each run: the SMTP-side msg/s and the server's CPU per message (the
# scrapes included). Verification is off (it is not what this measures).
# Then the cost of one scrape alone: 1000 scrapes back to back against a
# fresh server, timed by the CPU of its omx-metrics thread (schedstat).
# Writes bench/results/metrics-cost-DATE.md with medians and the ratio.
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
SETS=(idle scraped)
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s metrics-cost: %s\n' "$(date +%T)" "$*" >&2; }

omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-metricscost.XXXXXX)"
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/res"
OMX_PID=""
SCRAPER_PID=""
cleanup() {
	if [[ -n $SCRAPER_PID ]]; then kill -TERM "$SCRAPER_PID" 2>/dev/null || true; wait "$SCRAPER_PID" 2>/dev/null || true; fi
	if [[ -n $OMX_PID ]]; then kill -TERM "$OMX_PID" 2>/dev/null || true; wait "$OMX_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run ROUND SET: one fresh server, one load run, scraped every second or not.
run() {
	local r=$1 set=$2 port mport d=$WORK/run-$1-$2 c0
	mkdir -p "$d"
	port=$(free_port)
	mport=$(free_port)
	"$OMX" serve --listen "127.0.0.1:$port" --metrics "127.0.0.1:$mport" --spool "$d/spool" \
		--sink "maildir:$d/maildir" --hostname bench.test --max-connections-per-ip 0 --shutdown-timeout 5 \
		--dkim off --spf off --dmarc off --arc off >"$WORK/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$set: server did not start"; tail "$WORK/server.log"; exit 1; }
	c0=$(cpu_us "$OMX_PID")
	if [[ $set == scraped ]]; then
		$PY - "$mport" "$WORK/res/$r-$set.scrapes" <<'PYEOF' &
import sys, time, urllib.request
port, out = sys.argv[1], sys.argv[2]
n = size = 0
with open(out, "w") as f:
    while True:
        t = time.monotonic()
        try:
            size = len(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=5).read())
            n += 1
        except OSError:
            pass
        f.seek(0); f.write("%d %d\n" % (n, size)); f.flush()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
PYEOF
		SCRAPER_PID=$!
	else
		echo "0 0" >"$WORK/res/$r-$set.scrapes"
	fi
	"$LOAD" -q --json -c "$CONNECTIONS" -m "$MESSAGES" -s "$SIZE" "127.0.0.1:$port" >"$WORK/res/$r-$set.json" ||
		log "$set: oceanmx-load reported failures"
	echo "$(($(cpu_us "$OMX_PID") - c0))" >"$WORK/res/$r-$set.txt"
	if [[ -n $SCRAPER_PID ]]; then kill -TERM "$SCRAPER_PID"; wait "$SCRAPER_PID" 2>/dev/null || true; SCRAPER_PID=""; fi
	kill -TERM "$OMX_PID"; wait "$OMX_PID" 2>/dev/null || true; OMX_PID=""
	rm -rf "$d"
	log "round $r $set: $($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' \
		"$WORK/res/$r-$set.json") msg/s, scrapes/bytes $(cat "$WORK/res/$r-$set.scrapes")"
}

log "$ROUNDS rounds of ${SETS[*]}: $MESSAGES x $SIZE B over $CONNECTIONS sessions (verification off)"
for r in $(seq "$ROUNDS"); do
	order=("${SETS[@]}")
	if ((r % 2 == 0)); then order=("${SETS[1]}" "${SETS[0]}"); fi
	for set in "${order[@]}"; do run "$r" "$set"; done
done

# The cost of one scrape itself: a fresh server that took MESSAGES/10 messages, then
# 1000 scrapes back to back; the CPU time of its omx-metrics thread (schedstat, ns).
scrape_cpu() {
	local port mport d=$WORK/scrape tid
	mkdir -p "$d"
	port=$(free_port)
	mport=$(free_port)
	"$OMX" serve --listen "127.0.0.1:$port" --metrics "127.0.0.1:$mport" --spool "$d/spool" \
		--sink "maildir:$d/maildir" --hostname bench.test --max-connections-per-ip 0 --shutdown-timeout 5 \
		--dkim off --spf off --dmarc off --arc off >"$WORK/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "scrape: server did not start"; exit 1; }
	"$LOAD" -q --json -c "$CONNECTIONS" -m $((MESSAGES / 10)) -s "$SIZE" "127.0.0.1:$port" >/dev/null || true
	tid=$(grep -l '^omx-metrics$' /proc/"$OMX_PID"/task/*/comm | head -1 | xargs dirname | xargs basename)
	$PY - "$mport" "/proc/$OMX_PID/task/$tid/schedstat" >"$WORK/res/scrape.txt" <<'PYEOF'
import sys, time, urllib.request
port, stat = sys.argv[1], sys.argv[2]
ns = lambda: int(open(stat).read().split()[0])
n, t0, c0 = 1000, time.monotonic(), ns()
for _ in range(n):
    body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=10).read()
print("%d %d %d %.6f" % (n, ns() - c0, len(body), time.monotonic() - t0))
PYEOF
	kill -TERM "$OMX_PID"; wait "$OMX_PID" 2>/dev/null || true; OMX_PID=""
	log "scrape: $(cat "$WORK/res/scrape.txt") (scrapes, metrics-thread ns, body bytes, wall s)"
}
scrape_cpu

report="$OUT/metrics-cost-$STAMP.md"
STAMP=$STAMP $PY - "$WORK/res" "$ROUNDS" "$MESSAGES" "$CONNECTIONS" "$SIZE" "${SETS[@]}" >"$report" <<'EOF'
import json, os, platform, statistics, sys
d, rounds, msgs, conns, size = sys.argv[1:6]
sets = sys.argv[6:]
res = {}
for s in sets:
    for r in range(1, int(rounds) + 1):
        j = json.load(open(os.path.join(d, "%d-%s.json" % (r, s))))
        srv_us = int(open(os.path.join(d, "%d-%s.txt" % (r, s))).read())
        scrapes, body = map(int, open(os.path.join(d, "%d-%s.scrapes" % (r, s))).read().split())
        n = max(1, j["messages"]["delivered"])
        res.setdefault(s, []).append(dict(smtp=j["msgs_per_s"], srv=srv_us / n, scrapes=scrapes, body=body,
                                          fail=j["messages"]["failed"] + j["connection_errors"]))
med = lambda s, k: statistics.median(x[k] for x in res[s])
out = ["# The metrics endpoint's cost on W1 (bench/metrics_cost.sh), %s\n" % os.environ.get("STAMP", "")]
out.append("%s messages of %s B per run over %s persistent sessions, closed loop (oceanmx-load); maildir sink; "
           "DKIM, ARC, SPF and DMARC off; *scraped*: GET /metrics every second during the load; %s rounds in "
           "alternating order, a fresh server per run; medians. Server CPU per message includes the scrapes.\n"
           % (msgs, size, conns, rounds))
out.append("| set | SMTP msg/s | runs | vs idle | server CPU/msg | vs idle | scrapes per run | body | failures |")
out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in sets:
    out.append("| %s | %.0f | %s | %.3f | %.1f µs | %.3f | %s | %d B | %d |" % (
        s, med(s, "smtp"), ", ".join("%.0f" % x["smtp"] for x in res[s]), med(s, "smtp") / med(sets[0], "smtp"),
        med(s, "srv"), med(s, "srv") / med(sets[0], "srv"), ", ".join(str(x["scrapes"]) for x in res[s]),
        med(s, "body"), sum(x["fail"] for x in res[s])))
sn, sns, sbody, swall = open(os.path.join(d, "scrape.txt")).read().split()
out.append("\nOne scrape by itself (a fresh server after %d messages, %s scrapes back to back): %.0f µs of CPU on "
           "the omx-metrics thread per scrape (schedstat), %s B of exposition, %.2f ms wall per scrape; at one "
           "scrape a second that is %.3f%% of one core." % (int(msgs) // 10, sn, int(sns) / int(sn) / 1000.0, sbody,
                                                            float(swall) * 1000 / int(sn), int(sns) / int(sn) / 1e7))
out.append("\nMachine: %s, %d CPUs, kernel %s; load average at the end %s." % (
    platform.node(), os.cpu_count(), platform.release(), " ".join(open("/proc/loadavg").read().split()[:3])))
print("\n".join(out))
EOF
cat "$report"
log "wrote $report"
