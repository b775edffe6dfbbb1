//! The table against everything that depends on it: the parser reads every
//! entry and nothing else, the defaults it shows are the ones applied,
//! `serve --help` and the README list it, and no `GATEKEEPER_*` name in the
//! source is missing from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use super::env::Env;
use super::settings::{Shown, PREFIX, SETTINGS};
use super::{settings_help, settings_markdown, unknown_variables, Config};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Settings under which every optional part is read: Redis, audit.
fn everything_on() -> HashMap<String, String> {
    env(&[
        ("GATEKEEPER_REDIS_URL", "redis://127.0.0.1/0"),
        ("GATEKEEPER_DATABASE_URL", "postgres://db/gk"),
        ("GATEKEEPER_AUDIT", "postgres"),
    ])
}

fn names() -> BTreeSet<&'static str> {
    SETTINGS.iter().map(|s| s.name).collect()
}

#[test]
fn names_are_unique_prefixed_and_a_file_variant_is_the_name_and_file() {
    assert_eq!(names().len(), SETTINGS.len(), "a setting is listed twice");
    for s in SETTINGS {
        assert!(s.name.starts_with(PREFIX), "{}", s.name);
        assert!(
            !s.help.contains('|'),
            "{}: a `|` breaks the README table",
            s.name
        );
        if let Some(file) = s.file_variant {
            assert_eq!(file, format!("{}_FILE", s.name));
        }
    }
}

#[test]
fn the_parser_reads_every_setting_in_the_table_and_no_other() {
    let vars = everything_on();
    let env = Env::new(&vars);
    Config::read(&env).unwrap();
    let (read, listed) = (env.read(), names());
    let never_read: Vec<_> = listed.difference(&read).collect();
    assert!(
        never_read.is_empty(),
        "listed but never read: {never_read:?}"
    );
    // Reading an unlisted setting trips a debug assertion before this.
    assert_eq!(read, listed);
}

#[test]
fn leaving_a_setting_unset_is_the_same_as_setting_its_listed_default() {
    for s in SETTINGS {
        let Shown::Value(default) = s.default else {
            continue;
        };
        let mut unset = everything_on();
        unset.remove(s.name);
        let mut set = unset.clone();
        set.insert(s.name.to_owned(), default.to_owned());
        let parse = |vars| format!("{:?}", Config::from_map(vars).unwrap());
        assert_eq!(parse(&unset), parse(&set), "{} = {default}", s.name);
    }
}

/// `serve --help`'s lines per setting, whitespace collapsed.
fn help_by_setting() -> BTreeMap<String, String> {
    let mut out = BTreeMap::<String, String>::new();
    let mut current = String::new();
    for line in settings_help().lines().skip(1) {
        // A setting's first line has its name at column 2; the rest are
        // indented past the name column.
        if let Some(first) = line.strip_prefix("  ").filter(|l| l.starts_with(PREFIX)) {
            current = first.split_whitespace().next().unwrap().to_owned();
        }
        let text = out.entry(current.clone()).or_default();
        text.push(' ');
        text.push_str(line.trim());
    }
    out
}

#[test]
fn serve_help_lists_every_setting_with_its_default_and_its_file_variant() {
    let help = help_by_setting();
    assert_eq!(
        help.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        names()
    );
    for s in SETTINGS {
        let text = &help[s.name];
        if let Shown::Value(v) = s.default {
            assert!(text.contains(&format!("[default: {v}]")), "{text}");
        }
        if let Some(file) = s.file_variant {
            assert!(text.contains(file), "{text}");
        }
        assert!(!text.contains('`'), "{text}");
    }
    assert!(settings_help().lines().all(|l| l.chars().count() <= 100));
}

#[test]
fn the_readme_table_is_the_settings_table() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let expected = settings_markdown();
    let header = expected.lines().next().unwrap();
    let table: String = readme
        .lines()
        .skip_while(|l| *l != header)
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    let listed = |t: &str| -> BTreeSet<String> {
        t.lines()
            .skip(2)
            .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
            .collect()
    };
    let (in_readme, in_table) = (listed(&table), listed(&expected));
    assert!(
        table == expected,
        "README.md's settings table differs from config::SETTINGS.\n\
         missing from the README: {:?}\nnot in SETTINGS: {:?}\n\
         The table should read:\n\n{expected}",
        in_table.difference(&in_readme).collect::<Vec<_>>(),
        in_readme.difference(&in_table).collect::<Vec<_>>(),
    );
}

#[test]
fn every_gatekeeper_variable_the_source_names_is_a_setting() {
    let known: BTreeSet<&str> = SETTINGS
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.file_variant))
        .collect();
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "found the source");
    let mut unknown = Vec::new();
    for file in files {
        let src = std::fs::read_to_string(&file).unwrap();
        for name in string_literals(&src).iter().flat_map(|l| variable_names(l)) {
            if !known.contains(name.as_str()) {
                unknown.push(format!("{}: {name}", file.display()));
            }
        }
    }
    assert!(unknown.is_empty(), "not in config::SETTINGS: {unknown:#?}");
}

#[test]
fn unknown_variables_are_typos_and_strangers_never_settings_or_their_files() {
    let vars = env(&[
        ("GATEKEEPER_LOG_LEVL", "debug"),
        ("GATEKEEPER_LOG_LEVEL", "debug"),
        ("GATEKEEPER_DATABASE_URL_FILE", "/run/secrets/db"),
        ("GATEKEEPER_AUDIT_DATABASE_URL", "postgres://audit"),
        ("GATEKEEPER_LISTEN_FILE", "/etc/listen"),
        ("GATEKEEPER_", "x"),
        ("PATH", "/usr/bin"),
        ("gatekeeper_listen", "lower case is not ours"),
    ]);
    assert_eq!(
        unknown_variables(&vars),
        [
            "GATEKEEPER_",
            "GATEKEEPER_LISTEN_FILE",
            "GATEKEEPER_LOG_LEVL"
        ]
    );
    let all: HashMap<String, String> = SETTINGS
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.file_variant))
        .map(|n| (n.to_owned(), String::new()))
        .collect();
    assert_eq!(unknown_variables(&all), Vec::<String>::new());
}

// ── Reading the source ──────────────────────────────────────────────────────

/// The `.rs` files under `dir`, test files (`tests.rs`, `*_tests.rs`) left
/// out.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            rust_files(&path, out);
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            out.push(path);
        }
    }
}

/// `GATEKEEPER_X…` names in a string (the bare prefix is no name).
fn variable_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at + PREFIX.len()..];
        let len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if len > 0 {
            out.push(format!("{PREFIX}{}", &tail[..len]));
        }
        rest = &tail[len..];
    }
    out
}

/// The contents of the string literals in Rust source, leaving out
/// comments and `#[cfg(test)]` items. A lexer just good enough for this
/// repository: strings, raw strings, char literals, lifetimes, comments.
fn string_literals(src: &str) -> Vec<String> {
    let s: Vec<char> = src.chars().collect();
    let at = |i: usize, p: &str| p.chars().enumerate().all(|(k, c)| s.get(i + k) == Some(&c));
    let (mut out, mut i, mut depth) = (Vec::new(), 0, 0usize);
    // Inside a `#[cfg(test)]` item: until its `;`, or the `}` closing it.
    let (mut pending_test, mut test_depth) = (false, None::<usize>);
    while i < s.len() {
        let skipping = pending_test || test_depth.is_some();
        let c = s[i];
        if at(i, "//") {
            i = (i..s.len()).find(|&j| s[j] == '\n').unwrap_or(s.len());
        } else if at(i, "/*") {
            i = (i + 2..s.len())
                .find(|&j| at(j, "*/"))
                .map_or(s.len(), |j| j + 2);
        } else if at(i, "#[cfg(test)]") {
            pending_test = test_depth.is_none();
            i += "#[cfg(test)]".len();
        } else if c == 'r'
            && (at(i + 1, "\"") || at(i + 1, "#"))
            && !ident(s.get(i.wrapping_sub(1)))
        {
            let hashes = (i + 1..s.len()).take_while(|&j| s[j] == '#').count();
            let open = i + 1 + hashes;
            if s.get(open) != Some(&'"') {
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let end = (open + 1..s.len())
                .find(|&j| at(j, &close))
                .unwrap_or(s.len());
            if !skipping {
                out.push(s[open + 1..end].iter().collect());
            }
            i = end + close.len();
        } else if c == '"' {
            let mut j = i + 1;
            while j < s.len() && s[j] != '"' {
                j += if s[j] == '\\' { 2 } else { 1 };
            }
            if !skipping {
                out.push(s[i + 1..j.min(s.len())].iter().collect());
            }
            i = j + 1;
        } else if c == '\'' {
            i = if at(i + 1, "\\") {
                (i + 3..s.len())
                    .find(|&j| s[j] == '\'')
                    .map_or(s.len(), |j| j + 1)
            } else if at(i + 2, "'") {
                i + 3
            } else {
                i + 1 // a lifetime
            };
        } else {
            match c {
                '{' => {
                    if pending_test {
                        (pending_test, test_depth) = (false, Some(depth));
                    }
                    depth += 1;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    if test_depth == Some(depth) {
                        test_depth = None;
                    }
                }
                ';' if pending_test => pending_test = false,
                _ => {}
            }
            i += 1;
        }
    }
    out
}

fn ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

#[test]
fn the_lexer_finds_literals_and_skips_comments_and_test_items() {
    let src = r####"
        // "GATEKEEPER_IN_A_COMMENT"
        fn f<'a>(x: &'a str) -> char { let _ = "GATEKEEPER_ONE={x}"; '"' }
        /* "GATEKEEPER_IN_A_BLOCK" */
        const R: &str = r#"raw "GATEKEEPER_TWO" "#;
        #[cfg(test)]
        fn helper() { let _ = "GATEKEEPER_TEST_ONLY"; }
        #[cfg(test)]
        mod tests;
        const E: &str = "escaped \" GATEKEEPER_THREE";
        const C: char = '\'';
    "####;
    let names: Vec<String> = string_literals(src)
        .iter()
        .flat_map(|l| variable_names(l))
        .collect();
    assert_eq!(
        names,
        ["GATEKEEPER_ONE", "GATEKEEPER_TWO", "GATEKEEPER_THREE"]
    );
}
