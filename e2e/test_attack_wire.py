"""Attack classes 7–10 of issue 17 and the header class, through real nginx
on both layouts (conftest `layout`), each judged by what the recording
upstream received (the mock's records carrying the case's marker):

- 7, the body bridge: bodies up to the sites' 8 MiB reach gatekeeper and,
  allowed, the backend whole; one byte more is a JSON 413
  `request_too_large` on both sites, status and body naming the same
  reason, and nothing is forwarded;
- 8, headers: a client-sent `X-Auth-*` other than the four identity ones is
  nginx's 400 `forbidden_header`, nothing forwarded; the identity ones are
  replaced; forwarding headers a client sends (`Forwarded`,
  `X-Forwarded-Host`, …, method overrides, rewrite URLs) never reach the
  upstream, `X-Forwarded-For` is exactly the peer address and
  `X-Forwarded-Proto` the scheme;
- 9, secrets in logs: a key in a header line nginx refuses (a NUL byte, an
  over-long line) is in neither nginx's error log nor gatekeeper's;
- 10, `Content-Length` with leading zeros (25 digits), which nginx accepts,
  is judged normally by gatekeeper (allowed with a good key and model,
  model_not_allowed with a bad model — never bad_request).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid

import pytest

from conftest import (
    IDENTITY,
    KEYS,
    MARKER_HEADER,
    OLLAMA_HOST,
    OPENAI_HOST,
    assert_no_gatekeeper_key,
    raw_request,
)

OAI, OLL = "openai", "ollama"
SITE_HOST = {OAI: OPENAI_HOST, OLL: OLLAMA_HOST}
MIB = 1024 * 1024
# The bridged chat endpoint of each site, allowed for the "chat" key with llama3*.
CHAT = {OAI: ("/v1/chat/completions", "openai-chat"), OLL: ("/api/chat", "ollama-chat")}
# A body-less read through a plain auth_request on each site.
READ = {OAI: ("/v1/models", "openai-models"), OLL: ("/api/tags", "ollama-tags")}
# A public read on each site.
PUBLIC = {OAI: ("/v1/public/x", "openai-public"), OLL: ("/api/version", "ollama-version")}


def marker_for(name: str, layout) -> str:
    return f"wire-{name}-{layout.name}-{uuid.uuid4().hex[:10]}"


def send(layout, site: str, method: str, target: str, marker: str, headers: dict | None = None,
         body: bytes = b"", key: str | None = "chat", **kw):
    host, port = layout.addr(site)
    h = {MARKER_HEADER: marker, **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {KEYS[key]}"
    if body:
        h.setdefault("Content-Type", "application/json")
    return raw_request(host, port, method, target, h, body, host_header=f"{SITE_HOST[site]}:{port}",
                       timeout=60, **kw)


def reason_of(body: bytes, path: str) -> str | None:
    """The reason code of a JSON error in the shape the path gets: Ollama's
    on /api paths, OpenAI's elsewhere."""
    doc = json.loads(body)
    error = doc.get("error")
    if path == "/api" or path.startswith("/api/"):
        assert isinstance(error, str), f"not Ollama's error shape on {path}: {doc}"
        m = re.search(r"\(([a-z_]+)\)$", error)
        return m.group(1) if m else None
    assert isinstance(error, dict), f"not the OpenAI error shape on {path}: {doc}"
    assert error.get("message") and error.get("type"), doc
    return error.get("code")


def chat_body(size: int, model: str = "llama3:8b") -> bytes:
    """A JSON chat request of exactly `size` bytes (padded in a string field)."""
    head = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False})
    head = head[:-1].encode() + b', "pad": "'
    tail = b'"}'
    pad = size - len(head) - len(tail)
    assert pad >= 0, size
    return head + b"x" * pad + tail


def assert_allowed_once(records: list[dict], site: str, route: str, who: str | None = "chat") -> dict:
    assert len(records) == 1, f"the upstream saw {len(records)} requests"
    [record] = records
    assert record["backend"] == site, f"reached the {record['backend']} backend"
    h = record["headers"]
    assert h.get("x-auth-route-id") == route, h
    if who:
        assert h.get("x-auth-client-id") == IDENTITY[who][0], h
    assert_no_gatekeeper_key(records)
    return record


# ---- 7: the body bridge up to the sites' limit ------------------------------------

SIZES = {"1MiB+1": MIB + 1, "4MiB": 4 * MIB, "8MiB-1": 8 * MIB - 1}


@pytest.mark.parametrize("site", [OAI, OLL])
@pytest.mark.parametrize("size_name", list(SIZES))
def test_a_bridged_body_under_the_site_limit_reaches_gatekeeper_and_the_backend_whole(
    layout, mock_records, site, size_name
):
    size = SIZES[size_name]
    body = chat_body(size)
    path, route = CHAT[site]
    marker = marker_for(f"body-{size_name}", layout)
    r = send(layout, site, "POST", path, marker, body=body)
    assert r.status == 200, f"{size} bytes on the {site} site: {r.status} {r.body[:300]!r}"
    record = assert_allowed_once(mock_records(marker, count=1), site, route)
    assert record["body_length"] == size, record["body_length"]
    assert record["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("site", [OAI, OLL])
@pytest.mark.parametrize("size", [8 * MIB + 1, 9 * MIB])
def test_a_bridged_body_over_the_site_limit_is_413_request_too_large_and_never_forwarded(
    layout, mock_records, site, size
):
    path, _ = CHAT[site]
    marker = marker_for("body-over", layout)
    r = send(layout, site, "POST", path, marker, body=chat_body(size))
    assert r.status == 413, f"{size} bytes on the {site} site: {r.status} {r.body[:300]!r}"
    assert "json" in r.headers.get("content-type", ""), r.headers
    assert reason_of(r.body, path) == "request_too_large", r.body[:300]
    assert mock_records(marker) == [], "a refused body reached the upstream"


def test_a_body_of_exactly_8_mib_is_within_the_limit(layout, mock_records):
    body = chat_body(8 * MIB)
    marker = marker_for("body-8mib", layout)
    r = send(layout, OLL, "POST", "/api/chat", marker, body=body)
    assert r.status == 200, (r.status, r.body[:300])
    assert assert_allowed_once(mock_records(marker, count=1), OLL, "ollama-chat")["body_length"] == 8 * MIB


def test_a_large_body_with_a_model_outside_the_grant_is_refused_and_never_forwarded(layout, mock_records):
    marker = marker_for("body-bad-model", layout)
    r = send(layout, OAI, "POST", "/v1/chat/completions", marker, body=chat_body(4 * MIB, model="mistral:7b"))
    assert r.status == 403 and reason_of(r.body, "/v1/chat/completions") == "model_not_allowed", r.body[:300]
    assert mock_records(marker) == []


# ---- 8: headers --------------------------------------------------------------------

FORBIDDEN = ["X-Auth-Reason", "X-Auth-Status", "X-Auth-Provider-Token", "X-Auth-Roles", "X-Auth-Anything",
             "x-AUTH-status", "X-AUTH-REASON"]
FORBIDDEN_VALUE = {"X-Auth-Status": "200", "x-AUTH-status": "200", "X-Auth-Provider-Token": "forward",
                   "X-Auth-Roles": "admin"}


@pytest.mark.parametrize("site", [OAI, OLL])
@pytest.mark.parametrize("name", FORBIDDEN)
def test_a_client_sent_x_auth_header_is_400_forbidden_header_on_auth_request(layout, mock_records, site, name):
    path, _ = READ[site]
    marker = marker_for("xauth", layout)
    r = send(layout, site, "GET", path, marker, {name: FORBIDDEN_VALUE.get(name, "allow")})
    assert r.status == 400, f"{name} on {site}: {r.status} {r.body[:200]!r}"
    assert reason_of(r.body, path) == "forbidden_header", r.body[:200]
    assert mock_records(marker) == [], f"{name}: refused, yet forwarded"


@pytest.mark.parametrize("site", [OAI, OLL])
@pytest.mark.parametrize("name", ["X-Auth-Provider-Token", "X-Auth-Status", "X-Auth-Reason"])
def test_a_client_sent_x_auth_header_is_400_forbidden_header_on_the_bridge(layout, mock_records, site, name):
    path, _ = CHAT[site]
    marker = marker_for("xauth-bridge", layout)
    headers = {name: FORBIDDEN_VALUE.get(name, "allow"), "X-Provider-Token": "sk-client-own-token"}
    r = send(layout, site, "POST", path, marker, headers, body=chat_body(200))
    assert r.status == 400, f"{name} on {site}: {r.status} {r.body[:200]!r}"
    assert reason_of(r.body, path) == "forbidden_header", r.body[:200]
    assert mock_records(marker) == []


@pytest.mark.parametrize("site", [OAI, OLL])
def test_the_four_identity_headers_a_client_sends_are_replaced_not_refused(layout, mock_records, site):
    path, route = READ[site]
    marker = marker_for("identity", layout)
    spoof = {"X-Auth-Client-ID": "admin", "X-Auth-Client-Name": "Admin", "X-Auth-Key-ID": "root",
             "X-Auth-Route-ID": "everything"}
    r = send(layout, site, "GET", path, marker, spoof)
    assert r.status == 200, (r.status, r.body[:200])
    record = assert_allowed_once(mock_records(marker, count=1), site, route)
    assert record["headers"].get("x-auth-client-name") == IDENTITY["chat"][1]
    assert record["headers"].get("x-auth-key-id") == IDENTITY["chat"][2]


FORWARDING = {
    "Forwarded": "for=10.0.0.1;host=evil.example;proto=https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Prefix": "/admin",
    "X-Forwarded-Server": "evil.example",
    "X-Original-URL": "/v1/models",
    "X-Rewrite-URL": "/api/pull",
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
}


@pytest.mark.parametrize("site", [OAI, OLL])
@pytest.mark.parametrize("name", list(FORWARDING))
def test_a_forwarding_header_the_client_sends_never_reaches_the_upstream(layout, mock_records, site, name):
    path, route = PUBLIC[site]
    marker = marker_for("fwd", layout)
    headers = {name: FORWARDING[name], "X-Forwarded-For": "10.9.8.7, 10.6.5.4", "X-Forwarded-Proto": "https"}
    r = send(layout, site, "GET", path, marker, headers, key=None)
    assert r.status == 200, (r.status, r.body[:200])
    record = assert_allowed_once(mock_records(marker, count=1), site, route, who=None)
    h = record["headers"]
    assert name.lower() not in h, f"{name} reached the upstream: {h.get(name.lower())!r}"
    # nginx's random X-Request-ID (32 hex digits) can hold "443" by chance.
    scanned = json.dumps({k: v for k, v in h.items() if k != "x-request-id"})
    for value in (FORWARDING[name], "10.9.8.7", "10.6.5.4", "evil.example"):
        assert value not in scanned, f"{value!r} reached the upstream: {h}"
    assert h.get("x-forwarded-for") == "127.0.0.1", h.get("x-forwarded-for")
    assert h.get("x-forwarded-proto") == "http", h.get("x-forwarded-proto")
    assert record["method"] == "GET" and record["path"] == path, (record["method"], record["path"])


@pytest.mark.parametrize("site", [OAI, OLL])
def test_forwarding_headers_are_removed_on_the_bridge_too(layout, mock_records, site):
    path, route = CHAT[site]
    marker = marker_for("fwd-bridge", layout)
    headers = {**FORWARDING, "X-Forwarded-For": "10.9.8.7"}
    r = send(layout, site, "POST", path, marker, headers, body=chat_body(300))
    assert r.status == 200, (r.status, r.body[:200])
    h = assert_allowed_once(mock_records(marker, count=1), site, route)["headers"]
    leaked = [n for n in FORWARDING if n.lower() in h]
    assert not leaked, f"reached the upstream: {leaked}"
    assert h.get("x-forwarded-for") == "127.0.0.1", h.get("x-forwarded-for")


# ---- 10: Content-Length with leading zeros -------------------------------------------


def padded_length(n: int) -> str:
    return str(n).rjust(25, "0")


@pytest.mark.parametrize("site", [OAI, OLL])
def test_a_content_length_with_leading_zeros_is_judged_normally_and_allowed(layout, mock_records, site):
    path, route = CHAT[site]
    body = b'{"model":"llama3:8b"}'
    marker = marker_for("cl-zeros", layout)
    r = send(layout, site, "POST", path, marker, {"Content-Length": padded_length(len(body))}, body=body)
    assert r.status == 200, f"{r.status} {r.body[:300]!r}"
    record = assert_allowed_once(mock_records(marker, count=1), site, route)
    assert record["body"] == body.decode()


def test_the_smallest_allowed_body_with_a_25_digit_content_length_is_allowed(layout, mock_records):
    """{"model":"llama3"} (18 bytes, the shortest body the llama3* grant
    admits) sent as Content-Length 0000000000000000000000018."""
    body = b'{"model":"llama3"}'
    marker = marker_for("cl-18", layout)
    r = send(layout, OAI, "POST", "/v1/chat/completions", marker,
             {"Content-Length": "0000000000000000000000018"}, body=body)
    assert r.status == 200, f"{r.status} {r.body[:300]!r}"
    record = assert_allowed_once(mock_records(marker, count=1), OAI, "openai-chat")
    assert record["body"] == body.decode()


@pytest.mark.parametrize("site", [OAI, OLL])
def test_a_content_length_with_leading_zeros_still_checks_the_model(layout, mock_records, site):
    path, _ = CHAT[site]
    body = b'{"model":"mistral:7b"}'
    marker = marker_for("cl-zeros-bad", layout)
    r = send(layout, site, "POST", path, marker, {"Content-Length": padded_length(len(body))}, body=body)
    assert r.status == 403, f"{r.status} {r.body[:300]!r}"
    assert reason_of(r.body, path) == "model_not_allowed", r.body[:300]
    assert mock_records(marker) == []


# ---- 9: keys in header lines nginx refuses never reach a log --------------------------

REFUSED_SOURCE = "127.0.0.79"  # its own failed-credential bucket


def refused_header_lines(key: str) -> dict[str, list[bytes]]:
    k = key.encode()
    return {
        "nul-in-value": [b"Authorization: Bearer " + k + b"\x00x"],
        "over-long-line": [b"Authorization: Bearer " + k + b"a" * 20000],
        "over-long-line-key-last": [b"X-Pad: " + b"a" * 20000, b"Authorization: Bearer " + k],
        "cr-in-value": [b"Authorization: Bearer " + k + b"\rX-Injected: 1"],
        "nul-in-name": [b"Authoriz\x00ation: Bearer " + k],
        "control-byte-in-value": [b"Authorization: Bearer " + k + b"\x01"],
        "space-before-colon": [b"Authorization : Bearer " + k],
        "no-colon": [b"Authorization Bearer " + k],
    }


LOG_CASES = list(refused_header_lines("k"))


@pytest.mark.parametrize("case", LOG_CASES)
def test_a_key_in_a_header_line_nginx_refuses_never_reaches_a_log_or_the_upstream(env, layout, mock_records, case):
    key = KEYS["no_chat"]
    lines = refused_header_lines(key)[case]
    marker = marker_for(f"log-{case}", layout)
    host, port = layout.openai
    try:
        r = raw_request(host, port, "GET", "/v1/models", {MARKER_HEADER: marker}, extra_lines=lines,
                        host_header=f"{OPENAI_HOST}:{port}", source=REFUSED_SOURCE)
    except OSError:
        r = raw_request(host, port, "GET", "/v1/models", {MARKER_HEADER: marker}, extra_lines=lines,
                        host_header=f"{OPENAI_HOST}:{port}")
    records = mock_records(marker, count=0)
    # nginx refuses the line (400, 494), or drops it, or passes it on and
    # gatekeeper judges it; never a 5xx (gatekeeper unable to read what nginx
    # accepted, "auth request unexpected status" in nginx's log).
    assert r.status < 500, f"{case}: {r.status} {r.body[:200]!r}"
    # Whatever nginx made of the line, the key itself never went upstream.
    assert_no_gatekeeper_key(records)
    if r.status == 200:
        # nginx dropped the bad line (ignore_invalid_headers) and the valid key passed on
        assert all(rec["headers"].get("x-auth-client-id") == IDENTITY["no_chat"][0] for rec in records)
    time.sleep(0.2)
    for what, path in (("nginx's error log", env.nginx_error_log),
                       ("the shared nginx's error log", env.shared_nginx_error_log),
                       ("gatekeeper's log", env.gk_log)):
        if not path or not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        assert key.encode() not in data, f"{case}: {what} holds the key ({layout.name} layout)"
