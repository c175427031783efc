#!/usr/bin/env bash
# The warm W1 get against loopback, paired round by round: a steadier figure
# than one run of bench/run.sh on a machine whose loopback moves by a third
# from minute to minute.
#
#   bash bench/warm_get.sh [ROUNDS] [SIZE_MIB] [GETS]     (defaults 8, 1024, 3)
#   DFS_BIN=/path/to/dfs BENCH_NO_BUILD=1 bash bench/warm_get.sh   (another build, to compare)
#
# One cluster (`dfs up`, 3 file servers, replication 1) holds one SIZE_MIB
# file, read once so that the servers' page cache holds it. Each round: a 1-s
# iperf3 sample, GETS warm `dfs --no-cache get` of the file to /dev/null, then
# another 1-s sample. A round's ratio is the gets' MiB/s over the mean of
# its two samples; the median of the rounds is the figure. Writes
# bench/results/warm_get.md.
source "$(dirname "$0")/lib.sh"
rounds=${1:-8}
size_mib=${2:-1024}
gets=${3:-3}
bench_init
RESULTS=${RESULTS:-bench/results}

head -c "$((size_mib * 1048576))" /dev/urandom > "$work/src"
dfs_up warm --replication 1 --file-servers 3
"$dfs" -q --no-cache put "$work/src" /warm
"$dfs" -q --no-cache get /warm - > /dev/null

ratios=()
rows=""
for round in $(seq "$rounds"); do
  before=$(baseline_loopback 1)
  start=$(now)
  for _ in $(seq "$gets"); do "$dfs" -q --no-cache get /warm - > /dev/null; done
  end=$(now)
  after=$(baseline_loopback 1)
  get=$(mibps "$((gets * size_mib * 1048576))" "$end - $start")
  loop=$(python3 -c "print(round(($before + $after) / 2))")
  ratios+=("$(ratio "$get" "$loop")")
  echo "round $round: get $get MiB/s, loopback $loop MiB/s ($before, $after), ratio ${ratios[-1]}"
  rows+="| $round | $get | $loop | ${ratios[-1]} |"$'\n'
done
dfs_down
median=$(python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "${ratios[@]}")
echo "median ratio of the warm get to loopback: $median"

mkdir -p "$RESULTS"
cat > "$RESULTS/warm_get.md" <<MD
# Warm get against loopback, paired round by round

Command: \`bash bench/warm_get.sh $rounds $size_mib $gets\` on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'),
build \`$(git -C "$bench_root" rev-parse --short HEAD 2>/dev/null || echo unknown)\`$([ -n "${DFS_BIN:-}" ] && echo " (binary: $DFS_BIN)").
One file of $size_mib MiB in a \`dfs up\` cluster (3 file servers, replication 1), in the servers' page
cache; each round: 1 s of iperf3 over loopback, $gets \`dfs --no-cache get\` to /dev/null, 1 s of iperf3.

| round | get MiB/s | loopback MiB/s (mean of the samples around it) | ratio |
| --- | --- | --- | --- |
$rows
Median ratio: **$median** (the issue's target: at least 0.6).
MD
echo "wrote $RESULTS/warm_get.md"
