#!/usr/bin/env bash
# See opsctl work against real backends on this machine: two reference platforms walked
# through check → routine daily → gate → a deploy of a broken image (verification fails,
# automatic rollback) → gate again → a restore drill, each table printed as an operator
# sees it.
#
#   Loyalty  (Docker Compose host): a Compose project on the Docker engine, PostgreSQL and
#            Redis — all real servers;
#   Go Coffee (Kubernetes tenant):   PostgreSQL, Redis and Alertmanager are real servers;
#            Kubernetes is the test suite's fake API server (tests/cli/support/fake_kube),
#            since no real API server can be installed here — pods, rollouts, logs and
#            port-forwarding are simulated by it.
#
# It starts throwaway servers on loopback ports (as the tests do: Debian's PostgreSQL,
# Redis and Alertmanager programs, the local test images) and stops them all when it ends.
# A backend this machine lacks skips its platform and says why; `scripts/test.sh` installs
# them all. CI runs these same steps, with assertions, as `cargo test --test cli demo::`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
export OPSCTL_TEST_VENV="${OPSCTL_TEST_VENV:-$HOME/.cache/opsctl-venv}"
unset CI
command -v cargo >/dev/null || { echo "scripts/demo.sh: cargo is not installed (https://rustup.rs)" >&2; exit 1; }
echo "== building opsctl and the demo (debug build; a first build takes a few minutes)"
cargo test --locked --test cli --no-run -q 2>/dev/null || cargo test --locked --test cli --no-run
echo "== real servers: PostgreSQL, Redis, Alertmanager, Docker Compose; Kubernetes: the test suite's fake API server"
OPSCTL_DEMO=1 cargo test --locked -q --test cli demo:: -- --nocapture --test-threads 1
echo "== done: every server the demo started has been stopped"
