#!/usr/bin/env bash
# Issue 23, the scale benchmark, in four parts (PARTS, default all four), on
# SQLite and PostgreSQL (ENGINES). Writes bench/results/scale.md.
#
#   bash bench/scale.sh                                   # everything (about an hour)
#   PARTS=idle CHUNKS=20000 ENGINES=sqlite SECONDS_IDLE=10 bash bench/scale.sh   # a smoke run
#   BENCH_NO_BUILD=1 DFS_BIN=target/debug/dfs bash bench/scale.sh                # another build
#
# idle: for each chunk count N in CHUNKS (default 100000 1000000),
#   `bench/synth_dump.py` writes N chunks in files of 100 chunks, 100 files a
#   directory, 3 replica records each (no bytes: the servers named in them
#   are not running, and none is registered, so nothing is placed or
#   repaired), `dfs meta import` loads it into a fresh store, and `dfs serve
#   directory` runs on it alone for SECONDS_IDLE seconds after a 10-s
#   settling time: CPU ticks (utime+stime, /proc/PID/stat) over that time,
#   as a share of one core, and RSS at the end.
# ops: for each file count N in OPS_FILES (default 10000 1000000), a
#   namespace of N files (one chunk each, 3 replica records) in N/10
#   directories is imported, a cluster starts on it (`dfs up`, one file
#   server, replication 1), and dfs-bench (16 clients) runs mkdir + stat of
#   OPS_COUNT (5000) directories, small puts (1 KiB, inline) + gets of OPS_COUNT
#   files, and 32 listings of a directory of 1,000 entries: ops/s at each N,
#   and the ratio of the largest N to the smallest.
# big: one file of BIG_CHUNKS chunks (default 1000000) of 4 KiB (random
#   bytes, 4 GB at the default) through `dfs put` and `dfs get` (no cache),
#   compared by SHA-256; times, and the peak RSS of the cluster and client.
# repair: on each engine, for each count N in REPAIR_CHUNKS (default 5000 20000), N chunks
#   of 4 KiB are written to 3 file servers with replication 2, one server is
#   killed with SIGKILL, and the time until no chunk is under-replicated is
#   taken (heartbeat timeout 3 s, included): repair time as a function of
#   the chunks the dead server held, extrapolated linearly beyond. The
#   repair throttle is raised to REPAIR_RATE copies a second (default 2000;
#   the cluster's default of 8 a second, meant for 8 MiB chunks, would
#   measure only the throttle).
# PostgreSQL: a throwaway server (system initdb), as in bench/meta.sh.
source "$(dirname "$0")/lib.sh"
BENCH_PACKAGES=dfs-bench bench_init

parts=${PARTS:-idle ops big repair}
has_part() { [[ " $parts " == *" $1 "* ]]; }

engines=${ENGINES:-sqlite postgres}
counts=${CHUNKS:-100000 1000000}
idle=${SECONDS_IDLE:-30}
results=${RESULTS:-$bench_root/bench/results}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks_per_sec=$(getconf CLK_TCK)

start_postgres() {
  local dir=$work/pg port
  port=$(free_port)
  chmod 755 "$work"
  mkdir -p "$dir" && chown postgres "$dir"
  runuser -u postgres -- initdb -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync > /dev/null
  runuser -u postgres -- pg_ctl -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start > /dev/null
  bench_on_exit "runuser -u postgres -- pg_ctl -D '$dir/data' -m fast stop"
  pg_port=$port
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

rows=()
ops_rows=()
big_rows=()
repair_rows=()
"$dfs" keygen "$work/cluster.key" > /dev/null 2>&1 || head -c 32 /dev/urandom > "$work/cluster.key"
chmod 600 "$work/cluster.key"
fresh_meta() { # ENGINE NAME: sets meta to a fresh, empty store
  case $1 in
    sqlite) mkdir -p "$work/meta-$2"; meta="sqlite://$work/meta-$2/meta.db" ;;
    postgres)
      psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE dfs_$2" > /dev/null
      meta="postgres://postgres@127.0.0.1:$pg_port/dfs_$2" ;;
  esac
}

for engine in $engines; do
  [ "$engine" = postgres ] && [ -z "${pg_port:-}" ] && start_postgres
  has_part idle || continue
  for n in $counts; do
    files=$(( (n + 99) / 100 ))
    dirs=$(( (files + 99) / 100 ))
    dump=$work/dump-$n.json
    [ -f "$dump" ] || python3 "$bench_root/bench/synth_dump.py" "$files" 100 "$dirs" 3 5 > "$dump"
    mkdir -p "$work/$engine-$n"
    fresh_meta "$engine" "$n"
    start=$(now)
    "$dfs" meta import --meta "$meta" "$dump" > /dev/null
    import_s=$(python3 -c "print(round($(now) - $start, 1))")
    port=$(free_port)
    "$dfs" serve directory --listen "127.0.0.1:$port" --meta "$meta" --key-file "$work/cluster.key" \
      --auth-url http://127.0.0.1:9 --data-dir "$work/$engine-$n" > "$work/$engine-$n.log" 2>&1 &
    pid=$!
    bench_on_exit "kill $pid"
    sleep 10
    before=$(cpu_ticks "$pid")
    sleep "$idle"
    after=$(cpu_ticks "$pid")
    rss=$(rss_mib "$pid")
    scans=$(curl -s "127.0.0.1:$port/metrics" | awk '/^dfs_full_chunk_scans_total / {print $2}')
    kill "$pid"; wait "$pid" 2>/dev/null || true
    share=$(python3 -c "print(f'{100 * ($after - $before) / $ticks_per_sec / $idle:.2f}')")
    echo "scale: $engine, $n chunks: idle CPU $share% of a core over ${idle} s, RSS $rss MiB, import ${import_s} s" >&2
    rows+=("| $engine | $n | $share % | $rss MiB | ${scans:-?} | $import_s s |")
  done
done

ops_out=$work/ops.jsonl
ops_count=${OPS_COUNT:-5000}
if has_part ops; then
  for engine in $engines; do
    [ "$engine" = postgres ] && [ -z "${pg_port:-}" ] && start_postgres
    for n in ${OPS_FILES:-10000 1000000}; do
      dump=$work/ops-dump-$n.json
      [ -f "$dump" ] || python3 "$bench_root/bench/synth_dump.py" "$n" 1 "$(( (n + 9) / 10 ))" 3 5 --no-users > "$dump"
      fresh_meta "$engine" "ops_$n"
      "$dfs" meta import --meta "$meta" "$dump" > /dev/null
      dfs_up "ops-$engine-$n" --file-servers 1 --replication 1 --meta "$meta"
      for workload in "meta --root /ops-meta --count $ops_count" \
                      "small --root /ops-small --count $ops_count --size 1024" \
                      "list --root /ops-list --count 1000 --size 0 --lists 32"; do
        # shellcheck disable=SC2086
        "$dfs_bench" --backend dfs --target "$DFS_URL" --password-file "$dfs_data/admin-password" \
          --workers 16 --label "$engine $n" --workload $workload | tee -a "$ops_out"
      done
      dfs_down
    done
  done
fi

if has_part big; then
  big=${BIG_CHUNKS:-1000000}
  bytes=$(( big * 4096 ))
  dfs_up big --file-servers 1 --replication 1 --chunk-size 4096
  start=$(now)
  head -c "$bytes" /dev/urandom | tee >(sha256sum | cut -d' ' -f1 > "$work/big.in") |
    /usr/bin/time -f %M -o "$work/big.put.rss" "$dfs" --no-cache put - /big
  put_s=$(python3 -c "print(round($(now) - $start, 1))")
  start=$(now)
  /usr/bin/time -f %M -o "$work/big.get.rss" "$dfs" --no-cache get /big - | sha256sum | cut -d' ' -f1 > "$work/big.out"
  get_s=$(python3 -c "print(round($(now) - $start, 1))")
  # Peak RSS, and what it is made of at the end: anonymous memory, and file
  # pages mapped (the directory service maps its SQLite database).
  cluster_rss=$(for service in directory file-1; do
    awk -v s="$service" '/VmHWM/ {hwm = $2} /RssAnon/ {anon = $2} /RssFile/ {file = $2}
      END {printf "%s %.0f MiB (at the end %.0f anonymous, %.0f mapped files) ", s, hwm / 1024, anon / 1024, file / 1024}' \
      "/proc/$(cat "$dfs_data/$service.pid")/status"
  done)
  same=$(cmp -s "$work/big.in" "$work/big.out" && echo "same SHA-256" || echo "DIFFERENT SHA-256")
  echo "scale: big: $big chunks, put ${put_s} s, get ${get_s} s, $same" >&2
  big_rows+=("| $big | $(( bytes / 1048576 )) MiB | ${put_s} s ($(mibps "$bytes" "$put_s") MiB/s) | ${get_s} s ($(mibps "$bytes" "$get_s") MiB/s) | $same | ${cluster_rss}| $(( $(cat "$work/big.put.rss") / 1024 )) / $(( $(cat "$work/big.get.rss") / 1024 )) MiB |")
  dfs_down
fi

if has_part repair; then
  for engine in $engines; do
    [ "$engine" = postgres ] && [ -z "${pg_port:-}" ] && start_postgres
    for n in ${REPAIR_CHUNKS:-5000 20000}; do
      fresh_meta "$engine" "repair_$n"
      dfs_up "repair-$engine-$n" --file-servers 3 --replication 2 --chunk-size 4096 --heartbeat-timeout 3 \
        --repair-rate "${REPAIR_RATE:-2000}" --meta "$meta"
      head -c $(( n * 4096 )) /dev/urandom | "$dfs" --no-cache put - /repair
      victim=$(dfs_file_server_urls | sed -n 1p)
      held=$(curl -s "$victim/metrics" | awk '/^dfs_chunks / {print $2}')
      # file-1 is the first in the banner; its .hold file keeps `dfs up` from restarting it.
      touch "$dfs_data/file-1.hold"
      start=$(now)
      kill -9 "$(cat "$dfs_data/file-1.pid")"
      while :; do
        under=$("$dfs" --json cluster status 2>/dev/null |
          python3 -c "import json,sys; print(json.load(sys.stdin)['under_replicated_chunks'])" 2>/dev/null || echo "?")
        # Counted once the server is declared dead (heartbeat timeout) and its chunks are short.
        [ "$under" = 0 ] && [ "$(python3 -c "print(1 if $(now) - $start > 4 else 0)")" = 1 ] && break
        sleep 0.5
      done
      repair_s=$(python3 -c "print(round($(now) - $start, 1))")
      echo "scale: repair: $engine, $n chunks written, ${held:-?} on the killed server, ${repair_s} s to full replication" >&2
      repair_rows+=("| $engine | $n | ${held:-?} | ${repair_s} s | $(python3 -c "print(f'{${held:-0} / max($repair_s - 3, 0.1):.0f}')") |")
      dfs_down
    done
  done
fi

mkdir -p "$results"
{
  echo "# Scale"
  echo
  echo "\`bash bench/scale.sh\` ($(date -u +%Y-%m-%d), $(nproc) cores, parts: $parts)."
  if has_part idle; then
    echo
    echo "## The directory service idle over a synthesised chunk table"
    echo
    echo "Idle ${idle} s after 10 s. Chunks in files of 100, 3 replica records each, no file server running."
    echo
    echo "| engine | chunks | idle CPU (one core) | RSS | full scans | import |"
    echo "| --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
  fi
  if has_part ops; then
    echo
    echo "## Operations per second by namespace size"
    echo
    echo "dfs-bench, 16 clients, on a cluster started on an imported namespace (files of one chunk, 10 a directory)."
    echo
    python3 - "$ops_out" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
figure = {}
for l in lines:
    engine, n = l["label"].split()
    figure[(engine, int(n), (l["workload"], l["phase"]))] = l["ops_per_s"]
engines = list(dict.fromkeys(k[0] for k in figure))
sizes = sorted({k[1] for k in figure})
phases = [(("meta", "mkdir"), "mkdir"), (("meta", "stat"), "stat"), (("small", "write"), "small put (1 KiB)"),
          (("small", "read"), "small get"), (("list", "list"), "list 1,000 entries")]
print("| engine | operation | " + " | ".join(f"{n:,} files" for n in sizes) + f" | ratio {sizes[-1]:,} / {sizes[0]:,} |")
print("| --- | --- |" + " ---: |" * (len(sizes) + 1))
for e in engines:
    for phase, name in phases:
        values = [figure.get((e, n, phase)) for n in sizes]
        if None in values:
            continue
        print(f"| {e} | {name} | " + " | ".join(f"{v:.0f}" for v in values) + f" | {values[-1] / values[0]:.2f} |")
PY
  fi
  if has_part big; then
    echo
    echo "## One file of many chunks (4 KiB chunks, one file server, replication 1)"
    echo
    echo "| chunks | bytes | dfs put | dfs get | read back | peak RSS of the services | client peak RSS put / get |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${big_rows[@]}"
  fi
  if has_part repair; then
    echo
    echo "## Repair time after kill -9 of a file server (3 servers, replication 2, heartbeat timeout 3 s)"
    echo
    echo "| engine | chunks written | on the killed server | kill to full replication | chunks re-replicated per second (after the 3 s timeout) |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s\n' "${repair_rows[@]}"
  fi
} > "$results/scale.md"
cat "$results/scale.md"
