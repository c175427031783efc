#!/usr/bin/env bash
# The API fuzz pass: schemathesis against each service's own OpenAPI
# document (`GET /openapi.json`, generated from the handlers), service by
# service, on a throw-away cluster (`dfs up --port 0` in a temp dir), with
# the admin's ticket. It creates and deletes users, changes passwords,
# drains servers and logs out: never point it at a cluster you care about
# (it starts its own and removes it).
#
# Fails (exit 1) on any 5xx answer or any answer the document does not
# allow (status, content type, body schema). Prints schemathesis' summary
# per service, then one line of counts per service.
#
# Usage: scripts/schemathesis.sh [EXAMPLES]   test cases per operation (default 50)
# Env: DFS_BIN (default: target/release/dfs or target/debug/dfs, built if
#      absent), DFS_FUZZ_VENV (default .cache/schemathesis, project-local),
#      DFS_FUZZ_KEEP=1 keeps the temp dir (cluster data, logs, reports),
#      DFS_FUZZ_MODE=positive sends only valid requests (more of them get past
#      validation; default all).
# CI runs it with 10 examples (scripts/test.sh, about a minute); the counts
# of a run with the default 50 are in docs/http-api.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EXAMPLES=${1:-50}
SCHEMATHESIS_VERSION=4.32.5
VENV=${DFS_FUZZ_VENV:-$ROOT/.cache/schemathesis}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dfs-target}

installed=$("$VENV/bin/pip" show schemathesis 2>/dev/null || true)
if ! grep -qx "Version: $SCHEMATHESIS_VERSION" <<< "$installed"; then
    echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

KEEP=${DFS_FUZZ_KEEP:-}
# shellcheck source=scripts/cluster.sh
source scripts/cluster.sh
start_cluster schemathesis.sh
DIRECTORY=$(field directory_url)
AUTH=$(field auth_url)
FILE=$("$VENV/bin/python" -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['file_server_urls'][0])" "$WORK/banner")
PASSWORD=$(cat "$(field admin_password_file)")

# A fresh admin ticket for each service: the security service's own run
# may log it out or change the password.
# Without one (admin deleted or its logins held back by an earlier run),
# the run goes on with no ticket and says so.
ticket() {
    curl -sf "$AUTH/v1/auth/login" -H 'content-type: application/json' \
        -d "{\"name\":\"admin\",\"password\":\"$PASSWORD\"}" |
        "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["ticket"])' ||
        echo "schemathesis.sh: no admin ticket for this run" >&2
}

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
failed=0
summary=()
# run NAME URL FILTER...: schemathesis on the operations FILTER selects.
run() {
    local name=$1 url=$2
    shift 2
    echo "== $name ($url)" >&2
    local report="$WORK/$name.ndjson" status=0
    # From the temp dir, where schemathesis leaves its cache (.schemathesis/).
    (cd "$WORK" && "$VENV/bin/schemathesis" run "$url/openapi.json" --url "$url" \
        -H "Authorization: Bearer $(ticket)" \
        --checks "$CHECKS" --max-examples "$EXAMPLES" --seed 17 --workers 1 --mode "${DFS_FUZZ_MODE:-all}" \
        --phases examples,coverage,fuzzing --request-timeout 10 --max-redirects 0 \
        --suppress-health-check all --report ndjson --report-ndjson-path "$report" \
        --warnings off "$@" >&2) || status=$?
    local counts
    counts=$("$VENV/bin/python" - "$report" <<'EOF'
import json, sys
cases = failures = 0
statuses = {}
for line in open(sys.argv[1]):
    event = json.loads(line)
    # Each scenario's recorder lists every request made and every check run.
    for key in ("ScenarioFinished",):
        scenario = event.get(key)
        if not scenario:
            continue
        recorder = scenario.get("recorder") or {}
        for interactions in (recorder.get("interactions") or {}).values():
            response = (interactions or {}).get("response") or {}
            if response:
                cases += 1
                status = response.get("status_code", 0) // 100
                statuses[f"{status}xx"] = statuses.get(f"{status}xx", 0) + 1
        for checks in (recorder.get("checks") or {}).values():
            failures += sum(1 for check in checks if check.get("status") == "failure")
shown = " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
print(f"{cases} requests ({shown}), {failures} failed checks")
EOF
)
    summary+=("$name: $counts, schemathesis exit $status")
    if [ "$status" -ne 0 ]; then failed=1; fi
}

# Swagger UI's pages are not JSON calls; watches stream until the client goes away
# (a request timeout, not an answer).
FRAME='^/(docs|openapi\.json)'
run directory "$DIRECTORY" --exclude-path-regex "$FRAME|^/v1/auth/" --exclude-path /v1/watch
run file "$FILE" --exclude-path-regex "$FRAME"
# Logging out ends the ticket every later request of a run carries, and
# logout-all or ending a user's sessions (admin's, when the name generated is
# admin) every session of admin: each on its own, with its own ticket,
# before the rest of the security service (which may delete admin). The
# directory service's forwarded logout likewise. The login runs (the
# security service's, then the directory service's forwarded one) come
# last: their failed logins from this one address hold back admin's own
# login (for the next run's ticket) for a while.
run directory-logout "$DIRECTORY" --include-path /v1/auth/logout
run logout "$AUTH" --include-path /v1/auth/logout
run sessions "$AUTH" --include-path-regex '^/v1/(auth/logout-all|users/\{name\}/sessions)$'
run auth "$AUTH" --exclude-path-regex "$FRAME|^/v1/(auth/logout|users/\{name\}/sessions)"
run directory-login "$DIRECTORY" --include-path-regex '^/v1/auth/(login|refresh)$'

echo "schemathesis.sh: $EXAMPLES examples per operation"
for line in "${summary[@]}"; do echo "  $line"; done
if [ "$failed" -ne 0 ]; then
    echo "schemathesis.sh: FAILED (5xx answers or answers outside the services' documents; see above)"
    exit 1
fi
echo "schemathesis.sh: passed"
