"""Path confusion through real nginx: crafted request targets, hosts and
request lines, sent byte for byte over a socket, and for each one the check
that what nginx routed and what gatekeeper decided agree.

For every case of the table below:

- **allowed** (2xx): exactly one request reached the upstream; its path is
  normalised (no dot or empty segment, nothing gatekeeper calls ambiguous);
  the route that path belongs to in e2e/policy.toml (matched here, in
  Python, on the path decoded once — what gatekeeper matches) is the route
  gatekeeper put in `X-Auth-Route-ID`, under every other reading a lenient
  upstream might make of it (decoded again, `\\` as `/`, `;params` dropped);
  a route that needs a credential shows the caller's identity, and the case
  sent a valid key; gatekeeper's log has one `allow` for that request id;
- **denied by gatekeeper**: nothing reached the upstream; the JSON body's
  reason is the one gatekeeper logged (one `deny`) for that request id;
- **refused by nginx itself** (400, 414 before any auth): nothing reached
  the upstream;
- **refused by the site** (nginx's JSON answers before gatekeeper is asked:
  421 `misdirected_request` for a host the site does not serve, DESIGN §14;
  400 `forbidden_header` for a client-sent `X-Auth-*` header other than the
  four identity ones): nothing reached the upstream, gatekeeper logged
  nothing for it.

Every request names the site's host (`openai.example.com`,
`ollama.example.com`) unless the case is about the host.

Each case also states what it expects (allow with route and upstream
target, or deny with status and reason, or nginx's own status), so the table
documents the behaviour and cannot pass by denying everything: it holds
public requests and the same protected paths with a valid key that must
pass.

The requests leave from their own loopback address (127.0.0.77 when the
stack is on loopback): gatekeeper throttles failed credentials per source
address, and this file must neither feed nor suffer from the other tests'
failures. It presents no wrong credential itself.

The `hostroute-*` cases need the route on a host no site serves
(HOST_ROUTE below, in e2e/policy.toml): since sites are bound to their
names, every spelling of that host is refused by nginx (421) or is nginx's
own 400, and the public route is never reached. They are skipped unless the
policy gatekeeper serves has it — point E2E_PATHCONF_POLICY at that file
when it is not e2e/policy.toml.

A disagreement between nginx and gatekeeper (a real bypass) is marked
`xfail(strict=True)` with the reason, never left out.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest

from conftest import KEYS, MARKER_HEADER, assert_no_gatekeeper_key, parse_response, RawResponse

# The policy gatekeeper serves (scripts/e2e.sh: e2e/policy.toml).
POLICY = Path(os.environ.get("E2E_PATHCONF_POLICY") or Path(__file__).with_name("policy.toml"))
SOURCE_IP = "127.0.0.77"
OAI, OLL = "openai", "ollama"
# What each site sends upstream as Host (sites/openai.conf: $proxy_host;
# sites/ollama.conf: localhost): tells which site proxied a record.
UPSTREAM_HOST = {OAI: "openai_backend", OLL: "localhost"}
SERVER_NAME = {OAI: "openai.example.com", OLL: "ollama.example.com"}
DEFAULT = object()  # "the usual Host header"


# ---- the table ------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    kind: str  # "allow" | "deny" | "nginx"
    status: int
    reason: str | None = None
    route: str | None = None
    upstream: bytes | None = None  # the exact target the upstream must get


def allow(route: str, upstream: str | bytes) -> Expect:
    return Expect("allow", 200, None, route, upstream.encode() if isinstance(upstream, str) else upstream)


def deny(status: int, reason: str, route: str | None = None) -> Expect:
    return Expect("deny", status, reason, route)


def nginx(status: int) -> Expect:
    return Expect("nginx", status)


def site_refusal(status: int, reason: str) -> Expect:
    """nginx's own JSON refusal from the site's configuration (no gatekeeper)."""
    return Expect("site", status, reason)


MISDIRECTED = site_refusal(421, "misdirected_request")
FORBIDDEN_HEADER = site_refusal(400, "forbidden_header")
SITE_CODES = ("misdirected_request", "forbidden_header")


AMBIGUOUS = deny(400, "ambiguous_path")


@dataclass(frozen=True)
class Case:
    id: str
    site: str
    method: str
    target: bytes
    expect: Expect
    key: str | None = None  # a KEYS role, sent as Authorization: Bearer
    headers: tuple = ()  # extra (name, value) pairs, bytes or str
    host: object = DEFAULT  # DEFAULT, None (no Host), or a tuple of raw values
    version: str = "HTTP/1.1"
    xfail: str | None = None  # a real disagreement: why (strict xfail)
    needs: str | None = None  # a route id the case needs in the policy (else skipped)


def c(id, target, expect, site=OAI, method="GET", **kw) -> Case:
    if isinstance(target, str):
        target = target.encode("latin-1")
    return Case(id, site, method, target, expect, **kw)


PUB = "openai-public"
MODELS = "openai-models"
API = "openai-api"
VERSION = "ollama-version"
TAGS = "ollama-tags"
OAPI = "ollama-api"
MISSING = "missing_credentials"


def u(path: str) -> str:
    """A raw-UTF-8 target, as bytes in latin-1 clothing (sent byte for byte)."""
    return path.encode().decode("latin-1")


# In e2e/policy.toml (a public route on a host neither site serves): with it
# the hostroute-* cases run, without it they are skipped.
HOST_PUBLIC = "host-public"
HOST_ROUTE = """
[[route]]
id = "host-public"                  # test_path_confusion.py: public on this host only
domain = "public.example.test"
path = "/v1/*"
service = "openai"
[route.methods]
GET = ["public"]
"""

LONG_CLIMB = "/v1/public/" + "a/" * 1000 + "../" * 1001 + "models"

CASES: list[Case] = [
    # ── dot segments ─────────────────────────────────────────────────────────
    c("dot-control-public", "/v1/public/hello", allow(PUB, "/v1/public/hello")),
    c("dot-single", "/v1/public/./hello", allow(PUB, "/v1/public/hello")),
    c("dot-inside-public", "/v1/public/a/../b", allow(PUB, "/v1/public/b")),
    c("dot-three-is-a-name", "/v1/public/.../hello", allow(PUB, "/v1/public/.../hello")),
    c("dot-up-to-models", "/v1/public/../models", deny(401, MISSING, MODELS)),
    c("dot-up-to-models-with-key", "/v1/public/../models", allow(MODELS, "/v1/models"), key="chat"),
    c("dot-up-to-chat", "/v1/public/../chat/completions", deny(403, "method_not_configured", "openai-chat")),
    c("dot-up-twice", "/v1/public/../../v1/models", deny(401, MISSING, MODELS)),
    c("dot-above-root", "/v1/public/../../../v1/models", nginx(400)),
    c("dot-at-end", "/v1/public/..", deny(401, MISSING, API)),
    c("dot-at-end-with-key", "/v1/public/..", allow(API, "/v1/"), key="chat"),
    c("dot-x-dot-dot", "/v1/public/x/../..", deny(401, MISSING, API)),
    c("dot-trailing-single", "/v1/public/x/.", allow(PUB, "/v1/public/x/")),
    c("dot-protected-back-into-public", "/v1/models/../public/x", allow(PUB, "/v1/public/x")),
    c("dot-out-of-v1", "/v1/public/../../healthz", deny(403, "no_route_match")),
    c("dot-long-climb", LONG_CLIMB, deny(401, MISSING, MODELS)),
    c("dot-long-climb-with-key", LONG_CLIMB, allow(MODELS, "/v1/models"), key="chat"),
    c("dot-many-single", "/v1/public/" + "./" * 2000 + "x", allow(PUB, "/v1/public/x")),
    # ── encoded dots, overlong UTF-8 ─────────────────────────────────────────
    c("enc-dots-lower", "/v1/public/%2e%2e/models", AMBIGUOUS),
    c("enc-dots-upper", "/v1/public/%2E%2E/models", AMBIGUOUS),
    c("enc-dots-mixed", "/v1/public/%2E%2e/models", AMBIGUOUS),
    c("enc-dot-first", "/v1/public/%2E./models", AMBIGUOUS),
    c("enc-dot-second", "/v1/public/.%2e/models", AMBIGUOUS),
    c("enc-single-dot", "/v1/public/%2e/models", AMBIGUOUS),
    c("enc-dots-at-end", "/v1/public/%2e%2e", AMBIGUOUS),
    c("enc-dot-inside-name", "/v1/public/x%2ejson", AMBIGUOUS),
    c("enc-dots-with-key", "/v1/%2e%2e/v1/models", AMBIGUOUS, key="chat"),
    c("overlong-2-dots", "/v1/public/%c0%ae%c0%ae/models", AMBIGUOUS),
    c("overlong-2-dot-upper", "/v1/public/%C0%AE%C0%AE/models", AMBIGUOUS),
    c("overlong-2-slash", "/v1/public/..%c0%afmodels", AMBIGUOUS),
    c("overlong-2-all", "/v1/public/%c0%ae%c0%ae%c0%afmodels", AMBIGUOUS),
    c("overlong-3-dots", "/v1/public/%e0%80%ae%e0%80%ae/models", AMBIGUOUS),
    c("overlong-4-dot", "/v1/public/%f0%80%80%ae%f0%80%80%ae/models", AMBIGUOUS),
    c("overlong-2-backslash", "/v1/public/..%c1%9cmodels", AMBIGUOUS),
    c("overlong-raw-bytes", b"/v1/public/\xc0\xae\xc0\xae/models", AMBIGUOUS),
    c("fullwidth-dots-are-names", "/v1/public/%ef%bc%8e%ef%bc%8e%ef%bc%8fmodels",
      allow(PUB, "/v1/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fmodels")),
    # ── double (and deeper) encoding ─────────────────────────────────────────
    c("dbl-dots", "/v1/public/%252e%252e/models", AMBIGUOUS),
    c("dbl-dots-upper", "/v1/public/%252E%252E%252Fmodels", AMBIGUOUS),
    c("dbl-slash", "/v1/public/..%252fmodels", AMBIGUOUS),
    c("dbl-backslash", "/v1/public/..%255cmodels", AMBIGUOUS),
    c("dbl-semicolon", "/v1/public/x%253b", AMBIGUOUS),
    c("dbl-nul", "/v1/public/x%2500", AMBIGUOUS),
    c("triple-dots", "/v1/public/%25252e%25252e/models", AMBIGUOUS),
    c("dbl-built-from-escapes", "/v1/public/%25%32%65%25%32%65/models", AMBIGUOUS),
    c("dbl-harmless-letter", "/v1/public/%2541", allow(PUB, "/v1/public/%2541")),
    c("dbl-harmless-percent", "/v1/public/100%25", allow(PUB, "/v1/public/100%25")),
    # ── encoded slash ────────────────────────────────────────────────────────
    c("enc-slash-lower", "/v1/public%2f..%2fmodels", AMBIGUOUS),
    c("enc-slash-upper", "/v1/public/..%2Fmodels", AMBIGUOUS),
    c("enc-slash-with-key", "/v1%2fmodels", AMBIGUOUS, key="chat"),
    c("enc-slash-trailing", "/v1/public/x%2f", AMBIGUOUS),
    c("enc-slash-leading", "/%2fv1/models", AMBIGUOUS),
    c("enc-slash-double", "/v1/public/%2F%2F", AMBIGUOUS),
    # ── backslash ────────────────────────────────────────────────────────────
    c("enc-backslash-lower", "/v1/public/..%5cmodels", AMBIGUOUS),
    c("enc-backslash-upper", "/v1/public/..%5Cmodels", AMBIGUOUS),
    c("raw-backslash-dots", "/v1/public/..\\models", AMBIGUOUS),
    c("raw-backslash-everywhere", "/v1/public\\..\\models", AMBIGUOUS),
    c("raw-backslash-trailing", "/v1/public/x\\", AMBIGUOUS),
    c("raw-backslash-leading", "\\v1\\models", nginx(400)),
    # ── ; parameters ─────────────────────────────────────────────────────────
    c("semi-on-protected-with-key", "/v1/models;x", AMBIGUOUS, key="chat"),
    c("semi-dotdot-param", "/v1/public/..;/models", AMBIGUOUS),
    c("semi-then-dotdot", "/v1/public;/../models", AMBIGUOUS),
    c("semi-jsessionid", "/v1/public/x;jsessionid=1", AMBIGUOUS),
    c("semi-encoded", "/v1/public/%3b/../models", AMBIGUOUS),
    c("semi-encoded-upper", "/v1/public/%3B", AMBIGUOUS),
    c("semi-admin", "/admin;x", AMBIGUOUS),
    # ── NUL and control characters ───────────────────────────────────────────
    c("nul-encoded", "/v1/public/%00", nginx(400)),
    c("nul-before-extension", "/v1/public/x%00.json", nginx(400)),
    c("nul-on-protected-with-key", "/v1/models%00", nginx(400), key="chat"),
    c("nul-raw", b"/v1/public/\x00x", nginx(400)),
    c("crlf-encoded", "/v1/public/%0d%0aX-Injected:%20yes", AMBIGUOUS),
    c("lf-encoded", "/v1/public/%0a", AMBIGUOUS),
    c("tab-encoded", "/v1/public/%09", AMBIGUOUS),
    c("del-encoded", "/v1/public/%7f", AMBIGUOUS),
    c("esc-encoded", "/v1/public/%1b%5b0m", AMBIGUOUS),
    c("space-raw", "/v1/public/a b/../../models", nginx(400)),
    c("tab-raw", "/v1/public/a\tb", nginx(400)),
    c("del-raw", "/v1/public/x\x7f", nginx(400)),
    c("space-encoded-inside", "/v1/public/a%20b", allow(PUB, "/v1/public/a%20b")),
    c("space-encoded-then-dotdot", "/v1/public/a%20/../../models", deny(401, MISSING, MODELS)),
    # Fail closed, not a bypass: nginx's $uri ends in a space, which the
    # X-Original-Path header loses in transit (trailing whitespace of a header
    # value is not part of it), so gatekeeper sees the two disagree.
    c("space-encoded-trailing", "/v1/public/a%20", AMBIGUOUS),
    # ── percent-escapes: case, harmless ones, invalid ones ───────────────────
    c("esc-letter-to-protected", "/v1/mod%65ls", deny(401, MISSING, MODELS)),
    c("esc-letter-to-protected-with-key", "/v1/mod%65ls", allow(MODELS, "/v1/models"), key="chat"),
    c("esc-letter-upper-hex", "/v1/pub%6Cic/x", allow(PUB, "/v1/public/x")),
    c("esc-letter-then-dotdot", "/v1/p%75blic/../models", deny(401, MISSING, MODELS)),
    c("esc-utf8-upper", "/v1/public/caf%C3%A9", allow(PUB, "/v1/public/caf%C3%A9")),
    c("esc-utf8-lower", "/v1/public/caf%c3%a9", allow(PUB, "/v1/public/caf%C3%A9")),
    c("raw-utf8", u("/v1/public/café"), allow(PUB, "/v1/public/caf%C3%A9")),
    c("raw-invalid-utf8", b"/v1/public/\xff", AMBIGUOUS),
    c("esc-invalid-utf8", "/v1/public/%ff", AMBIGUOUS),
    c("esc-half-char", "/v1/public/%c3", AMBIGUOUS),
    c("case-upper-prefix", "/V1/public/x", deny(403, "no_route_match")),
    c("case-upper-segment", "/v1/Public/x", deny(401, MISSING, API)),
    c("case-upper-segment-with-key", "/v1/MODELS", allow(API, "/v1/MODELS"), key="chat"),
    c("esc-invalid-zz", "/v1/public/%zz/../models", nginx(400)),
    c("esc-invalid-u", "/v1/public/%u002e%u002e/models", nginx(400)),
    c("esc-truncated", "/v1/public/%2", nginx(400)),
    c("esc-lone-percent", "/v1/public/%", nginx(400)),
    # ── very long targets ────────────────────────────────────────────────────
    c("long-7k-public", "/v1/public/" + "a" * 7000, allow(PUB, "/v1/public/" + "a" * 7000)),
    c("long-8k", "/v1/public/" + "a" * 8192, nginx(414)),
    c("long-8k-protected-with-key", "/v1/models/" + "a" * 8192, nginx(414), key="chat"),
    c("long-64k", "/v1/public/" + "a" * 65536, nginx(414)),
    c("long-64k-dotdot", "/v1/public/" + "../" * 21846 + "v1/models", nginx(414)),
    c("long-query-64k", "/v1/models?q=" + "x" * 65536, nginx(414), key="chat"),
    c("long-slashes", "/" * 4000 + "v1/models", deny(401, MISSING, MODELS)),
    # ── trailing and repeated slashes ────────────────────────────────────────
    c("slash-trailing-protected", "/v1/models/", deny(401, MISSING, API)),
    c("slash-trailing-protected-with-key", "/v1/models/", allow(API, "/v1/models/"), key="chat"),
    c("slash-trailing-public", "/v1/public/", allow(PUB, "/v1/public/")),
    c("slash-public-stem", "/v1/public", allow(PUB, "/v1/public")),
    c("slash-not-a-segment-boundary", "/v1/publicx", deny(401, MISSING, API)),
    c("slash-double-leading", "//v1/models", deny(401, MISSING, MODELS)),
    c("slash-double-leading-with-key", "//v1/models", allow(MODELS, "/v1/models"), key="chat"),
    c("slash-double-then-dotdot", "/v1//public/../models", deny(401, MISSING, MODELS)),
    c("slash-double-before-dotdot", "/v1/public//../models", deny(401, MISSING, MODELS)),
    c("slash-triple-everywhere", "///v1///public///x", allow(PUB, "/v1/public/x")),
    c("slash-double-trailing", "/v1/public/x//", allow(PUB, "/v1/public/x/")),
    # ── query-string tricks ──────────────────────────────────────────────────
    c("query-dotdot", "/v1/public/x?/../../models", allow(PUB, "/v1/public/x?/../../models")),
    c("query-encoded-separators", "/v1/public/x?a=%2e%2e%2f%00%5c",
      allow(PUB, "/v1/public/x?a=%2e%2e%2f%00%5c")),
    c("query-on-protected", "/v1/models?/../public/x", deny(401, MISSING, MODELS)),
    c("query-key-is-not-a-credential", "/v1/models?api_key=" + KEYS["chat"], deny(401, MISSING, MODELS)),
    c("query-double-question", "/v1/public/x??", allow(PUB, "/v1/public/x??")),
    c("query-on-public-stem", "/v1/public?x=1", allow(PUB, "/v1/public?x=1")),
    c("query-encoded-question-then-dotdot", "/v1/models%3f/../public/x", allow(PUB, "/v1/public/x")),
    c("query-encoded-question-segment", "/v1/public/%3f/../../models", deny(401, MISSING, MODELS)),
    c("query-encoded-question-dotdot-out", "/v1/public/x%3F/../../models", deny(401, MISSING, MODELS)),
    c("query-encoded-question-in-name", "/v1/public/a%3Fb", allow(PUB, "/v1/public/a%3Fb")),
    # `%3F` ends no path: the route is /v1/*, and the upstream gets it re-escaped.
    c("query-encoded-question-on-protected-with-key", "/v1/models%3F", allow(API, "/v1/models%3F"), key="chat"),
    # ── fragments ────────────────────────────────────────────────────────────
    c("fragment-dotdot", "/v1/public/x#/../../models", AMBIGUOUS),
    c("fragment-on-protected-with-key", "/v1/models#x", AMBIGUOUS, key="chat"),
    c("fragment-encoded-then-dotdot", "/v1/public/%23/../../models", deny(401, MISSING, MODELS)),
    c("fragment-encoded-in-name", "/v1/public/x%23y", allow(PUB, "/v1/public/x%23y")),
    # ── absolute-form request targets ────────────────────────────────────────
    # (the request line's host is the site's own, or the case is about it)
    c("abs-protected", "http://openai.example.com/v1/models", deny(401, MISSING, MODELS)),
    c("abs-protected-with-key", "http://openai.example.com/v1/models", allow(MODELS, "/v1/models"), key="chat"),
    c("abs-dotdot", "http://openai.example.com/v1/public/../models", deny(401, MISSING, MODELS)),
    c("abs-public", "http://openai.example.com/v1/public/x", allow(PUB, "/v1/public/x")),
    c("abs-upper-scheme", "HTTP://OPENAI.EXAMPLE.COM/v1/public/x", allow(PUB, "/v1/public/x")),
    c("abs-https-scheme", "https://openai.example.com/v1/models", deny(401, MISSING, MODELS)),
    c("abs-no-path", "http://openai.example.com", deny(403, "no_route_match")),
    c("abs-with-port", "http://openai.example.com:8443/v1/public/x", allow(PUB, "/v1/public/x")),
    c("abs-userinfo", "http://user@openai.example.com/v1/models", nginx(400)),
    c("abs-encoded-slash", "http://openai.example.com/v1/public/..%2fmodels", AMBIGUOUS),
    c("abs-above-root", "http://openai.example.com/../v1/models", nginx(400)),
    c("abs-other-host-public", "http://other.host/v1/public/x", MISDIRECTED),
    c("abs-other-host-with-key", "http://other.host/v1/models", MISDIRECTED, key="chat"),
    c("abs-other-site-host", "http://ollama.example.com/v1/public/x", MISDIRECTED),
    c("abs-ipv6-host", "http://[::1]/v1/public/x", MISDIRECTED),
    c("abs-punycode-host", "http://xn--mnchen-3ya.example/v1/models", MISDIRECTED),
    c("abs-raw-utf8-host", u("http://münchen.example/v1/public/x"), nginx(400)),
    c("network-path-reference", "//other.host/v1/models", deny(403, "no_route_match")),
    c("relative-target", "v1/models", nginx(400)),
    c("asterisk-target", "*", nginx(400)),
    # ── Host header ──────────────────────────────────────────────────────────
    c("host-upper-case", "/v1/models", deny(401, MISSING, MODELS), host=("OPENAI.EXAMPLE.COM",)),
    c("host-upper-case-with-key", "/v1/models", allow(MODELS, "/v1/models"), key="chat",
      host=("OPENAI.EXAMPLE.COM",)),
    c("host-trailing-dot", "/v1/public/x", allow(PUB, "/v1/public/x"), host=("openai.example.com.",)),
    c("host-with-port", "/v1/models", allow(MODELS, "/v1/models"), key="chat", host=("openai.example.com:8443",)),
    c("host-punycode", "/v1/models", MISDIRECTED, host=("xn--mnchen-3ya.example",)),
    c("host-punycode-with-key", "/v1/models", MISDIRECTED, key="chat", host=("xn--mnchen-3ya.example",)),
    c("host-raw-utf8-public", "/v1/public/x", MISDIRECTED, host=(u("münchen.example"),)),
    c("host-raw-utf8-with-key", "/v1/models", MISDIRECTED, key="chat", host=(u("münchen.example"),)),
    c("host-ipv6-literal", "/v1/public/x", MISDIRECTED, host=("[::1]:8080",)),
    c("host-other-site", "/v1/public/x", MISDIRECTED, host=("ollama.example.com",)),
    c("host-other-site-with-key", "/v1/models", MISDIRECTED, key="chat", host=("ollama.example.com",)),
    c("host-two-trailing-dots", "/v1/public/x", nginx(400), host=("openai.example.com..",)),
    c("host-duplicate-same", "/v1/public/x", nginx(400), host=("openai.example.com", "openai.example.com")),
    c("host-duplicate-different", "/v1/models", nginx(400), key="chat", host=("a.example", "b.example")),
    c("host-empty", "/v1/public/x", nginx(400), host=("",)),
    c("host-missing-http11", "/v1/public/x", nginx(400), host=None),
    c("host-missing-http10", "/v1/public/x", allow(PUB, "/v1/public/x"), host=None, version="HTTP/1.0"),
    c("host-with-slash", "/v1/public/x", nginx(400), host=("a.example/v1/models",)),
    c("host-with-backslash", "/v1/public/x", MISDIRECTED, host=("a.example\\x",)),
    c("host-asterisk-label", "/v1/models", MISDIRECTED, key="chat", host=("*.example.com",)),
    c("host-abs-form-wins", "http://a.example/v1/models", MISDIRECTED, host=("openai.example.com",)),
    c("host-abs-form-wins-served", "http://openai.example.com/v1/models", deny(401, MISSING, MODELS),
      host=("b.example",)),
    c("host-x-forwarded-host-ignored", "/v1/models", deny(401, MISSING, MODELS),
      headers=(("X-Forwarded-Host", "public.example"),)),
    # ── a host-scoped route (HOST_ROUTE below): gatekeeper's host is nginx's $host
    *[c(id, target, expect, needs=HOST_PUBLIC, **kw) for id, target, expect, kw in [
        ("hostroute-exact", "/v1/models", MISDIRECTED, dict(host=("public.example.test",))),
        ("hostroute-upper-case", "/v1/models", MISDIRECTED, dict(host=("PUBLIC.Example.TEST",))),
        ("hostroute-trailing-dot", "/v1/models", MISDIRECTED, dict(host=("public.example.test.",))),
        ("hostroute-port", "/v1/models", MISDIRECTED, dict(host=("public.example.test:8080",))),
        ("hostroute-dot-and-port", "/v1/models", MISDIRECTED, dict(host=("public.example.test.:8080",))),
        ("hostroute-dotdot-path", "/v1/public/../models", MISDIRECTED, dict(host=("public.example.test",))),
        ("hostroute-abs-form", "http://public.example.test/v1/models", MISDIRECTED,
         dict(host=("openai.example.com",))),
        ("hostroute-abs-form-other", "http://other.example/v1/models", MISDIRECTED,
         dict(host=("public.example.test",))),
        ("hostroute-suffix-attack", "/v1/models", MISDIRECTED, dict(host=("public.example.test.evil.example",))),
        ("hostroute-subdomain", "/v1/models", MISDIRECTED, dict(host=("a.public.example.test",))),
        ("hostroute-prefix-attack", "/v1/models", MISDIRECTED, dict(host=("xpublic.example.test",))),
        ("hostroute-two-trailing-dots", "/v1/models", nginx(400), dict(host=("public.example.test..",))),
        ("hostroute-duplicate", "/v1/models", nginx(400),
         dict(host=("public.example.test", "other.example"))),
        ("hostroute-homograph-utf8", "/v1/models", MISDIRECTED, dict(host=(u("publіc.example.test"),))),  # Cyrillic і
        ("hostroute-punycode-lookalike", "/v1/models", MISDIRECTED, dict(host=("xn--publc-1nf.example.test",))),
        # A host no site serves opens nothing, not even through the bridge.
        ("hostroute-post-bridge", "/v1/chat/completions", MISDIRECTED,
         dict(host=("public.example.test",), method="POST", key="chat")),
    ]],
    # ── headers a client might try to smuggle to gatekeeper or upstream ──────
    c("smuggle-x-original-uri", "/v1/models", deny(401, MISSING, MODELS),
      headers=(("X-Original-URI", "/v1/public/x"), ("X-Original-Path", "/v1/public/x"),
               ("X-Original-Method", "GET"))),
    c("smuggle-x-original-body", "/v1/models", deny(401, MISSING, MODELS),
      headers=(("X-Original-Host", "public.example"), ("X-Original-Body", "present"))),
    c("smuggle-identity-on-public", "/v1/public/x", allow(PUB, "/v1/public/x"),
      headers=(("X-Auth-Client-ID", "chat-app"), ("X-Auth-Route-ID", MODELS), ("X-Auth-Key-ID", "chat-k1"))),
    c("smuggle-rewrite-headers", "/v1/public/x", allow(PUB, "/v1/public/x"),
      headers=(("X-Original-URL", "/v1/models"), ("X-Rewrite-URL", "/v1/models"))),
    c("smuggle-x-auth-status", "/v1/public/x", FORBIDDEN_HEADER, headers=(("X-Auth-Status", "200"),)),
    c("smuggle-x-auth-reason-with-key", "/v1/models", FORBIDDEN_HEADER, key="chat",
      headers=(("X-Auth-Reason", "allow"),)),
    c("smuggle-x-auth-provider-token", "/v1/chat/completions", FORBIDDEN_HEADER, method="POST", key="chat",
      headers=(("X-Auth-Provider-Token", "forward"),)),
    c("smuggle-x-auth-other-on-ollama", "/api/version", FORBIDDEN_HEADER, site=OLL,
      headers=(("x-auth-whatever", "1"),)),
    # ── methods ──────────────────────────────────────────────────────────────
    c("method-head-public", "/v1/public/x", deny(403, "method_not_configured", PUB), method="HEAD"),
    c("method-options-protected", "/v1/models", deny(403, "method_not_configured", MODELS), method="OPTIONS"),
    c("method-custom", "/v1/public/x", deny(403, "method_not_configured", PUB), method="FOO"),
    c("method-lower-case", "/v1/public/x", nginx(400), method="get"),
    c("method-post-dotdot-exact-location", "/v1/public/../models", deny(403, "method_not_configured", MODELS),
      method="POST"),
    c("method-post-dotdot-bridge", "/v1/public/../embeddings", deny(401, MISSING, "openai-embeddings"),
      method="POST"),
    c("method-post-encoded-slash", "/v1/public/..%2fembeddings", AMBIGUOUS, method="POST"),
    c("method-post-double-slash", "//v1/embeddings", deny(401, MISSING, "openai-embeddings"), method="POST"),
    c("method-post-dotdot-with-key", "/v1/public/x/../../files", allow(API, "/v1/files"), method="POST",
      key="chat"),
    # ── the Ollama site ──────────────────────────────────────────────────────
    c("ollama-control-public", "/api/version", allow(VERSION, "/api/version"), site=OLL),
    c("ollama-dotdot", "/api/version/../tags", deny(401, MISSING, TAGS), site=OLL),
    c("ollama-dotdot-with-key", "/api/version/../tags", allow(TAGS, "/api/tags"), site=OLL, key="chat"),
    c("ollama-dotdot-twice", "/api/version/../../api/tags", deny(401, MISSING, TAGS), site=OLL),
    c("ollama-enc-dots", "/api/version/%2e%2e/tags", AMBIGUOUS, site=OLL),
    c("ollama-enc-slash", "/api/version/..%2ftags", AMBIGUOUS, site=OLL),
    c("ollama-dbl-dots", "/api/version/%252e%252e/tags", AMBIGUOUS, site=OLL),
    c("ollama-overlong", "/api/version/%c0%ae%c0%ae/tags", AMBIGUOUS, site=OLL),
    c("ollama-semi-before", "/api/version;/../tags", AMBIGUOUS, site=OLL),
    c("ollama-semi-after", "/api/version/..;/tags", AMBIGUOUS, site=OLL),
    c("ollama-raw-backslash", "/api/version/..\\tags", AMBIGUOUS, site=OLL),
    c("ollama-double-slash", "//api/tags", deny(401, MISSING, TAGS), site=OLL),
    c("ollama-double-slash-public", "/api//version", allow(VERSION, "/api/version"), site=OLL),
    c("ollama-trailing-slash", "/api/version/", deny(401, MISSING, OAPI), site=OLL),
    c("ollama-trailing-dot", "/api/version/.", deny(401, MISSING, OAPI), site=OLL),
    c("ollama-trailing-slash-with-key", "/api/tags/", allow(OAPI, "/api/tags/"), site=OLL, key="chat"),
    c("ollama-dotdot-to-ps", "/api/version/../ps", deny(401, MISSING, OAPI), site=OLL),
    c("ollama-dotdot-to-ps-with-key", "/api/version/../ps", allow(OAPI, "/api/ps"), site=OLL, key="chat"),
    c("ollama-upper-case", "/API/version", deny(403, "no_route_match"), site=OLL),
    c("ollama-stem-without-slash", "/api", deny(401, MISSING, OAPI), site=OLL),
    c("ollama-esc-letter", "/api/%76ersion", allow(VERSION, "/api/version"), site=OLL),
    c("ollama-nul", "/api/version%00", nginx(400), site=OLL),
    c("ollama-blobs-dotdot", "/api/blobs/../tags", deny(401, MISSING, TAGS), site=OLL),
    c("ollama-blobs-enc-slash", "/api/blobs/sha256:x/..%2f..%2fpull", AMBIGUOUS, site=OLL),
    c("ollama-query-dotdot", "/api/version?/../tags", allow(VERSION, "/api/version?/../tags"), site=OLL),
    c("ollama-abs-dotdot", "http://ollama.example.com/api/version/../tags", deny(401, MISSING, TAGS), site=OLL),
    c("ollama-abs-other-host", "http://other.host/api/version", MISDIRECTED, site=OLL),
    c("ollama-abs-other-site-host", "http://openai.example.com/api/version", MISDIRECTED, site=OLL),
    c("ollama-host-other-site", "/api/version", MISDIRECTED, site=OLL, host=("openai.example.com",)),
    c("ollama-post-dotdot-pull", "/api/version/../pull", deny(401, MISSING, "ollama-pull"), site=OLL,
      method="POST"),
    c("ollama-post-dotdot-pull-wrong-client", "/api/version/../pull", deny(403, "no_permission", "ollama-pull"),
      site=OLL, method="POST", key="chat"),
    c("ollama-openai-path-on-ollama-site", "/v1/public/../models", deny(401, MISSING, MODELS), site=OLL),
    c("ollama-host-upper-case", "/api/version/../tags", allow(TAGS, "/api/tags"), site=OLL, key="chat",
      host=("OLLAMA.EXAMPLE.COM.",)),
]


# ---- sending ----------------------------------------------------------------------


@dataclass
class Sent:
    case: Case
    marker: str
    response: RawResponse | None
    error: str | None = None
    records: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    # Whether gatekeeper's log could be read, and whether it logs allows
    # (debug level, scripts/e2e.sh's default; denies are always logged).
    log_read: bool = False
    log_has_allows: bool = False


def as_bytes(v) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode("latin-1")


def request_bytes(case: Case, addr: tuple[str, int], marker: str) -> bytes:
    lines = [b"%s %s %s" % (case.method.encode(), case.target, case.version.encode())]
    headers: list[tuple] = []
    if case.host is DEFAULT:
        headers.append(("Host", f"{SERVER_NAME[case.site]}:{addr[1]}"))
    elif case.host is not None:
        headers += [("Host", h) for h in case.host]
    headers += [(MARKER_HEADER, marker), ("Connection", "close")]
    if case.key:
        headers.append(("Authorization", f"Bearer {KEYS[case.key]}"))
    body = b""
    if case.method == "POST":
        body = b'{"model": "llama3:8b"}'
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    headers += list(case.headers)
    lines += [as_bytes(k) + b": " + as_bytes(v) for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
    """From SOURCE_IP when the stack is on loopback (its own throttle bucket)."""
    if addr[0].startswith("127."):
        try:
            return socket.create_connection(addr, timeout=timeout, source_address=(SOURCE_IP, 0))
        except OSError:
            pass
    return socket.create_connection(addr, timeout=timeout)


def send(addr: tuple[str, int], data: bytes, timeout: float = 10.0) -> bytes:
    chunks = []
    with connect(addr, timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # nginx answered (414, 400) and closed before reading it all
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            if not chunks:
                raise
    return b"".join(chunks)


# ---- what gatekeeper logged ------------------------------------------------------


def read_decisions(path: str) -> dict[str, list[dict]]:
    """gatekeeper's decision events (JSON lines), by X-Request-ID."""
    out: dict[str, list[dict]] = {}
    if not path or not os.path.exists(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"decision"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            rid = event.get("request_id") or event.get("fields", {}).get("request_id")
            if rid and "decision" in event:
                out.setdefault(rid, []).append(event)
    return out


def from_gatekeeper(r: RawResponse) -> bool:
    """Rendered by @gk_deny (gatekeeper.conf), not one of nginx's own pages."""
    return bool(r.headers.get("x-request-id")) and r.headers.get("cache-control") == "no-store"


def client_reason(s: "Sent") -> str | None:
    """The reason the client was told: the deny body's code (a HEAD answer
    has no body: then the reason gatekeeper logged for that request)."""
    reason = deny_reason(s.response.body)
    if reason is None and s.case.method == "HEAD":
        logged = [d.get("reason") for d in s.decisions if d.get("decision") == "deny"]
        reason = logged[0] if logged else None
    return reason


def deny_reason(body: bytes) -> str | None:
    """The reason code of a deny body, in either shape the sites render."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return error.get("code")
    if isinstance(error, str):
        m = re.search(r"\(([a-z_]+)\)$", error)
        return m.group(1) if m else None
    return None


@pytest.fixture(scope="module")
def sent(env, mock) -> dict[str, Sent]:
    """Sends every case once, then collects what the upstream recorded and
    what gatekeeper logged for each (one pass: the waits are paid once)."""
    run = uuid.uuid4().hex[:10]
    results: dict[str, Sent] = {}
    for i, case in enumerate(CASES):
        if case.needs and case.needs not in ROUTE_IDS:
            continue
        addr = env.openai_hostport if case.site == OAI else env.ollama_hostport
        marker = f"pathconf-{run}-{i}"
        try:
            raw = send(addr, request_bytes(case, addr, marker))
            results[case.id] = Sent(case, marker, parse_response(raw) if raw else None,
                                    None if raw else "no answer")
        except (OSError, AssertionError) as e:
            results[case.id] = Sent(case, marker, None, repr(e))
    want_ids = {s.response.headers["x-request-id"] for s in results.values()
                if s.response and s.response.headers.get("x-request-id")}
    by_marker = settle_records(mock, run, expected=sum(1 for s in results.values() if ok(s)))
    for s in results.values():
        s.records = by_marker.get(s.marker, [])
        for r in s.records:
            if r["headers"].get("x-request-id"):
                want_ids.add(r["headers"]["x-request-id"])
    decisions = settle_decisions(env.gk_log, want_ids)
    log_read = bool(env.gk_log) and os.path.exists(env.gk_log)
    log_has_allows = any(d.get("decision") == "allow" for ds in decisions.values() for d in ds)
    for s in results.values():
        s.log_read, s.log_has_allows = log_read, log_has_allows
        ids = {r["headers"].get("x-request-id") for r in s.records}
        if s.response and s.response.headers.get("x-request-id"):
            ids.add(s.response.headers["x-request-id"])
        s.decisions = [d for rid in ids if rid for d in decisions.get(rid, [])]
    return results


def ok(s: Sent) -> bool:
    return s.response is not None and 200 <= s.response.status < 300


def settle_records(mock, run: str, expected: int, timeout: float = 5.0) -> dict[str, list[dict]]:
    """The mock's records of this run by marker, once at least `expected`
    arrived and a further moment brought nothing new (a stray request that
    should never have been forwarded gets that moment to show up)."""
    deadline = time.monotonic() + timeout
    prefix = f"pathconf-{run}-"
    last = -1
    while True:
        mine = [r for r in mock.requests(everything=True)
                if str(r["headers"].get(MARKER_HEADER.lower(), "")).startswith(prefix)]
        if (len(mine) >= expected and len(mine) == last) or time.monotonic() > deadline:
            break
        last = len(mine)
        time.sleep(0.5)
    out: dict[str, list[dict]] = {}
    for r in mine:
        out.setdefault(r["headers"][MARKER_HEADER.lower()], []).append(r)
    return out


def settle_decisions(path: str, ids: set[str], timeout: float = 5.0) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout
    while True:
        decisions = read_decisions(path)
        if ids <= decisions.keys() or time.monotonic() > deadline or not path:
            return decisions
        time.sleep(0.2)


# ---- the policy, as gatekeeper reads it (routes on domain "*") --------------------


def load_routes() -> list[dict]:
    with POLICY.open("rb") as f:
        return tomllib.load(f)["route"]


ROUTES = load_routes()
ROUTE_IDS = {r["id"] for r in ROUTES}


def find_path(routes: list[dict], path: str) -> dict | None:
    """Exact path first, then the longest prefix ending on a segment
    boundary (`/v1/*` matches `/v1`, `/v1/`, `/v1/x`), as routes.rs does."""
    for r in routes:
        if r["path"] == path:
            return r
    prefix = {r["path"][:-2]: r for r in routes if r["path"].endswith("/*")}
    stems = [path] + [path[:i] for i in range(len(path) - 1, -1, -1) if path[i] == "/"]
    for stem in stems:
        if stem in prefix:
            return prefix[stem]
    return None


def route_for(path: str, host: str | None = None) -> dict | None:
    """The route gatekeeper picks: the most specific domain with a route for
    the path (exact host, then `*.suffix` longest first, then `*`), then the
    most specific path (routes.rs)."""
    domains = []
    if host:
        domains.append(host)
        domains += ["*." + host[i + 1:] for i, ch in enumerate(host) if ch == "."]
    domains.append("*")
    for domain in domains:
        found = find_path([r for r in ROUTES if r["domain"] == domain], path)
        if found:
            return found
    return None


def nginx_host(case: Case) -> str | None:
    """`$host` as nginx computes it for the case: the request line's host
    (absolute form), else the Host header, lower-cased, without port and one
    trailing dot; the site's name when the default Host is sent."""
    m = re.match(rb"(?i)https?://([^/:]+)", case.target)
    raw = m.group(1).decode("latin-1") if m else None
    if raw is None and case.host not in (DEFAULT, None) and case.host:
        raw = as_bytes(case.host[0]).decode("latin-1").strip()
        raw = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw
    if raw is None and case.host in (DEFAULT, None):
        raw = SERVER_NAME[case.site]
    return raw.lower().removesuffix(".") if raw else None


def rule_for(route: dict, method: str) -> list[str] | None:
    methods = route.get("methods", {})
    return methods.get(method, methods.get("*"))


def resolve(path: str) -> str:
    """Dot segments resolved and slashes merged (a trailing slash kept)."""
    out: list[str] = []
    segments = path.split("/")
    for seg in segments:
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    trailing = len(segments) > 1 and segments[-1] in ("", ".", "..") and out
    return "/" + "/".join(out) + ("/" if trailing else "")


def decode_once(path: str) -> str:
    return unquote_to_bytes(path).decode("utf-8", "strict")


def readings(path: str) -> list[str]:
    """The paths a lenient upstream might take `path` for: decoded once (what
    gatekeeper matched), literally, and decoded repeatedly with `\\` as `/`
    and `;params` dropped."""
    deep = path
    for _ in range(3):
        deep = unquote_to_bytes(deep).decode("utf-8", "replace")
    deep = deep.replace("\\", "/")
    deep = "/".join(seg.split(";", 1)[0] for seg in deep.split("/"))
    return [decode_once(path), resolve(path), resolve(deep)]


AMBIGUOUS_IN_UPSTREAM = re.compile(r"%(2e|2f|5c|00|3b)|[\\;#\x00-\x1f\x7f]", re.IGNORECASE)


def is_normalised(path: str) -> bool:
    segments = path.split("/")[1:]
    inner = segments[:-1] if segments and segments[-1] == "" else segments
    return path.startswith("/") and all(seg not in ("", ".", "..") for seg in inner)


# ---- the checks -----------------------------------------------------------------


def params() -> list:
    out = []
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
        if case.needs and case.needs not in ROUTE_IDS:
            marks.append(pytest.mark.skip(reason=f"e2e/policy.toml has no route {case.needs!r}"))
        out.append(pytest.param(case.id, id=case.id, marks=marks))
    return out


@pytest.mark.parametrize("case_id", params())
def test_nginx_and_gatekeeper_agree_on_a_crafted_request(sent, case_id):
    s = sent[case_id]
    case = s.case
    assert s.response is not None, f"{case.id}: {s.error}"
    r = s.response
    assert r.status < 500, f"{case.id}: {r.status} {r.body[:200]!r}"
    if ok(s):
        check_allowed(s)
    else:
        check_refused(s)
    check_expectation(s)


def check_allowed(s: Sent) -> None:
    case = s.case
    assert len(s.records) == 1, f"{case.id}: allowed, and the upstream saw {len(s.records)} requests"
    [record] = s.records
    h = record["headers"]
    assert h.get("host") == UPSTREAM_HOST[case.site], f"{case.id}: proxied by the other site? {h.get('host')}"
    assert record.get("backend", case.site) == case.site, f"{case.id}: reached the {record.get('backend')} backend"
    target = record["path"]
    path = target.split("?", 1)[0]
    assert is_normalised(path), f"{case.id}: the upstream got the raw {target!r}"
    assert not AMBIGUOUS_IN_UPSTREAM.search(path), f"{case.id}: the upstream got {target!r}"
    decided = h.get("x-auth-route-id")
    host = nginx_host(case)
    for reading in readings(path):
        route = route_for(reading, host)
        assert route is not None and route["id"] == decided, (
            f"{case.id}: gatekeeper decided route {decided!r}, but the upstream got {target!r}, "
            f"which reads as {reading!r} = route {route and route['id']!r}"
        )
    rule = rule_for(route_for(decode_once(path), host), record["method"])
    assert rule is not None, f"{case.id}: {record['method']} on {decided} has no rule, yet it was allowed"
    if rule == ["public"]:
        assert not h.get("x-auth-client-id"), f"{case.id}: public route, yet an identity reached the upstream: {h}"
    else:
        assert case.key, f"{case.id}: route {decided} needs {rule} and no credential was sent, yet it passed"
        assert h.get("x-auth-client-id"), f"{case.id}: protected route without identity upstream: {h}"
    assert_no_gatekeeper_key(s.records)
    allows = [d for d in s.decisions if d.get("decision") == "allow"]
    if s.log_has_allows:
        assert len(s.decisions) == 1 and allows, f"{case.id}: gatekeeper logged {s.decisions}"
        assert allows[0].get("route") == decided, f"{case.id}: logged {allows[0]}, upstream got {decided}"


def check_refused(s: Sent) -> None:
    case, r = s.case, s.response
    assert s.records == [], f"{case.id}: answered {r.status}, yet reached the upstream as {s.records[0]['path']!r}"
    if deny_reason(r.body) in SITE_CODES:
        # The site's own refusal: gatekeeper was never asked.
        assert not [d for d in s.decisions if d.get("decision")], f"{case.id}: gatekeeper logged {s.decisions}"
        return
    if not from_gatekeeper(r):
        assert deny_reason(r.body) is None, f"{case.id}: a deny body without @gk_deny's headers: {r.headers}"
        return  # nginx's own refusal (400, 414): it never asked gatekeeper
    reason = client_reason(s)
    assert reason, f"{case.id}: a deny without its reason: {r.status} {r.headers} {r.body[:200]!r}"
    assert "x-auth-status" not in r.headers and "x-injected" not in r.headers, r.headers
    if s.log_read:
        denies = [d for d in s.decisions if d.get("decision") == "deny"]
        assert len(s.decisions) == 1 and denies, f"{case.id}: gatekeeper logged {s.decisions} for a {reason}"
        assert denies[0].get("reason") == reason, f"{case.id}: client got {reason}, gatekeeper logged {denies[0]}"


def check_expectation(s: Sent) -> None:
    case, r, want = s.case, s.response, s.case.expect
    got = f"{r.status} {r.body[:160]!r}"
    if want.kind == "allow":
        assert r.status == 200, f"{case.id}: expected an allow on {want.route}, got {got}"
        [record] = s.records
        assert record["headers"].get("x-auth-route-id") == want.route, record["headers"]
        assert record["path"].encode("latin-1") == want.upstream, (case.id, record["path"])
        return
    assert r.status == want.status, f"{case.id}: expected {want.kind} {want.status} {want.reason}, got {got}"
    if want.kind == "nginx":
        assert not from_gatekeeper(r) and deny_reason(r.body) is None, (
            f"{case.id}: expected nginx's own {want.status}, got {got}")
        return
    if want.kind == "site":
        assert deny_reason(r.body) == want.reason, f"{case.id}: expected {want.reason}, got {got}"
        assert s.records == [], f"{case.id}: refused by the site, yet forwarded"
        return
    assert from_gatekeeper(r), f"{case.id}: expected gatekeeper's {want.reason}, got nginx's own {got}"
    assert client_reason(s) == want.reason, f"{case.id}: expected {want.reason}, got {got}"
    if want.route is not None and s.decisions:
        assert s.decisions[0].get("route") == want.route, f"{case.id}: gatekeeper judged {s.decisions[0]}"


# ---- the table itself ------------------------------------------------------------


def test_the_table_is_big_and_not_vacuous(sent):
    """At least 100 cases; the controls really pass, public and with a key."""
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"
    public = [s for s in sent.values() if ok(s) and not s.case.key]
    keyed = [s for s in sent.values() if ok(s) and s.case.key]
    assert len(public) >= 20, [s.case.id for s in public]
    assert len(keyed) >= 10, [s.case.id for s in keyed]
    assert any(s.case.site == OLL for s in public) and any(s.case.site == OLL for s in keyed)


@pytest.mark.offline
def test_the_route_matcher_reads_the_policy_as_gatekeeper_does():
    assert route_for("/v1/models")["id"] == MODELS
    assert route_for("/v1/models/")["id"] == API
    assert route_for("/v1/public")["id"] == PUB
    assert route_for("/v1/publicx")["id"] == API
    assert route_for("/api")["id"] == OAPI
    assert route_for("/healthz") is None
    assert route_for("/v1/models", "a.example")["id"] == MODELS
    assert resolve("/v1/public/x/..") == "/v1/public/"
    assert resolve("/a//b/./c/") == "/a/b/c/"


def test_pipelined_requests_are_each_judged(env, mock):
    """A public request and a protected one in one TCP write: the second is
    judged on its own and never rides on the first one's allow."""
    addr = env.openai_hostport
    marker = f"pathconf-pipe-{uuid.uuid4().hex[:10]}"
    host = f"Host: {SERVER_NAME[OAI]}:{addr[1]}\r\n{MARKER_HEADER}: {marker}\r\n"
    data = (f"GET /v1/public/x HTTP/1.1\r\n{host}\r\n"
            f"GET /v1/public/../models HTTP/1.1\r\n{host}Connection: close\r\n\r\n").encode()
    raw = send(addr, data)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3})", raw)]
    assert statuses == [200, 401], raw[:400]
    time.sleep(0.5)
    records = [r for r in mock.requests(everything=True) if r["headers"].get(MARKER_HEADER.lower()) == marker]
    assert [r["path"] for r in records] == ["/v1/public/x"], records
