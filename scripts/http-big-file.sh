#!/usr/bin/env bash
# A large file up and down with curl through `PUT`/`GET /v1/files` of a
# fresh `dfs up` cluster (the directory service streams it into and out of
# chunks), a Range request, a conditional GET answering 304, and the peak
# resident memory (VmHWM) of the directory service, which serves every byte.
#
#   bash scripts/http-big-file.sh          # 300 MiB
#   bash scripts/http-big-file.sh 1024     # 1 GiB
#
# Builds the debug `dfs` (what the tests use) unless DFS_BIN names one.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
MIB=${1:-300}
if [ -z "${DFS_BIN:-}" ]; then
    cargo build --locked -q -p dfs-cli
    DFS_BIN=$CARGO_TARGET_DIR/debug/dfs
fi
work=$(mktemp -d)
cleanup() {
    [ -n "${up_pid:-}" ] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$DFS_BIN" up --data-dir "$work/data" --port 0 > "$work/banner" 2> "$work/up.log" &
up_pid=$!
for _ in $(seq 300); do
    [ -s "$work/banner" ] && break
    sleep 0.1
done
[ -s "$work/banner" ] || { cat "$work/up.log"; echo "dfs up did not start" >&2; exit 1; }
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/banner" "$1"; }
url=$(field directory_url)
password=$(cat "$(field admin_password_file)")
pid=$(cat "$work/data/directory.pid")
ticket=$(curl -sSf "$url/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"name\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
auth="Authorization: Bearer $ticket"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
peak() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }

head -c "${MIB}M" /dev/urandom > "$work/big"
echo "directory service (pid $pid) before: RSS $(( $(rss) / 1024 )) MiB, peak $(( $(peak) / 1024 )) MiB"
put=$(curl -sSf -T "$work/big" -H "$auth" "$url/v1/files?path=/big.bin" -o "$work/put.json" -w '%{time_total}')
echo "PUT  $MIB MiB: ${put}s  $(cat "$work/put.json")"
get=$(curl -sSf -H "$auth" "$url/v1/files?path=/big.bin" -o "$work/back" -w '%{time_total}')
cmp "$work/big" "$work/back"
echo "GET  $MIB MiB: ${get}s, identical"
start=$(( 8 * 1024 * 1024 - 100 ))
curl -sSf -H "$auth" -r "$start-$(( start + 199 ))" "$url/v1/files?path=/big.bin" -o "$work/range"
cmp "$work/range" <(tail -c +$(( start + 1 )) "$work/big" | head -c 200)
echo "GET  Range bytes=$start-$(( start + 199 )) (across two chunks): 206, identical"
etag=$(curl -sSf -I -H "$auth" "$url/v1/files?path=/big.bin" | awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
status=$(curl -sS -o /dev/null -w '%{http_code}' -H "$auth" -H "If-None-Match: $etag" "$url/v1/files?path=/big.bin")
[ "$status" = 304 ] || { echo "If-None-Match $etag: $status, not 304" >&2; exit 1; }
echo "GET  If-None-Match $etag: 304"
echo "directory service after: RSS $(( $(rss) / 1024 )) MiB, peak $(( $(peak) / 1024 )) MiB"
