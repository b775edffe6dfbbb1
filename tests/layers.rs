//! The library's layers (`src/lib.rs`, `# Layout`): every `use crate::…`
//! of non-test code points to the same layer or one below, the modules form
//! no cycle, `core` imports nothing of the crate, and nothing in the library
//! names the command line. Read from the source, so a new import that
//! breaks the rule fails `cargo test` (and so `scripts/test.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, bottom first (as `src/lib.rs` states them).
const LAYERS: &[&[&str]] = &[
    &["core"],
    &["clock", "config", "error", "metrics", "logging", "signals"],
    &["db"],
    &["state"],
    &["decide"],
    &["sources", "audit", "import", "apply"],
    &["http"],
    &["app"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after each `crate::` in `code`.
fn imported(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The top-level items of the group, up to its closing brace.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(first_name(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            names.insert(first_name(&item));
        } else {
            names.insert(first_name(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

/// The identifier `text` starts with, after blanks.
fn first_name(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// module → the modules it imports, for the library's non-test code.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let first = rel.components().next().expect("a path");
        let module = first.as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs").to_owned();
        let name = file.file_name().expect("a file").to_string_lossy();
        let test_file = name.ends_with("_tests.rs") || name == "tests.rs";
        if module == "lib" || module == "main" || module == "commands" || test_file {
            continue;
        }
        let mut uses = imported(&code(&file));
        uses.remove(&module);
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

#[test]
fn every_library_module_has_a_layer() {
    let unplaced: Vec<_> = graph()
        .keys()
        .filter(|m| layer_of(m).is_none())
        .cloned()
        .collect();
    assert!(
        unplaced.is_empty(),
        "place these in LAYERS and in lib.rs's Layout: {unplaced:?}"
    );
}

#[test]
fn every_import_points_to_the_same_layer_or_below() {
    let mut upward = Vec::new();
    for (module, uses) in graph() {
        let Some(from) = layer_of(&module) else {
            continue;
        };
        for used in uses {
            match layer_of(&used) {
                Some(to) if to <= from => {}
                _ => upward.push(format!("{module} -> {used}")),
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up: {upward:?}");
}

#[test]
fn core_imports_nothing_of_the_crate() {
    let graph = graph();
    let core = graph.get("core").cloned().unwrap_or_default();
    assert!(core.is_empty(), "core imports {core:?}");
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = graph();
    // Depth-first search; a back edge to a module on the stack is a cycle.
    fn visit<'g>(
        module: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|m| m.to_string()).collect();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if !done.insert(module) {
            return None;
        }
        stack.push(module);
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// Whether `line` names a `Result<_, String>`.
fn string_errors(line: &str) -> bool {
    let compact: String = line.split_whitespace().collect();
    compact.match_indices("Result<").any(|(at, open)| {
        let (mut depth, mut last) = (0, String::new());
        for c in compact[at + open.len()..].chars() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' if depth == 0 => return last == "String",
                '>' | ')' => depth -= 1,
                ',' if depth == 0 => {
                    last.clear();
                    continue;
                }
                _ => {}
            }
            last.push(c);
        }
        false
    })
}

#[test]
fn no_library_code_returns_a_bare_string_as_its_error() {
    // error.rs: module errors are types; a message travels inside one.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let name = file.file_name().expect("a file").to_string_lossy();
        if rel.starts_with("commands") || name.ends_with("tests.rs") || name == "main.rs" {
            continue;
        }
        for (n, line) in code(&file).lines().enumerate() {
            if string_errors(line) {
                found.push(format!("{}:{}", rel.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "Result<_, String> in {found:?}");
}

#[test]
fn the_string_error_check_reads_the_result_type_only() {
    assert!(string_errors("fn f() -> Result<Vec<u8>, String> {"));
    assert!(string_errors(
        "type R = io::Result<(u8, u8)>; fn g() -> Result<(), String>"
    ));
    assert!(!string_errors(
        "fn f(m: &HashMap<String, String>) -> Result<u8, Error> {"
    ));
    assert!(!string_errors("fn f() -> Result<String, Invalid> {"));
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let names = imported("use crate::{core::x, state::{a, b}};\nlet y = crate::metrics::f();");
    let expected: BTreeSet<String> = ["core", "state", "metrics"].map(String::from).into();
    assert_eq!(names, expected);
}
