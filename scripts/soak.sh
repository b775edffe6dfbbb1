#!/usr/bin/env bash
# Memory under sustained load: gatekeeper (DB-less, bench/policy.toml) is
# driven straight on /authz by wrk for a number of minutes while its
# resident memory is sampled; prints the samples, start/end/peak RSS and the
# decisions served. Nobody scrapes /metrics during the run (the case where
# unfolded histogram samples used to grow without bound).
#
#     bash scripts/soak.sh              10 minutes, 8 connections
#     bash scripts/soak.sh 2            2 minutes
#
# Environment: SOAK_CONNECTIONS (default 8), SOAK_SAMPLE (seconds between
# RSS samples, default 30). Loopback only; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-10}
CONNS=${SOAK_CONNECTIONS:-8}
SAMPLE=${SOAK_SAMPLE:-30}
PORT=19943
ADMIN=19944
[[ $MINUTES =~ ^[1-9][0-9]*$ ]] || { echo "soak: minutes must be a positive whole number" >&2; exit 1; }

. scripts/lib.sh
command -v wrk >/dev/null || apt_install wrk

cargo build --release --locked >&2
RUN=$(mktemp -d)
cp target/release/gatekeeper "$RUN/gatekeeper"
GK_PID=
cleanup() {
    [ -n "$GK_PID" ] && kill "$GK_PID" 2>/dev/null && wait "$GK_PID" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT

GATEKEEPER_LISTEN=127.0.0.1:$PORT GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$ADMIN \
    GATEKEEPER_LOG_LEVEL=warn "$RUN/gatekeeper" serve --config bench/policy.toml >"$RUN/gk.log" 2>&1 &
GK_PID=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" || { cat "$RUN/gk.log" >&2; exit 1; }

rss() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$GK_PID/status"; }
decisions() {
    curl -sf "http://127.0.0.1:$ADMIN/metrics" \
        | awk '/^gatekeeper_decisions_total/ { s += $NF } END { printf "%d", s }'
}

SECONDS_TOTAL=$((MINUTES * 60))
echo "soak: ${MINUTES} min, $CONNS connections, RSS every ${SAMPLE}s (MB)"
START_RSS=$(rss)
BENCH_MODE=direct wrk -t1 -c"$CONNS" -d"${SECONDS_TOTAL}s" -s bench/wrk.lua \
    "http://127.0.0.1:$PORT/" >"$RUN/wrk.txt" 2>&1 &
WRK=$!
PEAK=$START_RSS
printf '  %4ss  %s\n' 0 "$START_RSS"
elapsed=0
while kill -0 "$WRK" 2>/dev/null; do
    sleep "$SAMPLE"
    elapsed=$((elapsed + SAMPLE))
    now=$(rss)
    PEAK=$(awk -v a="$PEAK" -v b="$now" 'BEGIN { print (b > a) ? b : a }')
    printf '  %4ss  %s\n' "$elapsed" "$now"
done
wait "$WRK"
END_RSS=$(rss)
echo "start ${START_RSS} MB, end ${END_RSS} MB, peak ${PEAK} MB; decisions $(decisions)"
grep '^BENCH' "$RUN/wrk.txt" || true
