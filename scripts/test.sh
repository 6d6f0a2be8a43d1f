#!/usr/bin/env bash
# Runs every test of opsctl on this machine: installs and starts what the tests need,
# then `cargo test`. This is the README's test command and what .ci/run calls.
#
# What the tests need, by backend (each section installs and starts its own):
#   core (http, host, notify): nothing beyond Rust; the tests start their own HTTP(S)
#   server on loopback.
#
# Under CI=true, a test that needs a backend that is missing fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory outside the clone keeps CI builds incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "scripts/test.sh: cargo is not installed (https://rustup.rs)" >&2; exit 1; }

echo "== cargo test (target dir: $CARGO_TARGET_DIR)"
cargo test --locked "$@"
