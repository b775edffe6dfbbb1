#!/usr/bin/env bash
# End-to-end run: real nginx (the bundled nginx/ configuration: both example
# sites and the njs body bridge) in front of real gatekeeper (DB-less, on
# e2e/policy.toml, Redis for limits and nonces) and e2e/mock_backend.py, then
# the pytest suite in e2e/ through the official openai and ollama clients.
#
#     bash scripts/e2e.sh [pytest arguments]   run the suite (exit code = pytest's)
#     E2E_KEEP=1 bash scripts/e2e.sh           leave everything running afterwards
#     E2E_REDIS=0 bash scripts/e2e.sh          gatekeeper without Redis (in-process
#                                              limits and nonces)
#     bash scripts/e2e.sh stop                 stop what a kept run left running
#
# Every port and the state file can be set from the environment, so a second
# stack can run beside the first (OPENAI_PORT=28080 OLLAMA_PORT=28081
# SHARED_PORT=28082 MOCK_PORT=28090 MOCK_OLLAMA_PORT=28091 GK_PORT=27843
# GK_ADMIN_PORT=27844 STATE=/tmp/gk-b.state bash scripts/e2e.sh …).
#
# Installs what is missing (Debian's nginx and njs module, Redis, a Python
# venv in .e2e-venv), builds gatekeeper (`cargo build --locked`, or uses
# $GATEKEEPER_BIN), and starts everything in a fresh run directory on
# loopback only:
#
#     nginx, OpenAI-compatible site   127.0.0.1:18080   (nginx/sites/openai.conf)
#     nginx, Ollama site              127.0.0.1:18081   (nginx/sites/ollama.conf)
#     second nginx, both sites        127.0.0.1:18082   (one listener; the OpenAI
#                                                        site is the default server)
#     mock backend, OpenAI upstream   127.0.0.1:18090   (records tagged "openai")
#     mock backend, Ollama upstream   127.0.0.1:18091   (same process, "ollama")
#     gatekeeper /authz, admin        127.0.0.1:17843, 127.0.0.1:17844
#
# The sites are the files operators copy: the run directory gets nginx/ as
# conf/gatekeeper/ (the /etc/nginx/gatekeeper/ layout), with only the
# `listen` lines and the upstream addresses changed; the second nginx runs
# from <run dir>/shared/ with the same files, both sites listening on
# SHARED_PORT. When e2e/godecode/go.mod exists, its Go program is built
# (Debian's golang-go, offline) and passed to pytest as E2E_GODECODE.
# Safe to run again: a previous kept run is stopped first; everything
# started is stopped on exit.
#
# e2e/run_nginx_smoke.sh sources this file for its functions (nothing runs
# then) and sets its own ports and state file first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)

OPENAI_PORT=${OPENAI_PORT:-18080}
OLLAMA_PORT=${OLLAMA_PORT:-18081}
SHARED_PORT=${SHARED_PORT:-18082}
MOCK_PORT=${MOCK_PORT:-18090}
MOCK_OLLAMA_PORT=${MOCK_OLLAMA_PORT:-18091}
GK_PORT=${GK_PORT:-17843}
GK_ADMIN_PORT=${GK_ADMIN_PORT:-17844}
OPERATOR_KEY=sk-operator-e2e
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
E2E_REDIS=${E2E_REDIS:-1}   # 0: gatekeeper without GATEKEEPER_REDIS_URL
NJS_MODULE=/usr/lib/nginx/modules/ngx_http_js_module.so
VENV=$REPO/.e2e-venv
STATE=${STATE:-${TMPDIR:-/tmp}/gatekeeper-e2e-$(id -u).state}
START_TIMEOUT=30            # seconds each service gets to answer

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

# ── stopping (also what `stop` and the exit trap run) ───────────────────────

# Stops the processes and removes the run directory a state file names.
stop_recorded() {
    [ -f "$STATE" ] || return 0
    local RUN_DIR="" PIDS="" REDIS_PREFIX=""
    # shellcheck disable=SC1090
    . "$STATE"
    local pid
    for pid in $PIDS; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in $PIDS; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in $PIDS; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ -n "$REDIS_PREFIX" ] && command -v redis-cli >/dev/null; then
        redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null \
            | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    fi
    case "$RUN_DIR" in
        "${TMPDIR:-/tmp}"/gatekeeper-e2e.*) rm -rf "$RUN_DIR" ;;
    esac
    rm -f "$STATE"
}


# ── installing what is missing ──────────────────────────────────────────────

# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

ensure_nginx() {
    if ! command -v nginx >/dev/null || [ ! -f "$NJS_MODULE" ]; then
        log "installing nginx and the njs module"
        apt_install nginx libnginx-mod-http-js
    fi
    # Debian's nginx may have been started by an earlier install; it is not
    # ours and listens elsewhere (:80), so it is left alone.
}

# Same approach as scripts/test.sh. gatekeeper runs DB-less here, so only
# Redis is needed (shared limits and nonces, as in production).
ensure_redis() {
    command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        log "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
    fi
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "Redis is not reachable on 127.0.0.1:6379"
}

# Debian's Go, for e2e/godecode (the other suite's reference decoder).
ensure_go() {
    command -v go >/dev/null || { log "installing golang-go"; apt_install golang-go; }
}

# Builds e2e/godecode when it exists (offline: its go.mod needs nothing from
# the network) and exports E2E_GODECODE; without it, nothing.
build_godecode() {
    [ -f e2e/godecode/go.mod ] || return 0
    ensure_go
    log "go build ./e2e/godecode"
    # Its own module (e2e/godecode/go.mod): built from its directory.
    # A build cache even where HOME is unset (go refuses to run without one).
    (cd e2e/godecode && GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local \
        GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/go-build}" \
        go build -o "$RUN_DIR/godecode" .) || die "go build ./e2e/godecode failed"
    export E2E_GODECODE="$RUN_DIR/godecode"
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
    fi
    local want have=""
    want=$(sha256sum e2e/requirements.txt | cut -d' ' -f1)
    [ -f "$VENV/.requirements.sha256" ] && have=$(cat "$VENV/.requirements.sha256")
    if [ "$want" != "$have" ]; then
        log "installing e2e/requirements.txt"
        "$VENV/bin/pip" install -q --disable-pip-version-check -r e2e/requirements.txt
        echo "$want" >"$VENV/.requirements.sha256"
    fi
}

build_gatekeeper() {
    if [ -n "${GATEKEEPER_BIN:-}" ]; then
        [ -x "$GATEKEEPER_BIN" ] || die "GATEKEEPER_BIN=$GATEKEEPER_BIN is not executable"
        return
    fi
    log "cargo build --locked"
    cargo build --locked
    GATEKEEPER_BIN=$REPO/target/debug/gatekeeper
}

# ── the run directory ───────────────────────────────────────────────────────

# Replaces the one line of FILE equal (after indentation) to FROM by TO,
# keeping the indentation; fails unless exactly one line matches.
substitute() {
    local file=$1 from=$2 to=$3 count
    count=$(grep -cxF -- "$from" <(sed 's/^[[:space:]]*//; s/[[:space:]]*\(#.*\)\{0,1\}$//' "$file") || true)
    [ "$count" = 1 ] || die "$file: expected exactly one line '$from', found $count"
    FROM="$from" TO="$to" perl -pi -e '
        s/^(\s*)\Q$ENV{FROM}\E(\s*(#.*)?)$/$1$ENV{TO}$2/' "$file"
}

# nginx_dir DIR OPENAI_LISTEN_PORT OLLAMA_LISTEN_PORT: an nginx prefix
# directory with e2e/nginx.conf and the bundled files, only the listen lines
# and upstream addresses changed (both sites on one port when the two ports
# are equal: the OpenAI site, included first, is then the default server).
nginx_dir() {
    local dir=$1 openai_port=$2 ollama_port=$3
    mkdir -p "$dir"/conf "$dir"/tmp
    cp e2e/nginx.conf "$dir/conf/nginx.conf"
    cp -R nginx "$dir/conf/gatekeeper"
    local g=$dir/conf/gatekeeper
    substitute "$g/gatekeeper-http.conf" "server 127.0.0.1:7843;" "server 127.0.0.1:$GK_PORT;"
    substitute "$g/sites/openai.conf" "listen 80;" "listen 127.0.0.1:$openai_port;"
    substitute "$g/sites/openai.conf" "server 127.0.0.1:8000;" "server 127.0.0.1:$MOCK_PORT;"
    substitute "$g/sites/ollama.conf" "listen 80;" "listen 127.0.0.1:$ollama_port;"
    substitute "$g/sites/ollama.conf" "server 127.0.0.1:11434;" "server 127.0.0.1:$MOCK_OLLAMA_PORT;"
    # Nothing else differs from what operators copy.
    local changed
    changed=$(diff -r nginx "$g" | grep -c '^>' || true)
    [ "$changed" = 5 ] || { diff -r nginx "$g" || true; die "unexpected changes to the bundled configuration"; }
    mkdir -p "$g/secrets"
    # shellcheck disable=SC2016  # nginx's variable, literally
    printf 'map "" $openai_upstream_key { default "%s"; }\n' "$OPERATOR_KEY" \
        >"$g/secrets/openai-upstream-key.conf"
    chmod 600 "$g/secrets/openai-upstream-key.conf"
}

prepare_run_dir() {
    nginx_dir "$RUN_DIR" "$OPENAI_PORT" "$OLLAMA_PORT"              # sites on their own listeners
    nginx_dir "$RUN_DIR/shared" "$SHARED_PORT" "$SHARED_PORT"       # both sites on one listener
}

# ── starting and waiting ────────────────────────────────────────────────────

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

record_state() {
    cat >"$STATE" <<EOF
RUN_DIR='$RUN_DIR'
PIDS='$PIDS'
REDIS_PREFIX='$REDIS_PREFIX'
EOF
}

start_mock() {
    "$VENV/bin/python" e2e/mock_backend.py --port "$MOCK_PORT" --ollama-port "$MOCK_OLLAMA_PORT" \
        >"$RUN_DIR/mock.log" 2>&1 &
    MOCK_PID=$!
    PIDS="$PIDS $MOCK_PID"; record_state
    wait_for "mock backend" "$MOCK_PID" "http://127.0.0.1:$MOCK_PORT/_mock/health"
    wait_for "mock backend (ollama port)" "$MOCK_PID" "http://127.0.0.1:$MOCK_OLLAMA_PORT/_mock/health"
}

# start_gatekeeper [NAME=VALUE…]: extra environment for gatekeeper.
# shellcheck disable=SC2120  # e2e/run_nginx_smoke.sh passes some
start_gatekeeper() {
    local redis=()
    if [ "$E2E_REDIS" != 0 ]; then
        redis=(GATEKEEPER_REDIS_URL="$REDIS_URL" GATEKEEPER_REDIS_PREFIX="$REDIS_PREFIX")
    fi
    env -u GATEKEEPER_REDIS_URL GATEKEEPER_CONFIG="$REPO/e2e/policy.toml" \
        GATEKEEPER_LISTEN="127.0.0.1:$GK_PORT" \
        GATEKEEPER_ADMIN_LISTEN="127.0.0.1:$GK_ADMIN_PORT" \
        "${redis[@]}" \
        GATEKEEPER_LOG_FORMAT=json \
        GATEKEEPER_LOG_LEVEL="${GATEKEEPER_LOG_LEVEL:-debug}" \
        "$@" "$GATEKEEPER_BIN" serve >"$GK_LOG" 2>&1 &
    GK_PID=$!
    PIDS="$PIDS $GK_PID"; record_state
    wait_for gatekeeper "$GK_PID" "http://127.0.0.1:$GK_ADMIN_PORT/readyz"
}

# start_nginx_in DIR: one nginx on the prefix directory DIR; sets NGINX_PID.
start_nginx_in() {
    local dir=$1 out
    out=$(nginx -t -q -p "$dir/" -c "$dir/conf/nginx.conf" 2>&1) \
        || die "nginx -t failed ($dir):
$out"
    nginx -p "$dir/" -c "$dir/conf/nginx.conf" -g 'daemon off;' >"$dir/nginx.out" 2>&1 &
    NGINX_PID=$!
    PIDS="$PIDS $NGINX_PID"; record_state
}

start_nginx() {
    start_nginx_in "$RUN_DIR"
    wait_for "nginx (openai site)" "$NGINX_PID" "http://127.0.0.1:$OPENAI_PORT/" any
    wait_for "nginx (ollama site)" "$NGINX_PID" "http://127.0.0.1:$OLLAMA_PORT/" any
    start_nginx_in "$RUN_DIR/shared"
    wait_for "nginx (both sites on one listener)" "$NGINX_PID" "http://127.0.0.1:$SHARED_PORT/" any
}

# ── main ────────────────────────────────────────────────────────────────────

# Makes the run directory and the names of what this run starts (RUN_DIR,
# REDIS_PREFIX, GK_LOG, PIDS), recorded in $STATE; installs the exit trap.
new_run() {
    for port in $OPENAI_PORT $OLLAMA_PORT $SHARED_PORT $MOCK_PORT $MOCK_OLLAMA_PORT $GK_PORT $GK_ADMIN_PORT; do
        port_free "$port" || die "127.0.0.1:$port is in use by another program"
    done
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-e2e.XXXXXX")
    REDIS_PREFIX="gatekeeper-e2e:$(basename "$RUN_DIR" | cut -d. -f2)-$$:"
    GK_LOG=$RUN_DIR/gatekeeper.log
    PIDS=""
    record_state
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

on_exit() {
    local rc=$?
    if [ "${E2E_KEEP:-}" = 1 ]; then
        printf '\nE2E_KEEP=1: left running (run directory %s).\nStop with: %s\n' "$RUN_DIR" \
            "${STOP_HINT:-bash scripts/e2e.sh stop}"
    else
        stop_recorded
    fi
    exit "$rc"
}

main() {
    if [ "${1:-}" = "stop" ]; then
        stop_recorded
        echo "stopped"
        return 0
    fi
    stop_recorded                   # a previous kept (or interrupted) run

    ensure_nginx
    [ "$E2E_REDIS" = 0 ] || ensure_redis
    ensure_venv
    build_gatekeeper

    new_run
    build_godecode
    log "starting the stack in $RUN_DIR$([ "$E2E_REDIS" = 0 ] && echo ' (no Redis)')"
    prepare_run_dir
    start_mock
    start_gatekeeper
    start_nginx

    export E2E_OPENAI_BASE="http://127.0.0.1:$OPENAI_PORT/v1"
    export E2E_OLLAMA_BASE="http://127.0.0.1:$OLLAMA_PORT"
    export E2E_SHARED_BASE="http://127.0.0.1:$SHARED_PORT"
    export E2E_MOCK="http://127.0.0.1:$MOCK_PORT"
    export E2E_MOCK_OLLAMA="http://127.0.0.1:$MOCK_OLLAMA_PORT"
    export E2E_REDIS
    export E2E_GK_ADMIN="http://127.0.0.1:$GK_ADMIN_PORT"
    export E2E_GK_AUTHZ="127.0.0.1:$GK_PORT"
    export E2E_NGINX_ERROR_LOG="$RUN_DIR/error.log"
    export E2E_SHARED_NGINX_ERROR_LOG="$RUN_DIR/shared/error.log"
    export E2E_GK_LOG="$GK_LOG"
    export E2E_OPERATOR_KEY="$OPERATOR_KEY"
    if [ "$E2E_REDIS" = 0 ]; then export E2E_REDIS_PREFIX=""; else export E2E_REDIS_PREFIX="$REDIS_PREFIX"; fi

    # Files or directories among the arguments: run those; else all of e2e/.
    local what=(e2e) arg
    for arg in "$@"; do
        case "$arg" in -*) ;; *) [ -e "${arg%%::*}" ] && what=() ;; esac
    done
    log "pytest -q ${what[*]} $*"
    local rc=0
    "$VENV/bin/python" -m pytest -q "${what[@]}" "$@" || rc=$?
    if [ "$rc" != 0 ]; then
        printf '\nlogs: %s/{error.log,access.log,shared/error.log,shared/access.log,gatekeeper.log,mock.log}%s\n' "$RUN_DIR" \
            "$([ "${E2E_KEEP:-}" = 1 ] || echo ' (removed on exit; E2E_KEEP=1 keeps them)')"
    fi
    return "$rc"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
