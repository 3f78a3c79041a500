#!/usr/bin/env bash
# bench/soak.sh DURATION - mixed traffic (1 KB to 10 MB, DKIM-signed and not,
# connection churn, bad clients) with kill -9 every few minutes, checking that
# memory stays flat and every acknowledged message is delivered exactly as sent
# (SHA-256). Driver: bench/soak.py (see its header for the details).
#
#   bench/soak.sh 3600                  an hour; kill -9 every 180 s
#   SOAK_KILL_EVERY=60 bench/soak.sh 600
#   SOAK_OUT=- bench/soak.sh 120        print only (tests/integ/test_soak.py)
#
# Writes bench/results/soak-DATE.md (unless SOAK_OUT=-). Exit 0 on no loss,
# no corruption and flat memory. Every delivered message stays in the maildir
# under /var/tmp until the check at the end, about 2.4 GB a minute on a 2-core
# machine: the traffic ends early (and the report says so) when that file
# system has less than 4 GB free (soak.py --min-free-gb).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
omx="${OMX_BIN:-$repo/build/oceanmx}"
load="$repo/build/oceanmx-load"
omx_build_if_missing "$omx" "$load" "$repo"
dur="${1:?usage: bench/soak.sh DURATION_SECONDS}"
out="${SOAK_OUT:-$here/results/soak-$(date -u +%Y-%m-%d-%H%M%S).md}"
args=()
if [ "$out" != "-" ]; then
	mkdir -p "$(dirname "$out")"
	echo "<!-- $(date -u +%FT%TZ); $(uname -sr); $(nproc) CPUs; oceanmx $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?') -->" >"$out"
	args+=(--out "$out")
fi
[ -n "${SOAK_KILL_EVERY:-}" ] && args+=(--kill-every "$SOAK_KILL_EVERY")
rc=0
/usr/bin/python3 -u "$here/soak.py" "$dur" --bin "$omx" --load "$load" "${args[@]}" || rc=$?
[ "$out" != "-" ] && echo "soak: results in $out"
exit $rc
