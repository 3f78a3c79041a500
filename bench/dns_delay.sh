#!/usr/bin/env bash
# bench/dns_delay.sh - does DNS latency slow oceanmx down? (issue 6)
#
# Every message comes from its own sender domain (oceanmx-load
# --sender-domains), so SPF (MAIL FROM and HELO) and DMARC look up names the
# resolver has not cached; bench/dns_delay.py answers them all, once at once
# and once after DELAY_MS. Shards never wait on DNS (the verify pool's DNS
# thread does), so with enough sessions in flight the delayed run should keep
# most of the throughput of the undelayed one; the goal is at least 80%.
#
# Rounds alternate the two settings (the machine is shared and drifts), with a
# fresh server each run (an empty DNS cache). Writes
# bench/results/dns-delay-DATE.md with both rates, their ratio, latency
# percentiles and the DNS queries the server made per message.
#
# Env: ROUNDS (3), MESSAGES (20000 per run), CONNECTIONS (200), SIZE (4096),
#      DOMAINS (100000 sender domains, drawn uniformly: about 9% of 20000
#      draws repeat a domain), DELAY_MS (20), OMX_BIN, OMX_LOAD_BIN, OUT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMX="${OMX_BIN:-$ROOT/build/oceanmx}"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
OUT="${OUT:-$ROOT/bench/results}"
ROUNDS="${ROUNDS:-3}"
MESSAGES="${MESSAGES:-20000}"
CONNECTIONS="${CONNECTIONS:-200}"
SIZE="${SIZE:-4096}"
DOMAINS="${DOMAINS:-100000}"
DELAY_MS="${DELAY_MS:-20}"
PY=python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s dns-delay: %s\n' "$(date +%T)" "$*" >&2; }

omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-dnsdelay.XXXXXX)"
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/json"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
OMX_PID="" DNS_PID=""

stop_all() {
	local p
	for p in $OMX_PID $DNS_PID; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $OMX_PID $DNS_PID; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	OMX_PID="" DNS_PID=""
}
trap 'stop_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM


# run NAME DELAY: one fresh DNS responder + server, one load run.
run() {
	local name=$1 delay=$2 port dport d=$WORK/$1
	mkdir -p "$d"
	$PY "$ROOT/bench/dns_delay.py" --delay-ms "$delay" >"$d/dns.out" 2>"$d/dns.err" &
	DNS_PID=$!
	for _ in $(seq 50); do grep -q PORT "$d/dns.out" 2>/dev/null && break; sleep 0.1; done
	dport=$(awk '/^PORT/ {print $2}' "$d/dns.out")
	port=$(free_port)
	"$OMX" serve --listen "127.0.0.1:$port" --spool "$d/spool" --sink "maildir:$d/maildir" \
		--hostname bench.test --max-connections 20000 --max-connections-per-ip 0 --shutdown-timeout 5 \
		--dns "127.0.0.1:$dport" >"$d/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$name: server did not start"; tail "$d/server.log"; exit 1; }
	"$LOAD" -q --json -c "$CONNECTIONS" -m "$MESSAGES" -s "$SIZE" --sender-domains "$DOMAINS" \
		"127.0.0.1:$port" >"$WORK/json/$name.json" || log "$name: oceanmx-load reported failures"
	stop_all
	sed -n 's/^queries \([0-9]*\) .*/\1/p' "$d/dns.err" >"$WORK/json/$name.queries"
	rm -rf "$d"
	log "$name: $($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' "$WORK/json/$name.json") msg/s"
}

log "$ROUNDS rounds: $MESSAGES x $SIZE B over $CONNECTIONS sessions, $DOMAINS sender domains, delay 0 vs ${DELAY_MS} ms"
for r in $(seq "$ROUNDS"); do
	if ((r % 2)); then
		run "r$r-d0" 0; run "r$r-d$DELAY_MS" "$DELAY_MS"
	else
		run "r$r-d$DELAY_MS" "$DELAY_MS"; run "r$r-d0" 0
	fi
done

report="$OUT/dns-delay-$STAMP.md"
$PY - "$WORK/json" "$ROUNDS" "$DELAY_MS" "$MESSAGES" "$CONNECTIONS" "$SIZE" "$DOMAINS" "$STAMP" >"$report" <<'EOF'
import json, os, platform, statistics, sys
d, rounds, delay, msgs, conns, size, doms, stamp = sys.argv[1:]
rows = {}
for r in range(1, int(rounds) + 1):
    for tag, dl in (("d0", "0"), ("d" + delay, delay)):
        j = json.load(open(os.path.join(d, "r%d-%s.json" % (r, tag))))
        q = open(os.path.join(d, "r%d-%s.queries" % (r, tag))).read().strip()
        j["queries"] = int(q) if q else 0
        rows.setdefault(dl, []).append(j)

def med(dl, f):
    return statistics.median(f(j) for j in rows[dl])

def lat(j, p):
    return j["latency_us"][p] / 1000.0

out = ["# DNS latency and throughput (bench/dns_delay.sh), %s\n" % stamp]
out.append("%s messages of %s B per run over %s concurrent sessions; every message from one of %s sender "
           "domains (MAIL FROM and From:), drawn uniformly; SPF (both identities), DMARC, DKIM and ARC on (messages "
           "unsigned, so SPF and DMARC make the lookups). bench/dns_delay.py answers every query, after 0 ms or %s ms; a fresh server (empty "
           "cache) per run; %s rounds, alternating; medians.\n" % (msgs, size, conns, doms, delay, rounds))
out.append("| DNS delay | msg/s (median) | runs | p50 ms | p90 ms | p99 ms | p99.9 ms | DNS queries per message | errors |")
out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for dl in ("0", delay):
    rs = rows[dl]
    out.append("| %s ms | %.0f | %s | %.1f | %.1f | %.1f | %.1f | %.2f | %d |" % (
        dl, med(dl, lambda j: j["msgs_per_s"]), ", ".join("%.0f" % j["msgs_per_s"] for j in rs),
        med(dl, lambda j: lat(j, "p50")), med(dl, lambda j: lat(j, "p90")), med(dl, lambda j: lat(j, "p99")),
        med(dl, lambda j: lat(j, "p999")), med(dl, lambda j: j["queries"] / max(1, j["messages"]["delivered"])),
        sum(j["connection_errors"] + j["messages"]["failed"] for j in rs)))
ratio = med(delay, lambda j: j["msgs_per_s"]) / med("0", lambda j: j["msgs_per_s"])
# Each round ran both settings back to back: the ratio within a round is the
# least disturbed by the machine's drift.
paired = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in zip(rows[delay], rows["0"])]
out.append("\nDelayed / undelayed throughput: **%.2f** (ratio of the medians; goal: at least 0.80). "
           "Within each round: %s, median %.2f.\n" % (ratio, ", ".join("%.2f" % x for x in paired),
                                                      statistics.median(paired)))
out.append("Machine: %s, %d CPUs, kernel %s." % (platform.node(), os.cpu_count(), platform.release()))
print("\n".join(out))
EOF
cat "$report"
log "wrote $report"
