#!/usr/bin/env bash
# The AWS platform's checks against moto, side by side with the AWS CLI in the same run:
#   ecs:   `opsctl run` of ecs.services over a 50-service cluster (DescribeServices ten a
#          call, the cluster's stopped tasks once)  vs  one `aws ecs describe-services` call
#          (ten services, the API's limit)                                  (target <= 1.5x)
#   logs:  cloudwatch.logs over 100,000 events: opsctl's peak RSS, against 10,000 events
#          (flat memory; target <= 64 MB)
#
#   scripts/bench-aws-platform.sh [RUNS] [EVENTS]      defaults: 20 100000
#
# moto comes from the test venv (scripts/test.sh makes it); awscli goes into a venv of its
# own (~/.cache/opsctl-awscli-venv), since it pins its own botocore.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
events=${2:-100000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
venv="${OPSCTL_TEST_VENV:-$HOME/.cache/opsctl-venv}"
cli_venv="$HOME/.cache/opsctl-awscli-venv"
"$venv/bin/python" -c 'import moto.server, boto3' || { echo "no moto venv at $venv: run scripts/test.sh first" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "scripts/bench-aws-platform.sh needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
if [ ! -x "$cli_venv/bin/aws" ]; then
  python3 -m venv "$cli_venv"
  "$cli_venv/bin/pip" install -q --disable-pip-version-check awscli
fi
cargo build --release --locked --bin opsctl
opsctl="$CARGO_TARGET_DIR/release/opsctl"

work=$(mktemp -d /var/tmp/opsctl-bench-aws-platform.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
cleanup() { kill $moto 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
endpoint="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -s -o /dev/null "$endpoint" && break; sleep 0.1; done

echo "== a 50-service cluster, and log groups of $events and $((events / 10)) events"
"$venv/bin/python" - "$endpoint" "$events" <<'PY'
import sys, time, boto3
endpoint, n = sys.argv[1], int(sys.argv[2])
ecs = boto3.client("ecs", endpoint_url=endpoint)
ecs.create_cluster(clusterName="bench")
ecs.register_task_definition(family="svc", containerDefinitions=[{"name": "app", "image": "app:1", "memory": 128}])
for i in range(50):
    ecs.create_service(cluster="bench", serviceName=f"svc-{i:02d}", taskDefinition="svc:1", desiredCount=2)
logs = boto3.client("logs", endpoint_url=endpoint)
now = int(time.time() * 1000)
for group, count in (("/bench/big", n), ("/bench/small", n // 10)):
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="app")
    for start in range(0, count, 10000):
        batch = [{"timestamp": now - 600000 + i, "message": f"{'ERROR' if i % 10 == 0 else 'INFO'} request {i} served in {i % 500} ms by worker {i % 16} for tenant team-{i % 7}"}
                 for i in range(start, min(count, start + 10000))]
        logs.put_log_events(logGroupName=group, logStreamName="app", logEvents=batch)
PY

cat > "$work/opsctl.yaml" <<YAML
instances:
  bench:
    aws: { region: us-east-1, endpoint_url: "$endpoint" }
YAML
export OPSCTL_CONFIG="$work/opsctl.yaml" OPSCTL_STATE_DIR="$work/state"
printf 'name: ecs\nsteps:\n  - { ecs.services: { cluster: bench, on_rollout: pass } }\n' > "$work/ecs.yaml"
for g in big small; do
  printf 'name: logs\nsteps:\n  - { cloudwatch.logs: { groups: [/bench/%s], pattern: ERROR, fail_above: 100000000, max_events: 1000000 } }\n' "$g" > "$work/logs-$g.yaml"
done
"$opsctl" run "$work/ecs.yaml" -i bench >"$work/ecs.out" 2>&1 || { cat "$work/ecs.out" >&2; exit 1; }
tail -2 "$work/ecs.out"

ten=$(printf 'svc-%02d ' $(seq 0 9))
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/h.json" \
  -n "opsctl ecs.services (50 services)" "$opsctl run $work/ecs.yaml -i bench -q" \
  -n "aws ecs describe-services (10 services, one call)" "$cli_venv/bin/aws --endpoint-url $endpoint ecs describe-services --cluster bench --services $ten" >/dev/null
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
for n, t in r.items():
    print(f"{n:52} median {t:8.1f} ms")
o, c = r["opsctl ecs.services (50 services)"], r["aws ecs describe-services (10 services, one call)"]
print(f"ecs: opsctl over 50 services / one CLI call = {o / c:.2f}x (target <= 1.5x)")
PY

for g in big small; do
  /usr/bin/time -f "%e %M" -o "$work/time-$g" "$opsctl" run "$work/logs-$g.yaml" -i bench -o json >"$work/logs-$g.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); s=d['steps'][0]; print(sys.argv[2], s['outputs']['lines'], 'events read,', s['outputs']['matches'], 'matched')" "$work/logs-$g.json" "$g:"
done
read -r tb mb < "$work/time-big"; read -r ts ms < "$work/time-small"
echo "logs: peak RSS $((mb / 1024)) MB over $events events (${tb}s), $((ms / 1024)) MB over $((events / 10)) events (${ts}s) (target <= 64 MB, flat)"
