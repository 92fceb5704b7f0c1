#!/usr/bin/env bash
# keyledger on PostgreSQL: the bare axum baseline and keyledger nodes on one fresh PostgreSQL
# schema, measured in ONE run, so that every figure is a ratio to bare axum in the same run
# (issue 13; docs/DESIGN.md's performance targets).
#
#   bench/postgres.sh                  # build, measure, Markdown table on stdout
#   bench/postgres.sh > pg-result.md   # the table on stdout, progress on stderr
#
# What one run measures, in order (the same wrk script and connection counts as bench/run.sh):
#   1. bare-baseline: POST and GET with CONNS clients, POST with one client
#   2. `keyledger init` on a fresh schema, then node A (eventual): creates with CONNS clients,
#      GET /v1/api_keys/{id} with CONNS clients, creates with one client
#   3. node B (eventual) on the same schema beside A: creates with the load split across both
#      (CONNS/2 clients and one wrk thread on each, at the same time), then GET with CONNS
#      clients on A, then on B (one node loaded at a time, the other up and idle)
#   4. A and B stopped; node S started with --consistency strict: GET with CONNS clients
#   5. for reference, one sled node as bench/run.sh starts it: creates and GET, CONNS clients
#      (WITH_SLED=0 skips it)
#   6. bare-baseline GET again: how far the machine drifted during the run
#   7. follower lag: target/release/follower-lag (its own schema, dropped by it)
#
# Environment knobs (all optional):
#   KEYLEDGER_BENCH_DATABASE_URL  the server (default postgres://postgres@127.0.0.1:5432/test);
#                      a URL with a password shows in psql's argv: prefer PGPASSWORD/.pgpass
#   DURATION=15        seconds per CONNS-client wrk run
#   LAT_DURATION=10    seconds per one-client run
#   CONNS=64 THREADS=2 wrk concurrency (two-node creates: CONNS/2 clients, THREADS/2 threads per node)
#   WRK_TIMEOUT=5s     wrk per-request timeout
#   LAG_REVOKES=100    revokes timed by follower-lag
#   WITH_SLED=1        also measure one sled node (the reference of bench/run.sh)
#   SKIP_BUILD=1       use the binaries already in target/release
#   KEEP_TMP=1         keep the tmp dir (server logs, wrk outputs) after the run
#   STARTUP_TIMEOUT=60 seconds to wait for a server to listen
#   BUILD_TIMEOUT=3600 seconds the cargo build may take
#   KEYLEDGER_BIN=...  the server binary to measure (default target/release/keyledger)
#
# Nothing is pinned (as in bench/run.sh): wrk, the nodes (tokio's default runtime, one worker
# per core) and PostgreSQL share the machine's cores. Traffic goes only to 127.0.0.1 and the
# database. Every process started here is stopped and the schema dropped on exit. The exit
# status is 2 when any measured run had an unexpected status or a socket error (the table is
# still printed: its Notes column says which).

set -euo pipefail

DB_URL=${KEYLEDGER_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
DURATION=${DURATION:-15}
LAT_DURATION=${LAT_DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}
LAG_REVOKES=${LAG_REVOKES:-100}
WITH_SLED=${WITH_SLED:-1}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-60}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
SKIP_BUILD=${SKIP_BUILD:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
LUA="$BENCH_DIR/wrk/keyledger.lua"
BIN_DIR="$ROOT/target/release"
KEYLEDGER_BIN=${KEYLEDGER_BIN:-$BIN_DIR/keyledger}
TOKEN_RE='rootly_[0-9a-f]{64}'
HALF_CONNS=$((CONNS / 2))
HALF_THREADS=$((THREADS / 2 > 0 ? THREADS / 2 : 1))
# Lowercase letters, digits and underscores only: it is put into SQL unquoted.
SCHEMA="kl_bench_$(date +%s)_$$"
# The bench user creates far more than a scope's 1000 live keys (see bench/run.sh) and makes
# every request with one token: the per-key rate limit is off, or the runs would measure 422s
# and 429s.
NODE_FLAGS=(--rate-limit 0 --max-keys-per-scope 1000000000)

BENCH_NAME=pg-bench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

SCHEMA_CREATED=0

drop_schema() {
    [[ "$SCHEMA_CREATED" == 1 ]] || return 0
    if timeout 60 psql -X -q -v ON_ERROR_STOP=1 -d "$DB_URL" \
        -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1; then
        SCHEMA_CREATED=0
        log "schema $SCHEMA dropped"
    else
        log "WARNING: could not drop schema $SCHEMA (drop it by hand)"
    fi
}

cleanup() {
    local rc=$?
    set +e
    stop_started
    drop_schema
    remove_scratch "$rc"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- tools
need curl
need python3
need timeout
need psql
need_wrk

timeout 10 psql -X -q -d "$DB_URL" -c 'SELECT 1' >/dev/null 2>&1 \
    || die "cannot reach PostgreSQL at $DB_URL (set KEYLEDGER_BENCH_DATABASE_URL)"

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building keyledger and keyledger-bench (release)"
    timeout "$BUILD_TIMEOUT" cargo build --release -p keyledger -p keyledger-bench >&2 || die "cargo build failed"
fi
for bin in "$BIN_DIR/bare-baseline" "$BIN_DIR/follower-lag" "$KEYLEDGER_BIN"; do
    [[ -x "$bin" ]] || die "$bin missing"
done

# ---------------------------------------------------------------- scratch space
TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyledger-pg-bench.XXXXXX")
TMP_CREATED=1
RESULTS="$TMP/results.env"
: >"$RESULTS"
log "scratch dir: $TMP"

pg() { timeout 60 psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB_URL" -c "$1"; }

RUN_STARTED=$(date +%s)
record duration_s "$DURATION"
record lat_duration_s "$LAT_DURATION"
record conns "$CONNS"
record threads "$THREADS"
record half_conns "$HALF_CONNS"
record half_threads "$HALF_THREADS"
record nproc "$(nproc 2>/dev/null || echo '?')"
record load_before "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null | tr ' ' '/')"
record rustc_running_before "$(count_rustc)"
record pg_version "$(pg 'SHOW server_version' | cut -d' ' -f1)"
record pg_settings "$(pg "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings
    WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers', 'max_connections')")"

EXPIRES_AT=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)
RUN_TAG="$(date +%s)-$$"

# start_node NAME ARGS...: `keyledger serve` on a free port; its pid and address in NODE_PID
# and NODE_ADDR. The PostgreSQL ones get the URL and schema through the environment (a URL
# with a password would show in process lists as a flag).
NODE_PID=""
NODE_ADDR=""
start_node() {
    local name=$1
    shift
    NODE_ADDR="127.0.0.1:$(free_port)"
    mkdir -p "$TMP/data-$name"
    log "starting node $name: keyledger serve --listen $NODE_ADDR --data $TMP/data-$name $*"
    "$KEYLEDGER_BIN" serve --listen "$NODE_ADDR" --data "$TMP/data-$name" "$@" \
        >"$TMP/node-$name.stdout" 2>"$TMP/node-$name.stderr" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    if ! wait_listen "$NODE_ADDR" "$NODE_PID" "$STARTUP_TIMEOUT"; then
        sed 's/rootly_[0-9a-f]\{64\}/rootly_<redacted>/g' "$TMP/node-$name.stderr" | tail -n 30 >&2 || true
        die "node $name did not listen on $NODE_ADDR within ${STARTUP_TIMEOUT}s"
    fi
}

pg_node() {
    local name=$1
    shift
    KEYLEDGER_DATABASE_URL="$DB_URL" KEYLEDGER_DATABASE_SCHEMA="$SCHEMA" start_node "$name" "$@"
}

# scrape LABEL ADDR: the node's writer metrics now (cumulative): batches and the creates they
# carried, and the time spent in appends (the PostgreSQL transaction, COMMIT included).
scrape() {
    local label=$1 addr=$2
    curl -s --max-time 5 -H @"$AUTH_HDR" "http://$addr/metrics" 2>/dev/null | awk -v l="$label" '
        $1 == "keyledger_batch_size_sum" { print l "_batch_sum=" $2 }
        $1 == "keyledger_batch_size_count" { print l "_batch_count=" $2 }
        $1 == "keyledger_append_duration_seconds_sum" { print l "_append_s=" $2 }
        $1 == "keyledger_append_duration_seconds_count" { print l "_append_count=" $2 }' >>"$RESULTS" || true
}

# seed_key ADDR: creates one personal key (for the GETs); its id in KEY_ID.
KEY_ID=""
seed_key() {
    local addr=$1 code
    code=$(curl -s -o "$TMP/seed.json" -w '%{http_code}' --max-time 10 -X POST \
        -H @"$AUTH_HDR" -H 'Content-Type: application/vnd.api+json' -H 'Accept: application/vnd.api+json' \
        --data "{\"data\":{\"type\":\"api_keys\",\"attributes\":{\"name\":\"bench-seed-$RUN_TAG-$addr\",\"kind\":\"personal\",\"expires_at\":\"$EXPIRES_AT\"}}}" \
        "http://$addr/v1/api_keys" || true)
    if [[ "$code" != 201 ]]; then
        sed 's/rootly_[0-9a-f]\{64\}/rootly_<redacted>/g' "$TMP/seed.json" >&2 2>/dev/null || true
        rm -f "$TMP/seed.json"
        die "seed create on $addr answered ${code:-nothing}, expected 201"
    fi
    KEY_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["id"])' "$TMP/seed.json") \
        || die "no data.id in the seed create's response"
    rm -f "$TMP/seed.json"   # it holds the new key's plaintext token
}

# await_get ADDR ID SECONDS: bounded wait until the node answers 200 to GET of the key.
await_get() {
    local addr=$1 id=$2 secs=$3 code="" i
    for i in $(seq 1 $((secs * 10))); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H @"$AUTH_HDR" \
            "http://$addr/v1/api_keys/$id" || true)
        [[ "$code" == 200 ]] && return 0
        sleep 0.1
    done
    die "GET /v1/api_keys/$id on $addr answered ${code:-nothing} for ${secs}s, expected 200"
}

# ---------------------------------------------------------------- 1. bare baseline
BARE_ADDR="127.0.0.1:$(free_port)"
BARE_GET_PATH="/v1/api_keys/00000000-0000-4000-8000-000000000000"
log "starting bare-baseline on $BARE_ADDR"
"$BIN_DIR/bare-baseline" "$BARE_ADDR" >"$TMP/bare.stdout" 2>"$TMP/bare.stderr" &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_listen "$BARE_ADDR" "$BARE_PID" "$STARTUP_TIMEOUT" || {
    cat "$TMP/bare.stderr" >&2 || true
    die "bare-baseline did not listen on $BARE_ADDR within ${STARTUP_TIMEOUT}s"
}
probe=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
    -H 'Content-Type: application/vnd.api+json' \
    --data "{\"data\":{\"type\":\"api_keys\",\"attributes\":{\"name\":\"probe\",\"kind\":\"personal\",\"expires_at\":\"$EXPIRES_AT\"}}}" \
    "http://$BARE_ADDR/v1/api_keys" || true)
[[ "$probe" == 201 ]] || die "bare-baseline POST answered $probe, expected 201"
run_wrk bare_post_c64 "$CONNS" "$THREADS" "$DURATION" "http://$BARE_ADDR" create 201 "bare-$RUN_TAG" "$EXPIRES_AT"
run_wrk bare_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$BARE_ADDR" get 200 "$BARE_GET_PATH"
run_wrk bare_post_c1 1 1 "$LAT_DURATION" "http://$BARE_ADDR" create 201 "bare1-$RUN_TAG" "$EXPIRES_AT"
stop_pid "$BARE_PID"

# ---------------------------------------------------------------- 2. one PostgreSQL node
log "keyledger init on schema $SCHEMA"
SCHEMA_CREATED=1   # from here on, cleanup drops it (IF EXISTS)
TOKEN=$(KEYLEDGER_DATABASE_URL="$DB_URL" KEYLEDGER_DATABASE_SCHEMA="$SCHEMA" \
    timeout 120 "$KEYLEDGER_BIN" init --org Bench --owner owner@bench.test 2>"$TMP/init.stderr" \
    | grep -oE -m1 "$TOKEN_RE" || true)
[[ -n "$TOKEN" ]] || { cat "$TMP/init.stderr" >&2; die "keyledger init printed no token"; }
export KEYLEDGER_BENCH_TOKEN="$TOKEN"
AUTH_HDR="$TMP/auth.header"
(umask 077 && printf 'Authorization: Bearer %s\n' "$TOKEN" >"$AUTH_HDR")

pg_node a --consistency eventual "${NODE_FLAGS[@]}"
A_PID=$NODE_PID A_ADDR=$NODE_ADDR
seed_key "$A_ADDR"
PG_KEY=$KEY_ID
await_get "$A_ADDR" "$PG_KEY" 10
log "seed key $PG_KEY created on A and readable"
scrape pg1_before "$A_ADDR"
run_wrk pg1_post_c64 "$CONNS" "$THREADS" "$DURATION" "http://$A_ADDR" create 201 "pg1-$RUN_TAG" "$EXPIRES_AT"
scrape pg1_after "$A_ADDR"
run_wrk pg1_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$A_ADDR" get 200 "/v1/api_keys/$PG_KEY"
run_wrk pg1_post_c1 1 1 "$LAT_DURATION" "http://$A_ADDR" create 201 "pg1c1-$RUN_TAG" "$EXPIRES_AT"

# ---------------------------------------------------------------- 3. two PostgreSQL nodes
pg_node b --consistency eventual "${NODE_FLAGS[@]}"
B_PID=$NODE_PID B_ADDR=$NODE_ADDR
await_get "$B_ADDR" "$PG_KEY" 30
log "node B serves the seed key"
scrape pg2a_before "$A_ADDR"
scrape pg2b_before "$B_ADDR"
wrk_spawn pg2a_post "$HALF_CONNS" "$HALF_THREADS" "$DURATION" "http://$A_ADDR" create 201 "pg2a-$RUN_TAG" "$EXPIRES_AT"
WA=$WRK_PID
wrk_spawn pg2b_post "$HALF_CONNS" "$HALF_THREADS" "$DURATION" "http://$B_ADDR" create 201 "pg2b-$RUN_TAG" "$EXPIRES_AT"
WB=$WRK_PID
wrk_finish pg2a_post "$WA"
wrk_finish pg2b_post "$WB"
scrape pg2a_after "$A_ADDR"
scrape pg2b_after "$B_ADDR"
run_wrk pg2a_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$A_ADDR" get 200 "/v1/api_keys/$PG_KEY"
run_wrk pg2b_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$B_ADDR" get 200 "/v1/api_keys/$PG_KEY"
kill -0 "$A_PID" 2>/dev/null || log "WARNING: node A exited during the benchmark"
kill -0 "$B_PID" 2>/dev/null || log "WARNING: node B exited during the benchmark"
stop_pid "$A_PID"
stop_pid "$B_PID"
record pg_events "$(pg "SELECT count(*) FROM $SCHEMA.events" || echo '?')"
record pg_schema_bytes "$(pg "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$SCHEMA' AND c.relkind IN ('r', 'm')" || echo 0)"

# ---------------------------------------------------------------- 4. strict consistency
pg_node s --consistency strict "${NODE_FLAGS[@]}"
S_PID=$NODE_PID S_ADDR=$NODE_ADDR
await_get "$S_ADDR" "$PG_KEY" 30
run_wrk pgs_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$S_ADDR" get 200 "/v1/api_keys/$PG_KEY"
kill -0 "$S_PID" 2>/dev/null || log "WARNING: node S exited during the benchmark"
stop_pid "$S_PID"
drop_schema

# ---------------------------------------------------------------- 5. sled, for reference
if [[ "$WITH_SLED" == 1 ]]; then
    start_node sled "${NODE_FLAGS[@]}"
    SLED_PID=$NODE_PID SLED_ADDR=$NODE_ADDR
    # An empty data dir: the first owner's token is on stderr (bounded wait, as in run.sh).
    SLED_TOKEN=""
    for _ in $(seq 1 $((STARTUP_TIMEOUT * 10))); do
        SLED_TOKEN=$(grep -oE -m1 "$TOKEN_RE" "$TMP/node-sled.stderr" 2>/dev/null | head -n1 || true)
        [[ -n "$SLED_TOKEN" ]] && break
        sleep 0.1
    done
    [[ -n "$SLED_TOKEN" ]] || die "no token on the sled node's stderr"
    export KEYLEDGER_BENCH_TOKEN="$SLED_TOKEN"
    (umask 077 && printf 'Authorization: Bearer %s\n' "$SLED_TOKEN" >"$AUTH_HDR")
    seed_key "$SLED_ADDR"
    await_get "$SLED_ADDR" "$KEY_ID" 10
    run_wrk sled_post_c64 "$CONNS" "$THREADS" "$DURATION" "http://$SLED_ADDR" create 201 "sled-$RUN_TAG" "$EXPIRES_AT"
    run_wrk sled_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$SLED_ADDR" get 200 "/v1/api_keys/$KEY_ID"
    kill -0 "$SLED_PID" 2>/dev/null || log "WARNING: the sled node exited during the benchmark"
    stop_pid "$SLED_PID"
    rm -rf "$TMP/data-sled"
fi
rm -f "$AUTH_HDR"

# ---------------------------------------------------------------- 6. bare GET again (drift)
BARE_ADDR="127.0.0.1:$(free_port)"
"$BIN_DIR/bare-baseline" "$BARE_ADDR" >>"$TMP/bare.stdout" 2>>"$TMP/bare.stderr" &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_listen "$BARE_ADDR" "$BARE_PID" "$STARTUP_TIMEOUT" || die "bare-baseline did not listen again"
run_wrk bare2_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$BARE_ADDR" get 200 "$BARE_GET_PATH"
stop_pid "$BARE_PID"

# ---------------------------------------------------------------- 7. follower lag
log "follower-lag: $LAG_REVOKES revokes"
if KEYLEDGER_BENCH_DATABASE_URL="$DB_URL" KEYLEDGER_BIN="$KEYLEDGER_BIN" \
    timeout 600 "$BIN_DIR/follower-lag" "$LAG_REVOKES" >"$TMP/follower-lag.txt" 2>&1; then
    log "  $(cat "$TMP/follower-lag.txt")"
    python3 - "$TMP/follower-lag.txt" >>"$RESULTS" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms", text)
if m:
    print(f"lag_p50_ms={m.group(1)}\nlag_p99_ms={m.group(2)}\nlag_max_ms={m.group(3)}")
else:
    print("lag_failed=1")
PY
else
    log "follower-lag failed:"
    sed 's/^/    /' "$TMP/follower-lag.txt" >&2 || true
    record lag_failed 1
fi

record load_after "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null | tr ' ' '/')"
record rustc_running_after "$(count_rustc)"
record elapsed_s "$(( $(date +%s) - RUN_STARTED ))"

# ---------------------------------------------------------------- report
set +e
python3 - "$RESULTS" "$LAG_REVOKES" "$WITH_SLED" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if "=" in line:
        k, v = line.split("=", 1)
        r[k] = v
revokes, with_sled = sys.argv[2], sys.argv[3] == "1"

def num(k):
    try:
        return float(r[k])
    except (KeyError, ValueError):
        return None

def f_rps(x):
    return "n/a" if x is None else f"{x:,.0f}".replace(",", " ")

def f_us(x):
    if x is None:
        return "n/a"
    return f"{x/1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs"

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

def f_ratio(x):
    return "—" if x is None else f"**{x:.3f}**"

bad = []

def notes(*labels):
    bits = []
    for label in labels:
        if r.get(f"{label}_failed"):
            bad.append(label)
            bits.append(f"{label}: wrk produced no result")
            continue
        other = num(f"{label}_other") or 0
        errs = sum(num(f"{label}_err_{e}") or 0 for e in ("connect", "read", "write", "timeout"))
        if (other or errs) and label not in bad:
            bad.append(label)
        bit = (f"{other:.0f} unexpected ({r.get(label + '_statuses', '-')})" if other else "0 unexpected")
        if errs:
            bit += f", {errs:.0f} socket errors/timeouts"
        bit += f", p99 {f_us(num(label + '_p99_us'))}"
        bits.append(bit)
    return "; ".join(bits)

def verdict(x, target):
    return "" if x is None or target is None else ("PASS" if x >= target else "FAIL")

c, t = r.get("conns", "64"), r.get("threads", "2")
hc, ht = r.get("half_conns"), r.get("half_threads")
bp, bg = num("bare_post_c64_good_rps"), num("bare_get_c64_good_rps")

print(f"## keyledger on PostgreSQL ({c} connections × {t} wrk threads, {r.get('duration_s')} s per run, "
      f"{r.get('nproc')} CPUs, nothing pinned)")
print()
print("| Measurement | req/s | ratio to bare | Target | Result | Notes (statuses, p99) |")
print("|---|---:|---:|---|---|---|")

def row(name, rps, base, target, target_text, *labels):
    x = ratio(rps, base)
    print(f"| {name} | {f_rps(rps)} | {f_ratio(x)} | {target_text} | {verdict(x, target)} | {notes(*labels)} |")

row(f"bare axum POST, {c} clients", bp, None, None, "", "bare_post_c64")
row(f"bare axum GET, {c} clients", bg, None, None, "", "bare_get_c64")
row(f"PostgreSQL, 1 node: durable creates, {c} clients", num("pg1_post_c64_good_rps"), bp, None,
    "— (sled: ≥ 0.35)", "pg1_post_c64")
a2, b2 = num("pg2a_post_good_rps"), num("pg2b_post_good_rps")
tot = None if a2 is None or b2 is None else a2 + b2
row(f"PostgreSQL, 2 nodes: durable creates, total ({hc} clients × {ht} thread on each, at once)", tot, bp, None,
    "—", "pg2a_post", "pg2b_post")
row("… of which node A", a2, bp, None, "", "pg2a_post")
row("… of which node B", b2, bp, None, "", "pg2b_post")
row(f"PostgreSQL, 1 node: authenticated GET, {c} clients (eventual)", num("pg1_get_c64_good_rps"), bg, 0.85,
    "≥ 0.85", "pg1_get_c64")
row(f"PostgreSQL, 2 nodes: authenticated GET on A, {c} clients (eventual, B up)", num("pg2a_get_c64_good_rps"), bg,
    0.85, "≥ 0.85", "pg2a_get_c64")
row(f"PostgreSQL, 2 nodes: authenticated GET on B, {c} clients (eventual, A up)", num("pg2b_get_c64_good_rps"), bg,
    0.85, "≥ 0.85", "pg2b_get_c64")
row(f"PostgreSQL, 1 node: authenticated GET, {c} clients (--consistency strict)", num("pgs_get_c64_good_rps"), bg,
    None, "—", "pgs_get_c64")
if with_sled:
    row(f"sled (reference, as bench/run.sh): durable creates, {c} clients", num("sled_post_c64_good_rps"), bp, 0.35,
        "≥ 0.35", "sled_post_c64")
    row(f"sled (reference): authenticated GET, {c} clients", num("sled_get_c64_good_rps"), bg, 0.85, "≥ 0.85",
        "sled_get_c64")
row(f"bare axum GET again, at the end (drift)", num("bare2_get_c64_good_rps"), bg, None, "", "bare2_get_c64")
print()
lp50, lp99 = num("lag_p50_ms"), num("lag_p99_ms")
if r.get("lag_failed") or lp99 is None:
    bad.append("follower-lag")
    print("| Follower lag (revoke on A → 401 on B, eventual) | p50 | p99 | max | Target | Result |")
    print("|---|---:|---:|---:|---|---|")
    print("| follower-lag | n/a | n/a | n/a | p99 ≤ 100 ms | failed (see the log) |")
else:
    print(f"| Follower lag (revoke on A → 401 on B, eventual, {revokes} revokes) | p50 | p99 | max | Target | Result |")
    print("|---|---:|---:|---:|---|---|")
    print(f"| bench/src/bin/follower_lag.rs | {lp50:.2f} ms | {lp99:.2f} ms | {num('lag_max_ms'):.2f} ms | "
          f"p99 ≤ 100 ms | {'PASS' if lp99 <= 100 else 'FAIL'} |")
print()
print(f"One-client create p50: bare {f_us(num('bare_post_c1_p50_us'))}, PostgreSQL node "
      f"{f_us(num('pg1_post_c1_p50_us'))} ({notes('pg1_post_c1')}).")
print(f"Create p50 under {c} clients: PostgreSQL 1 node {f_us(num('pg1_post_c64_p50_us'))}, "
      f"2 nodes {f_us(num('pg2a_post_p50_us'))} / {f_us(num('pg2b_post_p50_us'))}"
      + (f", sled {f_us(num('sled_post_c64_p50_us'))}" if with_sled else "") + ".")
def writer(label, seconds):
    d = {}
    for k in ("batch_sum", "batch_count", "append_s", "append_count"):
        # A histogram with no samples yet is not exported: before a node's first batch.
        x, y = num(f"{label}_after_{k}"), num(f"{label}_before_{k}") or 0
        if x is None:
            return "n/a"
        d[k] = x - y
    if not d["batch_count"] or not d["append_count"] or not seconds:
        return "n/a"
    return (f"{f_rps(d['batch_count'])} batches of {d['batch_sum'] / d['batch_count']:.1f} creates on average, "
            f"an append (its PostgreSQL transaction) {1000 * d['append_s'] / d['append_count']:.2f} ms on average, "
            f"{100 * d['append_s'] / seconds:.0f} % of the run")
print(f"Writer, {c}-client creates, 1 node: {writer('pg1', num('pg1_post_c64_duration_s'))}. "
      f"2 nodes: A {writer('pg2a', num('pg2a_post_duration_s'))}; B {writer('pg2b', num('pg2b_post_duration_s'))}.")
print(f"PostgreSQL {r.get('pg_version', '?')} ({r.get('pg_settings', '?')}), same machine; "
      f"schema after the runs: {r.get('pg_events', '?')} events, "
      f"{(num('pg_schema_bytes') or 0) / 1e6:.0f} MB of tables and indexes.")
print(f"Setup: wrk -t{t} -c{c} per {c}-client run (two-node creates: two wrk at once, -t{ht} -c{hc} each); "
      "each node on tokio's default runtime; wrk, the nodes and PostgreSQL share the cores, nothing pinned.")
print(f"Machine: load average before {r.get('load_before','?')}, after {r.get('load_after','?')}; "
      f"rustc processes running before/after: {r.get('rustc_running_before','?')}/{r.get('rustc_running_after','?')}; "
      f"the run took {r.get('elapsed_s', '?')} s.")
print()
if not bad:
    print("Every measured run answered only the expected status (201 or 200), with no socket error or timeout.")
else:
    print(f"**WARNING: unexpected statuses, socket errors or failures in: {', '.join(bad)}; "
          "those rows do not measure what they say.**")
    sys.exit(2)
PY
REPORT_RC=$?
set -e
exit "$REPORT_RC"
