"""Attack suite, credentials (issue 17, classes 5 and 6), through real nginx,
judged by what the recording upstream received.

Class 5 — HMAC replay at the edge of the timestamp window: a signed request
is accepted once; the same bytes sent again — at once, in parallel, or just
as the timestamp is about to leave the window (the nonce must outlive the
timestamp's validity: with Redis, a nonce stored with a whole-second EX
could expire first) — are `replayed_request` or `stale_signature` and reach
the upstream at most once. GATEKEEPER_HMAC_WINDOW is 300 s in the harness.

Class 6 — failed-credential throttling per source address: presenting a
revoked or an expired key counts as a failed credential
(GATEKEEPER_FAILED_AUTH_LIMIT, 20/1m by default); after 20 of them from one
address the next request from it — even with a valid key, even a valid
HMAC signature — is 429 `rate_limited` and reaches nothing. Each case
connects from its own loopback address (127.0.0.65–127.0.0.76, 127.0.0.78;
127.0.0.77 belongs to e2e/test_path_confusion.py), so no case feeds or
suffers from another's failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from attack_common import HMAC_CLIENT, HMAC_SECRET, KEYS, OLLAMA_HOST, OPENAI_HOST
from conftest import KEYS as SUITE_KEYS
from conftest import MARKER_HEADER, raw_request

WINDOW = int(os.environ.get("E2E_HMAC_WINDOW", "300"))  # GATEKEEPER_HMAC_WINDOW in the harness
FAILED_AUTH_LIMIT = 20  # GATEKEEPER_FAILED_AUTH_LIMIT: 20/1m (the default)
CHAT_BODY = json.dumps({"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]}).encode()


# ── helpers ────────────────────────────────────────────────────────────────


def sign(method: str, path: str, body: bytes, ts: int, nonce: str) -> str:
    msg = b"\n".join([method.encode(), path.encode(), str(ts).encode(), nonce.encode(), body])
    mac = hmac.new(HMAC_SECRET, msg, hashlib.sha256).hexdigest()
    return f'HMAC client_id="{HMAC_CLIENT}",timestamp="{ts}",nonce="{nonce}",signature="{mac}"'


def reason(resp) -> str:
    for r in ("replayed_request", "stale_signature", "rate_limited", "key_revoked", "key_expired",
              "invalid_credentials", "model_not_allowed"):
        if r.encode() in resp.body:
            return r
    return ""


def send(env, site: str, method: str, path: str, marker: str, *, auth: str | None = None,
         headers: dict | None = None, body: bytes = b"", source: str | None = None):
    addr = env.ollama_hostport if site == "ollama" else env.openai_hostport
    h = {"Host": OLLAMA_HOST if site == "ollama" else OPENAI_HOST, MARKER_HEADER: marker, **(headers or {})}
    if auth is not None:
        h["Authorization"] = auth
    if body:
        h["Content-Type"] = "application/json"
    return raw_request(addr[0], addr[1], method, path, headers=h, body=body, source=source, timeout=20)


def signed_post(env, path: str, body: bytes, ts: int, nonce: str, marker: str, source: str | None = None):
    return send(env, "openai", "POST", path, marker, auth=sign("POST", path, body, ts, nonce), body=body,
                source=source)


def records(mock_records, marker: str) -> list[dict]:
    return mock_records(marker, settle=0.3)


@pytest.fixture(scope="module", autouse=True)
def nonce_memory_settled(env):
    """A gatekeeper whose nonce memory just began (a start without Redis, a
    Redis that had no epoch marker) refuses signatures dated up to that
    moment + GATEKEEPER_HMAC_MAX_AHEAD as stale_signature: a request signed
    then could have been accepted by the memory that was lost (README,
    "HMAC replays and lost nonces"). Wait until a fresh signature passes,
    as a client that re-signs would; bounded."""
    end = time.monotonic() + 15
    while True:
        path, body = "/v1/signed/settle", b'{"op":"settle"}'
        r = signed_post(env, path, body, int(time.time()), new_nonce(), "settle-" + new_nonce())
        if r.status == 200:
            return
        assert reason(r) == "stale_signature" and time.monotonic() < end, (r.status, r.body)
        time.sleep(0.25)


def new_nonce() -> str:
    return uuid.uuid4().hex


# ── class 5: HMAC replay ───────────────────────────────────────────────────


def test_hmac_fresh_signature_reaches_the_upstream_once(env, mock_records, marker):
    """Positive control: the signature scheme as the tests compute it works."""
    body = b'{"op":"fresh"}'
    r = signed_post(env, "/v1/signed/fresh", body, int(time.time()), new_nonce(), marker)
    assert r.status == 200, (r.status, r.body)
    got = records(mock_records, marker)
    assert len(got) == 1 and got[0]["body"].encode() == body


def test_hmac_immediate_replay_is_refused(env, mock_records, marker):
    body, nonce, ts = b'{"op":"again"}', new_nonce(), int(time.time())
    first = signed_post(env, "/v1/signed/again", body, ts, nonce, marker)
    second = signed_post(env, "/v1/signed/again", body, ts, nonce, marker)
    assert first.status == 200, (first.status, first.body)
    assert reason(second) == "replayed_request", (second.status, second.body)
    assert len(records(mock_records, marker)) == 1


@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_hmac_replay_storm_across_the_window_edge(env, mock_records, marker, offset):
    """The timestamp leaves the window `offset` s (plus the current second's
    remainder) after the first send; the same bytes are resent every 0.2 s
    until well after that. At most one reaches the upstream, every resend is
    replayed_request or stale_signature."""
    body, nonce = f'{{"op":"storm-{offset}"}}'.encode(), new_nonce()
    ts = int(time.time()) - WINDOW + offset
    path = f"/v1/signed/storm-{offset}"
    first = signed_post(env, path, body, ts, nonce, marker)
    assert first.status == 200 or reason(first) == "stale_signature", (first.status, first.body)
    seen = []
    end = time.monotonic() + offset + 2.5
    while time.monotonic() < end:
        time.sleep(0.2)
        again = signed_post(env, path, body, ts, nonce, marker)
        seen.append((round(time.time() - ts - WINDOW, 2), again.status, reason(again)))
    accepted = [s for s in seen if s[1] == 200]
    assert not accepted, f"a replay was accepted (seconds past the edge, status, reason): {accepted}"
    assert all(s[2] in ("replayed_request", "stale_signature") for s in seen), seen
    assert len(records(mock_records, marker)) <= 1


@pytest.mark.parametrize("delay", [0.5, 1.0, 1.5])
def test_hmac_replay_right_at_the_window_edge(env, mock_records, marker, delay):
    """timestamp = now − window (+1 s, so the first send is still inside),
    resent `delay` seconds later."""
    body, nonce = f'{{"op":"edge-{delay}"}}'.encode(), new_nonce()
    # Start at a fixed point of the second, so the edge falls within the test.
    time.sleep(1 - (time.time() % 1) + 0.05)
    ts = int(time.time()) - WINDOW + 1
    path = "/v1/signed/edge"
    first = signed_post(env, path, body, ts, nonce, marker)
    time.sleep(delay)
    second = signed_post(env, path, body, ts, nonce, marker)
    assert second.status != 200 and reason(second) in ("replayed_request", "stale_signature"), (
        first.status, second.status, second.body)
    assert len(records(mock_records, marker)) <= 1


def test_hmac_replay_of_a_future_timestamp_at_the_edge(env, mock_records, marker):
    """timestamp = now + window: valid for 2 × window; the nonce must be kept
    that long (checked here for the first seconds)."""
    body, nonce, ts = b'{"op":"future"}', new_nonce(), int(time.time()) + WINDOW
    path = "/v1/signed/future"
    results = [signed_post(env, path, body, ts, nonce, marker)]
    for _ in range(4):
        time.sleep(0.5)
        results.append(signed_post(env, path, body, ts, nonce, marker))
    assert sum(r.status == 200 for r in results) <= 1, [(r.status, reason(r)) for r in results]
    assert all(reason(r) in ("replayed_request", "stale_signature") for r in results[1:]), \
        [(r.status, reason(r)) for r in results]
    assert len(records(mock_records, marker)) <= 1


@pytest.mark.parametrize("age", [0, WINDOW - 1])
def test_hmac_parallel_replays_reach_the_upstream_once(env, mock_records, marker, age):
    """The same signed bytes 12 times at once (the nonce check is atomic)."""
    body, nonce = f'{{"op":"parallel-{age}"}}'.encode(), new_nonce()
    ts = int(time.time()) - age
    path = "/v1/signed/parallel"
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda _: signed_post(env, path, body, ts, nonce, marker), range(12)))
    assert sum(r.status == 200 for r in results) <= 1, [(r.status, reason(r)) for r in results]
    assert all(r.status == 200 or reason(r) in ("replayed_request", "stale_signature") for r in results)
    assert len(records(mock_records, marker)) <= 1


@pytest.mark.parametrize("change", ["body", "path", "timestamp"])
def test_hmac_nonce_is_single_use_whatever_else_is_signed(env, mock_records, marker, change):
    """A nonce once accepted cannot carry another validly signed request: not
    with another body, another path or another timestamp."""
    nonce, ts = new_nonce(), int(time.time())
    first = signed_post(env, "/v1/signed/once", b'{"op":1}', ts, nonce, marker)
    assert first.status == 200, (first.status, first.body)
    path, body, ts2 = "/v1/signed/once", b'{"op":1}', ts
    if change == "body":
        body = b'{"op":2}'
    elif change == "path":
        path = "/v1/signed/elsewhere"
    else:
        ts2 = ts - 1
    second = signed_post(env, path, body, ts2, nonce, marker)
    assert reason(second) == "replayed_request", (second.status, second.body)
    assert len(records(mock_records, marker)) == 1


# ── class 6: revoked and expired keys count as failed credentials ─────────


def bearer(name: str) -> str:
    return f"Bearer {KEYS[name]}"


def fail_from(env, source: str, marker: str, presentations: list[tuple[str, dict]], site: str = "openai"):
    """Sends each (Authorization value or None, extra headers) from `source`;
    every one must be refused as a failed credential (401), none throttled yet."""
    path = "/v1/chat/completions" if site == "openai" else "/api/chat"
    for i, (auth, headers) in enumerate(presentations):
        r = send(env, site, "POST", path, marker, auth=auth, headers=headers, body=CHAT_BODY, source=source)
        assert r.status == 401 and reason(r) in ("key_revoked", "key_expired", "invalid_credentials"), (
            f"presentation {i + 1} from {source}: {r.status} {r.body[:200]!r}")


def assert_throttled(env, mock_records, marker, source: str, site: str = "openai", kind: str = "chat"):
    if kind == "hmac":
        body = b'{"op":"throttled"}'
        path = "/v1/signed/throttled"
        r = send(env, "openai", "POST", path, marker, auth=sign("POST", path, body, int(time.time()), new_nonce()),
                 body=body, source=source)
    elif kind == "models":
        r = send(env, "openai", "GET", "/v1/models", marker, auth=bearer("attack_creds"), source=source)
    else:
        path = "/v1/chat/completions" if site == "openai" else "/api/chat"
        r = send(env, site, "POST", path, marker, auth=bearer("attack_creds"), body=CHAT_BODY, source=source)
    assert r.status == 429 and reason(r) == "rate_limited", (
        f"a valid credential from {source} after {FAILED_AUTH_LIMIT} failed ones: {r.status} {r.body[:200]!r}")
    assert records(mock_records, marker) == [], "a request from a throttled address reached the upstream"


REVOKED = (bearer("attack_revoked"), {})
EXPIRED = (bearer("attack_expired"), {})


def test_revoked_keys_throttle_the_source(env, mock_records, marker):
    fail_from(env, "127.0.0.66", marker, [REVOKED] * FAILED_AUTH_LIMIT)
    assert_throttled(env, mock_records, marker, "127.0.0.66")


def test_expired_keys_throttle_the_source(env, mock_records, marker):
    fail_from(env, "127.0.0.67", marker, [EXPIRED] * FAILED_AUTH_LIMIT)
    assert_throttled(env, mock_records, marker, "127.0.0.67")


def test_revoked_and_expired_keys_add_up(env, mock_records, marker):
    fail_from(env, "127.0.0.68", marker, [REVOKED, EXPIRED] * (FAILED_AUTH_LIMIT // 2))
    assert_throttled(env, mock_records, marker, "127.0.0.68")


def test_revoked_key_in_x_api_key_counts(env, mock_records, marker):
    fail_from(env, "127.0.0.69", marker, [(None, {"X-API-Key": KEYS["attack_revoked"]})] * FAILED_AUTH_LIMIT)
    assert_throttled(env, mock_records, marker, "127.0.0.69")


def test_failures_on_one_site_throttle_the_address_on_the_other(env, mock_records, marker):
    fail_from(env, "127.0.0.70", marker, [REVOKED] * FAILED_AUTH_LIMIT, site="ollama")
    assert_throttled(env, mock_records, marker, "127.0.0.70", site="openai")


def test_throttled_address_cannot_use_the_ollama_site(env, mock_records, marker):
    fail_from(env, "127.0.0.72", marker, [EXPIRED] * FAILED_AUTH_LIMIT)
    assert_throttled(env, mock_records, marker, "127.0.0.72", site="ollama")


def test_throttled_address_cannot_use_a_valid_hmac_signature(env, mock_records, marker):
    fail_from(env, "127.0.0.73", marker, [REVOKED] * FAILED_AUTH_LIMIT)
    assert_throttled(env, mock_records, marker, "127.0.0.73", kind="hmac")


def test_throttled_address_cannot_use_a_bodyless_route(env, mock_records, marker):
    """GET /v1/models goes through a plain auth_request, not the bridge."""
    fail_from(env, "127.0.0.74", marker, [REVOKED] * FAILED_AUTH_LIMIT)
    assert_throttled(env, mock_records, marker, "127.0.0.74", kind="models")


def test_another_clients_revoked_key_counts_too(env, mock_records, marker):
    """The suite's own revoked key (chat-app's chat-k-revoked)."""
    fail_from(env, "127.0.0.78", marker, [(f"Bearer {SUITE_KEYS['revoked']}", {})] * FAILED_AUTH_LIMIT)
    assert_throttled(env, mock_records, marker, "127.0.0.78")


def test_one_below_the_limit_is_not_throttled(env, mock_records, marker):
    """Control: 19 failed presentations, then a valid key is served."""
    fail_from(env, "127.0.0.71", marker, [REVOKED] * (FAILED_AUTH_LIMIT - 1))
    r = send(env, "openai", "POST", "/v1/chat/completions", marker, auth=bearer("attack_creds"), body=CHAT_BODY,
             source="127.0.0.71")
    assert r.status == 200, (r.status, r.body[:200])
    assert len(records(mock_records, marker)) == 1


def test_another_address_is_not_throttled(env, mock_records, marker):
    """Control: throttling 127.0.0.75 leaves 127.0.0.76 alone."""
    fail_from(env, "127.0.0.75", marker, [REVOKED] * FAILED_AUTH_LIMIT)
    r = send(env, "openai", "POST", "/v1/chat/completions", marker, auth=bearer("attack_creds"), body=CHAT_BODY,
             source="127.0.0.76")
    assert r.status == 200, (r.status, r.body[:200])
    assert len(records(mock_records, marker)) == 1


def test_throttled_address_stays_throttled_for_every_credential(env, mock_records, marker):
    """After the limit, a valid key, a revoked key and no key at all: all
    429 while the throttle holds (none is judged, none is proxied)."""
    source = "127.0.0.65"
    fail_from(env, source, marker, [REVOKED] * FAILED_AUTH_LIMIT)
    for auth in (bearer("attack_creds"), bearer("attack_revoked"), bearer("attack_expired")):
        r = send(env, "openai", "POST", "/v1/chat/completions", marker, auth=auth, body=CHAT_BODY, source=source)
        assert r.status == 429 and reason(r) == "rate_limited", (auth[:30], r.status, r.body[:200])
    assert records(mock_records, marker) == []
