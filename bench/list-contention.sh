#!/usr/bin/env bash
# Does a long list delay anyone else? The p50/p99 of an authenticated GET of one key, alone
# and while LISTERS clients loop on the most expensive list query of a KEYS-key organization
# (every key matches `filter[search]`, sorted by name, a late page), in one run.
#
#   bench/list-contention.sh              # build, generate, measure, Markdown table on stdout
#   KEYS=100000 LISTERS=8 DURATION=10 SKIP_BUILD=1 bench/list-contention.sh
#
# The machine has 2 cores: the listers take CPU from the GETs whatever the locking, so the
# ratio bounds what a list costs others; a list holding the state's lock while it sorts
# (as before issue 11) shows up as GETs queued behind a writer-preferring lock, in the p99.
# Traffic goes only to 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

KEYS=${KEYS:-100000}
LISTERS=${LISTERS:-8}
DURATION=${DURATION:-10}
SKIP_BUILD=${SKIP_BUILD:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${KEYLEDGER_BIN:-$ROOT/target/release/keyledger}
GENERATE=$ROOT/target/release/generate-ledger

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
if [ "$SKIP_BUILD" != 1 ]; then
  (cd "$ROOT" && cargo build --release --locked -p keyledger --bin keyledger -p keyledger-bench --bin generate-ledger >&2)
fi

tmp=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "generating $KEYS keys..." >&2
"$GENERATE" "$tmp/data" "$KEYS" 1000 >&2
token=$("$BIN" keys issue --data "$tmp/data" --org Bench --user user1@bench.test --name contention --expires-in 1d)
"$BIN" serve --data "$tmp/data" --listen 127.0.0.1:0 --rate-limit 0 2>"$tmp/serve.log" &
server=$!
for _ in $(seq 1 600); do
  address=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$tmp/serve.log" | head -n 1)
  [ -n "$address" ] && break
  sleep 0.1
done
[ -n "$address" ] || { cat "$tmp/serve.log" >&2; echo "the server did not start" >&2; exit 1; }

auth="Authorization: Bearer $token"
id=$(curl -sf -g -H "$auth" "http://$address/v1/api_keys?page[size]=1" | sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' | head -n 1)
show="http://$address/v1/api_keys/$id"
worst="http://$address/v1/api_keys?filter%5Bsearch%5D=key&sort=name&page%5Bnumber%5D=20&page%5Bsize%5D=100"
curl -sf -o /dev/null -H "$auth" "$worst" || { echo "the list query failed" >&2; exit 1; }

# "Latency Distribution" lines of wrk --latency: "     99%   12.34ms".
percentile() { awk -v p="$1" '$1 == p { print $2 }' "$2"; }
requests() { awk '/Requests\/sec/ { print $2 }' "$1"; }

wrk -t1 -c4 -d"${DURATION}s" --latency -H "$auth" "$show" >"$tmp/alone.txt"
wrk -t1 -c"$LISTERS" -d"$((DURATION + 4))s" -H "$auth" "$worst" >"$tmp/lists.txt" &
listers=$!
sleep 2
wrk -t1 -c4 -d"${DURATION}s" --latency -H "$auth" "$show" >"$tmp/beside.txt"
wait "$listers"

echo "| GET /v1/api_keys/{id}, $KEYS-key organization | p50 | p99 | GET/s |"
echo "|---|---:|---:|---:|"
echo "| alone | $(percentile 50% "$tmp/alone.txt") | $(percentile 99% "$tmp/alone.txt") | $(requests "$tmp/alone.txt") |"
echo "| beside $LISTERS clients looping on the worst list | $(percentile 50% "$tmp/beside.txt") | $(percentile 99% "$tmp/beside.txt") | $(requests "$tmp/beside.txt") |"
echo
echo "worst list query: $(requests "$tmp/lists.txt") lists/s over $LISTERS clients ($worst)"
