"""Shared by the attack suites (e2e/test_attack_models.py,
e2e/test_attack_credentials.py): their credentials, the policy's model lists
as Python sees them, the glob rule (DESIGN §11), the reference decoder
(e2e/godecode, a Go program decoding bodies the way Ollama does) and the
judge that says whether a request the upstream received names a model its
client may not use.

TEST CREDENTIALS ONLY: the digests of these keys are in e2e/policy.toml
(the section below the "attack suite" marker); the HMAC secret is
e2e/attack_hmac_secret.txt.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import re
import subprocess
import tomllib
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

HERE = pathlib.Path(__file__).parent
POLICY = HERE / "policy.toml"

KEYS = {
    "attack_models": "e2e-attack-models-key-4c81e07d2a",
    "attack_star": "e2e-attack-star-key-9b13f6a0c5",
    "attack_creds": "e2e-attack-creds-key-1d7e5b90f3",
    "attack_revoked": "e2e-attack-revoked-key-62a0c4e8b1",
    "attack_expired": "e2e-attack-expired-key-8f5d2b7a06",
}
HMAC_CLIENT = "attack-creds"
HMAC_SECRET = (HERE / "attack_hmac_secret.txt").read_bytes().rstrip(b"\r\n")

OPENAI_HOST = "openai.example.com"
OLLAMA_HOST = "ollama.example.com"


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


# ---- the policy's model lists ------------------------------------------------


def grant_models() -> dict[tuple[str, str], list[str] | None]:
    """(client id, route id) → the grant's model list (None: no list)."""
    doc = tomllib.loads(POLICY.read_text())
    out: dict[tuple[str, str], list[str] | None] = {}
    for g in doc.get("grant", []):
        out[(g["client"], g["route"])] = g.get("models")
    return out


def glob_match(glob: str, name: str) -> bool:
    """DESIGN §11 (0.2): exactly `*` matches every model; otherwise `*` is any
    run of characters but `/`, `?` one character but `/`; case-sensitive."""
    if glob == "*":
        return True
    rx = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(rx, name, flags=re.DOTALL) is not None


def allowed(models: list[str], name: str) -> bool:
    return any(glob_match(g, name) for g in models)


# ---- the reference decoder ---------------------------------------------------


def godecode_path() -> str | None:
    p = os.environ.get("E2E_GODECODE", "")
    return p if p and os.access(p, os.X_OK) else None


def require_godecode() -> str:
    p = godecode_path()
    if not p:
        pytest.skip(
            "E2E_GODECODE is not set (or not executable): scripts/e2e.sh builds e2e/godecode "
            "with Debian's golang-go and exports it; without it Ollama's reading of a body "
            "cannot be checked"
        )
    return p


def go_decode_many(items: list[tuple[str, bytes]], binary: str | None = None) -> list[dict]:
    """Each (path, body) through e2e/godecode: what Ollama's handler for that
    path would decode (see e2e/godecode/main.go for the output)."""
    binary = binary or require_godecode()
    if not items:
        return []
    lines = "".join(
        json.dumps({"path": p, "body_b64": base64.b64encode(b).decode()}) + "\n" for p, b in items
    )
    out = subprocess.run([binary], input=lines.encode(), capture_output=True, timeout=60, check=True)
    results = [json.loads(l) for l in out.stdout.decode().splitlines() if l.strip()]
    assert len(results) == len(items), out.stderr.decode()
    return results


# ---- readings of a body ------------------------------------------------------

# The model-naming fields of each endpoint (the decoder reports the same).
NAMING = {
    "/api/copy": ("source", "destination"),
    "/api/create": ("model", "name", "from"),
    "/api/pull": ("model", "name"),
    "/api/push": ("model", "name"),
    "/api/delete": ("model", "name"),
    "/api/show": ("model", "name"),
}
WEIGHTS = ("files", "adapters", "draft_files")


def naming_fields(path: str) -> tuple[str, ...]:
    return NAMING.get(path, ("model",))


def python_readings(path: str, body: bytes) -> dict[str, set]:
    """What an exact-key reader (the Python servers: vLLM, LiteLLM) reads:
    the first and the last value of each naming key, strings only."""
    out: dict[str, set] = {}
    try:
        pairs = json.loads(body, object_pairs_hook=lambda p: p)
    except (ValueError, UnicodeDecodeError):
        return out
    if not isinstance(pairs, list):
        return out
    for field in naming_fields(path) + WEIGHTS:
        values = [v for k, v in pairs if k == field and not (field in WEIGHTS and v is None)]
        if values:
            out.setdefault(field, set()).update(
                v if isinstance(v, str) else json.dumps(v) for v in (values[0], values[-1])
            )
    return out


def judge(record: dict, decoded: dict | None, grants) -> list[str]:
    """Every way the upstream could read a model out of this recorded request
    that the client's grant on the recorded route does not allow. Empty when
    the request is innocent (or its route has no model list)."""
    h = record["headers"]
    client, route = h.get("x-auth-client-id"), h.get("x-auth-route-id")
    models = grants.get((client, route))
    if not models:
        return []
    bad: list[str] = []
    where = f"{record['method']} {record['path']} (client {client}, route {route}, models {models})"
    parts = urlsplit(record["path"])
    path = unquote(parts.path)
    body = record["body"].encode("utf-8")
    star = models == ["*"]

    def check(source: str, value) -> None:
        if isinstance(value, str) and value != "" and not allowed(models, value):
            bad.append(f"{where}: {source} = {value!r} is not allowed")

    if decoded is not None and decoded.get("ok"):
        for reading in ("fields", "fields_plain"):
            for field, value in (decoded.get(reading) or {}).items():
                check(f"Ollama ({reading}) reads {field}", value)
        for w in WEIGHTS:
            if decoded.get(w) and not star:
                bad.append(f"{where}: Ollama reads `{w}` (weights from blobs) under a list other than [\"*\"]")
    for field, values in python_readings(path, body).items():
        for v in values:
            if field in WEIGHTS:
                if not star:
                    bad.append(f"{where}: an exact-key reader sees `{field}` under a list other than [\"*\"]")
            else:
                check(f"an exact-key reader reads {field}", v)
    encoding = h.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        try:
            json.loads(body)
        except ValueError:
            # Ollama decompresses zstd request bodies on its /v1 routes (and
            # reads the model from what comes out); this judge cannot.
            bad.append(f"{where}: a body in Content-Encoding {encoding!r} reached the upstream")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() == "model":
            check(f"query parameter {name}", value)
    m = re.fullmatch(r"/v1/models/(.+)", path)
    if m and record["method"] in ("GET", "HEAD"):
        check("the path's model", m.group(1))
    return bad
