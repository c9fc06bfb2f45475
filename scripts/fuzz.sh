#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (the pinned nightly of scripts/env.sh + cargo-fuzz;
# scripts/setup.sh installs both): what timd parses from clients and admins, and what the session core reads from the
# server. Usage:
#   scripts/fuzz.sh TARGET|all SECONDS      # each target for SECONDS (one after the other)
#   scripts/fuzz.sh TARGET|all -runs=N      # each target for N executions
#   scripts/fuzz.sh list                    # the targets
# Runs at low priority (nice 15, NICE=...), one process each (libFuzzer's default: one job), without a sanitizer (-s none: the
# code under test is safe Rust; panics, overflow checks and debug assertions still fire, at
# several times the speed). Seeds live in fuzz/corpus/<target>/
# (seed-* are committed; what the fuzzer adds there is not). A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script. Prints the executions per target.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
[ -f scripts/env.sh ] && . scripts/env.sh
targets=(client_frame server_frame usersig ticket rest_query rest_body)
what=${1:-}
case "$what" in
  list) printf '%s\n' "${targets[@]}"; exit 0 ;;
  all) run=("${targets[@]}") ;;
  '') echo "usage: $0 TARGET|all SECONDS|-runs=N   (targets: ${targets[*]})" >&2; exit 2 ;;
  *) run=("$what") ;;
esac
limit=${2:-10}
case "$limit" in
  -runs=*) budget=("$limit") ;;
  *[!0-9]*|'') echo "SECONDS must be a number (or -runs=N)" >&2; exit 2 ;;
  *) budget=("-max_total_time=$limit") ;;
esac
# The package build's pinned nightly (scripts/env.sh), which setup.sh installs anyway.
toolchain=${TIM_FUZZ_TOOLCHAIN:-$TIM_PKG_TOOLCHAIN}
# Built outside the clone, so CI runs (fresh clones) reuse the build: the first one takes ~3
# minutes (timd and its dependencies, instrumented), later ones seconds.
target_dir=${TIM_FUZZ_TARGET_DIR:-$HOME/.cache/tim-wasm/fuzz-target}
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: run scripts/setup.sh" >&2; exit 1; }
cd fuzz
build=$(mktemp)
if ! nice -n "${NICE:-15}" cargo "+$toolchain" fuzz build -O -s none --target-dir "$target_dir" >"$build" 2>&1; then
  cat "$build" >&2; rm -f "$build"; exit 1
fi
rm -f "$build"
status=0
for t in "${run[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  started=$(date +%s)
  if nice -n "${NICE:-15}" cargo "+$toolchain" fuzz run -O -s none --target-dir "$target_dir" "$t" "corpus/$t" -- \
      "${budget[@]}" -print_final_stats=1 -max_len=16384 \
      -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    result=ok
  else
    result=CRASH; status=1
    tail -40 "$log" >&2
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  secs=$(( $(date +%s) - started ))
  corpus=$(find "corpus/$t" -type f | wc -l)
  printf 'fuzz %-13s %-5s %12s execs in %5s s, corpus %s\n' "$t" "$result" "${execs:-?}" "$secs" "$corpus"
  rm -f "$log"
done
exit $status
