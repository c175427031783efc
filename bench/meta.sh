#!/usr/bin/env bash
# Metadata operations per second on each metadata engine, 16 concurrent clients:
# mkdir, stat, create of empty files, and listing a directory of LIST_FILES entries.
#
#   bash bench/meta.sh                          # sqlite, postgres, mongo
#   ENGINES="sqlite postgres" DIRS=500 bash bench/meta.sh
#
# Starts a throwaway PostgreSQL (system initdb/postgres, as the postgres user,
# fsync on) and SecantusDB (PyPI secantusdb, --sync-on-commit; the venv of
# scripts/test.sh) on free loopback ports; each engine gets a fresh `dfs up`
# (replication 1, one file server). Writes bench/results/meta.md.
source "$(dirname "$0")/lib.sh"
BENCH_PACKAGES=dfs-bench bench_init

engines=${ENGINES:-sqlite postgres mongo}
dirs=${DIRS:-2000}
files=${LIST_FILES:-10000}
lists=${LISTS:-32}
workers=${WORKERS:-16}
results=${RESULTS:-$bench_root/bench/results}
venv=${DFS_VENV:-$HOME/.cache/dfs-venv}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Both set meta_url (not echo it: a $(...) subshell would lose the exit trap).
start_postgres() {
  local dir=$work/pg port
  port=$(free_port)
  chmod 755 "$work" # the postgres user must reach its dir inside
  mkdir -p "$dir" && chown postgres "$dir"
  runuser -u postgres -- initdb -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync > /dev/null
  runuser -u postgres -- pg_ctl -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start > /dev/null
  bench_on_exit "runuser -u postgres -- pg_ctl -D '$dir/data' -m fast stop"
  psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE dfs" > /dev/null
  meta_url="postgres://postgres@127.0.0.1:$port/dfs"
}

start_mongo() {
  local port
  port=$(free_port)
  [ -x "$venv/bin/secantusd-py" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q secantusdb; }
  "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$work/mongo" \
    --sync-on-commit --log-level WARNING > "$work/mongo.log" 2>&1 &
  bench_on_exit "kill $!"
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  meta_url="mongodb://127.0.0.1:$port/dfs?directConnection=true"
}

run_bench() { # LABEL WORKLOAD ARGS...: the JSON lines of dfs-bench
  local label=$1 workload=$2
  shift 2
  "$dfs_bench" --backend dfs --target "$DFS_URL" --password-file "$dfs_data/admin-password" \
    --workload "$workload" --workers "$workers" --label "$label" "$@"
}

out=$work/lines.jsonl
for engine in $engines; do
  case $engine in
    sqlite) meta=() ;;
    postgres) start_postgres; meta=(--meta "$meta_url") ;;
    mongo) start_mongo; meta=(--meta "$meta_url") ;;
    *) echo "unknown engine $engine" >&2; exit 2 ;;
  esac
  echo "meta.sh: $engine" >&2
  dfs_up "$engine" --file-servers 1 --replication 1 "${meta[@]}"
  run_bench "$engine" meta --root /meta --count "$dirs" | tee -a "$out"
  run_bench "$engine" list --root /list --count "$files" --size 0 --lists "$lists" | tee -a "$out"
  dfs_down
done

mkdir -p "$results"
python3 - "$out" "$results/meta.md" "$workers" "$dirs" "$files" "$lists" <<'EOF'
import json, sys, datetime
lines = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
workers, dirs, files, lists = sys.argv[3:]
engines = list(dict.fromkeys(line["label"] for line in lines))
ops = [("mkdir", "mkdir"), ("stat", "stat"), ("write", "create empty file"), ("list", f"list {files} entries")]
figure = {(l["label"], l["phase"]): l["ops_per_s"] for l in lines}
with open(sys.argv[2], "w") as md:
    md.write("# Metadata operations per second by engine\n\n")
    md.write(f"`bash bench/meta.sh`, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC: {workers} concurrent clients "
             f"(dfs-bench, the dfs-client library), {dirs} mkdir then {dirs} stat, {files} empty files created "
             f"in one directory then {lists} listings of it. DFS: one directory service, one file server, "
             "replication 1. Every engine acknowledges a write only once it is durable: SQLite WAL with "
             "synchronous=FULL, PostgreSQL with fsync and synchronous_commit on, SecantusDB with --sync-on-commit "
             "and write concern j:true.\n\n")
    md.write("| operation | " + " | ".join(engines) + " |\n|---|" + "---:|" * len(engines) + "\n")
    for phase, name in ops:
        md.write(f"| {name} (ops/s) | " + " | ".join(str(int(figure.get((e, phase), 0))) for e in engines) + " |\n")
    if "sqlite" in engines:
        md.write("\nRatio to SQLite: " + "; ".join(
            f"{e} " + ", ".join(f"{phase} {figure.get((e, phase), 0) / max(figure.get(('sqlite', phase), 1), 1):.2f}"
                                for phase, _ in ops)
            for e in engines if e != "sqlite") + "\n")
print(open(sys.argv[2]).read())
EOF
