#!/usr/bin/env bash
# Every benchmark in one go, on this machine, and BENCHMARKS.md rewritten with the figures:
# the date, the machine, the versions, each comparison's output (medians and spread), and a
# summary of every figure against its target — met or missed.
#
#   scripts/bench.sh                 every benchmark (long: the PostgreSQL one makes 1 GB)
#   scripts/bench.sh --quick         small sizes (PostgreSQL scale 7, 10,000 DynamoDB items and log events), the
#                                    fleet (500 instances) and history (1,000,000 records) at full size
#   scripts/bench.sh http fleet      only these (names below); the others' figures in BENCHMARKS.md are kept
#
# Each script builds what it needs in release mode and installs its peer tools (hyperfine,
# curl, the AWS CLI in a venv of its own) when missing; moto comes from scripts/test.sh's venv.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=false
only=()
for a in "$@"; do
  case "$a" in
    --quick) quick=true ;;
    *) only+=("$a") ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
# name | command | what it compares
if $quick; then
  list=(
    "http|scripts/bench-http.sh|200 HTTP checks (--parallel 50, 20 ms each) vs a curl loop, curl -Z and xargs -P"
    "fleet|scripts/bench-fleet.sh 500 5|check --all over 500 instances vs one instance alone; peak RSS"
    "history|scripts/bench-history.sh 1000000|history --limit 20 over 1,000,000 records"
    "validate|scripts/bench-validate.sh|validate every shipped runbook"
    "engine|cargo bench --bench engine|engine overhead per step"
    "postgres|scripts/bench-postgres.sh 7|backup/restore vs pg_dump/pg_restore (scale 7)"
    "aws|scripts/bench-aws.sh 10000|DynamoDB export vs aws dynamodb scan: CPU, RSS"
    "aws-platform|scripts/bench-aws-platform.sh 10 10000|ecs.services vs the AWS CLI; cloudwatch.logs RSS"
    "k8s|scripts/bench-k8s.sh 5000|pods check over 5,000 pods (fake API server); RSS"
    "compose|scripts/bench-compose.sh|Compose services check vs docker compose ps and docker ps"
    "monitoring|scripts/bench-monitoring.sh 20|Redis, Prometheus, Alertmanager checks vs their CLIs"
  )
else
  list=(
    "http|scripts/bench-http.sh|200 HTTP checks (--parallel 50, 20 ms each) vs a curl loop, curl -Z and xargs -P"
    "fleet|scripts/bench-fleet.sh 500 10|check --all over 500 instances vs one instance alone; peak RSS"
    "history|scripts/bench-history.sh 1000000|history --limit 20 over 1,000,000 records"
    "validate|scripts/bench-validate.sh|validate every shipped runbook"
    "engine|cargo bench --bench engine|engine overhead per step"
    "postgres|scripts/bench-postgres.sh|backup/restore of >= 1 GB vs pg_dump/pg_restore"
    "aws|scripts/bench-aws.sh|DynamoDB export of 100,000 items vs aws dynamodb scan: CPU, RSS"
    "aws-platform|scripts/bench-aws-platform.sh|ecs.services vs the AWS CLI; cloudwatch.logs RSS"
    "k8s|scripts/bench-k8s.sh|pods check over 5,000 pods (fake API server); RSS"
    "compose|scripts/bench-compose.sh|Compose services check vs docker compose ps and docker ps"
    "monitoring|scripts/bench-monitoring.sh|Redis, Prometheus, Alertmanager checks vs their CLIs"
  )
fi
logs=$(mktemp -d)
version() { "$@" 2>/dev/null | head -1 || echo "not installed"; }
cargo build --release --locked --bin opsctl >/dev/null 2>&1
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh$([ $# -gt 0 ] && printf ' %s' "$@")\` — do not edit by hand; run it again."
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
  echo "- opsctl: $(version "$CARGO_TARGET_DIR/release/opsctl" --version) ($(git rev-parse --short HEAD 2>/dev/null)), $(version rustc --version)"
  echo "- peers: $(version curl --version | cut -d' ' -f1-2); $(version psql --version); $(version redis-server --version | cut -d' ' -f1-3); $(version prometheus --version | cut -d' ' -f1-3); $(version docker --version); $(version hyperfine --version)"
  echo
} >"$logs/head.md"
summary="$logs/summary.md"
printf '| benchmark | figure | target |\n|---|---|---|\n' >"$summary"
details="$logs/details.md"
: >"$details"
for entry in "${list[@]}"; do
  IFS='|' read -r name cmd what <<<"$entry"
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then continue; fi
  echo "== $name: $cmd" >&2
  start=$(date +%s)
  if bash -c "$cmd" >"$logs/$name.log" 2>&1; then status=ok; else status="FAILED (exit $?)"; fi
  took=$(( $(date +%s) - start ))
  # Every line that states a target is a figure of the summary.
  grep -E 'target [<>]=' "$logs/$name.log" | while IFS= read -r line; do
    verdict="stated"
    if grep -qE 'NOT met' <<<"$line"; then verdict="**missed**"; elif grep -qE ': met\b' <<<"$line"; then verdict="met"; fi
    printf '| %s | %s | %s |\n' "$name" "$(sed 's/|/\\|/g' <<<"$line")" "$verdict" >>"$summary"
  done
  [ "$status" = ok ] || printf '| %s | the benchmark did not finish: %s | **missed** |\n' "$name" "$status" >>"$summary"
  {
    echo "## $name — $what"
    echo
    echo "\`$cmd\` — $status, ${took}s"
    echo
    echo '```text'
    grep -vE '^\s+(Compiling|Downloaded|Downloading|Finished|Running|Blocking)' "$logs/$name.log" | grep -v '^$' | tail -60
    echo '```'
    echo
  } >>"$details"
done
{
  cat "$logs/head.md"
  echo "## Summary"
  echo
  echo "Each line a benchmark printed with its target: \"met\" or **missed** as the benchmark judged it, \"stated\" where the line gives a figure and its target for the reader to compare (the full output is below)."
  echo
  cat "$summary"
  echo
  cat "$details"
} >"$logs/new.md"
if [ ${#only[@]} -gt 0 ] && [ -f BENCHMARKS.md ]; then
  # Some benchmarks only: theirs replace their rows and sections; the others' are kept.
  python3 - BENCHMARKS.md "$logs/new.md" "${only[@]}" <<'PY'
import re, sys
old, new, names = open(sys.argv[1]).read(), open(sys.argv[2]).read(), set(sys.argv[3:])
def parts(text):
    head, _, rest = text.partition("## Summary\n")
    summary, _, details = rest.partition("\n## ")
    rows = [l for l in summary.splitlines() if l.startswith("| ") and not l.startswith("| benchmark") ]
    sections = {}
    for sec in ("## " + details).split("\n## "):
        sec = sec if sec.startswith("## ") else "## " + sec
        name = sec[3:].split(" ", 1)[0]
        if name:
            sections[name] = sec.rstrip() + "\n"
    return head, summary, rows, sections
_, _, old_rows, old_secs = parts(old)
head, summary, new_rows, new_secs = parts(new)
rows = [r for r in old_rows if r.split("|")[1].strip() not in names] + new_rows
secs = {**{k: v for k, v in old_secs.items() if k not in names}, **new_secs}
intro = summary.split("| benchmark")[0]
out = head + "## Summary\n" + intro + "| benchmark | figure | target |\n|---|---|---|\n" + "\n".join(rows) + "\n\n" + "\n".join(secs.values())
open(sys.argv[1], "w").write(out)
PY
else
  cp "$logs/new.md" BENCHMARKS.md
fi
rm -rf "$logs"
echo "wrote BENCHMARKS.md" >&2
