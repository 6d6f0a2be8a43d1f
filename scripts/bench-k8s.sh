#!/usr/bin/env bash
# k8s.pods_healthy over a namespace of N pods (default 5,000), read in pages of 500, against
# the tests' fake API server run as a process (benches/fake_apiserver.rs):
#   time:    wall time of the whole `opsctl run` (start-up included), median   (target <= 200 ms)
#   memory:  opsctl's peak RSS                                                   (target <= 100 MB)
#
#   scripts/bench-k8s.sh [PODS] [RUNS]      defaults: 5000 10
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-5000}
runs=${2:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
cargo build --release --locked --bin opsctl --example fake-apiserver
opsctl="$CARGO_TARGET_DIR/release/opsctl"

work=$(mktemp -d /var/tmp/opsctl-bench-k8s.XXXXXX)
"$CARGO_TARGET_DIR/release/examples/fake-apiserver" "$work/kubeconfig" "$pods" >"$work/fake.log" 2>&1 &
fake=$!
cleanup() { kill $fake 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 600); do grep -q READY "$work/fake.log" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$work/fake.log" || { echo "the fake API server did not start:" >&2; cat "$work/fake.log" >&2; exit 1; }

cat > "$work/opsctl.yaml" <<YAML
instances:
  bench:
    kubernetes: { kubeconfig: $work/kubeconfig, namespace: bench }
YAML
cat > "$work/pods.yaml" <<YAML
name: pods-bench
steps:
  - id: pods
    k8s.pods_healthy: { selector: app=web, max_restarts: 5 }
YAML
export OPSCTL_CONFIG="$work/opsctl.yaml" OPSCTL_STATE_DIR="$work/state"
"$opsctl" run "$work/pods.yaml" -i bench --output json | grep -o '"message": "[^"]*"' | head -1

times=(); rss=()
for _ in $(seq "$runs"); do
  /usr/bin/time -f "%e %M" -o "$work/time" "$opsctl" run "$work/pods.yaml" -i bench -q >/dev/null
  read -r t m < "$work/time"
  times+=("$t"); rss+=("$m")
done
python3 - "$pods" "$runs" "${times[*]}" "${rss[*]}" <<'PY'
import statistics, sys
pods, runs, times, rss = sys.argv[1], sys.argv[2], [float(t) for t in sys.argv[3].split()], [int(r) for r in sys.argv[4].split()]
print(f"k8s.pods_healthy over {pods} pods, {runs} runs: median {statistics.median(times)*1000:.0f} ms (min {min(times)*1000:.0f} ms), "
      f"peak RSS median {statistics.median(rss)/1024:.0f} MB (max {max(rss)/1024:.0f} MB)")
PY
