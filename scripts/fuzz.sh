#!/usr/bin/env bash
# Fuzzes each target in fuzz/ (cargo fuzz, libFuzzer) for SECONDS (default 600) one after
# another: the runbook loader, the inventory loader, the template renderer, the
# duration/size/quantity/target parsers and the JSON-path lookup (entry points in
# src/fuzz.rs). Any crash, hang (over 10 s for one input) or out-of-memory (over 2 GiB) is an
# artifact under fuzz/artifacts/<target>/; move it to fuzz/regressions/<target>/ with the
# fix — tests/cli/fuzz.rs replays those and the corpus on every test run.
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 30         # a smoke run
#   scripts/fuzz.sh 600 units  # one target
#
# The corpus under fuzz/corpus/<target>/ is then replaced by the smallest set of inputs
# covering every edge reached (`-set_cover_merge=1 -use_counters=0`), so it stays small. Prints one line per target: runs, execs/s, corpus,
# coverage, and whether it failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(runbook inventory template units json_path)
export CARGO_TARGET_DIR="${OPSCTL_FUZZ_TARGET_DIR:-$HOME/.cache/opsctl-fuzz-target}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# libFuzzer's instrumentation needs nightly flags: a nightly toolchain if there is one,
# else the stable compiler told to accept them.
if cargo +nightly --version >/dev/null 2>&1; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi
# No sanitizer: opsctl is safe Rust (libFuzzer still finds panics, hangs and memory blow-ups);
# debug assertions on.
"${FUZZ[@]}" build -s none -a

failed=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%-10s %10s %10s %8s %6s  %s\n' target runs exec/s corpus cov result
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/artifacts/$t" "$work/$t"
  log="$work/$t.log"
  status=0
  "${FUZZ[@]}" run -s none -a "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  # Keep the smallest set of inputs that covers every edge reached (seeds, the corpus and
  # what this run found): the corpus in the repo stays small.
  mkdir -p "$work/$t.min"
  if "${FUZZ[@]}" run -s none -a "$t" "$work/$t.min" "fuzz/corpus/$t" "$work/$t" -- -set_cover_merge=1 -use_counters=0 -max_len=16384 >/dev/null 2>&1 \
     && [ -n "$(ls -A "$work/$t.min")" ]; then
    rm -rf "fuzz/corpus/$t" && mv "$work/$t.min" "fuzz/corpus/$t"
  fi
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  if [ "$status" -ne 0 ] || [ -n "$(ls -A "fuzz/artifacts/$t")" ]; then
    result="FAILED (exit $status): $(ls "fuzz/artifacts/$t" | tr '\n' ' ') — see $log"
    cp "$log" "fuzz/artifacts/$t/fuzz.log"
    failed=1
  else
    result="ok: 0 crashes, 0 hangs, 0 out-of-memory"
  fi
  printf '%-10s %10s %10s %8s %6s  %s\n' "$t" "${runs:-?}" "${speed:-?}" "$corpus" "${cov:-?}" "$result"
done
exit $failed
