#!/usr/bin/env bash
# 200 http.checks against a loopback server that answers after 20 ms, `--parallel 50`,
# against a bash loop of curl doing the same 200 checks one by one; same run, same server.
#
#   scripts/bench-http.sh            # needs hyperfine and curl (installed from Debian if missing)
#
# Target: opsctl wall time <= 1.3 x (4 x 20 ms) + process start-up; ratio to curl >= 30x.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
for tool in hyperfine curl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
done
cargo build --release --locked --bin opsctl --example bench-server
bin="$CARGO_TARGET_DIR/release/opsctl"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CARGO_TARGET_DIR/release/examples/bench-server" "$port" 20 &
server=$!
work=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.3

url="http://127.0.0.1:$port/health"
{
  echo "name: bench-http"
  echo "steps:"
  echo "  - parallel:"
  for i in $(seq 200); do
    echo "      - http.check: { url: \"$url\", expect_json: { status: healthy } }"
  done
} > "$work/200.yaml"
printf 'name: startup\nsteps:\n  - sleep: { duration: 0s }\n' > "$work/startup.yaml"
export OPSCTL_STATE_DIR="$work/state"

"$bin" run "$work/200.yaml" -i localhost --parallel 50 -q   # fails loudly if any check fails
hyperfine -N --warmup 3 --runs 20 --export-json "$work/opsctl.json" \
  -n "opsctl start-up (1 trivial step)" "$bin run $work/startup.yaml -i localhost -q" \
  -n "opsctl 200 http.check --parallel 50" "$bin run $work/200.yaml -i localhost --parallel 50 -q"
urls=$(for _ in $(seq 200); do printf '%s ' "$url"; done)
hyperfine -N --warmup 1 --runs 5 --export-json "$work/curl.json" \
  -n "bash loop of curl, 200 checks" "scripts/bench-curl-loop.sh $url 200" \
  -n "curl -Z --parallel-max 50, 200 URLs" "curl -sSf -Z --parallel-max 50 -o /dev/null $urls" \
  -n "xargs -P 50 curl, 200 checks" "bash -c 'for i in \$(seq 200); do echo $url; done | xargs -P 50 -n 1 curl -sSf -o /dev/null'"
python3 - "$work/opsctl.json" "$work/curl.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["results"]
cs = json.load(open(sys.argv[2]))["results"]
c = cs[0]
start, run = o[0]["median"], o[1]["median"]
target = 1.3 * 0.080 + start
print(f"\nopsctl: {run*1000:.1f} ms median (min {min(o[1]['times'])*1000:.1f}, max {max(o[1]['times'])*1000:.1f}; start-up {start*1000:.1f} ms; target <= {target*1000:.1f} ms: {'met' if run <= target else 'NOT met'})")
print(f"curl loop: {c['median']*1000:.0f} ms; ratio {c['median']/run:.1f}x (target >= 30x: {'met' if c['median']/run >= 30 else 'NOT met'})")
for x in cs[1:]:
    print(f"{x['command']}: {x['median']*1000:.1f} ms; opsctl / it = {run/x['median']:.2f}x (for comparison: the same checks without judging answers)")
print(f"floor: 4 waves of 50 requests x 20 ms = 80 ms; opsctl above the floor and start-up: {(run-start-0.080)*1000:.1f} ms")
PY
