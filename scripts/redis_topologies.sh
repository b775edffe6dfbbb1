#!/usr/bin/env bash
# Private Redis topologies on loopback, for the tests and fault scripts
# (issue 19, item 9). Every server runs daemonized from DIR (config, pid and
# log files there) and is stopped by the pids in DIR; nothing else is touched.
#
#   redis_topologies.sh start cluster DIR [BASE]    3 masters on BASE..BASE+2
#                                                   (default 16400), slots
#                                                   spread by redis-cli
#   redis_topologies.sh start sentinel DIR [BASE]   master BASE, replica BASE+1,
#                                                   Sentinels BASE+10..BASE+12
#                                                   (default 16410), master
#                                                   name `mymaster`, quorum 2
#                                                   (TOPOLOGY_CLUSTER_REPLICAS=1:
#                                                   and a replica of each on
#                                                   BASE+3..BASE+5)
#   redis_topologies.sh failover cluster DIR [BASE] CLUSTER FAILOVER on a replica,
#                                                   waits until it is a master
#                                                   the others agree on; prints
#                                                   its port
#   redis_topologies.sh failover sentinel DIR [BASE]  SENTINEL FAILOVER, waits
#                                                   until the replica is the
#                                                   master; prints its port
#   redis_topologies.sh master sentinel DIR [BASE]  prints the master's port
#   redis_topologies.sh stop cluster|sentinel DIR   stops DIR's servers
#
# TOPOLOGY_MIN_REPLICAS=N gives the data nodes `min-replicas-to-write N` and
# `min-replicas-max-lag 1`: a master refuses writes unless N replicas follow.
#
# Every wait is bounded (TOPOLOGY_TIMEOUT seconds, default 30); a set-up that
# does not come up is stopped again and the script exits 1. Needs
# redis-server and redis-cli (Redis >= 5, or Valkey's, on PATH).
set -euo pipefail
ACTION=${1:?usage: redis_topologies.sh start|stop|failover|master cluster|sentinel DIR [BASE]}
KIND=${2:?cluster or sentinel}
DIR=${3:?a directory for the servers and their files}
TIMEOUT=${TOPOLOGY_TIMEOUT:-30}
case $KIND in
cluster) BASE=${4:-16400} ;;
sentinel) BASE=${4:-16410} ;;
*) echo "unknown topology $KIND" >&2; exit 2 ;;
esac
MASTER=mymaster

die() { echo "redis_topologies: $*" >&2; exit 1; }
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

# until SECONDS-BUDGET CMD...: polls CMD every 100 ms until it succeeds.
until_ok() {
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

answers() { [ "$(cli "$1" ping)" = PONG ]; }

server() { # server PORT ARGS...: one daemonized redis-server
    local port=$1; shift
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --dir "$DIR" --pidfile "$DIR/redis-$port.pid" \
        --logfile "$DIR/redis-$port.log" "$@" >/dev/null
}

stop_all() {
    local pidfile pid
    for pidfile in "$DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    # Bounded: each exits on SIGTERM within milliseconds (no persistence).
    local deadline=$((SECONDS + 10))
    for pidfile in "$DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.05
        done
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

fail_start() { stop_all; die "$*"; }

cluster_ok() { cli "$1" cluster info | grep -q '^cluster_state:ok'; }

cluster_ports() {
    local n=3
    [ "${TOPOLOGY_CLUSTER_REPLICAS:-0}" = 1 ] && n=6
    seq "$BASE" $((BASE + n - 1))
}

start_cluster() {
    local p ports=() replicas=()
    [ "${TOPOLOGY_CLUSTER_REPLICAS:-0}" = 1 ] && replicas=(--cluster-replicas 1)
    for p in $(cluster_ports); do
        answers "$p" && fail_start "port $p is taken"
        server "$p" --cluster-enabled yes --cluster-config-file "$DIR/nodes-$p.conf" \
            --cluster-node-timeout 2000
        ports+=("127.0.0.1:$p")
    done
    for p in $(cluster_ports); do
        until_ok answers "$p" || fail_start "node $p did not start"
    done
    redis-cli --cluster create "${ports[@]}" "${replicas[@]}" --cluster-yes >"$DIR/create.log" 2>&1 ||
        fail_start "cluster create failed (see $DIR/create.log)"
    for p in $(cluster_ports); do
        until_ok cluster_ok "$p" || fail_start "node $p never saw the cluster ok"
    done
    if [ ${#replicas[@]} -gt 0 ]; then
        for p in $(cluster_ports); do
            [ "$(cli "$p" role | head -1)" = slave ] || continue
            until_ok replica_linked "$p" || fail_start "replica $p never linked"
        done
    fi
}

promoted() { # PORT is a master, and every node's map says so
    local p
    [ "$(cli "$1" role | head -1)" = master ] || return 1
    for p in $(cluster_ports); do
        answers "$p" || continue
        cli "$p" cluster nodes | grep -q "127.0.0.1:$1@[0-9]* [a-z,]*master" || return 1
    done
}

cluster_failover() {
    local p
    for p in $(cluster_ports); do
        [ "$(cli "$p" role | head -1)" = slave ] || continue
        [ "$(cli "$p" cluster failover)" = OK ] || die "CLUSTER FAILOVER refused by $p"
        until_ok promoted "$p" || die "$p not promoted within ${TIMEOUT}s"
        echo "$p"
        return 0
    done
    die "no replica to fail over to (TOPOLOGY_CLUSTER_REPLICAS=1)"
}

sentinel_port() { echo $((BASE + 10 + $1)); }

master_port() { # the port the Sentinels name for the master
    local s out
    for s in 0 1 2; do
        out=$(cli "$(sentinel_port $s)" sentinel get-master-addr-by-name "$MASTER" | sed -n 2p)
        [ -n "$out" ] && { echo "$out"; return 0; }
    done
    return 1
}

replica_linked() { cli "$1" info replication | grep -q '^master_link_status:up'; }

sentinels_ready() { # every Sentinel knows the replica and the two others
    local s port info
    for s in 0 1 2; do
        port=$(sentinel_port $s)
        info=$(cli "$port" sentinel master "$MASTER" | tr '\r' ' ') || return 1
        echo "$info" | grep -A1 -x 'num-other-sentinels' | tail -1 | grep -qx 2 || return 1
        echo "$info" | grep -A1 -x 'num-slaves' | tail -1 | grep -qx 1 || return 1
    done
}

start_sentinel() {
    local s port
    for port in $BASE $((BASE + 1)) $(sentinel_port 0) $(sentinel_port 1) $(sentinel_port 2); do
        answers "$port" && fail_start "port $port is taken"
    done
    local guard=()
    if [ -n "${TOPOLOGY_MIN_REPLICAS:-}" ]; then
        guard=(--min-replicas-to-write "$TOPOLOGY_MIN_REPLICAS" --min-replicas-max-lag 1)
    fi
    server "$BASE" "${guard[@]}"
    server "$((BASE + 1))" --replicaof 127.0.0.1 "$BASE" "${guard[@]}"
    for s in 0 1 2; do
        port=$(sentinel_port $s)
        cat >"$DIR/sentinel-$port.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
dir $DIR
pidfile $DIR/sentinel-$port.pid
logfile $DIR/sentinel-$port.log
sentinel monitor $MASTER 127.0.0.1 $BASE 2
sentinel down-after-milliseconds $MASTER 1000
sentinel failover-timeout $MASTER 5000
sentinel parallel-syncs $MASTER 1
CONF
        redis-server "$DIR/sentinel-$port.conf" --sentinel >/dev/null
    done
    until_ok replica_linked "$((BASE + 1))" || fail_start "the replica never linked"
    until_ok sentinels_ready || fail_start "the Sentinels never saw each other and the replica"
}

role_is_master() { cli "$1" role | head -1 | grep -qx master; }

new_master() { # the Sentinels name another master, and it says it is one
    local now
    now=$(master_port) || return 1
    [ "$now" != "$1" ] && role_is_master "$now"
}

failover() {
    local before
    before=$(master_port) || die "no Sentinel answers"
    [ "$(cli "$(sentinel_port 0)" sentinel failover "$MASTER")" = OK ] || die "SENTINEL FAILOVER refused"
    until_ok new_master "$before" || die "no new master within ${TIMEOUT}s"
    master_port
}

mkdir -p "$DIR"
case "$ACTION:$KIND" in
start:cluster) start_cluster ;;
start:sentinel) start_sentinel ;;
failover:sentinel) failover ;;
failover:cluster) cluster_failover ;;
master:sentinel) master_port ;;
stop:*) stop_all ;;
*) echo "unknown action $ACTION for $KIND" >&2; exit 2 ;;
esac
