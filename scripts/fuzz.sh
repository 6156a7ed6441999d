#!/usr/bin/env bash
# Builds every fuzz harness of tests/fuzz with libFuzzer and runs each for SECONDS from its
# seed corpus. Called by `make fuzz` (after cmake configured BUILD_DIR with CARAPACE_FUZZ).
#   scripts/fuzz.sh BUILD_DIR SECONDS [JOBS]
# What libFuzzer finds new is kept in BUILD_DIR/corpus/NAME (copy what is worth keeping into
# tests/fuzz/corpus/NAME); a crash, leak, hang or sanitizer report is written to
# BUILD_DIR/artifacts/NAME-* and makes this exit 1. Prints one line per harness: the
# executions run, the corpus size and what was found.
set -uo pipefail
build=${1:?build dir}
seconds=${2:?seconds per harness}
jobs=${3:-2}
source_dir=$(cd "$(dirname "$0")/.." && pwd)
harnesses=()
for f in "$source_dir"/tests/fuzz/*_fuzz.cc; do
  n=$(basename "$f" _fuzz.cc)
  harnesses+=("$n")
done
targets=()
for n in "${harnesses[@]}"; do targets+=("fuzz_$n"); done
cmake --build "$build" -j "$jobs" --target "${targets[@]}" || exit 2

mkdir -p "$build/artifacts"
failed=0
printf '%-14s %12s %10s %8s  %s\n' harness executions exec/s corpus found
for n in "${harnesses[@]}"; do
  corpus="$build/corpus/$n"
  mkdir -p "$corpus"
  log="$build/fuzz-$n.log"
  "$build/tests/fuzz/fuzz_$n" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$n-" "$corpus" "$source_dir/tests/fuzz/corpus/$n" \
    >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
  speed=$(( ${runs:-0} / seconds ))
  size=$(ls "$corpus" | wc -l)
  found="nothing"
  if [ $rc -ne 0 ]; then
    found="FAILED (exit $rc): $(ls "$build/artifacts" | grep "^$n-" | tr '\n' ' ') see $log"
    failed=1
  fi
  printf '%-14s %12s %10s %8s  %s\n' "$n" "${runs:-?}" "${speed:-?}" "$size" "$found"
done
exit $failed
