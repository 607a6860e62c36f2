#!/usr/bin/env bash
# Runs the committed Vagrantfile for real with Debian's Vagrant and its
# docker provider, the way docs/deployment.md says, and checks the cluster it
# starts:
#
#   1. the images: the node image from scripts/build-image.sh (a tag of this
#      run, removed at the end) and ZooKeeper from scripts/zookeeper-image.sh
#      (kept: it is the cache of later runs);
#   2. TREECACHE_IMAGE=... ZOOKEEPER_IMAGE=... vagrant destroy -f && vagrant up
#      in the repository's root, timed until every node has joined and the
#      root's standby is in sync;
#   3. scripts/deployment-checks.sh: every node runs with the cluster key
#      that the one-off machine cluster-key wrote (the volume read-only at
#      /keys, the key in no container's configuration, unsigned calls and
#      calls signed with another key refused with 401 and without effect);
#      the tree (slots in id order), writes and reads through leaves,
#      ?local=true, the standby forwarding /store, treecache-cli inside a
#      container (also through `vagrant docker-exec`); `vagrant halt` and
#      `vagrant up` of a node (it rejoins its slot) and of the root (its
#      standby takes over within 3 s of the SIGTERM, the caches follow, no
#      acknowledged write is lost; the root comes back as a standby);
#   4. vagrant destroy -f: no container, network or anonymous volume of the
#      cluster is left; the named volumes of the cluster key and of the
#      root's and its standby's data are (on purpose), and are then removed.
#
# Vagrant keeps its machine state in a directory of this run
# (VAGRANT_DOTFILE_PATH), not in .vagrant. The file names fixed container
# names, ports and a subnet: the script refuses to start while any of its
# containers exist. ZOOKEEPER_IMAGE=<image> skips the ZooKeeper build;
# TREECACHE_TEST_IMAGE=<image> skips the node build and keeps that image.
# Prints PASS/FAIL lines, the timings, and "N passed, N failed"; exits 1 on
# any failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# shellcheck source=scripts/tally.sh
. scripts/tally.sh
# shellcheck source=scripts/deployment-checks.sh
. scripts/deployment-checks.sh
runner=vagrant

run=$(date +%s)-$$
work=$(mktemp -d)
started=false
built_image=false
node_image=${TREECACHE_TEST_IMAGE:-treecache-deploy:vagrant-$run}
# What the cluster had, for the cleanup after a failure.
containers=()
networks=""
volumes=""


export VAGRANT_DOTFILE_PATH=$work/vagrant-state
# The checks are those of the default layout: one root shard, whatever the
# caller's environment says (the Vagrantfile reads ROOT_SHARDS from it).
unset ROOT_SHARDS
# No version check against the internet, no colour codes in the log.
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1
vagrant() { command vagrant "$@" </dev/null; }

# The ids of the machines' containers, from Vagrant's own state.
machine_containers() {
  local f
  for f in "$VAGRANT_DOTFILE_PATH"/machines/*/docker/id; do
    # one id per line (the files end without a newline)
    [ -s "$f" ] && printf '%s\n' "$(cat "$f")"
  done
}
# Records the containers, their networks other than Docker's own, and their
# volumes.
record() {
  mapfile -t containers < <(machine_containers)
  [ ${#containers[@]} -gt 0 ] || return 0
  networks=$(docker inspect --format '{{range $n, $_ := .NetworkSettings.Networks}}{{$n}}{{"\n"}}{{end}}' \
    "${containers[@]}" 2>/dev/null | grep -vxE 'bridge|host|none' | sort -u)
  volumes=$(volumes_of "${containers[@]}")
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  set +e
  if $started; then
    record
    [ "$failed" -gt 0 ] && [ ${#containers[@]} -gt 0 ] && show_logs "${containers[@]}"
    vagrant destroy -f >/dev/null 2>&1
    [ ${#containers[@]} -eq 0 ] || docker rm -fv "${containers[@]}" >/dev/null 2>&1
    # shellcheck disable=SC2086 # one name per word
    [ -z "$networks" ] || docker network rm $networks >/dev/null 2>&1
    # shellcheck disable=SC2086
    [ -z "$volumes" ] || docker volume rm $volumes >/dev/null 2>&1
  fi
  $built_image && docker rmi "$node_image" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_node() { vagrant halt "$1" >>"$work/vagrant.log" 2>&1; }
start_node() { vagrant up "$1" >>"$work/vagrant.log" 2>&1; }

for tool in vagrant docker curl jq python3; do
  command -v "$tool" >/dev/null || abort "$tool is installed (scripts/install-deps.sh)"
done
note "$(vagrant --version)"

# The machines, and nothing of them running yet: the names, ports and subnet
# are fixed.
mapfile -t machines < <(vagrant status --machine-readable 2>"$work/status-error" |
  awk -F, '$3 == "state" { print $2 }')
[ ${#machines[@]} -gt 0 ] || abort "vagrant status lists the machines ($(cat "$work/status-error"))"
note "machines: ${machines[*]}"
for name in cluster-key NODE-1 NODE-3 "$standby"; do
  printf '%s\n' "${machines[@]}" | grep -qxF "$name" || abort "the Vagrantfile defines $name"
done
check "the first machine is cluster-key (the key before any node)" test "${machines[0]}" = cluster-key
for name in "${machines[@]/#cluster-key/$key_container}"; do
  if docker container inspect "$name" >/dev/null 2>&1; then
    abort "no container named $name exists yet (another cluster from the committed files? remove it first)"
  fi
done

# --- 1. the images
build_images

# --- 2. up
note "TREECACHE_IMAGE=$TREECACHE_IMAGE ZOOKEEPER_IMAGE=$ZOOKEEPER_IMAGE vagrant destroy -f && vagrant up"
started=true
t=$(now_ms)
if ! { vagrant destroy -f && vagrant up; } >"$work/up.log" 2>&1; then
  tail -30 "$work/up.log"
  abort "vagrant destroy -f && vagrant up"
fi
pass "vagrant destroy -f && vagrant up ($(since "$t")s)"
timing "vagrant up returned" "$(since "$t")"
grep -q "Waiting until NODE-1 is the primary" "$work/up.log" ||
  fail "vagrant up ran the trigger that starts the standby after the root leads"
grep -q "Waiting until the cluster key is in the volume" "$work/up.log" ||
  fail "vagrant up ran the trigger that waits for the cluster key"
for id in $(seq 2 "$count"); do
  grep -q "Waiting until NODE-$((id - 1)) has joined" "$work/up.log" ||
    fail "vagrant up ran the trigger that starts NODE-$id once NODE-$((id - 1)) has joined"
done
check "$key_container made a new key (treecache keygen: wrote a new cluster key)" \
  grep -q 'wrote a new cluster key to /keys/cluster.key' <(docker logs "$key_container" 2>&1)
wait_for 120 cluster_up || abort "every node joined and the standby is in sync within 120 s (last: $status $body)"
pass "every node joined and the standby is in sync, $(since "$t")s after up began"
timing "up until every node joined, standby in sync" "$(since "$t")"
record
check "vagrant up made ${#machines[@]} containers, one per machine (${#containers[@]})" \
  test "${#containers[@]}" = "${#machines[@]}"

# --- 3. the checks
key=vagrant-$run
check_key "$key"
check_tree
check_data "$key"
out=$(vagrant docker-exec -t NODE-1 -- /treecache-cli tree 2>&1)
if grep -q "$count of $count slots taken, root NODE-1" <<<"$out"; then
  pass "vagrant docker-exec -t NODE-1 -- /treecache-cli tree"
else
  fail "vagrant docker-exec -t NODE-1 -- /treecache-cli tree"
  printf '%s\n' "$out" | sed 's/^/    /'
fi
check_node_restart "$key"
check_failover "$key"
if [ -n "$handover" ]; then
  timing "SIGTERM to the standby's taking over" "$(ms_as_s2 "$handover")"
  timing "SIGTERM to its GET / saying root" "$(ms_as_s2 "$handover_seen")"
fi

# --- 4. destroy
record
root_volume=$(data_volume NODE-1)
standby_volume=$(data_volume "$standby")
key_volume=$(mounted_volume NODE-1 /keys)
check "NODE-1 and $standby keep /data on two named volumes ($root_volume, $standby_volume)" \
  test -n "$root_volume" -a -n "$standby_volume" -a "$root_volume" != "$standby_volume" \
  -a ${#root_volume} -lt 64 -a ${#standby_volume} -lt 64
check "the cluster key is on a named volume ($key_volume)" test -n "$key_volume" -a ${#key_volume} -lt 64
kept_volumes=$(printf '%s\n' "$key_volume" "$root_volume" "$standby_volume" | sort)
note "vagrant destroy -f"
t=$(now_ms)
vagrant destroy -f >"$work/destroy.log" 2>&1 || { tail -20 "$work/destroy.log"; fail "vagrant destroy -f"; }
timing "vagrant destroy -f" "$(since "$t")"
left=""
for c in "${containers[@]}"; do
  docker container inspect "$c" >/dev/null 2>&1 && left+=" $c"
done
check "destroy: none of the ${#containers[@]} containers is left${left:+ (left:$left)}" test -z "$left"
for name in "${machines[@]}"; do
  docker container inspect "$name" >/dev/null 2>&1 && fail "destroy: container $name is gone"
done
left=""
for n in $networks; do
  docker network inspect "$n" >/dev/null 2>&1 && left+=" $n"
done
check "destroy: the network Vagrant made ($(paste -sd ' ' <<<"$networks")) is gone${left:+ (left:$left)}" \
  test -n "$networks" -a -z "$left"
left=""
kept=""
for v in $volumes; do
  if grep -qxF "$v" <<<"$kept_volumes"; then
    docker volume inspect "$v" >/dev/null 2>&1 && kept+="$v"$'\n'
  else
    docker volume inspect "$v" >/dev/null 2>&1 && left+=" $v"
  fi
done
check "destroy: no anonymous volume of the containers is left${left:+ (left:$left)}" test -z "$left"
check "destroy keeps the named volumes of the key and the data ($(paste -sd ' ' <<<"$kept_volumes"))" \
  test "$(sed '/^$/d' <<<"$kept" | sort)" = "$kept_volumes"
# shellcheck disable=SC2046 # one volume name per word
if docker volume rm $(paste -sd ' ' <<<"$kept_volumes") >/dev/null; then
  pass "docker volume rm $(paste -sd ' ' <<<"$kept_volumes") (as docs/deployment.md says)"
else
  fail "docker volume rm $(paste -sd ' ' <<<"$kept_volumes") (as docs/deployment.md says)"
fi
started=false

finish
