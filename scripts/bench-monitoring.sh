#!/usr/bin/env bash
# Redis, Prometheus and Alertmanager checked together, against each alone, in the same run
# (whole `opsctl run` processes, start-up included):
#   check:    `opsctl check` of an instance with Redis, Prometheus and Alertmanager (its host
#             checks, redis.ping + redis.info, prometheus.targets, two alertmanager.alerts):
#             the run's wall time vs its slowest backend step, in the same run (from the JSON
#             report; target: <= 1.2x), and the whole process vs the slowest backend step's
#             process alone (which also counts check's own work: host checks, its runbook)
#   parallel: redis.info + prometheus.query + alertmanager.alerts in one parallel block
#             vs the slowest of the three alone                     (target: <= 1.2x)
#   redis:    `opsctl run` of redis.info vs `redis-cli INFO`        (target: <= 2 ms more)
# The servers are Debian's redis-server, prometheus and prometheus-alertmanager on free
# loopback ports (Prometheus scraping itself, so its query has data).
#
#   scripts/bench-monitoring.sh [RUNS]      default: 40
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-40}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
for tool in hyperfine redis-server redis-cli prometheus prometheus-alertmanager; do
  command -v "$tool" >/dev/null || { echo "scripts/bench-monitoring.sh needs $tool (scripts/test.sh installs the servers; apt-get install hyperfine)" >&2; exit 1; }
done
cargo build --release --locked --bin opsctl
opsctl="$CARGO_TARGET_DIR/release/opsctl"

work=$(mktemp -d /var/tmp/opsctl-bench-monitoring.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(port); prom_port=$(port); am_port=$(port)

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
cat > "$work/prometheus.yml" <<YAML
global: { scrape_interval: 1s }
scrape_configs:
  - job_name: prometheus
    static_configs: [{ targets: ['127.0.0.1:$prom_port'] }]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
printf 'route: { receiver: nobody }\nreceivers: [{ name: nobody }]\n' > "$work/alertmanager.yml"
prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/am" --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= --log.level=warn >"$work/alertmanager.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  redis-cli -p "$redis_port" PING >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null && curl -sf "http://127.0.0.1:$am_port/-/ready" >/dev/null && break
  sleep 0.1
done
# Data for the query: a few scrapes.
for _ in $(seq 100); do curl -s "http://127.0.0.1:$prom_port/api/v1/query?query=up" | grep -q '"value"' && break; sleep 0.1; done

cat > "$work/opsctl.yaml" <<YAML
instances:
  bench:
    redis: { url: "redis://127.0.0.1:$redis_port/0" }
    prometheus: { url: "http://127.0.0.1:$prom_port" }
    alertmanager: { url: "http://127.0.0.1:$am_port" }
YAML
step_redis='redis.info: {}'
step_prom='prometheus.query: { query: "sum by (job) (rate(prometheus_http_requests_total[1m]))", on_empty: pass }'
step_am='alertmanager.alerts: {}'
step_targets='prometheus.targets: {}'
printf 'name: all\nsteps:\n  - parallel:\n      - { %s }\n      - { %s }\n      - { %s }\n' "$step_redis" "$step_prom" "$step_am" > "$work/all.yaml"
for n in redis prom am targets; do
  v="step_$n"
  printf 'name: %s\nsteps:\n  - { %s }\n' "$n" "${!v}" > "$work/$n.yaml"
done
export OPSCTL_CONFIG="$work/opsctl.yaml" OPSCTL_STATE_DIR="$work/state"
for rb in all redis prom am targets; do
  "$opsctl" run "$work/$rb.yaml" -i bench -q >/dev/null || { echo "opsctl run $rb.yaml failed:" >&2; "$opsctl" run "$work/$rb.yaml" -i bench >&2; exit 1; }
done

hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/h.json" \
  -n "all three, parallel" "$opsctl run $work/all.yaml -i bench -q" \
  -n "redis.info alone" "$opsctl run $work/redis.yaml -i bench -q" \
  -n "prometheus.query alone" "$opsctl run $work/prom.yaml -i bench -q" \
  -n "alertmanager.alerts alone" "$opsctl run $work/am.yaml -i bench -q" \
  -n "prometheus.targets alone" "$opsctl run $work/targets.yaml -i bench -q" \
  -n "opsctl check" "$opsctl check -i bench -q" \
  -n "redis-cli INFO" "redis-cli -p $redis_port INFO" >/dev/null
mkdir -p "$work/runs"
for i in $(seq "$runs"); do "$opsctl" check -i bench -o json > "$work/runs/$i.json" || true; done
python3 - "$work/runs" <<'PY'
import glob, json, statistics, sys
ratios, walls, slowest = [], [], []
for f in glob.glob(sys.argv[1] + "/*.json"):
    d = json.load(open(f))
    backend = [s["duration_ms"] for s in d["steps"] if s["kind"].split(".")[0] in ("redis", "prometheus", "alertmanager") and s["status"] != "skipped"]
    walls.append(d["duration_ms"]); slowest.append(max(backend)); ratios.append(d["duration_ms"] / max(backend))
print(f"check, in the same run: wall {statistics.median(walls):.2f} ms vs its slowest backend step {statistics.median(slowest):.2f} ms -> {statistics.median(ratios):.2f}x (median of {len(ratios)} runs; target <= 1.2x)")
PY
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = lambda n: r[n]["median"] * 1000
alone = {n: med(n) for n in ("redis.info alone", "prometheus.query alone", "alertmanager.alerts alone")}
slowest = max(alone, key=alone.get)
for n, t in r.items():
    print(f"{n:28} median {t['median']*1000:7.2f} ms  (mean {t['mean']*1000:.2f} ± {t['stddev']*1000:.2f})")
single = {n: med(n) for n in ("redis.info alone", "prometheus.targets alone", "alertmanager.alerts alone")}
worst = max(single, key=single.get)
print(f"check, whole processes: {med('opsctl check'):.2f} ms vs the slowest backend step alone ({worst}) {single[worst]:.2f} ms -> {med('opsctl check')/single[worst]:.2f}x (check's own work included)")
print(f"parallel: {med('all three, parallel'):.2f} ms vs the slowest alone ({slowest}) {alone[slowest]:.2f} ms -> {med('all three, parallel')/alone[slowest]:.2f}x (target <= 1.2x)")
print(f"redis.info vs redis-cli INFO: +{med('redis.info alone') - med('redis-cli INFO'):.2f} ms (target <= 2 ms)")
PY
