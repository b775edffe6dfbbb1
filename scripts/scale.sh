#!/usr/bin/env bash
# Start-up time and resident memory of one replica with a large policy:
# N_ROUTES routes and N_CLIENTS clients, each client with one API key and one
# grant (optionally a limit), loaded into a scratch PostgreSQL database.
#
#   bash scripts/scale.sh                  # 10,000 routes, 100,000 clients
#   N_ROUTES=1000 N_CLIENTS=10000 bash scripts/scale.sh
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth, as in development) and a
# release build (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
N_ROUTES=${N_ROUTES:-10000}
N_CLIENTS=${N_CLIENTS:-100000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=gk_scale_$$
BIN=target/release/gatekeeper

cargo build --release --locked -q
psql "$PG/postgres" -qc "CREATE DATABASE $DB"
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
}
trap cleanup EXIT
export GATEKEEPER_DATABASE_URL="$PG/$DB"
$BIN migrate >/dev/null

echo "loading $N_ROUTES routes and $N_CLIENTS clients ..."
psql "$PG/$DB" -q <<SQL
INSERT INTO gk_routes (id, domain, path, service)
  SELECT 'r' || i, 'svc' || (i % 100) || '.example.com', '/api/v' || i || '/*', 'svc'
  FROM generate_series(1, $N_ROUTES) i;
INSERT INTO gk_route_methods (route_id, method, credentials)
  SELECT 'r' || i, 'POST', ARRAY['api_key'] FROM generate_series(1, $N_ROUTES) i;
INSERT INTO gk_clients (id, name) SELECT 'c' || i, 'Client ' || i FROM generate_series(1, $N_CLIENTS) i;
INSERT INTO gk_api_keys (id, client_id, digest)
  SELECT 'k' || i, 'c' || i, sha256(('scale-key-' || i)::bytea) FROM generate_series(1, $N_CLIENTS) i;
INSERT INTO gk_grants (client_id, route_id, methods)
  SELECT 'c' || i, 'r' || (1 + i % $N_ROUTES), ARRAY['POST'] FROM generate_series(1, $N_CLIENTS) i;
INSERT INTO gk_limits (client_id, route_id, count, window_secs, burst)
  SELECT 'c' || i, NULL, 600, 60, 600 FROM generate_series(1, $N_CLIENTS) i;
ANALYZE;
SQL

start=$(date +%s.%N)
GATEKEEPER_LISTEN=127.0.0.1:0 GATEKEEPER_ADMIN_LISTEN=127.0.0.1:0 GATEKEEPER_LOG_FORMAT=json \
  $BIN serve > /tmp/gk-scale-$$.log 2>&1 &
PID=$!
until grep -q '"listening"' /tmp/gk-scale-$$.log; do
  kill -0 "$PID" 2>/dev/null || { cat /tmp/gk-scale-$$.log; exit 1; }
  sleep 0.05
done
ready=$(date +%s.%N)
authz=$(grep -o '"authz":"[^"]*"' /tmp/gk-scale-$$.log | cut -d'"' -f4)
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$authz/authz" \
  -H 'X-Original-Method: POST' -H 'X-Original-URI: /api/v43/chat' \
  -H 'X-Original-Host: svc43.example.com' -H 'Authorization: Bearer scale-key-42')
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
printf 'routes=%s clients=%s startup_s=%.2f rss_mb=%.1f probe_status=%s\n' \
  "$N_ROUTES" "$N_CLIENTS" "$(echo "$ready - $start" | bc)" "$(echo "$rss_kb / 1024" | bc -l)" "$code"
rm -f /tmp/gk-scale-$$.log
