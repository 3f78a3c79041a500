#!/usr/bin/env bash
# tests/fuzz/run.sh - run libFuzzer targets for as long as asked.
#
#   tests/fuzz/run.sh TARGET SECONDS      one target, e.g. fuzz_session 3600
#   tests/fuzz/run.sh all SECONDS         every target in turn, SECONDS each
#
# Builds build-fuzz (clang, -DENABLE_FUZZ=ON: libFuzzer + ASan + UBSan) when
# needed. Each target starts from its checked-in seed corpus
# tests/fuzz/corpus/TARGET (with tests/fuzz/TARGET.dict when present) and
# keeps what it finds in tests/fuzz/corpus-run/TARGET (not checked in), so a
# long run can be resumed and its new inputs reviewed and copied into the
# seed corpus. A crash, leak or hang (-timeout 10 s per input) fails the run;
# the reproducer is left in tests/fuzz/corpus-run/ as crash-*, leak-* or
# timeout-*, and it belongs in a regression test.
#
# Env: OMX_FUZZ_JOBS (parallel libFuzzer workers per target, default 1),
#      OMX_FUZZ_FRESH=1 (start from the seed corpus only: what the test
#      command does, so its short run is repeatable).
set -u
cd "$(dirname "$0")/../.."

if [ $# -ne 2 ]; then
	echo "usage: tests/fuzz/run.sh TARGET|all SECONDS" >&2
	exit 2
fi
target=$1
secs=$2
jobs=${OMX_FUZZ_JOBS:-1}

if [ ! -d build-fuzz ] || [ ! -f build-fuzz/CMakeCache.txt ]; then
	CC=clang cmake -S . -B build-fuzz -DENABLE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
fi
cmake --build build-fuzz -j"$(nproc)" >build-fuzz.log 2>&1 || { tail -40 build-fuzz.log; exit 1; }

if [ "$target" = all ]; then
	targets=()
	for t in build-fuzz/fuzz_*; do
		[ -x "$t" ] && targets+=("$(basename "$t")")
	done
else
	targets=("$target")
fi

rc=0
for name in "${targets[@]}"; do
	bin="build-fuzz/$name"
	if [ ! -x "$bin" ]; then
		echo "fuzz: no target $name (have: $(cd build-fuzz && ls -d fuzz_* | tr '\n' ' '))" >&2
		exit 2
	fi
	seeds="tests/fuzz/corpus/$name"
	out="tests/fuzz/corpus-run/$name"
	if [ "${OMX_FUZZ_FRESH:-0}" != 0 ]; then
		out=$(mktemp -d)
	fi
	mkdir -p "$out"
	dict=()
	[ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
	seed_dirs=()
	[ -d "$seeds" ] && seed_dirs=("$seeds")
	log=$(mktemp)
	echo "fuzz: $name for ${secs}s (corpus $out)"
	# A fixed seed keeps short runs comparable; timeout(1) bounds the run
	# whatever libFuzzer does.
	if timeout $((secs + 120)) "$bin" "${dict[@]}" -seed=1 -timeout=10 -max_total_time="$secs" \
		-jobs="$jobs" -workers="$jobs" -artifact_prefix="$out/" -print_final_stats=1 \
		"$out" "${seed_dirs[@]}" >"$log" 2>&1; then
		execs=$(grep -h "stat::number_of_executed_units" "$log" | awk '{s+=$2} END {print s+0}')
		echo "fuzz: $name ok: $execs inputs in ${secs}s"
		[ "${OMX_FUZZ_FRESH:-0}" != 0 ] && rm -rf "$out"
	else
		echo "fuzz: $name FAILED (reproducer in $out)"
		tail -60 "$log"
		rc=1
	fi
	rm -f "$log"
done
exit $rc
