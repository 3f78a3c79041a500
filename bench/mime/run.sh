#!/usr/bin/env bash
# bench/mime/run.sh [BUILD_DIR] - parse throughput on the mixed MIME corpus
# (every message of ../shared/corpora/mime-*): oceanmx vs GMime (omx-mime-bench)
# and Python's email package (/usr/bin/python3, parse + get_payload(decode=True)
# of every leaf), in the same run, with machine info.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="${1:-$repo/build}"
corpora="${OMX_CORPORA:-$repo/../shared/corpora}"
mapfile -t files < <(find "$corpora"/mime-* -name '*.eml' -o -name '*.msg' | sort)
echo "# $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) CPUs"
"$build/bench/mime/omx-mime-bench" -r 7 "${files[@]}"
/usr/bin/python3 - "${files[@]}" <<'PY'
import email, sys, time
data = [open(f, "rb").read() for f in sys.argv[1:]]
total = sum(map(len, data))
best = 1e30
for _ in range(3):
    t0 = time.perf_counter()
    for d in data:
        m = email.message_from_bytes(d)
        for p in m.walk():
            if not p.is_multipart():
                p.get_payload(decode=True)
    best = min(best, time.perf_counter() - t0)
print("%-28s %8.1f MB/s  (best of 3, %.3f s per round)" % ("Python email (compat32)", total / best / 1e6, best))
PY
