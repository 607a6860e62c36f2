#!/usr/bin/env bash
# Installs the system packages the test suite needs on a fresh Debian machine.
# Each line names who needs the package; installing is skipped when present.
set -euo pipefail

packages=(
  zookeeper   # the real ZooKeeper every cluster test starts
  curl        # scripts/check-openapi.sh and tests/containers.sh talk to nodes with it
  jq          # tests/containers.sh reads the nodes' JSON answers; scripts/check-deploy-files.sh the merged Compose files
  chromium    # scripts/check-openapi.sh renders /docs headless
  ruby        # scripts/check-deploy-files.sh: ruby -c Vagrantfile
  vagrant     # scripts/check-deploy-files.sh: vagrant validate (docker provider)
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
