#!/usr/bin/env bash
# `opsctl history` at fleet scale: a history of RECORDS runs (default 1,000,000; each a real
# `check` record of this machine, ~1.5 KB, with its own run id, instance and time), laid out
# as opsctl lays it out — sealed 64 MiB segments in history.d/ and a live segment — then
#   opsctl history --limit 20            (target <= 50 ms)
#   opsctl history --limit 20 -o json
#   opsctl history --limit 20 --instance team-0042   (a filter: reads back until 20 match)
# timed with hyperfine. The generated history is deleted afterwards.
#
#   scripts/bench-history.sh [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
command -v hyperfine >/dev/null || { echo "scripts/bench-history.sh needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
cargo build --release --locked --bin opsctl
opsctl="$CARGO_TARGET_DIR/release/opsctl"

work=$(mktemp -d /var/tmp/opsctl-bench-history.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OPSCTL_STATE_DIR="$work/state"
# One real record to copy: a check of this machine.
"$opsctl" check -i localhost >/dev/null || true
printf 'history: { keep_days: 3650, max_bytes: 8GiB }\ninstances: {}\n' >"$work/opsctl.yaml"
export OPSCTL_CONFIG="$work/opsctl.yaml"

echo "== writing $records records"
python3 - "$OPSCTL_STATE_DIR" "$records" <<'PY'
import json, os, sys, datetime
state, n = sys.argv[1], int(sys.argv[2])
live = os.path.join(state, "history.jsonl")
template = json.loads(open(live).readline())
os.remove(live)
sealed = os.path.join(state, "history.d")
os.makedirs(sealed, exist_ok=True)
segment = 64 * 1024 * 1024
t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
out, size, seq = open(live + ".tmp", "w"), 0, 0
def seal():
    global out, size, seq
    out.close()
    os.rename(live + ".tmp", os.path.join(sealed, f"20260101T000000.{seq:09d}Z-1.jsonl"))
    seq += 1
    out, size = open(live + ".tmp", "w"), 0
for i in range(n):
    t = (t0 + datetime.timedelta(seconds=30 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
    template["run_id"] = f"2026{i:012d}"
    template["instance"] = f"team-{i % 500:04d}"
    template["started_at"] = template["finished_at"] = t
    line = json.dumps(template, separators=(",", ":")) + "\n"
    out.write(line)
    size += len(line)
    if size >= segment:
        seal()
out.close()
os.rename(live + ".tmp", live)
PY
du -sh "$OPSCTL_STATE_DIR" | sed 's/^/history on disk: /'
ls "$OPSCTL_STATE_DIR/history.d" | wc -l | sed 's/^/sealed segments: /'
"$opsctl" history --limit 3

hyperfine -N --warmup 3 --runs 30 --export-markdown "$work/history.md" --export-json "$work/history.json" \
  "$opsctl history --limit 20" \
  "$opsctl history --limit 20 -o json" \
  "$opsctl history --limit 20 --instance team-0042"
cat "$work/history.md"
python3 - "$work/history.json" "$records" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"history --limit 20 over {int(sys.argv[2]):,} records: median {r['median']*1000:.1f} ms (min {r['min']*1000:.1f}, max {r['max']*1000:.1f}) (target <= 50 ms: {'met' if r['median'] <= 0.050 else 'NOT met'})")
PY
/usr/bin/time -f "peak RSS of history --limit 20: %M KB" "$opsctl" history --limit 20 >/dev/null
