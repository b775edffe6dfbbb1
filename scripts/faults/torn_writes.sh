#!/usr/bin/env bash
# Fault (issue 19, item 1): the declarative file rewritten in place — truncated,
# then written a line at a time — under a SIGHUP storm, while a client keeps
# presenting a key whose `status = "revoked"` line is the file's last. Half of
# the file is a valid policy with that key active; none may be installed.
#
#     bash scripts/faults/torn_writes.sh [SECONDS]     (default 10; loopback only)
#
# Prints the requests judged, the wrongful allows (must be 0) and the reloads
# installed and refused; exits 1 on any allow. Builds the debug binary, or
# runs FAULT_BIN (another build, e.g. an older one, to compare).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-10}
PORT=19943 ADMIN=19944
if [ -n "${FAULT_BIN:-}" ]; then BIN=$(realpath "$FAULT_BIN"); else
    cargo build --locked -q
    BIN=$PWD/target/debug/gatekeeper
fi
DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-torn.XXXXXX")
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

read -r KEY ID DIGEST < <("$BIN" key generate --json \
    | python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["key"], k["id"], k["digest"])')
cat >"$DIR/policy.toml" <<TOML
[[route]]
id = "data"
domain = "*"
path = "/data/*"
service = "test"
[route.methods]
GET = ["api_key"]

[[grant]]
client = "team"
route = "data"
methods = ["GET"]

[[client]]
id = "team"
name = "Team"

[[client.key]]
id = "$ID"
digest = "$DIGEST"
status = "revoked"
TOML
cp "$DIR/policy.toml" "$DIR/gatekeeper.toml"

env -i PATH="$PATH" GATEKEEPER_LISTEN=127.0.0.1:$PORT GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$ADMIN \
    GATEKEEPER_FAILED_AUTH_LIMIT=1000000/1s GATEKEEPER_LOG_LEVEL=warn \
    "$BIN" serve --config "$DIR/gatekeeper.toml" >"$DIR/gatekeeper.log" 2>&1 &
GK=$!; PIDS="$PIDS $GK"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break; sleep 0.1; done

# The writer: truncate, a line every 10 ms, then 400 ms for a whole file to settle.
python3 - "$DIR" "$SECONDS_TO_RUN" <<'PY' &
import sys, time
d, secs = sys.argv[1], float(sys.argv[2])
text = open(f"{d}/policy.toml").read()
end = time.time() + secs
while time.time() < end:
    with open(f"{d}/gatekeeper.toml", "w") as f:
        for line in text.splitlines(keepends=True):
            f.write(line); f.flush(); time.sleep(0.01)
    time.sleep(0.4)
PY
PIDS="$PIDS $!"
# The storm: a SIGHUP every 100 ms.
( end=$((SECONDS + SECONDS_TO_RUN)); while [ $SECONDS -lt $end ]; do kill -HUP "$GK"; sleep 0.1; done ) &
PIDS="$PIDS $!"

# The client: /authz with the revoked key, as nginx would ask.
python3 - "$PORT" "$KEY" "$SECONDS_TO_RUN" <<'PY'
import http.client, sys, time, collections
port, key, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
seen = collections.Counter()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
end = time.time() + secs
while time.time() < end:
    conn.request("GET", "/authz", headers={
        "X-Original-Method": "GET", "X-Original-URI": "/data/x", "X-Original-Path": "/data/x",
        "X-Original-Host": "api.example.com", "Authorization": f"Bearer {key}"})
    r = conn.getresponse(); r.read()
    seen[(r.status, r.getheader("X-Auth-Reason"))] += 1
allows = sum(n for (status, _), n in seen.items() if status == 200)
print(f"requests {sum(seen.values())}; answers {dict(seen)}")
print(f"wrongful allows: {allows}")
sys.exit(1 if allows else 0)
PY
rc=$?
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^gatekeeper_config_reloads_total' || true
kill -0 "$GK" || { echo "gatekeeper died"; exit 1; }
exit $rc
