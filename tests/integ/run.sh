#!/usr/bin/env bash
# tests/integ/run.sh - run the oceanmx integration tests against a built server.
#
#   tests/integ/run.sh [NAME_SUBSTRING...]
#
# Env: OMX_BIN (server binary, default build/oceanmx relative to the repo root),
#      OMX_SANITIZED=1 (ASan build: smaller counts, longer waits),
#      OMX_CORPORA (default <repo>/../shared/corpora), OMX_TEST_TIMEOUT (seconds
#      per test script), OMX_KEEP_TMP=1 (keep server temp dirs), OMX_INTEG_LOGS
#      (directory for per-test logs, default a fresh mktemp dir).
#
# Each tests/integ/test_* script runs under `timeout` (which signals the whole
# process group, so servers started by a test die with it). Exit status of a
# script: 0 pass, 77 skip (last "SKIP: reason" line says why), anything else
# fail. Prints one line per test, the failing cases under a FAIL line, and a
# last line "N passed, N failed, N skipped". Exits 1 if any test failed.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py=/usr/bin/python3

: "${OMX_BIN:=build/oceanmx}"
case "$OMX_BIN" in /*) ;; *) OMX_BIN="$repo/$OMX_BIN" ;; esac
export OMX_BIN

if [ "${OMX_SANITIZED:-0}" != "0" ]; then
	default_timeout=600
else
	default_timeout=240
fi
per_test="${OMX_TEST_TIMEOUT:-$default_timeout}"
logs="${OMX_INTEG_LOGS:-$(mktemp -d /tmp/omx-integ-logs.XXXXXX)}"
mkdir -p "$logs"

passed=0
failed=0
skipped=0

if [ ! -x "$py" ]; then
	echo "FAIL (runner): $py not found (Debian package python3)"
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi
if ! command -v timeout >/dev/null 2>&1; then
	echo "FAIL (runner): timeout(1) not found (Debian package coreutils)"
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi

echo "oceanmx integration tests: server $OMX_BIN${OMX_SANITIZED:+ (OMX_SANITIZED=$OMX_SANITIZED)}; logs in $logs"

for t in "$here"/test_*; do
	[ -f "$t" ] || continue
	name="$(basename "$t")"
	name="${name%.*}"
	if [ $# -gt 0 ]; then
		sel=0
		for pat in "$@"; do
			case "$name" in *"$pat"*) sel=1 ;; esac
		done
		[ $sel = 1 ] || continue
	fi
	case "$t" in
	*.py) runner=("$py" -u "$t") ;;
	*.sh) runner=(bash "$t") ;;
	*) continue ;;
	esac
	log="$logs/$name.log"
	start=$(date +%s)
	# -k: SIGKILL the group if it ignores SIGTERM for 30 s more.
	timeout -k 30 "$per_test" "${runner[@]}" >"$log" 2>&1 </dev/null
	rc=$?
	secs=$(($(date +%s) - start))
	case $rc in
	0)
		passed=$((passed + 1))
		echo "PASS $name (${secs}s): $(grep '^RESULT:' "$log" | tail -1 | sed 's/^RESULT: //')"
		;;
	77)
		skipped=$((skipped + 1))
		echo "SKIP $name: $(grep '^SKIP:' "$log" | tail -1 | sed 's/^SKIP: //')"
		;;
	124 | 137)
		failed=$((failed + 1))
		echo "FAIL $name (${secs}s): timed out after ${per_test}s; log $log"
		grep -E '^  (ok|FAIL)' "$log" | tail -20 | sed 's/^/    /'
		;;
	*)
		failed=$((failed + 1))
		echo "FAIL $name (${secs}s, exit $rc): $(grep '^RESULT:' "$log" | tail -1 | sed 's/^RESULT: //'); log $log"
		grep -E '^  FAIL' "$log" | head -20 | cut -c1-300 | sed 's/^/    /'
		;;
	esac
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
