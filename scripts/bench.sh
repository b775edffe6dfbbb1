#!/usr/bin/env bash
# Throughput and latency of gatekeeper behind nginx's auth_request, against
# what the same wiring gives without it — measured in one run, in
# interleaved rounds, reporting medians (bench/README.md has the results).
#
#     bash scripts/bench.sh                    5 rounds × 10 s per variant and phase
#     bash scripts/bench.sh --quick            2 rounds × 2 s (smoke run)
#     bash scripts/bench.sh --rounds N --duration S --only gk,null --perf
#     bash scripts/bench.sh --only gk-pg --perf gk-pg   (profile that variant)
#     bash scripts/bench.sh --only null,gk,gk-pg --baseline OLD_BINARY
#                                  (A/B of two builds in the same rounds)
#
# Variants (wrk → nginx → /_authz → ..., nginx → mock backend = nginx itself):
#     limit        /_authz answered by nginx itself (return 204): the ceiling
#     null         /_authz proxied to the null responder (an nginx that returns
#                  200, empty body) through the bundled `upstream gatekeeper`
#     gk           /_authz proxied to gatekeeper, DB-less, bench/policy.toml
#     gk-pg        gatekeeper on PostgreSQL (a fresh database, `migrate` +
#                  `apply bench/policy.toml`) with Redis limits
#     direct-10    wrk → gatekeeper /authz, no nginx, 10 routes (the gk process)
#     direct-100k  the same with 100,000 routes (bench/policy.toml + 99,990)
# `--only` takes a comma-separated list of these (`direct` = both direct ones).
# `--baseline BIN` adds gk-base and gk-pg-base: gk (DB-less) and gk-pg run by
# another gatekeeper binary (an older build) — gk-pg-base on the same
# database, its Redis keys under their own prefix — measured in the same
# interleaved rounds; the report adds the ratios gk / gk-base and
# gk-pg / gk-pg-base (each only when both sides are selected). The machine's
# drift cancels out of those ratios, so this is how a change is judged.
#
# Phases: `load` (BENCH_CONNECTIONS wrk connections, default 32: what the
# box can do) and `c1` (one connection: the latency of one request without
# queueing). Every 2xx is checked for (a non-2xx answer or a socket error
# flags the run and the exit status is 3).
#
# CPU placement (2-core machine): wrk on BENCH_CPUS_WRK (default 1), nginx,
# the null responder and gatekeeper on BENCH_CPUS_SERVERS (default 0); each
# server gets as many workers as that set has CPUs. Set both to "" for no
# pinning. PostgreSQL and Redis are shared services and are not pinned.
#
# Needs: nginx with the njs module, wrk (both installed from Debian when
# missing), PostgreSQL on $PG (trust auth, as scripts/test.sh sets up) and
# Redis on 127.0.0.1:6379 for gk-pg. Loopback only; stops everything it
# started, drops its database and deletes its Redis keys on exit
# (BENCH_KEEP=1 keeps the run directory with the logs).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

ROUNDS=5
DURATION=10
WARMUP=3
ONLY=limit,null,gk,gk-pg,direct
PERF=                 # the variant profiled after the rounds (gk or gk-pg), if any
BASELINE=             # --baseline: another gatekeeper binary, run as gk-base and gk-pg-base
CONNS=${BENCH_CONNECTIONS:-32}
CPUS_WRK=${BENCH_CPUS_WRK-1}
CPUS_SERVERS=${BENCH_CPUS_SERVERS-0}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
REDIS_URL=redis://127.0.0.1:6379/0
NJS_MODULE=/usr/lib/nginx/modules/ngx_http_js_module.so
START_TIMEOUT=60            # seconds a service gets to answer (100k routes included)
EXTRA_ROUTES=99990          # direct-100k: bench/policy.toml's 10 + these

# Ports (loopback): front nginx per variant, its mock backend, the null
# responder, and gatekeeper's /authz and admin listeners.
declare -A FRONT_PORT=([limit]=19081 [null]=19082 [gk]=19083 [gk-pg]=19084 [gk-pg-base]=19085 [gk-base]=19086)
declare -A BACKEND_PORT=([limit]=19181 [null]=19182 [gk]=19183 [gk-pg]=19184 [gk-pg-base]=19185 [gk-base]=19186)
NULL_PORT=19090
declare -A GK_PORT=([gk]=19843 [gk-pg]=19853 [gk-100k]=19863 [gk-pg-base]=19873 [gk-base]=19883)
declare -A GK_ADMIN=([gk]=19844 [gk-pg]=19854 [gk-100k]=19864 [gk-pg-base]=19874 [gk-base]=19884)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --quick) ROUNDS=2; DURATION=2; WARMUP=1 ;;
        --rounds) ROUNDS=${2:?--rounds N}; shift ;;
        --duration) DURATION=${2:?--duration S}; shift ;;
        --only) ONLY=${2:?--only LIST}; shift ;;
        --perf)
            PERF=gk
            case ${2:-} in gk|gk-pg) PERF=$2; shift ;; esac ;;
        --baseline) BASELINE=${2:?--baseline BIN}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive whole number"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "--duration: whole seconds"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS: a positive whole number"

if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || die "--baseline: $BASELINE is not an executable"
    BASELINE=$(realpath "$BASELINE")
    for want in ${ONLY//,/ }; do
        case $want in
            gk) ONLY=$ONLY,gk-base ;;
            gk-pg) ONLY=$ONLY,gk-pg-base ;;
        esac
    done
fi
ALL_VARIANTS=(limit null gk gk-base gk-pg gk-pg-base direct-10 direct-100k)
VARIANTS=()
for v in "${ALL_VARIANTS[@]}"; do
    for want in ${ONLY//,/ }; do
        if [ "$want" = "$v" ] || { [ "$want" = direct ] && [[ $v == direct-* ]]; }; then
            VARIANTS+=("$v")
        fi
    done
done
for want in ${ONLY//,/ }; do
    [[ " ${ALL_VARIANTS[*]} direct " == *" $want "* ]] || die "--only: unknown variant $want"
done
[ ${#VARIANTS[@]} -gt 0 ] || die "--only: no variant"
selected() { [[ " ${VARIANTS[*]} " == *" $1 "* ]]; }
if [ -n "$BASELINE" ] && ! selected gk-base && ! selected gk-pg-base; then
    die "--baseline: compares with gk or gk-pg, which --only leaves out"
fi

# ── CPU placement ───────────────────────────────────────────────────────────

# Number of CPUs in a taskset list ("0", "0,1", "0-1"); all of them if empty.
cpu_count() {
    local list=$1 n=0 part
    [ -n "$list" ] || { nproc; return; }
    for part in ${list//,/ }; do
        if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
    done
    echo "$n"
}
SERVER_WORKERS=$(cpu_count "$CPUS_SERVERS")
WRK_THREADS=$(cpu_count "$CPUS_WRK")
[ "$WRK_THREADS" -le "$CONNS" ] || WRK_THREADS=$CONNS

# ── installing what is missing ──────────────────────────────────────────────

# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

ensure_tools() {
    if ! command -v nginx >/dev/null || [ ! -f "$NJS_MODULE" ]; then
        log "installing nginx and the njs module"
        apt_install nginx libnginx-mod-http-js
    fi
    command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
    command -v taskset >/dev/null || [ -z "$CPUS_WRK$CPUS_SERVERS" ] || die "taskset is missing (util-linux)"
    if selected gk-pg; then
        pg_isready -q -d "$PG/postgres" || die "PostgreSQL is not reachable at $PG (bash scripts/test.sh starts it)"
        redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 || die "Redis is not reachable at $REDIS_URL (bash scripts/test.sh starts it)"
    fi
    if [ -n "$PERF" ]; then
        command -v perf >/dev/null || { log "installing perf"; apt_install linux-perf; }
    fi
}

build_gatekeeper() {
    log "cargo build --release --locked"
    cargo build --release --locked -q
    # A copy, so that a rebuild during the run does not change what is measured.
    cp target/release/gatekeeper "$RUN_DIR/gatekeeper"
    GK_BIN=$RUN_DIR/gatekeeper
    if [ -n "$BASELINE" ]; then cp "$BASELINE" "$RUN_DIR/gatekeeper-base"; fi
}

# ── processes: starting, waiting, stopping ──────────────────────────────────

PIDS=""
DB=""
REDIS_PREFIX=""

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cleanup() {
    local rc=$? pid
    for pid in $PIDS; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in $PIDS; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in $PIDS; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ -n "$DB" ]; then
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ -n "$REDIS_PREFIX" ]; then
        redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null \
            | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    fi
    if [ -n "${RUN_DIR:-}" ]; then
        if [ "${BENCH_KEEP:-}" = 1 ]; then log "kept $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
    fi
    exit "$rc"
}

# start_gatekeeper NAME [VAR=value ...]: gatekeeper with a clean environment.
start_gatekeeper() {
    local name=$1 bin=$GK_BIN; shift
    case $name in gk-base|gk-pg-base) bin=$RUN_DIR/gatekeeper-base ;; esac
    env -i PATH="$PATH" HOME="$HOME" \
        GATEKEEPER_LISTEN="127.0.0.1:${GK_PORT[$name]}" \
        GATEKEEPER_ADMIN_LISTEN="127.0.0.1:${GK_ADMIN[$name]}" \
        GATEKEEPER_WORKERS="$SERVER_WORKERS" \
        GATEKEEPER_LOG_FORMAT=json \
        "$@" \
        "$RUN_DIR/pin" "$CPUS_SERVERS" "$bin" serve >"$RUN_DIR/$name.log" 2>&1 &
    local pid=$!
    PIDS="$PIDS $pid"
    GK_PID[$name]=$pid
    wait_for "gatekeeper ($name)" "$pid" "http://127.0.0.1:${GK_ADMIN[$name]}/readyz"
}
declare -A GK_PID=()

# <run dir>/pin CPUS COMMAND...: execs COMMAND on those CPUs (unpinned when
# CPUS is empty). A program, not a function, so that the PID of a service
# started in the background is the service's own (stopped and measured).
make_wrapper() {
    cat >"$RUN_DIR/pin" <<'EOF'
#!/bin/sh
cpus=$1; shift
if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
EOF
    chmod 755 "$RUN_DIR/pin"
}

start_nginx() {   # NAME DIR: nginx with DIR as prefix, DIR/conf/nginx.conf
    local name=$1 dir=$2 out
    out=$(nginx -t -q -p "$dir/" -c "$dir/conf/nginx.conf" 2>&1) || die "nginx -t ($name) failed:
$out"
    "$RUN_DIR/pin" "$CPUS_SERVERS" nginx -p "$dir/" -c "$dir/conf/nginx.conf" -g 'daemon off;' \
        >"$dir/nginx.out" 2>&1 &
    local pid=$!
    PIDS="$PIDS $pid"
    NGINX_PID[$name]=$pid
}
declare -A NGINX_PID=()

# ── configuration ───────────────────────────────────────────────────────────

# Replaces the one line of FILE equal (after indentation) to FROM by TO.
substitute() {
    local file=$1 from=$2 to=$3 count
    count=$(grep -cxF -- "$from" <(sed 's/^[[:space:]]*//; s/[[:space:]]*\(#.*\)\{0,1\}$//' "$file") || true)
    [ "$count" = 1 ] || die "$file: expected exactly one line '$from', found $count"
    FROM="$from" TO="$to" perl -pi -e 's/^(\s*)\Q$ENV{FROM}\E(\s*(#.*)?)$/$1$ENV{TO}$2/' "$file"
}

render() {   # TEMPLATE OUT VAR=value...: replaces @VAR@ placeholders
    local template=$1 out=$2; shift 2
    cp "$template" "$out"
    local kv
    for kv in "$@"; do sed -i "s|@${kv%%=*}@|${kv#*=}|g" "$out"; done
    ! grep -n '@[A-Z_]*@' "$out" || die "$out: placeholder left"
}

# The front nginx of VARIANT: bench/nginx.conf + a copy of nginx/ in which
# only the gatekeeper upstream's address (or, for `limit`, the /_authz
# location) differs.
prepare_front() {
    local v=$1 dir=$RUN_DIR/front-$1 upstream
    mkdir -p "$dir/conf" "$dir/tmp"
    render bench/nginx.conf "$dir/conf/nginx.conf" WORKERS="$SERVER_WORKERS" \
        PORT="${FRONT_PORT[$v]}" BACKEND_PORT="${BACKEND_PORT[$v]}"
    cp -R nginx "$dir/conf/gatekeeper"
    local g=$dir/conf/gatekeeper added removed=1
    case $v in
        limit)
            # The body of `location = /_authz { ... }` becomes `internal; return 204;`.
            perl -0pi -e 's/^(location = \/_authz \{\n    internal;\n).*?^\}\n/$1    return 204;\n}\n/ms' \
                "$g/gatekeeper.conf"
            added="    return 204;"
            removed=$(awk '/^location = \/_authz \{/ { on = 1 } on && /^\}/ { print n - 2; exit } on { n++ }' \
                nginx/gatekeeper.conf) ;;
        null) upstream=127.0.0.1:$NULL_PORT ;;
        *) upstream=127.0.0.1:${GK_PORT[$v]} ;;
    esac
    if [ -n "${upstream:-}" ]; then
        substitute "$g/gatekeeper-http.conf" "server 127.0.0.1:7843;" "server $upstream;"
        added="    server $upstream;"
    fi
    # Nothing else differs from the bundled configuration.
    local diffs
    diffs=$(diff -r nginx "$g" || true)
    if [ "$(grep '^> ' <<<"$diffs" | cut -c3- | sed 's/[[:space:]]*#.*$//')" != "$added" ] \
        || [ "$(grep -c '^< ' <<<"$diffs")" != "$removed" ]; then
        printf '%s\n' "$diffs" >&2
        die "$v: unexpected changes to the bundled configuration"
    fi
    start_nginx "$v" "$dir"
}

start_null_responder() {
    local dir=$RUN_DIR/null-responder
    mkdir -p "$dir/conf" "$dir/tmp"
    render bench/null.conf "$dir/conf/nginx.conf" WORKERS="$SERVER_WORKERS" PORT="$NULL_PORT"
    start_nginx null-responder "$dir"
    wait_for "null responder" "${NGINX_PID[null-responder]}" "http://127.0.0.1:$NULL_PORT/"
}

start_gk_pg() {
    DB=gk_bench_$$
    psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
    local url=$PG/$DB
    env -i PATH="$PATH" HOME="$HOME" GATEKEEPER_DATABASE_URL="$url" "$GK_BIN" migrate >"$RUN_DIR/migrate.log" 2>&1 \
        || die "gatekeeper migrate failed (see $RUN_DIR/migrate.log)"
    env -i PATH="$PATH" HOME="$HOME" GATEKEEPER_DATABASE_URL="$url" "$GK_BIN" apply bench/policy.toml >"$RUN_DIR/apply.log" 2>&1 \
        || die "gatekeeper apply failed (see $RUN_DIR/apply.log)"
    REDIS_PREFIX="gatekeeper-bench:$$:"
    start_gatekeeper gk-pg GATEKEEPER_DATABASE_URL="$url" \
        GATEKEEPER_REDIS_URL="$REDIS_URL" GATEKEEPER_REDIS_PREFIX="$REDIS_PREFIX"
    if selected gk-pg-base; then
        start_gatekeeper gk-pg-base GATEKEEPER_DATABASE_URL="$url" \
            GATEKEEPER_REDIS_URL="$REDIS_URL" GATEKEEPER_REDIS_PREFIX="${REDIS_PREFIX}base:"
    fi
}

# bench/policy.toml plus EXTRA_ROUTES prefix routes on the same domain (the
# largest path index a lookup can probe), like scripts/scale.sh's policy.
write_big_policy() {
    local out=$RUN_DIR/policy-100k.toml
    cp bench/policy.toml "$out"
    awk -v n="$EXTRA_ROUTES" 'BEGIN {
        for (i = 1; i <= n; i++)
            printf "\n[[route]]\nid = \"gen-%d\"\ndomain = \"bench.example.com\"\npath = \"/v1/gen%d/*\"\nservice = \"gen\"\n[route.methods]\nGET = [\"api_key\"]\n", i, i
    }' >>"$out"
    echo "$out"
}

# ── checks before and after ─────────────────────────────────────────────────

KEY0=gk_801g1hrgx7hb_ipzm9pdaHfnAk6gTVQM6eABmwd1Jc4sj03q2fG   # bench/wrk.lua's first key (bench-c0)
BAD_KEY=gk_801g1hrgx7hb_notTheRightSecretAtAllxxxxxxxxxxxxxxx

front_get() {   # VARIANT PATH KEY → "status headers"
    curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:${FRONT_PORT[$1]}$2" \
        -H 'Host: bench.example.com' -H "Authorization: Bearer $3"
}
direct_get() {   # NAME PATH KEY → headers
    curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:${GK_PORT[$1]}/authz" \
        -H 'X-Original-Method: GET' -H "X-Original-URI: $2" -H "X-Original-Path: $2" \
        -H 'X-Original-Host: bench.example.com' -H "Authorization: Bearer $3"
}
status_of() { head -n1 | awk '{print $2}'; }
expect() {   # WHAT WANT GOT
    [ "$2" = "$3" ] || die "check failed: $1: expected $2, got ${3:-nothing}"
}

# Proves each variant does what it claims before it is measured: gatekeeper
# variants judge (a wrong key is refused) and charge a limit on an allow.
sanity_checks() {
    local v h
    for v in "${VARIANTS[@]}"; do
        case $v in
            limit|null)
                expect "$v allows" 200 "$(front_get "$v" /v1/r0/models "$KEY0" | status_of)" ;;
            gk|gk-base|gk-pg|gk-pg-base)
                h=$(front_get "$v" /v1/r3/models "$KEY0")
                expect "$v allows key 0" 200 "$(status_of <<<"$h")"
                grep -qi '^x-bench-client: bench-c0' <<<"$h" || die "$v: no identity from gatekeeper"
                grep -qi '^x-ratelimit-limit: ' <<<"$h" || die "$v: no limit applied"
                expect "$v refuses a wrong key" 401 "$(front_get "$v" /v1/r3/models "$BAD_KEY" | status_of)" ;;
            direct-10|direct-100k)
                local name=gk; [ "$v" = direct-100k ] && name=gk-100k
                h=$(direct_get "$name" /v1/r9/models "$KEY0")
                expect "$v allows key 0" 200 "$(status_of <<<"$h")"
                grep -qi '^x-auth-route-id: bench-r9' <<<"$h" || die "$v: wrong route"
                grep -qi '^x-ratelimit-limit: ' <<<"$h" || die "$v: no limit applied"
                if [ "$v" = direct-100k ]; then
                    # A generated route exists: key 0 has no grant on it.
                    expect "$v generated route" 403 "$(direct_get gk-100k /v1/gen$EXTRA_ROUTES/x "$KEY0" | status_of)"
                    curl -s -m 5 "http://127.0.0.1:${GK_ADMIN[gk-100k]}/readyz" | grep -q "\"routes\":$((EXTRA_ROUTES + 10))" \
                        || die "$v: /readyz does not report $((EXTRA_ROUTES + 10)) routes"
                fi ;;
        esac
    done
}

rss_all() {   # "name=RSS_MB ..." for every gatekeeper started
    local name out=""
    for name in "${!GK_PID[@]}"; do
        out="$out $name=$(ps -o rss= -p "${GK_PID[$name]}" | awk '{printf "%.1fMB", $1 / 1024}')"
    done
    echo "${out# }"
}

metric_sum() {   # NAME METRIC: every series of a counter, summed
    curl -s -m 5 "http://127.0.0.1:${GK_ADMIN[$1]}/metrics" \
        | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d", s }'
}

# EVAL/EVALSHA calls Redis has served (the limiter: one script per batch of
# decisions waiting at once on a worker; see src/state/redis/batch.rs).
redis_script_calls() {
    redis-cli -u "$REDIS_URL" info commandstats 2>/dev/null \
        | awk -F'[:=,]' '/^cmdstat_eval(sha)?:/ { s += $3 } END { printf "%d", s }'
}

decisions() {   # NAME DECISION: gatekeeper_decisions_total summed
    curl -s -m 5 "http://127.0.0.1:${GK_ADMIN[$1]}/metrics" \
        | awk -v d="decision=\"$2\"" '/^gatekeeper_decisions_total/ && index($0, d) { s += $NF } END { printf "%d", s }'
}

# ── measuring ───────────────────────────────────────────────────────────────

HZ=$(getconf CLK_TCK)
proc_ticks() {   # utime+stime of PIDs and their children (nginx workers)
    local pid all="" t=0 IFS=$' \t\n'
    for pid in "$@"; do all="$all $pid $(pgrep -P "$pid" | tr '\n' ' ' || true)"; done
    # shellcheck disable=SC2086
    for pid in $(printf '%s\n' $all | sort -u); do
        [ -r "/proc/$pid/stat" ] || continue
        t=$((t + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$t"
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# The processes whose CPU a variant's round is charged to: front nginx,
# upstream (null responder or gatekeeper), Redis and PostgreSQL (all).
groups_of() {
    local v=$1 front="" up=""
    case $v in
        limit) front=${NGINX_PID[limit]} ;;
        null) front=${NGINX_PID[null]}; up=${NGINX_PID[null-responder]} ;;
        gk|gk-base|gk-pg|gk-pg-base) front=${NGINX_PID[$v]}; up=${GK_PID[$v]} ;;
        direct-10) up=${GK_PID[gk]} ;;
        direct-100k) up=${GK_PID[gk-100k]} ;;
    esac
    local redis pg
    redis=$(pgrep -x redis-server | tr '\n' ' ' || true)
    pg=$(pgrep -x postgres | tr '\n' ' ' || true)
    echo "${front:-none}|${up:-none}|${redis:-none}|${pg:-none}"
}
ticks_of_groups() {
    local IFS='|' g out=""
    for g in $1; do
        IFS=' '
        # shellcheck disable=SC2086
        if [ "$g" = none ]; then out="$out 0"; else out="$out $(proc_ticks $g)"; fi
        IFS='|'
    done
    echo "${out# }"
}

url_of() {
    case $1 in
        direct-10) echo "http://127.0.0.1:${GK_PORT[gk]}/" ;;
        direct-100k) echo "http://127.0.0.1:${GK_PORT[gk-100k]}/" ;;
        *) echo "http://127.0.0.1:${FRONT_PORT[$1]}/" ;;
    esac
}

# run_wrk VARIANT CONNECTIONS SECONDS OUT: one wrk run; OUT gets wrk's output,
# OUT.time its own CPU (bash `time`: wall user sys).
run_wrk() {
    local v=$1 c=$2 d=$3 out=$4 mode=nginx threads=$WRK_THREADS
    [[ $v == direct-* ]] && mode=direct
    [ "$threads" -le "$c" ] || threads=$c
    local TIMEFORMAT='%R %U %S'
    { time BENCH_MODE=$mode timeout $((d + 30)) \
        "$RUN_DIR/pin" "$CPUS_WRK" wrk -t"$threads" -c"$c" -d"${d}s" --timeout 2s --latency \
        -s bench/wrk.lua "$(url_of "$v")" >"$out" 2>&1; } 2>"$out.time" \
        || die "wrk failed on $v (see $out)"
    grep -q '^BENCH ' "$out" || die "wrk printed no result on $v: $(cat "$out")"
}

field() { grep -o "$1=[0-9.]*" | head -n1 | cut -d= -f2; }

# measure VARIANT PHASE ROUND: one recorded run → a line of $RESULTS.
measure() {
    local v=$1 phase=$2 round=$3 c=$CONNS
    [ "$phase" = c1 ] && c=1
    local out=$RUN_DIR/wrk-$v-$phase-$round.txt groups before after b0 b1
    groups=$(groups_of "$v")
    before=$(ticks_of_groups "$groups"); b0=$(busy_ticks)
    run_wrk "$v" "$c" "$DURATION" "$out"
    after=$(ticks_of_groups "$groups"); b1=$(busy_ticks)
    local line wall wrk_cpu
    line=$(grep '^BENCH ' "$out")
    read -r wall u s <"$out.time"
    # CPU use in % of one core over the round, per process group.
    wrk_cpu=$(awk -v u="$u" -v s="$s" -v w="$wall" 'BEGIN { printf "%.0f", (u + s) / w * 100 }')
    local pct
    pct=$(awk -v wrk="$wrk_cpu" -v a="$before" -v b="$after" -v hz="$HZ" -v w="$wall" -v b0="$b0" -v b1="$b1" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) { p = (y[i] - x[i]) / hz / w * 100; ours += p; printf "%.0f ", p }
        m = (b1 - b0) / hz / w * 100
        printf "%.0f %.0f", m, m - ours - wrk }')
    local non2xx errs
    non2xx=$(field non2xx <<<"$line")
    errs=$(( $(field connect <<<"$line") + $(field read <<<"$line") + $(field write <<<"$line") + $(field timeout <<<"$line") ))
    # variant phase round rps p50 p99 non2xx sockerr, then CPU %: wrk front upstream
    # redis pg machine rest (machine − the others: other programs, interrupts)
    printf '%s %s %s %s %s %s %s %s %s %s\n' "$v" "$phase" "$round" \
        "$(field rps <<<"$line")" "$(field p50_us <<<"$line")" "$(field p99_us <<<"$line")" \
        "$non2xx" "$errs" "$wrk_cpu" "$pct" >>"$RESULTS"
    printf '   %-12s %-4s round %s: %9s req/s  p50 %6s µs  p99 %6s µs  non-2xx %s  errors %s  CPU%% rest %s\n' \
        "$v" "$phase" "$round" "$(field rps <<<"$line")" "$(field p50_us <<<"$line")" \
        "$(field p99_us <<<"$line")" "$non2xx" "$errs" "${pct##* }" >&2
}

# ── the report ──────────────────────────────────────────────────────────────

# median of the numbers on stdin
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "-"; exit }
    if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
med() {   # VARIANT PHASE COLUMN
    awk -v v="$1" -v p="$2" -v c="$3" '$1 == v && $2 == p { print $c }' "$RESULTS" | median
}
total() { awk -v v="$1" -v c="$2" '$1 == v { s += $c } END { print s + 0 }' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.1f%%", a / b * 100 }'; }
minus_ms() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.3f ms", (a - b) / 1000 }'; }
spread() {   # VARIANT: (max - min) / median of load req/s, in %
    awk -v v="$1" '$1 == v && $2 == "load" { print $4 }' "$RESULTS" | sort -n | awk '
        { a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        if (m > 0) printf "%.1f%%", (a[NR] - a[1]) / m * 100; else print "-" }'
}

report() {
    local v
    echo
    echo "## Medians of $ROUNDS rounds × ${DURATION}s (load: $CONNS connections; c1: 1 connection)"
    echo
    echo "| variant | req/s | p50 | p99 | spread | c1 req/s | c1 p50 | c1 p99 | non-2xx | errors | CPU % wrk / nginx / upstream / redis / pg / machine / rest |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for v in "${VARIANTS[@]}"; do
        printf '| %s | %s | %s µs | %s µs | %s | %s | %s µs | %s µs | %s | %s | %s / %s / %s / %s / %s / %s / %s |\n' "$v" \
            "$(med "$v" load 4)" "$(med "$v" load 5)" "$(med "$v" load 6)" "$(spread "$v")" \
            "$(med "$v" c1 4)" "$(med "$v" c1 5)" "$(med "$v" c1 6)" \
            "$(total "$v" 7)" "$(total "$v" 8)" \
            "$(med "$v" load 9)" "$(med "$v" load 10)" "$(med "$v" load 11)" \
            "$(med "$v" load 12)" "$(med "$v" load 13)" "$(med "$v" load 14)" "$(med "$v" load 15)"
    done
    echo
    echo "Ratios (medians of req/s under load; added latency = difference of c1 p99):"
    echo
    local a b
    for a in gk gk-base gk-pg gk-pg-base; do
        selected "$a" || continue
        for b in null limit; do
            selected "$b" || continue
            echo "- $a / $b: $(ratio "$(med "$a" load 4)" "$(med "$b" load 4)") req/s;" \
                "p99 added (c1): $(minus_ms "$(med "$a" c1 6)" "$(med "$b" c1 6)")"
        done
    done
    if selected gk-base; then
        echo "- gk / gk-base: $(ratio "$(med gk load 4)" "$(med gk-base load 4)") req/s (this build against the baseline)"
    fi
    if selected gk-pg-base; then
        echo "- gk-pg / gk-pg-base: $(ratio "$(med gk-pg load 4)" "$(med gk-pg-base load 4)") req/s (this build against the baseline)"
    fi
    if selected direct-10 && selected direct-100k; then
        echo "- direct-100k / direct-10: $(ratio "$(med direct-100k load 4)" "$(med direct-10 load 4)") req/s"
    fi
    echo
    echo "Rounds disturbed by other programs (rest > 15% of a core): $(awk '$15 > 15' "$RESULTS" | wc -l) of $(wc -l <"$RESULTS")"
}

# ── main ────────────────────────────────────────────────────────────────────

ensure_tools
for p in "${FRONT_PORT[@]}" "${BACKEND_PORT[@]}" "$NULL_PORT" "${GK_PORT[@]}" "${GK_ADMIN[@]}"; do
    port_free "$p" || die "127.0.0.1:$p is in use by another program"
done

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-bench.XXXXXX")
RESULTS=$RUN_DIR/results.txt
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
make_wrapper
build_gatekeeper

n=${#VARIANTS[@]}
estimate=$(( (n * 2 * (ROUNDS * DURATION + WARMUP)) ))
log "variants: ${VARIANTS[*]}; $ROUNDS rounds × ${DURATION}s × 2 phases; about $((estimate / 60 + 1)) min"
log "CPUs: $(nproc); wrk on '${CPUS_WRK:-any}' ($WRK_THREADS threads), servers on '${CPUS_SERVERS:-any}' ($SERVER_WORKERS workers each)"

selected null && start_null_responder
if selected gk || selected direct-10; then start_gatekeeper gk GATEKEEPER_CONFIG="$REPO/bench/policy.toml"; fi
selected gk-base && start_gatekeeper gk-base GATEKEEPER_CONFIG="$REPO/bench/policy.toml"
selected gk-pg && start_gk_pg
if selected direct-100k; then
    big=$(write_big_policy)
    start_gatekeeper gk-100k GATEKEEPER_CONFIG="$big"
fi
for v in limit null gk gk-base gk-pg gk-pg-base; do
    selected "$v" || continue
    prepare_front "$v"
    wait_for "nginx ($v)" "${NGINX_PID[$v]}" "http://127.0.0.1:${FRONT_PORT[$v]}/" any
done

sanity_checks
RSS_START=$(rss_all)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A DENY_START=()
for name in "${!GK_PID[@]}"; do DENY_START[$name]=$(decisions "$name" deny); done
REDIS_CALLS_START=0
[ -n "$REDIS_PREFIX" ] && REDIS_CALLS_START=$(redis_script_calls)

log "warm-up (${WARMUP}s per variant, not recorded)"
for v in "${VARIANTS[@]}"; do
    run_wrk "$v" "$CONNS" "$WARMUP" "$RUN_DIR/warmup-$v.txt"
    [ "$(field non2xx <"$RUN_DIR/warmup-$v.txt")" = 0 ] || die "$v: non-2xx answers during the warm-up"
done

: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    # Each round starts one variant later, so no variant always follows the same one.
    for i in $(seq 0 $((n - 1))); do
        v=${VARIANTS[$(((i + round - 1) % n))]}
        measure "$v" load "$round"
        measure "$v" c1 "$round"
    done
done

RSS_END=$(rss_all)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "$PERF" ] && selected "$PERF"; then
    log "perf: one more $PERF load round, profiled (not recorded)"
    perf record -q -a -g -F 1999 -o "$RUN_DIR/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
    run_wrk "$PERF" "$CONNS" "$DURATION" "$RUN_DIR/wrk-perf.txt"
    wait "$perf_pid" || true
    {
        echo
        echo "## perf: CPU by process during a $PERF round (system-wide, ${DURATION}s)"
        echo
        perf report -i "$RUN_DIR/perf.data" --stdio --no-children --sort comm -g none 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -n 12
        echo
        echo "## perf: gatekeeper's hottest symbols (% of gatekeeper's samples)"
        echo
        perf report -i "$RUN_DIR/perf.data" --stdio --no-children --pid "${GK_PID[$PERF]}" \
            --percentage relative --sort dso,symbol -g none --percent-limit 1 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | sed 's/[[:space:]-]*$//' | cut -c1-150 | head -n 40
        echo
        echo "## perf: gatekeeper's samples by where they fall"
        echo
        perf report -i "$RUN_DIR/perf.data" --stdio --no-children --pid "${GK_PID[$PERF]}" \
            --percentage relative --sort dso,symbol -g none 2>/dev/null \
            | awk '/%/ && $1 !~ /^#/ { sub("%", "", $1); s[$2] += $1 }
                   END { for (d in s) printf "    %6.2f%%  %s\n", s[d], d }' | sort -rn
    } >"$RUN_DIR/perf.txt"
fi

{
    echo "# gatekeeper benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $LOAD_START at the start, $LOAD_END at the end"
    echo "placement: wrk on CPU ${CPUS_WRK:-any} ($WRK_THREADS threads); nginx, null responder, gatekeeper on CPU ${CPUS_SERVERS:-any} ($SERVER_WORKERS workers each); Redis, PostgreSQL unpinned"
    echo "gatekeeper $("$GK_BIN" --version 2>/dev/null | awk '{print $2}'), $(nginx -v 2>&1 | cut -d' ' -f3), $(wrk --version 2>&1 | head -n1 | cut -d' ' -f2)"
    if [ -n "$BASELINE" ]; then echo "gk-base and gk-pg-base run $BASELINE (--baseline); every other gatekeeper variant this build"; fi
    echo "gatekeeper RSS: start $RSS_START; end $RSS_END"
    for name in "${!GK_PID[@]}"; do
        echo "gatekeeper $name: allow decisions $(decisions "$name" allow), deny decisions during the run $(( $(decisions "$name" deny) - ${DENY_START[$name]} ))"
    done
    if [ -n "$REDIS_PREFIX" ]; then
        echo "gatekeeper gk-pg: Redis errors $(metric_sum gk-pg gatekeeper_redis_errors_total), fallbacks to in-process $(metric_sum gk-pg gatekeeper_redis_fallbacks_total); Redis scripts run during the run (by every client of that Redis): $(( $(redis_script_calls) - REDIS_CALLS_START ))"
    fi
    report
    echo
    echo "## Every round (variant phase round req/s p50_us p99_us non2xx errors, CPU %: wrk front upstream redis pg machine rest)"
    echo
    sed 's/^/    /' "$RESULTS"
    if [ -f "$RUN_DIR/perf.txt" ]; then cat "$RUN_DIR/perf.txt"; fi
} | tee "$RUN_DIR/report.md"

bad=$(awk '$7 > 0 || $8 > 0' "$RESULTS" | wc -l)
if [ "$bad" -gt 0 ]; then
    echo
    echo "FLAGGED: $bad run(s) had non-2xx answers or socket errors — the figures above do not count."
    exit 3
fi
