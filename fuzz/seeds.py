"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/.

Run once when a corpus is started from scratch (scripts/fuzz.sh does it for a
target whose corpus directory is missing or empty); the committed corpora
already hold these seeds, or what minimising kept of them. Seeds are named
seed-<sha1>, so running this twice adds nothing.

Sources: the URIs of src/core/path_tests.rs, the hosts of src/core/host.rs,
headers shaped like the ones in src/core/credential_tests.rs, the example
and end-to-end policy files, and a few hand-written cases per target.
"""

import base64
import hashlib
import hmac
import os
import re
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

SIG = "0123456789abcdef" * 4
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def rust_string(literal):
    """The bytes of a simple Rust string literal's body."""
    def unescape(m):
        e = m.group(1)
        simple = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
        if e in simple:
            return simple[e]
        if e.startswith("u{"):
            return chr(int(e[2:-1], 16))
        if e.startswith("x"):
            return chr(int(e[1:], 16))
        return m.group(0)
    text = re.sub(r"\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)", unescape, literal)
    return text.encode("utf-8")


def first_strings_of_cases(path):
    """The first string of each `("…", …)` tuple in a test table."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        source = f.read()
    return [rust_string(m) for m in re.findall(r'^\s*\("((?:[^"\\]|\\.)*)",', source, re.M)]


def checksum(body):
    n = zlib.crc32(body.encode())
    digits = []
    for _ in range(6):
        digits.append(BASE62[n % 62])
        n //= 62
    return "".join(reversed(digits))


def gk_key(public_id, secret):
    body = f"gk_{public_id}_{secret}"
    return body + checksum(body)


def path_seeds():
    seeds = first_strings_of_cases("src/core/path_tests.rs")
    seeds += [
        b"/public/x", b"/public/a/../../admin/x", b"/admin/x", b"/v1/models",
        b"/v1/models?api_key=fuzz-legacy-key-team-a", b"/x?api_key=fuzz-legacy-key-team-a",
        b"/%70ublic/x", b"/public//x/./y/", b"/caf\xc3%a9", b"/a%2541/%25", b"/a%3f%23%20b",
    ]
    return seeds


def host_seeds():
    return first_strings_of_cases("src/core/host.rs") + [
        b"api.example.com", b"API.EXAMPLE.COM.:443", b"[::FFFF:10.0.0.1]:8080",
    ]


def credential_seeds():
    b64 = lambda raw: base64.b64encode(raw).decode()
    header = f'HMAC client_id="team-a",timestamp="1700000000",nonce="n-1",signature="{SIG}"'
    lines = [
        "Bearer gk_abc", "bearer k1", "ApiKey k1", "  Bearer   k1  ", "k1", "Bearer", "Bearer a b",
        "Token k1", f"Basic {b64(b'team-a:pw')}", f"basic {b64(b'team-a:p:w')}", "Basic !!!!",
        f"Basic {b64(b'team-a:')}", header, header.replace("HMAC", "hmac"),
        "Bearer a\nb\napi_key=c", "\nb\napi_key=c", " \t \nb", "\n  \napi_key=c",
        "\n\nx=1&api_key=c&y=2", "\n\napi_key=a%2Bb%2f", "\n\napi_key=a+b", "\n\napi_key=a%zz",
        "\n\napi_key=", "\n\n?api_key=c",
    ]
    return [line.encode() for line in lines] + [b"\n\xff\napi_key=c", b"Bearer \xff\xfe"]


def hmac_seeds():
    secret = b"team-a-shared-secret"
    signed = hmac.new(secret, b"GET\n/api/tags\n1700000000\nnonce-get-1\n", hashlib.sha256)
    return [s.encode() for s in [
        f'client_id="team-a",timestamp="1700000000",nonce="n-1",signature="{SIG}"',
        f"nonce=n-1,signature={SIG},client_id=team-a,timestamp=1700000000",
        f'timestamp=1700000000, client_id="team-a",   nonce=n-1, signature="{SIG}"',
        f"client_id=ops,timestamp=1700000000,nonce=nonce-get-1,signature={signed.hexdigest()}",
        f"client_id=a,timestamp=-1,nonce=n,signature={SIG}",
        f"client_id=a,timestamp=1,nonce=n,signature={SIG.upper()}",
        f"client_id=a,timestamp=1,nonce=n,nonce=n,signature={SIG}",
        f'client_id="a,timestamp=1,nonce=n,signature={SIG}',
        "client_id=a,timestamp=1,nonce=n",
    ]]


def api_key_seeds():
    keys = [
        "gk_sh92javii9sd_I8WbNLUqvXdscDvSRQdWtDbJAQmir7Cu1ubU0I",
        gk_key("0123456789ab", "A" * 32), gk_key("zzzzzzzzzzzz", BASE62[:32]),
        "gk_sh92javii9sd_I8WbNLUqvXdscDvSRQdWtDbJAQmir7Cu1ubU0J", "gk_", "gk_abc",
        "sk-legacy-0123456789", "GK_ABC", "x", "a b", "cl\u00e9", "a" * 513,
    ]
    return [k.encode() for k in keys]


def file_seeds():
    seeds = []
    for path in ["examples/gatekeeper.toml", "e2e/policy.toml"]:
        with open(os.path.join(ROOT, path), "rb") as f:
            seeds.append(f.read())
    seeds.append(b"""[[route]]
id = "r1"
domain = "*.example.com."
path = "/v1/*"
service = "api"
methods = { GET = ["api_key", "provider_token"], "*" = ["hmac"] }

[[client]]
id = "c1"
name = "Client One"
limit = "10/1s"
burst = 3
hmac_secret = { file = "team-a.secret" }

[[client.key]]
id = "k1"
digest = "sha256:d7779ce4607443bc806e6c089dbc5ac46e189de04606344255c5f4be908d403e"
expires_at = 2027-01-01T00:00:00Z

[[client]]
id = "c2"
name = "Client Two"
status = "suspended"
hmac_secret = { env = "FUZZ_SECRET" }

[[grant]]
client = "c1"
route = "r1"
methods = ["GET", "POST"]
models = ["llama3*", "qwen?.5:7b"]
limit = "60/1m"
""")
    seeds.append(b"""[[route]]
id = "r1"
domain = "*"
path = "/x"
service = "s"
methods = { GET = [] }

[[grant]]
client = "nobody"
route = "r1"
methods = ["*", "GET"]
""")
    return seeds


TARGETS = {
    "path": path_seeds,
    "host": host_seeds,
    "credential": credential_seeds,
    "hmac_header": hmac_seeds,
    "api_key": api_key_seeds,
    "file": file_seeds,
}


def write(target, seeds):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    for seed in seeds:
        name = "seed-" + hashlib.sha1(seed).hexdigest()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(seed)
    return len(seeds)


def main(targets):
    for target in targets or TARGETS:
        print(f"{target}: {write(target, TARGETS[target]())} seeds")


if __name__ == "__main__":
    main(sys.argv[1:])
