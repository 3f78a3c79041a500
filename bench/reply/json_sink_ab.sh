#!/usr/bin/env bash
# bench/reply/json_sink_ab.sh BASE_OMX NEW_OMX - W1 (bench/json_sink.sh's
# workload: 4 KiB messages, 20 sessions, closed loop) with the json sink on
# tmpfs beside the maildir sink, for two oceanmx binaries in alternating
# rounds in one run: the cost of the reply extraction in the document.
# Prints msg/s and server CPU per message (medians) per binary.
# Env: ROUNDS (4), MESSAGES (10000), CONNECTIONS (20), SIZE (4096), OMX_LOAD_BIN.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOAD="${OMX_LOAD_BIN:-$ROOT/build/oceanmx-load}"
ROUNDS="${ROUNDS:-4}" MESSAGES="${MESSAGES:-10000}" CONNECTIONS="${CONNECTIONS:-20}" SIZE="${SIZE:-4096}"
BINS=("$1" "$2")
. "$ROOT/bench/lib.sh"
WORK="$(mktemp -d /var/tmp/oceanmx-replyab.XXXXXX)"
mkdir -p "$WORK/tmpfs" "$WORK/res"
mount -t tmpfs -o size=2g oceanmx-replyab "$WORK/tmpfs"
PID=""
cleanup() {
	if [[ -n $PID ]]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
	umount "$WORK/tmpfs" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
for r in $(seq "$ROUNDS"); do
	order=(0 1)
	((r % 2 == 0)) && order=(1 0)
	for b in "${order[@]}"; do
		d="$WORK/run-$r-$b"
		mkdir -p "$d"
		rm -rf "${WORK:?}/tmpfs/"*
		port=$(free_port)
		"${BINS[$b]}" serve --listen "127.0.0.1:$port" --spool "$d/spool" --sink "maildir:$d/maildir" \
			--sink "json:$WORK/tmpfs/json" --hostname bench.test --max-connections-per-ip 0 --shutdown-timeout 5 \
			--dkim off --spf off --dmarc off --arc off >"$WORK/server.log" 2>&1 &
		PID=$!
		wait_greeting "$port"
		"$LOAD" -q --json -c "$CONNECTIONS" -m "$MESSAGES" -s "$SIZE" "127.0.0.1:$port" >"$WORK/res/$r-$b.json"
		for _ in $(seq 600); do
			[[ -z $(ls -A "$d/spool/q" 2>/dev/null) ]] && break
			sleep 0.1
		done
		read -r u s < <(awk '{print $14, $15}' "/proc/$PID/stat")
		echo $(((u + s) * 1000000 / $(getconf CLK_TCK))) >"$WORK/res/$r-$b.cpu_us"
		kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
		echo "round $r bin $b: $(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["msgs_per_s"]))' "$WORK/res/$r-$b.json") msg/s" >&2
	done
done
python3 - "$WORK/res" "$ROUNDS" "${BINS[@]}" <<'PY'
import json, os, statistics, sys
d, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = []
for b in range(2):
    runs = [(json.load(open(os.path.join(d, "%d-%d.json" % (r, b)))),
             int(open(os.path.join(d, "%d-%d.cpu_us" % (r, b))).read())) for r in range(1, rounds + 1)]
    rate = [j["msgs_per_s"] for j, _ in runs]
    cpu = [c / max(1, j["messages"]["delivered"]) for j, c in runs]
    rows.append((bins[b], statistics.median(rate), rate, statistics.median(cpu)))
print("| binary | W1 msg/s (median) | runs | server CPU per message |")
print("| --- | --- | --- | --- |")
for name, m, rate, cpu in rows:
    print("| %s | %.0f | %s | %.0f us |" % (name, m, ", ".join("%.0f" % x for x in rate), cpu))
print("new/base: msg/s %.3f, CPU per message %.3f" % (rows[1][1] / rows[0][1], rows[1][3] / rows[0][3]))
PY
