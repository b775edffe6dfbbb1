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


def test_every_route_but_the_host_case_is_on_any_domain():
    scoped = {r["id"]: r["domain"] for r in policy()["route"] if r["domain"] != "*"}
    assert scoped == {"host-public": "public.example.test"}
