#!/usr/bin/env bash
# bench/reply/run.sh [BUILD_DIR] - MB/s of the reply extraction on the bodies
# of every message of ../shared/corpora/mime-* (OMX_CORPORA), with machine info.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="${1:-$repo/build}"
corpora="${OMX_CORPORA:-$repo/../shared/corpora}"
mapfile -t files < <(find "$corpora"/mime-* -name '*.eml' -o -name '*.msg' | sort)
if [ "${#files[@]}" -eq 0 ]; then
	echo "reply bench: no MIME corpus under $corpora (set OMX_CORPORA)" >&2
	exit 77
fi
echo "# $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) CPUs; ${#files[@]} files"
"$build/bench/reply/omx-reply-bench" -r 7 "${files[@]}"
