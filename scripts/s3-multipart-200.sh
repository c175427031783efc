#!/usr/bin/env bash
# The S3 multipart e2e test with a 200 MiB upload (CI runs it with 40 MiB):
# boto3's transfer manager uploads it in 8 MiB parts, reads it back and
# `dfs get` checks it by hash. Needs the boto3/awscli venv scripts/test.sh
# makes (.cache/s3-test).
set -euo pipefail
cd "$(dirname "$0")/.."
export DFS_S3_VENV=${DFS_S3_VENV:-$PWD/.cache/s3-test} DFS_REQUIRE_S3_TOOLS=1 DFS_S3_BIG_MIB=200
exec cargo test -p dfs-cli --test e2e --locked -- s3::multipart_uploads_round_trip_and_refusals_store_nothing
