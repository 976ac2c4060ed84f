#!/usr/bin/env bash
# Builds the libFuzzer targets (tools/fuzz) with the fuzzer and address sanitizers and runs each on
# its checked-in corpus.
#
#   tools/fuzz/run.sh                     every target, FJORD_FUZZ_RUNS executions each (default 200000)
#   FJORD_FUZZ_SECONDS=30 tools/fuzz/run.sh
#                                         every target for 30 s each (CI), however many runs that is
#   FJORD_FUZZ_RUNS=10000000 tools/fuzz/run.sh fuzz-produce
#                                         one target, a long run
#   tools/fuzz/run.sh --seeds             rewrite corpus/<target>/seed-* from the project's builders
#
# New inputs the fuzzer finds go to a scratch directory, not into corpus/ (add one by hand when it
# is worth keeping). A finding leaves crash-* in the current directory and exits non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
targets=(fuzz-frames fuzz-requests fuzz-produce)
seeds=0
if [[ "${1:-}" == "--seeds" ]]; then seeds=1; shift; fi
[[ $# -gt 0 ]] && targets=("$@")
runs=${FJORD_FUZZ_RUNS:-200000}
limit=()
if [[ -n "${FJORD_FUZZ_SECONDS:-}" ]]; then
    runs=${FJORD_FUZZ_RUNS:--1}
    limit=(-max_total_time="$FJORD_FUZZ_SECONDS")
fi

# --sanitize=fuzzer makes SwiftPM link libFuzzer's main; the one -Xswiftc flag naming both sanitizers
# comes last, because swiftc keeps only the last of several -sanitize= options, and
# SwiftPM's --sanitize=fuzzer --sanitize=address passes two, in no fixed order (a build could
# lose its coverage instrumentation, and the fuzzer would run blind).
flags=(--sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address)
for target in "${targets[@]}"; do
    swift build "${flags[@]}" --product "$target" >&2
done
bin=$(swift build "${flags[@]}" --show-bin-path)

for target in "${targets[@]}"; do
    if ((seeds)); then
        FJORD_FUZZ_WRITE_SEEDS="$here/corpus/$target" "$bin/$target"
        echo "seeds written to corpus/$target"
        continue
    fi
    scratch=$(mktemp -d)
    echo "== $target: ${FJORD_FUZZ_SECONDS:+${FJORD_FUZZ_SECONDS} s, }$runs runs"
    # -rss_limit_mb bounds memory; -max_len lets produce batches of a few KiB through.
    log="$scratch.log"
    status=0
    # The binary must carry coverage counters for the project's modules, not only its own.
    counters=$("$bin/$target" -runs=0 2>&1 | sed -n 's/.*(\([0-9]*\) inline 8-bit counters).*/\1/p' | head -1)
    if [[ -z "$counters" || "$counters" -lt 5000 ]]; then
        echo "$target: only ${counters:-no} coverage counters; the build is not instrumented" >&2
        exit 1
    fi
    echo "coverage counters: $counters"
    "$bin/$target" -runs="$runs" "${limit[@]}" -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1 \
        "$scratch" "$here/corpus/$target" >"$log" 2>&1 || status=$?
    grep -E "^(#[0-9]+[[:space:]]+DONE|Done|INFO: +[0-9]+ files found|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)|fuzz invariant" "$log" || true
    if [[ $status -ne 0 ]]; then tail -40 "$log"; fi
    rm -rf "$scratch" "$log"
    if [[ $status -ne 0 ]]; then echo "$target: FINDING (exit $status)"; exit 1; fi
done
