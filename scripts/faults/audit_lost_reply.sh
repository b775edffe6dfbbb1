#!/usr/bin/env bash
# Fault (issue 19, item 8): the audit database's answers are lost after it
# committed. gatekeeper audits into PostgreSQL through a proxy that holds
# every answer back 400 ms and, every 2 s, cuts the connections — so a batch
# whose INSERT PostgreSQL already committed loses its answer — while a
# client keeps /authz busy. Then the counters are compared with the table.
#
#     bash scripts/faults/audit_lost_reply.sh [SECONDS]   (default 12; loopback only)
#
# Prints the decisions made, the rows in gk_audit, gatekeeper's written and
# dropped counts (by cause) and how many batches were in doubt and found to
# have landed. Exits 1 unless written + dropped = decisions and rows =
# written (+ at most the `unconfirmed` ones). Needs PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust) and psql; makes and drops a database
# of its own. Ports 19992-19994. Builds the debug binary, or runs FAULT_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/faults/lib.sh
SECONDS_TO_RUN=${1:-12}
PROXY=19992 PORT=19993 ADMIN=19994
PG=postgres://postgres@127.0.0.1:5432
if [ -n "${FAULT_BIN:-}" ]; then BIN=$(realpath "$FAULT_BIN"); else
    cargo build --locked -q
    BIN=$PWD/target/debug/gatekeeper
fi
DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-audit.XXXXXX")
DB=gk_fault_audit_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

psql -q "$PG/postgres" -c "CREATE DATABASE $DB" >/dev/null
GATEKEEPER_DATABASE_URL=$PG/$DB "$BIN" migrate >/dev/null 2>&1
cat >"$DIR/gatekeeper.toml" <<'TOML'
[[route]]
id = "health"
domain = "*"
path = "/health"
service = "status"
[route.methods]
GET = ["public"]
TOML
start_proxy $PROXY 127.0.0.1:5432 "$DIR/control"
env -i PATH="$PATH" GATEKEEPER_LISTEN=127.0.0.1:$PORT GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$ADMIN \
    GATEKEEPER_AUDIT=postgres \
    GATEKEEPER_AUDIT_DATABASE_URL="postgres://postgres@127.0.0.1:$PROXY/$DB?connect_timeout=5" \
    GATEKEEPER_FAILED_AUTH_LIMIT=1000000/1s GATEKEEPER_LOG_LEVEL=info \
    "$BIN" serve --config "$DIR/gatekeeper.toml" >"$DIR/gatekeeper.log" 2>&1 &
GK=$!; PIDS="$PIDS $GK"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break; sleep 0.1; done

# The faults: answers held back, then the connections cut, every 2 s.
(
    end=$((SECONDS + SECONDS_TO_RUN))
    while [ $SECONDS -lt $end ]; do
        proxy_set "$DIR/control" "delay 400"; sleep 1.4
        proxy_set "$DIR/control" cut; sleep 0.2
        proxy_set "$DIR/control" up; sleep 0.4
    done
    proxy_set "$DIR/control" up
) &
FAULTS=$!; PIDS="$PIDS $FAULTS"

# The load: 4 keep-alive connections, as fast as they are answered.
DECISIONS=$(python3 - "$PORT" "$SECONDS_TO_RUN" <<'PY'
import http.client, sys, threading, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
counts = []
def run():
    n, end = 0, time.time() + secs
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.time() < end:
        c.request("GET", "/authz", headers={"X-Original-Method": "GET",
            "X-Original-URI": "/health", "X-Original-Host": "status.example.com"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
        n += 1
    counts.append(n)
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(counts))
PY
)
wait "$FAULTS" 2>/dev/null || true

metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
settled=""
for _ in $(seq 300); do  # up to 30 s for the batches in doubt and the queue
    written=$(metric gatekeeper_audit_written_total)
    dropped=$(curl -s "http://127.0.0.1:$ADMIN/metrics" \
        | awk '/^gatekeeper_audit_dropped_total/ { s += $2 } END { print s + 0 }')
    if [ "$((written + dropped))" -eq "$DECISIONS" ]; then settled=yes; break; fi
    sleep 0.1
done
ROWS=$(psql -tAq "$PG/$DB" -c "SELECT count(*) FROM gk_audit")
BATCHES=$(psql -tAq "$PG/$DB" -c "SELECT count(*) FROM gk_audit_batch" 2>/dev/null || echo "-")
UNCONFIRMED=$(metric 'gatekeeper_audit_dropped_total{cause="unconfirmed"}')
UNCONFIRMED=${UNCONFIRMED:-0}

echo "decisions: $DECISIONS"
echo "rows in gk_audit: $ROWS (batches: $BATCHES)"
echo "written_total: $written"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^gatekeeper_audit_(dropped|write_errors)' || true
echo "batches in doubt: $(grep -c 'sending it again' "$DIR/gatekeeper.log" || true)," \
    "found landed before: $(grep -c '"landed_before":true' "$DIR/gatekeeper.log" || true)," \
    "written on the second try: $(grep -c '"landed_before":false' "$DIR/gatekeeper.log" || true)"
rc=0
if [ -z "$settled" ]; then
    echo "FAIL: written + dropped = $((written + dropped)), decisions = $DECISIONS"; rc=1
fi
if [ "$ROWS" -lt "$written" ] || [ "$ROWS" -gt "$((written + ${UNCONFIRMED%.*}))" ]; then
    echo "FAIL: $ROWS rows, but $written counted as written (+ $UNCONFIRMED unconfirmed)"; rc=1
fi
[ $rc -eq 0 ] && echo "counters true: every decision is a row or a drop, no row counted as dropped"
kill -0 "$GK" || { echo "gatekeeper died"; exit 1; }
exit $rc
