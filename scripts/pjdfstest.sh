#!/usr/bin/env bash
# The POSIX suite pjdfstest (crates.io 0.2.2, the Rust rewrite) against a
# `dfs mount` of a throw-away cluster (`dfs up --port 0` in a temp dir), run
# as root, as the suite wants. The mount acts as the DFS user `posix`.
#
# Prints pjdfstest's line per test case and its summary; the counts and
# every failure with its reason are kept in docs/posix.md (update them when
# they change). Exits with pjdfstest's status (non-zero on any failure not
# listed there as expected).
#
# Usage: scripts/pjdfstest.sh [TEST_PATTERNS...]   e.g. chmod rename
# Env: DFS_BIN (default: target/release/dfs or target/debug/dfs, built if
#      absent), PJDFSTEST (default ~/.cache/pjdfstest/bin/pjdfstest, installed
#      there if absent: needs apt's libacl1-dev), DFS_PJD_KEEP=1 keeps the
#      temp dir (cluster data, logs, the mount's log), DFS_PJD_MOUNT_OPTIONS
#      (default --allow-other) the options of `dfs mount`.
# Needs root and /dev/fuse; makes the local user `tests` (pjdfstest's second
# dummy user) if it does not exist. Not part of CI's test run (it takes a
# few minutes); its last counts are in docs/posix.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
PJD_VERSION=0.2.2

if [ "$(id -u)" != 0 ]; then
    echo "pjdfstest.sh: run as root (pjdfstest switches users and needs root's view)" >&2
    exit 1
fi
if [ ! -e /dev/fuse ]; then
    echo "pjdfstest.sh: /dev/fuse is absent: nothing can be mounted here" >&2
    exit 1
fi

PJD=${PJDFSTEST:-$HOME/.cache/pjdfstest/bin/pjdfstest}
if [ ! -x "$PJD" ]; then
    echo "pjdfstest.sh: installing pjdfstest $PJD_VERSION into $HOME/.cache/pjdfstest" >&2
    CARGO_TARGET_DIR=$HOME/.cache/pjdfstest-build cargo install --locked "pjdfstest@$PJD_VERSION" \
        --root "$HOME/.cache/pjdfstest" >&2
    PJD=$HOME/.cache/pjdfstest/bin/pjdfstest
fi
if ! getent passwd tests > /dev/null; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin tests
fi

KEEP=${DFS_PJD_KEEP:-}
# shellcheck source=scripts/cluster.sh
source scripts/cluster.sh
on_exit '"$BIN" umount "$WORK/mnt" 2>/dev/null || umount -l "$WORK/mnt"'
start_cluster pjdfstest.sh
export DFS_URL; DFS_URL=$(field directory_url)
dfs() { "$BIN" --cache-dir "$WORK/cache" "$@"; }

export DFS_CONFIG_DIR=$WORK/config-admin
field admin_password_file | xargs cat | dfs login admin --password-stdin > /dev/null
echo posix-password | dfs user add posix --password-stdin > /dev/null
export DFS_CONFIG_DIR=$WORK/config-posix
echo posix-password | dfs login posix --password-stdin > /dev/null
# pjdfstest's dummy users must reach its temp dir, made in the mount's root.
dfs chmod 755 /home/posix

mkdir -p "$WORK/mnt"
# The temp dir is 0700 (mktemp): the dummy users must reach the mount point.
chmod 711 "$WORK"
# Other local users (pjdfstest's dummy users) act as `posix` within the
# owners and modes the mount shows (--allow-other, docs/posix.md).
# DFS_PJD_MOUNT_OPTIONS replaces it (empty: the mount serves root alone).
# shellcheck disable=SC2086
dfs mount "$WORK/mnt" --log-file "$WORK/mount.log" ${DFS_PJD_MOUNT_OPTIONS---allow-other}
# rename_ctime: a rename moves the ctime of what moved (docs/posix.md, Times).
# Not utimensat/utime_now: their cases check atimes set apart from mtimes,
# and the namespace keeps no atime.
cat > "$WORK/pjdfstest.toml" <<EOF
[features]
rename_ctime = {}

[settings]
naptime = 0.001
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["tests", "tests"]]
EOF
# pjdfstest makes its own temp dir under the path given.
status=0
"$PJD" -c "$WORK/pjdfstest.toml" -p "$WORK/mnt" "$@" 2>&1 | tee "$WORK/pjdfstest.out" || status=$?
sed 's/\x1b\[[0-9;]*m//g' "$WORK/pjdfstest.out" > "$WORK/plain"
echo "pjdfstest.sh: not passed:" >&2
grep -E "^\S+ +(FAILED|skipped)$" "$WORK/plain" >&2 || true
exit "$status"
