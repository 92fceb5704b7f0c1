#!/usr/bin/env bash
# Schemathesis against the server's own /openapi.json: a fresh `keyledger serve` over a
# temporary data directory, called with the owner token its first start prints, checked for
# server errors, undocumented status codes, and responses (bodies, content types, headers)
# that disagree with the document. Fails when schemathesis reports any failure.
#
# Needs python3 (with venv) and PyPI; schemathesis is installed into a virtual environment
# under target/, pinned, and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
# Test cases per operation and phase: enough to reach every documented status, a few
# minutes at most for the whole run.
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-100}

venv="target/schemathesis-venv-$SCHEMATHESIS_VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$venv/bin/schemathesis" --version

cargo build --locked --bin keyledger
keyledger="$PWD/target/debug/keyledger"

work=$(mktemp -d)
server=""
stop() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"
        wait "$server" || true
    fi
    rm -rf "$work"
}
trap stop EXIT

serve_flags=(--data "$work/data" --listen 127.0.0.1:0)
# Schemathesis sends hundreds of requests a minute, many of them with no valid token on
# purpose: the rate limits (API.md, Limits) would answer 429 to most of them. Off here,
# wherever this build of serve has them.
if "$keyledger" serve --help | grep -q -- '--auth-failure-limit'; then
    serve_flags+=(--rate-limit 0 --auth-failure-limit 0)
fi
"$keyledger" serve "${serve_flags[@]}" 2>"$work/serve.log" &
server=$!

address=""
for _ in $(seq 1 600); do
    address=$(sed -n 's|^keyledger listening on http://||p' "$work/serve.log")
    [ -n "$address" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; echo "keyledger serve exited before listening" >&2; exit 1; }
    sleep 0.1
done
[ -n "$address" ] || { cat "$work/serve.log" >&2; echo "keyledger serve did not start listening" >&2; exit 1; }
# The banner of a first start shows the owner's token on a line of its own, indented.
token=$(grep -Eo '^    [a-z0-9]+_[0-9a-f]{64}$' "$work/serve.log" | tr -d ' ' | head -n 1)
[ -n "$token" ] || { echo "no owner token in the banner of keyledger serve" >&2; exit 1; }

# A key for the operations on /v1/api_keys/{id} to act on (.ci/schemathesis.toml passes its
# id): a generated create almost never succeeds (its expires_at must fall in the next five
# years), so without it those operations would only ever see 404.
expires_at=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)
SCHEMATHESIS_KEY_ID=$(curl -fsS "http://$address/v1/api_keys" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/vnd.api+json' \
    -d "{\"data\":{\"type\":\"api_keys\",\"attributes\":{\"name\":\"schemathesis\",\"kind\":\"personal\",\"expires_at\":\"$expires_at\"}}}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["id"])')
export SCHEMATHESIS_KEY_ID

# Run from the temporary directory: schemathesis leaves its report and example database
# where it runs.
(
    cd "$work"
    "$OLDPWD/$venv/bin/schemathesis" --config-file "$OLDPWD/.ci/schemathesis.toml" run "http://$address/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance,missing_required_header,unsupported_method,ignored_auth,use_after_free,ensure_resource_availability \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$MAX_EXAMPLES" \
        --workers 1 \
        --seed 1 \
        --generation-database none \
        --no-color
)
