#!/usr/bin/env bash
# Offline-tooling benchmark: generate a large ledger, then time `audit verify` (and, as its bare
# baseline in the same run, `verify-baseline` on an export of the same ledger), `rebuild --check`,
# `rebuild` (a healthy store: nothing to repair), `rebuild --compact` (every row rewritten as a
# new journal generation), and a `serve` restart (start to listening) with its resident memory.
#
#   bench/audit.sh [KEYS]          # default 1000000 keys (~1 M events); ledger kept in $LEDGER
#   LEDGER=/tmp/kl-1m bench/audit.sh   # reuse a ledger generated before
#
# Everything runs on 127.0.0.1 / local files and stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${1:-1000000}
LEDGER=${LEDGER:-/tmp/keyledger-bench-$KEYS}
BIN="$ROOT/target/release"

cargo build --release -p keyledger -p keyledger-bench >&2
if [ ! -d "$LEDGER/sled" ]; then
  echo "generating $KEYS keys into $LEDGER" >&2
  "$BIN/generate-ledger" "$LEDGER" "$KEYS" >&2
fi

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>"$LEDGER.stderr" || { cat "$LEDGER.stderr" >&2; return 1; }; end=$(date +%s.%N); elapsed "$start" "$end"; }
events=$("$BIN/keyledger" audit verify --data "$LEDGER" 2>&1 | grep -oE '[0-9]+ events' | head -1 | grep -oE '[0-9]+')

verify_s=$(seconds "$BIN/keyledger" audit verify --data "$LEDGER")
# The bare floor of the same check on the same events: the chain and a JSON pass, from memory.
"$BIN/keyledger" export --data "$LEDGER" --output "$LEDGER.export.jsonl" 2>/dev/null
baseline=$("$BIN/verify-baseline" "$LEDGER.export.jsonl")
rm -f "$LEDGER.export.jsonl"
rate() { echo "$baseline" | grep -F -- "$1:" | grep -oE '[0-9]+ events/s' | grep -oE '^[0-9]+'; }
hash_eps=$(rate hash)
json_eps=$(rate "hash + json")
check_s=$(seconds "$BIN/keyledger" rebuild --check --data "$LEDGER")
rebuild_s=$(seconds "$BIN/keyledger" rebuild --data "$LEDGER")
compact_s=$(seconds "$BIN/keyledger" rebuild --compact --data "$LEDGER")

log="$LEDGER.serve.log"
start=$(date +%s.%N)
"$BIN/keyledger" serve --data "$LEDGER" --listen 127.0.0.1:0 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do grep -q "listening on" "$log" && break; sleep 0.05; done
end=$(date +%s.%N)
ready_s=$(elapsed "$start" "$end")
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
kill -TERM $pid; wait $pid || true

printf '| Measurement | Value |\n|---|---:|\n'
printf '| events in the ledger | %s |\n' "$events"
printf '| ledger size on disk | %s |\n' "$(du -sh "$LEDGER" | cut -f1)"
verify_eps=$(awk -v n="$events" -v s="$verify_s" 'BEGIN { print n / s }')
printf '| `audit verify` | %.2f s (%.0f events/s) |\n' "$verify_s" "$verify_eps"
printf '| bare baseline: chain only / chain + JSON pass (`verify-baseline`) | %d / %d events/s |\n' "$hash_eps" "$json_eps"
printf '| `audit verify` / bare chain + JSON pass | %.2f |\n' "$(awk -v a="$verify_eps" -v b="$json_eps" 'BEGIN { print a / b }')"
printf '| `rebuild --check` | %.2f s |\n' "$check_s"
printf '| `rebuild` (healthy store: nothing to repair) | %.2f s |\n' "$rebuild_s"
printf '| `rebuild --compact` (every row rewritten) | %.2f s |\n' "$compact_s"
printf '| `serve` restart, start to listening | %.2f s |\n' "$ready_s"
printf '| `serve` resident memory after start | %d MiB |\n' "$((rss_kb / 1024))"
