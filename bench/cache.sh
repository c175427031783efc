#!/usr/bin/env bash
# Cold get (chunks from the file servers) versus warm get (chunks from the
# client's disk cache) of one large file and of many small files.
#
#   bash bench/cache.sh [SIZE_MIB] [SMALL_FILES]      (defaults 1024 and 1000)
#
# A cold get runs after `dfs cache clear`; a warm get right after a get, so
# the cache holds every chunk and only the metadata round trip remains.
# Writes bench/results/cache.md.
source "$(dirname "$0")/lib.sh"
size_mib=${1:-1024}
small_files=${2:-1000}
bench_init
RESULTS=${RESULTS:-bench/results}
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.1f}')"; }

dfs_up data --replication 3
export DFS_CACHE_DIR=$work/cache DFS_CACHE_SIZE=$((size_mib + 512))M

echo "== one ${size_mib} MiB file"
head -c "$((size_mib * 1048576))" /dev/urandom > "$work/big"
"$dfs" -q put "$work/big" /big
"$dfs" -q cache clear
start=$(now); "$dfs" -q get /big - > /dev/null; end=$(now); big_cold=$(secs "$start" "$end")
start=$(now); "$dfs" -q get /big - > /dev/null; end=$(now); big_warm=$(secs "$start" "$end")
"$dfs" -q get /big - | cmp - "$work/big"
rm -f "$work/big"
echo "cold ${big_cold}s, warm ${big_warm}s"

echo "== ${small_files} small files (1-16 KiB)"
mkdir -p "$work/small"
python3 - "$work/small" "$small_files" <<'PY'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
for index in range(count):
    sub = os.path.join(root, f"d{index % 10}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{index}"), "wb") as out:
        out.write(os.urandom(random.randint(1024, 16384)))
PY
"$dfs" -q put -r "$work/small" /
"$dfs" -q cache clear
start=$(now); "$dfs" -q get -r /small "$work/small.cold"; end=$(now); small_cold=$(secs "$start" "$end")
start=$(now); "$dfs" -q get -r /small "$work/small.warm"; end=$(now); small_warm=$(secs "$start" "$end")
diff -r "$work/small" "$work/small.warm"
echo "cold ${small_cold}s, warm ${small_warm}s"

mkdir -p "$RESULTS"
cat > "$RESULTS"/cache.md <<MD
# Cold versus warm (cached) get

Command: \`bash bench/cache.sh $size_mib $small_files\` on $(nproc) cores, $(date -u +%Y-%m-%d), replication 3, release build.
Cold: after \`dfs cache clear\`, every chunk comes from a file server. Warm: the
cache holds every chunk; the client still asks the directory service for each
file's layout (close-to-open consistency) and hashes every cached chunk.
Everything runs on one machine over loopback, so a cold get is cheap here; on
a real network the ratio for large files grows with the network's slowness.
The small-file \`get -r\` writes each file (temp, fsync, rename) in both cases.

| workload | cold get s | warm get s | cold / warm |
| --- | --- | --- | --- |
| one ${size_mib} MiB file (\`get /big -\` to /dev/null) | $big_cold | $big_warm | $(ratio "$big_cold" "$big_warm") |
| ${small_files} files of 1-16 KiB (\`get -r\`) | $small_cold | $small_warm | $(ratio "$small_cold" "$small_warm") |
MD
cat "$RESULTS"/cache.md
