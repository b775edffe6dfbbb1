#!/usr/bin/env bash
# Fault (issue 19, items 2 and 3): PostgreSQL goes silent — it accepts
# connections and never answers — under load. gatekeeper (PostgreSQL mode)
# reaches the database through a black-holing proxy (proxy.py). Clients keep
# presenting a known key (cached, and past its cache TTL during the outage),
# never-issued keys (looked up every time) and a key revoked just before the
# outage. Then, still black-holed, with a `last_used_at` write pending and a
# look-up in flight, SIGTERM.
#
#     bash scripts/faults/silent_postgres.sh [SECONDS]   (default 10; loopback only)
#
# Prints request latency (p50/p99/max) and answers per kind of key and
# phase, the wrongful allows (must be 0), the /readyz states seen, and the
# SIGTERM-to-exit time. Exits 1 on any wrongful allow, or when an unknown key
# waited past its bound (GATEKEEPER_DB_TIMEOUT + 1 s) during the outage, or
# when the exit took longer than the grace + 1 s. Builds the debug binary, or
# runs FAULT_BIN (another build, e.g. an older one, to compare). Needs psql
# and PostgreSQL on 127.0.0.1:5432 (PGURL to change it); creates and drops a
# database of its own. Ports 19950-19952.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/faults/lib.sh
SECONDS_TO_RUN=${1:-10}
PROXY=19950 PORT=19951 ADMIN=19952
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres}
PGHOSTPORT=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(f"{p.hostname}:{p.port or 5432}")' "$PGURL")
GRACE=5
if [ -n "${FAULT_BIN:-}" ]; then BIN=$(realpath "$FAULT_BIN"); else
    cargo build --locked -q
    BIN=$PWD/target/debug/gatekeeper
fi
DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-silent.XXXXXX")
DB=gk_fault_silent_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
PIDS=""
cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$PGURL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

psql -q "$PGURL" -c "CREATE DATABASE \"$DB\"" >/dev/null
DIRECT=${PGURL%/*}/$DB
GATEKEEPER_DATABASE_URL=$DIRECT "$BIN" migrate >/dev/null
key() { "$BIN" key generate --json | python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["key"], k["digest"][7:])'; }
read -r KNOWN KNOWN_HEX < <(key)
read -r REVOKED REVOKED_HEX < <(key)
read -r UNKNOWN _ < <(key)
psql -q "$DIRECT" >/dev/null <<SQL
INSERT INTO gk_routes (id, domain, path, service) VALUES ('chat', '*', '/v1/*', 'openai');
INSERT INTO gk_route_methods (route_id, method, credentials) VALUES ('chat', 'POST', ARRAY['api_key']);
INSERT INTO gk_clients (id, name) VALUES ('c1', 'Client one');
INSERT INTO gk_api_keys (id, client_id, digest) VALUES
    ('known', 'c1', decode('$KNOWN_HEX', 'hex')), ('revoked', 'c1', decode('$REVOKED_HEX', 'hex'));
INSERT INTO gk_grants (client_id, route_id, methods) VALUES ('c1', 'chat', ARRAY['POST']);
SQL

CONTROL=$DIR/proxy.control
start_proxy $PROXY "$PGHOSTPORT" "$CONTROL"

env -i PATH="$PATH" GATEKEEPER_LISTEN=127.0.0.1:$PORT GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$ADMIN \
    GATEKEEPER_DATABASE_URL="postgres://postgres@127.0.0.1:$PROXY/$DB" \
    GATEKEEPER_DB_RELOAD_INTERVAL=2s GATEKEEPER_MAX_STALENESS=1h GATEKEEPER_CACHE_TTL=2s \
    GATEKEEPER_LAST_USED_INTERVAL=1h GATEKEEPER_SHUTDOWN_GRACE=${GRACE}s \
    GATEKEEPER_FAILED_AUTH_LIMIT=1000000/1s GATEKEEPER_LOG_LEVEL=warn GATEKEEPER_LOG_FORMAT=json \
    "$BIN" serve >"$DIR/gatekeeper.log" 2>&1 &
GK=$!; PIDS="$PIDS $GK"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break; sleep 0.1; done

# Load, in phases: up (2 s; the revoked key is revoked at its end), black
# hole (SECONDS), restored (3 s). Threads per kind of key, each a
# keep-alive connection as nginx holds; /readyz polled every 200 ms.
rc=0
python3 - "$PORT" "$ADMIN" "$SECONDS_TO_RUN" "$KNOWN" "$REVOKED" "$UNKNOWN" "$CONTROL" "$DIRECT" <<'PY' || rc=$?
import http.client, json, subprocess, sys, threading, time, collections
port, admin, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
keys = {"known": sys.argv[4], "revoked": sys.argv[5], "unknown": sys.argv[6]}
control, direct = sys.argv[7], sys.argv[8]
phase = ["up"]
results = collections.defaultdict(list)  # (phase, kind) -> [(latency, status, reason)]
lock = threading.Lock()
stop = threading.Event()

def client(kind):
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        p, t0 = phase[0], time.monotonic()
        try:
            conn.request("GET", "/authz", headers={
                "X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions",
                "X-Original-Host": "api.example.com", "Authorization": f"Bearer {keys[kind]}"})
            r = conn.getresponse(); r.read()
            answer = (r.status, r.getheader("X-Auth-Reason") or "")
        except Exception as e:
            answer, conn = (0, type(e).__name__), None
        with lock:
            results[(p, kind)].append((time.monotonic() - t0, *answer))
        time.sleep(0.005)

def readyz_states():
    while not stop.is_set():
        p = phase[0]
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
            c.request("GET", "/readyz"); state = json.loads(c.getresponse().read())["postgres"]
        except Exception as e:
            state = type(e).__name__
        with lock:
            readyz[p][state] += 1
        time.sleep(0.2)

def proxy(word):
    open(control, "w").write(word + "\n")
    for _ in range(200):
        try:
            if open(control + ".state").read().strip() == word:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    sys.exit(f"proxy did not apply {word}")

readyz = collections.defaultdict(collections.Counter)
threads = [threading.Thread(target=client, args=(k,)) for k in ("known", "known", "unknown", "unknown", "revoked")]
threads.append(threading.Thread(target=readyz_states))
for t in threads: t.start()
time.sleep(1.5)
subprocess.run(["psql", "-q", direct, "-c", "UPDATE gk_api_keys SET status = 'revoked' WHERE id = 'revoked'"], check=True, stdout=subprocess.DEVNULL)
time.sleep(0.5)
phase[0] = "blackhole"; proxy("blackhole")
time.sleep(secs)
phase[0] = "restored"; proxy("up")
time.sleep(3)
stop.set()
for t in threads: t.join()

def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0
wrongful = 0
worst_unknown = 0.0
for p in ("up", "blackhole", "restored"):
    for kind in ("known", "unknown", "revoked"):
        rs = results[(p, kind)]
        lat = [r[0] * 1000 for r in rs]
        answers = collections.Counter((s, why) for _, s, why in rs)
        # The revoked key: allowed only before its revocation reached gatekeeper.
        if kind == "revoked" and p != "up" or kind == "unknown":
            wrongful += sum(n for (s, _), n in answers.items() if s == 200)
        if kind == "unknown" and p == "blackhole":
            worst_unknown = max(lat, default=0.0)
        print(f"{p:9} {kind:7} n={len(rs):5}  p50={pct(lat, .5):7.1f}ms  p99={pct(lat, .99):7.1f}ms  "
              f"max={max(lat, default=0):7.1f}ms  {dict(answers)}")
for p in ("up", "blackhole", "restored"):
    print(f"/readyz postgres during {p}: {dict(readyz[p])}")
print(f"wrongful allows: {wrongful}")
open(control + ".worst_unknown_ms", "w").write(f"{worst_unknown:.0f}\n")
sys.exit(1 if wrongful else 0)
PY
WORST_UNKNOWN=$(cat "$CONTROL.worst_unknown_ms")
if [ "$WORST_UNKNOWN" -gt 2000 ]; then
    echo "FAIL: an unknown key waited ${WORST_UNKNOWN} ms during the black hole (bound: 1 s + 1 s)"; rc=1
fi

# SIGTERM while black-holed: a use of the known key waits to be written
# (LAST_USED_INTERVAL=1h) and an unknown key's look-up is in flight.
curl -s -o /dev/null -H 'X-Original-Method: POST' -H 'X-Original-URI: /v1/chat/completions' \
    -H "Authorization: Bearer $KNOWN" "http://127.0.0.1:$PORT/authz"
proxy_set "$CONTROL" blackhole
curl -s -o /dev/null -m 60 -H 'X-Original-Method: POST' -H 'X-Original-URI: /v1/chat/completions' \
    -H "Authorization: Bearer $UNKNOWN" "http://127.0.0.1:$PORT/authz" &
sleep 0.2
START=$(date +%s%N)
kill -TERM "$GK"
for _ in $(seq 600); do kill -0 "$GK" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$GK" 2>/dev/null; then
    echo "SIGTERM to exit: still running after 30 s (grace ${GRACE} s)"; rc=1
else
    MS=$((($(date +%s%N) - START) / 1000000))
    echo "SIGTERM to exit (black-holed, flush pending, grace ${GRACE} s): ${MS} ms"
    if [ "$MS" -gt $((GRACE * 1000 + 1000)) ]; then echo "FAIL: past the grace"; rc=1; fi
fi
exit $rc
