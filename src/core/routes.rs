//! The in-memory route table: which route answers a (host, path) pair.
//!
//! The matching order is total (DESIGN §3, §10): among the routes whose
//! domain matches the host *and* whose path matches the path, the most
//! specific domain wins (exact > longest `*.suffix` > `*`), then the most
//! specific path (exact > longest prefix), then the higher `priority`.
//!
//! The table is indexed so that a lookup costs a handful of hash probes —
//! one per domain level of the host times one per segment of the path — and
//! never scans the routes; it allocates nothing. This module owns matching
//! only: it does not normalise hosts or paths (the caller passes them
//! lower-cased and normalised) and does not judge methods or credentials.

use std::collections::HashMap;

use super::ids::RouteId;
use super::model::{DomainPattern, PathPattern, Route};

/// Two routes with the same domain and path; the ids of both, in load order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("routes `{first}` and `{second}` have the same domain and path")]
pub struct DuplicateRoute {
    pub first: RouteId,
    pub second: RouteId,
}

/// The routes of one domain key, by path: exact paths and prefix stems
/// (`/api/*` is stored as `/api`, `/*` as the empty stem).
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<Box<str>, usize>,
    prefix: HashMap<Box<str>, usize>,
}

impl PathIndex {
    /// Records `idx` under its path; returns the index already there, if any.
    fn insert(&mut self, path: &PathPattern, idx: usize) -> Option<usize> {
        let (map, key) = match path {
            PathPattern::Exact(p) => (&mut self.exact, p),
            PathPattern::Prefix(stem) => (&mut self.prefix, stem),
        };
        match map.get(key.as_str()) {
            Some(&first) => Some(first),
            None => {
                map.insert(key.as_str().into(), idx);
                None
            }
        }
    }

    /// The most specific route for `path`: its exact entry, else the longest
    /// prefix stem that ends on a segment boundary of it.
    fn find(&self, path: &str) -> Option<usize> {
        if let Some(&idx) = self.exact.get(path) {
            return Some(idx);
        }
        if self.prefix.is_empty() {
            return None;
        }
        stems(path).find_map(|stem| self.prefix.get(stem).copied())
    }
}

/// The stems a prefix route may have to match `path`, longest first: the
/// path itself, then every ancestor ending just before a `/`
/// (`/a/b/c` → `/a/b/c`, `/a/b`, `/a`, ``; `/a/b/` → `/a/b/`, `/a/b`, `/a`,
/// ``). So `/api` matches `/api`, `/api/`, `/api/x`, never `/apix`.
fn stems(path: &str) -> impl Iterator<Item = &str> {
    let ancestors = path.rmatch_indices('/').map(move |(i, _)| &path[..i]);
    std::iter::once(path).chain(ancestors)
}

/// The strict suffixes of a host a `*.suffix` route may name, longest first
/// (`a.b.example.com` → `b.example.com`, `example.com`, `com`). The host
/// itself is not one: `*.example.com` never matches `example.com`.
fn suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.').map(move |(i, _)| &host[i + 1..])
}

/// The routes, indexed by domain then by path.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Route ids are unique by the sources' validation; should one repeat,
    /// `get` answers the first.
    by_id: HashMap<RouteId, usize>,
    exact: HashMap<Box<str>, PathIndex>,
    suffix: HashMap<Box<str>, PathIndex>,
    any: PathIndex,
}

impl RouteTable {
    /// Indexes `routes`; the same (domain, path) twice is an error. Patterns
    /// are compared as given: they are already normalised (lower-case hosts).
    pub fn build(routes: Vec<Route>) -> Result<RouteTable, DuplicateRoute> {
        let mut table = RouteTable::default();
        for (idx, route) in routes.iter().enumerate() {
            if let Some(first) = table.index(route, idx) {
                return Err(DuplicateRoute {
                    first: routes[first].id.clone(),
                    second: route.id.clone(),
                });
            }
            table.by_id.entry(route.id.clone()).or_insert(idx);
        }
        table.routes = routes;
        Ok(table)
    }

    /// Adds one route to the domain and path indexes; returns the index of
    /// an earlier route with the same domain and path, if any.
    fn index(&mut self, route: &Route, idx: usize) -> Option<usize> {
        let paths = match &route.domain {
            DomainPattern::Exact(host) => self.exact.entry(host.as_str().into()).or_default(),
            DomainPattern::Suffix(suffix) => self.suffix.entry(suffix.as_str().into()).or_default(),
            DomainPattern::Any => &mut self.any,
        };
        paths.insert(&route.path, idx)
    }

    /// The route for a request. `host` is lower-case without port or trailing
    /// dot (`None` when nginx sent none: only `*` routes match); `path` is
    /// normalised and compared case-sensitively.
    ///
    /// Domain levels are tried from most to least specific and the first
    /// level with any path match wins, so a `*` route still answers a path
    /// that no exact-host route covers. Within a level a (domain, path) pair
    /// is unique, and an exact path or a longer stem is strictly more
    /// specific, so `priority` — last in the documented order — never has two
    /// otherwise equal candidates left to separate.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let idx = host
            .and_then(|host| self.find_for_host(host, path))
            .or_else(|| self.any.find(path))?;
        self.routes.get(idx)
    }

    /// The exact host's routes, then those of its `*.suffix` levels.
    fn find_for_host(&self, host: &str, path: &str) -> Option<usize> {
        if let Some(idx) = self.exact.get(host).and_then(|p| p.find(path)) {
            return Some(idx);
        }
        if self.suffix.is_empty() {
            return None;
        }
        suffixes(host).find_map(|s| self.suffix.get(s).and_then(|p| p.find(path)))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The route with this id.
    pub fn get(&self, id: &RouteId) -> Option<&Route> {
        self.by_id.get(id).and_then(|&idx| self.routes.get(idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn route(id: &str, domain: &str, path: &str) -> Route {
        Route {
            id: id.parse().unwrap(),
            domain: DomainPattern::parse(domain).unwrap(),
            path: PathPattern::parse(path).unwrap(),
            service: "svc".into(),
            priority: 0,
            methods: BTreeMap::new(),
            any_method: None,
        }
    }

    fn table(routes: &[(&str, &str, &str)]) -> RouteTable {
        let routes = routes.iter().map(|(id, d, p)| route(id, d, p)).collect();
        RouteTable::build(routes).unwrap()
    }

    /// Asserts each (host, path) → expected route id (`None`: no match).
    fn check(table: &RouteTable, cases: &[(Option<&str>, &str, Option<&str>)]) {
        for (host, path, expected) in cases {
            let got = table.lookup(*host, path).map(|r| &*r.id);
            assert_eq!(got, *expected, "host {host:?} path {path:?}");
        }
    }

    #[test]
    fn exact_domain_beats_suffix_beats_any_whatever_the_path_specificity() {
        let t = table(&[
            ("exact-all", "api.example.com", "/*"),
            ("suffix-exact", "*.example.com", "/v1/chat"),
            ("any-exact", "*", "/v1/chat"),
            ("suffix-all", "*.other.com", "/*"),
        ]);
        check(
            &t,
            &[
                (Some("api.example.com"), "/v1/chat", Some("exact-all")),
                (Some("x.example.com"), "/v1/chat", Some("suffix-exact")),
                (Some("x.other.com"), "/v1/chat", Some("suffix-all")),
                (Some("elsewhere.org"), "/v1/chat", Some("any-exact")),
            ],
        );
    }

    #[test]
    fn falls_through_to_suffix_and_any_when_the_exact_domain_has_no_path_match() {
        let t = table(&[
            ("exact", "api.example.com", "/v1/*"),
            ("suffix", "*.example.com", "/v2/*"),
            ("any", "*", "/health"),
        ]);
        check(
            &t,
            &[
                (Some("api.example.com"), "/v1/x", Some("exact")),
                (Some("api.example.com"), "/v2/x", Some("suffix")),
                (Some("api.example.com"), "/health", Some("any")),
                (Some("api.example.com"), "/v3", None),
            ],
        );
    }

    #[test]
    fn longer_suffix_beats_shorter_and_the_apex_is_not_a_subdomain() {
        let t = table(&[
            ("long", "*.b.example.com", "/*"),
            ("short", "*.example.com", "/*"),
            ("tld", "*.com", "/*"),
        ]);
        check(
            &t,
            &[
                (Some("a.b.example.com"), "/", Some("long")),
                (Some("x.y.b.example.com"), "/", Some("long")),
                (Some("b.example.com"), "/", Some("short")),
                (Some("a.example.com"), "/", Some("short")),
                (Some("example.com"), "/", Some("tld")),
                (Some("com"), "/", None),
                (Some("example.org"), "/", None),
            ],
        );
    }

    #[test]
    fn exact_path_beats_prefix_and_the_longest_prefix_wins() {
        let t = table(&[
            ("root", "*", "/*"),
            ("api", "*", "/api/*"),
            ("api-v1", "*", "/api/v1/*"),
            ("api-v1-exact", "*", "/api/v1"),
        ]);
        check(
            &t,
            &[
                (None, "/api/v1", Some("api-v1-exact")),
                (None, "/api/v1/", Some("api-v1")),
                (None, "/api/v1/models", Some("api-v1")),
                (None, "/api/v2/models", Some("api")),
                (None, "/other", Some("root")),
                (None, "/", Some("root")),
            ],
        );
    }

    #[test]
    fn prefixes_match_only_on_segment_boundaries() {
        let t = table(&[("api", "*", "/api/*")]);
        check(
            &t,
            &[
                (None, "/api", Some("api")),
                (None, "/api/", Some("api")),
                (None, "/api/x/y", Some("api")),
                (None, "/apix", None),
                (None, "/apix/y", None),
                (None, "/ap", None),
                (None, "/", None),
            ],
        );
    }

    #[test]
    fn exact_routes_do_not_match_a_trailing_slash_and_paths_are_case_sensitive() {
        let t = table(&[
            ("x", "*", "/x"),
            ("y-slash", "*", "/y/"),
            ("api", "*", "/Api/*"),
        ]);
        check(
            &t,
            &[
                (None, "/x", Some("x")),
                (None, "/x/", None),
                (None, "/y/", Some("y-slash")),
                (None, "/y", None),
                (None, "/X", None),
                (None, "/Api/z", Some("api")),
                (None, "/api/z", None),
            ],
        );
    }

    #[test]
    fn without_a_host_only_any_domain_routes_match() {
        let t = table(&[
            ("exact", "api.example.com", "/*"),
            ("suffix", "*.example.com", "/*"),
        ]);
        check(
            &t,
            &[
                (None, "/", None),
                (Some("api.example.com"), "/", Some("exact")),
            ],
        );
        let t = table(&[("exact", "api.example.com", "/*"), ("any", "*", "/v1/*")]);
        check(&t, &[(None, "/v1/x", Some("any")), (None, "/v2", None)]);
    }

    #[test]
    fn the_same_domain_and_path_twice_is_rejected_naming_both_routes() {
        for (a, b) in [
            (
                ("a", "api.example.com", "/x"),
                ("b", "api.example.com", "/x"),
            ),
            (
                ("a", "*.example.com", "/x/*"),
                ("b", "*.example.com", "/x/*"),
            ),
            (("a", "*", "/*"), ("b", "*", "/*")),
        ] {
            let routes = vec![route(a.0, a.1, a.2), route(b.0, b.1, b.2)];
            let err = RouteTable::build(routes).unwrap_err();
            assert_eq!(
                err,
                DuplicateRoute {
                    first: "a".parse().unwrap(),
                    second: "b".parse().unwrap()
                }
            );
        }
    }

    #[test]
    fn nested_prefixes_and_an_exact_path_beside_its_prefix_are_not_duplicates() {
        let t = table(&[
            ("p", "*", "/x/*"),
            ("e", "*", "/x"),
            ("n", "*", "/x/y/*"),
            ("h", "a.com", "/x"),
            ("s", "*.a.com", "/x"),
        ]);
        assert_eq!(t.len(), 5);
        assert!(!t.is_empty());
        assert_eq!(t.get(&"n".parse().unwrap()).map(|r| &*r.id), Some("n"));
        assert!(t.get(&"missing".parse().unwrap()).is_none());
        let ids: Vec<&str> = t.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["p", "e", "n", "h", "s"]);
    }

    #[test]
    fn an_empty_table_matches_nothing() {
        let t = RouteTable::build(Vec::new()).unwrap();
        assert!(t.is_empty());
        check(&t, &[(None, "/", None), (Some("a.com"), "/x", None)]);
    }

    #[test]
    fn a_table_of_100_000_routes_answers_correctly() {
        let mut routes = Vec::with_capacity(100_000);
        for d in 0..1_000 {
            for p in 0..50 {
                routes.push(route(
                    &format!("e{d}-{p}"),
                    &format!("h{d}.example.com"),
                    &format!("/p{p}"),
                ));
                routes.push(route(
                    &format!("s{d}-{p}"),
                    &format!("*.h{d}.example.com"),
                    &format!("/p{p}/*"),
                ));
            }
        }
        routes.push(route("fallback", "*", "/*"));
        let t = RouteTable::build(routes).unwrap();
        assert_eq!(t.len(), 100_001);
        check(
            &t,
            &[
                (Some("h0.example.com"), "/p0", Some("e0-0")),
                (Some("h999.example.com"), "/p49", Some("e999-49")),
                (Some("h500.example.com"), "/p7/x", Some("fallback")),
                (Some("a.h500.example.com"), "/p7/x", Some("s500-7")),
                (Some("a.b.h500.example.com"), "/p7", Some("s500-7")),
                (Some("h1000.example.com"), "/p1", Some("fallback")),
                (None, "/p1", Some("fallback")),
            ],
        );
        assert_eq!(
            t.get(&"s999-49".parse().unwrap()).map(|r| &*r.id),
            Some("s999-49")
        );
    }
}
