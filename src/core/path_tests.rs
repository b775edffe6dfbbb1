//! Unit tests of `core::path`.
use super::*;

type Expected = Result<&'static str, PathError>;

/// `(X-Original-URI, X-Original-Path, expected path)`.
const CASES: &[(&str, Option<&str>, Expected)] = &[
    // Plain paths pass through.
    ("/", None, Ok("/")),
    ("/v1/chat/completions", None, Ok("/v1/chat/completions")),
    ("/a/", None, Ok("/a/")),
    ("/a+b/~c-d_e", None, Ok("/a+b/~c-d_e")),
    ("/...", None, Ok("/...")),
    ("/.a/b./..c", None, Ok("/.a/b./..c")),
    ("/api/*", None, Ok("/api/*")),
    // Dot segments and slashes, as nginx resolves them.
    ("/public/../admin", None, Ok("/admin")),
    ("/public/a/../b", None, Ok("/public/b")),
    ("/a/./b", None, Ok("/a/b")),
    ("/a/b/..", None, Ok("/a/")),
    ("/a/b/../", None, Ok("/a/")),
    ("/a/.", None, Ok("/a/")),
    ("/a/..", None, Ok("/")),
    ("//a///b", None, Ok("/a/b")),
    ("//", None, Ok("/")),
    ("/./", None, Ok("/")),
    ("/a//../b", None, Ok("/b")),
    ("/..", None, Err(Ambiguous)),
    ("/../a", None, Err(Ambiguous)),
    ("/a/../../b", None, Err(Ambiguous)),
    ("/./..", None, Err(Ambiguous)),
    // Encoded dots, slashes, backslashes: never, in any case.
    ("/public/%2e%2e/admin", None, Err(Ambiguous)),
    ("/public/%2E%2e/admin", None, Err(Ambiguous)),
    ("/public/.%2e/admin", None, Err(Ambiguous)),
    ("/a/file%2ejson", None, Err(Ambiguous)),
    ("/a%2Fb", None, Err(Ambiguous)),
    ("/a%2fb", None, Err(Ambiguous)),
    ("/a%5cb", None, Err(Ambiguous)),
    ("/a%5Cb", None, Err(Ambiguous)),
    // Double (and deeper) encodings of the same.
    ("/a/%252e%252e/b", None, Err(Ambiguous)),
    ("/a%252fb", None, Err(Ambiguous)),
    ("/a%252Fb", None, Err(Ambiguous)),
    ("/a%255cb", None, Err(Ambiguous)),
    ("/a%253bb", None, Err(Ambiguous)),
    ("/a%2500", None, Err(Ambiguous)),
    ("/a%25252e", None, Err(Ambiguous)),
    ("/a%25%32%65", None, Err(Ambiguous)),
    ("/a%2541", None, Ok("/a%41")),
    ("/100%25", None, Ok("/100%")),
    // Semicolons, NUL, control characters.
    ("/a;b", None, Err(Ambiguous)),
    ("/a%3bb", None, Err(Ambiguous)),
    ("/a%3Bb", None, Err(Ambiguous)),
    ("/a%00", None, Err(Ambiguous)),
    ("/a%0a", None, Err(Ambiguous)),
    ("/a%0D%0Ab", None, Err(Ambiguous)),
    ("/a%09b", None, Err(Ambiguous)),
    ("/a%7f", None, Err(Ambiguous)),
    ("/a\tb", None, Err(Ambiguous)),
    ("/a\u{7f}", None, Err(Ambiguous)),
    ("/a\\b", None, Err(Ambiguous)),
    // UTF-8: valid decodes, overlong and invalid do not.
    ("/caf%c3%a9", None, Ok("/café")),
    ("/caf%C3%A9", None, Ok("/café")),
    ("/café", None, Ok("/café")),
    ("/%c0%ae%c0%ae/admin", None, Err(Ambiguous)),
    ("/%c0%af", None, Err(Ambiguous)),
    ("/%e0%80%ae", None, Err(Ambiguous)),
    ("/%ed%a0%80", None, Err(Ambiguous)),
    ("/%ff", None, Err(Ambiguous)),
    ("/%c3", None, Err(Ambiguous)),
    // Other escapes decode to literal characters.
    ("/a%20b", None, Ok("/a b")),
    ("/a%3fb", None, Ok("/a?b")),
    ("/a%23b", None, Ok("/a#b")),
    ("/%41pi", None, Ok("/Api")),
    ("/a#frag", None, Err(Ambiguous)),
    // The query is split off first and never looked into.
    ("/a?x=%zz", None, Ok("/a")),
    ("/a?x=../..", None, Ok("/a")),
    ("/a/..?x=1", None, Ok("/")),
    ("/a?", None, Ok("/a")),
    ("/a?b;c\\d#e", None, Ok("/a")),
    // Malformed: not a request target.
    ("/a%zz", None, Err(Malformed)),
    ("/a%2", None, Err(Malformed)),
    ("/a%", None, Err(Malformed)),
    ("/a%u002e", None, Err(Malformed)),
    ("/a% 2", None, Err(Malformed)),
    ("a/b", None, Err(Malformed)),
    ("", None, Err(Malformed)),
    ("*", None, Err(Malformed)),
    ("?x=1", None, Err(Malformed)),
    ("http://h/a", None, Err(Malformed)),
    ("/a b", None, Err(Malformed)),
    ("/%2e/%zz", None, Err(Malformed)),
    ("/..%zz/..", None, Err(Malformed)),
    // X-Original-Path must agree byte for byte.
    ("/a/../b", Some("/b"), Ok("/b")),
    ("/a/../b", Some("/a/b"), Err(Ambiguous)),
    ("/a/../b", Some("/a/../b"), Err(Ambiguous)),
    ("/a/b/", Some("/a/b"), Err(Ambiguous)),
    ("/caf%c3%a9", Some("/café"), Ok("/café")),
    ("/café", Some("/café"), Ok("/café")),
    ("/caf%c3%a9", Some("/caf%c3%a9"), Err(Ambiguous)),
    ("/a?x=1", Some("/a"), Ok("/a")),
    ("/a", Some(""), Err(Ambiguous)),
    ("/%zz", Some("/x"), Err(Malformed)),
];

#[test]
fn raw_uris_normalise_as_the_table_says() {
    for &(raw, original, expected) in CASES {
        let got = normalise(raw.as_bytes(), original.map(str::as_bytes));
        let got = got.as_ref().map(|n| n.path.as_str()).map_err(|e| *e);
        assert_eq!(got, expected, "{raw:?} with X-Original-Path {original:?}");
    }
}

#[test]
fn the_raw_path_and_query_are_kept_as_sent() {
    let n = normalise(b"/a/./%41/../b?x=%zz&y=?z", None).unwrap();
    assert_eq!(n.path, "/a/b");
    assert_eq!(n.raw_path, "/a/./%41/../b");
    assert_eq!(n.query.as_deref(), Some("x=%zz&y=?z"));
    let n = normalise(b"/a?", None).unwrap();
    assert_eq!((n.raw_path.as_str(), n.query.as_deref()), ("/a", Some("")));
    assert_eq!(normalise(b"/a", None).unwrap().query, None);
}

#[test]
fn raw_bytes_that_are_not_utf8_are_refused() {
    // Invalid UTF-8 in the raw path, or a character split between a raw
    // byte and an escape, is ambiguous; in the query it is malformed.
    assert_eq!(normalise(b"/a\xff", None), Err(Ambiguous));
    assert_eq!(normalise(b"/caf\xc3%a9", None), Err(Ambiguous));
    assert_eq!(normalise(b"/a\xc0\xae", None), Err(Ambiguous));
    assert_eq!(normalise(b"/a?q=\xff", None), Err(Malformed));
    assert_eq!(normalise(b"/%zz?q=\xff", None), Err(Malformed));
    assert_eq!(normalise(b"/a\x00", None), Err(Ambiguous));
}

#[test]
fn uris_longer_than_the_bound_are_malformed() {
    let at_bound = format!("/{}", "a".repeat(MAX_URI_LEN - 1));
    assert_eq!(normalise(at_bound.as_bytes(), None).unwrap().path, at_bound);
    let over = format!("{at_bound}a");
    assert_eq!(normalise(over.as_bytes(), None), Err(Malformed));
    let long_query = format!("/a?{}", "q".repeat(MAX_URI_LEN));
    assert_eq!(normalise(long_query.as_bytes(), None), Err(Malformed));
    let deep = "/a/..".repeat(3000);
    assert_eq!(normalise(deep.as_bytes(), None).unwrap().path, "/");
}

/// A tiny deterministic xorshift generator: no new dependencies.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces that exercise every rule; mostly valid so that many inputs
/// normalise.
const PIECES: &[&str] = &[
    "/", "/", "/", "a", "b", "zz", ".", "..", "...", "%41", "%2541", "%20", "%25", "%3f", "%23",
    "%c3%a9", "é", "~", "+", "%2e", "%2F", "%5c", "%3b", "%252e", "%00", "%0a", ";", "\\", "#",
    "?", "%zz", "%", "%c0%ae", "%ff", "*",
];

fn generated_uri(rng: &mut XorShift) -> String {
    let mut uri = String::from("/");
    for _ in 0..rng.below(12) {
        uri.push_str(PIECES[rng.below(PIECES.len())]);
    }
    uri
}

/// Escapes what a normalised path may hold but a raw path cannot carry
/// literally (`%`, `?`, `#`, space); every other byte stays as it is.
fn escape_for_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

fn assert_clean(path: &str, input: &str) {
    let lower = path.to_ascii_lowercase();
    let dot_segment = path.split('/').any(|s| s == "." || s == "..");
    let bad = path.contains("//")
        || dot_segment
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.contains('\\')
        || path.contains(';')
        || path.bytes().any(|b| b < 0x20 || b == 0x7f)
        || !path.starts_with('/');
    assert!(!bad, "{input:?} normalised to unsafe {path:?}");
}

#[test]
fn normalising_a_normalised_path_again_returns_it() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for _ in 0..20_000 {
        let uri = generated_uri(&mut rng);
        let Ok(first) = normalise(uri.as_bytes(), None) else {
            continue;
        };
        ok += 1;
        let again = normalise(escape_for_uri(&first.path).as_bytes(), None);
        assert_eq!(again.map(|n| n.path), Ok(first.path.clone()), "{uri:?}");
        let agreed = normalise(uri.as_bytes(), Some(first.path.as_bytes()));
        assert_eq!(agreed, Ok(first), "{uri:?}");
    }
    assert!(ok > 2_000, "only {ok} generated URIs normalised");
}

#[test]
fn normalised_paths_never_hold_unsafe_segments_or_bytes() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let uri = generated_uri(&mut rng);
        if let Ok(n) = normalise(uri.as_bytes(), None) {
            assert_clean(&n.path, &uri);
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_never_yield_unsafe_paths() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    for _ in 0..50_000 {
        let len = rng.below(24);
        let mut raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.below(2) == 0 {
            raw.insert(0, b'/');
        }
        if let Ok(n) = normalise(&raw, None) {
            assert_clean(&n.path, &String::from_utf8_lossy(&raw));
        }
    }
}
