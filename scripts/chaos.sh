#!/usr/bin/env bash
# A fault campaign against a real cluster (`dfs up --file-servers 4`):
# writers and readers through `dfs` while services are killed with -9,
# file servers paused with SIGSTOP and chunk files of one server corrupted.
# Prints a JSON report (faults, acked, refused, lost, wrong, time to full
# replication) and exits non-zero if anything acknowledged was lost or any
# read was wrong. See scripts/chaos.py for what each figure means.
#
#   bash scripts/chaos.sh --seconds 300            # a random seed, printed
#   bash scripts/chaos.sh --seconds 60 --seed 7    # replay a schedule
#
# Builds the debug `dfs` (what the tests use) unless DFS_BIN names one.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
if [ -z "${DFS_BIN:-}" ]; then
    cargo build --locked -q -p dfs-cli
    DFS_BIN=$CARGO_TARGET_DIR/debug/dfs
fi
exec python3 scripts/chaos.py --dfs "$DFS_BIN" "$@"
