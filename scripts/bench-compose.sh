#!/usr/bin/env bash
# compose.services_healthy over a 20-service project (one engine listing + parallel
# inspects) against the compose CLI's own status listing, in the same run:
#   `docker compose ps --format json` when Compose v2 is installed, else `docker-compose ps`
# (v1 has no JSON output), and `docker ps --format json` as a plain engine round trip.
# Target: opsctl <= 1.2x the compose listing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
tests/images/build.sh
cargo build --release --locked --bin opsctl
opsctl="$CARGO_TARGET_DIR/release/opsctl"
work=$(mktemp -d)
project="opsctl-bench-$$"
if docker compose version >/dev/null 2>&1; then compose=(docker compose); baseline_name="docker compose ps --format json"; baseline_args=(ps --format json)
else compose=(docker-compose); baseline_name="docker-compose ps (v1: no JSON output)"; baseline_args=(ps); fi
{
  echo 'version: "2.4"'
  echo "services:"
  for i in $(seq -w 1 20); do
    echo "  s$i: { image: \"opsctl-test-busybox:1\", command: [sleep, \"3600\"], stop_signal: SIGKILL }"
  done
} > "$work/docker-compose.yml"
cleanup() { "${compose[@]}" -f "$work/docker-compose.yml" -p "$project" down -t 0 >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"${compose[@]}" -f "$work/docker-compose.yml" -p "$project" up -d >/dev/null 2>&1
printf 'instances:\n  bench:\n    compose: { files: [docker-compose.yml], project: %s }\n' "$project" > "$work/opsctl.yaml"
printf 'name: health\nsteps:\n  - compose.services_healthy: {}\n' > "$work/health.yaml"
export OPSCTL_STATE_DIR="$work/state"
(cd "$work" && "$opsctl" run health.yaml -i bench)   # shows the result; fails loudly if not healthy
cd "$work"
hyperfine -N --warmup 3 --runs 20 --export-json "$work/r.json" \
  -n "opsctl compose.services_healthy" "$opsctl run health.yaml -i bench -q" \
  -n "$baseline_name" "${compose[*]} -f docker-compose.yml -p $project ${baseline_args[*]}" \
  -n "docker ps --format json (one engine listing via the CLI)" "docker ps -a --filter label=com.docker.compose.project=$project --format json"
python3 - "$work/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
o, c, d = (x["mean"] for x in r)
print(f"\nopsctl {o*1000:.1f} ms; {r[1]['command']}: {c*1000:.1f} ms -> {o/c:.2f}x (target <= 1.2x); docker ps: {d*1000:.1f} ms -> {o/d:.2f}x")
PY
