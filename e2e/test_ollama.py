"""The official `ollama` client through nginx's Ollama site: allowed calls
work, streaming included; denies are `ollama.ResponseError` with Ollama's
`{"error": "…"}` text and the status gatekeeper chose."""

import time

import ollama
import pytest

from conftest import KEYS, UNKNOWN_KEYS, assert_identity, assert_no_gatekeeper_key, wait_for_records

CHAT = [{"role": "user", "content": "hello ollama"}]


def assert_upstream_has_no_authorization(records):
    for r in records:
        assert "authorization" not in r["headers"], f"Authorization reached Ollama: {r['headers']}"
    assert_no_gatekeeper_key(records)


def test_list_models(ollama_client, mock, marker):
    models = ollama_client(KEYS["chat"]).list().models
    assert "llama3:8b" in [m.model for m in models]
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "ollama-tags")
    assert_upstream_has_no_authorization([record])


def test_generate_without_streaming(ollama_client, mock, marker):
    r = ollama_client(KEYS["chat"]).generate(model="llama3:8b", prompt="hi there")
    assert r.done and r.done_reason == "stop"
    assert r.response == "Hello from the mock (llama3:8b). You said: hi there"
    [record] = wait_for_records(mock, marker, 1)
    assert record["method"] == "POST" and record["path"] == "/api/generate"
    assert_identity(record, "chat", "ollama-generate")
    assert_upstream_has_no_authorization([record])


def test_generate_streams_line_by_line(ollama_client, mock, marker):
    arrivals, parts = [], []
    for part in ollama_client(KEYS["chat"]).generate(model="llama3.1:70b", prompt="hi there", stream=True):
        arrivals.append(time.monotonic())
        parts.append(part)
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == "Hello from the mock (llama3.1:70b). You said: hi there"
    assert arrivals[-1] - arrivals[0] > 0.3, "the stream arrived in one burst: nginx buffers it"
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "ollama-generate")


def test_chat_without_streaming(ollama_client, mock, marker):
    r = ollama_client(KEYS["chat"]).chat(model="llama3:8b", messages=CHAT)
    assert r.message.role == "assistant"
    assert r.message.content == "Hello from the mock (llama3:8b). You said: hello ollama"
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "ollama-chat")
    assert_upstream_has_no_authorization([record])


def test_chat_streams(ollama_client, mock, marker):
    parts = list(ollama_client(KEYS["chat"]).chat(model="llama3:8b", messages=CHAT, stream=True))
    assert len(parts) > 3 and parts[-1].done
    assert "".join(p.message.content for p in parts) == "Hello from the mock (llama3:8b). You said: hello ollama"
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "ollama-chat")
    assert_upstream_has_no_authorization([record])


def test_show_an_allowed_model(ollama_client, mock, marker):
    r = ollama_client(KEYS["chat"]).show("llama3:8b")
    assert r.details.family == "llama"
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "ollama-show")


def test_public_version_needs_no_key(ollama_client, mock, marker):
    r = ollama_client(None)._client.get("/api/version")
    assert r.status_code == 200 and r.json()["version"]
    [record] = wait_for_records(mock, marker, 1)
    assert record["headers"].get("x-auth-route-id") == "ollama-version"
    assert not record["headers"].get("x-auth-client-id")


def refused(call, status: int) -> ollama.ResponseError:
    with pytest.raises(ollama.ResponseError) as e:
        result = call()
        if hasattr(result, "__next__"):  # a stream raises when iterated
            list(result)
    assert e.value.status_code == status, (e.value.status_code, e.value.error)
    assert isinstance(e.value.error, str) and e.value.error.strip(), e.value.error
    # Ollama-style: the client parsed {"error": "..."}; the raw JSON is not left in the text.
    assert not e.value.error.lstrip().startswith("{"), e.value.error
    return e.value


def test_disallowed_model_is_refused(ollama_client, mock, marker):
    client = ollama_client(KEYS["chat"])
    refused(lambda: client.generate(model="mistral:7b", prompt="hi"), 403)
    refused(lambda: client.generate(model="mistral:7b", prompt="hi", stream=True), 403)
    refused(lambda: client.chat(model="qwen2.5:7b", messages=CHAT), 403)
    refused(lambda: client.chat(model="qwen2.5:7b", messages=CHAT, stream=True), 403)
    refused(lambda: client.show("mistral:7b"), 403)
    assert mock.tagged(marker) == []


def test_model_management_is_refused_to_a_normal_client(ollama_client, mock, marker):
    client = ollama_client(KEYS["chat"])
    refused(lambda: client.pull("llama3:8b"), 403)
    refused(lambda: client.pull("llama3:8b", stream=True), 403)
    refused(lambda: client.delete("llama3:8b"), 403)
    assert mock.tagged(marker) == []


def test_model_management_by_ops_obeys_its_model_list(ollama_client, mock, marker):
    client = ollama_client(KEYS["ops"])
    assert client.pull("llama3:8b").status == "success"
    statuses = [p.status for p in client.pull("llama3:8b", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    refused(lambda: client.pull("mistral:7b"), 403)
    refused(lambda: client.delete("mistral:7b"), 403)
    assert client.delete("llama3:8b").status == "success"
    records = wait_for_records(mock, marker, 3)
    assert [(r["method"], r["path"]) for r in records] == [
        ("POST", "/api/pull"),
        ("POST", "/api/pull"),
        ("DELETE", "/api/delete"),
    ]
    assert_identity(records[0], "ops", "ollama-pull")
    assert_identity(records[2], "ops", "ollama-delete")
    assert '"llama3:8b"' in records[2]["body"], "the DELETE body did not reach Ollama"
    assert_upstream_has_no_authorization(records)


def test_wrong_key_is_refused_with_401(ollama_client, mock, marker):
    e = refused(lambda: ollama_client(UNKNOWN_KEYS["wrong"]).list(), 401)
    assert "(invalid_credentials)" in e.error, e.error
    assert mock.tagged(marker) == []


def test_missing_key_is_refused_with_401(ollama_client, mock, marker):
    refused(lambda: ollama_client(None).generate(model="llama3:8b", prompt="hi"), 401)
    assert mock.tagged(marker) == []


def test_key_without_the_route_is_refused_with_403(ollama_client, mock, marker):
    client = ollama_client(KEYS["no_chat"])
    assert client.list().models
    refused(lambda: client.chat(model="llama3:8b", messages=CHAT), 403)
    assert len(wait_for_records(mock, marker, 1)) == 1
