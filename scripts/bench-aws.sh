#!/usr/bin/env bash
# DynamoDB export of N items (default 100,000), opsctl against `aws dynamodb scan` (awscli
# from PyPI) writing JSON, in the same run against the same moto server:
#   time:    opsctl dynamodb.export (parallel segments)  vs  aws dynamodb scan > FILE   (target >= 3x)
#   memory:  opsctl's peak RSS, at N and at N/10 items                                  (target <= 64 MB)
#
#   scripts/bench-aws.sh [ITEMS] [RUNS] [SEGMENTS]      defaults: 100000 3 4
#
# moto comes from the test venv (scripts/test.sh makes it); awscli goes into a venv of its
# own (~/.cache/opsctl-awscli-venv), since it pins its own botocore.
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-100000}
runs=${2:-3}
segments=${3:-4}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
venv="${OPSCTL_TEST_VENV:-$HOME/.cache/opsctl-venv}"
cli_venv="$HOME/.cache/opsctl-awscli-venv"
"$venv/bin/python" -c 'import moto.server, boto3' || { echo "no moto venv at $venv: run scripts/test.sh first" >&2; exit 1; }
if [ ! -x "$cli_venv/bin/aws" ]; then
  python3 -m venv "$cli_venv"
  "$cli_venv/bin/pip" install -q --disable-pip-version-check awscli
fi
cargo build --release --locked --bin opsctl
opsctl="$CARGO_TARGET_DIR/release/opsctl"

work=$(mktemp -d /var/tmp/opsctl-bench-aws.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
cleanup() { kill $moto 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
endpoint="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -s -o /dev/null "$endpoint" && break; sleep 0.1; done

load() { # table, items: ~200-byte items with a few types
  "$venv/bin/python" - "$endpoint" "$1" "$2" <<'PY'
import sys, boto3
endpoint, table, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ddb = boto3.resource("dynamodb", endpoint_url=endpoint)
t = ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
with t.batch_writer() as w:
    for i in range(n):
        w.put_item(Item={"id": f"user-{i:08d}", "n": i, "name": f"User number {i}", "email": f"user{i}@example.com",
                         "active": i % 3 == 0, "tags": {"a", "b"}, "profile": {"plan": "pro", "score": i % 97}})
PY
}
echo "== loading $items items (and $((items / 10)) for the memory comparison) into moto"
load bench "$items"
load bench_small "$((items / 10))"

cat > "$work/opsctl.yaml" <<YAML
instances:
  bench:
    aws: { region: us-east-1, endpoint_url: "$endpoint" }
    backups: { dir: $work/store }
YAML
cat > "$work/export.yaml" <<YAML
name: export-bench
params:
  table: { type: string, default: bench }
steps:
  - dynamodb.export: { table: "{{ params.table }}", segments: $segments }
YAML
export OPSCTL_CONFIG="$work/opsctl.yaml" OPSCTL_STATE_DIR="$work/state"

# "seconds max-rss-kb client-cpu-seconds server-cpu-seconds" of one command: wall time, the
# client's peak RSS and CPU (user + sys), and the CPU moto spent meanwhile (from /proc).
tck=$(getconf CLK_TCK)
moto_cpu() { awk -v t="$tck" '{printf "%.2f", ($14 + $15) / t}' "/proc/$moto/stat"; }
measure() {
  local before after
  before=$(moto_cpu)
  /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" >/dev/null
  after=$(moto_cpu)
  awk -v b="$before" -v a="$after" '{printf "%s %s %.2f %.2f\n", $1, $2, $3 + $4, a - b}' "$work/time"
}

ops=(); cli=(); rss=()
for i in $(seq "$runs"); do
  read -r t m oc os < <(measure "$opsctl" run "$work/export.yaml" -i bench -q)
  ops+=("$t"); rss+=("$m")
  read -r t _ cc cs < <(measure sh -c "'$cli_venv/bin/aws' dynamodb scan --table-name bench --endpoint-url '$endpoint' --output json > '$work/scan.json'")
  cli+=("$t")
  echo "run $i: opsctl ${ops[-1]}s (peak RSS $((rss[-1] / 1024)) MB, CPU ${oc}s; moto CPU meanwhile ${os}s)," \
       "aws dynamodb scan ${cli[-1]}s (CPU ${cc}s; moto CPU meanwhile ${cs}s)"
done
read -r _ small _ _ < <(measure "$opsctl" run "$work/export.yaml" -i bench -p table=bench_small -q)
lines=$(find "$work/store" -name items.jsonl -exec wc -l {} + | awk '$2 != "total" {print $1}' | sort -n | tail -1)
scanned=$("$venv/bin/python" -c "import json; print(json.load(open('$work/scan.json'))['Count'])")

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
o=$(median "${ops[@]}"); c=$(median "${cli[@]}"); r=$(median "${rss[@]}")
echo
echo "items: opsctl exported $lines, aws scanned $scanned"
echo "export of $items items, median of $runs: opsctl ${o}s ($segments segments), aws dynamodb scan ${c}s — $(python3 -c "print(f'{$c/$o:.1f}')")x faster"
echo "opsctl peak RSS: $((r / 1024)) MB at $items items, $((small / 1024)) MB at $((items / 10)) items"
