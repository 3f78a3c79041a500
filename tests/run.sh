#!/usr/bin/env bash
# tests/run.sh - every test, in the order a failure is cheapest to read:
#
#   1. unit      Criterion suites (ctest) on the release build
#   2. integ     real clients (smtplib, swaks, smtp-source, raw sockets) against build/oceanmx
#   3. fuzz      each libFuzzer target for OMX_FUZZ_SECONDS (clang, ASan+UBSan)
#   4. asan-unit the unit suites built with ASan+UBSan
#   5. asan-integ the integration suite against the ASan+UBSan server
#   6. tsan      the integration tests that run threads together (verify pool,
#                DNS thread, delivery workers, sinks, the rspamd and webhook
#                clients' curl thread, shards, shutdown) against
#                the ThreadSanitizer server. The Criterion unit binaries do not
#                run under TSan (Criterion's inheritable arena cannot be mapped
#                beside TSan's shadow memory), so the threads are exercised
#                through the server.
#   7. deploy    static checks of deploy/: systemd-analyze verify and security
#                of the unit, yamllint of the manifests, check-config of the
#                example configs, the container entry point, and the option
#                table in docs/operations.md (deploy/check-units.sh)
#   8. image     builds the container image with podman from a debootstrapped
#                base and smoke-tests it from its mounted root
#                (deploy/image-test.sh); skips, and says why, without podman,
#                buildah or debootstrap
#
# Usage: tests/run.sh [step...]   (default: all). Expects deploy/setup.sh to
# have installed the packages. Prints a PASS/FAIL line per step and a last
# line "N passed, N failed"; exits non-zero if any step failed.
set -u
cd "$(dirname "$0")/.."
repo=$(pwd)
jobs=$(nproc)
: "${OMX_FUZZ_SECONDS:=30}"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(unit integ fuzz asan-unit asan-integ tsan deploy image)
passed=0
failed=0
failed_names=()

build() { # build DIR [cmake args...]
	local dir=$1; shift
	cmake -S . -B "$dir" "$@" >/dev/null && cmake --build "$dir" -j"$jobs" >"$dir.log" 2>&1 \
		|| { tail -40 "$dir.log"; return 1; }
}

step_unit() {
	build build -DCMAKE_BUILD_TYPE=RelWithDebInfo && ctest --test-dir build --output-on-failure
}

step_integ() {
	build build -DCMAKE_BUILD_TYPE=RelWithDebInfo && OMX_BIN="$repo/build/oceanmx" tests/integ/run.sh
}

step_fuzz() {
	# The short run of every target, from its seed corpus only (repeatable);
	# tests/fuzz/run.sh TARGET SECONDS runs one for as long as asked.
	OMX_FUZZ_FRESH=1 tests/fuzz/run.sh all "$OMX_FUZZ_SECONDS"
}

step_asan-unit() {
	build build-asan -DOMX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug && ctest --test-dir build-asan --output-on-failure
}

step_asan-integ() {
	build build-asan -DOMX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
		&& OMX_SANITIZED=1 OMX_BIN="$repo/build-asan/oceanmx" tests/integ/run.sh
}

# The tests whose servers run many threads at once; each script's own
# clean-exit check fails on any "WARNING: ThreadSanitizer" report.
TSAN_TESTS=(smtplib crash shutdown backpressure load hostile json_sink stream_sink dkim_server arc milter rspamd webhook_sink)

step_tsan() {
	build build-tsan -DOMX_TSAN=ON -DOMX_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
		&& TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1" OMX_SANITIZED=1 \
			OMX_BIN="$repo/build-tsan/oceanmx" tests/integ/run.sh "${TSAN_TESTS[@]}"
}

step_deploy() {
	build build -DCMAKE_BUILD_TYPE=RelWithDebInfo && deploy/check-units.sh "$repo/build/oceanmx"
}

step_image() {
	local rc=0
	deploy/image-test.sh || rc=$?
	[ $rc -eq 77 ] && return 0 # skipped; image-test.sh said why
	return $rc
}

for s in "${steps[@]}"; do
	echo "==== $s"
	start=$(date +%s)
	if "step_$s"; then
		echo "PASS $s ($(( $(date +%s) - start ))s)"
		passed=$((passed + 1))
	else
		echo "FAIL $s ($(( $(date +%s) - start ))s)"
		failed=$((failed + 1))
		failed_names+=("$s")
	fi
done
[ $failed -gt 0 ] && echo "failed steps: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
