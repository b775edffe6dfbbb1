#!/usr/bin/env bash
# Smoke test of the bundled nginx configuration with curl, for what the pytest
# suite (scripts/e2e.sh) cannot do without breaking the services it relies
# on: gatekeeper's own 503 (`store_unavailable`, Redis unreachable under
# GATEKEEPER_REDIS_FAILURE=deny) and gatekeeper being down altogether — both
# must reach the client as a JSON 503, never a 500 — plus one request per
# final status on both sites and both paths (auth_request and the njs bridge).
#
#     bash e2e/run_nginx_smoke.sh
#
# Its own stack on other ports (28180, 28181; mock 28190; gatekeeper 28143,
# admin 28144), the same sites as operators copy; stops everything it
# started. Needs no Redis: gatekeeper is pointed at a closed port on purpose.
set -euo pipefail

# Read by scripts/e2e.sh's functions:
# shellcheck disable=SC2034
OPENAI_PORT=28180 OLLAMA_PORT=28181 SHARED_PORT=28182 MOCK_PORT=28190 MOCK_OLLAMA_PORT=28191
GK_PORT=28143 GK_ADMIN_PORT=28144 E2E_REDIS=1
STATE=${TMPDIR:-/tmp}/gatekeeper-e2e-smoke-$(id -u).state
# shellcheck disable=SC2034
STOP_HINT="STATE=$STATE bash scripts/e2e.sh stop"
# shellcheck disable=SC2034
REDIS_URL=redis://127.0.0.1:1/0     # nothing listens there
# shellcheck source=scripts/e2e.sh
. "$(dirname "$0")/../scripts/e2e.sh"

OPENAI=http://127.0.0.1:$OPENAI_PORT
OLLAMA=http://127.0.0.1:$OLLAMA_PORT
CHAT=e2e-chat-app-key-7d1c0a9b4e        # e2e/policy.toml's keys (test credentials)
LIMITED=e2e-ratelimit-key-5a9e7c2f14    # has a limit: needs Redis
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s: %s\n' "$1" "$2"; }

# expect NAME STATUS CODE STYLE curl-arguments…: the answer has STATUS, a JSON
# body of STYLE (openai | ollama | any) naming CODE (or "-": not checked).
expect() {
    local name=$1 status=$2 code=$3 style=$4 out got host=openai.example.com arg
    shift 4
    # Each site serves only its own name (a request naming another is 421).
    for arg in "$@"; do case "$arg" in "$OLLAMA"/*) host=ollama.example.com ;; esac; done
    out=$(mktemp)
    got=$(curl -s -o "$out" -D "$out.h" -w '%{http_code}' -m 20 -H "Host: $host" "$@" || true)
    if [ "$got" != "$status" ]; then
        fail "$name" "status $got, expected $status: $(head -c 200 "$out")"
    elif [ "$code" != - ] && ! python3 - "$out" "$code" "$style" <<'EOF'
import json, sys
body = json.load(open(sys.argv[1]))
code, style = sys.argv[2], sys.argv[3]
if style == "openai":
    e = body["error"]
    assert e["code"] == code and e["message"] and e["type"], body
else:
    assert isinstance(body["error"], str) and code in body["error"], body
EOF
    then
        fail "$name" "body $(head -c 200 "$out")"
    elif [ "$status" = 401 ] && ! grep -qi '^www-authenticate:' "$out.h"; then
        fail "$name" "401 without WWW-Authenticate"
    elif [ "$status" != 200 ] && ! grep -qi '^content-type: application/json' "$out.h"; then
        fail "$name" "not application/json: $(grep -i '^content-type' "$out.h")"
    else
        pass "$name"
    fi
    rm -f "$out" "$out.h"
}

stop_recorded
ensure_nginx
ensure_venv
build_gatekeeper
new_run
log "starting the stack in $RUN_DIR"
prepare_run_dir
start_mock
start_gatekeeper GATEKEEPER_REDIS_FAILURE=deny GATEKEEPER_REDIS_TIMEOUT=50ms
start_nginx

log "gatekeeper up, Redis unreachable (GATEKEEPER_REDIS_FAILURE=deny)"
J=(-H 'Content-Type: application/json')
expect "allow: embeddings (bridge)" 200 - any "$OPENAI/v1/embeddings" "${J[@]}" \
    -H "Authorization: Bearer $CHAT" -d '{"model":"nomic-embed-text","input":"x"}'
expect "allow: ollama generate (bridge)" 200 - any "$OLLAMA/api/generate" \
    -H "Authorization: Bearer $CHAT" -d '{"model":"llama3:8b","prompt":"hi","stream":false}'
expect "allow: ollama tags (auth_request)" 200 - any "$OLLAMA/api/tags" -H "X-API-Key: $CHAT"
expect "400 ambiguous_path (auth_request, openai)" 400 ambiguous_path openai "$OPENAI/x%2fy" \
    -H "Authorization: Bearer $CHAT"
expect "400 ambiguous_path (bridge, ollama)" 400 ambiguous_path ollama "$OLLAMA/api/a%2fb" \
    -H "Authorization: Bearer $CHAT" -d '{}'
expect "401 missing_credentials (auth_request)" 401 missing_credentials openai "$OPENAI/v1/models"
expect "401 missing_credentials (bridge, ollama)" 401 missing_credentials ollama "$OLLAMA/api/chat" -d '{}'
expect "403 no_route_match (auth_request)" 403 no_route_match openai "$OPENAI/nowhere"
expect "403 model_not_allowed (bridge, openai)" 403 model_not_allowed openai "$OPENAI/v1/embeddings" \
    "${J[@]}" -H "Authorization: Bearer $CHAT" -d '{"model":"text-embedding-3-large","input":"x"}'
expect "403 model_not_allowed (bridge, ollama)" 403 model_not_allowed ollama "$OLLAMA/api/generate" \
    -H "Authorization: Bearer $CHAT" -d '{"model":"mistral:7b","prompt":"hi"}'
big=$(mktemp)
head -c $((9 * 1024 * 1024)) /dev/zero | tr '\0' 'x' >"$big"
expect "413 request_too_large (bridge)" 413 request_too_large openai "$OPENAI/v1/chat/completions" \
    -H "Authorization: Bearer $CHAT" --data-binary @"$big"
rm -f "$big"
expect "503 store_unavailable from gatekeeper (auth_request)" 503 store_unavailable openai \
    "$OPENAI/v1/models" -H "Authorization: Bearer $LIMITED"
expect "503 store_unavailable from gatekeeper (bridge)" 503 store_unavailable openai \
    "$OPENAI/v1/chat/completions" "${J[@]}" -H "Authorization: Bearer $LIMITED" \
    -d '{"model":"llama3:8b","messages":[]}'

log "gatekeeper down"
kill -TERM "$GK_PID"                # set by start_gatekeeper
for _ in $(seq 50); do kill -0 "$GK_PID" 2>/dev/null || break; sleep 0.1; done
expect "503 when down (auth_request, openai)" 503 store_unavailable openai "$OPENAI/v1/models" \
    -H "Authorization: Bearer $CHAT"
expect "503 when down (bridge, openai)" 503 store_unavailable openai "$OPENAI/v1/chat/completions" \
    "${J[@]}" -H "Authorization: Bearer $CHAT" -d '{"model":"llama3:8b","messages":[]}'
expect "503 when down (auth_request, ollama)" 503 store_unavailable ollama "$OLLAMA/api/tags" \
    -H "Authorization: Bearer $CHAT"
expect "503 when down (bridge, ollama)" 503 store_unavailable ollama "$OLLAMA/api/chat" \
    -H "Authorization: Bearer $CHAT" -d '{"model":"llama3:8b"}'

log "logs"
if grep -qE '\[(emerg|alert|crit)\]|js exception' "$RUN_DIR/error.log"; then
    fail "nginx error log" "$(grep -E '\[(emerg|alert|crit)\]|js exception' "$RUN_DIR/error.log" | head -3)"
else
    pass "nginx logged nothing critical"
fi
upstream=$(curl -s "http://127.0.0.1:$MOCK_PORT/_mock/requests?all=1")
if grep -qF -e "$CHAT" -e "$LIMITED" <<<"$upstream"; then
    fail "upstream" "a gatekeeper key reached the mock"
else
    pass "no gatekeeper key reached the upstream"
fi

printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" = 0 ]
