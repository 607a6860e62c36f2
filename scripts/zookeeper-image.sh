#!/usr/bin/env bash
# Builds a ZooKeeper image on this machine, without any registry: a minimal
# Debian (debootstrap --variant=minbase, the suite of this machine, from its
# apt mirror) with the suite's headless JRE and ZooKeeper, imported with
# `docker import`. Its entry point (deploy/zookeeper/entrypoint.sh) takes the
# settings of the official `zookeeper` image (ZOO_MY_ID, ZOO_SERVERS, ...),
# the client port is 2181, the data in /data, and `zkServer.sh status` (on
# the PATH, as in the official image) works as a health check. So that
#
#   ZOOKEEPER_IMAGE=treecache-zookeeper:local docker compose up -d
#   ZOOKEEPER_IMAGE=treecache-zookeeper:local vagrant up
#
# run where `zookeeper:3.9` cannot be pulled.
#
#   scripts/zookeeper-image.sh [TAG]        (default TAG: treecache-zookeeper:local)
#
# The image is also tagged treecache-zookeeper:<hash of its inputs>: when that
# tag is present the build is skipped, so the first run takes a minute or two
# and later ones a second. ZOOKEEPER_IMAGE_REBUILD=1 builds anew. Before it is
# tagged, the new image is started once and must answer `ruok` and
# `zkServer.sh status`. Needs root, debootstrap and docker
# (scripts/install-deps.sh). Prints the tag on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 1 ] || [[ ${1:-} == -* ]]; then
  echo "usage: $0 [TAG]" >&2
  exit 2
fi
tag=${1:-treecache-zookeeper:local}
repository=treecache-zookeeper

# The suite of this machine and the apt mirror it uses.
# shellcheck source=/dev/null
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$suite" ] || { echo "zookeeper-image: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  if [ ! -f "$f" ] || [ -n "$mirror" ]; then continue; fi
  # deb822: the URIs of the stanza whose Suites has $suite.
  mirror=$(awk -v suite="$suite" '
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = uri }
    /^$/ { uri = "" }
    END { if (found) print found }' "$f")
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  if [ ! -f "$f" ] || [ -n "$mirror" ]; then continue; fi
  # one-line entries: deb URI SUITE COMPONENTS
  mirror=$(awk -v suite="$suite" '$1 == "deb" && $2 !~ /^\[/ && $3 == suite { print $2; exit }' "$f")
done
mirror=${mirror:-http://deb.debian.org/debian}

# What goes into the image, on top of minbase. Debian's zookeeper package
# depends on the full (graphical) default-jre; the image takes the headless
# JRE, the ZooKeeper libraries, and the scripts of the zookeeper package
# unpacked without its dependencies.
packages=openjdk-17-jre-headless,libzookeeper-java
inputs=(scripts/zookeeper-image.sh deploy/zookeeper/entrypoint.sh deploy/zookeeper/zkEnv.sh)
hash=$( { cat "${inputs[@]}"; echo "$suite $packages"; } | sha256sum | cut -c1-16)
cached=$repository:$hash

if [ "${ZOOKEEPER_IMAGE_REBUILD:-0}" != 1 ] && docker image inspect "$cached" >/dev/null 2>&1; then
  [ "$tag" = "$cached" ] || docker tag "$cached" "$tag"
  echo "zookeeper-image: $cached is already built (inputs unchanged); tagged $tag"
  echo "$tag"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "zookeeper-image: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null ||
  { echo "zookeeper-image: debootstrap is missing; run scripts/install-deps.sh" >&2; exit 1; }

started=$SECONDS
work=$(mktemp -d /var/tmp/zookeeper-image.XXXXXX)
probe=""
cleanup() {
  [ -z "$probe" ] || docker rm -f "$probe" >/dev/null 2>&1
  # debootstrap mounts /proc and /sys in the tree while it configures; a
  # failed run can leave them mounted.
  for m in proc sys dev/pts; do
    mountpoint -q "$work/root/$m" 2>/dev/null && umount -l "$work/root/$m"
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "zookeeper-image: debootstrap $suite (minbase + $packages) from $mirror"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" \
  >"$work/debootstrap.log" 2>&1; then
  tail -30 "$work/debootstrap.log" >&2
  [ -f "$work/root/debootstrap/debootstrap.log" ] && tail -30 "$work/root/debootstrap/debootstrap.log" >&2
  echo "zookeeper-image: debootstrap failed" >&2
  exit 1
fi
root=$work/root

# The zookeeper package of the same version as its libraries, unpacked.
# shellcheck disable=SC2016 # dpkg-query's own format
version=$(chroot "$root" dpkg-query -W -f '${Version}' libzookeeper-java)
chroot "$root" sh -c "cd /tmp && apt-get download -qq zookeeper=$version" ||
  { echo "zookeeper-image: could not download zookeeper $version" >&2; exit 1; }
dpkg-deb -x "$root"/tmp/zookeeper_*.deb "$root"
rm -f "$root"/tmp/zookeeper_*.deb

# What its maintainer scripts would do, and what the entry point needs.
chroot "$root" groupadd --system zookeeper
chroot "$root" useradd --system --gid zookeeper --home-dir /data --no-create-home \
  --shell /usr/sbin/nologin zookeeper
mkdir -p "$root/usr/share/zookeeper/conf"
cp "$root/etc/zookeeper/conf_example/log4j.properties" "$root/usr/share/zookeeper/conf/"
rm -f "$root/usr/share/zookeeper/bin/zkEnv.sh" "$root/usr/bin/zooinspector"
rm -rf "$root/usr/share/zookeeper/zooinspector" "$root/etc/zookeeper/zooinspector"
install -m 0644 deploy/zookeeper/zkEnv.sh "$root/usr/share/zookeeper/bin/zkEnv.sh"
install -m 0755 deploy/zookeeper/entrypoint.sh "$root/docker-entrypoint.sh"
for d in conf data datalog logs; do
  install -d -o 0 -g 0 "$root/$d"
done

# Smaller: no package caches or lists, no documentation but the copyrights.
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/lib/apt/lists/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/tmp/* "$root"/debootstrap
find "$root/usr/share/doc" -type f ! -name copyright -delete
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"

echo "zookeeper-image: importing"
new=$repository:build-$$
tar --numeric-owner -C "$root" -c . |
  docker import \
    --change 'ENV PATH=/usr/share/zookeeper/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV ZOO_CONF_DIR=/conf ZOO_DATA_DIR=/data ZOO_DATA_LOG_DIR=/datalog ZOO_LOG_DIR=/logs' \
    --change 'EXPOSE 2181 2888 3888 8080' \
    --change 'VOLUME ["/data", "/datalog", "/logs"]' \
    --change 'WORKDIR /' \
    --change 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
    --change 'CMD ["zkServer.sh", "start-foreground"]' \
    --change "LABEL org.opencontainers.image.title=treecache-zookeeper treecache.zookeeper.inputs=$hash treecache.zookeeper.version=$version" \
    - "$new" >/dev/null

# The new image must serve before it is tagged. Its anonymous volumes go
# with the container (rm -v).
echo "zookeeper-image: checking $new"
probe=zookeeper-image-check-$$
docker run -d --name "$probe" --network none "$new" >/dev/null
ok=false
for _ in $(seq 1 60); do
  if [ "$(docker exec "$probe" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181; echo ruok >&3; head -c 4 <&3' 2>/dev/null)" = imok ] &&
    docker exec "$probe" zkServer.sh status >/dev/null 2>&1; then
    ok=true
    break
  fi
  sleep 0.5
done
if ! $ok; then
  docker logs --tail 30 "$probe" >&2
  docker rm -fv "$probe" >/dev/null
  probe=""
  docker rmi "$new" >/dev/null
  echo "zookeeper-image: the new image does not answer ruok and zkServer.sh status" >&2
  exit 1
fi
docker rm -fv "$probe" >/dev/null
probe=""
docker tag "$new" "$cached"
[ "$tag" = "$cached" ] || docker tag "$new" "$tag"
docker rmi "$new" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$cached")
echo "zookeeper-image: built $cached (ZooKeeper $version, $(( (size + 524288) / 1048576 )) MiB) in $((SECONDS - started))s; tagged $tag"
echo "$tag"
