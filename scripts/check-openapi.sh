#!/usr/bin/env bash
# Checks that openapi.yaml is a valid OpenAPI document and that live nodes
# behave exactly as it says:
#   1. installs the pinned Python tools into the virtualenv of scripts/venv.sh
#      (scripts/openapi/requirements.txt);
#   2. validates openapi.yaml with openapi-spec-validator;
#   3. builds the node and starts a 3-node cluster (depth 2) on free loopback ports;
#   4. checks that every node serves openapi.yaml byte for byte, and ignores a
#      malformed X-Treecache-Budget-Ms as the document says;
#   5. fuzzes every node with schemathesis, every check on, fixed seed, bounded
#      examples, /internal/ excluded (scripts/openapi/schemathesis.toml);
#   6. renders /docs of a node started with --docs-assets-url in headless
#      Chromium, the swagger-ui assets served from this machine, and looks for
#      the operations in the rendered page.
# Prints a PASS/FAIL line per step and exits non-zero when any step failed.
# Everything it starts is stopped on exit, also on failure or Ctrl-C.
#
# Needs: python3 (with venv), cargo, curl, chromium, ZooKeeper (the Debian
# package; scripts/install-deps.sh installs chromium and zookeeper).
# Knobs: CHECK_OPENAPI_EXAMPLES (examples per operation, default 30),
#        CHECK_OPENAPI_SEED (schemathesis seed, default 4242).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=scripts/venv.sh
. "$repo/scripts/venv.sh"
requirements=$repo/scripts/openapi/requirements.txt
st_config=$repo/scripts/openapi/schemathesis.toml
node_bin=$repo/target/debug/treecache
examples=${CHECK_OPENAPI_EXAMPLES:-30}
seed=${CHECK_OPENAPI_SEED:-4242}

work=$(mktemp -d -t check-openapi.XXXXXX)
kept_logs=$repo/target/check-openapi-logs
started=() # process-group leaders started here, stopped in reverse order
results=()
failures=0
started_at=$SECONDS

say() { printf 'check-openapi: %s\n' "$*" >&2; }

# Starts "$@" in a process group of its own, output to log file $1.
start_group() {
  local logfile=$1
  shift
  setsid "$@" >"$logfile" 2>&1 &
  started+=("$!")
}

# Runs "$@" like start_group and waits for it. Waiting this way (rather than
# in the foreground) lets a signal to this script stop it at once: the trap
# runs during `wait`, and cleanup stops the group.
run_group() {
  local status=0
  start_group "$@"
  wait "${started[-1]}" || status=$?
  unset 'started[-1]'
  return "$status"
}

# Stops a process group: SIGTERM first (the cluster command stops its
# children on it), SIGKILL for whatever is left after 15 seconds.
stop_group() {
  local pgid=$1 i
  kill -TERM -- "-$pgid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    kill -0 -- "-$pgid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  wait "$pgid" 2>/dev/null || true
}

cleanup() {
  local status=$? i
  trap - EXIT INT TERM
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    stop_group "${started[i]}"
  done
  if ((failures)) || [ "$status" != 0 ]; then
    # Keep the logs (cluster, schemathesis reports, rendered page) for a look.
    rm -rf "$kept_logs"
    mkdir -p "$(dirname "$kept_logs")"
    rm -rf "$work/chromium-profile"
    mv "$work" "$kept_logs" && say "logs kept in $kept_logs"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs one step; records PASS or FAIL. Step functions return non-zero on
# failure explicitly (set -e does not apply inside an `if` condition).
step() {
  local name=$1
  shift
  say "---- $name"
  if "$@"; then
    results+=("PASS  $name")
  else
    results+=("FAIL  $name")
    failures=$((failures + 1))
  fi
}

# Records a step that could not run because an earlier one failed.
not_run() {
  results+=("FAIL  $1 (not run: $2)")
  failures=$((failures + 1))
}

# Prints N free TCP ports on 127.0.0.1: the first is a base port B such that
# B+1..B+3 are free too (the cluster's nodes), the others are single ports.
pick_ports() {
  python3 - "$@" <<'EOF'
import random, socket, sys

def free(port):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False

# Below the kernel's ephemeral range (32768 and up by default), where the
# outgoing connections of other tests running beside this one take their
# ports: a port free now there may be taken by one before a node binds it.
taken = set()
rng = random.SystemRandom()
while True:
    base = rng.randrange(20000, 32000, 10)
    if all(free(base + i) for i in range(1, 4)):
        taken.update(range(base, base + 4))
        break
out = [base]
while len(out) < int(sys.argv[1]):
    port = rng.randrange(20000, 32000)
    if port not in taken and free(port):
        taken.add(port)
        out.append(port)
print(*out)
EOF
}

# Polls until "$@" succeeds or $1 seconds pass; the process group $2 must stay alive.
wait_until() {
  local seconds=$1 pgid=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" 2>/dev/null; do
    if ! kill -0 -- "-$pgid" 2>/dev/null; then
      say "the process it was waiting for has exited"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "gave up after ${seconds}s waiting for: $*"
      return 1
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- steps

install_tools() {
  local stamp=$venv/.check-openapi-requirements
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || return 1
  fi
  if ! cmp -s "$requirements" "$stamp"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" || return 1
    cp "$requirements" "$stamp"
  fi
  "$venv/bin/schemathesis" --version || return 1
}

validate_document() {
  "$venv/bin/openapi-spec-validator" "$repo/openapi.yaml"
}

build_node() {
  if ! run_group "$work/build.log" cargo build -p treecache; then
    tail -n 40 "$work/build.log" >&2
    return 1
  fi
  [ -x "$node_bin" ]
}

tree_has_three_nodes() {
  curl -fsS --max-time 2 "http://127.0.0.1:$((base + 1))/nodes" |
    python3 -c 'import json, sys; sys.exit(len(json.load(sys.stdin)["nodes"]) != 3)'
}

node_has_joined() {
  curl -fsS --max-time 2 "http://127.0.0.1:$1/" |
    python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["joined"] is not True)'
}

start_cluster() {
  say "cluster on 127.0.0.1:$((base + 1))-$((base + 3)), ZooKeeper 127.0.0.1:$zk_port"
  start_group "$work/cluster.log" "$node_bin" cluster --depth 2 \
    --base-port "$base" --zookeeper "127.0.0.1:$zk_port"
  cluster_pgid=${started[-1]}
  wait_until 120 "$cluster_pgid" tree_has_three_nodes || return 1
  local id
  for id in 1 2 3; do
    wait_until 30 "$cluster_pgid" node_has_joined $((base + id)) || return 1
  done
  say "cluster is up ($((SECONDS - started_at))s since start)"
}

serves_document_verbatim() {
  local id served
  for id in 1 2 3; do
    served=$work/served-$id.yaml
    curl -fsS --max-time 5 -o "$served" "http://127.0.0.1:$((base + id))/openapi.yaml" || return 1
    if ! cmp "$served" "$repo/openapi.yaml"; then
      say "NODE-$id serves an openapi.yaml that differs from the repository's"
      return 1
    fi
  done
}

# The document says a budget that is not a whole number is ignored; the
# fuzzing cannot tell that from a budget that is used, so check it here.
budget_header_junk_is_ignored() {
  local id value status
  for id in 1 2; do
    for value in soon -1 1.5 5000; do
      status=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' \
        -H "X-Treecache-Budget-Ms: $value" \
        "http://127.0.0.1:$((base + id))/store/check-openapi-absent-key") || return 1
      if [ "$status" != 404 ]; then
        say "NODE-$id: GET of an absent key with X-Treecache-Budget-Ms: '$value' answered $status, expected 404"
        return 1
      fi
    done
  done
}

# schemathesis against one node; extra arguments narrow the operations.
fuzz() {
  local id=$1 label=$2
  shift 2
  local url="http://127.0.0.1:$((base + id))"
  local log=$work/schemathesis-$label.log status=0
  run_group "$log" "$venv/bin/schemathesis" --config-file "$st_config" run "$url/openapi.yaml" \
    --url "$url" \
    --checks all \
    --seed "$seed" \
    --max-examples "$examples" \
    --exclude-path-regex '^/internal/' \
    --generation-database none \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    --report junit,har --report-dir "$work/reports-$label" \
    "$@" || status=$?
  cat "$log"
  return "$status"
}

# The nodes must survive the fuzzing: each still answers, and the cluster
# command (which stops when one of its nodes exits) still runs.
nodes_survived() {
  local id ok=0
  for id in 1 2 3; do
    if ! curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$((base + id))/"; then
      say "NODE-$id does not answer any more"
      ok=1
    fi
  done
  if ! kill -0 "$cluster_pgid" 2>/dev/null; then
    say "the cluster command has exited"
    ok=1
  fi
  return "$ok"
}

assets_are_served() {
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$assets_port/swagger-ui-bundle.js"
}

docs_node_answers() {
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$docs_port/docs"
}

render_docs() {
  local assets_dir
  assets_dir=$("$venv/bin/python" -c 'import swagger_ui_bundle; print(swagger_ui_bundle.swagger_ui_path)') || return 1
  start_group "$work/assets.log" python3 -m http.server "$assets_port" \
    --bind 127.0.0.1 --directory "$assets_dir"
  wait_until 20 "${started[-1]}" assets_are_served || return 1

  # A root of a one-level tree of its own, under its own znode prefix.
  start_group "$work/docs-node.log" "$node_bin" node --id 1 --depth 1 \
    --listen "127.0.0.1:$docs_port" --advertise "127.0.0.1:$docs_port" \
    --zookeeper "127.0.0.1:$zk_port" --zk-prefix /check-openapi-docs \
    --docs-assets-url "http://127.0.0.1:$assets_port"
  wait_until 30 "${started[-1]}" docs_node_answers || return 1

  local dom=$work/docs-dom.html
  # The page's DOM goes to stdout (kept in $dom), Chromium's chatter to the log.
  # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
  run_group "$work/chromium.log" sh -c 'out=$1; shift; exec "$@" 2>&1 >"$out"' sh "$dom" \
    timeout -k 5 120 chromium --headless --no-sandbox --disable-gpu \
    --disable-background-networking --disable-component-update --disable-sync \
    --no-first-run --user-data-dir="$work/chromium-profile" \
    --virtual-time-budget=30000 --dump-dom "http://127.0.0.1:$docs_port/docs" || {
    say "chromium failed:"
    tail -n 20 "$work/chromium.log" >&2
    return 1
  }

  local missing=0 id
  # Swagger UI gives every rendered operation the id operations-<tag>-<operationId>.
  for id in operations-data-getValue operations-data-putValue \
    operations-data-deleteValue operations-cluster-getTree \
    operations-cluster-getStatus operations-cluster-joinTree; do
    if ! grep -q "id=\"$id\"" "$dom"; then
      say "the rendered /docs page has no element $id"
      missing=1
    fi
  done
  if ! grep -q 'class="opblock opblock-put' "$dom"; then
    say "the rendered /docs page has no PUT operation block"
    missing=1
  fi
  if ! grep -q '"GET /swagger-ui-bundle.js HTTP/1.1" 200' "$work/assets.log"; then
    say "the page did not load swagger-ui-bundle.js from --docs-assets-url"
    missing=1
  fi
  if ((missing)); then
    say "the start of the rendered page:"
    head -c 4000 "$dom" >&2
    return 1
  fi
  say "rendered /docs lists $(grep -o 'class="opblock opblock-' "$dom" | wc -l) operations"
}

# ---------------------------------------------------------------- main

read -r base zk_port assets_port docs_port <<<"$(pick_ports 4)"

step "python tools installed in $venv" install_tools
tools_ok=${results[-1]%%  *}
if [ "$tools_ok" = PASS ]; then
  step "openapi.yaml is valid OpenAPI 3.0" validate_document
else
  not_run "openapi.yaml is valid OpenAPI 3.0" "no tools"
fi

step "node binary built" build_node
cluster_ok=FAIL
if [ "${results[-1]%%  *}" = PASS ]; then
  step "3-node cluster started" start_cluster
  cluster_ok=${results[-1]%%  *}
else
  not_run "3-node cluster started" "no binary"
fi

fuzz_steps=(
  "schemathesis NODE-2 (leaf)|2|node2"
  "schemathesis NODE-3 (leaf)|3|node3"
  "schemathesis NODE-1 (root), all but /nodes/join|1|node1|--exclude-operation-id|joinTree"
  # Last: fuzzed joins re-point the leaves' slots at made-up addresses.
  "schemathesis NODE-1 (root), /nodes/join|1|node1-join|--include-operation-id|joinTree|--phases|examples,coverage,fuzzing"
)
if [ "$cluster_ok" = PASS ] && [ "$tools_ok" = PASS ]; then
  step "every node serves openapi.yaml byte for byte" serves_document_verbatim
  step "X-Treecache-Budget-Ms that is not a whole number is ignored" budget_header_junk_is_ignored
  for spec in "${fuzz_steps[@]}"; do
    IFS='|' read -r -a parts <<<"$spec"
    step "${parts[0]}" fuzz "${parts[@]:1}"
  done
  step "every node still answers after the fuzzing" nodes_survived
  step "headless Chromium renders /docs with local swagger-ui assets" render_docs
else
  not_run "every node serves openapi.yaml byte for byte" "no cluster"
  not_run "X-Treecache-Budget-Ms that is not a whole number is ignored" "no cluster"
  for spec in "${fuzz_steps[@]}"; do
    not_run "${spec%%|*}" "no cluster"
  done
  not_run "every node still answers after the fuzzing" "no cluster"
  not_run "headless Chromium renders /docs with local swagger-ui assets" "no cluster"
fi

if ((failures)) && [ -f "$work/cluster.log" ]; then
  say "last lines of the cluster's log:"
  tail -n 30 "$work/cluster.log" >&2
fi

echo
echo "check-openapi summary ($((SECONDS - started_at))s, seed $seed, $examples examples per operation):"
printf '  %s\n' "${results[@]}"
passed=$((${#results[@]} - failures))
echo "check-openapi: $passed passed, $failures failed"
if ((failures)); then
  echo "check-openapi: FAIL"
  exit 1
fi
echo "check-openapi: PASS"
