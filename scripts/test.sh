#!/usr/bin/env bash
# Runs every test: unit tests, the storage engine suite and the end-to-end
# tests that start real clusters of `dfs` processes on loopback.
# Installs nothing system-wide today; engines that need a database server
# will start throwaway servers here.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
cargo test --workspace --locked "$@"
