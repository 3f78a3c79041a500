#!/usr/bin/env bash
# bench/hostile.sh - each attack against oceanmx while it serves a normal W1
# load (oceanmx-load, 20 sessions, 4 KiB); the normal clients' msg/s and p99
# against clean runs, the server's peak memory (VmHWM), messages acknowledged,
# delivered, lost and duplicated. Each attack runs between two clean runs, and
# the attacker in a CPU cgroup capped at half a core (HOSTILE_ATTACKER_CPU) in
# every run: see bench/hostile.py. Driver: bench/hostile.py.
#
#   bench/hostile.sh [DURATION]          seconds of load per attack (default 10)
#   HOSTILE_ONLY=slowloris,spf bench/hostile.sh 5
#
# Writes bench/results/hostile-DATE.md. Exits 1 when an attack leaves the
# normal clients below 0.8 of the clean throughput or loses a message.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
omx="${OMX_BIN:-$repo/build/oceanmx}"
load="$repo/build/oceanmx-load"
omx_build_if_missing "$omx" "$load" "$repo"
dur="${1:-10}"

# 10,000 attacker sockets here and 10,000 accepted ones in the server (which
# inherits this limit); --max-connections 12000 is passed by the driver.
ulimit -n 24000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 11000 ]; then
	echo "hostile: file limit $(ulimit -n) < 11000: the 10,000-connection attack will be cut short" >&2
fi

# Spools and maildirs on a tmpfs of our own (tens of thousands of files per run:
# deleting them from a shared disk took minutes). The clean run is on the same
# tmpfs, so the ratios compare like with like; HOSTILE_DIR=DIR uses DIR instead.
work="${HOSTILE_DIR:-}"
mnt=""
cleanup() { [ -n "$mnt" ] && { umount -l "$mnt"; rmdir "$mnt"; }; }
trap cleanup EXIT
if [ -z "$work" ]; then
	mnt="$(mktemp -d /var/tmp/omx-hostile-mnt.XXXXXX)"
	if mount -t tmpfs -o size=6g tmpfs "$mnt" 2>/dev/null; then
		work="$mnt"
	else
		rmdir "$mnt"; mnt=""; work=/var/tmp
		echo "hostile: cannot mount a tmpfs (not root?): spools under /var/tmp" >&2
	fi
fi

out="$here/results/hostile-$(date -u +%Y-%m-%d-%H%M%S).md"
mkdir -p "$here/results"
{
	echo "<!-- $(date -u +%FT%TZ); $(uname -sr); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); oceanmx $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'); ulimit -n $(ulimit -n) -->"
	echo
} >"$out"
rc=0
/usr/bin/python3 "$here/hostile.py" --bin "$omx" --load "$load" --out "$out" --duration "$dur" --dir "$work" \
	--attacker-cpu "${HOSTILE_ATTACKER_CPU:-0.5}" \
	${HOSTILE_ONLY:+--only "$HOSTILE_ONLY"} || rc=$?
echo "hostile: results in $out"
exit $rc
