//! Criterion benchmarks of the decision, in process: a whole `/authz`
//! decision (parse + `Authorizer::decide`) against a policy of 1,000 routes,
//! 10,000 clients and 20,000 grants, and the two steps that scale with the
//! request — route matching and path normalisation.
//!
//! Every scenario asserts its expected outcome once, before it is timed, so a
//! wrong setup fails the run instead of measuring a deny. Limits are on (the
//! limiter is charged) but large enough never to deny.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use tokio::runtime::Runtime;

use gatekeeper::clock::SystemClock;
use gatekeeper::core::apikey;
use gatekeeper::core::decision::{Decision, Reason};
use gatekeeper::core::glob::Glob;
use gatekeeper::core::limiter::LocalLimiter;
use gatekeeper::core::model::{
    Client, ClientStatus, CredentialSet, CredentialType, Digest, Document, DomainPattern, Grant,
    GrantMethods, KeyRecord, KeyStatus, Limit, Method, MethodRule, PathPattern, Route,
};
use gatekeeper::core::path::normalise;
use gatekeeper::core::policy::Policy;
use gatekeeper::core::request::{AuthRequest, RawRequest};
use gatekeeper::core::routes::RouteTable;
use gatekeeper::decide::{Authorizer, Settings};
use gatekeeper::state::bcrypt::BasicVerifier;
use gatekeeper::state::State;

/// Service domains with an `/api/*` and a `/v1/chat/completions` route each.
const SERVICES: usize = 450;
/// `*.regionN.example.com` routes; with the four shared ones, 1,000 in all.
const REGIONS: usize = 96;
const CLIENTS: usize = 10_000;
/// On, but never the reason for a deny: at one request per 10 ns even a
/// single key hit back to back never runs ahead of the clock.
const LARGE_LIMIT: &str = "100000000/1s";
/// The client whose Basic secret is set (bcrypt cost 4).
const BASIC_CLIENT: usize = 1;
const BASIC_SECRET: &str = "s3cret";

fn route(id: String, domain: &str, path: &str, rule: MethodRule, method: Option<&str>) -> Route {
    let parse_method = |m: &str| Method::parse(m).expect("a valid method");
    let methods: BTreeMap<Method, MethodRule> = method
        .map(|m| (parse_method(m), rule))
        .into_iter()
        .collect();
    Route {
        id: id.parse().unwrap(),
        domain: DomainPattern::parse(domain).expect("a valid domain"),
        path: PathPattern::parse(path).expect("a valid path"),
        service: "upstream".into(),
        priority: 0,
        any_method: method.is_none().then_some(rule),
        methods,
    }
}

fn accepts(types: &[CredentialType]) -> MethodRule {
    MethodRule::Credentials(types.iter().copied().collect::<CredentialSet>())
}

/// 1,000 routes: per service an `/api/*` (API key or Basic, any method) and
/// an exact `POST /v1/chat/completions` (API key); region wildcards; and a
/// few shared `*.example.com` and `*` routes. No route matches every path.
fn routes() -> Vec<Route> {
    let api = accepts(&[CredentialType::ApiKey, CredentialType::Basic]);
    let key = accepts(&[CredentialType::ApiKey]);
    let mut out = Vec::with_capacity(1_000);
    for n in 0..SERVICES {
        let host = format!("svc{n}.example.com");
        out.push(route(format!("api-{n}"), &host, "/api/*", api, None));
        let chat = "/v1/chat/completions";
        out.push(route(format!("chat-{n}"), &host, chat, key, Some("POST")));
    }
    for n in 0..REGIONS {
        let domain = format!("*.region{n}.example.com");
        out.push(route(format!("region-{n}"), &domain, "/api/*", key, None));
    }
    let shared = [
        ("public", "*.example.com", "/public/*", MethodRule::Public),
        ("health", "*", "/health", MethodRule::Public),
        ("status", "*", "/status/*", MethodRule::Public),
        ("models", "*", "/v1/models", key),
    ];
    for (id, domain, path, rule) in shared {
        out.push(route(id.into(), domain, path, rule, Some("GET")));
    }
    out
}

fn client_id(n: usize) -> String {
    format!("client-{n}")
}

/// Even clients hold a generated `gk_` key, odd ones a legacy key.
fn key_for(n: usize) -> (String, KeyRecord) {
    let (key, id) = if n % 2 == 0 {
        let generated = apikey::generate().expect("the OS RNG works");
        (generated.key.expose().to_owned(), generated.public_id)
    } else {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).expect("the OS RNG works");
        let key = format!("legacy-key-{n}-{}", hex::encode(random));
        (key, format!("legacy-{n}"))
    };
    let record = KeyRecord {
        id: id.parse().unwrap(),
        client_id: client_id(n).parse().unwrap(),
        digest: Digest::of(key.as_bytes()),
        status: KeyStatus::Active,
        expires_at: None,
    };
    (key, record)
}

fn large_limit() -> Limit {
    Limit::parse(LARGE_LIMIT).expect("a valid limit")
}

fn client(n: usize, basic_hash: &Arc<str>) -> Client {
    Client {
        id: client_id(n).parse().unwrap(),
        name: format!("Client {n}").into(),
        status: ClientStatus::Active,
        limit: (n % 5 == 0).then(large_limit),
        secret_hash: (n == BASIC_CLIENT).then(|| basic_hash.clone()),
        hmac_secret: None,
    }
}

/// Every client may use its service's `/api/*` (limited); a third of them
/// its chat route too; client 0's chat grant is restricted to `gpt-4o*`.
fn grants(n: usize) -> Vec<Grant> {
    let grant = |route: String, limit: Option<Limit>| Grant {
        client_id: client_id(n).parse().unwrap(),
        route_id: route.parse().unwrap(),
        methods: GrantMethods::Any,
        models: None,
        limit,
    };
    let service = n % SERVICES;
    let mut out = vec![grant(format!("api-{service}"), Some(large_limit()))];
    if n % 3 == 0 {
        let mut chat = grant(format!("chat-{service}"), Some(large_limit()));
        if n == 0 {
            chat.models = Some(vec![Glob::parse("gpt-4o*").expect("a valid glob")]);
        }
        out.push(chat);
    }
    out
}

/// The authorizer, every client's key by client number, and the runtime
/// that drives `decide` (current-thread, as cheap as `block_on` gets).
struct Fixture {
    authorizer: Authorizer,
    keys: Vec<String>,
    rt: Runtime,
}

fn fixture() -> Fixture {
    let hash = bcrypt::hash(BASIC_SECRET, 4).expect("bcrypt hashes");
    let hash: Arc<str> = hash.into();
    let mut doc = Document {
        routes: routes(),
        ..Document::default()
    };
    let mut keys = Vec::with_capacity(CLIENTS);
    for n in 0..CLIENTS {
        let (key, record) = key_for(n);
        keys.push(key);
        doc.keys.push(record);
        doc.clients.push(client(n, &hash));
        doc.grants.extend(grants(n));
    }
    let authorizer = Authorizer::new(
        Policy::build(doc).expect("the benchmark policy is valid"),
        State::in_process(
            BasicVerifier::new(Duration::from_secs(300), 10_000),
            LocalLimiter::new(1_000_000),
            0,
        ),
        Arc::new(SystemClock::default()),
        Settings {
            allow_query_key: false,
            hmac_window_secs: 300,
            ..Settings::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    Fixture {
        authorizer,
        keys,
        rt,
    }
}

/// The headers nginx forwards for one request, owned.
struct Request {
    method: &'static str,
    host: String,
    uri: String,
    authorization: Option<String>,
    body: Option<&'static str>,
}

impl Request {
    fn new(method: &'static str, host: &str, uri: &str) -> Request {
        Request {
            method,
            host: host.to_owned(),
            uri: uri.to_owned(),
            authorization: None,
            body: None,
        }
    }

    fn bearer(mut self, key: &str) -> Request {
        self.authorization = Some(format!("Bearer {key}"));
        self
    }

    fn raw(&self) -> RawRequest<'_> {
        RawRequest {
            method: Some(self.method.as_bytes()),
            uri: Some(self.uri.as_bytes()),
            host: Some(self.host.as_bytes()),
            authorization: self.authorization.as_deref().map(str::as_bytes),
            body_marker: self.body.map(|_| b"present".as_slice()),
            body: self.body.map(str::as_bytes),
            ..RawRequest::default()
        }
    }
}

/// One whole decision, as `/authz` makes it.
fn decide(rt: &Runtime, authorizer: &Authorizer, request: &Request) -> Decision {
    let raw = request.raw();
    match AuthRequest::parse(&raw) {
        Ok(req) => rt
            .block_on(authorizer.decide(&req))
            .unwrap_or_else(|outage| panic!("benchmark decision hit an outage: {outage}")),
        Err(reason) => panic!("benchmark request refused at parse: {reason:?}"),
    }
}

/// The outcome a benchmarked request must have.
#[derive(Clone, Copy)]
enum Check {
    /// `limited`: a rate limit was charged (the allow carries rate headers).
    Allow {
        limited: bool,
    },
    Deny(Reason),
}

impl Check {
    fn assert(self, rt: &Runtime, authorizer: &Authorizer, request: &Request) {
        match (self, decide(rt, authorizer, request)) {
            (Check::Allow { limited }, Decision::Allow(allow)) => {
                assert_eq!(allow.rate.is_some(), limited, "rate limit charged")
            }
            (Check::Deny(reason), Decision::Deny(deny)) => assert_eq!(deny.reason, reason),
            (_, d) => panic!(
                "{} {}: unexpected {:?}",
                request.method,
                request.uri,
                d.reason()
            ),
        }
    }
}

/// 64 allowed (client, route) pairs, spread over the clients, both key
/// kinds, and the `/api/*` and chat routes; every one charges a limit.
fn allowed_pairs(keys: &[String]) -> Vec<Request> {
    (0..64)
        .map(|i| {
            let n = (i * 157 + 3) % CLIENTS;
            let host = format!("svc{}.example.com", n % SERVICES);
            let request = match n % 3 == 0 && i % 4 < 2 {
                true => Request::new("POST", &host, "/v1/chat/completions"),
                false => Request::new("GET", &host, "/api/v1/items/42?expand=owner"),
            };
            request.bearer(&keys[n])
        })
        .collect()
}

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Asserts `request`'s outcome, times its decision, then asserts again: a
/// limiter that started denying mid-run would have measured another path.
fn bench_request(g: &mut Group<'_>, f: &Fixture, id: BenchmarkId, r: &Request, check: Check) {
    check.assert(&f.rt, &f.authorizer, r);
    g.bench_function(id, |b| {
        b.iter(|| decide(&f.rt, &f.authorizer, black_box(r)))
    });
    check.assert(&f.rt, &f.authorizer, r);
}

fn bench_decision(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("decision");
    // The floor every decision below includes: entering the runtime.
    g.bench_function("block_on_baseline", |b| b.iter(|| f.rt.block_on(async {})));
    bench_api_key_allow(&mut g, &f);
    let public = Request::new("GET", "svc7.example.com", "/health");
    let id = BenchmarkId::from_parameter("public_allow");
    bench_request(&mut g, &f, id, &public, Check::Allow { limited: false });
    bench_invalid_keys(&mut g, &f);
    let nowhere = Request::new("GET", "unknown.example.org", "/nothing/here").bearer(&f.keys[2]);
    let id = BenchmarkId::from_parameter("no_route_deny");
    bench_request(&mut g, &f, id, &nowhere, Check::Deny(Reason::NoRouteMatch));
    bench_basic_allow(&mut g, &f);
    g.finish();
}

/// The rotation over 64 allowed pairs, and client 0's grant with `models`.
fn bench_api_key_allow(g: &mut Group<'_>, f: &Fixture) {
    let pairs = allowed_pairs(&f.keys);
    let allowed = Check::Allow { limited: true };
    for request in &pairs {
        allowed.assert(&f.rt, &f.authorizer, request);
    }
    g.bench_function("api_key_allow_warm", |b| {
        let mut next = pairs.iter().cycle();
        b.iter(|| {
            let request = next.next().expect("cycles");
            decide(&f.rt, &f.authorizer, black_box(request))
        })
    });
    for request in &pairs {
        allowed.assert(&f.rt, &f.authorizer, request);
    }
    let mut models =
        Request::new("POST", "svc0.example.com", "/v1/chat/completions").bearer(&f.keys[0]);
    models.body = Some(r#"{"model":"gpt-4o-mini","messages":[]}"#);
    let id = BenchmarkId::from_parameter("api_key_allow_models");
    bench_request(g, f, id, &models, allowed);
}

/// A `gk_` key whose checksum fails (refused before any look-up), and a
/// well-formed legacy key that no client holds (refused after the digest).
fn bench_invalid_keys(g: &mut Group<'_>, f: &Fixture) {
    let mut bad_checksum = f.keys[0].clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let bad_checksum = String::from_utf8(bad_checksum).expect("ASCII");
    let unknown = "legacy-key-unknown-0123456789abcdef";
    for (case, key) in [
        ("gk_bad_checksum", bad_checksum.as_str()),
        ("legacy_unknown", unknown),
    ] {
        let request = Request::new("GET", "svc0.example.com", "/api/v1/items/42").bearer(key);
        let id = BenchmarkId::new("invalid_key_deny", case);
        bench_request(g, f, id, &request, Check::Deny(Reason::InvalidCredentials));
    }
}

/// The first verification runs bcrypt; every timed one hits the cache.
fn bench_basic_allow(g: &mut Group<'_>, f: &Fixture) {
    let basic = basic_request();
    Check::Allow { limited: true }.assert(&f.rt, &f.authorizer, &basic);
    assert_eq!(f.authorizer.bcrypt_runs(), 1);
    let id = BenchmarkId::from_parameter("basic_allow_warm");
    bench_request(g, f, id, &basic, Check::Allow { limited: true });
    let runs = f.authorizer.bcrypt_runs();
    assert_eq!(runs, 1, "Basic was measured from the cache");
}

fn basic_request() -> Request {
    let n = BASIC_CLIENT;
    let credential = format!("{}:{BASIC_SECRET}", client_id(n));
    let token = base64::engine::general_purpose::STANDARD.encode(credential);
    let host = format!("svc{}.example.com", n % SERVICES);
    let mut request = Request::new("GET", &host, "/api/v1/items/42");
    request.authorization = Some(format!("Basic {token}"));
    request
}

/// Ten routes per domain `hN.example.com`, nested prefixes at three depths,
/// `*.hN.example.com` wildcards and one `*` route per domain: `n` in all
/// (a multiple of ten).
fn route_table(n: usize) -> RouteTable {
    let templates: [(&str, &str); 10] = [
        ("h", "/api/*"),
        ("h", "/api/v1/*"),
        ("h", "/api/v1/models/*"),
        ("h", "/v1/chat/completions"),
        ("h", "/v1/embeddings"),
        ("*.h", "/api/*"),
        ("*.h", "/api/v1/*"),
        ("*.h", "/api/v1/models/*"),
        ("*.h", "/v1/*"),
        ("*", "/shared{d}/*"),
    ];
    let routes = (0..n)
        .map(|i| {
            let (d, (domain, path)) = (i / 10, templates[i % 10]);
            let domain = match domain {
                "*" => "*".to_owned(),
                prefix => format!("{prefix}{d}.example.com"),
            };
            let path = path.replace("{d}", &d.to_string());
            route(format!("r{i}"), &domain, &path, MethodRule::Public, None)
        })
        .collect();
    RouteTable::build(routes).expect("unique routes")
}

/// (host, path, expected route id): a deep prefix under the exact host and
/// under a wildcard host, an exact path, and a fall-through to `*`.
fn lookups(n: usize) -> Vec<(String, String, String)> {
    let domains = n / 10;
    let deep = "/api/v1/models/gpt-4o/versions/7";
    (0..16.min(domains))
        .flat_map(|j| {
            let d = j * (domains / 16.min(domains));
            let host = format!("h{d}.example.com");
            let id = |template: usize| format!("r{}", d * 10 + template);
            [
                (host.clone(), deep.to_owned(), id(2)),
                (format!("eu.{host}"), deep.to_owned(), id(7)),
                (host.clone(), "/v1/chat/completions".to_owned(), id(3)),
                (host, format!("/shared{d}/a/b/c"), id(9)),
            ]
        })
        .collect()
}

fn bench_route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10, 1_000, 100_000] {
        let table = route_table(n);
        let cases = lookups(n);
        for (host, path, id) in &cases {
            let found = table.lookup(Some(host), path).map(|r| &*r.id);
            assert_eq!(found, Some(id.as_str()), "{host}{path}");
        }
        group.bench_with_input(BenchmarkId::new("lookup", n), &cases, |b, cases| {
            let mut next = cases.iter().cycle();
            b.iter(|| {
                let (host, path, _) = next.next().expect("cycles");
                table.lookup(Some(black_box(host)), black_box(path))
            })
        });
    }
    let typical = "/v1/chat/completions";
    let uris = [
        ("typical", "/v1/chat/completions?x=1", typical),
        ("dotted", "/a/./b/../c/%41", "/a/c/A"),
    ];
    for (case, uri, expected) in uris {
        let got = normalise(uri.as_bytes(), None).expect("normalises").path;
        assert_eq!(got, expected);
        group.bench_function(BenchmarkId::new("path_normalise", case), |b| {
            b.iter(|| normalise(black_box(uri.as_bytes()), None))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decision, bench_route_match);
criterion_main!(benches);
