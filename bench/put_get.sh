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
source "$(dirname "$0")/lib.sh"
size_mib=${1:-1024}
chunk_mib=${2:-8}
bench_init
RESULTS=${RESULTS:-bench/results}

echo "== baselines"
disk=$(baseline_disk "$size_mib")
loop=$(baseline_loopback)
echo "disk (dd fdatasync): $disk MiB/s   loopback: $loop MiB/s"

head -c "$((size_mib * 1048576))" /dev/urandom > "$work/src"
rows=""
for replication in 1 3; do
  dfs_up "data-r$replication" --replication "$replication" --chunk-size $((chunk_mib * 1048576))
  start=$(now); /usr/bin/time -f %M -o "$work/rss-put" "$dfs" --no-cache put "$work/src" /big > /dev/null; end=$(now)
  put=$(mibps "$((size_mib * 1048576))" "$end - $start")
  drop_caches
  start=$(now); /usr/bin/time -f %M -o "$work/rss-get" "$dfs" --no-cache get /big - > /dev/null; end=$(now)
  get=$(mibps "$((size_mib * 1048576))" "$end - $start")
  fs_pid=$(pgrep -f "serve file.*$dfs_data/file-1" | head -1)
  fs_rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$fs_pid/status")
  client_rss=$(( $(sort -n "$work/rss-put" "$work/rss-get" | tail -1) / 1024 ))
  put_ratio=$(ratio "$put" "$disk")
  get_ratio=$(ratio "$get" "$loop")
  echo "replication $replication: put $put MiB/s (x$put_ratio of disk), get $get MiB/s (x$get_ratio of loopback), client RSS $client_rss MiB, file server RSS $fs_rss MiB"
  rows+="| $replication | $put | $put_ratio | $get | $get_ratio | $client_rss | $fs_rss |"$'\n'
  dfs_down
done

mkdir -p "$RESULTS"
cat > "$RESULTS"/put_get.md <<MD
# One ${size_mib} MiB file, put then get, ${chunk_mib} MiB chunks

Command: \`bash bench/put_get.sh $size_mib $chunk_mib\` on $(nproc) cores, $(date -u +%Y-%m-%d).
Baselines in the same run: disk \`dd bs=1M conv=fdatasync\` = $disk MiB/s; loopback \`iperf3\` = $loop MiB/s.
Put and get run with \`--no-cache\` (the client cache would otherwise serve the get). Get is \`dfs get /big -\` to /dev/null after dropping the page cache where allowed.

| replication | put MiB/s | put / disk | get MiB/s | get / loopback | client peak RSS MiB | file server peak RSS MiB |
| --- | --- | --- | --- | --- | --- | --- |
$rows
MD
cat "$RESULTS"/put_get.md
