#!/usr/bin/env bash
# `opsctl check --all` over N inventory instances (default 500), each with one HTTP health
# endpoint answering after 20 ms (one loopback server for all), side by side in one run with
# one instance checked alone and with the floor:
#   check -i team-0000                        the slowest single instance run alone
#   check --all --max-concurrency 100%        every instance at once (target <= 1.5x alone)
#   check --all                               the default --max-concurrency 16
#   fleet-floor URL N                         N GETs at once from a bare reqwest process (the
#                                             client opsctl uses): what N checks at once cost
#                                             on this machine before any runbook or report
#   fleet-floor URL 1                         the same for one
# and the peak RSS of `check --all --max-concurrency 100%` (target <= 200 MB).
#
#   scripts/bench-fleet.sh [INSTANCES] [RUNS]        defaults: 500 10
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
runs=${2:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --locked --bin opsctl --example bench-server --example fleet-floor
bin="$CARGO_TARGET_DIR/release/opsctl"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CARGO_TARGET_DIR/release/examples/bench-server" "$port" 20 2>/dev/null &
server=$!
work=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.3
{
  echo "instances:"
  for i in $(seq 0 $((n - 1))); do
    printf '  team-%04d:\n    labels: { tier: prod }\n    http: { base_url: "http://127.0.0.1:%s", health: [/health] }\n' "$i" "$port"
  done
} >"$work/opsctl.yaml"
export OPSCTL_CONFIG="$work/opsctl.yaml" OPSCTL_STATE_DIR="$work/state"
# The machine's own checks may warn on a busy machine (exit 0 still); a failure here is not the fleet's.
hyperfine -N -i --warmup 2 --runs "$runs" --export-json "$work/fleet.json" \
  "$bin check -i team-0000 -q" \
  "$bin check --all --max-concurrency 100% -q" \
  "$bin check --all -q" \
  "$CARGO_TARGET_DIR/release/examples/fleet-floor http://127.0.0.1:$port/health $n" \
  "$CARGO_TARGET_DIR/release/examples/fleet-floor http://127.0.0.1:$port/health 1"
/usr/bin/time -f "%M" -o "$work/rss" "$bin" check --all --max-concurrency 100% -q >/dev/null || true
python3 - "$work/fleet.json" "$(cat "$work/rss")" "$n" <<'PY'
import json, sys, statistics
r = json.load(open(sys.argv[1]))["results"]
rss_kb, n = int(sys.argv[2]), int(sys.argv[3])
med = lambda x: statistics.median(x["times"])
spread = lambda x: (min(x["times"]), max(x["times"]))
one, every, default, floor_n, floor_1 = (med(x) for x in r)
for x in r:
    lo, hi = spread(x)
    print(f"{x['command']}: median {med(x)*1000:.1f} ms (min {lo*1000:.1f}, max {hi*1000:.1f})")
print(f"\ncheck --all over {n} instances, every one at once: {every*1000:.0f} ms = {every/one:.2f}x one instance alone ({one*1000:.1f} ms) (target <= 1.5x: {'met' if every <= 1.5*one else 'NOT met'})")
print(f"the floor, {n} GETs at once from a bare client process: {floor_n*1000:.0f} ms = {floor_n/floor_1:.2f}x one GET alone ({floor_1*1000:.1f} ms): "
      f"{'no client can meet 1.5x here' if floor_n > 1.5 * floor_1 else 'a client can meet 1.5x here'}")
print(f"check --all over {n} instances at once / the floor for {n}: {every/floor_n:.2f}x, opsctl's own cost above the connections {(every-floor_n)*1000:.0f} ms "
      f"(target <= 1.5x the floor, the issue's ratio where a client can reach it: {'met' if every <= 1.5*floor_n else 'NOT met'})")
print(f"check --all with the default --max-concurrency 16: {default*1000:.0f} ms ({default/one:.1f}x; 16 at a time cannot meet 1.5x: {n}/16 waves of >= 20 ms)")
print(f"peak RSS of check --all over {n} instances: {rss_kb/1024:.1f} MB (target <= 200 MB: {'met' if rss_kb/1024 <= 200 else 'NOT met'})")
print(f"before this issue: 10.9 s (the instances one after another)")
PY
