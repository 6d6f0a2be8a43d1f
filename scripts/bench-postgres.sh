#!/usr/bin/env bash
# Backup and restore of a >= 1 GB PostgreSQL database (pgbench -i -s 70), opsctl against
# the raw tools in the same run, on a throwaway cluster:
#   backup:  opsctl backup          vs  pg_dump -Fc -f FILE             (target <= 1.10x)
#   restore: opsctl postgres.restore vs  createdb + pg_restore -j 2      (target <= 1.10x)
#   memory:  opsctl's own peak RSS (VmHWM) during the backup             (target <= 64 MB)
#
#   scripts/bench-postgres.sh [SCALE] [RUNS]      defaults: 70 3
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-70}
runs=${2:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
cargo build --release --locked --bin opsctl
opsctl="$CARGO_TARGET_DIR/release/opsctl"
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d /var/tmp/opsctl-bench-pg.XXXXXX)
chown postgres:postgres "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$bin/pg_ctl" -D "$work/data" stop -m immediate >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
as_pg "$bin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
as_pg "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c max_wal_size=4GB" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=bench
"$bin/createdb" bench
echo "== pgbench -i -s $scale"
"$bin/pgbench" -q -i -s "$scale" bench >/dev/null 2>&1
echo "database size: $("$bin/psql" -XAtc "SELECT pg_size_pretty(pg_database_size('bench'))")"

mkdir -p "$work/store" "$work/raw"
cat > "$work/opsctl.yaml" <<YAML
instances:
  bench:
    postgres: { database: bench }
    backups: { dir: $work/store }
YAML
cat > "$work/restore.yaml" <<'YAML'
name: restore-bench
params:
  id: { type: string, required: true }
steps:
  - postgres.restore: { from: "{{ params.id }}", database: restored, keep_previous: false, jobs: 2 }
YAML
export OPSCTL_CONFIG="$work/opsctl.yaml" OPSCTL_STATE_DIR="$work/state"

now() { date +%s.%N; }
# Runs "$@" and prints its wall time; prints the command's own peak RSS to fd 3 when asked.
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); python3 -c "print(f'{$t1-$t0:.2f}')"; }
peak_rss_kb() { # peak RSS of one process, sampled from /proc while it runs
  "$@" >/dev/null & local pid=$! hwm=0 v
  while kill -0 $pid 2>/dev/null; do
    v=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null || true); [ -n "$v" ] && hwm=$v; sleep 0.05
  done
  wait $pid; echo "$hwm"
}

raw_dump=(); ops_dump=(); raw_restore=(); ops_restore=(); rss=()
for i in $(seq "$runs"); do
  echo "== run $i/$runs"
  raw_dump+=("$(timed "$bin/pg_dump" -Fc -f "$work/raw/dump.$i")")
  ops_dump+=("$(timed "$opsctl" backup -i bench -q)")
  id=$("$opsctl" backup list -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  "$bin/dropdb" --if-exists restored
  raw_restore+=("$(timed sh -c "'$bin/createdb' restored && '$bin/pg_restore' -j 2 -d restored '$work/raw/dump.$i'")")
  "$bin/dropdb" restored
  ops_restore+=("$(timed "$opsctl" run "$work/restore.yaml" -i bench -p id="$id" --yes -q)")
  "$bin/dropdb" restored
  rss+=("$(peak_rss_kb "$opsctl" backup -i bench -q)")
  rm -f "$work/raw/dump.$i"; rm -rf "$work/store/bench"
done
python3 - "${raw_dump[*]}" "${ops_dump[*]}" "${raw_restore[*]}" "${ops_restore[*]}" "${rss[*]}" <<'PY'
import statistics as st, sys
rd, od, rr, orr, rss = ([float(x) for x in a.split()] for a in sys.argv[1:6])
m = st.median
print(f"\nbackup:  pg_dump -Fc {m(rd):.2f}s, opsctl backup {m(od):.2f}s -> {m(od)/m(rd):.3f}x (target <= 1.10x)   runs: {rd} / {od}")
print(f"restore: pg_restore -j2 {m(rr):.2f}s, opsctl restore {m(orr):.2f}s -> {m(orr)/m(rr):.3f}x (target <= 1.10x)   runs: {rr} / {orr}")
print(f"opsctl peak RSS during backup: {max(rss)/1024:.1f} MB (target <= 64 MB)")
PY
