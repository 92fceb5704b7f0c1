#!/usr/bin/env bash
# keyledger load benchmark: the bare axum baseline and the real server, measured in ONE run so
# that the DESIGN.md performance targets (ratios real/bare) can be checked on a noisy machine.
#
#   bench/run.sh                 # build, bare baseline, real server, Markdown table on stdout
#   BARE_ONLY=1 bench/run.sh     # baseline half only (builds only keyledger-bench)
#
# Environment knobs (all optional):
#   DURATION=15        seconds per 64-client wrk run
#   LAT_DURATION=10    seconds per 1-client latency run
#   CONNS=64 THREADS=2 wrk concurrency for the throughput runs
#   WRK_TIMEOUT=5s     wrk per-request timeout (a slower response counts as a timeout error)
#   FSYNC_SAMPLES=200  fdatasync probes for the disk's p50
#   SKIP_BUILD=1       use the binaries already in target/release
#   BENCH_TMPDIR=/dir  where the data dir and the fdatasync probe live (default: mktemp -d)
#   KEEP_TMP=1         keep the tmp dir (server logs, wrk outputs) after the run
#   STARTUP_TIMEOUT=60 seconds to wait for a server to listen (and print its token)
#   BUILD_TIMEOUT=3600 seconds the cargo build may take (other builds may hold the lock)
#   KEYLEDGER_BIN=...  the server binary to measure (default target/release/keyledger)
#
# Traffic goes only to 127.0.0.1. Every process started here is stopped on exit.
# Human-readable progress goes to stderr; the results table goes to stdout.

set -euo pipefail

DURATION=${DURATION:-15}
LAT_DURATION=${LAT_DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}
FSYNC_SAMPLES=${FSYNC_SAMPLES:-200}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-60}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
BARE_ONLY=${BARE_ONLY:-0}
SKIP_BUILD=${SKIP_BUILD:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
LUA="$BENCH_DIR/wrk/keyledger.lua"
BIN_DIR="$ROOT/target/release"
KEYLEDGER_BIN=${KEYLEDGER_BIN:-$BIN_DIR/keyledger}
TOKEN_RE='rootly_[0-9a-f]{64}'

BENCH_NAME=bench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

cleanup() {
    local rc=$?
    set +e
    stop_started
    remove_scratch "$rc"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

need curl
need python3
need timeout
need_wrk

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ "$SKIP_BUILD" != 1 ]]; then
    if [[ "$BARE_ONLY" == 1 ]]; then
        log "building keyledger-bench (release)"
        timeout "$BUILD_TIMEOUT" cargo build --release -p keyledger-bench >&2 || die "cargo build failed"
    else
        log "building keyledger and keyledger-bench (release)"
        timeout "$BUILD_TIMEOUT" cargo build --release -p keyledger -p keyledger-bench >&2 \
            || die "cargo build failed (BARE_ONLY=1 measures the baseline alone)"
    fi
fi
[[ -x "$BIN_DIR/bare-baseline" ]] || die "$BIN_DIR/bare-baseline missing"
if [[ "$BARE_ONLY" != 1 ]]; then
    [[ -x "$KEYLEDGER_BIN" ]] || die "$KEYLEDGER_BIN missing"
fi

# ---------------------------------------------------------------- scratch space
if [[ -n "${BENCH_TMPDIR:-}" ]]; then
    mkdir -p "$BENCH_TMPDIR"
    TMP=$(mktemp -d "$BENCH_TMPDIR/keyledger-bench.XXXXXX")
else
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyledger-bench.XXXXXX")
fi
TMP_CREATED=1
RESULTS="$TMP/results.env"
: >"$RESULTS"
log "scratch dir: $TMP"

record duration_s "$DURATION"
record lat_duration_s "$LAT_DURATION"
record conns "$CONNS"
record threads "$THREADS"
record nproc "$(nproc 2>/dev/null || echo '?')"
record load_before "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null | tr ' ' '/')"
record rustc_running_before "$(count_rustc)"

EXPIRES_AT=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)
RUN_TAG="$(date +%s)-$$"

# ---------------------------------------------------------------- disk: fdatasync p50
# Measured on the filesystem of the data dir, before any server runs (a quiet disk).
log "fdatasync probe: $FSYNC_SAMPLES x (4 KiB append + fdatasync) in $TMP"
timeout 300 python3 - "$TMP" "$FSYNC_SAMPLES" >>"$RESULTS" <<'PY' || die "fdatasync probe failed"
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
path = os.path.join(d, "fdatasync.probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
buf = os.urandom(4096)
samples = []
try:
    for i in range(n + 10):          # the first 10 are warm-up
        os.write(fd, buf)
        t0 = time.perf_counter_ns()
        os.fdatasync(fd)
        t1 = time.perf_counter_ns()
        if i >= 10:
            samples.append((t1 - t0) / 1000.0)
finally:
    os.close(fd)
    os.unlink(path)
samples.sort()
def pct(p):
    return samples[min(len(samples) - 1, max(0, int(round(p / 100.0 * len(samples))) - 1))]
print(f"fsync_p50_us={pct(50):.1f}")
print(f"fsync_p99_us={pct(99):.1f}")
print(f"fsync_samples={len(samples)}")
PY

# ---------------------------------------------------------------- bare baseline
BARE_ADDR="127.0.0.1:$(free_port)"
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

BARE_GET_PATH="/v1/api_keys/00000000-0000-4000-8000-000000000000"
run_wrk bare_post_c64 "$CONNS" "$THREADS" "$DURATION" "http://$BARE_ADDR" create 201 "bare-$RUN_TAG" "$EXPIRES_AT"
run_wrk bare_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$BARE_ADDR" get 200 "$BARE_GET_PATH"
run_wrk bare_get_c1 1 1 "$LAT_DURATION" "http://$BARE_ADDR" get 200 "$BARE_GET_PATH"
run_wrk bare_post_c1 1 1 "$LAT_DURATION" "http://$BARE_ADDR" create 201 "bare1-$RUN_TAG" "$EXPIRES_AT"
stop_pid "$BARE_PID"
log "bare-baseline stopped"

# ---------------------------------------------------------------- real server
if [[ "$BARE_ONLY" != 1 ]]; then
    DATA="$TMP/data"
    mkdir -p "$DATA"
    REAL_ADDR="127.0.0.1:$(free_port)"
    # One token makes every request: its rate limit (3000 a minute) is turned off, or the
    # run would measure 429s; and its user creates hundreds of thousands of personal keys,
    # far beyond a scope's 1000 live keys, or the run would measure 422s.
    log "starting keyledger serve --data $DATA --listen $REAL_ADDR --rate-limit 0 --max-keys-per-scope 1000000000"
    "$KEYLEDGER_BIN" serve --data "$DATA" --listen "$REAL_ADDR" --rate-limit 0 --max-keys-per-scope 1000000000 \
        >"$TMP/keyledger.stdout" 2>"$TMP/keyledger.stderr" &
    REAL_PID=$!
    PIDS+=("$REAL_PID")

    # Bounded wait for both: the first owner's token on stderr, and the port.
    TOKEN=""
    for _ in $(seq 1 $((STARTUP_TIMEOUT * 10))); do
        kill -0 "$REAL_PID" 2>/dev/null || break
        if [[ -z "$TOKEN" ]]; then
            TOKEN=$(grep -oE -m1 "$TOKEN_RE" "$TMP/keyledger.stderr" 2>/dev/null | head -n1 || true)
        fi
        if [[ -n "$TOKEN" ]] && curl -s -o /dev/null --max-time 1 "http://$REAL_ADDR/" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    if ! kill -0 "$REAL_PID" 2>/dev/null; then
        sed 's/rootly_[0-9a-f]\{64\}/rootly_<redacted>/g' "$TMP/keyledger.stderr" | tail -n 30 >&2 || true
        die "keyledger serve exited during startup"
    fi
    [[ -n "$TOKEN" ]] || die "no token matching $TOKEN_RE on keyledger's stderr within ${STARTUP_TIMEOUT}s"
    curl -s -o /dev/null --max-time 1 "http://$REAL_ADDR/" \
        || die "keyledger did not listen on $REAL_ADDR within ${STARTUP_TIMEOUT}s"
    export KEYLEDGER_BENCH_TOKEN="$TOKEN"
    AUTH_HDR="$TMP/auth.header"
    (umask 077 && printf 'Authorization: Bearer %s\n' "$TOKEN" >"$AUTH_HDR")
    log "keyledger is up; owner token captured"

    # One personal key, for the GETs.
    seed_code=$(curl -s -o "$TMP/seed.json" -w '%{http_code}' --max-time 10 -X POST \
        -H @"$AUTH_HDR" -H 'Content-Type: application/vnd.api+json' -H 'Accept: application/vnd.api+json' \
        --data "{\"data\":{\"type\":\"api_keys\",\"attributes\":{\"name\":\"bench-seed-$RUN_TAG\",\"kind\":\"personal\",\"expires_at\":\"$EXPIRES_AT\"}}}" \
        "http://$REAL_ADDR/v1/api_keys" || true)
    if [[ "$seed_code" != 201 ]]; then
        sed 's/rootly_[0-9a-f]\{64\}/rootly_<redacted>/g' "$TMP/seed.json" >&2 2>/dev/null || true
        die "seed create answered ${seed_code:-nothing}, expected 201"
    fi
    KEY_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["id"])' "$TMP/seed.json") \
        || die "no data.id in the seed create's response"
    rm -f "$TMP/seed.json"   # it holds the new key's plaintext token
    get_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H @"$AUTH_HDR" \
        "http://$REAL_ADDR/v1/api_keys/$KEY_ID" || true)
    [[ "$get_code" == 200 ]] || die "GET /v1/api_keys/$KEY_ID answered ${get_code:-nothing}, expected 200"
    log "seed key $KEY_ID created and readable"

    run_wrk real_post_c64 "$CONNS" "$THREADS" "$DURATION" "http://$REAL_ADDR" create 201 "c64-$RUN_TAG" "$EXPIRES_AT"
    run_wrk real_get_c64 "$CONNS" "$THREADS" "$DURATION" "http://$REAL_ADDR" get 200 "/v1/api_keys/$KEY_ID"
    run_wrk real_post_c1 1 1 "$LAT_DURATION" "http://$REAL_ADDR" create 201 "c1-$RUN_TAG" "$EXPIRES_AT"
    kill -0 "$REAL_PID" 2>/dev/null || log "WARNING: keyledger exited during the benchmark"
    stop_pid "$REAL_PID"
    log "keyledger stopped"
    record data_dir_bytes "$(du -sb "$DATA" 2>/dev/null | cut -f1 || echo 0)"
fi

record load_after "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null | tr ' ' '/')"
record rustc_running_after "$(count_rustc)"

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$BARE_ONLY" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if "=" in line:
        k, v = line.split("=", 1)
        r[k] = v
bare_only = sys.argv[2] == "1"

def num(k):
    try:
        return float(r[k])
    except (KeyError, ValueError):
        return None

def f_rps(x):
    return "n/a" if x is None else f"{x:,.0f}"

def f_us(x):
    if x is None:
        return "n/a"
    return f"{x/1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs"

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

def f_ratio(x):
    return "n/a" if x is None else f"{x*100:.1f} %"

def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")

def notes(label):
    if r.get(f"{label}_failed"):
        return "wrk produced no result"
    other = num(f"{label}_other") or 0
    errs = sum(num(f"{label}_err_{e}") or 0 for e in ("connect", "read", "write", "timeout"))
    bits = []
    if other:
        bits.append(f"{other:.0f} unexpected ({r.get(label + '_statuses', '-')})")
    if errs:
        bits.append(f"{errs:.0f} socket errors/timeouts")
    bits.append(f"p99 {f_us(num(label + '_p99_us'))}")
    return "; ".join(bits)

c = r.get("conns", "64")
print(f"## keyledger benchmark ({c} connections × {r.get('threads','2')} wrk threads, "
      f"{r.get('duration_s')} s per throughput run, {r.get('lat_duration_s')} s per latency run, "
      f"{r.get('nproc')} CPUs)")
print()
print("| Measurement | bare axum | keyledger | real / bare | Target | Result | Notes (keyledger) |")
print("|---|---:|---:|---:|---|---|---|")

bp, rp = num("bare_post_c64_good_rps"), num("real_post_c64_good_rps")
rr = ratio(rp, bp)
print(f"| create req/s, {c} clients (201 only{', fsynced' if not bare_only else ''}) | {f_rps(bp)} | "
      f"{'—' if bare_only else f_rps(rp)} | {'—' if bare_only else f_ratio(rr)} | ≥ 35 % | "
      f"{'—' if bare_only else verdict(None if rr is None else rr >= 0.35)} | "
      f"{'—' if bare_only else notes('real_post_c64')} |")

bg, rg = num("bare_get_c64_good_rps"), num("real_get_c64_good_rps")
gr = ratio(rg, bg)
print(f"| GET /v1/api_keys/{{id}} req/s, {c} clients (200 only) | {f_rps(bg)} | "
      f"{'—' if bare_only else f_rps(rg)} | {'—' if bare_only else f_ratio(gr)} | ≥ 85 % | "
      f"{'—' if bare_only else verdict(None if gr is None else gr >= 0.85)} | "
      f"{'—' if bare_only else notes('real_get_c64')} |")

fs = num("fsync_p50_us")
rtt = num("bare_get_c1_p50_us")
budget = None if fs is None or rtt is None else 2 * (fs + rtt)
cp = num("real_post_c1_p50_us")
bcp = num("bare_post_c1_p50_us")
print(f"| create p50 latency, 1 client | {f_us(bcp)} | {'—' if bare_only else f_us(cp)} | "
      f"{'—' if bare_only else f_ratio(ratio(cp, bcp))} | ≤ 2 × (fdatasync p50 + bare GET p50) = {f_us(budget)} | "
      f"{'—' if bare_only else verdict(None if cp is None or budget is None else cp <= budget)} | "
      f"{'—' if bare_only else notes('real_post_c1')} |")
print(f"| fdatasync p50 (4 KiB append, data dir's filesystem) | {f_us(fs)} | | | | | "
      f"p99 {f_us(num('fsync_p99_us'))}, {r.get('fsync_samples','?')} samples |")
print(f"| bare GET round trip p50, 1 client | {f_us(rtt)} | | | | | "
      f"p99 {f_us(num('bare_get_c1_p99_us'))} |")
print()
print("Bare-side details: "
      f"POST {c}c p50 {f_us(num('bare_post_c64_p50_us'))} / p99 {f_us(num('bare_post_c64_p99_us'))}; "
      f"GET {c}c p50 {f_us(num('bare_get_c64_p50_us'))} / p99 {f_us(num('bare_get_c64_p99_us'))}; "
      f"unexpected statuses POST {r.get('bare_post_c64_statuses','?')}, GET {r.get('bare_get_c64_statuses','?')}.")
if not bare_only:
    print("keyledger details: "
          f"creates {c}c: {num('real_post_c64_good') or 0:.0f} × 201 of {num('real_post_c64_requests') or 0:.0f} responses, "
          f"p50 {f_us(num('real_post_c64_p50_us'))}; "
          f"GET {c}c p50 {f_us(num('real_get_c64_p50_us'))}; "
          f"data dir after the run: {(num('data_dir_bytes') or 0)/1e6:.1f} MB.")
print(f"Machine: load average before {r.get('load_before','?')}, after {r.get('load_after','?')}; "
      f"rustc processes running before/after: {r.get('rustc_running_before','?')}/{r.get('rustc_running_after','?')} "
      "(anything else running skews both sides, but not always equally).")
PY
