"""Attack suite, model fields (issue 17, classes 2–4): bodies, query strings
and paths that try to make an upstream run a model the client's grant does
not list, sent through real nginx (the bundled sites and njs bridge) and
judged by what the recording upstream received.

The judge (e2e/attack_common.py) reads every recorded request the way the
upstreams would: e2e/godecode (Go's encoding/json into structs tagged like
Ollama's api/types.go and openai/openai.go: case-insensitive keys with
Unicode folding — ſ, K, and from Go 1.21 İ/ı —, last match wins, trailing
data ignored) and an exact-key reader (the Python servers; first and last
duplicate). Every model any of them reads must be on the client's list for
the recorded route (globs: `*` alone matches everything, otherwise `*`/`?`
never cross `/`), `files`/`adapters`/`draft_files` only under ["*"], and
`?model=` / `GET /v1/models/<name>` likewise.

Each case is also checked against gatekeeper's rules (DESIGN §11): "deny"
cases must be 403 `model_not_allowed` with nothing recorded, "allow" cases
(positive controls) must reach the upstream once.

All requests are sent once, up front (module fixture, both nginx layouts),
then judged per case; the last test sweeps every record of the whole run.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from attack_common import (
    KEYS,
    OLLAMA_HOST,
    OPENAI_HOST,
    allowed,
    glob_match,
    go_decode_many,
    godecode_path,
    grant_models,
    judge,
    require_godecode,
)
from conftest import MARKER_HEADER, make_layouts, raw_request

LIST = ["llama3*", "qwen2.5:7b", "meta-llama/*"]  # the attack-models grants (e2e/policy.toml)


@dataclass
class Case:
    id: str
    site: str  # "ollama" | "openai"
    method: str
    target: str  # path and query, as sent
    body: bytes
    expect: str | None  # "deny" | "refuse" | "allow" | None (judged only)
    key: str = "attack_models"
    headers: dict = field(default_factory=dict)


def j(*pairs, extra: str = "") -> bytes:
    """A JSON object from raw (key, value) pairs, duplicates and odd keys
    kept as written: keys are raw JSON string contents (escapes allowed),
    values raw JSON."""
    inner = ",".join(f'"{k}":{v}' for k, v in pairs)
    return ("{" + inner + "}" + extra).encode("utf-8")


def s(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)


CASES: list[Case] = []


def add(*args, **kwargs) -> None:
    c = Case(*args, **kwargs)
    assert c.id not in {x.id for x in CASES}, c.id
    CASES.append(c)


# ── inference endpoints: every way to smuggle a second `model` ─────────────

OK, BAD = "llama3:8b", "mistral"

# (endpoint id, site, path, extra fields as raw pairs)
MSGS = '[{"role":"user","content":"hi"}]'
INFERENCE = [
    ("chat", "ollama", "/api/chat", [("messages", MSGS), ("stream", "false")]),
    ("generate", "ollama", "/api/generate", [("prompt", '"hi"'), ("stream", "false")]),
    ("embed", "ollama", "/api/embed", [("input", '"hi"')]),
    ("embeddings", "ollama", "/api/embeddings", [("prompt", '"hi"')]),
    ("ol-v1-chat", "ollama", "/v1/chat/completions", [("messages", MSGS)]),
    ("ol-v1-completions", "ollama", "/v1/completions", [("prompt", '"hi"')]),
    ("ol-v1-embeddings", "ollama", "/v1/embeddings", [("input", '"hi"')]),
    ("oa-v1-chat", "openai", "/v1/chat/completions", [("messages", MSGS)]),
    ("oa-v1-completions", "openai", "/v1/completions", [("prompt", '"hi"')]),
    ("oa-v1-embeddings", "openai", "/v1/embeddings", [("input", '"hi"')]),
]

# (variant id, model pairs placed before the endpoint's other fields, trailing data, expectation)
VARIANTS = [
    ("Model", [("model", s(OK)), ("Model", s(BAD))], "", "deny"),
    ("MODEL", [("model", s(OK)), ("MODEL", s(BAD))], "", "deny"),
    ("mOdEl", [("model", s(OK)), ("mOdEl", s(BAD))], "", "deny"),
    ("Model-first", [("Model", s(BAD)), ("model", s(OK))], "", "deny"),
    ("escaped-e", [("model", s(OK)), (r"mod\u0065l", s(BAD))], "", "deny"),
    ("escaped-M", [("model", s(OK)), (r"\u004dODEL", s(BAD))], "", "deny"),
    ("dup-last-bad", [("model", s(OK)), ("model", s(BAD))], "", "deny"),
    ("dup-first-bad", [("model", s(BAD)), ("model", s(OK))], "", "deny"),
    ("dup-null-after-bad", [("model", s(BAD)), ("model", "null")], "", "deny"),
    ("number", [("model", "3")], "", "deny"),
    ("array", [("model", f"[{s(OK)}]")], "", "deny"),
    ("nested", [("model", '{"model":' + s(OK) + "}")], "", "deny"),
    ("null", [("model", "null")], "", "deny"),
    ("empty", [("model", '""')], "", "deny"),
    ("trailing-object", [("model", s(OK))], ' {"model":' + s(BAD) + "}", "deny"),
    ("trailing-garbage", [("model", s(OK))], "xyz", "deny"),
    ("registry-host", [("model", s("llama3.attacker.example/ns/evil:latest"))], "", "deny"),
    ("slash-ns", [("model", s("llama3/evil"))], "", "deny"),
    ("tag-slash", [("model", s("llama3:x/y"))], "", "deny"),
    # positive controls
    ("ok-plain", [("model", s(OK))], "", "allow"),
    ("ok-qwen", [("model", s("qwen2.5:7b"))], "", "allow"),
    ("ok-meta", [("model", s("meta-llama/Llama-3-8B"))], "", "allow"),
]

for ep_id, site, path, extra in INFERENCE:
    for v_id, pairs, trailing, expect in VARIANTS:
        add(f"{ep_id}-{v_id}", site, "POST", path, j(*pairs, *extra, extra=trailing), expect)

# A few more on chat and the OpenAI site only (one endpoint each is enough).
for ep_id, site, path, extra in (INFERENCE[0], INFERENCE[7]):
    add(f"{ep_id}-missing", site, "POST", path, j(*extra), "deny")
    add(f"{ep_id}-not-object", site, "POST", path, b'["model","llama3:8b"]', "deny")
    add(f"{ep_id}-string-body", site, "POST", path, b'"llama3:8b"', "deny")
    add(f"{ep_id}-bom", site, "POST", path, "\ufeff".encode() + j(("model", s(BAD)), *extra), "deny")
    add(f"{ep_id}-three-variants", site, "POST", path,
        j(("model", s(OK)), ("MODEL", s(OK)), ("mODEL", s(BAD)), *extra), "deny")
    add(f"{ep_id}-meta-deep", site, "POST", path, j(("model", s("meta-llama/x/y")), *extra), "deny")
    add(f"{ep_id}-meta-registry", site, "POST", path, j(("model", s("meta-llama/../mistral")), *extra), "deny")
    # A Kelvin-sign key folds to no naming field of these structs (no k in
    # `model`): Ollama ignores it. Judged only.
    add(f"{ep_id}-kelvin-nearmiss", site, "POST", path, j(("model", s(OK)), ("\u212amodel", s(BAD)), *extra), None)
    # `model` nested in options is not a top-level field: allowed.
    add(f"{ep_id}-ok-nested-options", site, "POST", path,
        j(("model", s(OK)), ("options", '{"model":' + s(BAD) + "}"), *extra), "allow")
    add(f"{ep_id}-ok-leading-space", site, "POST", path, b" \n" + j(("model", s(OK)), *extra), None)

# ── model management: name/model, the deprecated field, folding ─────────────

for ep, method in (("pull", "POST"), ("push", "POST"), ("delete", "DELETE"), ("show", "POST")):
    path = f"/api/{ep}"
    st = [("stream", "false")] if ep in ("pull", "push") else []
    add(f"{ep}-model-Model", "ollama", method, path, j(("model", s(OK)), ("Model", s(BAD)), *st), "deny")
    add(f"{ep}-name-NAME", "ollama", method, path, j(("name", s(OK)), ("NAME", s(BAD)), *st), "deny")
    add(f"{ep}-name-nAmE", "ollama", method, path, j(("name", s(OK)), ("nAmE", s(BAD)), *st), "deny")
    add(f"{ep}-model-ok-name-bad", "ollama", method, path, j(("model", s(OK)), ("name", s(BAD)), *st), "deny")
    add(f"{ep}-empty-model-name-bad", "ollama", method, path, j(("model", '""'), ("name", s(BAD)), *st), "deny")
    add(f"{ep}-dup-name", "ollama", method, path, j(("name", s(OK)), ("name", s(BAD)), *st), "deny")
    add(f"{ep}-escaped-name", "ollama", method, path, j(("name", s(OK)), (r"n\u0061me", s(BAD)), *st), "deny")
    add(f"{ep}-registry", "ollama", method, path,
        j(("model", s("llama3.attacker.example/ns/evil:latest")), *st), "deny")
    add(f"{ep}-trailing", "ollama", method, path, j(("model", s(OK)), *st, extra='{"model":"mistral"}'), "deny")
    add(f"{ep}-none", "ollama", method, path, j(*st) if st else b"{}", "deny")
    add(f"{ep}-ok-model", "ollama", method, path, j(("model", s(OK)), *st), "allow")
    add(f"{ep}-ok-name", "ollama", method, path, j(("name", s("qwen2.5:7b")), *st), "allow")

# ── copy: both names, `source` and `destination` folding (ſ, İ, ı) ────────

CP = "/api/copy"
add("copy-ok", "ollama", "POST", CP, j(("source", s(OK)), ("destination", s("llama3-copy"))), "allow")
add("copy-Source", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3-copy")), ("Source", s(BAD))), "deny")
add("copy-long-s-source", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3-copy")), ("\u017fource", s(BAD))), "deny")
add("copy-long-s-escaped", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3-copy")), (r"\u017fource", s(BAD))), "deny")
add("copy-DESTINATION", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3-copy")), ("DESTINATION", s("mistral-copy"))), "deny")
add("copy-dotted-I-destination", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3-copy")), ("dest\u0130nation", s("mistral-copy"))), "deny")
add("copy-dotless-i-destination", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3-copy")), ("dest\u0131nat\u0131on", s("mistral-copy"))), "deny")
add("copy-long-s-destination", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3-copy")), ("de\u017ftination", s("mistral-copy"))), "deny")
add("copy-bad-source", "ollama", "POST", CP, j(("source", s(BAD)), ("destination", s("llama3-copy"))), "deny")
add("copy-bad-destination", "ollama", "POST", CP,
    j(("source", s(OK)), ("destination", s("llama3.attacker.example/ns/evil"))), "deny")
add("copy-no-destination", "ollama", "POST", CP, j(("source", s(OK))), "deny")
add("copy-no-source", "ollama", "POST", CP, j(("destination", s("llama3-copy"))), "deny")
add("copy-model-only", "ollama", "POST", CP, j(("model", s(OK))), "deny")

# ── create: from, files, adapters (and draft_files) ────────────────────────

CR = "/api/create"
BLOB = '{"model.gguf":"sha256:' + "0" * 64 + '"}'
add("create-ok-from", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), ("stream", "false")), "allow")
add("create-ok-name-from", "ollama", "POST", CR, j(("name", s("llama3-mine")), ("from", s(OK)), ("stream", "false")), "allow")
add("create-from-bad", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(BAD))), "deny")
add("create-From-bad", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), ("From", s(BAD))), "deny")
add("create-FROM-bad", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("FROM", s(BAD))), "deny")
add("create-from-escaped", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), (r"fr\u006fm", s(BAD))), "deny")
add("create-from-registry", "ollama", "POST", CR,
    j(("model", s("llama3-mine")), ("from", s("llama3.attacker.example/ns/evil:latest"))), "deny")
add("create-model-bad", "ollama", "POST", CR, j(("model", s("mistral-mine")), ("from", s(OK))), "deny")
add("create-name-bad", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("name", s("mistral-mine")), ("from", s(OK))), "deny")
add("create-Model-bad", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("Model", s("mistral-mine")), ("from", s(OK))), "deny")
add("create-files", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("files", BLOB)), "deny")
add("create-files-empty", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("files", "{}")), "deny")
# `"files": null` leaves Ollama's map nil (no blobs read): judged only.
add("create-files-null", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), ("files", "null")), None)
add("create-Files", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("Files", BLOB)), "deny")
add("create-long-s-files", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("file\u017f", BLOB)), "deny")
add("create-dotless-i-files", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("f\u0131les", BLOB)), "deny")
add("create-dotted-I-files", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("F\u0130LES", BLOB)), "deny")
add("create-adapters", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), ("adapters", BLOB)), "deny")
add("create-ADAPTERS", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), ("ADAPTERS", BLOB)), "deny")
add("create-long-s-adapters", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), ("adapter\u017f", BLOB)), "deny")
# draft_files (Ollama's CreateRequest.DraftFiles): weights from blobs too.
add("create-draft-files", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), ("draft_files", BLOB)), "deny")
add("create-trailing", "ollama", "POST", CR, j(("model", s("llama3-mine")), ("from", s(OK)), extra='{"from":"mistral"}'), "deny")
# The grant whose list is exactly ["*"] may create from files.
add("create-star-files", "ollama", "POST", CR, j(("model", s("anything-mine")), ("files", BLOB), ("stream", "false")), "allow",
    key="attack_star")
add("create-star-from", "ollama", "POST", CR, j(("model", s("anything-mine")), ("from", s(BAD)), ("stream", "false")), "allow",
    key="attack_star")

# ── a body on GET, the query string, the path ──────────────────────────────

add("get-body-embed", "ollama", "GET", "/api/embed", j(("model", s(BAD)), ("input", '"hi"')), "deny")
# /api/ps is a plain auth_request location (no bridge): gatekeeper never
# sees the body, so a model list can only refuse it (body_required).
add("get-body-ps", "ollama", "GET", "/api/ps", j(("model", s(BAD))), "refuse")
add("get-body-ps-Model", "ollama", "GET", "/api/ps", j(("model", s(OK)), ("Model", s(BAD))), "refuse")
add("get-body-ol-v1-completions", "ollama", "GET", "/v1/completions", j(("model", s(BAD)), ("prompt", '"hi"')), "deny")
add("get-body-oa-v1-completions", "openai", "GET", "/v1/completions", j(("model", s(BAD)), ("prompt", '"hi"')), "deny")
add("get-body-oa-v1-anything", "openai", "GET", "/v1/anything", j(("MODEL", s(BAD))), "deny")
add("get-body-ok", "ollama", "GET", "/api/ps", j(("model", s(OK))), None)
add("query-chat", "ollama", "POST", "/api/chat?model=mistral", j(("model", s(OK)), ("messages", MSGS), ("stream", "false")), "deny")
add("query-chat-escaped-name", "ollama", "POST", "/api/chat?mod%65l=mistral", j(("model", s(OK)), ("messages", MSGS), ("stream", "false")), "deny")
add("query-chat-twice", "ollama", "POST", "/api/chat?model=llama3:8b&model=mistral", j(("model", s(OK)), ("messages", MSGS), ("stream", "false")), "deny")
add("query-get-ps", "ollama", "GET", "/api/ps?model=mistral", b"", "deny")
add("query-get-ps-escaped", "ollama", "GET", "/api/ps?mod%65l=mistral", b"", "deny")
add("query-get-ps-escaped-value", "ollama", "GET", "/api/ps?model=%6Distral", b"", "deny")
add("query-oa-chat", "openai", "POST", "/v1/chat/completions?model=mistral", j(("model", s(OK)), ("messages", MSGS)), "deny")
add("query-oa-get", "openai", "GET", "/v1/anything?model=gpt-4o", b"", "deny")
add("query-oa-registry", "openai", "POST", "/v1/chat/completions?model=llama3.attacker.example/ns/evil",
    j(("model", s(OK)), ("messages", MSGS)), "deny")
add("query-ok", "ollama", "GET", "/api/ps?model=llama3:8b", b"", "allow")
add("path-ol-v1-model-bad", "ollama", "GET", "/v1/models/mistral", b"", "deny")
add("path-ol-v1-model-ok", "ollama", "GET", "/v1/models/llama3:8b", b"", "allow")
add("path-oa-v1-model-bad", "openai", "GET", "/v1/models/gpt-4o", b"", "deny")
add("path-oa-v1-model-escaped", "openai", "GET", "/v1/models/%6Distral", b"", "deny")
add("path-oa-v1-model-registry", "openai", "GET", "/v1/models/llama3.attacker.example", b"", None)
add("path-oa-v1-model-ok", "openai", "GET", "/v1/models/qwen2.5:7b", b"", "allow")

# ── Ollama's other /v1 routes that read `model` (ChatHandler behind them) ──

for path in ("/v1/responses", "/v1/messages"):
    ep = path.rsplit("/", 1)[1]
    extra = [("input", '"hi"')] if ep == "responses" else [("max_tokens", "8"), ("messages", MSGS)]
    for v_id, pairs, trailing, expect in VARIANTS:
        if v_id in ("Model", "escaped-e", "dup-last-bad", "dup-first-bad", "trailing-object", "registry-host",
                    "ok-plain"):
            add(f"ol-v1-{ep}-{v_id}", "ollama", "POST", path, j(*pairs, *extra, extra=trailing), expect)

# ── compressed bodies: Ollama decompresses `Content-Encoding: zstd` on its
# /v1 routes before reading the model; gatekeeper must not pass what it
# cannot read. zstd_frame: one raw (stored) block, a valid zstd frame.


def zstd_frame(data: bytes) -> bytes:
    assert len(data) < 256
    header = ((len(data) << 3) | 1).to_bytes(3, "little")  # last block, raw
    return b"\x28\xb5\x2f\xfd" + bytes([0x20, len(data)]) + header + data


ZSTD = {"Content-Encoding": "zstd"}
for ep_id, site, path, extra in (INFERENCE[4], INFERENCE[5], INFERENCE[6], INFERENCE[7]):
    add(f"{ep_id}-zstd-bad", site, "POST", path, zstd_frame(j(("model", s(BAD)), *extra)), "deny", headers=ZSTD)
add("ol-v1-responses-zstd-bad", "ollama", "POST", "/v1/responses",
    zstd_frame(j(("model", s(BAD)), ("input", '"hi"'))), "deny", headers=ZSTD)
# A JSON body that only claims to be compressed: Ollama fails to
# decompress it (400). Judged only.
add("ol-v1-chat-zstd-claimed", "ollama", "POST", "/v1/chat/completions",
    j(("model", s(OK)), ("messages", MSGS)), None, headers=ZSTD)

# create: remote_host makes the new model forward inference to another
# server (CreateRequest.RemoteHost). Not a model name; judged only.
add("create-remote-host", "ollama", "POST", CR,
    j(("model", s("llama3-mine")), ("from", s(OK)), ("remote_host", s("http://attacker.example:11434"))), None)

CASE_IDS = [c.id for c in CASES]
BY_ID = {c.id: c for c in CASES}
LAYOUTS = ("separate", "shared")


# ── sending everything once, then reading back what the upstream received ──


@dataclass
class Outcome:
    status: int
    body: bytes
    records: list[dict]
    decoded: list[dict]


def _send(case: Case, addr: tuple[str, int], marker: str):
    host = OLLAMA_HOST if case.site == "ollama" else OPENAI_HOST
    headers = {
        "Host": host,
        MARKER_HEADER: marker,
        "Authorization": f"Bearer {KEYS[case.key]}",
        **case.headers,
    }
    if case.body:
        headers["Content-Type"] = "application/json"
    return raw_request(addr[0], addr[1], case.method, case.target, headers=headers, body=case.body, timeout=20)


def _records(mock, prefix: str, settle: float = 0.6, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        records = [
            r for r in mock.requests(everything=True)
            if r["headers"].get(MARKER_HEADER.lower(), "").startswith(prefix)
        ]
        if len(records) == last or time.monotonic() > deadline:
            return records
        last = len(records)
        time.sleep(settle)


@pytest.fixture(scope="module")
def outcomes(env, mock) -> dict[tuple[str, str], Outcome]:
    binary = require_godecode()
    run = uuid.uuid4().hex[:10]
    prefix = f"atkm-{run}-"
    jobs = []
    for layout in make_layouts(env):
        for case in CASES:
            jobs.append((layout.name, case, layout.addr(case.site), f"{prefix}{layout.name}-{case.id}"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda job: _send(job[1], job[2], job[3]), jobs))
    records = _records(mock, prefix)
    decoded = go_decode_many([(r["path"].split("?")[0], r["body"].encode("utf-8")) for r in records], binary)
    by_marker: dict[str, list[tuple[dict, dict]]] = {}
    for r, d in zip(records, decoded):
        by_marker.setdefault(r["headers"][MARKER_HEADER.lower()], []).append((r, d))
    out = {}
    for (layout, case, _, marker), answer in zip(jobs, answers):
        pairs = by_marker.get(marker, [])
        out[(layout, case.id)] = Outcome(
            answer.status, answer.body, [p[0] for p in pairs], [p[1] for p in pairs]
        )
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_model_attack(outcomes, layout, case_id):
    key = (layout, case_id)
    if key not in outcomes:
        pytest.skip(f"no {layout} nginx layout in this run")
    case, o = BY_ID[case_id], outcomes[key]
    grants = grant_models()
    wrongful = [v for r, d in zip(o.records, o.decoded) for v in judge(r, d, grants)]
    assert not wrongful, "WRONGFUL ALLOW — the upstream received a model the grant forbids:\n" + "\n".join(wrongful)
    summary = f"{case.method} {case.target} body={case.body[:160]!r} → {o.status} {o.body[:200]!r}"
    if case.expect == "deny":
        assert not o.records, f"refused by the rules (DESIGN §11) but reached the upstream: {summary}"
        assert o.status == 403 and b"model_not_allowed" in o.body, f"expected 403 model_not_allowed: {summary}"
    elif case.expect == "refuse":
        assert not o.records, f"must be refused, reached the upstream: {summary}"
        assert o.status in (400, 403), f"expected a refusal: {summary}"
    elif case.expect == "allow":
        assert o.status == 200, f"positive control refused: {summary}"
        assert len(o.records) == 1, f"positive control: {len(o.records)} upstream records: {summary}"
        for r in o.records:
            assert r["body"].encode("utf-8") == case.body, "the upstream received another body than was sent"


def test_every_record_of_the_run_names_only_allowed_models(outcomes, mock):
    """Every request the upstream has received so far in this run (this
    module's and every earlier test's), read the way the upstreams read it."""
    records = mock.requests(everything=True)
    decoded = go_decode_many([(r["path"].split("?")[0], r["body"].encode("utf-8")) for r in records])
    grants = grant_models()
    wrongful = [v for r, d in zip(records, decoded) for v in judge(r, d, grants)]
    assert not wrongful, "WRONGFUL ALLOW:\n" + "\n".join(wrongful[:40])


# ── the judge's own pieces (no harness needed) ─────────────────────────────


@pytest.mark.offline
@pytest.mark.parametrize(
    "glob,name,want",
    [
        ("*", "llama3.attacker.example/ns/evil:latest", True),
        ("llama3*", "llama3:8b", True),
        ("llama3*", "llama3.1:70b", True),
        ("llama3*", "llama3.attacker.example/ns/evil:latest", False),
        ("llama3*", "llama3/evil", False),
        ("llama3*", "llama3:x/y", False),
        ("meta-llama/*", "meta-llama/Llama-3-8B", True),
        ("meta-llama/*", "meta-llama/x/y", False),
        ("qwen2.5:7b", "qwen2.5:7b", True),
        ("qwen2.5:7b", "qwen2x5:7b", False),
        ("llama3?8b", "llama3:8b", True),
        ("llama3?8b", "llama3/8b", False),
        ("llama3*", "Llama3:8b", False),
    ],
)
def test_glob_rule(glob, name, want):
    assert glob_match(glob, name) is want


@pytest.mark.offline
def test_the_reference_decoder_reads_bodies_as_ollama_does():
    binary = godecode_path()
    if not binary:
        pytest.skip("E2E_GODECODE is not set: scripts/e2e.sh builds e2e/godecode")
    items = [
        ("/api/chat", b'{"model":"llama3:8b","Model":"mistral"}'),
        ("/api/chat", b'{"model":"llama3:8b"} {"model":"mistral"}'),
        ("/api/chat", b'{"model":"mistral","model":null}'),
        ("/api/copy", '{"source":"a","\u017fource":"b","destination":"c"}'.encode()),
        ("/api/copy", '{"source":"a","destination":"c","dest\u0130nation":"d"}'.encode()),
        ("/api/create", '{"model":"m","f\u0131les":{}}'.encode()),
        ("/api/pull", b'{"model":"","name":"x"}'),
        ("/api/chat", b'{"model":3}'),
        ("/api/ps", b'{"MODEL":"z"}'),
    ]
    got = go_decode_many(items, binary)
    assert got[0]["fields"] == {"model": "mistral"}
    assert got[1]["fields"] == {"model": "llama3:8b"}  # trailing data ignored
    assert got[2]["fields"] == {"model": "mistral"}  # null leaves the field alone
    assert got[3]["fields"]["source"] == "b"
    assert got[4]["fields"]["destination"] == "d"  # Go ≥ 1.21 folding
    assert got[5]["files"] is True
    assert got[6]["fields"] == {"model": "", "name": "x"}
    assert got[7]["ok"] is False
    assert got[8]["fields"] == {"model": "z"} and got[8]["generic"] is True


@pytest.mark.offline
def test_the_positive_controls_are_on_the_list():
    for c in CASES:
        if c.expect == "allow" and c.key == "attack_models":
            try:
                body = json.loads(c.body) if c.body else {}
            except ValueError:
                continue
            for k in ("model", "name", "source", "from"):
                if isinstance(body.get(k), str):
                    assert allowed(LIST, body[k]), (c.id, body[k])
