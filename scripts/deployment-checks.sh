# Sourced by scripts/run-compose.sh and scripts/run-vagrant.sh: what both
# check on a cluster started from the committed docker-compose.yml or
# Vagrantfile, as docs/deployment.md describes it. Not run on its own.
#
# The layout both files give (docs/deployment.md): a depth-3 tree, NODE-1
# (the root) .. NODE-7 in containers of those names, published on
# 127.0.0.1:5001 .. 5007, and the root's standby NODE-1-standby on
# 127.0.0.1:5008; every node reads the cluster key from a volume at /keys,
# which the one-off container treecache-cluster-key wrote. Everything is
# asked through those loopback ports, with `docker exec` or `docker cp` in
# the cluster's own containers, or read from `docker inspect` and
# `docker events`.
#
# The caller sources scripts/tally.sh first, sets $runner (its name, for
# the summary) and $work (a temporary directory), and defines:
#   stop_node NAME     stops the container of NODE-i or NODE-1-standby the
#                      way its tool does (docker compose stop, vagrant halt)
#   start_node NAME    starts it again the same way
# shellcheck shell=bash disable=SC2016,SC2154 # jq programs are single-quoted; work and failed are the caller's

# What was timed, printed at the end by finish.
timings=()
timing() { timings+=("$(printf '%-44s %s s' "$1" "$2")"); echo "--- time: $1: $2 s"; }

# finish: the time in all, the timings and the tally; exits.
finish() {
  echo "$runner: ${SECONDS}s in all"
  if [ ${#timings[@]} -gt 0 ]; then
    echo "timings:"
    printf '  %s\n' "${timings[@]}"
  fi
  tally
  exit
}
abort() {
  fail "$1"
  finish
}

depth=3
count=7
standby=NODE-1-standby
standby_port=5008
key_container=treecache-cluster-key
key_file=/keys/cluster.key
# The standby must take over within this many seconds of the SIGTERM that
# stops the root (it closes its ZooKeeper session as it exits; a root that
# just vanished costs a session timeout, 6 s, and more).
handover_limit_ms=3000

note() { echo "--- $* (${SECONDS}s)"; }
now_ms() { date +%s%3N; }
# seconds since a now_ms reading, with one decimal
since() { ms_as_s $(($(now_ms) - $1)); }
url() { echo "http://127.0.0.1:$((5000 + $1))"; }
standby_url="http://127.0.0.1:$standby_port"
# Milliseconds as seconds with one decimal, or with two.
ms_as_s() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
ms_as_s2() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }

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

# The names of the cluster's node containers, the standby last.
node_containers() {
  seq -f 'NODE-%g' 1 "$count"
  echo "$standby"
}

# The file at PATH in container NAME, on stdout (docker cp works without a
# shell in the image, and on a stopped container).
container_file() {
  docker cp "$1:$2" - 2>/dev/null | tar -xOf -
}

# The SHA-256 of the cluster key in container NAME, to compare keys
# without keeping them.
key_digest() {
  container_file "$1" "$key_file" | sha256sum | cut -d' ' -f1
}

# sign_with KEYFILE TO METHOD PATH BODY: the X-Treecache-Auth value of a
# node-to-node call made now to the node advertised as TO (host:port),
# signed with the key in KEYFILE as docs/security.md says (the key is read
# from the file, not put on a command line).
sign_with() {
  python3 - "$@" "$(now_ms)" <<'PY'
import hashlib, hmac, sys
key_file, to, method, path, body, t = sys.argv[1:]
key = open(key_file, "rb").read()
key = key[:-1] if key.endswith(b"\n") else key
headers = ["x-treecache-" + h for h in ("budget-ms", "hop-ms", "request-id",
           "child-slot", "child-name", "child-address", "session", "epoch",
           "phase", "catch-up")] + ["if-match", "if-none-match"]
text = "treecache-auth-v2\n%s\n%s\n%s\n%s\n" % (to, method, path, t)
text += "".join("%s!\n" % h for h in headers)
text += hashlib.sha256(body.encode()).hexdigest()
print("v2 t=%s to=%s mac=%s" % (t, to, hmac.new(key, text.encode(), hashlib.sha256).hexdigest()))
PY
}

# advertised NAME: the address node NAME advertises (from the root's GET
# /nodes), which is what a call to it is signed for.
advertised() {
  curl --noproxy '*' -sS --max-time "$http_max_time" "$(url 1)/nodes" |
    jq -r --arg n "$1" '.nodes[] | select(.name == $n) | .address'
}

# build_images: the ZooKeeper image (scripts/zookeeper-image.sh, unless
# ZOOKEEPER_IMAGE names one) and the node image $node_image (unless
# TREECACHE_TEST_IMAGE names one, then built_image stays false), each
# timed; exports TREECACHE_IMAGE and ZOOKEEPER_IMAGE.
build_images() {
  local t
  t=$(now_ms)
  if [ -n "${ZOOKEEPER_IMAGE:-}" ]; then
    note "ZooKeeper image $ZOOKEEPER_IMAGE (given)"
  else
    scripts/zookeeper-image.sh >"$work/zookeeper-image.log" 2>&1 ||
      { tail -20 "$work/zookeeper-image.log"; abort "scripts/zookeeper-image.sh builds the ZooKeeper image"; }
    ZOOKEEPER_IMAGE=$(tail -1 "$work/zookeeper-image.log")
    tail -2 "$work/zookeeper-image.log" | head -1
    timing "ZooKeeper image ($(grep -q 'already built' "$work/zookeeper-image.log" && echo cached || echo built))" "$(since "$t")"
  fi
  if [ -z "${TREECACHE_TEST_IMAGE:-}" ]; then
    t=$(now_ms)
    scripts/build-image.sh "$node_image" >"$work/build.log" 2>&1 ||
      { tail -30 "$work/build.log"; abort "scripts/build-image.sh builds the node image"; }
    built_image=true
    tail -1 "$work/build.log"
    timing "node image (scripts/build-image.sh)" "$(since "$t")"
  fi
  export TREECACHE_IMAGE=$node_image ZOOKEEPER_IMAGE
}

# Every node runs with the one cluster key: the key volume read-only at
# /keys and CLUSTER_KEY_FILE, the key in no container's configuration, and
# a node-to-node call that is not signed with it refused and without effect.
check_key() {
  local key=$1 name mount volume="" volumes="" listing inspected warned="" open="" names
  local keyfile=$work/cluster.key other=$work/other.key to4 to2
  mapfile -t names < <(node_containers)
  for name in "${names[@]}"; do
    mount=$(docker inspect --format '{{range .Mounts}}{{if eq .Destination "/keys"}}{{.Type}} {{.Name}} {{.RW}}{{end}}{{end}}' "$name" 2>/dev/null)
    volume=${mount#volume }
    volume=${volume% false}
    volumes+=" $volume"
    check "$name runs with the cluster key: volume $volume read-only at /keys, CLUSTER_KEY_FILE=$key_file" \
      test "$mount" = "volume $volume false" -a -n "$volume" -a \
      "$(docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$name" | grep -c "^CLUSTER_KEY_FILE=$key_file\$")" = 1
  done
  check "all $((count + 1)) nodes mount the same key volume ($volume)" \
    test "$(tr ' ' '\n' <<<"$volumes" | sed '/^$/d' | sort -u)" = "$volume"
  check "$key_container wrote the key into that volume (mounted read-write) and exited 0" \
    test "$(docker inspect --format '{{.State.Status}} {{.State.ExitCode}} {{range .Mounts}}{{if eq .Destination "/keys"}}{{.Name}} {{.RW}}{{end}}{{end}}' \
      "$key_container" 2>/dev/null)" = "exited 0 $volume true"
  listing=$(docker cp "NODE-1:$key_file" - 2>/dev/null | tar -tvf - 2>/dev/null | awk '{ print $1, $2, $3 }')
  check "the key file is the node user's alone, 65 bytes ($listing; want -rw------- 10001/10001 65)" \
    test "$listing" = "-rw------- 10001/10001 65"
  (umask 077 && container_file NODE-1 "$key_file" >"$keyfile")
  check "the key is 64 hex digits" grep -qxE '[0-9a-f]{64}' "$keyfile"
  inspected=$(docker inspect "${names[@]}" "$key_container" 2>/dev/null)
  if [ -n "$inspected" ] && ! grep -qF "$(cat "$keyfile")" <<<"$inspected"; then
    pass "the key is in no container's configuration (docker inspect: environment, arguments, labels)"
  else
    fail "the key is in no container's configuration (docker inspect: environment, arguments, labels)"
  fi
  for name in "${names[@]}"; do
    docker logs "$name" 2>&1 | grep -q 'no --cluster-key-file' && warned+=" $name"
  done
  check "no node warns that cluster traffic is unauthenticated${warned:+ (warned:$warned)}" test -z "$warned"
  for name in "${names[@]}"; do
    docker logs "$name" 2>&1 | grep -q 'the cluster key file .* has mode' && open+=" $name"
  done
  check "no node warns that its key file is open to others${open:+ (warned:$open)}" test -z "$open"

  # A cached copy on leaf NODE-4 (and its parent NODE-2), then calls that
  # would drop it or move a node, unsigned or signed with another key.
  http PUT "$(url 7)/store/$key-key" '{"value": "cached"}'
  http GET "$(url 4)/store/$key-key"
  http GET "$(url 4)/store/$key-key?local=true"
  expect_http "leaf NODE-4 holds a copy of $key-key" 200 '.value == "cached"'
  http POST "$(url 4)/internal/flush" '{}'
  expect_http "an unsigned POST /internal/flush to NODE-4: 401" 401 '.error | test("signed with the cluster key")'
  http GET "$(url 4)/store/$key-key?local=true"
  expect_http "NODE-4 still holds its copy" 200 '.value == "cached"'
  (umask 077 && printf '%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$other")
  to4=$(advertised NODE-4)
  to2=$(advertised NODE-2)
  check "the root names the addresses NODE-4 and NODE-2 advertise ($to4, $to2)" \
    test -n "$to4" -a -n "$to2" -a "$to4" != "$to2"
  http POST "$(url 4)/internal/flush" '{}' "X-Treecache-Auth: $(sign_with "$other" "$to4" POST /internal/flush '{}')"
  expect_http "a flush signed with another key (a node of another cluster): 401" 401 \
    '.error | test("signature is not valid")'
  http GET "$(url 4)/store/$key-key?local=true"
  expect_http "NODE-4 still holds its copy" 200 '.value == "cached"'
  http POST "$(url 1)/nodes/join" '{"name": "NODE-3", "address": "127.0.0.1:9"}'
  expect_http "an unsigned POST /nodes/join to the root (NODE-3 at another address): 401" 401 '.error | type == "string"'
  http GET "$(url 1)/nodes"
  expect_http "NODE-3 keeps its slot and address" 200 \
    '.nodes[] | select(.name == "NODE-3") | .slot == 2 and .address != "127.0.0.1:9" and .live != false'
  # Signed with the key in the volume, but for NODE-2 (NODE-4's parent):
  # NODE-4 refuses it.
  http POST "$(url 4)/internal/flush" '{}' "X-Treecache-Auth: $(sign_with "$keyfile" "$to2" POST /internal/flush '{}')"
  expect_http "a flush signed for NODE-2 ($to2), sent to NODE-4: 401" 401 \
    --arg to "$to2" '.error | contains("signed for " + $to)'
  http GET "$(url 4)/store/$key-key?local=true"
  expect_http "NODE-4 still holds its copy" 200 '.value == "cached"'
  # The same flush signed for NODE-4 with the key in the volume: the nodes
  # use it.
  http POST "$(url 4)/internal/flush" '{}' "X-Treecache-Auth: $(sign_with "$keyfile" "$to4" POST /internal/flush '{}')"
  expect_http "a flush signed with the key in the volume: 200 (the nodes sign with that key)" 200 '.flushed == true'
  http GET "$(url 4)/store/$key-key?local=true"
  expect_http "it dropped NODE-4's copy" 404 '.error | type == "string"'
  http GET "$(url 2)/store/$key-key?local=true"
  expect_http "and not that of its parent NODE-2" 200 '.value == "cached"'
  http GET "$(url 4)/store/$key-key"
  expect_http "a read through NODE-4 fills it again" 200 '.value == "cached"'
  rm -f "$keyfile" "$other"
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

# Writes to FILE the time (ms) at which the standby first says it is the
# primary; gives up after SECONDS. Runs in the background, beside the
# stop, so it has curl calls of its own.
watch_takeover() {
  local file=$1 deadline=$((SECONDS + $2)) answer
  while [ $SECONDS -lt $deadline ]; do
    answer=$(curl --noproxy '*' -s --max-time 1 "$standby_url/" 2>/dev/null)
    if jq_true "$answer" '.role == "root"'; then
      now_ms >"$file"
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# When Docker sent SIGTERM to container NAME (ms), between the Unix times
# FROM and UNTIL (s): the first "kill" event with signal 15.
sigterm_ms() {
  docker events --since "$2" --until "$3" --filter "container=$1" --filter event=kill \
    --format '{{.TimeNano}} {{index .Actor.Attributes "signal"}}' 2>/dev/null |
    awk '$2 == 15 { print substr($1, 1, length($1) - 6); exit }'
}

# When container NAME logged its first line containing TEXT since the Unix
# time FROM (s), in ms: Docker's time stamp of the line.
logged_ms() {
  local stamp
  stamp=$(docker logs --timestamps --since "$2" "$1" 2>&1 | grep -m1 -F "$3" | cut -d' ' -f1)
  [ -n "$stamp" ] && date -d "$stamp" +%s%3N
}

# The root stops: its standby takes over, the cache nodes follow it, no
# acknowledged write is lost; the root starts again as a standby. The root
# is stopped with SIGTERM (docker stop, vagrant halt), so it ends its
# ZooKeeper session as it exits and the standby takes over at once: the
# handover is measured from Docker's SIGTERM (docker events) to the
# standby's log line saying it is the primary, and to the first answer of
# its GET / as the root (polled from here, so later on a busy machine).
handover=""
handover_seen=""
check_failover() {
  local key=$1 t from watcher took term led
  http PUT "$(url 7)/store/$key-before" '{"value": "acknowledged before the failover"}'
  expect_http "a write before the root stops" 200 '.value == "acknowledged before the failover"'
  rm -f "$work/takeover"
  watch_takeover "$work/takeover" 60 &
  watcher=$!
  note "stopping NODE-1, the primary"
  from=$(date +%s)
  t=$(now_ms)
  stop_node NODE-1 || fail "NODE-1 stops"
  note "NODE-1 stopped in $(since "$t")s"
  wait "$watcher"
  if [ ! -s "$work/takeover" ]; then
    fail "$standby took over (got $(curl --noproxy '*' -s --max-time 2 "$standby_url/"))"
    return
  fi
  took=$(($(cat "$work/takeover") - t))
  pass "$standby took over, $(ms_as_s "$took")s after the stop began"
  term=$(sigterm_ms NODE-1 "$from" "$(($(date +%s) + 1))")
  led=$(logged_ms "$standby" "$from" "the primary of the root group")
  if [ -n "$term" ] && [ -n "$led" ]; then
    handover=$((led - term))
    handover_seen=$(($(cat "$work/takeover") - term))
    check "$standby was the primary $(ms_as_s2 "$handover")s after Docker sent NODE-1 SIGTERM (at most $(ms_as_s "$handover_limit_ms")s; its GET / said so $(ms_as_s2 "$handover_seen")s after)" \
      test "$handover" -le "$handover_limit_ms"
  else
    fail "docker events shows the SIGTERM that stopped NODE-1 ($term), $standby's log its taking over ($led)"
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

# The volume mounted at PATH in container NAME.
mounted_volume() {
  docker inspect --format "{{range .Mounts}}{{if eq .Destination \"$2\"}}{{.Name}}{{end}}{{end}}" "$1" 2>/dev/null
}

# The volume mounted at /data in container NAME.
data_volume() { mounted_volume "$1" /data; }
