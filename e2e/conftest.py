"""Shared fixtures of the end-to-end suite: real nginx (the bundled sites and
njs bridge) in front of real gatekeeper and the mock backend
(e2e/mock_backend.py), all started by scripts/e2e.sh, which passes where
everything listens through the environment (the contract):

    E2E_OPENAI_BASE      nginx, OpenAI-compatible site, e.g. http://127.0.0.1:18080/v1
    E2E_OLLAMA_BASE      nginx, Ollama site, e.g. http://127.0.0.1:18081
    E2E_SHARED_BASE      the second nginx: both sites on one listener (the OpenAI
                         site is the default server), e.g. http://127.0.0.1:18082
    E2E_MOCK             the mock backend directly (/_mock/requests), the OpenAI
                         site's upstream
    E2E_MOCK_OLLAMA      the same mock process's port for the Ollama site's
                         upstream (records tagged "backend": "ollama")
    E2E_REDIS            1: gatekeeper uses Redis; 0: in-process limits and nonces
    E2E_GK_ADMIN         gatekeeper's admin listener (/metrics, /readyz)
    E2E_GK_AUTHZ         gatekeeper's /authz listener, host:port
    E2E_NGINX_ERROR_LOG  nginx's error log (E2E_SHARED_NGINX_ERROR_LOG: the second's)
    E2E_GK_LOG           gatekeeper's log
    E2E_OPERATOR_KEY     the key nginx sends upstream on the OpenAI site
    E2E_REDIS_PREFIX     gatekeeper's Redis key prefix for this run

Without E2E_OPENAI_BASE (run outside the harness) every test that needs the
stack is skipped; tests marked `offline` still run.

Each site serves only its own name (DESIGN §14): every request sends
`Host: openai.example.com` or `Host: ollama.example.com` (OPENAI_HOST,
OLLAMA_HOST); the clients and raw_request below do so by the port they talk
to. A host the site does not serve is nginx's 421 `misdirected_request`.

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
    "bound_ollama": "e2e-bound-ollama-key-4c1e8a7d90",
    "bound_openai": "e2e-bound-openai-key-8e3b6f1a27",
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
    "bound_ollama": ("bound-ollama", "Bound Ollama", "bo-k1"),
    "bound_openai": ("bound-openai", "Bound OpenAI", "bn-k1"),
}

IDENTITY_HEADERS = ("x-auth-client-id", "x-auth-client-name", "x-auth-key-id", "x-auth-route-id")
MARKER_HEADER = "X-E2E-Marker"

# The names the bundled sites serve (nginx/sites/*.conf: server_name and the
# site's $gk_<site>_domain map).
OPENAI_HOST = "openai.example.com"
OLLAMA_HOST = "ollama.example.com"


def _port(url: str) -> int | None:
    return urlsplit(url).port if url else None


def site_host_for_port(port: int | None) -> str:
    """The Host a request to this nginx port should name: the Ollama site's
    listener gets OLLAMA_HOST, anything else (the OpenAI site's listener,
    the shared one, whose default server is the OpenAI site) OPENAI_HOST."""
    if port is not None and port == _port(os.environ.get("E2E_OLLAMA_BASE", "")):
        return OLLAMA_HOST
    return OPENAI_HOST


def site_host_for_url(url) -> str:
    """`host:port` as the Host header for a request to `url` on nginx."""
    parts = urlsplit(str(url))
    port = parts.port or 80
    return f"{site_host_for_port(port)}:{port}"


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
    shared_base: str = ""
    mock_ollama: str = ""
    redis: bool = True
    shared_nginx_error_log: str = ""

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
        shared_base=get("E2E_SHARED_BASE", "").rstrip("/"),
        mock_ollama=get("E2E_MOCK_OLLAMA", "").rstrip("/"),
        redis=get("E2E_REDIS", "1") != "0",
        shared_nginx_error_log=get("E2E_SHARED_NGINX_ERROR_LOG", ""),
    )


@dataclass(frozen=True)
class Layout:
    """One nginx layout: where a client reaches each site. `separate`: each
    site on its own listener; `shared`: both sites on one listener, the
    OpenAI site the default server (catching names nobody serves)."""

    name: str
    openai: tuple[str, int]
    ollama: tuple[str, int]

    def addr(self, site: str) -> tuple[str, int]:
        return self.openai if site == "openai" else self.ollama


LAYOUT_NAMES = ("separate", "shared")


def make_layouts(env: Env) -> list[Layout]:
    shared = hostport(env.shared_base) if env.shared_base else None
    out = [Layout("separate", env.openai_hostport, env.ollama_hostport)]
    if shared:
        out.append(Layout("shared", shared, shared))
    return out


@pytest.fixture(scope="session")
def layouts(env) -> list[Layout]:
    """Both nginx layouts (the shared one only when the harness started it)."""
    return make_layouts(env)


@pytest.fixture(scope="session", params=LAYOUT_NAMES)
def layout(request, env) -> Layout:
    """Each nginx layout in turn (parametrizes the test)."""
    found = [l for l in make_layouts(env) if l.name == request.param]
    if not found:
        pytest.skip(f"no {request.param} layout (E2E_SHARED_BASE is not set)")
    return found[0]


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
        """Records carrying this marker, from either backend (the mock
        filters them: large bodies elsewhere in the run are not fetched)."""
        r = httpx.get(f"{self.base}/_mock/requests", params={"marker": marker}, timeout=10)
        r.raise_for_status()
        return [x for x in r.json() if x["headers"].get(MARKER_HEADER.lower()) == marker]

    def clear(self) -> None:
        httpx.delete(f"{self.base}/_mock/requests", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def mock(env) -> Mock:
    return Mock(env.mock)


@pytest.fixture
def marker(request) -> str:
    """A value unique to this test, sent as X-E2E-Marker on its requests."""
    return f"{request.node.name[:60]}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mock_records(mock):
    """`mock_records(marker, count=0, settle=0.3)`: every record of either
    backend tagged with `marker` (each has "backend": "openai"|"ollama"),
    once `count` arrived and `settle` seconds brought nothing new."""

    def get(marker: str, count: int = 0, settle: float = 0.3, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        last = None
        while True:
            records = mock.tagged(marker)
            if len(records) >= count and (last is not None and len(records) == len(last)):
                return records
            if time.monotonic() > deadline:
                return records
            last = records
            time.sleep(settle)

    return get


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


SITE_HOST = object()  # raw_request's default Host: the site's name and port


def raw_request(
    host: str,
    port: int,
    method: str,
    target: bytes | str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,
    host_header: object = SITE_HOST,
    http_version: str = "1.1",
    extra_lines: list[bytes] | None = None,
    source: str | None = None,
) -> RawResponse:
    """Sends one request with the target byte for byte (no normalisation, no
    re-encoding) on a fresh connection, and reads the whole answer.

    Host: by default the name of the site on that port (site_host_for_port)
    with the port; `host_header` a str (or bytes) sends that instead, a
    list/tuple sends several Host lines, None sends none. A "Host" key in
    `headers` also overrides it. `http_version` "1.0" or "1.1";
    `extra_lines` are raw header lines sent as they are; `source` the local
    address to connect from."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [b"%s %s HTTP/%s" % (method.encode(), target, http_version.encode())]
    given = dict(headers or {})
    host_values: list = []
    if any(k.lower() == "host" for k in given):
        host_values = [v for k, v in given.items() if k.lower() == "host"]
        given = {k: v for k, v in given.items() if k.lower() != "host"}
    elif host_header is SITE_HOST:
        host_values = [f"{site_host_for_port(port)}:{port}"]
    elif isinstance(host_header, (list, tuple)):
        host_values = list(host_header)
    elif host_header is not None:
        host_values = [host_header]
    all_headers = {"Connection": "close", **given}
    if body or method in ("POST", "PUT", "PATCH"):
        if not any(k.lower() in ("content-length", "transfer-encoding") for k in all_headers):
            all_headers["Content-Length"] = str(len(body))
    for v in host_values:
        lines.append(b"Host: " + (v if isinstance(v, bytes) else str(v).encode("latin-1")))
    for k, v in all_headers.items():
        lines.append(k.encode("latin-1") + b": " + (v if isinstance(v, bytes) else str(v).encode("latin-1")))
    lines += list(extra_lines or [])
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    chunks = []
    src = (source, 0) if source else None
    with socket.create_connection((host, port), timeout=timeout, source_address=src) as s:
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
        headers = {
            MARKER_HEADER: marker,
            "Host": site_host_for_url(kwargs.get("base_url") or env.openai_base),
            **kwargs.pop("default_headers", {}),
        }
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
        h = {MARKER_HEADER: marker, "Host": site_host_for_url(env.ollama_base), **headers}
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        c = ollama.Client(host=env.ollama_base, headers=h, timeout=20.0)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _name_the_site(request: httpx.Request) -> None:
    """httpx request hook: Host = the name of the nginx site the URL's port
    belongs to (unless the request names one itself)."""
    if "x-e2e-own-host" in request.headers:
        del request.headers["x-e2e-own-host"]
        return
    request.headers["Host"] = site_host_for_url(request.url)


def site_client(**kwargs) -> httpx.Client:
    """An httpx client that names each nginx site's host (see _name_the_site;
    a request header `X-E2E-Own-Host: 1` keeps the request's own Host)."""
    hooks = kwargs.pop("event_hooks", {})
    hooks = {**hooks, "request": [_name_the_site, *hooks.get("request", [])]}
    return httpx.Client(event_hooks=hooks, **kwargs)


@pytest.fixture
def http(marker):
    """An httpx client tagged with this test's marker, naming the site's host."""
    with site_client(headers={MARKER_HEADER: marker}, timeout=20.0) as c:
        yield c
