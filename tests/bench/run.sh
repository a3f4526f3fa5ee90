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
# Then, with the dobj server stopped, the same work on two reference points
# (REFS=0 skips both), printed as extra rows with ratio columns:
#
#   (d)/(e) plain SQLite: tests/bench/sqlite_ref.c (built here into
#           $OUT/sqlite_ref) runs the counter's UPSERT, one BEGIN IMMEDIATE ..
#           COMMIT with synchronous=FULL per increment, in one thread, for
#           DURATION seconds on 1 database, then on 1,000 round-robin; RUNS
#           runs each, medians. No HTTP: what the disk and SQLite alone allow.
#   (f)/(g) workerd: the counter as a SQLite-backed Durable Object on
#           Cloudflare's open-source runtime (tests/bench/workerd/), the npm
#           package workerd@$WORKERD_VERSION installed once into
#           $OUT/workerd/node_modules; checked first (100 sequential POSTs give
#           1..100, the value survives a restart of workerd), then the same wrk
#           runs as (b) and (c) and the same counter checks.
#
# A reference that cannot be built, installed or started is reported as a row
# "<name>: unavailable: <reason>" and the run goes on; the references never
# change the exit status (it is about dobj), but their problems are printed
# as warnings and in the report.
#
# Environment: SHARDS (2), DURATION seconds (10), RUNS (3), DOBJ_BUILD (build),
# REFS (1; 0 skips both references), REF_SQLITE (1), REF_WORKERD (1),
# WORKERD_VERSION (the npm version of workerd to install if it is missing),
# WORKERD_DIR (where to install it; $OUT/workerd).
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
# Long enough for the spread configuration to create its 1,000 databases
# before the measured runs.
WARMUP=${WARMUP:-5}
THREADS=2
CONNS=64
OBJECTS=1000
BIN=$BUILD/dobj
CLASS=$BUILD/examples/counter.so
OUT=$BUILD/bench
REFS=${REFS:-1}
REF_SQLITE=${REF_SQLITE:-1}
REF_WORKERD=${REF_WORKERD:-1}
# Checked with this version: config.capnp's syntax and compatibilityDate.
WORKERD_VERSION=${WORKERD_VERSION:-1.20261123.1}
WORKERD_DIR=${WORKERD_DIR:-$OUT/workerd}

die() {
    echo "bench: $*" >&2
    exit 2
}

for v in SHARDS DURATION RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in REFS REF_SQLITE REF_WORKERD; do
    [[ ${!v} == [01] ]] || die "$v must be 0 or 1 (got '${!v}')"
done
if ((!REFS)); then
    REF_SQLITE=0
    REF_WORKERD=0
fi
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

# Stops a child process if it still runs: SIGTERM, up to STOP_GRACE seconds,
# then SIGKILL. Sets STOPPED to what happened. (Closing the 1,000 databases of
# (c) takes the server a few seconds.)
STOP_GRACE=15
STOPPED=
stop_pid() {
    local pid=$1 rc=0
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || rc=$?
        STOPPED="had already exited (status $rc)"
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
        STOPPED="did not stop within $STOP_GRACE s of SIGTERM: killed with SIGKILL (status $rc)"
        return 0
    fi
    wait "$pid" 2>/dev/null || rc=$?
    STOPPED="stopped on SIGTERM in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, exit status $rc"
}

# Stops the dobj server if it still runs; sets SERVER_STOP to what happened.
SERVER_STOP=
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID
    SERVER_PID=
    stop_pid "$pid"
    SERVER_STOP=$STOPPED
}

# The same for workerd (the reference point, see run_workerd); sets WD_STOP.
WD_PID=
WD_STOP=
wd_stop() {
    [[ -n $WD_PID ]] || return 0
    local pid=$WD_PID
    WD_PID=
    stop_pid "$pid"
    WD_STOP=$STOPPED
}

# shellcheck disable=SC2317 # (called by the EXIT trap)
cleanup() {
    local rc=$?
    trap - EXIT
    stop_server
    wd_stop
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

# wrk_once CONFIG NAME SECONDS SCRIPT URL: one wrk run, its output in
# $OUT/raw/CONFIG-NAME.txt. Sets LINE to its RESULT line and returns 0, or
# prints what went wrong and returns 1 (wrk failed, or printed no RESULT line
# or an error). ALIVE (a command) runs right after wrk, before the output is
# looked at, so that a dead server is reported as such.
ALIVE=server_alive
wrk_once() {
    local cfg=$1 name=$2 secs=$3 script=$4 url=$5 raw=$OUT/raw/$1-$2.txt
    local cmd=(wrk "-t$THREADS" "-c$CONNS" "-d${secs}s" --latency -s "tests/bench/$script.lua" "$url")
    WRKCMD[$cfg]="wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s tests/bench/$script.lua $url"
    LINE=
    if ! "${cmd[@]}" >"$raw" 2>"$raw.err"; then
        echo "bench: wrk failed (${cmd[*]}):" >&2
        cat "$raw" "$raw.err" >&2
        $ALIVE
        return 1
    fi
    $ALIVE
    LINE=$(grep '^RESULT ' "$raw" | tail -n 1 || true)
    # wrk reports a Lua error on stderr and may carry on with a default request.
    if [[ -z $LINE || -s $raw.err ]]; then
        echo "bench: wrk printed no RESULT line or an error (${cmd[*]}):" >&2
        cat "$raw" "$raw.err" >&2
        LINE=
        return 1
    fi
    rm -f "$raw.err"
}

# run_wrk CONFIG NAME SECONDS [SCRIPT URL]: one wrk run (wrk_once) that counts
# towards CONFIG's counter check and errors; sets LINE to its RESULT line.
# Returns 1 if wrk_once did; the default ALIVE exits when the server died.
run_wrk() {
    local cfg=$1 name=$2 secs=$3
    wrk_once "$cfg" "$name" "$secs" "${4:-$cfg}" "${5:-$BASE${PATHQ[$cfg]}}" || return 1
    local requests sent non2xx errors
    requests=$(field requests "$LINE")
    sent=$(field sent "$LINE")
    non2xx=$(field non2xx "$LINE")
    errors=$(field errors "$LINE")
    ACK[$cfg]=$((${ACK[$cfg]:-0} + requests - non2xx))
    SENT[$cfg]=$((${SENT[$cfg]:-0} + sent - non2xx))
    if ((errors > 0)); then
        if [[ $cfg == wd_* ]]; then
            WD_ERROR_RUNS+=("$cfg $name: $LINE") # a reference's: does not fail the run
        else
            ERROR_RUNS+=("$cfg $name: $LINE")
        fi
        echo "  WARNING: $cfg $name had $errors error(s): $LINE" >&2
    fi
    printf '  %-7s %-7s %10s req/s  p50 %-9s p99 %-9s requests %-8s errors %s\n' "$cfg" "$name" \
        "$(thousands "$(field rps "$LINE")")" "$(ms "$(field p50_us "$LINE")")" "$(ms "$(field p99_us "$LINE")")" \
        "$requests" "$errors"
}

# ---- reference points -------------------------------------------------------
# Both run after the dobj server has stopped, so that nothing else competes for
# the 2 cores. Each sets its *_STATUS to "ok", or to "unavailable: <reason>" /
# "failed: <reason>", which the report prints as a row instead of figures.
LABEL+=(
    [sq_one]="(d) plain SQLite: the counter's UPSERT, 1 database (commits/s)"
    [sq_spread]="(e) plain SQLite: the counter's UPSERT, 1,000 databases round-robin (commits/s)"
    [wd_one]="(f) workerd: POST /counter/bench-one (1 object)"
    [wd_spread]="(g) workerd: POST /counter/bench-<0..999> (1,000 objects)"
)
SQ_STATUS="skipped (REF_SQLITE=0)"
WD_STATUS="skipped (REF_WORKERD=0)"
((REFS)) || SQ_STATUS="skipped (REFS=0)" WD_STATUS="skipped (REFS=0)"
SQ_BIN=$OUT/sqlite_ref
SQ_CMDS=()
SQ_CHECK=
WD_ERROR_RUNS=()
WD_CHECKS=()
WD_CMD=()
WD_LOG=$OUT/workerd.log
WD_STORE=$TMP/workerd-storage
WD_BIN=
WD_DESC=

# (d) and (e): builds tests/bench/sqlite_ref.c and runs it RUNS times on 1
# database and RUNS times on 1,000, DURATION seconds each, in a fresh directory
# on the same file system as the server's data.
run_sqlite_ref() {
    local build=(cc -O2 -std=c11 -D_GNU_SOURCE tests/bench/sqlite_ref.c -lsqlite3 -o "$SQ_BIN")
    if ! command -v cc >/dev/null; then
        SQ_STATUS="unavailable: no C compiler (cc) to build tests/bench/sqlite_ref.c"
        return 0
    fi
    if ! "${build[@]}" >"$OUT/sqlite_ref.build.log" 2>&1; then
        SQ_STATUS="unavailable: \`${build[*]}\` failed: $(grep -m 1 -i error "$OUT/sqlite_ref.build.log" || tail -n 1 "$OUT/sqlite_ref.build.log")"
        return 0
    fi
    local cfg n r st raw line check dir=$TMP/sqlite-ref total=0
    for cfg in sq_one sq_spread; do
        n=1
        [[ $cfg == sq_spread ]] && n=$OBJECTS
        SQ_CMDS+=("$SQ_BIN $dir $DURATION $n")
        echo "== ${LABEL[$cfg]}"
        local rps=() p50=() p99=() per=()
        for ((r = 1; r <= RUNS; r++)); do
            raw=$OUT/raw/$cfg-run$r.txt
            rm -rf "$dir"
            st=0
            "$SQ_BIN" "$dir" "$DURATION" "$n" >"$raw" 2>&1 || st=$?
            rm -rf "$dir"
            line=$(grep '^RESULT ' "$raw" | tail -n 1 || true)
            check=$(grep '^CHECK ' "$raw" | tail -n 1 || true)
            if ((st != 0)) || [[ -z $line || $check != *" OK" ]]; then
                SQ_STATUS="failed: \`$SQ_BIN $dir $DURATION $n\` exited with status $st: $(tail -n 1 "$raw")"
                echo "bench: plain SQLite reference $SQ_STATUS" >&2
                return 0
            fi
            rps+=("$(field rps "$line")")
            p50+=("$(field p50_us "$line")")
            p99+=("$(field p99_us "$line")")
            per+=("$(thousands "$(field rps "$line")")")
            total=$((total + $(field commits "$line ")))
            printf '  %-9s %-7s %10s commits/s  p50 %-9s p99 %-9s commits %s\n' "$cfg" "run$r" \
                "$(thousands "$(field rps "$line")")" "$(ms "$(field p50_us "$line")")" \
                "$(ms "$(field p99_us "$line")")" "$(field commits "$line ")"
        done
        RPS[$cfg]=$(median "${rps[@]}")
        P50[$cfg]=$(median "${p50[@]}")
        P99[$cfg]=$(median "${p99[@]}")
        ERRS[$cfg]=0
        DETAIL[$cfg]=$(
            IFS=/
            echo "${per[*]}"
        )
    done
    SQ_STATUS=ok
    SQ_CHECK="OK: plain SQLite: after each of its $((2 * RUNS)) runs, the counters read back through new connections add up to the commits it timed ($(thousands "$total") in all)"
}

# Installs workerd@WORKERD_VERSION from npm into WORKERD_DIR/node_modules if
# it is not there yet. Sets WD_BIN, or WD_REASON and returns 1.
wd_install() {
    local pkg have bin
    case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) pkg=linux-64 ;;
    Linux-aarch64 | Linux-arm64) pkg=linux-arm64 ;;
    *)
        WD_REASON="no workerd npm package for $(uname -s) $(uname -m)"
        return 1
        ;;
    esac
    # The platform package holds the binary itself: no need for the workerd
    # package's postinstall script, nor for node to run it.
    bin=$WORKERD_DIR/node_modules/@cloudflare/workerd-$pkg/bin/workerd
    have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$WORKERD_DIR/node_modules/workerd/package.json" 2>/dev/null | head -n 1 || true)
    if [[ ! -x $bin || $have != "$WORKERD_VERSION" ]]; then
        if ! command -v npm >/dev/null; then
            WD_REASON="npm is not installed (it is needed once, to install workerd@$WORKERD_VERSION into $WORKERD_DIR/node_modules)"
            return 1
        fi
        mkdir -p "$WORKERD_DIR"
        # A package.json of its own, so that npm installs here and nowhere above.
        [[ -f $WORKERD_DIR/package.json ]] || echo '{ "private": true }' >"$WORKERD_DIR/package.json"
        echo "bench: installing workerd@$WORKERD_VERSION with npm into $WORKERD_DIR/node_modules (log: $OUT/workerd-npm.log)"
        if ! (cd "$WORKERD_DIR" && npm install --no-audit --no-fund --save-exact "workerd@$WORKERD_VERSION") \
            >"$OUT/workerd-npm.log" 2>&1; then
            WD_REASON="\`npm install --no-audit --no-fund workerd@$WORKERD_VERSION\` failed: $(grep -m 1 'ERR' "$OUT/workerd-npm.log" || tail -n 1 "$OUT/workerd-npm.log")"
            return 1
        fi
        if [[ ! -x $bin ]]; then
            WD_REASON="npm installed workerd@$WORKERD_VERSION, but $bin is missing"
            return 1
        fi
    fi
    local v
    if ! v=$("$bin" --version 2>&1); then
        WD_REASON="$bin --version failed: $(head -n 1 <<<"$v")"
        return 1
    fi
    WD_BIN=$bin
    WD_DESC="workerd@$WORKERD_VERSION from npm (\`workerd --version\`: $(head -n 1 <<<"$v"))"
}

# Starts workerd on a free port with the storage in WD_STORE and waits until
# GET /counter/verify answers 200. Sets WD_PID and WD_BASE, or WD_REASON and
# returns 1.
wd_start() {
    local attempt from
    for attempt in 1 2 3; do
        from=$(($(wc -l <"$WD_LOG") + 2)) # the first line this attempt logs
        WD_PORT=$(free_port)
        WD_BASE=http://127.0.0.1:$WD_PORT
        WD_CMD=("$WD_BIN" serve tests/bench/workerd/config.capnp --experimental
            --socket-addr "http=127.0.0.1:$WD_PORT" --directory-path "do-storage=$WD_STORE")
        echo "# ${WD_CMD[*]}" >>"$WD_LOG"
        "${WD_CMD[@]}" >>"$WD_LOG" 2>&1 &
        WD_PID=$!
        for _ in $(seq 300); do
            kill -0 "$WD_PID" 2>/dev/null || break
            [[ $(http_code "$WD_BASE/counter/verify") == 200 ]] && return 0
            sleep 0.1
        done
        wd_stop
        WD_REASON="workerd did not answer GET /counter/verify = 200 on port $WD_PORT within 30 s (it $WD_STOP); its output: $(tail -n +"$from" "$WD_LOG" | head -n 3 | tr '\n' ' ' | sed 's/ $//')"
        echo "bench: $WD_REASON (attempt $attempt)" >&2
    done
    return 1
}

# ALIVE for the workerd runs: notes a dead workerd instead of exiting.
WD_DEAD=
# shellcheck disable=SC2317 # (called through $ALIVE)
wd_alive() {
    if [[ -z $WD_PID ]] || ! kill -0 "$WD_PID" 2>/dev/null; then
        WD_DEAD="workerd died; the end of its log: $(tail -n 3 "$WD_LOG" | tr '\n' ' ')"
        echo "bench: $WD_DEAD" >&2
    fi
}

# (f) and (g): workerd with the counter Durable Object of tests/bench/workerd/.
# First a check that it counts and is durable: 100 sequential POSTs to
# /counter/verify must answer 1..100, and after a restart of workerd on the
# same storage directory GET must still give 100. Then (b) and (c) again, with
# the same wrk scripts, warm-up, runs and counter checks.
run_workerd() {
    WD_STATUS=
    if ! wd_install; then
        WD_STATUS="unavailable: $WD_REASON"
        return 0
    fi
    rm -rf "$WD_STORE"
    mkdir -p "$WD_STORE"
    : >"$WD_LOG"
    echo "== workerd: $WD_DESC"
    if ! wd_start; then
        WD_STATUS="unavailable: could not start it: $WD_REASON"
        return 0
    fi
    local i v bad=
    for ((i = 1; i <= 100; i++)); do
        v=$(curl -s -f --max-time 5 -X POST "$WD_BASE/counter/verify" 2>/dev/null | sed -n 's/.*"value":\([0-9]*\).*/\1/p' || true)
        if [[ $v != "$i" ]]; then
            bad="POST number $i answered '$v'"
            break
        fi
    done
    wd_stop
    if [[ -n $bad ]]; then
        WD_STATUS="failed: 100 sequential POSTs to /counter/verify did not answer 1..100: $bad"
        return 0
    fi
    if ! wd_start; then
        WD_STATUS="unavailable: could not restart it: $WD_REASON"
        return 0
    fi
    local saved_base=$BASE
    BASE=$WD_BASE
    v=$(counter_value verify)
    if [[ $v != 100 ]]; then
        BASE=$saved_base
        wd_stop
        WD_STATUS="failed: after a restart of workerd GET /counter/verify = '$v', not the 100 it had acknowledged"
        return 0
    fi
    WD_CHECKS+=("OK: workerd: 100 sequential POSTs to /counter/verify answered 1..100, and after a restart (SIGTERM; it $WD_STOP; a new process on the same storage directory) GET /counter/verify = 100")
    echo "  ${WD_CHECKS[0]}"

    local cfg script r
    ALIVE=wd_alive
    WD_DEAD=
    for cfg in wd_one wd_spread; do
        script=${cfg#wd_}
        echo "== ${LABEL[$cfg]}"
        local rps=() p50=() p99=() errs=0 per=()
        for r in warmup $(seq "$RUNS"); do
            local name=run$r secs=$DURATION
            [[ $r == warmup ]] && name=warmup secs=$WARMUP
            if ! run_wrk "$cfg" "$name" "$secs" "$script" "$WD_BASE${PATHQ[$script]}" || [[ -n $WD_DEAD ]]; then
                WD_STATUS="failed: during $cfg $name: ${WD_DEAD:-wrk failed or printed an error, see above and $OUT/raw/$cfg-$name.txt}"
                ALIVE=server_alive
                BASE=$saved_base
                wd_stop
                return 0
            fi
            [[ $r == warmup ]] && continue
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
    ALIVE=server_alive

    # The same checks as dobj's (check_counter); a mismatch is reported, but
    # it is workerd's and does not fail the run.
    local failed_before=$CHECKS_FAILED
    check_counter "workerd: /counter/bench-one" "$(counter_settled bench-one)" "${ACK[wd_one]}" "${SENT[wd_one]}"
    WD_CHECKS+=("$CHECK")
    echo "  $CHECK"
    check_counter "workerd: the sum of /counter/bench-0..999" "$(spread_sum)" "${ACK[wd_spread]}" "${SENT[wd_spread]}"
    WD_CHECKS+=("$CHECK")
    echo "  $CHECK"
    CHECKS_FAILED=$failed_before
    BASE=$saved_base
    wd_stop
    WD_CHECKS+=("workerd $WD_STOP; its output is in $WD_LOG")
    echo "  workerd $WD_STOP"
    WD_STATUS=ok
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

# "commits fsyncs" from the server's /_metrics.
journal_counts() {
    curl -s "http://127.0.0.1:$PORT/_metrics" |
        awk '/^dobj_commits_total/ { c = $2 } /^dobj_journal_fsyncs_total/ { f = $2 } END { print c + 0, f + 0 }'
}

declare -A COMMITS_S FSYNCS_S
for cfg in "${CONFIGS[@]}"; do
    echo "== ${LABEL[$cfg]}"
    run_wrk "$cfg" warmup "$WARMUP" || exit 1
    read -r c0 f0 < <(journal_counts)
    rps=() p50=() p99=() errs=0 per=()
    for ((r = 1; r <= RUNS; r++)); do
        run_wrk "$cfg" "run$r" "$DURATION" || exit 1
        rps+=("$(field rps "$LINE")")
        p50+=("$(field p50_us "$LINE")")
        p99+=("$(field p99_us "$LINE")")
        errs=$((errs + $(field errors "$LINE")))
        per+=("$(thousands "$(field rps "$LINE")")")
    done
    read -r c1 f1 < <(journal_counts)
    COMMITS_S[$cfg]=$(((c1 - c0) / (RUNS * DURATION)))
    FSYNCS_S[$cfg]=$(((f1 - f0) / (RUNS * DURATION)))
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

((REF_SQLITE)) && run_sqlite_ref
((REF_WORKERD)) && run_workerd
for ref in "plain SQLite:$SQ_STATUS" "workerd:$WD_STATUS"; do
    [[ ${ref#*:} == ok || ${ref#*:} == skipped* ]] || echo "bench: reference ${ref%%:*} ${ref#*:}" >&2
done

# ---- report ---------------------------------------------------------------
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'
}

CMD="SHARDS=$SHARDS DURATION=$DURATION RUNS=$RUNS tests/bench/run.sh"
if ((!REFS)); then
    CMD="REFS=0 $CMD"
else
    ((REF_SQLITE)) || CMD="REF_SQLITE=0 $CMD"
    ((REF_WORKERD)) || CMD="REF_WORKERD=0 $CMD"
fi
REPORT=$OUT/latest.md

# The ratio columns: dobj's counter (b) or (c) over the reference's (d)/(e)
# or (f)/(g); "n/a" when the reference has no figures.
ref_ratio() { # DOBJ_CFG REF_CFG STATUS
    if [[ $3 == ok ]]; then ratio "${RPS[$1]}" "${RPS[$2]}"; else echo "n/a"; fi
}
declare -A VS_SQ=([one]=sq_one [spread]=sq_spread) VS_WD=([one]=wd_one [spread]=wd_spread)
# A reference's rows: its figures, or one row that says why there are none.
ref_rows() { # STATUS NAME CFG...
    local status=$1 name=$2 cfg
    shift 2
    if [[ $status != ok ]]; then
        status=${status//|/\\|}
        echo "| $name: ${status//$'\n'/ } | — | — | — | — | — | — | — |"
        return 0
    fi
    for cfg in "$@"; do
        echo "| ${LABEL[$cfg]} | $(thousands "${RPS[$cfg]}") | $(ms "${P50[$cfg]}") | $(ms "${P99[$cfg]}") | — | — | — | ${ERRS[$cfg]} |"
    done
}
{
    echo "## dobj single-host benchmark, $DATE"
    echo
    echo "- machine: $NPROC cores (nproc), $MODEL${OS:+, $OS}, Linux $(uname -r)"
    echo "- **wrk and the server share the same $NPROC cores** (nothing is pinned): every figure includes the load generator's own CPU use"
    echo "- source: git $REV; $BIN built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
    echo "- $VERSION, $SHARDS shards, durability: the host journal (each event's record group-committed with others: one write + fdatasync per batch on io_uring; SQLite with synchronous=OFF); data directory on ${FS:-unknown}"
    echo "- $WRKV, $THREADS threads, $CONNS connections, ${DURATION} s per run, $RUNS runs per configuration after one ${WARMUP} s warm-up; medians of the runs"
    if ((REFS)); then
        echo "- reference points, run after the dobj server stopped, each alone on the machine:"
        if [[ $SQ_STATUS == ok ]]; then
            echo "  - plain SQLite: \`$SQ_BIN DIR $DURATION 1|$OBJECTS\` (tests/bench/sqlite_ref.c, sqlite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?')): one thread, no HTTP, runs the counter's UPSERT as BEGIN IMMEDIATE; UPSERT; COMMIT with WAL and synchronous=FULL (one fsync per commit) for $DURATION s, $RUNS runs each; p50/p99 are single commits' latencies, with no queueing behind other requests, so unlike wrk's"
        else
            echo "  - plain SQLite: $SQ_STATUS"
        fi
        if [[ $WD_STATUS == ok ]]; then
            echo "  - workerd: $WD_DESC, tests/bench/workerd/config.capnp + worker.js (compatibilityDate $(sed -n 's/.*compatibilityDate = "\([^"]*\)".*/\1/p' tests/bench/workerd/config.capnp), enableSql, durableObjectStorage = localDisk, --experimental): the counter as a SQLite-backed Durable Object, \`this.ctx.storage.sql\`, the same wrk runs as (b) and (c); storage on $(df -PT "$TMP" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }' || echo unknown)"
        else
            echo "  - workerd: $WD_STATUS"
        fi
    fi
    echo
    if ((REFS)); then
        echo "| configuration | req/s (median) | p50 | p99 | ratio to the hello ceiling | dobj ÷ plain SQLite | dobj ÷ workerd | errors |"
        echo "|---|--:|--:|--:|--:|--:|--:|--:|"
        for cfg in "${CONFIGS[@]}"; do
            if [[ -n ${VS_SQ[$cfg]:-} ]]; then
                vs="$(ref_ratio "$cfg" "${VS_SQ[$cfg]}" "$SQ_STATUS") | $(ref_ratio "$cfg" "${VS_WD[$cfg]}" "$WD_STATUS")"
            else
                vs="— | —"
            fi
            echo "| ${LABEL[$cfg]} | $(thousands "${RPS[$cfg]}") | $(ms "${P50[$cfg]}") | $(ms "${P99[$cfg]}") | $(ratio "${RPS[$cfg]}" "${RPS[hello]}") | $vs | ${ERRS[$cfg]} |"
        done
        ref_rows "$SQ_STATUS" "plain SQLite" sq_one sq_spread
        ref_rows "$WD_STATUS" "workerd" wd_one wd_spread
    else
        echo "| configuration | req/s (median) | p50 | p99 | ratio to the hello ceiling | errors |"
        echo "|---|--:|--:|--:|--:|--:|"
        for cfg in "${CONFIGS[@]}"; do
            echo "| ${LABEL[$cfg]} | $(thousands "${RPS[$cfg]}") | $(ms "${P50[$cfg]}") | $(ms "${P99[$cfg]}") | $(ratio "${RPS[$cfg]}" "${RPS[hello]}") | ${ERRS[$cfg]} |"
        done
    fi
    echo
    ALL=("${CONFIGS[@]}")
    [[ $SQ_STATUS == ok ]] && ALL+=(sq_one sq_spread)
    [[ $WD_STATUS == ok ]] && ALL+=(wd_one wd_spread)
    echo "req/s of each run: $(for cfg in "${ALL[@]}"; do printf '%s %s; ' "$cfg" "${DETAIL[$cfg]}"; done | sed 's/; $//')."
    echo "Journal, from /_metrics over the measured runs (means): $(for cfg in one spread; do
        printf '%s %s commits/s and %s fsyncs/s (%s commits per fsync); ' "$cfg" "$(thousands "${COMMITS_S[$cfg]}")" \
            "$(thousands "${FSYNCS_S[$cfg]}")" "$(ratio "${COMMITS_S[$cfg]}" "${FSYNCS_S[$cfg]}")"
    done | sed 's/; $//')."
    if ((REFS)); then
        echo "dobj ÷ plain SQLite = (b) ÷ (d) and (c) ÷ (e); dobj ÷ workerd = (b) ÷ (f) and (c) ÷ (g)."
    fi
    echo "p50 and p99 are wrk's --latency percentiles (the medians over the runs);"
    echo "errors = responses with a status above 399 + socket errors (connect, read, write, timeout), summed over the runs."
    echo
    if ((${#ERROR_RUNS[@]} > 0)); then
        echo "**Runs with errors:**"
        echo
        for e in "${ERROR_RUNS[@]}"; do echo "- \`$e\`"; done
        echo
    fi
    if ((${#WD_ERROR_RUNS[@]} > 0)); then
        echo "**workerd runs with errors** (the reference's; they do not fail the run):"
        echo
        for e in "${WD_ERROR_RUNS[@]}"; do echo "- \`$e\`"; done
        echo
    fi
    echo "Correctness (after the runs):"
    echo
    echo "- $CHECK_ONE"
    echo "- $CHECK_SPREAD"
    echo "- $SERVER_END; its log (--log-level warn) has $LOGLINES line(s)"
    [[ -n $SQ_CHECK ]] && echo "- $SQ_CHECK"
    for c in "${WD_CHECKS[@]}"; do
        [[ $c == MISMATCH* ]] && c="**$c** (workerd's; does not fail the run)"
        echo "- $c"
    done
    echo
    echo "Command: \`make bench\`, i.e. \`$CMD\`, which ran:"
    echo
    echo '```'
    echo "${SERVER_CMD[*]}"
    for cfg in "${CONFIGS[@]}"; do echo "${WRKCMD[$cfg]}"; done
    for c in "${SQ_CMDS[@]}"; do echo "$c"; done
    if [[ $WD_STATUS == ok ]]; then
        echo "${WD_CMD[*]}"
        for cfg in wd_one wd_spread; do echo "${WRKCMD[$cfg]}"; done
    fi
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
