#!/usr/bin/env bash
# Container test: a depth-3 treecache cluster as 7 containers of the node
# image on a private Docker network.
#
#   tests/containers.sh
#
# What it does:
#   1. builds the node image from static binaries built on this machine
#      (scripts/build-image.sh, Dockerfile target "runtime-prebuilt");
#   2. starts ZooKeeper on the host (Debian's package) listening only on the
#      gateway address of the test's own network, where the containers reach it;
#   3. creates a user-defined bridge network with its own /24 and starts
#      NODE-1 (the root) .. NODE-7, one at a time, each at a fixed address and
#      with the network alias NODE-i, which is also its advertised host;
#   4. checks the tree, read-through caching, writes through a leaf,
#      treecache-cli in docker mode inside a container, the root's data
#      across a restart of its container (kept on a volume), and the answers
#      of NODE-2's children once NODE-2 (slot 1) is stopped.
# The host talks to the nodes through their container addresses (and once
# through a port published on 127.0.0.1). Everything it creates - containers,
# network, volume, image, ZooKeeper, temp dir - carries a per-run suffix and is removed
# on exit, failure included.
#
# Needs: docker, cargo, curl, jq, Debian's zookeeper (scripts/install-deps.sh).
# TREECACHE_TEST_IMAGE=<image> skips the build and uses (and keeps) that image.
# Prints PASS/FAIL lines and "N passed, N failed"; exits 1 on any failure.
# shellcheck disable=SC2016 # jq programs are single-quoted on purpose
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

run=$(date +%s)-$$
run=tc${run: -9}
label="treecache-test=$run"
net="treecache-test-$run"
work=$(mktemp -d)
image=${TREECACHE_TEST_IMAGE:-treecache-test:$run}
built_image=false
zk_pid=""
depth=3
count=7

# shellcheck source=scripts/tally.sh
. scripts/tally.sh
# check NAME COMMAND...: PASS when the command succeeds.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
note() { echo "--- $* (${SECONDS}s)"; }
# jq_true JSON JQ-ARGS...: the JSON passes the jq filter (jq -e).
jq_true() {
  local input=$1
  shift
  jq -e "$@" >/dev/null 2>&1 <<<"$input"
}

cleanup() {
  local ids
  set +e
  ids=$(docker ps -aq --filter "label=$label")
  if [ "$failed" -gt 0 ] && [ -n "$ids" ]; then
    for id in $ids; do
      echo "--- last log lines of $(docker inspect --format '{{.Name}}' "$id")"
      docker logs --tail 15 "$id" 2>&1 | sed 's/^/    /'
    done
  fi
  # shellcheck disable=SC2086 # one container id per word
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  docker network ls -q --filter "label=$label" | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter "label=$label" | xargs -r docker volume rm >/dev/null
  $built_image && docker rmi "$image" >/dev/null
  if [ -n "$zk_pid" ]; then
    kill "$zk_pid" 2>/dev/null
    wait "$zk_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
  echo "containers: ${SECONDS}s in all"
  tally
  exit
}

# Gives up on the whole test: what follows depends on this step.
abort() {
  fail "$1"
  finish
}

# http METHOD URL [JSON]: sets status and body. Never follows a proxy.
status=""
body=""
http() {
  local data=()
  [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data "$3")
  status=$(curl --noproxy '*' -sS --max-time 20 -o "$work/body" -w '%{http_code}' \
    -X "$1" "${data[@]}" "$2" 2>"$work/curl-error") || status=000
  body=$(cat "$work/body" 2>/dev/null)
  [ "$status" != 000 ] || body=$(cat "$work/curl-error")
}
# expect_http NAME STATUS JQ-FILTER: the last answer had STATUS and its body
# passes the jq filter; prints both when not.
expect_http() {
  if [ "$status" = "$2" ] && jq_true "$body" "$3"; then
    pass "$1"
  else
    fail "$1 (wanted $2 and $3, got $status $body)"
  fi
}
# wait_for SECONDS COMMAND...: retries the command every 0.3 s.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.3
  done
}

for tool in docker cargo curl jq; do
  command -v "$tool" >/dev/null || abort "$tool is installed"
done
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || abort "ZooKeeper is installed (scripts/install-deps.sh)"

# --- 1. the image
if [ -n "${TREECACHE_TEST_IMAGE:-}" ]; then
  note "using image $image"
else
  note "building $image"
  if ! scripts/build-image.sh "$image" >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log"
    abort "scripts/build-image.sh builds the image"
  fi
  built_image=true
  tail -1 "$work/build.log"
  pass "scripts/build-image.sh builds the image"
fi
size=$(docker image inspect --format '{{.Size}}' "$image")
check "image is at most 15 MB ($size bytes)" test "$size" -le 15000000
check "image runs as user 10001:10001" \
  test "$(docker image inspect --format '{{.Config.User}}' "$image")" = 10001:10001

# --- 2. the network, with a /24 that no other Docker network uses
note "creating network $net"
prefix=""
for _ in $(seq 1 20); do
  candidate=172.30.$((RANDOM % 250 + 2))
  if docker network create --driver bridge --subnet "$candidate.0/24" \
    --gateway "$candidate.1" --label "$label" "$net" >/dev/null 2>"$work/network-error"; then
    prefix=$candidate
    break
  fi
done
[ -n "$prefix" ] || abort "a private network is created ($(cat "$work/network-error"))"
gateway=$prefix.1
address() { echo "$prefix.$((10 + $1))"; }
url() { echo "http://$(address "$1"):5000"; }

# --- 3. ZooKeeper on the host, on the network's gateway address only
zk_port=$(python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$gateway") ||
  abort "a free port for ZooKeeper on $gateway"
mkdir "$work/zk-data"
cat >"$work/zoo.cfg" <<EOF
tickTime=2000
dataDir=$work/zk-data
clientPort=$zk_port
clientPortAddress=$gateway
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok
EOF
note "starting ZooKeeper on $gateway:$zk_port"
# SERVER_JVMFLAGS: a small heap, and the log on the console (our log file).
JMXDISABLE=true SERVER_JVMFLAGS="-Xmx256m -Dzookeeper.root.logger=INFO,CONSOLE" \
  /usr/share/zookeeper/bin/zkServer.sh start-foreground "$work/zoo.cfg" \
  >"$work/zookeeper.log" 2>&1 &
zk_pid=$!
zk_ok() {
  (
    exec 3<>"/dev/tcp/$gateway/$zk_port" || exit 1
    echo ruok >&3
    read -r -t 2 reply <&3
    [ "$reply" = imok ]
  ) 2>/dev/null
}
wait_for 30 zk_ok || { tail -20 "$work/zookeeper.log"; abort "ZooKeeper answers ruok"; }

# --- 4. the cluster: the root first, then the others one at a time, so that
# NODE-i takes slot i-1.
start_node() {
  local id=$1
  shift
  # --init: the node runs under Docker's init, which passes on SIGTERM, as in
  # docker-compose.yml and the Vagrantfile.
  docker run -d --init --name "NODE-$id-$run" --label "$label" \
    --network "$net" --ip "$(address "$id")" --network-alias "NODE-$id" --hostname "NODE-$id" \
    -e "NODE_ID=$id" -e "TREE_DEPTH=$depth" -e ROOT_NODE_ID=1 -e API_PORT=5000 \
    -e "ADVERTISE_ADDRESS=NODE-$id:5000" -e "ZOOKEEPER=$gateway:$zk_port" \
    -e STARTUP_DELAY=0 "$@" "$image" >/dev/null
}
alive() {
  http GET "$(url "$1")/"
  [ "$status" = 200 ]
}
ready() {
  http GET "$(url "$1")/ready"
  [ "$status" = 200 ]
}
joined() {
  http GET "$(url 1)/nodes"
  [ "$status" = 200 ] && jq_true "$body" --arg n "NODE-$1" 'any(.nodes[]; .name == $n)'
}

note "starting NODE-1 .. NODE-$count"
docker volume create --label "$label" "tc-data-$run" >/dev/null || abort "the root's volume is made"
start_node 1 -p 127.0.0.1::5000 -v "tc-data-$run:/data" || abort "NODE-1 container starts"
wait_for 20 alive 1 || abort "NODE-1 (root) answers GET /"
for id in $(seq 2 $count); do
  start_node "$id" || abort "NODE-$id container starts"
  wait_for 30 joined "$id" || abort "NODE-$id joins the root"
done
pass "all $count nodes joined"
note "cluster up"

# --- the tree
http GET "$(url 1)/nodes"
expect_http "GET /nodes: depth, capacity, root, $count nodes" 200 \
  ".depth == $depth and .capacity == $count and .root == \"NODE-1\" and (.nodes | length) == $count"
tree=$body
for id in $(seq 2 $count); do
  slot=$((id - 1))
  parent="NODE-$(((slot - 1) / 2 + 1))"
  check "NODE-$id is in slot $slot under $parent" jq_true "$tree" --arg n "NODE-$id" \
    --argjson s "$slot" --arg p "$parent" \
    'any(.nodes[]; .name == $n and .slot == $s and .parent == $p)'
done
for id in $(seq 1 $count); do
  http GET "$(url "$id")/"
  expect_http "GET / on NODE-$id" 200 ".status == \"alive\" and .node == \"NODE-$id\""
done
http GET "$(url 7)/nodes"
check "GET /nodes on a leaf gives the root's tree" jq_true "$body" --argjson t "$tree" '. == $t'
published=$(docker port "NODE-1-$run" 5000/tcp | head -1)
http GET "http://$published/"
expect_http "NODE-1 through its published port $published" 200 '.node == "NODE-1"'

# --- reads fill the caches on the way back, writes go to the root
key=fill-$run
http PUT "$(url 1)/store/$key" '{"value": {"n": 1}}'
expect_http "PUT on the root" 200 ".key == \"$key\" and .value == {\"n\": 1}"
http GET "$(url 4)/store/$key?local=true"
expect_http "leaf NODE-4 holds no copy before a read" 404 '.error | type == "string"'
http GET "$(url 4)/store/$key"
expect_http "GET on leaf NODE-4 reads through to the root" 200 '.value == {"n": 1}'
http GET "$(url 4)/store/$key?local=true"
expect_http "NODE-4 now holds a copy" 200 '.value == {"n": 1}'
http GET "$(url 2)/store/$key?local=true"
expect_http "its parent NODE-2 now holds a copy" 200 '.value == {"n": 1}'
http GET "$(url 3)/store/$key?local=true"
expect_http "NODE-3, off the path, holds none" 404 '.error | type == "string"'

leaf_key=leaf-$run
http PUT "$(url 7)/store/$leaf_key" '{"value": "from NODE-7"}'
expect_http "PUT through leaf NODE-7" 200 '.value == "from NODE-7"'
http GET "$(url 1)/store/$leaf_key?local=true"
expect_http "the write through a leaf is in the root's copy" 200 '.value == "from NODE-7"'
http PUT "$(url 5)/store/$key" '{"value": {"n": 2}}'
expect_http "PUT through leaf NODE-5 over a cached key" 200 '.value == {"n": 2}'
http GET "$(url 4)/store/$key"
expect_http "NODE-4 then reads the new value" 200 '.value == {"n": 2}'
http DELETE "$(url 6)/store/$leaf_key"
expect_http "DELETE through leaf NODE-6" 200 ".key == \"$leaf_key\""
http GET "$(url 7)/store/$leaf_key"
expect_http "the deleted key is gone at NODE-7" 404 '.error | type == "string"'

# --- treecache-cli inside a container (docker mode: NODE-i is http://NODE-i:5000)
cli() { docker exec "NODE-4-$run" /treecache-cli "$@" 2>"$work/cli-error"; }
out=$(cli --docker get NODE-1 "$key")
rc=$?
check "treecache-cli --docker get NODE-1 (exit $rc, $out)" jq_true "$out" '.value == {"n": 2}'
cli_key=cli-$run
out=$(cli put 7 "$cli_key" '{"via": "cli"}')
rc=$?
check "treecache-cli put 7 with TREECACHE_MODE=docker from the image (exit $rc, $out)" test "$rc" = 0
http GET "$(url 1)/store/$cli_key?local=true"
expect_http "the CLI's write is at the root" 200 '.value == {"via": "cli"}'
cli get NODE-3 "missing-$run" >/dev/null
rc=$?
check "treecache-cli get of a missing key exits 1 (exit $rc)" test "$rc" = 1
out=$(cli tree)
rc=$?
check "treecache-cli tree shows NODE-7 (exit $rc)" grep -q NODE-7 <<<"$out"

# --- the root's data lives on its volume: a new start of its container keeps it
note "restarting the root's container"
docker restart -t 5 "NODE-1-$run" >/dev/null
if wait_for 30 ready 1; then pass "the root is ready again after a restart"; else fail "the root is ready again after a restart"; fi
http GET "$(url 1)/store/$cli_key"
expect_http "the root still holds the CLI's write after the restart" 200 '.value == {"via": "cli"}'
http GET "$(url 4)/store/$key"
expect_http "NODE-4 reads the root's value after the restart" 200 '.value == {"n": 2}'
logs=$(docker logs "NODE-1-$run" 2>&1)
check "the root recovered its data from /data" grep -q "recovered .* keys from .* records in /data" <<<"$logs"
check "the root synced its log when stopped" grep -q "the log is synced and closed" <<<"$logs"

# --- a mid-tree node stops: its children answer 502/504 naming it
mid=$(jq -r '.nodes[] | select(.slot == 1) | .name' <<<"$tree")
mapfile -t children < <(jq -r --arg m "$mid" '.nodes[] | select(.name == $m) | .left, .right' <<<"$tree")
check "slot 1 holds NODE-2, with children NODE-4 and NODE-5" \
  test "$mid ${children[*]}" = "NODE-2 NODE-4 NODE-5"
note "stopping $mid"
stop_started=$SECONDS
docker stop -t 2 "$mid-$run" >/dev/null
note "$mid stopped in $((SECONDS - stop_started))s"
cold=cold-$run
for child in "${children[@]}"; do
  id=${child#NODE-}
  asked=$SECONDS
  http GET "$(url "$id")/store/$cold"
  took=$((SECONDS - asked))
  if [[ $status =~ ^50[24]$ ]] && jq_true "$body" --arg m "$mid" '.error | contains($m)'; then
    pass "$child answers $status naming $mid for a cold key (${took}s)"
  else
    fail "$child answers 502 or 504 naming $mid (got $status $body after ${took}s)"
  fi
done
out=$(cli get NODE-4 "$cold")
rc=$?
check "treecache-cli get through NODE-4 exits 3 (exit $rc)" test "$rc" = 3
http GET "$(url 6)/store/$cold"
expect_http "NODE-6, in the other subtree, still reaches the root" 404 '.error | type == "string"'
http PUT "$(url 6)/store/$cold" '{"value": 6}'
expect_http "writes through NODE-6 still work" 200 '.value == 6'

if docker logs "NODE-1-$run" 2>&1 | grep -q panicked; then
  fail "no panic in the root's log"
else
  pass "no panic in the root's log"
fi

finish
