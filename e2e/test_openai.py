"""The official `openai` client through nginx's OpenAI-compatible site: what
an allowed client gets, and every deny as the typed error that client raises."""

import time

import openai
import pytest

from conftest import (
    KEYS,
    PROVIDER_TOKEN,
    UNKNOWN_KEYS,
    assert_identity,
    assert_no_gatekeeper_key,
    wait_for_records,
)

PROMPT = [{"role": "user", "content": "say hello to the e2e suite"}]


def test_valid_key_lists_models(openai_client, mock, marker):
    models = openai_client(KEYS["chat"]).models.list()
    assert "llama3:8b" in [m.id for m in models]
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "openai-models")


def test_valid_key_completes_a_chat(openai_client, mock, marker, env):
    reply = openai_client(KEYS["chat"]).chat.completions.create(model="llama3:8b", messages=PROMPT)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == (
        "Hello from the mock (llama3:8b). You said: say hello to the e2e suite"
    )
    [record] = wait_for_records(mock, marker, 1)
    assert record["method"] == "POST" and record["path"] == "/v1/chat/completions"
    assert_identity(record, "chat", "openai-chat")
    assert record["headers"].get("authorization") == f"Bearer {env.operator_key}"
    assert '"model": "llama3:8b"' in record["body"] or '"model":"llama3:8b"' in record["body"]
    assert_no_gatekeeper_key([record])


def test_valid_key_streams_a_chat_chunk_by_chunk(openai_client, mock, marker):
    stream = openai_client(KEYS["chat"]).chat.completions.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True
    )
    arrivals, pieces = [], []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Hello from the mock (gpt-4o-mini). You said: say hello to the e2e suite"
    assert len(pieces) >= 5
    # The mock sends a piece every 80 ms: an nginx that buffered the stream
    # would deliver them all at once.
    assert arrivals[-1] - arrivals[0] > 0.3, "the stream arrived in one burst: nginx buffers it"
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "openai-chat")


def test_embeddings_are_allowed_for_a_granted_model(openai_client, mock, marker, env):
    result = openai_client(KEYS["chat"]).embeddings.create(model="nomic-embed-text", input=["a", "bb"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "openai-embeddings")
    assert record["headers"].get("authorization") == f"Bearer {env.operator_key}"


def test_wrong_key_is_an_authentication_error(openai_client, mock, marker):
    client = openai_client(UNKNOWN_KEYS["wrong"])
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="llama3:8b", messages=PROMPT)
    assert e.value.status_code == 401
    assert e.value.code == "invalid_credentials"
    assert e.value.response.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert mock.tagged(marker) == []


def test_revoked_key_is_an_authentication_error(openai_client, mock, marker):
    with pytest.raises(openai.AuthenticationError) as e:
        openai_client(KEYS["revoked"]).models.list()
    assert e.value.code == "key_revoked"
    assert mock.tagged(marker) == []


def test_key_without_the_route_is_permission_denied(openai_client, mock, marker):
    client = openai_client(KEYS["no_chat"])
    assert client.models.list().data  # granted
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="llama3:8b", messages=PROMPT)
    assert e.value.status_code == 403
    assert e.value.code == "no_permission"
    assert len(wait_for_records(mock, marker, 1)) == 1  # only the models call went through


def test_suspended_client_is_permission_denied(openai_client, mock, marker):
    with pytest.raises(openai.PermissionDeniedError) as e:
        openai_client(KEYS["suspended"]).models.list()
    assert e.value.code == "client_suspended"
    assert mock.tagged(marker) == []


def test_disallowed_model_is_refused_with_a_readable_reason(openai_client, mock, marker):
    client = openai_client(KEYS["chat"])
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="gpt-4o", messages=PROMPT)
    assert e.value.status_code == 403
    assert e.value.code == "model_not_allowed"
    assert isinstance(e.value.body, dict) and e.value.body.get("message"), e.value.body
    assert e.value.body.get("type"), e.value.body
    assert "model_not_allowed" in str(e.value)
    # Streaming asks the same question first.
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="mistral:7b", messages=PROMPT, stream=True)
    assert e.value.code == "model_not_allowed"
    assert mock.tagged(marker) == []


def test_disallowed_embedding_model_is_refused(openai_client, mock, marker):
    with pytest.raises(openai.PermissionDeniedError) as e:
        openai_client(KEYS["chat"]).embeddings.create(model="text-embedding-3-large", input="x")
    assert e.value.code == "model_not_allowed"
    assert mock.tagged(marker) == []


def exhaust(client, limit_hint: int = 6):
    """Calls until the limit refuses (rl-app's limit is 2/4s: 2 back to back);
    returns the successes before it and the RateLimitError."""
    successes = 0
    for _ in range(limit_hint):
        try:
            client.chat.completions.create(model="llama3:8b", messages=PROMPT)
            successes += 1
        except openai.RateLimitError as e:
            return successes, e
    pytest.fail(f"{limit_hint} calls and no RateLimitError: the limit 2/4s is not applied")


def test_exceeding_the_limit_is_a_rate_limit_error_with_retry_after(openai_client):
    successes, e = exhaust(openai_client(KEYS["rate_limited"]))
    assert successes <= 2
    assert e.status_code == 429
    assert e.code == "rate_limited"
    retry_after = e.response.headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit(), e.response.headers
    assert 1 <= int(retry_after) <= 4


def test_the_client_honours_retry_after_and_its_retry_succeeds(openai_client, mock, marker):
    exhaust(openai_client(KEYS["rate_limited"]))
    attempts: list[tuple[float, int, str | None]] = []

    def seen(response):
        attempts.append((time.monotonic(), response.status_code, response.headers.get("retry-after")))

    http_client = openai.DefaultHttpxClient(event_hooks={"response": [seen]})
    client = openai_client(KEYS["rate_limited"], max_retries=3, http_client=http_client)
    reply = client.chat.completions.create(model="llama3:8b", messages=PROMPT)
    assert reply.choices[0].message.content.startswith("Hello from the mock")
    statuses = [s for _, s, _ in attempts]
    assert statuses[0] == 429 and statuses[-1] == 200, statuses
    assert 429 not in statuses[1:], f"the client retried before Retry-After: {statuses}"
    first_429, _, retry_after = attempts[0]
    waited = attempts[-1][0] - first_429
    assert retry_after is not None
    # The client sleeps exactly Retry-After (whole seconds) before retrying,
    # and gatekeeper's Retry-After is long enough for the retry to pass.
    assert int(retry_after) - 0.1 <= waited <= int(retry_after) + 1.5, (retry_after, waited)
    records = wait_for_records(mock, marker, 1)
    assert len(records) == 1
    assert_identity(records[0], "rate_limited", "openai-chat")


def test_gatekeeper_headers_stay_between_nginx_and_upstream(http, env):
    r = http.get(f"{env.openai_base}/models", headers={"Authorization": f"Bearer {KEYS['chat']}"})
    assert r.status_code == 200
    for name in ("x-auth-client-id", "x-auth-key-id", "x-auth-provider-token"):
        assert name not in r.headers, f"{name} leaked to the client"


def test_streaming_and_non_streaming_never_forward_the_key(openai_client, mock, marker):
    client = openai_client(KEYS["chat"])
    client.chat.completions.create(model="llama3:8b", messages=PROMPT)
    list(client.chat.completions.create(model="llama3:8b", messages=PROMPT, stream=True))
    records = wait_for_records(mock, marker, 2)
    assert len(records) == 2
    assert_no_gatekeeper_key(records)
    assert all(r["headers"].get("x-api-key") is None for r in records)


def test_x_api_key_header_is_not_forwarded(http, mock, marker, env):
    r = http.post(
        f"{env.openai_base}/chat/completions",
        headers={"X-API-Key": KEYS["chat"]},
        json={"model": "llama3:8b", "messages": PROMPT},
    )
    assert r.status_code == 200, r.text
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "openai-chat")
    assert "x-api-key" not in record["headers"]
    assert_no_gatekeeper_key([record])


def test_query_key_is_not_a_credential(http, mock, marker, env):
    r = http.get(f"{env.openai_base}/models", params={"api_key": KEYS["chat"]})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_credentials"
    assert mock.tagged(marker) == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "ApiKey"])
def test_authorization_schemes_are_accepted(http, env, scheme):
    r = http.get(f"{env.openai_base}/models", headers={"Authorization": f"{scheme} {KEYS['chat']}"})
    assert r.status_code == 200, r.text


def test_client_cannot_spoof_identity_headers(http, mock, marker, env):
    spoof = {
        "X-Auth-Client-ID": "spoofed-admin",
        "X-Auth-Client-Name": "Spoofed",
        "X-Auth-Key-ID": "spoofed-key",
        "X-Auth-Route-ID": "spoofed-route",
    }
    r = http.get(f"{env.openai_base}/models", headers={"Authorization": f"Bearer {KEYS['chat']}", **spoof})
    assert r.status_code == 200
    r = http.get(f"{env.openai_base}/public/hello", headers=spoof)
    assert r.status_code == 200, r.text
    authed, public = wait_for_records(mock, marker, 2)
    assert_identity(authed, "chat", "openai-models")
    for name in ("x-auth-client-id", "x-auth-client-name", "x-auth-key-id"):
        assert "spoofed" not in public["headers"].get(name, "").lower(), public["headers"]
    assert "spoofed" not in public["headers"].get("x-auth-route-id", "").lower()


def test_provider_token_on_a_byo_route_replaces_the_operator_key(openai_client, mock, marker, env):
    client = openai_client(KEYS["chat"], default_headers={"X-Provider-Token": PROVIDER_TOKEN})
    client.chat.completions.create(model="llama3:8b", messages=PROMPT)
    list(client.chat.completions.create(model="llama3:8b", messages=PROMPT, stream=True))
    records = wait_for_records(mock, marker, 2)
    assert len(records) == 2
    for record in records:
        assert_identity(record, "chat", "openai-chat")
        assert record["headers"].get("authorization") == f"Bearer {PROVIDER_TOKEN}"
        assert env.operator_key not in str(record["headers"])
        assert "x-provider-token" not in record["headers"], "X-Provider-Token itself was forwarded"
    assert_no_gatekeeper_key(records)


def test_provider_token_on_a_route_without_byo_is_ignored(openai_client, mock, marker, env):
    client = openai_client(KEYS["chat"], default_headers={"X-Provider-Token": PROVIDER_TOKEN})
    client.embeddings.create(model="nomic-embed-text", input="x")
    [record] = wait_for_records(mock, marker, 1)
    assert_identity(record, "chat", "openai-embeddings")
    assert record["headers"].get("authorization") == f"Bearer {env.operator_key}"
    assert PROVIDER_TOKEN not in str(record["headers"])


def test_provider_token_never_authenticates_by_itself(http, mock, marker, env):
    r = http.post(
        f"{env.openai_base}/chat/completions",
        headers={"X-Provider-Token": PROVIDER_TOKEN},
        json={"model": "llama3:8b", "messages": PROMPT},
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_credentials"
    assert mock.tagged(marker) == []
