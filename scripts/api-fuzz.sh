#!/usr/bin/env bash
# Property-based API testing: schemathesis (PyPI) generates requests from the node's own /v1/openapi.json and checks
# every answer against it; any 5xx, undocumented status or schema mismatch fails.
# Usage: scripts/api-fuzz.sh [MAX_EXAMPLES]   (default 25 per operation; uses target/debug/swarmnode, building it)
# Left out of the fuzzing, with reasons:
#   POST /v1/peers   would dial whatever addresses the generator invents (traffic must stay on our own machines);
#                    tests/it/api.rs covers it with loopback addresses and invalid input.
#   GET /v1/events   an endless stream by design; tests/it/api.rs reads it.
#   GET /v1/state/watch  the same stream for state changes; tests/it/state_api.rs reads it.
# POST /v1/perf is fuzzed: the schema's `peer` is a bare peer id (addresses are accepted beyond it), which this lone
# node looks up in its empty routing table and answers 404 peer_not_found at once, whatever the sizes (over 64 GiB:
# 400), so no generated request dials anything or moves a byte. The stateful phase learns the node's own id from
# GET /v1/node, and a run against the node itself is refused 400 invalid_perf_request: a body the schema cannot
# rule out, so that operation expects 400 among its answers to valid data (the config below).
# GET /v1/state/{key} with a min_version that never arrives answers 504 version_not_visible by design: a 5xx that
# is no server error there (the config below), its wait kept short so a generated one does not eat the time budget.
# And one check: negative_data_rejection (a request outside the schema must be refused). The schema promises a subset
# of what the node accepts, because JSON Schema counts characters where the node counts bytes (a topic is 1-256 bytes:
# the schema says 64 characters, which always fit), so a 100-letter ASCII topic is outside the schema yet valid.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-25}
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    # A fresh Debian machine may lack Python's venv module (or Python): install them from Debian's packages.
    if ! python3 -m venv --help >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3 python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis==4.32.5
fi
cargo build --quiet
work=$(mktemp -d)
node_pid=
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
target/debug/swarmnode run --no-mdns --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 --data-dir "$work/data" \
    > "$work/events" 2> "$work/log" &
node_pid=$!
api=
for _ in $(seq 1 100); do
    api=$(sed -n 's/.*"event":"api_listening","address":"\([^"]*\)".*/\1/p' "$work/events" | head -1)
    [ -n "$api" ] && break
    sleep 0.1
done
[ -n "$api" ] || { echo "the node did not start:"; cat "$work/log"; exit 1; }
cat > "$work/schemathesis.toml" <<'TOML'
[[operations]]
include-operation-id = "getState"
parameters = { "query.wait" = "200ms" }
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]
[[operations]]
include-operation-id = "runPerf"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409"]
TOML
echo "fuzzing $api with $examples examples per operation"
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$api/v1/openapi.json" \
    --checks all \
    --exclude-checks negative_data_rejection \
    --max-examples "$examples" \
    --exclude-operation-id connectPeer \
    --exclude-operation-id events \
    --exclude-operation-id watchState \
    --request-timeout 10 \
    --max-time 60 \
    --seed 1
kill -0 "$node_pid" || { echo "the node died under fuzzing:"; cat "$work/log"; exit 1; }
echo "the node is still running"
