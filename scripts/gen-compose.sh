#!/usr/bin/env bash
# Prints a Docker Compose file for a treecache cluster of the given depth:
# ZooKeeper plus NODE-1 .. NODE-N (N = 2^DEPTH - 1) on the private network
# 10.0.1.0/24, node i at 10.0.1.(10+i), published on 127.0.0.1:(5000+i), and
# one standby of the root NODE-r, NODE-r-standby at 10.0.1.10, published on
# 127.0.0.1:(5000+N+1), as `treecache cluster` publishes its first standby.
# The nodes share a cluster key that a one-off service makes on the first
# start, in a volume of its own.
#
#   scripts/gen-compose.sh DEPTH [ROOT_ID] > docker-compose.yml
#
# With --ensemble, prints instead the file to combine with that one for a
# three-server ZooKeeper ensemble: zookeeper-1 .. zookeeper-3 at 10.0.1.2 ..
# 10.0.1.4 in place of the single server, and every node pointed at all three.
#
#   scripts/gen-compose.sh --ensemble DEPTH > docker-compose.ensemble.yml
#
# The committed docker-compose.yml is the output of `scripts/gen-compose.sh 3`,
# docker-compose.ensemble.yml that of `scripts/gen-compose.sh --ensemble 3`
# (scripts/check-deploy-files.sh checks both), and docker-compose.depth4.yml
# that of `scripts/gen-compose.sh 4` (15 nodes and the standby; CI runs the
# depth-3 file for real, which takes half the containers).
#
# Root shards: with --root-shards K (or ROOT_SHARDS=K in the environment; 1
# by default), every node is given ROOT_SHARDS K, and each shard s of 1 ..
# K-1 gets a root group of its own, two processes with the root's id and
# SHARD s: NODE-r-shard-s and its standby NODE-r-shard-s-standby, at
# 10.0.1.(11 + N + 2(s-1)) and the address after it, published on
# 127.0.0.1:(5000 + N + 2s) and the port after it, each with a data volume.
# Give the same K to the --ensemble file. With K = 1 the output is the one
# without shards.
#
#   ROOT_SHARDS=3 scripts/gen-compose.sh 3 > docker-compose.shards.yml
set -euo pipefail

usage() {
  echo "usage: $0 [--root-shards K] DEPTH [ROOT_ID]   (DEPTH 1..7, ROOT_ID 1..2^DEPTH-1, default 1;" >&2
  echo "                                               K 1..64, default ROOT_SHARDS or 1)" >&2
  echo "       $0 [--root-shards K] --ensemble DEPTH" >&2
  exit 2
}

ensemble=false
shards=${ROOT_SHARDS:-1}
while [ $# -gt 0 ]; do
  case $1 in
    --ensemble) ensemble=true ;;
    --root-shards)
      [ $# -ge 2 ] || usage
      shards=$2
      shift
      ;;
    --root-shards=*) shards=${1#--root-shards=} ;;
    *) break ;;
  esac
  shift
done
if $ensemble; then
  [ $# -eq 1 ] || usage
fi
[[ $shards =~ ^[0-9]+$ ]] || usage
{ [ "$shards" -ge 1 ] && [ "$shards" -le 64 ]; } || usage
{ [ $# -ge 1 ] && [ $# -le 2 ]; } || usage
depth=$1
root=${2:-1}
[[ $depth =~ ^[0-9]+$ && $root =~ ^[0-9]+$ ]] || usage
# 2^7 - 1 = 127 nodes is the most that fits the /24 and its address plan.
{ [ "$depth" -ge 1 ] && [ "$depth" -le 7 ]; } || usage
count=$(( (1 << depth) - 1 ))
{ [ "$root" -ge 1 ] && [ "$root" -le "$count" ]; } || usage
# The shards' root groups take the addresses after the nodes'.
last_address=$((11 + count + 2 * (shards - 1) - 1))
if [ "$last_address" -gt 254 ]; then
  echo "$0: $((shards - 1)) shard root groups do not fit the /24 beside $count nodes (at most $(((254 - 10 - count) / 2 + 1)) root shards at depth $depth)" >&2
  exit 2
fi
shards_flag=""
[ "$shards" -eq 1 ] || shards_flag="--root-shards $shards "
# The shards s = 1 .. K-1 of their own root groups, and how the nodes are
# told K (nothing with one shard, the nodes' default).
shard_ids=$(seq 1 $((shards - 1)))
shards_env=""
if [ "$shards" -gt 1 ]; then
  shards_env=$'
'"      ROOT_SHARDS: \"$shards\""
fi

# How the file's comments tell to run it: docker-compose.yml (depth 3, root
# 1) is Compose's default file; the depth-4 file committed beside it is
# docker-compose.depth4.yml; any other is named with -f.
file_line=""
generated="$shards_flag$depth${2:+ $root}"
case "$generated" in
  3) dc="docker compose" ;;
  4)
    dc="docker compose -f docker-compose.depth4.yml"
    file_line=$'\n# Written to docker-compose.depth4.yml (the committed file is that output).'
    ;;
  *)
    dc="docker compose -f FILE"
    file_line=$'\n# Write it to a file of your choice, FILE below.'
    ;;
esac

# With root shards, the file says where their root groups answer.
shards_line=""
if [ "$shards" -gt 1 ]; then
  shards_line=$'\n'"#"$'\n'"# Root shards: $shards. The root group of shard s (1 .. $((shards - 1))) is NODE-$root-shard-s,"
  shards_line+=$'\n'"# on http://127.0.0.1:($((5000 + count)) + 2s), and its standby NODE-$root-shard-s-standby on"
  shards_line+=$'\n'"# the port after it."
fi

# The healthcheck of a ZooKeeper server: `zkServer.sh status` succeeds once
# the server serves (in an ensemble: once it leads or follows in a quorum).
healthcheck='    healthcheck:
      test: ["CMD", "zkServer.sh", "status"]
      interval: 2s
      timeout: 5s
      retries: 30'

if $ensemble; then
  servers=(1 2 3)
  zoo_servers=""
  connect=""
  for i in "${servers[@]}"; do
    zoo_servers+="${zoo_servers:+ }server.$i=zookeeper-$i:2888:3888;2181"
    connect+="${connect:+,}zookeeper-$i:2181"
  done
  cat <<EOF
# A three-server ZooKeeper ensemble for the depth-$depth cluster of docker-compose.yml:
# zookeeper-1 .. zookeeper-3 in place of its single server, and NODE-1 ..
# NODE-$count pointed at all three.
# Generated by \`scripts/gen-compose.sh ${shards_flag}--ensemble $depth\`; change the generator, not this file.
#
#   docker compose -f docker-compose.yml -f docker-compose.ensemble.yml up -d --build
#   docker compose -f docker-compose.yml -f docker-compose.ensemble.yml stop zookeeper-2
#   docker compose -f docker-compose.yml -f docker-compose.ensemble.yml down
#
# The nodes start once every server is healthy (in a quorum); with one server
# stopped they go on serving, joining and registering. The single server and
# the nodes' wait for it are dropped with the merge tag \`!reset\`, which
# needs Compose v2.24 or later.

services:
  zookeeper: !reset null
EOF
  for i in "${servers[@]}"; do
    cat <<EOF

  zookeeper-$i:
    image: \${ZOOKEEPER_IMAGE:-zookeeper:3.9}
    container_name: zookeeper-$i
    restart: unless-stopped
    hostname: zookeeper-$i
    environment:
      ZOO_MY_ID: "$i"
      ZOO_SERVERS: "$zoo_servers"
$healthcheck
    networks:
      treecache:
        ipv4_address: 10.0.1.$((1 + i))
        aliases: [zookeeper-$i]
EOF
  done
  for id in $(seq 1 "$count"); do
    cat <<EOF

  node-$id:
    environment:
      ZOOKEEPER: "$connect"
    depends_on:
      zookeeper: !reset null
EOF
    for i in "${servers[@]}"; do
      printf '      zookeeper-%s:\n        condition: service_healthy\n' "$i"
    done
  done
  # The root's standby and the shards' root groups, likewise.
  for service in "node-$root-standby" $(for s in $shard_ids; do echo "node-$root-shard-$s node-$root-shard-$s-standby"; done); do
    cat <<EOF

  $service:
    environment:
      ZOOKEEPER: "$connect"
    depends_on:
      zookeeper: !reset null
EOF
    for i in "${servers[@]}"; do
      printf '      zookeeper-%s:\n        condition: service_healthy\n' "$i"
    done
  done
  exit 0
fi

cat <<EOF
# A treecache cluster of depth $depth: ZooKeeper and NODE-1 .. NODE-$count, root NODE-$root.
# Generated by \`scripts/gen-compose.sh $generated\`; change the generator, not this file.
#$file_line
#   $dc up -d --build       # node i answers on http://127.0.0.1:(5000 + i)
#   docker exec NODE-1 /treecache-cli tree
#   $dc down                # keeps the volumes: the cluster key, the root's data
#   $dc down -v             # removes them too
#
# NODE-$root-standby (http://127.0.0.1:$((5001 + count))) is a standby of the root: it takes
# over when the root's ZooKeeper session ends (docs/deployment.md).$shards_line
#
# TREECACHE_IMAGE names the node image (default treecache:latest, built from
# the Dockerfile here); a prebuilt one skips the build:
#   TREECACHE_IMAGE=treecache:local $dc up -d --no-build
# ZOOKEEPER_IMAGE names the ZooKeeper image (default zookeeper:3.9); where no
# registry is reachable, build one with scripts/zookeeper-image.sh:
#   ZOOKEEPER_IMAGE=treecache-zookeeper:local $dc up -d
name: treecache

x-node: &node
  image: \${TREECACHE_IMAGE:-treecache:latest}
  build:
    context: .
    target: runtime
  # Docker's init runs the node and passes on SIGTERM: the node finishes the
  # writes under way, syncs its log, ends its ZooKeeper session and exits.
  init: true
  restart: unless-stopped
  # Healthy once the node serves its part of the tree (GET /ready), asked by
  # the CLI inside the image (no shell there; "self" is this container's
  # node).
  healthcheck:
    test: ["CMD", "/treecache-cli", "--timeout", "2", "ready", "self"]
    interval: 2s
    timeout: 3s
    retries: 3
    start_period: 60s

services:
  zookeeper:
    image: \${ZOOKEEPER_IMAGE:-zookeeper:3.9}
    container_name: zookeeper
    restart: unless-stopped
$healthcheck
    networks:
      treecache:
        ipv4_address: 10.0.1.2

  # The cluster key every node signs its calls to the others with: made once,
  # on the first start, and kept in the volume cluster-key.
  cluster-key:
    image: \${TREECACHE_IMAGE:-treecache:latest}
    container_name: treecache-cluster-key
    entrypoint: ["/treecache", "keygen", "/keys/cluster.key"]
    restart: "no"
    volumes:
      - cluster-key:/keys
    network_mode: none
EOF

# Every node and the standby: the key, read-only.
key_volume="      - cluster-key:/keys:ro"
key_dependency=$'\n'"      cluster-key:"$'\n'"        condition: service_completed_successfully"

# The tree takes the nodes in order of arrival. So that it comes out the
# same on every start (the first node after the root in slot 1, the next in
# slot 2, ...), each node starts once the one before it in id order is
# healthy, that is, has joined: no node waits longer than that
# (STARTUP_DELAY 0).
previous=""
for id in $(seq 1 "$count"); do
  # Every node waits for a healthy ZooKeeper, the others also for a healthy
  # root and the node before them.
  dependencies=""
  volumes=$'\n'"    volumes:"$'\n'"$key_volume"
  if [ "$id" -eq "$root" ]; then
    volumes+=$'\n'"      - root-data:/data"
  else
    for service in "node-$root" ${previous:+"$previous"}; do
      dependencies+=$'\n'"      $service:"$'\n'"        condition: service_healthy"
    done
    previous="node-$id"
  fi
  cat <<EOF

  node-$id:
    <<: *node
    container_name: NODE-$id
    hostname: NODE-$id
    environment:
      NODE_ID: "$id"
      TREE_DEPTH: "$depth"
      ROOT_NODE_ID: "$root"$shards_env
      API_PORT: "5000"
      ADVERTISE_ADDRESS: "NODE-$id:5000"
      ZOOKEEPER: "zookeeper:2181"
      STARTUP_DELAY: "0"
      CLUSTER_KEY_FILE: /keys/cluster.key
    ports:
      - "127.0.0.1:$((5000 + id)):5000"$volumes
    depends_on:
      zookeeper:
        condition: service_healthy$key_dependency$dependencies
    networks:
      treecache:
        ipv4_address: 10.0.1.$((10 + id))
        aliases: [NODE-$id]
EOF
done

# A standby of the root: the root's id, its own address and data volume.
# The first process of the root group to write the group's state in
# ZooKeeper leads, so the standby starts once the root is healthy (ready:
# it leads), and the root in NODE-$root is the primary after every start.
cat <<EOF

  node-$root-standby:
    <<: *node
    container_name: NODE-$root-standby
    hostname: NODE-$root-standby
    environment:
      NODE_ID: "$root"
      TREE_DEPTH: "$depth"
      ROOT_NODE_ID: "$root"$shards_env
      API_PORT: "5000"
      ADVERTISE_ADDRESS: "NODE-$root-standby:5000"
      ZOOKEEPER: "zookeeper:2181"
      STARTUP_DELAY: "0"
      CLUSTER_KEY_FILE: /keys/cluster.key
    ports:
      - "127.0.0.1:$((5001 + count)):5000"
    volumes:
$key_volume
      - root-standby-data:/data
    depends_on:
      zookeeper:
        condition: service_healthy$key_dependency
      node-$root:
        condition: service_healthy
    networks:
      treecache:
        ipv4_address: 10.0.1.10
        aliases: [NODE-$root-standby]
    # A standby never reports ready (GET /ready is 503 until it takes over):
    # healthy while it answers GET /.
    healthcheck:
      test: ["CMD", "/treecache-cli", "--timeout", "2", "health", "http://127.0.0.1:5000"]
      interval: 5s
      timeout: 5s
      retries: 3
EOF

# The root group of each shard s >= 1: the root's id and SHARD s, two
# processes with their own addresses, ports and data volumes. As in the
# root group, the first to write the group's state leads: the first member
# starts once the root is healthy (the slot map is written), its standby
# once the first member is healthy (ready: it leads).
shard_volumes=""
for s in $shard_ids; do
  for member in "" -standby; do
    if [ -z "$member" ]; then
      offset=0
      wait_for="node-$root"
      healthcheck=""
    else
      offset=1
      wait_for="node-$root-shard-$s"
      healthcheck='
    # Like the standby of the root: healthy while it answers GET /.
    healthcheck:
      test: ["CMD", "/treecache-cli", "--timeout", "2", "health", "http://127.0.0.1:5000"]
      interval: 5s
      timeout: 5s
      retries: 3'
    fi
    name=NODE-$root-shard-$s$member
    shard_volumes+=$'\n'"  root-shard-$s$member-data:"
    cat <<EOF

  node-$root-shard-$s$member:
    <<: *node
    container_name: $name
    hostname: $name
    environment:
      NODE_ID: "$root"
      SHARD: "$s"
      TREE_DEPTH: "$depth"
      ROOT_NODE_ID: "$root"$shards_env
      API_PORT: "5000"
      ADVERTISE_ADDRESS: "$name:5000"
      ZOOKEEPER: "zookeeper:2181"
      STARTUP_DELAY: "0"
      CLUSTER_KEY_FILE: /keys/cluster.key
    ports:
      - "127.0.0.1:$((5000 + count + 2 * s + offset)):5000"
    volumes:
$key_volume
      - root-shard-$s$member-data:/data
    depends_on:
      zookeeper:
        condition: service_healthy$key_dependency
      $wait_for:
        condition: service_healthy
    networks:
      treecache:
        ipv4_address: 10.0.1.$((11 + count + 2 * (s - 1) + offset))
        aliases: [$name]$healthcheck
EOF
  done
done

cat <<EOF

# The cluster key, and the root's and its standby's logs and snapshots,
# outlive their containers.
volumes:
  cluster-key:
  root-data:
  root-standby-data:$shard_volumes

networks:
  treecache:
    ipam:
      config:
        - subnet: 10.0.1.0/24
EOF
