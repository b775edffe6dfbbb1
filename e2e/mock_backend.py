#!/usr/bin/env python3
"""A stand-in LLM backend for the end-to-end suite: speaks enough of the
OpenAI API (/v1/*) and of Ollama's native API (/api/*) for the official
`openai` and `ollama` Python clients, and records every request it receives
so the tests can see exactly what nginx forwarded upstream.

Standard library only. HTTP/1.1 with keep-alive (streams are chunked); an
HTTP/1.0 request is answered and the connection closed.

    python e2e/mock_backend.py --port 18090 [--ollama-port 18091]

With --ollama-port it listens on both ports in one process (the OpenAI
site's upstream and the Ollama site's), with one shared record: each record
says which port took it (`"backend": "openai"` or `"ollama"`), and the
control endpoints answer the same on both.

Control endpoints (never recorded):
    GET    /_mock/requests         requests recorded since the last clear, as a
                                   JSON list of {backend, method, path, headers, body,
                                   body_length, body_sha256, time} (body: the
                                   first 256 KiB)
                                   (header names lower-case; path raw, query included)
    GET    /_mock/requests?all=1   every request since start-up, clears or not
    GET    /_mock/requests?marker=M  only those whose X-E2E-Marker is M (with all=1 too)
    DELETE /_mock/requests         clear (the start-up history is kept)
    GET    /_mock/health           {"ok": true}

Any other path gets 200 {"path": <raw path>, "method": ...}, so a test can see
which path reached the upstream.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

# Delay between streamed chunks: long enough that a buffering proxy is
# noticeable, short enough to keep the suite quick.
STREAM_DELAY = 0.08
BODY_KEPT = 256 * 1024
MODELS = ["llama3:8b", "llama3.1:70b", "gpt-4o-mini", "qwen2.5:7b", "nomic-embed-text"]


class Recorder:
    """Requests seen, since the last clear and since start-up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: list[dict] = []
        self._all: list[dict] = []

    def add(self, record: dict) -> None:
        with self._lock:
            self._recent.append(record)
            self._all.append(record)

    def recent(self) -> list[dict]:
        with self._lock:
            return list(self._recent)

    def everything(self) -> list[dict]:
        with self._lock:
            return list(self._all)

    def clear(self) -> None:
        with self._lock:
            self._recent.clear()


RECORDER = Recorder()


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def words(text: str) -> list[str]:
    """The reply's pieces, each with its leading space, as token streams look."""
    parts = text.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]]


def reply_text(model: str, prompt: str) -> str:
    prompt = " ".join(prompt.split())[:60]
    return f"Hello from the mock ({model}). You said: {prompt}"


def last_user_message(messages) -> str:
    if not isinstance(messages, list):
        return ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gatekeeper-e2e-mock/1"

    # ---- plumbing ---------------------------------------------------------

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(fmt, *args)

    def raw_target(self) -> str:
        """The request target exactly as sent (BaseHTTPRequestHandler rewrites
        a leading `//`, and the suite must see what nginx really sent)."""
        line = self.raw_requestline.decode("latin-1").rstrip("\r\n")
        parts = line.split(" ")
        return parts[1] if len(parts) >= 3 else self.path

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def http11(self) -> bool:
        return self.request_version == "HTTP/1.1"

    def send_json(self, status: int, obj, extra: dict | None = None) -> None:
        data = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if not self.http11():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def stream(self, content_type: str, pieces) -> None:
        """Sends each piece (bytes) as soon as it is produced: chunked on
        HTTP/1.1, until close on HTTP/1.0."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        chunked = self.http11()
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        for piece in pieces:
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    # ---- dispatch ---------------------------------------------------------

    def handle_any(self) -> None:
        target = self.raw_target()
        body = self.read_body()
        path = target.split("?", 1)[0]
        if path == "/_mock/requests" or path.startswith("/_mock/"):
            return self.control(target, path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        RECORDER.add(
            {
                "backend": self.server.backend,  # type: ignore[attr-defined]
                "method": self.command,
                "path": target,
                "headers": headers,
                # Large bodies are kept in part (the first BODY_KEPT bytes),
                # with their length and digest, so the record list stays small.
                "body": body[:BODY_KEPT].decode("utf-8", "replace"),
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "time": time.time(),
            }
        )
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
        route = ROUTES.get((self.command, path))
        if route is None:
            return self.send_json(200, {"path": target, "method": self.command})
        route(self, payload)

    def control(self, target: str, path: str) -> None:
        if path == "/_mock/health":
            return self.send_json(200, {"ok": True})
        if path == "/_mock/requests" and self.command == "GET":
            query = parse_qs(target.partition("?")[2])
            records = RECORDER.everything() if query.get("all") == ["1"] else RECORDER.recent()
            if "marker" in query:
                want = query["marker"][0]
                records = [r for r in records if r["headers"].get("x-e2e-marker") == want]
            return self.send_json(200, records)
        if path == "/_mock/requests" and self.command == "DELETE":
            RECORDER.clear()
            return self.send_json(200, {"cleared": True})
        return self.send_json(404, {"error": "unknown control endpoint"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

    # ---- OpenAI -------------------------------------------------------------

    def openai_models(self, _payload: dict) -> None:
        created = int(time.time()) - 86400
        data = [{"id": m, "object": "model", "created": created, "owned_by": "mock"} for m in MODELS]
        self.send_json(200, {"object": "list", "data": data})

    def openai_chat(self, payload: dict) -> None:
        model = str(payload.get("model", ""))
        text = reply_text(model, last_user_message(payload.get("messages")))
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        prompt_tokens = len(json.dumps(payload.get("messages", [])).split())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words(text)),
            "total_tokens": prompt_tokens + len(words(text)),
        }
        if not payload.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            return self.send_json(
                200,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                    "system_fingerprint": "mock",
                },
            )
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict, finish=None, usage_obj=None, choices=True) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                if choices
                else [],
            }
            if include_usage:
                obj["usage"] = usage_obj
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        def pieces():
            yield chunk({"role": "assistant", "content": ""})
            for w in words(text):
                time.sleep(STREAM_DELAY)
                yield chunk({"content": w})
            yield chunk({}, finish="stop")
            if include_usage:
                yield chunk({}, usage_obj=usage, choices=False)
            yield b"data: [DONE]\n\n"

        self.stream("text/event-stream", pieces())

    def openai_embeddings(self, payload: dict) -> None:
        inputs = payload.get("input", "")
        if not isinstance(inputs, list):
            inputs = [inputs]
        as_base64 = payload.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vector = [((len(str(text)) + j) % 7) / 7.0 for j in range(8)]
            embedding = (
                base64.b64encode(struct.pack("<%df" % len(vector), *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in inputs)
        self.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(payload.get("model", "")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # ---- Ollama -------------------------------------------------------------

    @staticmethod
    def ollama_details() -> dict:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_0",
        }

    def ollama_tags(self, _payload: dict) -> None:
        models = [
            {
                "name": m,
                "model": m,
                "modified_at": "2024-05-01T10:00:00.000000Z",
                "size": 4661224676,
                "digest": uuid.uuid5(uuid.NAMESPACE_DNS, m).hex * 2,
                "details": self.ollama_details(),
            }
            for m in MODELS
        ]
        self.send_json(200, {"models": models})

    def ollama_final(self, model: str, prompt_tokens: int, eval_count: int) -> dict:
        return {
            "model": model,
            "created_at": now_iso(),
            "done": True,
            "done_reason": "stop",
            "total_duration": 123456789,
            "load_duration": 1234567,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 2345678,
            "eval_count": eval_count,
            "eval_duration": 34567890,
        }

    def ollama_generate(self, payload: dict) -> None:
        model = str(payload.get("model", ""))
        text = reply_text(model, str(payload.get("prompt", "")))
        pieces = words(text)
        final = self.ollama_final(model, len(str(payload.get("prompt", "")).split()), len(pieces))
        final["context"] = [1, 2, 3]
        if payload.get("stream", True) is False:
            return self.send_json(200, {**final, "response": text})

        def lines():
            for w in pieces:
                time.sleep(STREAM_DELAY)
                part = {"model": model, "created_at": now_iso(), "response": w, "done": False}
                yield json.dumps(part).encode() + b"\n"
            yield json.dumps({**final, "response": ""}).encode() + b"\n"

        self.stream("application/x-ndjson", lines())

    def ollama_chat(self, payload: dict) -> None:
        model = str(payload.get("model", ""))
        text = reply_text(model, last_user_message(payload.get("messages")))
        pieces = words(text)
        final = self.ollama_final(model, len(json.dumps(payload.get("messages", [])).split()), len(pieces))
        if payload.get("stream", True) is False:
            return self.send_json(200, {**final, "message": {"role": "assistant", "content": text}})

        def lines():
            for w in pieces:
                time.sleep(STREAM_DELAY)
                part = {
                    "model": model,
                    "created_at": now_iso(),
                    "message": {"role": "assistant", "content": w},
                    "done": False,
                }
                yield json.dumps(part).encode() + b"\n"
            yield json.dumps({**final, "message": {"role": "assistant", "content": ""}}).encode() + b"\n"

        self.stream("application/x-ndjson", lines())

    def ollama_show(self, payload: dict) -> None:
        model = str(payload.get("model") or payload.get("name") or "")
        self.send_json(
            200,
            {
                "modelfile": f"FROM {model}\n",
                "parameters": "stop \"<|eot_id|>\"",
                "template": "{{ .Prompt }}",
                "details": self.ollama_details(),
                "model_info": {"general.architecture": "llama", "general.parameter_count": 8030261248},
                "capabilities": ["completion"],
                "modified_at": "2024-05-01T10:00:00.000000Z",
            },
        )

    def ollama_pull(self, payload: dict) -> None:
        if payload.get("stream", True) is False:
            return self.send_json(200, {"status": "success"})
        steps = [
            {"status": "pulling manifest"},
            {"status": "pulling 6a0746a1ec1a", "digest": "sha256:6a0746a1ec1a", "total": 100, "completed": 50},
            {"status": "pulling 6a0746a1ec1a", "digest": "sha256:6a0746a1ec1a", "total": 100, "completed": 100},
            {"status": "verifying sha256 digest"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]

        def lines():
            for s in steps:
                time.sleep(STREAM_DELAY / 4)
                yield json.dumps(s).encode() + b"\n"

        self.stream("application/x-ndjson", lines())

    def ollama_delete(self, _payload: dict) -> None:
        # Ollama answers a successful delete with 200 and an empty body.
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def ollama_version(self, _payload: dict) -> None:
        self.send_json(200, {"version": "0.5.7"})

    def ollama_ps(self, _payload: dict) -> None:
        self.send_json(200, {"models": []})

    def ollama_embed(self, payload: dict) -> None:
        inputs = payload.get("input", "")
        if not isinstance(inputs, list):
            inputs = [inputs]
        vectors = [[((len(str(t)) + j) % 7) / 7.0 for j in range(8)] for t in inputs]
        self.send_json(200, {"model": str(payload.get("model", "")), "embeddings": vectors})


ROUTES = {
    ("GET", "/v1/models"): Handler.openai_models,
    ("POST", "/v1/chat/completions"): Handler.openai_chat,
    ("POST", "/v1/embeddings"): Handler.openai_embeddings,
    ("GET", "/api/tags"): Handler.ollama_tags,
    ("POST", "/api/generate"): Handler.ollama_generate,
    ("POST", "/api/chat"): Handler.ollama_chat,
    ("POST", "/api/show"): Handler.ollama_show,
    ("POST", "/api/pull"): Handler.ollama_pull,
    ("DELETE", "/api/delete"): Handler.ollama_delete,
    ("GET", "/api/version"): Handler.ollama_version,
    ("GET", "/api/ps"): Handler.ollama_ps,
    ("POST", "/api/embed"): Handler.ollama_embed,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    verbose = False
    backend = "openai"  # the tag of every record taken on this port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090, help="the OpenAI site's upstream")
    parser.add_argument(
        "--ollama-port", type=int, default=None,
        help="also listen here as the Ollama site's upstream (records tagged backend=ollama)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    ports = [("openai", args.port)] + ([("ollama", args.ollama_port)] if args.ollama_port else [])
    servers = []
    for backend, port in ports:
        server = Server((args.host, port), Handler)
        server.verbose = args.verbose
        server.backend = backend
        servers.append(server)
        print(f"mock backend ({backend}) listening on http://{args.host}:{server.server_address[1]}", flush=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers[1:]]
    for t in threads:
        t.start()
    try:
        servers[0].serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for other in servers[1:]:
            other.shutdown()
        for server in servers:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
