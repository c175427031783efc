#!/usr/bin/env bash
# Throughput of one large file, put then get, against this machine's limits
# measured in the same run.
#
#   bash bench/put_get.sh [SIZE_MIB] [CHUNK_MIB]     (defaults 1024 and 8)
#
# Baselines: `dd conv=fdatasync` (buffered write + fsync, the disk) and
# iperf3 over loopback (the network). Runs DFS with replication 1 and 3 and
# reports MiB/s, the ratio to each baseline, and the peak RSS of the client
# and of a file server. Writes bench/results/put_get.md.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
chunk_mib=${2:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
cargo build --release --locked -q
dfs=$CARGO_TARGET_DIR/release/dfs
command -v iperf3 >/dev/null || { apt-get install -y -q iperf3 >/dev/null 2>&1 || true; }
command -v /usr/bin/time >/dev/null || { apt-get install -y -q time >/dev/null 2>&1 || true; }

work=$(mktemp -d /tmp/dfs-bench.XXXXXX)
cleanup() { [ -n "${up_pid:-}" ] && kill "$up_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mibps() { python3 -c "print(f'{$1 / 1048576 / $2:.0f}')"; }
now() { date +%s.%N; }

echo "== baselines"
start=$(now); dd if=/dev/zero of="$work/dd" bs=1M count="$size_mib" conv=fdatasync status=none; end=$(now)
disk=$(mibps "$((size_mib * 1048576))" "$(echo "$end - $start" | bc)")
rm -f "$work/dd"
loop=NA
if command -v iperf3 >/dev/null; then
  iperf3 -s -1 -D -p 5299 >/dev/null 2>&1; sleep 0.5
  loop=$(iperf3 -c 127.0.0.1 -p 5299 -t 3 -J | python3 -c "import json,sys; print(round(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/8/1048576))")
fi
echo "disk (dd fdatasync): $disk MiB/s   loopback (iperf3): $loop MiB/s"

head -c "$((size_mib * 1048576))" /dev/urandom > "$work/src"
rows=""
for replication in 1 3; do
  data="$work/data-r$replication"
  "$dfs" up --port 0 --data-dir "$data" --replication "$replication" --chunk-size $((chunk_mib * 1048576)) > "$work/banner" 2> "$work/up.log" &
  up_pid=$!
  for _ in $(seq 300); do [ -s "$work/banner" ] && break; sleep 0.1; done
  url=$(python3 -c "import json; print(json.load(open('$work/banner'))['directory_url'])")
  export DFS_URL=$url DFS_CONFIG_DIR=$work/config
  "$dfs" login admin --password-stdin < "$data/admin-password" > /dev/null

  start=$(now); /usr/bin/time -f %M -o "$work/rss-put" "$dfs" --no-cache put "$work/src" /big > /dev/null; end=$(now)
  put=$(mibps "$((size_mib * 1048576))" "$(echo "$end - $start" | bc)")
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  start=$(now); /usr/bin/time -f %M -o "$work/rss-get" "$dfs" --no-cache get /big - > /dev/null; end=$(now)
  get=$(mibps "$((size_mib * 1048576))" "$(echo "$end - $start" | bc)")
  fs_pid=$(pgrep -f "serve file.*$data/file-1" | head -1)
  fs_rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$fs_pid/status")
  client_rss=$(( $(sort -n "$work/rss-put" "$work/rss-get" | tail -1) / 1024 ))
  put_ratio=$(python3 -c "print(f'{$put / $disk:.2f}')")
  get_ratio=NA; [ "$loop" != NA ] && get_ratio=$(python3 -c "print(f'{$get / $loop:.2f}')")
  echo "replication $replication: put $put MiB/s (x$put_ratio of disk), get $get MiB/s (x$get_ratio of loopback), client RSS $client_rss MiB, file server RSS $fs_rss MiB"
  rows+="| $replication | $put | $put_ratio | $get | $get_ratio | $client_rss | $fs_rss |"$'\n'
  kill "$up_pid"; wait "$up_pid" || true; up_pid=
done

mkdir -p bench/results
cat > bench/results/put_get.md <<MD
# One ${size_mib} MiB file, put then get, ${chunk_mib} MiB chunks

Command: \`bash bench/put_get.sh $size_mib $chunk_mib\` on $(nproc) cores, $(date -u +%Y-%m-%d).
Baselines in the same run: disk \`dd bs=1M conv=fdatasync\` = $disk MiB/s; loopback \`iperf3\` = $loop MiB/s.
Put and get run with \`--no-cache\` (the client cache would otherwise serve the get). Get is \`dfs get /big -\` to /dev/null after dropping the page cache where allowed.

| replication | put MiB/s | put / disk | get MiB/s | get / loopback | client peak RSS MiB | file server peak RSS MiB |
| --- | --- | --- | --- | --- | --- | --- |
$rows
MD
cat bench/results/put_get.md
