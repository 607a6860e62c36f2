# Sourced by scripts/run-compose.sh and scripts/run-vagrant.sh: what both
# check on a cluster started from the committed docker-compose.yml or
# Vagrantfile, as docs/deployment.md describes it. Not run on its own.
#
# The layout both files give (docs/deployment.md): a depth-3 tree, NODE-1
# (the root) .. NODE-7 in containers of those names, published on
# 127.0.0.1:5001 .. 5007, and the root's standby NODE-1-standby on
# 127.0.0.1:5008. Everything is asked through those loopback ports or with
# `docker exec` in the cluster's own containers.
#
# The caller sources scripts/tally.sh first, sets $work (a temporary
# directory), and defines:
#   stop_node NAME     stops the container of NODE-i or NODE-1-standby the
#                      way its tool does (docker compose stop, vagrant halt)
#   start_node NAME    starts it again the same way
# shellcheck shell=bash disable=SC2016,SC2154 # jq programs are single-quoted; work and failed are the caller's

depth=3
count=7
standby=NODE-1-standby
standby_port=5008

note() { echo "--- $* (${SECONDS}s)"; }
now_ms() { date +%s%3N; }
# seconds since a now_ms reading, with one decimal
since() { local ms=$(($(now_ms) - $1)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
jq_true() {
  local input=$1
  shift
  jq -e "$@" >/dev/null 2>&1 <<<"$input"
}
url() { echo "http://127.0.0.1:$((5000 + $1))"; }
standby_url="http://127.0.0.1:$standby_port"

# http METHOD URL [JSON]: sets status and body. Never through a proxy.
status=""
body=""
http() {
  local data=()
  [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data "$3")
  status=$(curl --noproxy '*' -sS --max-time 10 -o "$work/body" -w '%{http_code}' \
    -X "$1" "${data[@]}" "$2" 2>"$work/curl-error") || status=000
  body=$(cat "$work/body" 2>/dev/null)
  [ "$status" != 000 ] || body=$(cat "$work/curl-error")
  rm -f "$work/body"
}
# expect_http NAME STATUS [JQ-ARGS...] JQ-FILTER: the last answer had STATUS
# and its body passes the filter; prints both when not.
expect_http() {
  local name=$1 want=$2
  shift 2
  if [ "$status" = "$want" ] && jq_true "$body" "$@"; then
    pass "$name"
  else
    fail "$name (wanted $want and ${*: -1}, got $status $body)"
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

# Whether node i has joined and answers from its cache (GET /).
node_joined() {
  http GET "$(url "$1")/"
  [ "$status" = 200 ] && jq_true "$body" '.joined and (.role != "cache" or .lease)'
}
# Whether the process behind URL says it is the primary ("root") or a
# standby of the root group.
role_is() {
  http GET "$1/"
  [ "$status" = 200 ] && jq_true "$body" --arg r "$2" '.role == $r'
}
# Whether the primary's /nodes (asked through node i) has all nodes live and
# `count` standbys in sync.
group_complete() {
  http GET "$(url "${2:-1}")/nodes"
  [ "$status" = 200 ] && jq_true "$body" --argjson n "$count" --argjson s "$1" \
    '(.nodes | length) == $n and all(.nodes[]; .live != false)
     and ([.root_group[]? | select(.role == "standby" and .in_sync)] | length) == $s'
}
# Whether the primary's /nodes says NAME's session has ended.
node_down() {
  http GET "$(url 2)/nodes"
  [ "$status" = 200 ] && jq_true "$body" --arg n "$1" '.nodes[] | select(.name == $n) | .live == false'
}
# put_ok I KEY JSON: a PUT through node i succeeds.
put_ok() {
  http PUT "$(url "$1")/store/$2" "$3"
  [ "$status" = 200 ]
}
# The whole cluster is up: every node joined (with a lease), the tree full,
# and the standby in sync.
cluster_up() {
  local id
  for id in $(seq 1 "$count"); do
    node_joined "$id" || return 1
  done
  role_is "$standby_url" standby && group_complete 1
}

# The tree, the root group, each node's GET /.
check_tree() {
  local id slot parent tree
  http GET "$(url 1)/nodes"
  expect_http "GET /nodes: depth $depth, $count of $count slots, root NODE-1" 200 \
    ".depth == $depth and .capacity == $count and .root == \"NODE-1\" and (.nodes | length) == $count"
  tree=$body
  # Nodes arrive in id order: NODE-2 in slot 1, NODE-3 in slot 2, ...
  for id in $(seq 2 "$count"); do
    slot=$((id - 1))
    parent="NODE-$(((slot - 1) / 2 + 1))"
    check "NODE-$id is in slot $slot under $parent" jq_true "$tree" --arg n "NODE-$id" \
      --argjson s "$slot" --arg p "$parent" \
      'any(.nodes[]; .name == $n and .slot == $s and .parent == $p and .live != false)'
  done
  check "root_group: NODE-1 is the primary, one standby in sync" jq_true "$tree" \
    '(.nodes[] | select(.name == "NODE-1") | .address) as $root
     | [.root_group[] | [.address == $root, .role, .in_sync]] == [[true, "root", true], [false, "standby", true]]'
  standby_address=$(jq -r '.root_group[] | select(.role == "standby") | .address' <<<"$tree")
  for id in $(seq 1 "$count"); do
    http GET "$(url "$id")/"
    if [ "$id" = 1 ]; then
      expect_http "GET / on NODE-1: the root, slot 0" 200 \
        '.node == "NODE-1" and .role == "root" and .slot == 0'
    else
      expect_http "GET / on NODE-$id: a cache in slot $((id - 1))" 200 \
        ".node == \"NODE-$id\" and .role == \"cache\" and .slot == $((id - 1))"
    fi
  done
  http GET "$standby_url/"
  expect_http "GET / on $standby (127.0.0.1:$standby_port): NODE-1's id, role standby" 200 \
    '.node == "NODE-1" and .role == "standby" and .joined == false'
  http GET "$(url 7)/nodes"
  check "GET /nodes through leaf NODE-7 gives the root's tree" \
    jq_true "$body" --argjson t "$tree" '.nodes == $t.nodes'
}

# Writes and reads through leaves, read-through caching, the standby
# forwarding /store, and treecache-cli inside a container.
check_data() {
  local key=$1 out rc
  http GET "$(url 4)/store/$key?local=true"
  expect_http "leaf NODE-4 holds no copy of $key yet" 404 '.error | type == "string"'
  http PUT "$(url 7)/store/$key" '{"value": {"n": 1}}'
  expect_http "PUT through leaf NODE-7" 200 ".key == \"$key\" and .value == {\"n\": 1}"
  http GET "$(url 1)/store/$key?local=true"
  expect_http "the write through a leaf is in the root's copy" 200 '.value == {"n": 1}'
  http GET "$(url 4)/store/$key"
  expect_http "GET through leaf NODE-4 reads it from the root" 200 '.value == {"n": 1}'
  http GET "$(url 4)/store/$key?local=true"
  expect_http "?local=true: NODE-4 now holds a copy" 200 '.value == {"n": 1}'
  http GET "$(url 2)/store/$key?local=true"
  expect_http "?local=true: its parent NODE-2 holds one too" 200 '.value == {"n": 1}'
  http GET "$(url 3)/store/$key?local=true"
  expect_http "?local=true: NODE-3, off the path, holds none" 404 '.error | type == "string"'
  http PUT "$(url 5)/store/$key" '{"value": {"n": 2}}'
  expect_http "PUT through leaf NODE-5 over the cached key" 200 '.value == {"n": 2}'
  http GET "$(url 4)/store/$key"
  expect_http "NODE-4 then reads the new value" 200 '.value == {"n": 2}'
  http GET "$standby_url/store/$key"
  expect_http "GET through $standby (forwarded to the primary)" 200 '.value == {"n": 2}'
  http PUT "$standby_url/store/$key-standby" '{"value": "via the standby"}'
  expect_http "PUT through $standby (forwarded to the primary)" 200 '.value == "via the standby"'
  http GET "$(url 6)/store/$key-standby"
  expect_http "leaf NODE-6 reads the write made through the standby" 200 '.value == "via the standby"'

  out=$(docker exec NODE-4 /treecache-cli get NODE-1 "$key" 2>"$work/cli-error")
  rc=$?
  check "docker exec NODE-4 /treecache-cli get NODE-1 (exit $rc: $out)" \
    jq_true "$out" '.value == {"n": 2}'
  out=$(docker exec NODE-6 /treecache-cli put NODE-3 "$key-cli" '{"via": "cli"}' 2>"$work/cli-error")
  rc=$?
  check "docker exec NODE-6 /treecache-cli put NODE-3 (exit $rc: $out)" test "$rc" = 0
  http GET "$(url 1)/store/$key-cli?local=true"
  expect_http "the CLI's write is at the root" 200 '.value == {"via": "cli"}'
  out=$(docker exec NODE-5 /treecache-cli tree 2>"$work/cli-error")
  rc=$?
  if grep -q "$count of $count slots taken, root NODE-1" <<<"$out"; then
    pass "docker exec NODE-5 /treecache-cli tree: $count of $count slots (exit $rc)"
  else
    fail "docker exec NODE-5 /treecache-cli tree: $count of $count slots (exit $rc)"
    printf '%s\n' "$out" "$(cat "$work/cli-error")" | sed 's/^/    /'
  fi
}

# A cache node stops and starts again: it rejoins its slot.
check_node_restart() {
  local name=NODE-3 key=$1 t
  note "stopping $name"
  stop_node "$name" || fail "$name stops"
  if wait_for 30 node_down "$name"; then
    pass "the root sees $name's session end (live: false)"
  else
    fail "the root sees $name's session end (got $status $body)"
  fi
  t=$(now_ms)
  start_node "$name" || fail "$name starts again"
  if wait_for 60 node_joined 3; then
    pass "$name joined again $(since "$t")s after its start"
  else
    fail "$name joined again (got $status $body)"
  fi
  http GET "$(url 3)/"
  expect_http "$name is back in slot 2 under NODE-1" 200 '.slot == 2 and .parent == "NODE-1"'
  wait_for 20 group_complete 1
  http GET "$(url 1)/nodes"
  expect_http "the tree is whole again, $name live" 200 \
    "(.nodes | length) == $count and all(.nodes[]; .live != false)"
  http GET "$(url 6)/store/$key"
  expect_http "a read through its child NODE-6 goes through it" 200 '.value == {"n": 2}'
}

# The root stops: its standby takes over, the cache nodes follow it, no
# acknowledged write is lost; the root starts again as a standby.
check_failover() {
  local key=$1 t
  http PUT "$(url 7)/store/$key-before" '{"value": "acknowledged before the failover"}'
  expect_http "a write before the root stops" 200 '.value == "acknowledged before the failover"'
  note "stopping NODE-1, the primary"
  t=$(now_ms)
  stop_node NODE-1 || fail "NODE-1 stops"
  note "NODE-1 stopped in $(since "$t")s"
  if wait_for 60 role_is "$standby_url" root; then
    pass "$standby took over, $(since "$t")s after the stop began"
  else
    fail "$standby took over (got $status $body)"
    return
  fi
  if wait_for 30 put_ok 4 "$key-after" '{"value": "after"}'; then
    pass "a write through leaf NODE-4 succeeds, $(since "$t")s after the stop began"
  else
    fail "a write through leaf NODE-4 succeeds after the failover (got $status $body)"
  fi
  http GET "$(url 6)/store/$key-before"
  expect_http "the write acknowledged before the failover reads back through NODE-6" 200 \
    '.value == "acknowledged before the failover"'
  http GET "$(url 5)/store/$key-after"
  expect_http "the write made after it reads back through NODE-5" 200 '.value == "after"'
  http GET "$(url 2)/nodes"
  expect_http "/nodes through NODE-2: the standby ($standby_address) is the primary, NODE-1 is at its address" 200 \
    --arg a "$standby_address" \
    '(.nodes[] | select(.name == "NODE-1") | .address) == $a
     and [.root_group[] | select(.role == "root") | .address] == [$a]'
  note "starting NODE-1 again"
  t=$(now_ms)
  start_node NODE-1 || fail "NODE-1 starts again"
  if wait_for 60 group_complete 1 2; then
    pass "NODE-1 is back as a standby in sync, $(since "$t")s after its start"
  else
    fail "NODE-1 is back as a standby in sync (got $status $body)"
  fi
  http GET "$(url 1)/"
  expect_http "GET / on NODE-1: role standby" 200 '.role == "standby"'
  http GET "$(url 1)/store/$key-after"
  expect_http "a read through NODE-1, now a standby, is forwarded" 200 '.value == "after"'
}

# Prints the last log lines of the given containers (after a failure).
show_logs() {
  local c
  for c in "$@"; do
    docker inspect "$c" >/dev/null 2>&1 || continue
    echo "--- last log lines of $c"
    docker logs --tail 15 "$c" 2>&1 | sed 's/^/    /'
  done
}

# The names of the volumes mounted in the given containers.
volumes_of() {
  local c
  for c in "$@"; do
    docker inspect --format '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}}{{"\n"}}{{end}}{{end}}' "$c" 2>/dev/null
  done | sed '/^$/d' | sort -u
}

# The volume mounted at /data in container NAME.
data_volume() {
  docker inspect --format '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}' "$1" 2>/dev/null
}
