#!/usr/bin/env bash
# Builds the local images the Docker Compose tests use. No registry is reachable here, so
# they are made with `docker import` from files on this machine:
#   opsctl-test-busybox:1   Debian's busybox-static (sh, httpd, wget, sleep, …)
#   opsctl-test-pgclient:1  the same plus this machine's pg_dump, pg_restore and psql and
#                           the shared libraries they load (for the PostgreSQL exec transport)
#   opsctl-test-busybox:2   the same as :1 under another tag: "a good new release" for deploys
#   opsctl-test-busybox:broken  :1 without /var/www/index.html, so its web server answers
#                           404 and a healthcheck fetching / fails: "a bad release"
# Idempotent: an image that exists is kept. Needs /bin/busybox from busybox-static.
set -euo pipefail
version=1
have() { docker image inspect "$1" >/dev/null 2>&1; }
if have "opsctl-test-busybox:$version" && have "opsctl-test-pgclient:$version" && have opsctl-test-busybox:2 && have opsctl-test-busybox:broken; then exit 0; fi
if ! file -L /bin/busybox 2>/dev/null | grep -q "statically linked"; then
  echo "tests/images/build.sh: /bin/busybox must be Debian's busybox-static (apt-get install busybox-static)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rootfs="$work/busybox"
mkdir -p "$rootfs"/{bin,etc,tmp,root,var/www}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
echo '<h1>opsctl test</h1>' > "$rootfs/var/www/index.html"
if ! have "opsctl-test-busybox:$version"; then
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "opsctl-test-busybox:$version" >/dev/null
  echo "built opsctl-test-busybox:$version"
fi

have opsctl-test-busybox:2 || docker tag "opsctl-test-busybox:$version" opsctl-test-busybox:2
if ! have opsctl-test-busybox:broken; then
  rm "$rootfs/var/www/index.html"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - opsctl-test-busybox:broken >/dev/null
  echo '<h1>opsctl test</h1>' > "$rootfs/var/www/index.html"
  echo "built opsctl-test-busybox:broken"
fi

if ! have "opsctl-test-pgclient:$version"; then
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pg="$work/pgclient"
  cp -a "$rootfs" "$pg"
  mkdir -p "$pg$bin"
  for p in pg_dump pg_restore psql; do
    cp "$bin/$p" "$pg$bin/$p"
    # Every shared library the program loads, at the same path, and the loader.
    for lib in $(ldd "$bin/$p" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
      mkdir -p "$pg$(dirname "$lib")"
      cp -L "$lib" "$pg$lib"
    done
  done
  tar -C "$pg" -c . | docker import -c 'CMD ["/bin/sh"]' -c "ENV PATH=$bin:/bin" - "opsctl-test-pgclient:$version" >/dev/null
  echo "built opsctl-test-pgclient:$version"
fi
