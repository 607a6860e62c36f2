#!/usr/bin/env bash
# The whole test suite: formatting, lints and the import scan, unit and
# integration tests (real ZooKeeper, real node processes), the OpenAPI
# checks, the deployment files, the container cluster, the committed Compose
# file and Vagrantfile run for real, and a short benchmark run.
# Usage: scripts/test.sh            (installs the system packages it needs)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
started=$(date +%s)

step "system packages"
scripts/install-deps.sh

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
scripts/import-scan.py

step "unit and integration tests"
cargo build --workspace
cargo test --workspace

step "OpenAPI document, schemathesis, /docs in Chromium"
scripts/check-openapi.sh

step "deployment files"
scripts/check-deploy-files.sh

step "cluster in containers"
tests/containers.sh

step "committed deployment files, for real: docker-compose.yml (Compose v2), Vagrantfile (docker provider)"
scripts/run-compose.sh
scripts/run-vagrant.sh

step "benchmark, smoke mode"
cargo bench --bench cluster -- --smoke

printf '\nAll checks passed in %ss.\n' "$(( $(date +%s) - started ))"
