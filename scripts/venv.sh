# Sourced by the scripts that need Python tools (install-deps.sh,
# check-openapi.sh, check-deploy-files.sh, run-compose.sh): where their
# virtualenv lives. It is kept outside the checkout, in the user's cache,
# so that nothing but the project's own files sits in the working tree;
# TREECACHE_VENV puts it elsewhere.
# shellcheck shell=bash
venv=${TREECACHE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/treecache/venv}
