# What bench/run.sh and bench/postgres.sh share, sourced by both: progress lines, the
# processes a run started (stopped on exit, never a recycled pid), the tools it needs, the
# scratch dir's results file, and one bounded wrk run whose RESULT line is recorded.
#
# The sourcing script sets BENCH_NAME (its progress prefix), LUA, WRK_TIMEOUT and, before
# calling `record` or the wrk functions, TMP and RESULTS. Its EXIT trap calls `stop_started`
# and `remove_scratch` (plus whatever else it must undo).

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes we started
PIDS=()
TMP=""
TMP_CREATED=0
KEEP_TMP=${KEEP_TMP:-0}

# Forget a pid, so that cleanup never signals a recycled one.
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" && "$p" != "$1" ]] && keep+=("$p")
    done
    PIDS=("${keep[@]:-}")
}

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; forget_pid "$pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid ignored SIGTERM for 5 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

stop_started() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] && stop_pid "$pid"
    done
}

# Removes the scratch dir, unless asked to keep it or the run failed (exit status $1).
remove_scratch() {
    [[ -n "$TMP" && -d "$TMP" ]] || return 0
    if [[ "$KEEP_TMP" == 1 || $1 -ne 0 ]]; then
        log "kept $TMP (logs, wrk outputs, data dirs)"
    elif [[ "$TMP_CREATED" == 1 ]]; then
        rm -rf "$TMP"
    fi
}

# ---------------------------------------------------------------- tools
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required"; }

need_wrk() {
    command -v wrk >/dev/null 2>&1 && return 0
    log "wrk not found: installing the Debian package"
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "wrk missing and not root (install it: apt-get install -y wrk)"
        sudo="sudo"
    fi
    timeout 900 $sudo apt-get update >&2 && timeout 900 $sudo apt-get install -y wrk >&2 \
        || die "could not install wrk"
}

# ---------------------------------------------------------------- results and servers
record() { printf '%s=%s\n' "$1" "$2" >>"$RESULTS"; }
count_rustc() { local n; n=$(pgrep -c -x rustc 2>/dev/null) || true; echo "${n:-0}"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_listen ADDR PID SECONDS: bounded wait until ADDR answers HTTP (any status)
wait_listen() {
    local addr=$1 pid=$2 secs=$3 i
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 2
        if curl -s -o /dev/null --max-time 1 "http://$addr/" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# wrk_spawn LABEL CONNS THREADS SECONDS URL LUA-ARGS...: one bounded wrk run in the
# background; its pid in WRK_PID. wrk_finish LABEL PID waits for it and records its RESULT.
WRK_PID=""
wrk_spawn() {
    local label=$1 c=$2 t=$3 d=$4 url=$5
    shift 5
    log "wrk $label: -c$c -t$t -d${d}s $url"
    timeout -k 5 $((d + 60)) wrk -c"$c" -t"$t" -d"${d}s" --timeout "$WRK_TIMEOUT" --latency \
        -s "$LUA" "$url" -- "$@" >"$TMP/wrk-$label.txt" 2>&1 &
    WRK_PID=$!
    PIDS+=("$WRK_PID")
}

wrk_finish() {
    local label=$1 pid=$2 out="$TMP/wrk-$1.txt"
    if ! wait "$pid"; then
        log "wrk $label failed or timed out; output:"
        sed 's/^/    /' "$out" >&2 || true
    fi
    forget_pid "$pid"
    local line
    line=$(grep -m1 '^RESULT ' "$out" || true)
    if [[ -z "$line" ]]; then
        record "${label}_failed" 1
        log "wrk $label produced no RESULT line"
        return 0
    fi
    local kv
    for kv in ${line#RESULT }; do
        record "${label}_${kv%%=*}" "${kv#*=}"
    done
    log "  $line"
    if grep -q '^SAMPLE ' "$out"; then
        log "  $(grep -m1 '^SAMPLE ' "$out")"
    fi
}

# run_wrk LABEL CONNS THREADS SECONDS URL LUA-ARGS...: one bounded wrk run, RESULT -> results
run_wrk() {
    wrk_spawn "$@"
    wrk_finish "$1" "$WRK_PID"
}
