"""Shared fixtures of the end-to-end suite: real nginx (the bundled sites and
njs bridge) in front of real gatekeeper and the mock backend
(e2e/mock_backend.py), all started by scripts/e2e.sh, which passes where
everything listens through the environment (the contract):

    E2E_OPENAI_BASE      nginx, OpenAI-compatible site, e.g. http://127.0.0.1:18080/v1
    E2E_OLLAMA_BASE      nginx, Ollama site, e.g. http://127.0.0.1:18081
    E2E_MOCK             the mock backend directly (/_mock/requests)
    E2E_GK_ADMIN         gatekeeper's admin listener (/metrics, /readyz)
    E2E_GK_AUTHZ         gatekeeper's /authz listener, host:port
    E2E_NGINX_ERROR_LOG  nginx's error log
    E2E_GK_LOG           gatekeeper's log
    E2E_OPERATOR_KEY     the key nginx sends upstream on the OpenAI site
    E2E_REDIS_PREFIX     gatekeeper's Redis key prefix for this run

Without E2E_OPENAI_BASE (run outside the harness) every test that needs the
stack is skipped; tests marked `offline` still run.

Each test tags its requests with a unique `X-E2E-Marker` header and reads
back only the mock's records carrying it, so tests never see each other's
traffic and nothing has to be cleared between them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

# Every credential the policy (e2e/policy.toml) knows, by role. The digests
# in the policy are the SHA-256 of these strings (test_policy_file.py checks).
KEYS = {
    "chat": "e2e-chat-app-key-7d1c0a9b4e",
    "no_chat": "e2e-no-chat-key-3b8f21c6d0",
    "rate_limited": "e2e-ratelimit-key-5a9e7c2f14",
    "ops": "e2e-ops-key-91f0b3d7e2",
    "suspended": "e2e-suspended-key-0c4d8e2a61",
    "revoked": "e2e-revoked-key-6e2b9d0f37",
    "keepalive": "e2e-keepalive-key-2f7a4c9e81",
}
# Keys the policy does not know (wrong-key tests). Kept few: every presented
# wrong credential counts towards gatekeeper's failed-credential throttle
# (GATEKEEPER_FAILED_AUTH_LIMIT, 20/1m per source address by default).
UNKNOWN_KEYS = {
    "wrong": "e2e-wrong-key-000000000000",
}
# What a bring-your-own-token client sends in X-Provider-Token.
PROVIDER_TOKEN = "sk-provider-byo-e2e-4f1d2c3b"

# The identity each key carries upstream: (client id, client name, key id).
IDENTITY = {
    "chat": ("chat-app", "Chat App", "chat-k1"),
    "no_chat": ("no-chat", "No Chat", "nochat-k1"),
    "rate_limited": ("rl-app", "Rate Limited", "rl-k1"),
    "ops": ("ops", "Operations", "ops-k1"),
    "keepalive": ("keepalive-app", "Keepalive App", "ka-k1"),
}

IDENTITY_HEADERS = ("x-auth-client-id", "x-auth-client-name", "x-auth-key-id", "x-auth-route-id")
MARKER_HEADER = "X-E2E-Marker"


def pytest_configure(config):
    config.addinivalue_line("markers", "offline: runs without the e2e harness")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("E2E_OPENAI_BASE"):
        return
    skip = pytest.mark.skip(
        reason="E2E_OPENAI_BASE is not set: the end-to-end suite runs under scripts/e2e.sh "
        "(nginx + njs, gatekeeper, Redis and e2e/mock_backend.py)"
    )
    for item in items:
        if "offline" not in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class Env:
    openai_base: str
    ollama_base: str
    mock: str
    gk_admin: str
    gk_authz: str
    nginx_error_log: str
    gk_log: str
    operator_key: str
    redis_prefix: str

    @property
    def openai_origin(self) -> str:
        """`http://host:port` of the OpenAI site (the base without /v1)."""
        parts = urlsplit(self.openai_base)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def openai_hostport(self) -> tuple[str, int]:
        return hostport(self.openai_base)

    @property
    def ollama_hostport(self) -> tuple[str, int]:
        return hostport(self.ollama_base)


def hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


@pytest.fixture(scope="session")
def env() -> Env:
    get = os.environ.get
    return Env(
        openai_base=get("E2E_OPENAI_BASE", "").rstrip("/"),
        ollama_base=get("E2E_OLLAMA_BASE", "").rstrip("/"),
        mock=get("E2E_MOCK", "").rstrip("/"),
        gk_admin=get("E2E_GK_ADMIN", "").rstrip("/"),
        gk_authz=get("E2E_GK_AUTHZ", ""),
        nginx_error_log=get("E2E_NGINX_ERROR_LOG", ""),
        gk_log=get("E2E_GK_LOG", ""),
        operator_key=get("E2E_OPERATOR_KEY", "sk-operator-e2e"),
        redis_prefix=get("E2E_REDIS_PREFIX", ""),
    )


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch):
    """The clients read these from the environment; the suite passes its own."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OLLAMA_API_KEY", "OLLAMA_HOST"):
        monkeypatch.delenv(name, raising=False)


# ---- the mock's records ---------------------------------------------------------


class Mock:
    def __init__(self, base: str) -> None:
        self.base = base

    def requests(self, everything: bool = False) -> list[dict]:
        url = f"{self.base}/_mock/requests" + ("?all=1" if everything else "")
        r = httpx.get(url, timeout=10)
        r.raise_for_status()
        return r.json()

    def tagged(self, marker: str) -> list[dict]:
        return [r for r in self.requests() if r["headers"].get(MARKER_HEADER.lower()) == marker]

    def clear(self) -> None:
        httpx.delete(f"{self.base}/_mock/requests", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def mock(env) -> Mock:
    return Mock(env.mock)


@pytest.fixture
def marker(request) -> str:
    """A value unique to this test, sent as X-E2E-Marker on its requests."""
    return f"{request.node.name[:60]}-{uuid.uuid4().hex[:12]}"


def wait_for_records(mock: Mock, marker: str, count: int, timeout: float = 3.0) -> list[dict]:
    """The mock's records for `marker` once there are `count` of them (the
    upstream request can finish a moment after the client has its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        records = mock.tagged(marker)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def assert_no_gatekeeper_key(records: list[dict]) -> None:
    """No recorded header or body carries any key the policy knows."""
    secrets = {**KEYS, **UNKNOWN_KEYS}
    for r in records:
        blob = json.dumps(r["headers"]) + "\n" + r["body"] + "\n" + r["path"]
        for name, key in secrets.items():
            assert key not in blob, f"the {name!r} gatekeeper key reached the upstream: {r['method']} {r['path']}"


def assert_identity(record: dict, who: str, route: str) -> None:
    client_id, client_name, key_id = IDENTITY[who]
    h = record["headers"]
    assert h.get("x-auth-client-id") == client_id, h
    assert h.get("x-auth-client-name") == client_name, h
    assert h.get("x-auth-key-id") == key_id, h
    assert h.get("x-auth-route-id") == route, h


# ---- raw HTTP, for URIs that no client library would leave alone ---------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def raw_request(
    host: str,
    port: int,
    method: str,
    target: bytes | str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,
) -> RawResponse:
    """Sends one request with the target byte for byte (no normalisation, no
    re-encoding) on a fresh connection, and reads the whole answer."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target)]
    all_headers = {"Host": f"{host}:{port}", "Connection": "close", **(headers or {})}
    if body or method in ("POST", "PUT", "PATCH"):
        all_headers.setdefault("Content-Length", str(len(body)))
    for k, v in all_headers.items():
        lines.append(f"{k}: {v}".encode("latin-1"))
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    chunks = []
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) before the whole body was sent: read the answer
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            if not chunks:
                raise
    return parse_response(b"".join(chunks))


def parse_response(raw: bytes) -> RawResponse:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
    assert m, f"not an HTTP response: {raw[:200]!r}"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body += data[:size]
            data = data[size + 2 :]
        rest = body
    elif "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    return RawResponse(int(m.group(1)), headers, rest)


# ---- clients -------------------------------------------------------------------


@pytest.fixture
def openai_client(env, marker):
    """`openai_client(key, **kwargs)`: the official client on nginx's OpenAI
    site, tagged with this test's marker; no retries unless asked."""
    import openai

    made = []

    def make(key: str, **kwargs):
        headers = {MARKER_HEADER: marker, **kwargs.pop("default_headers", {})}
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 20.0)
        c = openai.OpenAI(base_url=env.openai_base, api_key=key, default_headers=headers, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def ollama_client(env, marker):
    """`ollama_client(key)`: the official client on nginx's Ollama site."""
    import ollama

    made = []

    def make(key: str | None, **headers):
        h = {MARKER_HEADER: marker, **headers}
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        c = ollama.Client(host=env.ollama_base, headers=h, timeout=20.0)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def http(marker):
    """An httpx client tagged with this test's marker."""
    with httpx.Client(headers={MARKER_HEADER: marker}, timeout=20.0) as c:
        yield c
