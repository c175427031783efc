#!/usr/bin/env bash
# Issue 23, the scale benchmark (idle part): the directory service's idle CPU
# and resident memory over a synthesised chunk table, on SQLite and PostgreSQL.
#
#   CHUNKS="100000 1000000" bash bench/scale.sh          # the default
#   CHUNKS=20000 ENGINES=sqlite SECONDS_IDLE=10 bash bench/scale.sh   # a smoke run
#   BENCH_NO_BUILD=1 DFS_BIN=target/debug/dfs bash bench/scale.sh     # another build
#
# For each chunk count N: `bench/synth_dump.py` writes N chunks in files of
# 100 chunks, 100 files a directory, 3 replica records each (no bytes: the
# servers named in them are not running, and none is registered, so nothing
# is placed or repaired), `dfs meta import` loads it into a fresh store, and
# `dfs serve directory` runs on it alone for SECONDS_IDLE seconds after a
# 10-s settling time: CPU ticks (utime+stime, /proc/PID/stat) over that time,
# as a share of one core, and RSS at the end. Writes bench/results/scale.md.
# PostgreSQL: a throwaway server (system initdb), as in bench/meta.sh.
source "$(dirname "$0")/lib.sh"
bench_init

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
"$dfs" keygen "$work/cluster.key" > /dev/null 2>&1 || head -c 32 /dev/urandom > "$work/cluster.key"
chmod 600 "$work/cluster.key"
for engine in $engines; do
  [ "$engine" = postgres ] && [ -z "${pg_port:-}" ] && start_postgres
  for n in $counts; do
    files=$(( (n + 99) / 100 ))
    dirs=$(( (files + 99) / 100 ))
    dump=$work/dump-$n.json
    [ -f "$dump" ] || python3 "$bench_root/bench/synth_dump.py" "$files" 100 "$dirs" 3 5 > "$dump"
    case $engine in
      sqlite) mkdir -p "$work/$engine-$n"; meta="sqlite://$work/$engine-$n/meta.db" ;;
      postgres)
        psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE dfs_$n" > /dev/null
        meta="postgres://postgres@127.0.0.1:$pg_port/dfs_$n" ;;
    esac
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

mkdir -p "$results"
{
  echo "# Scale: the directory service idle over a synthesised chunk table"
  echo
  echo "\`bash bench/scale.sh\` ($(date -u +%Y-%m-%d), $(nproc) cores, idle ${idle} s after 10 s). Chunks in files of 100, 3 replica records each, no file server running."
  echo
  echo "| engine | chunks | idle CPU (one core) | RSS | full scans | import |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} > "$results/scale.md"
cat "$results/scale.md"
