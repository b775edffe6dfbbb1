"""The suite's policy file agrees with the keys the tests present (runs
without the harness)."""

import hashlib
import pathlib
import tomllib

import pytest

from conftest import IDENTITY, KEYS, UNKNOWN_KEYS

POLICY = pathlib.Path(__file__).with_name("policy.toml")

pytestmark = pytest.mark.offline


def policy() -> dict:
    return tomllib.loads(POLICY.read_text())


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def test_every_known_key_has_its_digest_in_the_policy():
    digests = {k["digest"] for c in policy()["client"] for k in c.get("key", [])}
    for name, key in KEYS.items():
        assert digest(key) in digests, f"key {name!r}: its digest is not in {POLICY.name}"


def test_unknown_keys_are_unknown_to_the_policy():
    digests = {k["digest"] for c in policy()["client"] for k in c.get("key", [])}
    for name, key in UNKNOWN_KEYS.items():
        assert digest(key) not in digests, name


def test_identities_match_the_policy():
    clients = {c["id"]: c for c in policy()["client"]}
    for who, (client_id, name, key_id) in IDENTITY.items():
        client = clients[client_id]
        assert client["name"] == name
        keys = {k["id"]: k for k in client["key"]}
        assert keys[key_id]["digest"] == digest(KEYS[who])


# Routes on one domain, by id: the host case of test_path_confusion.py (a
# host no site serves) and the site-binding routes of test_attack_site.py.
HOST_SCOPED = {
    "host-public": "public.example.test",
    "bound-ollama-v1": "ollama.example.com",
    "bound-openai-v1": "openai.example.com",
    "bound-ollama-api": "ollama.example.com",
    "bound-openai-api": "openai.example.com",
}
MARKER = "# ── attack suite: models and credentials (owned by e2e/test_attack_models.py) ──"


def routes_above_the_marker() -> list[dict]:
    """The routes this file governs: those above the attack suite's marker
    line (below it, e2e/test_attack_models.py keeps its own)."""
    text = POLICY.read_text()
    head = text.split(MARKER, 1)[0]
    return tomllib.loads(head).get("route", [])


def test_the_attack_suite_marker_is_there_once():
    assert POLICY.read_text().count(MARKER) == 1


def test_every_route_but_the_host_cases_is_on_any_domain():
    scoped = {r["id"]: r["domain"] for r in routes_above_the_marker() if r["domain"] != "*"}
    assert scoped == HOST_SCOPED
