#!/usr/bin/env bash
# bench/milter.sh - the cost of a milter (issue 15): W1 for DURATION seconds
# per run with and without --milter, against milters started here on
# loopback with the private configs of tests/integ/test_milter.py:
#   plain     no milter
#   spamass   --milter spamass-milter (-r 15 -m) in front of spamd
#             (SPAMD_CHILDREN children, Debian's SpamAssassin 4)
#   rspamd    --milter rspamd's proxy worker (milter = yes, self_scan) with
#             the minimal config of bench/rspamd.sh (skipped if RSPAMD=0)
#   opendkim  --milter OpenDKIM in Mode v (the messages are unsigned: little
#             work), so the set shows what the milter path itself costs
#   paced     plain again, open loop at the opendkim set's rate (-R): the
#             server costs more per message at a lower rate (fewer messages
#             per batch), so oceanmx's added CPU is opendkim minus paced
# Sets alternate in order per round, each against a fresh server (DKIM, ARC,
# SPF, DMARC off in all, so the difference is the milter's; spool on
# /var/tmp). For each: msg/s, transaction latency p50/p99 (oceanmx-load,
# chained: the final dot to the 250 plus one round trip) and oceanmx's CPU
# per message. Writes bench/results/milter-DATE.md with medians and ratios.
#
# Large messages (the overlap streaming buys shows in the latency):
#   SIZE=1048576 CONNECTIONS=4 MILTER_SETS="plain opendkim paced" bench/milter.sh
# (spamd needs seconds per MiB: the spamass set only times out there; spamc
# gets -s 4 MiB so it scans rather than passes such messages).
#
# Env: ROUNDS (2), DURATION (10), CONNECTIONS (20), SIZE (4096),
#      SPAMD_CHILDREN (2), RSPAMD (1), MILTER_SETS, OMX_BIN, OMX_LOAD_BIN,
#      OMX_LABEL (what the server binary is, for the report; default HEAD), OUT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMX="${OMX_BIN:-$ROOT/build/oceanmx}"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
OUT="${OUT:-$ROOT/bench/results}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-20}"
SIZE="${SIZE:-4096}"
SPAMD_CHILDREN="${SPAMD_CHILDREN:-2}"
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

log() { printf '%s milter: %s\n' "$(date +%T)" "$*" >&2; }

for t in spamd spamass-milter; do
	command -v "$t" >/dev/null || { echo "milter: $t not installed (deploy/setup.sh)" >&2; exit 1; }
done
read -r -a SETS <<<"${MILTER_SETS:-plain spamass opendkim paced}" # paced needs opendkim before it
PACE=0
if [[ ${RSPAMD:-1} != 0 ]] && command -v rspamd >/dev/null; then SETS+=(rspamd); fi
omx_build_if_missing "$OMX" "$LOAD" "$ROOT"

WORK="$(mktemp -d /var/tmp/oceanmx-milter.XXXXXX)"
chmod 755 "$WORK" # spamd's children run as nobody and read their config here
STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT" "$WORK/res"
OMX_PID=""
PIDS=()
cleanup() {
	if [[ -n $OMX_PID ]]; then kill -TERM "$OMX_PID" 2>/dev/null || true; wait "$OMX_PID" 2>/dev/null || true; fi
	for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spamd with the GTUBE rule (Debian ships no rule files) and spamass-milter in front.
mkdir -p "$WORK/sa-site" "$WORK/sa-home"
chmod 755 "$WORK/sa-site"
chmod 777 "$WORK/sa-home"
cp /etc/spamassassin/*.pre "$WORK/sa-site/"
printf 'required_score 5.0\nuse_bayes 0\nskip_rbl_checks 1\nbody GTUBE /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/\nscore GTUBE 1000\n' \
	>"$WORK/sa-site/local.cf"
SA_PORT=$(free_port)
sa_args=(-L "--siteconfigpath=$WORK/sa-site" -p "$SA_PORT" -i 127.0.0.1 -A 127.0.0.1 "--max-children=$SPAMD_CHILDREN"
	"--min-children=$SPAMD_CHILDREN" -s stderr --nouser-config "--helper-home-dir=$WORK/sa-home" -r "$WORK/spamd.pid")
if [[ $(id -u) == 0 ]]; then sa_args+=(-u nobody); fi
setsid spamd "${sa_args[@]}" >"$WORK/spamd.log" 2>&1 &
PIDS+=($!)
setsid spamass-milter -p "unix:$WORK/spamass.sock" -r 15 -m -- -d 127.0.0.1 -p "$SA_PORT" -s 4194304 >"$WORK/spamass.log" 2>&1 &
PIDS+=($!)

if [[ " ${SETS[*]} " == *" rspamd "* ]]; then
	RS_MPORT=$(free_port)
	rspamd_start "$WORK/rspamd" "$(printf 'bind_socket = "127.0.0.1:%s";\ncount = 1;\n' "$(free_port)")" \
		"$(printf 'bind_socket = "127.0.0.1:%s";\nmilter = yes;\ntimeout = 120s;\ncount = 2;\nupstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n' "$RS_MPORT")"
	PIDS+=("$RS_PID")
fi

# OpenDKIM verifying (Mode v): a cheap milter.
mkdir -p "$WORK/dkim"
printf 'Syslog no\nMode v\nSocket local:%s/dkim/od.sock\nPidFile %s/dkim/od.pid\nRequireSafeKeys no\n%s' "$WORK" "$WORK" \
	"$([[ $(id -u) == 0 ]] && echo 'UserID root')" >"$WORK/dkim/opendkim.conf"
setsid opendkim -f -x "$WORK/dkim/opendkim.conf" >"$WORK/opendkim.log" 2>&1 &
PIDS+=($!)

log "waiting for spamd, spamass-milter${RS_MPORT:+ and the rspamd proxy}"
for _ in $(seq 600); do
	ok=1
	[[ -S $WORK/spamass.sock && -S $WORK/dkim/od.sock ]] || ok=0
	printf 'Subject: x\r\n\r\nx\r\n' | spamc -d 127.0.0.1 -p "$SA_PORT" -c >/dev/null 2>&1 || [[ $? == 1 ]] || ok=0
	if [[ -n ${RS_MPORT:-} ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$RS_MPORT") 2>/dev/null; then ok=0; fi
	((ok)) && break
	sleep 0.5
done
((ok)) || { log "milters did not start"; tail "$WORK"/*.log; exit 1; }

run() {
	local r=$1 set=$2 port d=$WORK/run-$1-$2 args=()
	mkdir -p "$d"
	case $set in
	spamass) args=(--milter "unix:$WORK/spamass.sock") ;;
	rspamd) args=(--milter "inet:127.0.0.1:$RS_MPORT") ;;
	opendkim) args=(--milter "unix:$WORK/dkim/od.sock") ;;
	esac
	port=$(free_port)
	"$OMX" serve --listen "127.0.0.1:$port" --spool "$d/spool" --sink "maildir:$d/maildir" --hostname bench.test \
		--max-connections-per-ip 0 --shutdown-timeout 5 --dkim off --spf off --dmarc off --arc off \
		--metrics none "${args[@]}" >"$WORK/server.log" 2>&1 &
	OMX_PID=$!
	wait_greeting "$port" || { log "$set: server did not start"; tail "$WORK/server.log"; exit 1; }
	local load=(-c "$CONNECTIONS" -d "$DURATION")
	if [[ $set == paced ]]; then load+=(-R "$PACE"); fi
	"$LOAD" -q --json -s "$SIZE" "${load[@]}" "127.0.0.1:$port" >"$WORK/res/$r-$set.json" ||
		log "$set: oceanmx-load reported failures"
	cpu_us "$OMX_PID" >"$WORK/res/$r-$set.txt"
	kill -TERM "$OMX_PID"; wait "$OMX_PID" 2>/dev/null || true; OMX_PID=""
	if [[ $set == spamass ]] && ! grep -rqs "^X-Spam-Status: " "$d/maildir/new"; then
		log "spamass: no X-Spam-Status in the stored messages"; exit 1
	fi
	rm -rf "$d"
	if [[ $set == opendkim ]]; then
		PACE=$($PY -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["msgs_per_s"])))' "$WORK/res/$r-$set.json")
	fi
	log "round $r $set: $($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' \
		"$WORK/res/$r-$set.json") msg/s"
}

log "$ROUNDS rounds of ${SETS[*]}, ${DURATION}s each"
for r in $(seq "$ROUNDS"); do
	order=("${SETS[@]}") # paced right after opendkim: it needs this round's rate
	if ((r % 2 == 0)); then # the other way round
		order=()
		for ((i = ${#SETS[@]} - 1; i >= 0; i--)); do
			[[ ${SETS[i]} == paced ]] && continue
			order+=("${SETS[i]}")
			if [[ ${SETS[i]} == opendkim ]]; then order+=(paced); fi
		done
	fi
	for set in "${order[@]}"; do run "$r" "$set"; done
done

report="$OUT/milter-$STAMP.md"
LABEL="${OMX_LABEL:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
STAMP=$STAMP LABEL=$LABEL $PY - "$WORK/res" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$SIZE" "$SPAMD_CHILDREN" "${SETS[@]}" >"$report" <<'EOF'
import json, os, platform, statistics, sys
d, rounds, dur, conns, size, children = sys.argv[1:7]
sets = sys.argv[7:]
res = {}
for s in sets:
    for r in range(1, int(rounds) + 1):
        j = json.load(open(os.path.join(d, "%d-%s.json" % (r, s))))
        srv_us = int(open(os.path.join(d, "%d-%s.txt" % (r, s))).read())
        n = max(1, j["messages"]["delivered"])
        res.setdefault(s, []).append(dict(rate=j["msgs_per_s"], srv=srv_us / n, p50=j["latency_us"]["p50"],
                                          p99=j["latency_us"]["p99"],
                                          fail=j["messages"]["failed"] + j["connection_errors"]))
med = lambda s, k: statistics.median(x[k] for x in res[s])
out = ["# Milters: W1 with and without --milter (bench/milter.sh), %s\n" % os.environ.get("STAMP", "")]
out.append("Server: %s.\n" % os.environ.get("LABEL", ""))
out.append("W1: %s s per run of %s B messages over %s persistent sessions, oceanmx-load on the same machine, "
           "a fresh server per run, DKIM/ARC/SPF/DMARC off in all sets, maildir sink; spamass = spamass-milter "
           "-r 15 -m in front of SpamAssassin 4 spamd with %s children (Debian); rspamd = rspamd 3.4's proxy "
           "worker with milter = yes (2 processes, self_scan, no Redis or network modules); opendkim = OpenDKIM "
           "2.11 in Mode v on unsigned messages (the milter path's own cost); paced = plain "
           "at the opendkim set's rate (-R); %s rounds in "
           "alternating order, medians. Latency is oceanmx-load's per transaction (chained: the final dot to "
           "the 250 plus one round trip).\n" % (dur, size, conns, children, rounds))
out.append("| set | msg/s | runs | vs plain | p50 | p99 | oceanmx CPU/msg | failures |")
out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
for s in sets:
    out.append("| %s | %.0f | %s | %.3f | %.2f ms | %.2f ms | %.1f µs | %d |" % (
        s, med(s, "rate"), ", ".join("%.0f" % x["rate"] for x in res[s]), med(s, "rate") / med("plain", "rate"),
        med(s, "p50") / 1000, med(s, "p99") / 1000, med(s, "srv"), sum(x["fail"] for x in res[s])))
if "opendkim" in res and "paced" in res:
    out.append("\noceanmx's added CPU per message with the opendkim milter: %.1f µs against the paced run at the same "
               "rate (%.1f µs against the unpaced plain run, which batches better)."
               % (med("opendkim", "srv") - med("paced", "srv"), med("opendkim", "srv") - med("plain", "srv")))
out.append("\nMachine: %s, %d CPUs, kernel %s; load average after: %s." % (
    platform.node(), os.cpu_count(), platform.release(), open("/proc/loadavg").read().split()[0]))
print("\n".join(out))
EOF
cat "$report"
