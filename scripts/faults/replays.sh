#!/usr/bin/env bash
# Fault (issue 19, item 4): HMAC replays across a loss of the nonces' memory.
# Signs N requests (timestamps now-1 … now+4: a gatekeeper up for seconds
# refuses older ones, see README "HMAC replays"), sends each once, then loses
# the memory and replays them all:
#
#   a. DB-less without Redis: SIGKILL gatekeeper and start it again; then the
#      same after a clean SIGTERM.
#   b. With a private redis-server (no persistence, port 19960): restart it
#      without its data (SHUTDOWN NOSAVE) — replays sent at once, while
#      gatekeeper may still be reconnecting (GATEKEEPER_REDIS_FAILURE=local, the
#      default), and again once it answers; FLUSHALL; a SIGKILL of gatekeeper
#      while Redis keeps its data; and a crash of Redis that reloads a snapshot
#      taken (SAVE) between two batches, so that only the later batch's nonces
#      are lost.
#
# After each loss it also measures how long until a freshly signed request is
# accepted again (GATEKEEPER_HMAC_MAX_AHEAD + at most 2 s is expected).
#
#     bash scripts/faults/replays.sh [N]     (default 50; loopback only)
#
# Prints, per phase, the requests sent, accepted and the refusal reasons;
# exits 1 on any accepted replay. Builds the debug binary, or runs FAULT_BIN
# (another build, e.g. an older one, to compare).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-50}
PORT=19962 ADMIN=19963 RPORT=19960
if [ -n "${FAULT_BIN:-}" ]; then BIN=$(realpath "$FAULT_BIN"); else
    cargo build --locked -q
    BIN=$PWD/target/debug/gatekeeper
fi
command -v redis-server >/dev/null || { echo "redis-server is needed" >&2; exit 2; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-replays.XXXXXX")
GK="" REDIS=""
cleanup() {
    for p in $GK $REDIS; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

cat >"$DIR/gatekeeper.toml" <<'TOML'
[[route]]
id = "admin"
domain = "*"
path = "/api/*"
service = "ollama"
[route.methods]
GET = ["hmac"]

[[client]]
id = "ops"
name = "Operations"
hmac_secret = { env = "OPS_SECRET" }

[[grant]]
client = "ops"
route = "admin"
methods = ["GET"]
TOML

# The client: signs, sends, counts.
cat >"$DIR/client.py" <<'PY'
import collections, hashlib, hmac, http.client, json, os, sys, time
SECRET, PORT = b"replay-fault-secret", int(os.environ["PORT"])
def auth(ts, nonce):
    sig = hmac.new(SECRET, f"GET\n/api/tags\n{ts}\n{nonce}\n".encode(), hashlib.sha256).hexdigest()
    return f'HMAC client_id="ops",timestamp="{ts}",nonce="{nonce}",signature="{sig}"'
def send(value):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    c.request("GET", "/authz", headers={"X-Original-Method": "GET", "X-Original-URI": "/api/tags",
                                        "X-Original-Host": "localhost", "Authorization": value})
    r = c.getresponse(); r.read(); c.close()
    return r.status, r.getheader("X-Auth-Reason", "")
cmd = sys.argv[1]
if cmd == "sign":            # sign N TAG FILE: N requests, timestamps now-1 … now+4
    n, tag, path = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    now = int(time.time())
    offsets = [0, -1, 4, 2, 1]
    with open(path, "w") as f:
        for i in range(n):
            f.write(auth(now + offsets[i % len(offsets)], f"{tag}-{i}-{os.urandom(6).hex()}") + "\n")
elif cmd == "send":          # send LABEL FILE...: each line once; prints the figures
    label, lines = sys.argv[2], [l.strip() for p in sys.argv[3:] for l in open(p) if l.strip()]
    seen = collections.Counter(send(l) for l in lines)
    ok = sum(v for (s, _), v in seen.items() if s == 200)
    refused = ", ".join(f"{r or s} {v}" for (s, r), v in sorted(seen.items()) if s != 200)
    print(f"  {label:<44} sent {len(lines):>4}  accepted {ok:>4}  refused: {refused or '-'}")
    with open(os.environ["TALLY"], "a") as t:
        t.write(f"{label}\t{ok}\n")
elif cmd == "fresh":         # fresh LABEL: sign now, every 100 ms, until accepted (20 s at most)
    start, i = time.time(), 0
    while time.time() - start < 20:
        i += 1
        status, reason = send(auth(int(time.time()), f"fresh-{os.urandom(6).hex()}-{i}"))
        if status == 200:
            print(f"  {sys.argv[2]:<44} fresh request accepted after {time.time() - start:.1f} s")
            time.sleep(2)  # so that now-1 is accepted too
            sys.exit(0)
        time.sleep(0.1)
    print(f"  {sys.argv[2]:<44} no fresh request accepted within 20 s ({reason})"); sys.exit(1)
PY
export PORT TALLY="$DIR/tally"
: >"$TALLY"
client() { python3 "$DIR/client.py" "$@"; }

start_gk() {  # start_gk [VAR=value...]
    env -i PATH="$PATH" OPS_SECRET=replay-fault-secret \
        GATEKEEPER_LISTEN=127.0.0.1:$PORT GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$ADMIN \
        GATEKEEPER_FAILED_AUTH_LIMIT=1000000/1s GATEKEEPER_LOG_LEVEL=warn "$@" \
        "$BIN" serve --config "$DIR/gatekeeper.toml" >>"$DIR/gatekeeper.log" 2>&1 &
    GK=$!
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && return; sleep 0.1; done
    echo "gatekeeper did not start:" >&2; tail -5 "$DIR/gatekeeper.log" >&2; exit 2
}
stop_gk() {  # stop_gk SIGNAL
    kill -"$1" "$GK"; wait "$GK" 2>/dev/null || true; GK=""
}
start_redis() {
    redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$DIR" --dbfilename dump.rdb >>"$DIR/redis.log" 2>&1 &
    REDIS=$!
    for _ in $(seq 50); do redis-cli -p $RPORT ping >/dev/null 2>&1 && return; sleep 0.1; done
    echo "redis-server did not start" >&2; exit 2
}
stop_redis() {
    redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1 || true
    wait "$REDIS" 2>/dev/null || true; REDIS=""
}
redis_ok() {
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null | grep -q '"redis":"ok"' && return
        sleep 0.1
    done
    echo "gatekeeper did not see Redis again" >&2; exit 2
}

echo "replays across a lost nonce memory — $BIN, $N requests per batch"
echo "a. DB-less, no Redis"
start_gk
client fresh "start"
client sign "$N" a1 "$DIR/a1"; client send "first sends" "$DIR/a1"
stop_gk KILL; start_gk
client send "replays after SIGKILL + restart [replay]" "$DIR/a1"
client fresh "after SIGKILL + restart"
client sign "$N" a2 "$DIR/a2"; client send "first sends" "$DIR/a2"
stop_gk TERM; start_gk
client send "replays after SIGTERM + restart [replay]" "$DIR/a1" "$DIR/a2"
client fresh "after SIGTERM + restart"
stop_gk TERM

echo "b. Redis (private, no persistence; failure mode local)"
start_redis
REDIS_ENV=(GATEKEEPER_REDIS_URL=redis://127.0.0.1:$RPORT/0 GATEKEEPER_REDIS_PREFIX=replays:)
start_gk "${REDIS_ENV[@]}"
redis_ok
client fresh "start"
client sign "$N" b1 "$DIR/b1"; client send "first sends" "$DIR/b1"
stop_redis; start_redis
client send "replays at once after Redis restart [replay]" "$DIR/b1"
redis_ok
client send "replays once Redis answers [replay]" "$DIR/b1"
client fresh "after Redis restart"
client sign "$N" b2 "$DIR/b2"; client send "first sends" "$DIR/b2"
redis-cli -p $RPORT flushall >/dev/null
client send "replays after FLUSHALL [replay]" "$DIR/b1" "$DIR/b2"
client fresh "after FLUSHALL"
client sign "$N" b3 "$DIR/b3"; client send "first sends" "$DIR/b3"
stop_gk KILL; start_gk "${REDIS_ENV[@]}"; redis_ok
client send "replays after gatekeeper SIGKILL [replay]" "$DIR/b1" "$DIR/b2" "$DIR/b3"
client fresh "after gatekeeper SIGKILL (Redis kept data)"
client sign "$N" b4 "$DIR/b4"; client send "first sends" "$DIR/b4"
redis-cli -p $RPORT save >/dev/null
client sign "$N" b5 "$DIR/b5"; client send "first sends, after the snapshot" "$DIR/b5"
kill -9 "$REDIS"; wait "$REDIS" 2>/dev/null || true; start_redis; redis_ok
client send "replays after Redis crash + snapshot [replay]" "$DIR/b4" "$DIR/b5"
client fresh "after Redis crash + snapshot"
stop_gk TERM; stop_redis

replayed=$(awk -F'\t' '$1 ~ /\[replay\]/ { s += $2 } END { print s + 0 }' "$TALLY")
echo "accepted replays: $replayed (must be 0)"
[ "$replayed" -eq 0 ]
