# Sourced by scripts that need a throw-away cluster (schemathesis.sh,
# pjdfstest.sh): finds the dfs binary and starts `dfs up --port 0` in a
# temp dir, stopped (and the dir removed unless KEEP=1) at exit.
#
# After `start_cluster NAME`: BIN (the dfs binary: DFS_BIN, else
# CARGO_TARGET_DIR's release or debug build, built if absent), WORK (the
# temp dir; data in WORK/data, logs in WORK/up.log, the banner in
# WORK/banner), UP_PID, and `field KEY` (a field of the banner).
# `on_exit COMMAND` adds a command to run at exit before the cluster stops.

BIN=${DFS_BIN:-}
if [ -z "$BIN" ]; then
    for candidate in "$CARGO_TARGET_DIR/release/dfs" "$CARGO_TARGET_DIR/debug/dfs"; do
        if [ -x "$candidate" ]; then BIN=$candidate; break; fi
    done
fi
if [ -z "$BIN" ]; then
    cargo build --locked -p dfs-cli >&2
    BIN=$CARGO_TARGET_DIR/debug/dfs
fi

WORK=$(mktemp -d)
UP_PID=
BEFORE_STOP=()
on_exit() { BEFORE_STOP+=("$1"); }
stop_cluster() {
    for command in "${BEFORE_STOP[@]}"; do eval "$command" || true; done
    if [ -n "$UP_PID" ]; then
        kill "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-}" = 1 ]; then
        echo "$CLUSTER_USER: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap stop_cluster EXIT

# The cluster; its JSON banner (first line on stdout) has the URLs.
start_cluster() {
    CLUSTER_USER=$1
    "$BIN" up --port 0 --data-dir "$WORK/data" > "$WORK/banner" 2> "$WORK/up.log" &
    UP_PID=$!
    for _ in $(seq 1 300); do
        if [ -s "$WORK/banner" ]; then return 0; fi
        if ! kill -0 "$UP_PID" 2>/dev/null; then
            echo "$CLUSTER_USER: dfs up died:" >&2; cat "$WORK/up.log" >&2; exit 1
        fi
        sleep 0.2
    done
    echo "$CLUSTER_USER: dfs up printed no banner in 60 s" >&2; exit 1
}

field() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])" "$WORK/banner" "$1"; }
