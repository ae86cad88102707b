#!/usr/bin/env bash
# Runs fuzz targets one after another, seeded from seeds/<target>; new inputs
# go to corpus/<target>, crashes to artifacts/<target>. Each target runs for
# SECONDS (default 60), or for RUNS executions when RUNS is set. The
# http1_stack target also gets its dictionary (http1_stack.dict). Needs
# cargo-fuzz; works on stable via RUSTC_BOOTSTRAP=1.
#
#   proxy/fuzz/run.sh                           # every target, 60 s each
#   proxy/fuzz/run.sh 300 w3c b3                # these targets, 300 s each
#   RUNS=10000000 proxy/fuzz/run.sh             # every target, 10M executions
#   RUNS=10000000 proxy/fuzz/run.sh - http1_stack
#
# Extra libFuzzer flags: FUZZ_FLAGS="-jobs=2 -workers=2" proxy/fuzz/run.sh
# Extra cargo-fuzz flags: CARGO_FUZZ_FLAGS="--sanitizer none" proxy/fuzz/run.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(w3c tracestate b3 datadog jaeger extract http1_stack)
fi
if [ -n "${RUNS:-}" ]; then
    limit=(-runs="$RUNS")
else
    limit=(-max_total_time="$seconds")
fi

status=0
for target in "${targets[@]}"; do
    mkdir -p "$here/corpus/$target"
    dict=()
    if [ -f "$here/$target.dict" ]; then
        dict=(-dict="$here/$target.dict")
    fi
    echo "=== $target (${limit[*]})"
    # shellcheck disable=SC2086 # the flag variables are word lists
    RUSTC_BOOTSTRAP=1 cargo fuzz run ${CARGO_FUZZ_FLAGS:-} "$target" --fuzz-dir "$here" \
        "$here/corpus/$target" "$here/seeds/$target" \
        -- "${limit[@]}" "${dict[@]}" -print_final_stats=1 ${FUZZ_FLAGS:-} || status=1
done
exit $status
