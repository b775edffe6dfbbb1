#!/usr/bin/env bash
# Fault (issue 19, item 9): shared limits through Redis Sentinel failovers and
# through a Redis Cluster, under load, with the real binary.
#
#     bash scripts/faults/redis_failover.sh [SECONDS]   (default 24; loopback only)
#
# Sentinel: a master, a replica and three Sentinels; two gatekeeper replicas
# on `redis+sentinel://…/mymaster` (GATEKEEPER_REDIS_FAILURE=deny). Under load,
# at 1/4 of the run a SENTINEL FAILOVER, then, once the old master follows the
# new one, a SIGKILL of the new master (Sentinel promotes the other again).
# Cluster: three masters with a replica each, two gatekeepers on
# `redis+cluster://…`, the same load; at 1/4 a CLUSTER FAILOVER, at 1/2 a SIGKILL
# of the master that failover made (its replica takes over after 2 s).
#
# The load: 8 threads, four clients with a limit of 200/1m each, every tenth
# request with a revoked key, alternating between the replicas. Prints per
# set-up the admitted requests against what the limit allows (the burst and
# the tokens that came back during the run, and one), the store_unavailable
# answers, the slowest request and those over 1 s, the admissions past what
# the limit allows, and the wrongful allows (the revoked key). Exits 1 on a
# wrongful allow, a request over 1 s, or admissions past the limit beyond
# the failover cost the README states (3 per client for the SENTINEL
# FAILOVER's switch window; 0 for the cluster). Builds the debug binary, or
# runs FAULT_BIN. Servers on ports
# 16430-16452 (Redis) and 19981-19984 (gatekeeper).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-24}
command -v redis-server >/dev/null || { echo "redis-server not found: nothing to test" >&2; exit 2; }
if [ -n "${FAULT_BIN:-}" ]; then BIN=$(realpath "$FAULT_BIN"); else
    cargo build --locked -q
    BIN=$PWD/target/debug/gatekeeper
fi
TOPO=$PWD/scripts/redis_topologies.sh
DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-failover.XXXXXX")
PIDS=""
stop_gatekeepers() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=""; }
cleanup() {
    stop_gatekeepers
    bash "$TOPO" stop sentinel "$DIR/sentinel" || true
    bash "$TOPO" stop cluster "$DIR/cluster" || true
    rm -rf "$DIR"
}
trap cleanup EXIT

# Four clients with a limit, and a revoked key of a fifth.
keygen() { "$BIN" key generate --json | python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["key"], k["id"], k["digest"])'; }
{
    printf '[[route]]\nid = "chat"\ndomain = "*"\npath = "/v1/*"\nservice = "t"\n[route.methods]\nPOST = ["api_key"]\n\n'
    for c in 0 1 2 3 revoked; do
        read -r KEY ID DIGEST < <(keygen)
        echo "$c $KEY" >>"$DIR/keys"
        status=active; [ "$c" = revoked ] && status=revoked
        printf '[[client]]\nid = "team-%s"\nname = "Team %s"\nlimit = "200/1m"\n\n' "$c" "$c"
        printf '[[client.key]]\nid = "%s"\ndigest = "%s"\nstatus = "%s"\n\n' "$ID" "$DIGEST" "$status"
        printf '[[grant]]\nclient = "team-%s"\nroute = "chat"\nmethods = ["POST"]\n\n' "$c"
    done
} >"$DIR/gatekeeper.toml"

start_gatekeepers() { # URL
    local i
    for i in 0 1; do
        env -i PATH="$PATH" GATEKEEPER_LISTEN=127.0.0.1:$((19981 + 2 * i)) \
            GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$((19982 + 2 * i)) \
            GATEKEEPER_REDIS_URL="$1" GATEKEEPER_REDIS_PREFIX=gkfault: \
            GATEKEEPER_REDIS_TIMEOUT=200ms GATEKEEPER_REDIS_FAILURE=deny \
            GATEKEEPER_FAILED_AUTH_LIMIT=1000000/1s GATEKEEPER_LOG_LEVEL=warn \
            "$BIN" serve --config "$DIR/gatekeeper.toml" >>"$DIR/gatekeeper-$i.log" 2>&1 &
        PIDS="$PIDS $!"
    done
    for i in 0 1; do
        for _ in $(seq 100); do
            curl -sf -o /dev/null "http://127.0.0.1:$((19982 + 2 * i))/readyz" && break
            sleep 0.1
        done
    done
}

# The load, for SECONDS; prints the figures; exits 1 on a wrongful allow.
load() {
    python3 - "$DIR/keys" "$SECONDS_TO_RUN" "$1" "$2" <<'PY'
import collections, http.client, sys, threading, time
keys = dict(line.split() for line in open(sys.argv[1]))
secs, name, slack = float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
LIMIT = 200
lock = threading.Lock()
admitted, answers = collections.Counter(), collections.Counter()
slowest, over = [0.0], [0]
start = time.time()
def run(t):
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in (19981, 19983)]
    i = t
    while time.time() - start < secs:
        client = "revoked" if i % 10 == 0 else str(i % 4)
        conn = conns[i % 2]
        t0 = time.time()
        try:
            conn.request("GET", "/authz", headers={
                "X-Original-Method": "POST", "X-Original-URI": "/v1/chat",
                "X-Original-Host": "api.example.com", "Authorization": "Bearer " + keys[client]})
            r = conn.getresponse(); r.read()
            answer = (r.status, r.getheader("X-Auth-Reason") or "")
        except Exception as e:
            answer = ("error", type(e).__name__)
            conns[i % 2] = http.client.HTTPConnection("127.0.0.1", (19981, 19983)[i % 2], timeout=10)
        took = time.time() - t0
        with lock:
            answers[answer] += 1
            slowest[0] = max(slowest[0], took)
            if took > 1.0: over[0] += 1
            if answer[0] == 200: admitted[client] += 1
        i += 8
threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.time() - start
allowed = LIMIT + int(elapsed * LIMIT / 60) + 1
revoked = admitted["revoked"]
past = [max(0, admitted[c] - allowed) for c in "0123"]
print(f"[{name}] {sum(answers.values())} requests in {elapsed:.1f} s: {dict(answers)}")
print(f"[{name}] admitted per client {[admitted[c] for c in '0123']} (limit allows at most {allowed} each)")
print(f"[{name}] store_unavailable {sum(n for (s, r), n in answers.items() if r == 'store_unavailable')}, "
      f"slowest {slowest[0] * 1000:.0f} ms, over 1 s {over[0]}")
print(f"[{name}] admitted past what the limit allows, per client: {past} "
      f"(the README's failover cost: at most {slack})")
print(f"[{name}] wrongful allows (revoked key): {revoked}")
sys.exit(1 if revoked or over[0] or max(past) > slack else 0)
PY
}

role_of() { redis-cli -h 127.0.0.1 -p "$1" role 2>/dev/null | head -1; }
follows() { redis-cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null | grep -q '^master_link_status:up'; }

rc=0
# ── Sentinel ──────────────────────────────────────────────────────────────
bash "$TOPO" start sentinel "$DIR/sentinel" 16440
start_gatekeepers "redis+sentinel://127.0.0.1:16450,127.0.0.1:16451,127.0.0.1:16452/mymaster"
(
    sleep "$(python3 -c "print($SECONDS_TO_RUN / 4)")"
    first=$(bash "$TOPO" master sentinel "$DIR/sentinel" 16440)
    other=$((first == 16440 ? 16441 : 16440))
    echo "[sentinel] $(date +%T.%N | cut -c1-12) SIGKILL the master $first"
    kill -9 "$(cat "$DIR/sentinel/redis-$first.pid")"
    for _ in $(seq 150); do [ "$(role_of $other)" = master ] && break; sleep 0.1; done
    echo "[sentinel] $(date +%T.%N | cut -c1-12) $other is master ($(role_of $other)); $first restarts as its replica"
    redis-server --port "$first" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --dir "$DIR/sentinel" --pidfile "$DIR/sentinel/redis-$first.pid" \
        --logfile "$DIR/sentinel/redis-$first.log" --replicaof 127.0.0.1 "$other" \
        ${TOPOLOGY_MIN_REPLICAS:+--min-replicas-to-write "$TOPOLOGY_MIN_REPLICAS" --min-replicas-max-lag 1} \
        >/dev/null
    for _ in $(seq 150); do follows "$first" && break; sleep 0.1; done
    sleep "$(python3 -c "print($SECONDS_TO_RUN / 4)")"
    echo "[sentinel] $(date +%T.%N | cut -c1-12) SENTINEL FAILOVER"
    new=$(bash "$TOPO" failover sentinel "$DIR/sentinel" 16440)
    echo "[sentinel] $(date +%T.%N | cut -c1-12) master now $new"
) &
FAULTS=$!
load sentinel 3 || rc=1
wait "$FAULTS" || rc=1
stop_gatekeepers
bash "$TOPO" stop sentinel "$DIR/sentinel"

# ── Cluster ───────────────────────────────────────────────────────────────
export TOPOLOGY_CLUSTER_REPLICAS=1
bash "$TOPO" start cluster "$DIR/cluster" 16430
start_gatekeepers "redis+cluster://127.0.0.1:16430,127.0.0.1:16431,127.0.0.1:16432"
(
    sleep "$(python3 -c "print($SECONDS_TO_RUN / 4)")"
    echo "[cluster] $(date +%T.%N | cut -c1-12) CLUSTER FAILOVER"
    new=$(bash "$TOPO" failover cluster "$DIR/cluster" 16430)
    echo "[cluster] $(date +%T.%N | cut -c1-12) $new is a master"
    sleep "$(python3 -c "print($SECONDS_TO_RUN / 4)")"
    replica=$(redis-cli -p "$new" role | sed -n 4p)
    echo "[cluster] $(date +%T.%N | cut -c1-12) SIGKILL the master $new (replica $replica)"
    kill -9 "$(cat "$DIR/cluster/redis-$new.pid")"
    for _ in $(seq 150); do [ "$(role_of "$replica")" = master ] && break; sleep 0.1; done
    echo "[cluster] $(date +%T.%N | cut -c1-12) $replica is $(role_of "$replica")"
) &
FAULTS=$!
load cluster 0 || rc=1
wait "$FAULTS" || rc=1
for p in $(seq 16430 16435); do
    [ "$(role_of $p)" = master ] &&
        echo "[cluster] master $p holds $(redis-cli -p $p --scan --pattern 'gkfault:*' | wc -l) keys"
done
stop_gatekeepers
grep -h '"level":"WARN"\|WARN' "$DIR"/gatekeeper-*.log | cut -c1-200 | sort | uniq -c | sort -rn | head -5 || true
exit $rc
