#!/usr/bin/env bash
# bench/tls.sh - STARTTLS cost on oceanmx (issue 11): W1 with and without --tls,
# and full handshakes per second with connection churn.
#
# Sets, in alternating order per round, each against a fresh server (RSA-2048
# certificate made here with openssl; verification off; spool on /var/tmp):
#   plain       W1: MESSAGES x SIZE B over CONNECTIONS persistent sessions
#   tls         the same with oceanmx-load --tls (one handshake per session)
#   churn-plain CHURN messages, one per connection (-p 1), CHURN_CONNS at once
#   churn-tls   the same with --tls: every message costs a full handshake
#               (oceanmx-load keeps no session cache, so no resumption)
# For each: msg/s (oceanmx-load) and the server's CPU per message (utime +
# stime from /proc). Writes bench/results/tls-DATE.md: medians, the tls/plain
# ratios, and handshakes/s (= churn-tls msg/s).
#
# Env: ROUNDS (2), MESSAGES (20000), CONNECTIONS (20), SIZE (4096), CHURN (3000),
#      CHURN_CONNS (8), OMX_BIN, OMX_LOAD_BIN, OUT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMX="${OMX_BIN:-$ROOT/build/oceanmx}"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
OUT="${OUT:-$ROOT/bench/results}"
ROUNDS="${ROUNDS:-2}"
MESSAGES="${MESSAGES:-20000}"
CONNECTIONS="${CONNECTIONS:-20}"
SIZE="${SIZE:-4096}"
CHURN="${CHURN:-3000}"
CHURN_CONNS="${CHURN_CONNS:-8}"
SETS=(plain tls churn-plain churn-tls)
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s tls: %s\n' "$(date +%T)" "$*" >&2; }

omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-tls.XXXXXX)"
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/res"
OMX_PID=""
cleanup() {
	if [[ -n $OMX_PID ]]; then kill -TERM "$OMX_PID" 2>/dev/null || true; wait "$OMX_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/k.pem" -out "$WORK/c.pem" -days 2 \
	-subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null

run() {
	local r=$1 set=$2 port d=$WORK/run-$1-$2 args=()
	mkdir -p "$d"
	case $set in
	plain) args=(-c "$CONNECTIONS" -m "$MESSAGES") ;;
	tls) args=(-c "$CONNECTIONS" -m "$MESSAGES" --tls) ;;
	churn-plain) args=(-c "$CHURN_CONNS" -m "$CHURN" -p 1) ;;
	churn-tls) args=(-c "$CHURN_CONNS" -m "$CHURN" -p 1 --tls) ;;
	esac
	port=$(free_port)
	"$OMX" serve --listen "127.0.0.1:$port" --spool "$d/spool" --sink "maildir:$d/maildir" --hostname bench.test \
		--tls-cert "$WORK/c.pem" --tls-key "$WORK/k.pem" \
		--max-connections-per-ip 0 --shutdown-timeout 5 --dkim off --spf off --dmarc off --arc off >"$WORK/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$set: server did not start"; tail "$WORK/server.log"; exit 1; }
	"$LOAD" -q --json -s "$SIZE" "${args[@]}" "127.0.0.1:$port" >"$WORK/res/$r-$set.json" ||
		log "$set: oceanmx-load reported failures"
	cpu_us "$OMX_PID" >"$WORK/res/$r-$set.txt"
	kill -TERM "$OMX_PID"; wait "$OMX_PID" 2>/dev/null || true; OMX_PID=""
	rm -rf "$d"
	log "round $r $set: $($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' \
		"$WORK/res/$r-$set.json") msg/s"
}

log "$ROUNDS rounds of ${SETS[*]}"
for r in $(seq "$ROUNDS"); do
	order=("${SETS[@]}")
	if ((r % 2 == 0)); then order=("${SETS[3]}" "${SETS[2]}" "${SETS[1]}" "${SETS[0]}"); fi
	for set in "${order[@]}"; do run "$r" "$set"; done
done

report="$OUT/tls-$STAMP.md"
STAMP=$STAMP $PY - "$WORK/res" "$ROUNDS" "$MESSAGES" "$CONNECTIONS" "$SIZE" "$CHURN" "$CHURN_CONNS" "${SETS[@]}" >"$report" <<'EOF'
import json, os, platform, statistics, sys
d, rounds, msgs, conns, size, churn, cconns = sys.argv[1:8]
sets = sys.argv[8:]
res = {}
for s in sets:
    for r in range(1, int(rounds) + 1):
        j = json.load(open(os.path.join(d, "%d-%s.json" % (r, s))))
        srv_us = int(open(os.path.join(d, "%d-%s.txt" % (r, s))).read())
        n = max(1, j["messages"]["delivered"])
        res.setdefault(s, []).append(dict(rate=j["msgs_per_s"], srv=srv_us / n,
                                          fail=j["messages"]["failed"] + j["connection_errors"]))
med = lambda s, k: statistics.median(x[k] for x in res[s])
base = {"plain": "plain", "tls": "plain", "churn-plain": "churn-plain", "churn-tls": "churn-plain"}
out = ["# STARTTLS cost on oceanmx (bench/tls.sh), %s\n" % os.environ.get("STAMP", "")]
out.append("W1: %s messages of %s B over %s persistent sessions; churn: %s messages, one per connection "
           "(`-p 1`), %s connections at once, every TLS one a full handshake (RSA-2048 certificate). "
           "oceanmx-load on the same machine, a fresh server per run, DKIM/ARC/SPF/DMARC off, maildir sink "
           "on the disk; %s rounds in alternating order, medians. Server CPU per message includes delivery.\n"
           % (msgs, size, conns, churn, cconns, rounds))
out.append("| set | msg/s | runs | vs clear | server CPU/msg | vs clear | failures |")
out.append("| --- | --- | --- | --- | --- | --- | --- |")
for s in sets:
    b = base[s]
    out.append("| %s | %.0f | %s | %.2f | %.0f µs | %.2f | %d |" % (
        s, med(s, "rate"), ", ".join("%.0f" % x["rate"] for x in res[s]), med(s, "rate") / med(b, "rate"),
        med(s, "srv"), med(s, "srv") / med(b, "srv"), sum(x["fail"] for x in res[s])))
out.append("\nFull TLS handshakes per second with churn: %.0f (one per message)." % med("churn-tls", "rate"))
out.append("\nMachine: %s, %d CPUs, kernel %s; load average before: %s." % (
    platform.node(), os.cpu_count(), platform.release(), open("/proc/loadavg").read().split()[0]))
print("\n".join(out))
EOF
cat "$report"
log "wrote $report"
