#!/usr/bin/env bash
# Brings up a local 7-node treecache cluster with its own ZooKeeper,
# installing ZooKeeper from Debian's packages first when it is missing.
# Extra arguments go to `treecache cluster` (--depth, --root-id, --base-port, --zookeeper).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/share/zookeeper/bin/zkServer.sh ]; then
  echo "ZooKeeper is not installed; installing Debian's zookeeper package"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends zookeeper
fi
cargo build --release --bin treecache
exec target/release/treecache cluster "$@"
