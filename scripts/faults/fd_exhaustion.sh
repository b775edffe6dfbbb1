#!/usr/bin/env bash
# Fault (issue 19, item 7): gatekeeper under `ulimit -n 256` meets 1,000
# concurrent /authz connections. Each client connects, asks, keeps the
# connection open (keep-alive, as nginx does) for another question or two,
# then reconnects; half present a valid key, half a revoked one. Meanwhile
# /readyz is asked every 100 ms on the admin listener.
#
#     bash scripts/faults/fd_exhaustion.sh [SECONDS] [CONNECTIONS]   (default 10, 1000)
#
# Prints the /authz answers and their latency (p50/p99/max, from connect to
# the answer's head; refusals are 503 or a closed connection), the /readyz
# latency, and the wrongful allows (a revoked key answered 200: must be 0).
# Exits 1 on a wrongful allow, on a /readyz that failed or took over 1 s,
# or on an /authz answer that took over 5 s. Loopback only, ports 19990-19991.
# Builds the debug binary, or runs FAULT_BIN (e.g. an older build, to compare).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-10}
CONNECTIONS=${2:-1000}
PORT=19990 ADMIN=19991
if [ -n "${FAULT_BIN:-}" ]; then BIN=$(realpath "$FAULT_BIN"); else
    cargo build --locked -q
    BIN=$PWD/target/debug/gatekeeper
fi
DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-fds.XXXXXX")
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

read -r GOOD GOOD_ID GOOD_DIGEST < <("$BIN" key generate --json \
    | python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["key"], k["id"], k["digest"])')
read -r BAD BAD_ID BAD_DIGEST < <("$BIN" key generate --json \
    | python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["key"], k["id"], k["digest"])')
cat >"$DIR/gatekeeper.toml" <<TOML
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
id = "$GOOD_ID"
digest = "$GOOD_DIGEST"

[[client.key]]
id = "$BAD_ID"
digest = "$BAD_DIGEST"
status = "revoked"
TOML

# The open-file limit applies to gatekeeper only (soft and hard: it cannot
# raise it), not to the client below.
(
    ulimit -n 256
    exec env -i PATH="$PATH" GATEKEEPER_LISTEN=127.0.0.1:$PORT GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$ADMIN \
        GATEKEEPER_FAILED_AUTH_LIMIT=1000000/1s GATEKEEPER_LOG_LEVEL=info \
        "$BIN" serve --config "$DIR/gatekeeper.toml"
) >"$DIR/gatekeeper.log" 2>&1 &
GK=$!; PIDS="$PIDS $GK"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break; sleep 0.1; done
grep -o '"message":"connection limits"[^}]*' "$DIR/gatekeeper.log" || true

overflows() { awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) n[$i] = i; h = 1 } else print $n["ListenOverflows"] }' /proc/net/netstat; }
BEFORE=$(overflows)
# /readyz from a process of its own, so the storm's event loop does not
# delay its figures: every 100 ms, 5 s timeout.
python3 - "$ADMIN" "$SECONDS_TO_RUN" >"$DIR/readyz.txt" <<'PY' &
import http.client, sys, time
admin, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + secs
while time.monotonic() < end:
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        c.request("GET", "/readyz"); r = c.getresponse(); r.read(); c.close()
        ok = r.status < 500
    except Exception:
        ok = False
    print(f"{time.monotonic() - t0:.6f} {int(ok)}", flush=True)
    time.sleep(0.1)
PY
READYZ=$!; PIDS="$PIDS $READYZ"
set +e
python3 - "$PORT" "$DIR/readyz.txt" "$GOOD" "$BAD" "$SECONDS_TO_RUN" "$CONNECTIONS" <<'PY'
import asyncio, collections, random, sys, time

port, readyz_file, good, bad = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
secs, conns = float(sys.argv[5]), int(sys.argv[6])
ANSWER_TIMEOUT = 30.0

def request(key):
    return (f"GET /authz HTTP/1.1\r\nHost: gatekeeper\r\nX-Original-Method: GET\r\n"
            f"X-Original-URI: /data/x\r\nX-Original-Host: api.example.com\r\n"
            f"Authorization: Bearer {key}\r\n\r\n").encode()

answers = collections.Counter()   # (kind, outcome)
authz_lat = []
by_outcome = collections.defaultdict(list)  # served / refused: latencies

async def head(reader):
    raw = await reader.readuntil(b"\r\n\r\n")
    status = int(raw.split(b" ", 2)[1])
    length = 0
    for line in raw.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status, b"connection: close" in raw.lower()

async def client(i, end):
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), ANSWER_TIMEOUT)
        except Exception:
            answers[("connect", "failed")] += 1
            authz_lat.append(time.monotonic() - t0)
            await asyncio.sleep(0.1)
            continue
        try:
            for n in range(random.randint(1, 3)):
                kind = "revoked" if random.random() < 0.5 else "valid"
                if n:
                    await asyncio.sleep(random.uniform(0.2, 1.0))  # keep-alive, idle
                    t0 = time.monotonic()
                writer.write(request(bad if kind == "revoked" else good))
                status, closing = await asyncio.wait_for(head(reader), ANSWER_TIMEOUT)
                authz_lat.append(time.monotonic() - t0)
                by_outcome["refused" if status == 503 else "served"].append(authz_lat[-1])
                answers[(kind, status)] += 1
                if closing:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            authz_lat.append(time.monotonic() - t0)
            by_outcome["refused"].append(authz_lat[-1])
            answers[("any", "closed")] += 1
        except asyncio.TimeoutError:
            authz_lat.append(time.monotonic() - t0)
            answers[("any", "timeout")] += 1
        finally:
            writer.close()
        await asyncio.sleep(random.uniform(0, 0.2))

def figures(xs):
    xs = sorted(xs)
    if not xs:
        return "none"
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return f"n={len(xs)} p50={pick(0.5)*1000:.1f}ms p99={pick(0.99)*1000:.1f}ms max={xs[-1]*1000:.1f}ms"

async def main():
    end = time.monotonic() + secs
    await asyncio.gather(*(client(i, end) for i in range(conns)))

asyncio.run(main())
time.sleep(0.5)  # the /readyz poller's last answer
readyz = [line.split() for line in open(readyz_file)]
readyz_lat = [float(t) for t, _ in readyz]
readyz_failed = sum(1 for _, ok in readyz if ok != "1")
wrongful = answers[("revoked", 200)]
print(f"{conns} connections for {secs:.0f}s under ulimit -n 256")
print("authz answers:", dict(sorted(answers.items(), key=str)))
print("authz latency:", figures(authz_lat))
for outcome, xs in sorted(by_outcome.items()):
    print(f"  {outcome}:", figures(xs))
print("readyz latency:", figures(readyz_lat), f"failed={readyz_failed}")
print(f"wrongful allows: {wrongful}")
slow = max(authz_lat, default=0) > 5.0
bad_readyz = readyz_failed > 0 or max(readyz_lat, default=0) > 1.0
sys.exit(1 if wrongful or slow or bad_readyz else 0)
PY
rc=$?
set -e
echo "listen queue overflows (system-wide, during the run): $(( $(overflows) - BEFORE ))"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^gatekeeper_authz_connections' || true
grep -c 'Error accepting connection' "$DIR/gatekeeper.log" | sed 's/^/accept errors (EMFILE) logged: /' || true
kill -0 "$GK" || { echo "gatekeeper died"; exit 1; }
exit $rc
