#!/usr/bin/env bash
# `opsctl validate` of every shipped runbook (target <= 30 ms), and of the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --locked --bin opsctl
bin="$CARGO_TARGET_DIR/release/opsctl"
hyperfine --warmup 5 --runs 50 -N \
  -n "validate (shipped runbooks)" "$bin validate" \
  -n "validate (shipped + examples, instance team-a)" "$bin validate --config examples/opsctl.yaml --instance team-a"
