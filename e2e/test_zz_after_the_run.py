"""Checks over the whole run (this file's name sorts last, so pytest runs it
after the others): what the upstream received across every test, and what
nginx and gatekeeper logged."""

import json
import os
import pathlib
import re
import tomllib

import httpx
import pytest

from conftest import IDENTITY_HEADERS, KEYS, PROVIDER_TOKEN, UNKNOWN_KEYS, assert_no_gatekeeper_key

# Routes whose every method is public: what reaches the upstream through them
# carries no identity. Read from the policy, so a new public route needs no
# edit here.
PUBLIC_ROUTES = {
    r["id"]
    for r in tomllib.loads(pathlib.Path(__file__).with_name("policy.toml").read_text())["route"]
    if all(creds == ["public"] for creds in r.get("methods", {}).values())
}
assert {"openai-public", "ollama-version", "host-public"} <= PUBLIC_ROUTES, PUBLIC_ROUTES


def read(path: str, what: str) -> str:
    if not path or not os.path.exists(path):
        pytest.skip(f"{what} is not available ({path!r})")
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


@pytest.fixture
def full_run(request):
    """Checks that count on the whole suite having run skip on a partial run (-k, one file)."""
    ran = {item.module.__name__ for item in request.session.items}
    missing = {"test_openai", "test_ollama", "test_wire"} - ran
    if missing:
        pytest.skip(f"partial run (without {', '.join(sorted(missing))})")


def test_the_upstream_received_the_suites_traffic(mock, full_run):
    assert len(mock.requests(everything=True)) > 50, "the mock recorded almost nothing: the run proves nothing"


def test_the_upstream_never_received_a_gatekeeper_key(mock):
    records = mock.requests(everything=True)
    assert_no_gatekeeper_key(records)


ROUTE_DOMAIN = {
    r["id"]: r["domain"]
    for r in tomllib.loads(pathlib.Path(__file__).with_name("policy.toml").read_text())["route"]
}
ROUTE_CREDENTIALS = {
    r["id"]: r.get("methods", {})
    for r in tomllib.loads(pathlib.Path(__file__).with_name("policy.toml").read_text())["route"]
}
BACKEND_HOST = {"openai": "openai.example.com", "ollama": "ollama.example.com"}


def test_every_request_reached_the_backend_of_a_site_serving_its_route_domain(mock):
    """Across the whole run (both layouts): a request judged on a route of one
    site's name reached only that site's backend (DESIGN §14)."""
    for r in mock.requests(everything=True):
        route = r["headers"].get("x-auth-route-id")
        domain = ROUTE_DOMAIN.get(route)
        if domain in (None, "*"):
            continue
        assert BACKEND_HOST.get(r.get("backend")) == domain, (
            f"{r['method']} {r['path']} judged on {route} ({domain}) reached the {r.get('backend')} backend")


def test_every_request_that_reached_the_upstream_carried_its_identity(mock):
    for r in mock.requests(everything=True):
        h = r["headers"]
        route = h.get("x-auth-route-id")
        assert route, f"{r['method']} {r['path']} reached the upstream without X-Auth-Route-ID"
        if route in PUBLIC_ROUTES or ROUTE_CREDENTIALS.get(route, {}).get(r["method"]) == ["public"]:
            continue  # public (for this method): no identity
        want = IDENTITY_HEADERS
        if ROUTE_CREDENTIALS.get(route, {}).get(r["method"]) == ["hmac"]:
            want = [n for n in want if n != "x-auth-key-id"]  # a signature names no key
        missing = [n for n in want if not h.get(n)]
        assert not missing, f"{r['method']} {r['path']} (route {route}) lacks {missing}"


NGINX_LOGS = ["nginx_error_log", "shared_nginx_error_log"]


@pytest.mark.parametrize("what", NGINX_LOGS)
def test_nginx_never_saw_an_unexpected_auth_status(env, what):
    log = read(getattr(env, what), what)
    bad = [line for line in log.splitlines() if "auth request unexpected status" in line]
    assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize("what", NGINX_LOGS)
def test_nginx_logged_nothing_critical(env, what):
    log = read(getattr(env, what), what)
    bad = [line for line in log.splitlines() if re.search(r"\[(emerg|alert|crit)\]|js exception", line)]
    assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize("what", [*NGINX_LOGS, "gk_log"])
def test_no_log_holds_a_credential(env, what):
    log = read(getattr(env, what), what)
    for name, secret in {**KEYS, **UNKNOWN_KEYS, "provider token": PROVIDER_TOKEN}.items():
        assert secret not in log, f"{what} contains the {name!r} credential"


def test_gatekeeper_counted_the_denies_the_suite_caused(env, full_run):
    r = httpx.get(f"{env.gk_admin}/metrics", timeout=10)
    assert r.status_code == 200
    text = r.text
    for reason in ("invalid_credentials", "model_not_allowed", "no_permission", "rate_limited", "ambiguous_path"):
        assert re.search(r'gatekeeper_decisions_total\{[^}]*reason="%s"' % reason, text), reason
    ready = httpx.get(f"{env.gk_admin}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert isinstance(json.loads(ready.text), dict)
