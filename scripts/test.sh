#!/usr/bin/env bash
# Runs every test of opsctl on this machine: installs and starts what the tests need,
# then `cargo test`. This is the README's test command and what .ci/run calls.
#
# What the tests need, by backend (each section installs and starts its own):
#   core (http, host, notify): nothing beyond Rust; the tests start their own HTTP(S)
#   server on loopback.
#   postgres: Debian's PostgreSQL server and client programs; the tests start throwaway
#   clusters themselves (initdb + pg_ctl on free loopback ports, as the postgres user).
#   compose: the Docker engine (running) and Compose (`docker compose` or `docker-compose`);
#   test images built locally from Debian's busybox-static and this machine's PostgreSQL
#   client (tests/images/build.sh; no registry is needed).
#   aws: moto's server (DynamoDB, CloudWatch, S3, Secrets Manager) in a Python venv
#   ($OPSCTL_TEST_VENV, default ~/.cache/opsctl-venv); the tests start it themselves behind
#   tests/aws/proxy.py (CloudWatch's CBOR protocol, fault injection) on loopback ports.
#   prometheus: Debian's prometheus (and prometheus-alertmanager); the tests start their own
#   on free loopback ports (the packaged services are never started).
#   redis: Debian's redis-server and redis-cli; the tests start their own servers the same way.
#   terminal tests: script(1) from util-linux.
#
# Under CI=true, a test that needs a backend that is missing fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory outside the clone keeps CI builds incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opsctl-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "scripts/test.sh: cargo is not installed (https://rustup.rs)" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "scripts/test.sh: need root (or sudo) to run: $*" >&2; return 1; fi
}
apt_install() {
  echo "== installing $* (Debian packages)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL: server programs (initdb, pg_ctl, postgres with pg_stat_statements) and
# clients (psql, pg_dump, pg_restore, pg_basebackup).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v pg_dump >/dev/null; then
  apt_install postgresql postgresql-contrib postgresql-client
fi
command -v runuser >/dev/null && command -v script >/dev/null || apt_install util-linux bsdutils
echo "== PostgreSQL $(ls -d /usr/lib/postgresql/*/ | xargs -n1 basename | sort -n | tail -1) at $(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"

# Docker Compose: the engine must be running already; the CLI and images are ours to add.
file -L /bin/busybox 2>/dev/null | grep -q "statically linked" || apt_install busybox-static file
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  apt_install docker-compose
fi
if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "== Docker $(docker version --format '{{.Server.Version}}'), $(docker compose version --short 2>/dev/null || docker-compose version --short)"
  tests/images/build.sh
else
  echo "== the Docker engine is not reachable: the compose tests will fail under CI=true" >&2
fi

# Prometheus, Alertmanager and Redis: the programs only; the tests start the servers.
if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null || ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt_install prometheus prometheus-alertmanager redis-server redis-tools
fi
echo "== $(prometheus --version 2>&1 | head -1); $(redis-server --version)"

# AWS: moto in a venv (pinned: the tests know what this version emulates and what not).
export OPSCTL_TEST_VENV="${OPSCTL_TEST_VENV:-$HOME/.cache/opsctl-venv}"
# jsonschema and PyYAML: the schema tests validate the shipped files with a validator not ours.
MOTO_PINS=("moto[server,dynamodb,cloudwatch,s3,secretsmanager,ecs,elbv2,rds,logs]==5.2.5" "cbor2==6.3.0" "jsonschema==4.26.0" "PyYAML==6.0.4")
if ! "$OPSCTL_TEST_VENV/bin/python" -c 'import moto.server, cbor2, botocore, jsonschema, yaml; assert moto.__version__ == "5.2.5"' 2>/dev/null; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3 python3-venv
  echo "== creating $OPSCTL_TEST_VENV (moto for the AWS tests)"
  rm -rf "$OPSCTL_TEST_VENV"
  python3 -m venv "$OPSCTL_TEST_VENV"
  "$OPSCTL_TEST_VENV/bin/pip" install -q --disable-pip-version-check "${MOTO_PINS[@]}"
fi
echo "== moto $("$OPSCTL_TEST_VENV/bin/python" -c 'import moto; print(moto.__version__)') in $OPSCTL_TEST_VENV"

echo "== cargo test (target dir: $CARGO_TARGET_DIR)"
cargo test --locked "$@"
