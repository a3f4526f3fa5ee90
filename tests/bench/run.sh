#!/usr/bin/env bash
# tests/bench/run.sh: the single-host benchmark (make bench runs it after
# `make deps all`).
#
# Starts build/dobj on a free 127.0.0.1 port with a fresh data directory and
# the counter class, then drives it with wrk (-t2 -c64 --latency):
#
#   (a) GET /_hello               the ceiling: an h2o handler, no object
#   (b) POST /counter/bench-one   every request on one object
#   (c) POST /counter/bench-N     spread over 1,000 objects, N random in 0..999
#
# Each configuration gets one 2 s warm-up, then RUNS runs of DURATION seconds;
# the table shows the median req/s, the median p50 and the median p99. Then it
# checks that the counters hold exactly what was acknowledged (see below),
# prints a markdown report and writes it to build/bench/latest.md (wrk's raw
# output of every run goes to build/bench/raw/, the server's log to
# build/bench/server.log).
#
# Environment: SHARDS (2), DURATION seconds (10), RUNS (3), DOBJ_BUILD (build).
#
# Exit status: 0 when every run had no errors and the counters check out;
# 1 on a counter mismatch, on any run with errors (non-2xx or socket errors),
# or when the server dies; 2 on a set-up problem.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

BUILD=${DOBJ_BUILD:-build}
SHARDS=${SHARDS:-2}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
WARMUP=2
THREADS=2
CONNS=64
OBJECTS=1000
BIN=$BUILD/dobj
CLASS=$BUILD/examples/counter.so
OUT=$BUILD/bench

die() {
    echo "bench: $*" >&2
    exit 2
}

for v in SHARDS DURATION RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for tool in wrk curl awk sort; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed (make deps installs it)"
done
[[ -x $BIN ]] || die "$BIN is missing: run make first (or make bench)"
[[ -f $CLASS ]] || die "$CLASS is missing: run make first (or make bench)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dobj-bench.XXXXXX")
DATA=$TMP/data
LOG=$TMP/server.log
SERVER_PID=
mkdir -p "$OUT"
rm -rf "$OUT/raw"
mkdir -p "$OUT/raw"

# Stops the server if it still runs: SIGTERM, up to STOP_GRACE seconds, then
# SIGKILL. Sets SERVER_STOP to what happened. (Closing the 1,000 databases of
# (c) takes the server a few seconds.)
STOP_GRACE=15
SERVER_STOP=
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID rc=0
    SERVER_PID=
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || rc=$?
        SERVER_STOP="had already exited (status $rc)"
        return 0
    fi
    local t0
    t0=$(date +%s.%N)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((STOP_GRACE * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || rc=$?
        SERVER_STOP="did not stop within $STOP_GRACE s of SIGTERM: killed with SIGKILL (status $rc)"
        return 0
    fi
    wait "$pid" 2>/dev/null || rc=$?
    SERVER_STOP="stopped on SIGTERM in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, exit status $rc"
}

# shellcheck disable=SC2317 # (called by the EXIT trap)
cleanup() {
    local rc=$?
    trap - EXIT
    stop_server
    [[ -f $LOG ]] && cp "$LOG" "$OUT/server.log"
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" 2>/dev/null || true
}

# Starts the server and waits for GET /_hello = 200; retries on another port if
# it exits early (say, the port got taken in between).
start_server() {
    local attempt
    for attempt in 1 2 3; do
        PORT=$(free_port)
        BASE=http://127.0.0.1:$PORT
        rm -rf "$DATA"
        mkdir -p "$DATA"
        SERVER_CMD=("$BIN" serve --listen "127.0.0.1:$PORT" --data "$DATA" --shards "$SHARDS"
            --class "$CLASS" --log-level warn)
        "${SERVER_CMD[@]}" >>"$LOG" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 100); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                break
            fi
            if [[ $(http_code "$BASE/_hello") == 200 ]]; then
                return 0
            fi
            sleep 0.1
        done
        echo "bench: the server did not answer GET /_hello = 200 on port $PORT (attempt $attempt); its log:" >&2
        tail -n 20 "$LOG" >&2 || true
        stop_server
        echo "bench: server $SERVER_STOP" >&2
    done
    die "could not start the server"
}

server_alive() {
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "bench: THE SERVER DIED during the benchmark; the end of its log:" >&2
        tail -n 40 "$LOG" >&2 || true
        stop_server
        echo "bench: server $SERVER_STOP" >&2
        exit 1
    fi
}

# The value of one counter, or "" if the GET fails.
counter_value() {
    curl -s -f --max-time 5 "$BASE/counter/$1" 2>/dev/null | sed -n 's/.*"value":\(-\{0,1\}[0-9][0-9]*\).*/\1/p' || true
}

# The value once it stopped moving (requests in flight when wrk stopped may
# still be committing): two equal reads 0.2 s apart.
counter_settled() {
    local a b
    a=$(counter_value "$1")
    for _ in $(seq 50); do
        sleep 0.2
        b=$(counter_value "$1")
        [[ -n $a && $a == "$b" ]] && {
            echo "$a"
            return 0
        }
        a=$b
    done
    echo "bench: GET /counter/$1 did not give a stable value (last: '${b:-}')" >&2
    echo ""
}

# The sum of /counter/bench-0..999 with one curl for the 1,000 GETs; "" unless
# all 1,000 answered with a value.
spread_sum() {
    local cfg=$TMP/spread.curl i
    : >"$cfg"
    for ((i = 0; i < OBJECTS; i++)); do
        echo "url = \"$BASE/counter/bench-$i\"" >>"$cfg"
    done
    curl -s --max-time 60 -K "$cfg" 2>/dev/null | grep -o '"value":-\{0,1\}[0-9]*' | cut -d: -f2 |
        awk -v n="$OBJECTS" '{ s += $1; c++ } END { if (c == n) print s; else print "" }'
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# "12345.6" -> "12,346"
thousands() {
    printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'
}

# microseconds -> "0.30 ms", "7.9 ms", "306 ms"
ms() {
    awk -v us="$1" 'BEGIN { m = us / 1000; if (m < 10) printf "%.2f ms", m; else if (m < 100) printf "%.1f ms", m; else printf "%.0f ms", m }'
}

field() {
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

CONFIGS=(hello one spread)
declare -A LABEL=(
    [hello]="(a) GET /_hello (ceiling)"
    [one]="(b) POST /counter/bench-one (1 object)"
    [spread]="(c) POST /counter/bench-<0..999> (1,000 objects)"
)
declare -A PATHQ=([hello]=/_hello [one]=/counter/bench-one [spread]=/counter/)
declare -A RPS P50 P99 ERRS DETAIL WRKCMD
declare -A ACK SENT # over warm-up and runs, for the counter checks
ERROR_RUNS=()
CHECKS_FAILED=0

# run_wrk CONFIG NAME SECONDS: one wrk run; sets LINE to its RESULT line.
run_wrk() {
    local cfg=$1 name=$2 secs=$3 raw=$OUT/raw/$1-$2.txt
    local cmd=(wrk "-t$THREADS" "-c$CONNS" "-d${secs}s" --latency -s "tests/bench/$cfg.lua" "$BASE${PATHQ[$cfg]}")
    WRKCMD[$cfg]="wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s tests/bench/$cfg.lua $BASE${PATHQ[$cfg]}"
    if ! "${cmd[@]}" >"$raw" 2>"$raw.err"; then
        echo "bench: wrk failed (${cmd[*]}):" >&2
        cat "$raw" "$raw.err" >&2
        server_alive
        exit 1
    fi
    server_alive
    LINE=$(grep '^RESULT ' "$raw" | tail -n 1 || true)
    # wrk reports a Lua error on stderr and may carry on with a default request.
    if [[ -z $LINE || -s $raw.err ]]; then
        echo "bench: wrk printed no RESULT line or an error (${cmd[*]}):" >&2
        cat "$raw" "$raw.err" >&2
        exit 1
    fi
    rm -f "$raw.err"
    local requests sent non2xx errors
    requests=$(field requests "$LINE")
    sent=$(field sent "$LINE")
    non2xx=$(field non2xx "$LINE")
    errors=$(field errors "$LINE")
    ACK[$cfg]=$((${ACK[$cfg]:-0} + requests - non2xx))
    SENT[$cfg]=$((${SENT[$cfg]:-0} + sent - non2xx))
    if ((errors > 0)); then
        ERROR_RUNS+=("$cfg $name: $LINE")
        echo "  WARNING: $cfg $name had $errors error(s): $LINE" >&2
    fi
    printf '  %-7s %-7s %10s req/s  p50 %-9s p99 %-9s requests %-8s errors %s\n' "$cfg" "$name" \
        "$(thousands "$(field rps "$LINE")")" "$(ms "$(field p50_us "$LINE")")" "$(ms "$(field p99_us "$LINE")")" \
        "$requests" "$errors"
}

start_server
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
NPROC=$(nproc)
MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
MODEL=${MODEL:-unknown}
# shellcheck disable=SC1091
OS=$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}") || true)
FS=$(df -PT "$DATA" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }' || true)
VERSION=$("$BIN" version 2>/dev/null || echo "dobj (unknown version)")
REV=$(git -C "$ROOT" describe --always --dirty=' + uncommitted changes' 2>/dev/null || echo unknown)
WRKV=$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//' || true)

echo "bench: $VERSION on 127.0.0.1:$PORT, data in $DATA, $SHARDS shards"
echo "bench: $NPROC cores ($MODEL); wrk and the server share them (nothing pinned)"
echo "bench: each configuration: one ${WARMUP} s warm-up, then $RUNS runs of $DURATION s"

for cfg in "${CONFIGS[@]}"; do
    echo "== ${LABEL[$cfg]}"
    run_wrk "$cfg" warmup "$WARMUP"
    rps=() p50=() p99=() errs=0 per=()
    for ((r = 1; r <= RUNS; r++)); do
        run_wrk "$cfg" "run$r" "$DURATION"
        rps+=("$(field rps "$LINE")")
        p50+=("$(field p50_us "$LINE")")
        p99+=("$(field p99_us "$LINE")")
        errs=$((errs + $(field errors "$LINE")))
        per+=("$(thousands "$(field rps "$LINE")")")
    done
    RPS[$cfg]=$(median "${rps[@]}")
    P50[$cfg]=$(median "${p50[@]}")
    P99[$cfg]=$(median "${p99[@]}")
    ERRS[$cfg]=$errs
    DETAIL[$cfg]=$(
        IFS=/
        echo "${per[*]}"
    )
done

# ---- correctness ---------------------------------------------------------
# wrk counts a request when its response arrived. When a run ends, up to one
# POST per connection is in flight: the server still commits it, but wrk never
# sees the answer. So a counter must hold at least the acknowledged POSTs
# (requests - non2xx over the warm-up and all runs) and at most the POSTs sent
# (sent - non2xx); anything else is a lost or a doubled write.
check_counter() { # NAME VALUE ACK SENT -> sets CHECK
    local name=$1 value=$2 ack=$3 sent=$4
    if [[ -z $value ]]; then
        CHECK="MISMATCH: $name: no value could be read"
        CHECKS_FAILED=1
    elif ((value == ack)); then
        CHECK="OK: $name = $value = the $ack acknowledged POSTs exactly"
    elif ((value > ack && value <= sent)); then
        CHECK="OK: $name = $value = the $ack acknowledged POSTs + $((value - ack)) in flight when wrk stopped (at most $((sent - ack)) were; $CONNS connections per run)"
    else
        CHECK="MISMATCH: $name = $value, expected the $ack acknowledged POSTs (+ at most $((sent - ack)) in flight when wrk stopped, i.e. <= $sent): off by $((value - ack))"
        CHECKS_FAILED=1
    fi
}

echo "== correctness"
ONE=$(counter_settled bench-one)
check_counter "/counter/bench-one" "$ONE" "${ACK[one]}" "${SENT[one]}"
CHECK_ONE=$CHECK
echo "  $CHECK_ONE"
SUM=$(spread_sum)
check_counter "the sum of /counter/bench-0..999" "$SUM" "${ACK[spread]}" "${SENT[spread]}"
CHECK_SPREAD=$CHECK
echo "  $CHECK_SPREAD"

server_alive
stop_server
echo "  server $SERVER_STOP"
SERVER_END="server $SERVER_STOP"
[[ $SERVER_STOP == *"exit status 0" ]] || SERVER_END="**$SERVER_END**"
LOGLINES=$(grep -c . "$LOG" || true)

# ---- report ---------------------------------------------------------------
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'
}

CMD="SHARDS=$SHARDS DURATION=$DURATION RUNS=$RUNS tests/bench/run.sh"
REPORT=$OUT/latest.md
{
    echo "## dobj single-host benchmark, $DATE"
    echo
    echo "- machine: $NPROC cores (nproc), $MODEL${OS:+, $OS}, Linux $(uname -r)"
    echo "- **wrk and the server share the same $NPROC cores** (nothing is pinned): every figure includes the load generator's own CPU use"
    echo "- source: git $REV; $BIN built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
    echo "- $VERSION, $SHARDS shards, durability: one SQLite commit with synchronous=FULL per event; data directory on ${FS:-unknown}"
    echo "- $WRKV, $THREADS threads, $CONNS connections, ${DURATION} s per run, $RUNS runs per configuration after one ${WARMUP} s warm-up; medians of the runs"
    echo
    echo "| configuration | req/s (median) | p50 | p99 | ratio to the hello ceiling | errors |"
    echo "|---|--:|--:|--:|--:|--:|"
    for cfg in "${CONFIGS[@]}"; do
        echo "| ${LABEL[$cfg]} | $(thousands "${RPS[$cfg]}") | $(ms "${P50[$cfg]}") | $(ms "${P99[$cfg]}") | $(ratio "${RPS[$cfg]}" "${RPS[hello]}") | ${ERRS[$cfg]} |"
    done
    echo
    echo "req/s of each run: $(for cfg in "${CONFIGS[@]}"; do printf '%s %s; ' "$cfg" "${DETAIL[$cfg]}"; done | sed 's/; $//')."
    echo "p50 and p99 are wrk's --latency percentiles (the medians over the runs);"
    echo "errors = responses with a status above 399 + socket errors (connect, read, write, timeout), summed over the runs."
    echo
    if ((${#ERROR_RUNS[@]} > 0)); then
        echo "**Runs with errors:**"
        echo
        for e in "${ERROR_RUNS[@]}"; do echo "- \`$e\`"; done
        echo
    fi
    echo "Correctness (after the runs):"
    echo
    echo "- $CHECK_ONE"
    echo "- $CHECK_SPREAD"
    echo "- $SERVER_END; its log (--log-level warn) has $LOGLINES line(s)"
    echo
    echo "Command: \`make bench\`, i.e. \`$CMD\`, which ran:"
    echo
    echo '```'
    echo "${SERVER_CMD[*]}"
    for cfg in "${CONFIGS[@]}"; do echo "${WRKCMD[$cfg]}"; done
    echo '```'
} >"$REPORT"

echo
cat "$REPORT"
if ((LOGLINES > 0)); then
    echo
    echo "bench: the server logged $LOGLINES line(s) at level warn or above (all in $OUT/server.log); the first ones:"
    head -n 10 "$LOG"
fi
echo
echo "bench: report written to $REPORT"

status=0
if ((CHECKS_FAILED)); then
    echo "bench: MISMATCH: a counter does not hold what was acknowledged (see above)" >&2
    status=1
fi
if ((${#ERROR_RUNS[@]} > 0)); then
    echo "bench: ${#ERROR_RUNS[@]} run(s) had errors (see above)" >&2
    status=1
fi
exit "$status"
