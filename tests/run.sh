#!/usr/bin/env bash
# tests/run.sh - every test, in the order a failure is cheapest to read:
#
#   1. unit      Criterion suites (ctest) on the release build
#   2. integ     real clients (smtplib, swaks, smtp-source, raw sockets) against build/oceanmx
#   3. fuzz      each libFuzzer target for OMX_FUZZ_SECONDS (clang, ASan+UBSan)
#   4. asan-unit the unit suites built with ASan+UBSan
#   5. asan-integ the integration suite against the ASan+UBSan server
#   6. deploy    static checks of deploy/: systemd-analyze verify and security
#                of the unit, yamllint of the manifests, check-config of the
#                example configs, the container entry point, and the option
#                table in docs/operations.md (deploy/check-units.sh)
#   7. image     builds the container image with podman from a debootstrapped
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
[ ${#steps[@]} -eq 0 ] && steps=(unit integ fuzz asan-unit asan-integ deploy image)
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
	CC=clang build build-fuzz -DENABLE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo || return 1
	local rc=0 t name corpus work
	for t in build-fuzz/fuzz_*; do
		[ -x "$t" ] || continue
		name=$(basename "$t")
		corpus="tests/fuzz/corpus/$name"
		work=$(mktemp -d)
		[ -d "$corpus" ] && cp -r "$corpus/." "$work/"
		local dict=()
		[ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
		echo "fuzz: $name for ${OMX_FUZZ_SECONDS}s"
		# A fixed seed keeps runs comparable; -timeout fails an input that
		# takes over 10 s (a hang is a bug too), and timeout(1) bounds the
		# whole run whatever libFuzzer does.
		if ! timeout $((OMX_FUZZ_SECONDS + 120)) "$t" "${dict[@]}" -seed=1 -timeout=10 \
			-max_total_time="$OMX_FUZZ_SECONDS" -print_final_stats=0 "$work" >"$work.log" 2>&1; then
			echo "fuzz: $name FAILED"; tail -60 "$work.log"; rc=1
		fi
		rm -rf "$work" "$work.log"
	done
	return $rc
}

step_asan-unit() {
	build build-asan -DOMX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug && ctest --test-dir build-asan --output-on-failure
}

step_asan-integ() {
	build build-asan -DOMX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
		&& OMX_SANITIZED=1 OMX_BIN="$repo/build-asan/oceanmx" tests/integ/run.sh
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
