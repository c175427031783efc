#!/usr/bin/env bash
# A longer run of the bank test (crates/cli/tests/e2e/tx.rs), in the spirit
# of Jepsen's: CLIENTS clients doing TRANSFERS random transfers each through
# read-modify-write transactions, a reader taking snapshots through
# read-only ones, the total checked in every committed snapshot and at the
# end; then the same with the directory service killed (SIGKILL) in the
# middle and SECONDS_AFTER_KILL seconds of transfers after its restart. On every metadata
# engine (SQLite, PostgreSQL, MongoDB), or those named as arguments.
#
#   scripts/bank.sh                      # 8 clients x 200 transfers, 20 s after the kill
#   CLIENTS=4 TRANSFERS=50 scripts/bank.sh sqlite postgres
#
# Each run prints "bank: N transfers committed, ... conflicts, ... snapshots".
# PostgreSQL and MongoDB are found as scripts/test.sh finds them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
export DFS_SECANTUSD=${DFS_SECANTUSD:-${DFS_VENV:-$HOME/.cache/dfs-venv}/bin/secantusd-py}
export DFS_BANK_CLIENTS=${CLIENTS:-8} DFS_BANK_TRANSFERS=${TRANSFERS:-200} DFS_BANK_SECONDS=${SECONDS_AFTER_KILL:-20}
engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(sqlite postgres mongo)
for engine in "${engines[@]}"; do
    echo "bank.sh: $engine, $DFS_BANK_CLIENTS clients x $DFS_BANK_TRANSFERS transfers" >&2
    DFS_TEST_META=$engine cargo test -p dfs-cli --test e2e --locked -- tx::bank --nocapture --test-threads 1 2>&1 \
        | grep -E '^bank|^test |panicked|test result'
done
