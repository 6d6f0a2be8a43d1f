#!/usr/bin/env bash
# The way it is done today: a bash loop of curl, one health check after another.
#   scripts/bench-curl-loop.sh URL COUNT
set -u
url=$1
count=${2:-200}
failed=0
for _ in $(seq "$count"); do
  body=$(curl -sS --max-time 10 -w '\n%{http_code}' "$url") || { failed=$((failed + 1)); continue; }
  code=${body##*$'\n'}
  [ "$code" = 200 ] || failed=$((failed + 1))
  case "$body" in *'"status":"healthy"'*) ;; *) failed=$((failed + 1)) ;; esac
done
[ "$failed" -eq 0 ]
