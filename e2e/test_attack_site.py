"""Attack class 1 (issue 17, DESIGN §14): the domain gatekeeper judges is the
one the nginx site that proxies the request serves, never only the client's
Host.

Every case runs on both nginx layouts (conftest `layout`): `separate` (each
site on its own listener) and `shared` (both on one listener, the OpenAI site
the default server catching names nobody serves). Each request is judged by
what the recording upstream received (the mock's records carrying the
case's marker, from either backend):

- the universal rule: either nothing reached any backend, or exactly one
  request reached the backend of the site that serves the host named
  (`$host`: the absolute-form request line's host, else Host, lower-cased,
  port and one trailing dot dropped), with `X-Auth-Route-ID` a route on that
  site's own domain or on "*";
- the case's own expectation: nginx's JSON 421 `misdirected_request` when
  the site that took the request does not serve the host named; nginx's 400
  for a request it cannot parse; otherwise gatekeeper's decision on the
  site's domain (allow on a given route, or a deny with its reason).

The policy has the same paths on the two sites' names with different rules
(e2e/policy.toml, "bound-*"): `/v1/bound/*` is public for GET on the Ollama
host and needs a key on the OpenAI host; the key "bound_ollama" is granted
only on the Ollama host's routes (models `llama3*`), "bound_openai" only on
the OpenAI host's. Positive controls (a site's own name, its own keys) must
pass, so the file cannot pass by refusing everything.

Requests leave from 127.0.0.78 (their own failed-credential bucket).
"""

from __future__ import annotations

import json
import pathlib
import re
import tomllib
import uuid
from dataclasses import dataclass

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

SOURCE_IP = "127.0.0.78"
OAI, OLL = "openai", "ollama"
SITE_HOST = {OAI: OPENAI_HOST, OLL: OLLAMA_HOST}
SITE = object()  # the Host header names the listener's own site (with the port)

ROUTE_DOMAIN = {
    r["id"]: r["domain"]
    for r in tomllib.loads(pathlib.Path(__file__).with_name("policy.toml").read_text())["route"]
}


# ---- expectations ---------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    kind: str  # "allow" | "deny"
    status: int
    route: str | None = None
    reason: str | None = None


def allow(route: str) -> Want:
    return Want("allow", 200, route=route)


def deny(status: int, reason: str) -> Want:
    return Want("deny", status, reason=reason)


MISSING = deny(401, "missing_credentials")
NO_PERMISSION = deny(403, "no_permission")
MODEL_NOT_ALLOWED = deny(403, "model_not_allowed")


@dataclass(frozen=True)
class Case:
    id: str  # a sentence
    listener: str  # whose listener the request goes to (one port in the shared layout)
    method: str
    target: str
    oai: Want | None = None  # gatekeeper's decision if the OpenAI site serves it
    oll: Want | None = None  # … if the Ollama site serves it
    host: object = SITE  # SITE, a str, a tuple of str (several Host lines), or None
    version: str = "1.1"
    key: str | None = None
    model: str | None = None  # a JSON body {"model": …} (POST)
    nginx_status: int | None = None  # nginx refuses it itself (unparseable)


def named_host(case: Case, layout) -> str | None:
    """`$host` as nginx computes it; None when the request names no host."""
    m = re.match(r"(?i)https?://([^/]+)", case.target)
    if m:
        raw = m.group(1)
    elif case.host is SITE:
        raw = SITE_HOST[case.listener]
    elif case.host is None:
        return None
    else:
        raw = case.host if isinstance(case.host, str) else case.host[0]
    raw = raw.lower()
    if not raw.startswith("["):
        raw = raw.split(":", 1)[0]
    return raw.removesuffix(".")


def serving_site(case: Case, layout) -> str:
    """The server nginx picks: the listener's only one when sites are on
    separate listeners; on the shared listener, the server named, else the
    default (the OpenAI site)."""
    if layout.name == "separate":
        return case.listener
    return OLL if named_host(case, layout) == OLLAMA_HOST else OAI


def expected(case: Case, layout) -> tuple[str, Want | None, str]:
    """(kind, gatekeeper's decision, serving site); kind is "nginx",
    "misdirected" or "judged"."""
    site = serving_site(case, layout)
    if case.nginx_status:
        return "nginx", None, site
    host = named_host(case, layout) or SITE_HOST[site]  # HTTP/1.0 without Host: the server's name
    if host != SITE_HOST[site]:
        return "misdirected", None, site
    want = case.oai if site == OAI else case.oll
    assert want is not None, f"{case.id}: no expectation for the {site} site serving it"
    return "judged", want, site


# ---- the cases ------------------------------------------------------------------

# (route, method) pairs the policy makes public.
PUBLIC = {("openai-public", "GET"), ("ollama-version", "GET"), ("bound-ollama-v1", "GET"),
          ("bound-ollama-api", "GET")}

BOUND = "/v1/bound/x"
ABOUND = "/api/bound/x"

CASES: list[Case] = [
    # ── positive controls: each site on its own name ────────────────────────
    Case("the OpenAI site serves its own name: a public GET reaches the OpenAI backend",
         OAI, "GET", "/v1/public/x", oai=allow("openai-public")),
    Case("the Ollama site serves its own name: GET /api/version reaches the Ollama backend",
         OLL, "GET", "/api/version", oll=allow("ollama-version")),
    Case("a key granted on the Ollama host runs llama3 on the Ollama backend through the bridge",
         OLL, "POST", BOUND, oll=allow("bound-ollama-v1"), key="bound_ollama", model="llama3:8b"),
    Case("a key granted on the Ollama host runs llama3 under /api/bound through the bridge",
         OLL, "POST", ABOUND, oll=allow("bound-ollama-api"), key="bound_ollama", model="llama3:8b"),
    Case("a key granted on the OpenAI host posts to the OpenAI host's bound route",
         OAI, "POST", BOUND, oai=allow("bound-openai-v1"), key="bound_openai", model="gpt-4o"),
    Case("a key granted on the OpenAI host reads the OpenAI host's bound route",
         OAI, "GET", BOUND, oai=allow("bound-openai-v1"), key="bound_openai"),
    Case("a key granted on the OpenAI host uses /api/bound through auth_request on the OpenAI site",
         OAI, "GET", ABOUND, oai=allow("bound-openai-api"), key="bound_openai"),
    Case("the Ollama host's bound route is public for GET on the Ollama site",
         OLL, "GET", BOUND, oll=allow("bound-ollama-v1")),
    Case("GET /v1/models with a granted key reaches the OpenAI backend",
         OAI, "GET", "/v1/models", oai=allow("openai-models"), key="chat"),
    Case("GET /api/tags with a granted key reaches the Ollama backend",
         OLL, "GET", "/api/tags", oll=allow("ollama-tags"), key="chat"),
    Case("the OpenAI host's bound route needs a key although the Ollama host's is public",
         OAI, "GET", BOUND, oai=MISSING),
    Case("the Ollama host's bound route still checks the model list",
         OLL, "POST", BOUND, oll=MODEL_NOT_ALLOWED, key="bound_ollama", model="mistral:7b"),
    # ── the other site's name on a listener ─────────────────────────────────
    Case("the Ollama host's public bound route named on the OpenAI listener never opens the OpenAI backend",
         OAI, "GET", BOUND, oll=allow("bound-ollama-v1"), host=OLLAMA_HOST),
    Case("GET /v1/models naming the Ollama host on the OpenAI listener without a key is refused",
         OAI, "GET", "/v1/models", oll=MISSING, host=OLLAMA_HOST),
    Case("GET /v1/models naming the Ollama host on the OpenAI listener with a key reaches only the Ollama site",
         OAI, "GET", "/v1/models", oll=allow("openai-models"), host=OLLAMA_HOST, key="chat"),
    Case("a key granted only on the Ollama host, naming that host on the OpenAI listener, reaches no OpenAI backend",
         OAI, "POST", BOUND, oll=allow("bound-ollama-v1"), host=OLLAMA_HOST, key="bound_ollama",
         model="llama3:8b"),
    Case("a key granted only on the Ollama host cannot run gpt-4o by naming that host on the OpenAI listener",
         OAI, "POST", "/v1/chat/completions", oll=NO_PERMISSION, host=OLLAMA_HOST, key="bound_ollama",
         model="gpt-4o"),
    Case("the Ollama host's model list holds when that host is named on the OpenAI listener",
         OAI, "POST", BOUND, oll=MODEL_NOT_ALLOWED, host=OLLAMA_HOST, key="bound_ollama", model="gpt-4o"),
    Case("GET /api/tags naming the OpenAI host on the Ollama listener reaches only the OpenAI site",
         OLL, "GET", "/api/tags", oai=allow("ollama-tags"), host=OPENAI_HOST, key="chat"),
    Case("the OpenAI host's /api/bound needs a key when named on the Ollama listener",
         OLL, "GET", ABOUND, oai=MISSING, host=OPENAI_HOST),
    Case("a key granted on the OpenAI host, naming it on the Ollama listener, never reaches the Ollama backend",
         OLL, "POST", ABOUND, oai=allow("bound-openai-api"), host=OPENAI_HOST, key="bound_openai",
         model="gpt-4o"),
    Case("a key granted only on the Ollama host is refused on the OpenAI host's bound route via the Ollama listener",
         OLL, "POST", BOUND, oai=NO_PERMISSION, host=OPENAI_HOST, key="bound_ollama", model="llama3:8b"),
    Case("the OpenAI host's bound route named on the Ollama listener is not public",
         OLL, "GET", BOUND, oai=MISSING, host=OPENAI_HOST),
    Case("the public /api/version naming the OpenAI host on the Ollama listener reaches only the OpenAI site",
         OLL, "GET", "/api/version", oai=allow("ollama-version"), host=OPENAI_HOST),
    # ── names nobody serves ─────────────────────────────────────────────────
    Case("an unknown host on the OpenAI listener is misdirected", OAI, "GET", "/v1/public/x", host="unknown.example"),
    Case("an unknown host on the Ollama listener is misdirected", OLL, "GET", "/api/version", host="unknown.example"),
    Case("localhost with a key is misdirected", OAI, "GET", "/v1/models", host="localhost", key="chat"),
    Case("an IPv4 literal host is misdirected", OAI, "GET", "/v1/public/x", host="127.0.0.1"),
    Case("an IPv4 literal host with a port is misdirected on the Ollama listener",
         OLL, "GET", "/api/version", host="127.0.0.1:11434"),
    Case("an IPv6 literal host is misdirected", OAI, "GET", "/v1/public/x", host="[::1]"),
    Case("an IPv6 literal host with a port and a key is misdirected", OLL, "GET", "/api/tags", host="[::1]:80",
         key="chat"),
    Case("the Ollama name with a suffix is misdirected on the OpenAI listener",
         OAI, "GET", BOUND, host="ollama.example.com.evil"),
    Case("the Ollama name with a suffix is misdirected on the Ollama listener",
         OLL, "GET", BOUND, host="ollama.example.com.evil"),
    Case("a subdomain of the Ollama name is misdirected", OLL, "GET", BOUND, host="evil.ollama.example.com"),
    Case("a wildcard-looking host is misdirected", OAI, "GET", "/v1/models", host="*.example.com", key="chat"),
    Case("a wildcard-looking host is misdirected on the Ollama listener", OLL, "GET", BOUND, host="*.example.com"),
    Case("the parent domain is misdirected", OLL, "GET", "/api/version", host="example.com"),
    Case("a name with an extra leading letter is misdirected", OLL, "GET", BOUND, host="xollama.example.com"),
    Case("a truncated name is misdirected", OLL, "GET", BOUND, host="ollama.example.co"),
    Case("a dash for a dot is misdirected", OAI, "GET", "/v1/public/x", host="openai-example.com"),
    Case("a key granted on the Ollama host with an unknown name posts nothing",
         OLL, "POST", BOUND, host="unknown.example", key="bound_ollama", model="llama3:8b"),
    # ── spellings of a served name ──────────────────────────────────────────
    Case("the Ollama name in upper case is its own", OLL, "GET", BOUND, oll=allow("bound-ollama-v1"),
         host="OLLAMA.EXAMPLE.COM"),
    Case("the Ollama name with a trailing dot is its own", OLL, "GET", BOUND, oll=allow("bound-ollama-v1"),
         host="ollama.example.com."),
    Case("the Ollama name with another port is its own", OLL, "GET", BOUND, oll=allow("bound-ollama-v1"),
         host="ollama.example.com:8443"),
    Case("the Ollama name mixed case, trailing dot and port is its own",
         OLL, "GET", BOUND, oll=allow("bound-ollama-v1"), host="Ollama.Example.Com.:1"),
    Case("the Ollama name upper case with a dot on the OpenAI listener opens nothing there",
         OAI, "GET", BOUND, oll=allow("bound-ollama-v1"), host="OLLAMA.EXAMPLE.COM."),
    Case("the OpenAI name with the OpenAI port on the Ollama listener is judged as the OpenAI host",
         OLL, "GET", BOUND, oai=MISSING, host="openai.example.com:18080"),
    Case("the Ollama name with two trailing dots is nginx's 400", OLL, "GET", BOUND,
         host="ollama.example.com..", nginx_status=400),
    # ── absolute-form request targets ───────────────────────────────────────
    Case("an absolute-form target naming the Ollama host beats Host on the OpenAI listener",
         OAI, "GET", "http://ollama.example.com" + BOUND, oll=allow("bound-ollama-v1"), host=OPENAI_HOST),
    Case("an absolute-form target naming the OpenAI host beats Host on the Ollama listener",
         OLL, "GET", "http://openai.example.com" + BOUND, oai=MISSING, host=OLLAMA_HOST),
    Case("an absolute-form target and Host both naming the OpenAI host on its listener",
         OAI, "GET", "http://openai.example.com" + BOUND, oai=allow("bound-openai-v1"), host=OPENAI_HOST,
         key="bound_openai"),
    Case("an absolute-form target and Host both naming the Ollama host on its listener",
         OLL, "GET", "http://ollama.example.com" + BOUND, oll=allow("bound-ollama-v1"), host=OLLAMA_HOST),
    Case("an absolute-form target and Host both naming the Ollama host on the OpenAI listener",
         OAI, "GET", "http://ollama.example.com" + BOUND, oll=allow("bound-ollama-v1"), host=OLLAMA_HOST),
    Case("an absolute-form /v1/models naming the Ollama host with a key on the OpenAI listener",
         OAI, "GET", "http://ollama.example.com/v1/models", oll=allow("openai-models"), host=OPENAI_HOST,
         key="chat"),
    Case("an absolute-form target naming an unknown host is misdirected",
         OAI, "GET", "http://unknown.example/v1/public/x", host=OPENAI_HOST),
    Case("an absolute-form POST naming the Ollama host with its key on the OpenAI listener",
         OAI, "POST", "http://ollama.example.com" + BOUND, oll=allow("bound-ollama-v1"), host=OPENAI_HOST,
         key="bound_ollama", model="llama3:8b"),
    Case("an absolute-form target with the name in upper case and a port",
         OLL, "GET", "http://OLLAMA.EXAMPLE.COM:80/api/version", oll=allow("ollama-version"), host=OLLAMA_HOST),
    Case("an absolute-form target naming the Ollama host with a suffix is misdirected",
         OLL, "GET", "http://ollama.example.com.evil" + BOUND, host=OLLAMA_HOST),
    # ── HTTP/1.0 ────────────────────────────────────────────────────────────
    Case("HTTP/1.0 without Host on the OpenAI listener is the default server's name",
         OAI, "GET", "/v1/public/x", oai=allow("openai-public"), host=None, version="1.0"),
    Case("HTTP/1.0 without Host on the Ollama listener is that listener's server's name",
         OLL, "GET", "/api/version", oai=allow("ollama-version"), oll=allow("ollama-version"), host=None,
         version="1.0"),
    Case("HTTP/1.0 without Host on the Ollama listener: the bound route of the server that took it",
         OLL, "GET", BOUND, oai=MISSING, oll=allow("bound-ollama-v1"), host=None, version="1.0"),
    Case("HTTP/1.0 naming the Ollama host on the OpenAI listener opens nothing there",
         OAI, "GET", BOUND, oll=allow("bound-ollama-v1"), host=OLLAMA_HOST, version="1.0"),
    Case("HTTP/1.0 naming an unknown host is misdirected", OLL, "GET", "/api/version", host="unknown.example",
         version="1.0"),
    Case("HTTP/1.0 absolute-form naming the Ollama host on the OpenAI listener",
         OAI, "GET", "http://ollama.example.com" + BOUND, oll=allow("bound-ollama-v1"), host=None, version="1.0"),
    # ── duplicate Host ──────────────────────────────────────────────────────
    Case("two Host lines naming both sites are nginx's 400", OAI, "GET", BOUND,
         host=(OPENAI_HOST, OLLAMA_HOST), nginx_status=400),
    Case("two Host lines naming the Ollama site twice are nginx's 400", OLL, "GET", BOUND,
         host=(OLLAMA_HOST, OLLAMA_HOST), nginx_status=400),
    # ── keys bound to one host, through the auth_request locations and the bridge
    Case("a key granted only on the Ollama host cannot list the OpenAI models",
         OAI, "GET", "/v1/models", oai=NO_PERMISSION, key="bound_ollama"),
    Case("a key granted only on the OpenAI host cannot list the Ollama tags",
         OLL, "GET", "/api/tags", oll=NO_PERMISSION, key="bound_openai"),
    Case("a key granted only on the Ollama host, naming it, cannot list models on the OpenAI listener",
         OAI, "GET", "/v1/models", oll=NO_PERMISSION, host=OLLAMA_HOST, key="bound_ollama"),
    Case("a key granted only on the OpenAI host, naming it, cannot list tags on the Ollama listener",
         OLL, "GET", "/api/tags", oai=NO_PERMISSION, host=OPENAI_HOST, key="bound_openai"),
    Case("a key granted only on the Ollama host cannot post to the OpenAI host's bound route",
         OAI, "POST", BOUND, oai=NO_PERMISSION, key="bound_ollama", model="llama3:8b"),
    Case("a key granted only on the OpenAI host cannot post to the Ollama host's bound route",
         OLL, "POST", BOUND, oll=NO_PERMISSION, key="bound_openai", model="gpt-4o"),
    Case("a key granted only on the Ollama host cannot chat on the OpenAI site",
         OAI, "POST", "/v1/chat/completions", oai=NO_PERMISSION, key="bound_ollama", model="llama3:8b"),
    Case("a key granted only on the OpenAI host cannot chat on the Ollama site",
         OLL, "POST", "/api/chat", oll=NO_PERMISSION, key="bound_openai", model="llama3:8b"),
]


# ---- sending and judging --------------------------------------------------------


def send(case: Case, layout, marker: str):
    host, port = layout.addr(case.listener)
    headers = {MARKER_HEADER: marker}
    if case.key:
        headers["Authorization"] = f"Bearer {KEYS[case.key]}"
    body = b""
    if case.model is not None:
        msg = [{"role": "user", "content": "hi"}]
        body = json.dumps({"model": case.model, "messages": msg, "prompt": "hi", "stream": False}).encode()
        headers["Content-Type"] = "application/json"
    if case.host is SITE:
        host_header = f"{SITE_HOST[case.listener]}:{port}"
    else:
        host_header = case.host
    try:
        return raw_request(host, port, case.method, case.target, headers, body, host_header=host_header,
                           http_version=case.version, source=SOURCE_IP)
    except OSError:
        return raw_request(host, port, case.method, case.target, headers, body, host_header=host_header,
                           http_version=case.version)


def reason_of(body: bytes, path: str) -> str | None:
    """The reason code of a JSON error, checking the shape: Ollama's
    (`{"error": "… (code)"}`) on /api paths, OpenAI's elsewhere."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    if path == "/api" or path.startswith("/api/"):
        assert isinstance(error, str), f"not Ollama's error shape on {path}: {doc}"
        m = re.search(r"\(([a-z_]+)\)$", error)
        return m.group(1) if m else None
    assert isinstance(error, dict), f"not the OpenAI error shape on {path}: {doc}"
    assert error.get("message") and error.get("type"), doc
    return error.get("code")


def request_path(target: str) -> str:
    m = re.match(r"(?i)https?://[^/]+(/.*)?$", target)
    path = (m.group(1) or "/") if m else target
    return path.split("?", 1)[0]


def check_universal(case: Case, layout, records: list[dict]) -> None:
    """Nothing reached a backend, or one request reached the backend of the
    site that serves the host named, on a route of that site's domain or "*"."""
    if not records:
        return
    site = serving_site(case, layout)
    host = named_host(case, layout) or SITE_HOST[site]
    assert host == SITE_HOST[site], (
        f"{case.id} [{layout.name}]: host {host!r} is not the {site} site's, yet reached "
        f"{[r['backend'] for r in records]}")
    assert len(records) == 1, f"{case.id} [{layout.name}]: {len(records)} requests reached the upstream"
    [record] = records
    assert record["backend"] == site, (
        f"{case.id} [{layout.name}]: the {site} site served {host!r}, yet the {record['backend']} backend got "
        f"{record['method']} {record['path']}")
    route = record["headers"].get("x-auth-route-id")
    assert route in ROUTE_DOMAIN, f"{case.id}: unknown route {route!r} upstream"
    assert ROUTE_DOMAIN[route] in ("*", SITE_HOST[site]), (
        f"{case.id} [{layout.name}]: the {site} backend got a request judged on route {route} "
        f"of domain {ROUTE_DOMAIN[route]}")
    assert_no_gatekeeper_key(records)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_request_reaches_only_the_backend_of_the_site_serving_the_host_it_names(case, layout, mock_records):
    marker = f"site-{layout.name}-{uuid.uuid4().hex[:12]}"
    r = send(case, layout, marker)
    kind, want, site = expected(case, layout)
    allowed = kind == "judged" and want.kind == "allow"
    records = mock_records(marker, count=1 if allowed else 0, settle=0.3 if allowed else 0.4)
    check_universal(case, layout, records)
    where = f"{case.id} [{layout.name}, {site} site]"
    got = f"{r.status} {r.body[:200]!r}"
    if kind == "nginx":
        assert r.status == case.nginx_status, f"{where}: expected nginx's {case.nginx_status}, got {got}"
        assert records == [], f"{where}: refused, yet forwarded"
        return
    if kind == "misdirected":
        assert r.status == 421, f"{where}: expected 421 misdirected_request, got {got}"
        assert reason_of(r.body, request_path(case.target)) == "misdirected_request", got
        assert "json" in r.headers.get("content-type", ""), r.headers
        assert records == [], f"{where}: misdirected, yet forwarded to {records[0]['backend']}"
        return
    if want.kind == "deny":
        assert r.status == want.status, f"{where}: expected {want.status} {want.reason}, got {got}"
        assert reason_of(r.body, request_path(case.target)) == want.reason, got
        assert records == [], f"{where}: denied, yet forwarded"
        return
    assert r.status == 200, f"{where}: expected an allow on {want.route}, got {got}"
    assert len(records) == 1, f"{where}: allowed, and the upstream saw {len(records)} requests"
    h = records[0]["headers"]
    assert records[0]["backend"] == site, f"{where}: reached the {records[0]['backend']} backend"
    assert h.get("x-auth-route-id") == want.route, f"{where}: judged on {h.get('x-auth-route-id')}"
    public = (want.route, case.method) in PUBLIC
    if public:
        assert not case.key or h.get("x-auth-client-id") in (None, "", IDENTITY[case.key][0]), h
    else:
        assert case.key, f"{where}: a protected route passed without a key"
        assert h.get("x-auth-client-id") == IDENTITY[case.key][0], h


def test_the_table_is_big_and_has_controls_that_pass_on_both_layouts():
    assert len(CASES) >= 60, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"
    for name in ("separate", "shared"):
        layout = type("L", (), {"name": name})()
        kinds = [expected(c, layout) for c in CASES]
        allows = [k for k in kinds if k[0] == "judged" and k[1].kind == "allow"]
        assert len(allows) >= 12 and {k[2] for k in allows} == {OAI, OLL}, (name, len(allows))
        assert sum(1 for k in kinds if k[0] == "misdirected") >= 15
