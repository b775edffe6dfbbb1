//! The deployment artefacts against the repository and the real binary:
//! `compose.example.yml` parses and names only paths that exist (secret
//! files excepted: documented, ignored by git), the `Dockerfile` builds the
//! locked release and runs it unprivileged with `gatekeeper healthcheck`,
//! the systemd unit passes `systemd-analyze verify`, and every metric the
//! Grafana dashboard and the Prometheus alerts query is one a live
//! gatekeeper really exports.

mod common;
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::proxy::Proxy;
use common::redis::{server_addr, TestRedis};
use common::{bcrypt_hash, generate_key, metric, poll_until, run, Gatekeeper, Key, Req, BIN};
use yaml_rust2::{Yaml, YamlLoader};

// ── Files ───────────────────────────────────────────────────────────────────

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(relative: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{relative}: one YAML document");
    docs.remove(0)
}

fn entries(y: &Yaml) -> Vec<(&str, &Yaml)> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?, v)))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(y: &Yaml) -> Vec<&str> {
    match y {
        Yaml::String(s) => vec![s.as_str()],
        Yaml::Array(items) => items.iter().filter_map(Yaml::as_str).collect(),
        _ => Vec::new(),
    }
}

// ── compose.example.yml ─────────────────────────────────────────────────────

const COMPOSE: &str = "compose.example.yml";
const SECRETS_DIR: &str = "deploy/secrets";

/// A host path as Compose reads it: relative to the file's directory.
fn host_path(path: &str) -> PathBuf {
    repo().join(path)
}

/// The host side of a volume, when it is a path (not a named volume).
fn bind_source(volume: &Yaml) -> Option<String> {
    if let Some(short) = volume.as_str() {
        let source = short.split(':').next()?;
        return (source.starts_with('.') || source.starts_with('/')).then(|| source.to_owned());
    }
    (volume["type"].as_str() == Some("bind"))
        .then(|| volume["source"].as_str().map(str::to_owned))?
}

/// Every host path a service reads: bind mounts, build context and
/// Dockerfile, env files.
fn service_host_paths(service: &Yaml) -> Vec<String> {
    let mut paths = Vec::new();
    if let Some(volumes) = service["volumes"].as_vec() {
        paths.extend(volumes.iter().filter_map(bind_source));
    }
    let build = &service["build"];
    let context = build.as_str().or(build["context"].as_str());
    if let Some(context) = context {
        paths.push(context.to_owned());
        let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
        paths.push(format!("{context}/{dockerfile}"));
    }
    let env_files = &service["env_file"];
    paths.extend(strings(env_files).into_iter().map(str::to_owned));
    if let Some(items) = env_files.as_vec() {
        paths.extend(
            items
                .iter()
                .filter_map(|i| i["path"].as_str().map(str::to_owned)),
        );
    }
    paths
}

#[test]
fn compose_example_parses_and_every_host_path_it_names_exists() {
    let compose = yaml(COMPOSE);
    let services = entries(&compose["services"]);
    let names: BTreeSet<&str> = services.iter().map(|(n, _)| *n).collect();
    for needed in [
        "postgres",
        "redis",
        "migrate",
        "gatekeeper",
        "nginx",
        "ollama",
    ] {
        assert!(names.contains(needed), "{COMPOSE}: no `{needed}` service");
    }
    let mut checked = 0;
    for (name, service) in &services {
        for path in service_host_paths(service) {
            assert!(
                host_path(&path).exists(),
                "{COMPOSE}: service `{name}` names {path}, which does not exist"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "only {checked} host paths found: is the parser blind?"
    );

    // Secret files are made by the operator: documented, never committed.
    let readme = read(&format!("{SECRETS_DIR}/README.md"));
    for top in ["secrets", "configs"] {
        for (name, entry) in entries(&compose[top]) {
            let Some(file) = entry["file"].as_str() else {
                continue;
            };
            let relative = file.trim_start_matches("./");
            if relative.starts_with(&format!("{SECRETS_DIR}/")) {
                let file_name = relative.rsplit('/').next().unwrap_or_default();
                assert!(
                    readme.contains(&format!("`{file_name}`")),
                    "{COMPOSE}: secret `{name}` ({file}) is not explained in {SECRETS_DIR}/README.md"
                );
                assert_git_ignores(relative);
            } else {
                assert!(
                    host_path(file).exists(),
                    "{COMPOSE}: {top}.{name}: {file} does not exist"
                );
            }
        }
    }
    assert_git_does_not_ignore(&format!("{SECRETS_DIR}/README.md"));
}

#[test]
fn compose_example_keeps_secrets_out_and_starts_in_order() {
    let compose = yaml(COMPOSE);
    let services: BTreeMap<&str, &Yaml> = entries(&compose["services"]).into_iter().collect();
    let secret_like = [
        "PASSWORD",
        "SECRET",
        "MASTER_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "TOKEN",
    ];
    for (name, service) in &services {
        for (var, _) in entries(&service["environment"]) {
            if secret_like.iter().any(|s| var.contains(s)) {
                assert!(
                    var.ends_with("_FILE"),
                    "{COMPOSE}: service `{name}` sets {var} inline; use {var}_FILE and a secret"
                );
            }
        }
        if let Some(list) = service["environment"].as_vec() {
            panic!("{COMPOSE}: `{name}` uses a list for environment ({list:?}); use a mapping");
        }
        for (dependency, how) in entries(&service["depends_on"]) {
            let target = services
                .get(dependency)
                .unwrap_or_else(|| panic!("{COMPOSE}: `{name}` depends on unknown `{dependency}`"));
            if how["condition"].as_str() == Some("service_healthy") {
                let check = &target["healthcheck"];
                assert!(
                    !check["test"].is_badvalue() && check["disable"].as_bool() != Some(true),
                    "{COMPOSE}: `{name}` waits for `{dependency}` to be healthy, which has no healthcheck"
                );
            }
        }
    }
    let condition = |service: &str, on: &str| {
        services[service]["depends_on"][on]["condition"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        condition("gatekeeper", "migrate"),
        "service_completed_successfully"
    );
    assert_eq!(condition("gatekeeper", "postgres"), "service_healthy");
    assert_eq!(condition("gatekeeper", "redis"), "service_healthy");
    assert_eq!(condition("migrate", "postgres"), "service_healthy");
    assert_eq!(condition("nginx", "gatekeeper"), "service_healthy");
    assert_eq!(strings(&services["migrate"]["command"]), ["migrate"]);
    assert_eq!(strings(&services["gatekeeper"]["command"]), ["serve"]);
}

/// The nginx service runs the bundle with its upstream lines rewritten:
/// each line it rewrites must be in the bundle exactly once, and every
/// bundle file compose-site.conf includes must exist.
#[test]
fn compose_nginx_rewrites_lines_the_bundle_has_and_includes_files_it_has() {
    let compose = yaml(COMPOSE);
    let script = strings(&compose["services"]["nginx"]["command"]).join("\n");
    let mut rewritten = 0;
    for line in script.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("point ") else {
            continue;
        };
        let quoted: Vec<&str> = args.split('\'').collect();
        let (file, from) = (quoted[0].trim(), quoted[1]);
        let text = read(&format!("nginx/{file}"));
        assert_eq!(
            text.matches(from).count(),
            1,
            "nginx/{file} must contain `{from}` exactly once for compose's nginx start-up"
        );
        rewritten += 1;
    }
    assert!(
        rewritten >= 2,
        "the nginx start-up rewrites {rewritten} upstream lines"
    );
    for volume in strings(&compose["services"]["nginx"]["volumes"]) {
        assert!(volume.ends_with(":ro"), "nginx mounts {volume} writable");
    }
    assert!(script.contains("load_module /usr/lib/nginx/modules/ngx_http_js_module.so"));

    let site = read("deploy/nginx/compose-site.conf");
    let includes: Vec<&str> = site
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("include gatekeeper/")?.strip_suffix(';'))
        .collect();
    assert!(includes.contains(&"gatekeeper-http.conf"), "{includes:?}");
    for file in includes {
        assert!(
            repo().join("nginx").join(file).exists(),
            "compose-site.conf includes missing nginx/{file}"
        );
    }
}

fn git(args: &[&str]) -> Option<std::process::ExitStatus> {
    Command::new("git")
        .args(args)
        .current_dir(repo())
        .status()
        .ok()
}

fn assert_git_ignores(relative: &str) {
    match git(&["check-ignore", "-q", relative]) {
        Some(status) => assert!(
            status.success(),
            "git does not ignore {relative} (deploy/.gitignore)"
        ),
        None => eprintln!("skipped: git not found, cannot check that {relative} is ignored"),
    }
}

fn assert_git_does_not_ignore(relative: &str) {
    if let Some(status) = git(&["check-ignore", "-q", relative]) {
        assert_eq!(
            status.code(),
            Some(1),
            "git ignores {relative}; it must be committed"
        );
    }
}

// ── Dockerfile ──────────────────────────────────────────────────────────────

/// Instructions with continuation lines joined and comments dropped:
/// (keyword in upper case, the rest).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn dockerfile_builds_the_locked_release_and_runs_it_unprivileged_with_a_healthcheck() {
    let instructions = dockerfile_instructions(&read("Dockerfile"));
    let all = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    let stages = all("FROM");
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert!(
        stages[0].starts_with("rust:"),
        "builds in a Rust image: {stages:?}"
    );
    assert!(
        !stages[stages.len() - 1].starts_with("rust:"),
        "runs in a small image: {stages:?}"
    );
    assert!(
        all("RUN")
            .iter()
            .any(|r| r.contains("cargo build --locked --release")),
        "no RUN with `cargo build --locked --release`"
    );

    // Only the final stage's instructions describe the image.
    let last_from = instructions
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    let final_stage = &instructions[last_from..];
    let user = final_stage
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, u)| u.as_str())
        .expect("the final stage sets USER");
    let name = user.split(':').next().unwrap_or_default();
    assert!(!["root", "0", ""].contains(&name), "USER {user} is root");

    let healthchecks: Vec<&str> = final_stage
        .iter()
        .filter(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, h)| h.as_str())
        .collect();
    assert_eq!(healthchecks.len(), 1, "{healthchecks:?}");
    let exec = healthchecks[0]
        .split_once("CMD ")
        .map(|(_, c)| c.trim())
        .expect("HEALTHCHECK … CMD […]");
    let argv: Vec<String> =
        serde_json::from_str(exec).expect("HEALTHCHECK CMD in exec (JSON) form");
    assert_eq!(argv, ["/usr/local/bin/gatekeeper", "healthcheck"]);
    assert!(
        final_stage
            .iter()
            .any(|(k, c)| k == "COPY" && c.starts_with("--from=") && c.ends_with(&argv[0])),
        "the binary is copied to {}",
        argv[0]
    );

    let exposed: Vec<&str> = final_stage
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .flat_map(|(_, e)| e.split_whitespace())
        .collect();
    for port in ["7843", "7844"] {
        assert!(
            exposed.iter().any(|e| e.split('/').next() == Some(port)),
            "EXPOSE {port}: {exposed:?}"
        );
    }
    let env: String = all("ENV").join(" ");
    for setting in [
        "GATEKEEPER_LISTEN=0.0.0.0:7843",
        "GATEKEEPER_ADMIN_LISTEN=0.0.0.0:7844",
        "GATEKEEPER_CONFIG=/etc/gatekeeper/gatekeeper.toml",
    ] {
        assert!(env.contains(setting), "ENV {setting}");
    }

    // What the build copies exists, and .dockerignore lets it through.
    let ignore = read(".dockerignore");
    for copy in all("COPY").iter().filter(|c| !c.starts_with("--")) {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "COPY {source}: not in the repository"
            );
            let allowed = ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == format!("!{source}"));
            assert!(
                allowed,
                ".dockerignore does not let {source} into the build context"
            );
        }
    }
}

// ── systemd ─────────────────────────────────────────────────────────────────

const UNIT: &str = "deploy/systemd/gatekeeper.service";

#[test]
fn systemd_unit_is_hardened_and_passes_systemd_analyze_verify() {
    let unit = read(UNIT);
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for needed in [
        "ExecStart=/usr/local/bin/gatekeeper serve",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "EnvironmentFile=-/etc/gatekeeper/gatekeeper.env",
        "ProtectSystem=strict",
        "ReadOnlyPaths=/etc/gatekeeper",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
        "CapabilityBoundingSet=",
    ] {
        assert!(lines.contains(needed), "{UNIT}: no `{needed}`");
    }
    assert!(
        lines.contains("DynamicUser=yes")
            || lines
                .iter()
                .any(|l| l.starts_with("User=") && *l != "User=root"),
        "{UNIT}: runs as root"
    );

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped `systemd-analyze verify`: systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart= is executable: point it at the binary
    // this test built instead of the install path.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gatekeeper.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/gatekeeper", BIN)).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify {UNIT}:\n{stderr}"
    );
    // Unknown or misspelt keys are only warnings: any line about this unit fails.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("gatekeeper"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify {UNIT}:\n{}",
        about_unit.join("\n")
    );
    if !stderr.trim().is_empty() {
        eprintln!("systemd-analyze verify (about other units):\n{stderr}");
    }
}

// ── Metric names in PromQL ──────────────────────────────────────────────────

/// Words of PromQL that are not metric names: operators, and aggregations
/// (`sum by (le) (…)` puts a modifier between the word and its parenthesis).
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "start",
    "end",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression reads: identifiers outside strings,
/// label matchers `{…}` and ranges `[…]` that are not functions, keywords,
/// Grafana variables, or label names in `by (…)` and its kin.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut depth) = (0, 0usize);
    let mut skip_next_word = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' | '[' => {
                depth += 1;
                i += 1;
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            '$' => i = skip_word(&chars, i + 1),
            c if c.is_ascii_digit() || c == '.' => i = skip_word(&chars, i),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = skip_word(&chars, i);
                let word: String = chars[i..end].iter().collect();
                let next = chars[end..].iter().find(|c| !c.is_whitespace());
                i = end;
                if depth > 0 || std::mem::take(&mut skip_next_word) {
                    continue;
                }
                if LABEL_LISTS.contains(&word.as_str()) {
                    i = skip_parenthesised(&chars, end);
                } else if word == "offset" {
                    skip_next_word = true;
                } else if next != Some(&'(') && !PROMQL_KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn skip_word(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:.".contains(chars[i])) {
        i += 1;
    }
    i
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// Past the `( … )` that follows `from` (whitespace allowed before it).
fn skip_parenthesised(chars: &[char], from: usize) -> usize {
    let mut i = from;
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    if chars.get(i) != Some(&'(') {
        return i;
    }
    chars[i..]
        .iter()
        .position(|c| *c == ')')
        .map_or(chars.len(), |p| i + p + 1)
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{job=~"$job", x="y z"}[$__rate_interval])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names("sum by (job) (rate(x[5m])) > 3 * sum(rate(y[1h] offset 5m)) and sum(z) without (w) > 1"),
        ["x", "y", "z"]
    );
    assert_eq!(
        names("a / on (i) group_left (v) b or vector(0) unless c:rec"),
        ["a", "b", "c:rec"]
    );
    assert_eq!(names(r#"absent(up{a="b"}) == bool 1e3"#), ["up"]);
}

/// Every PromQL expression of the dashboard: panel targets (rows included)
/// and the template variables' queries.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(expr.to_owned());
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap_or_default();
        out.push(template_query_expr(query));
    }
    out
}

/// `label_values(selector, label)` → the selector; `query_result(e)` → e.
fn template_query_expr(query: &str) -> String {
    let inner = |prefix: &str| {
        query
            .trim()
            .strip_prefix(prefix)?
            .strip_suffix(')')
            .map(str::trim)
    };
    if let Some(args) = inner("label_values(") {
        // The label is the last argument; without a selector there is no metric.
        return args
            .rsplit_once(',')
            .map(|(s, _)| s.trim().to_owned())
            .unwrap_or_default();
    }
    inner("query_result(").unwrap_or(query).to_owned()
}

fn alert_exprs(alerts: &Yaml) -> Vec<String> {
    let groups = alerts["groups"].as_vec().expect("alerts.yml: groups");
    let exprs: Vec<String> = groups
        .iter()
        .flat_map(|g| g["rules"].as_vec().expect("a group's rules").iter())
        .map(|r| {
            r["expr"]
                .as_str()
                .expect("every rule has an expr")
                .to_owned()
        })
        .collect();
    assert!(!exprs.is_empty(), "alerts.yml has no rules");
    exprs
}

// ── The live scrape ─────────────────────────────────────────────────────────

/// Sample names and `# TYPE` declarations of a Prometheus text exposition.
struct Scrape {
    samples: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = BTreeSet::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = declaration.split_once(' ') {
                    types.insert(name.to_owned(), kind.trim().to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_owned());
            }
        }
        Scrape { samples, types }
    }

    /// A histogram's `_bucket`, `_sum` and `_count` count as its base name.
    fn exports(&self, name: &str) -> bool {
        let histogram_base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| self.types.get(*base).map(String::as_str) == Some("histogram"));
        match histogram_base {
            Some(base) => self.samples.iter().any(|s| s.starts_with(base)),
            None => self.samples.contains(name),
        }
    }
}

/// A public route, an API-key/Basic route whose grant allows 2 requests an
/// hour, one client with a key and a Basic secret.
fn scrape_policy(key: &Key, secret_hash: &str) -> String {
    format!(
        r#"[[route]]
id = "open"
domain = "*"
path = "/open/*"
service = "test"
[route.methods]
GET = ["public"]

[[route]]
id = "api"
domain = "*"
path = "/api/*"
service = "test"
[route.methods]
GET = ["api_key", "basic"]

[[client]]
id = "team"
name = "Team"
secret_hash = "{secret_hash}"

{}
[[grant]]
client = "team"
route = "api"
methods = ["GET"]
limit = "2/1h"
"#,
        key.toml("active", None)
    )
}

const BASIC_SECRET: &str = "deploy-basic-s3cret";

/// The decisions that make every kind of metric appear: allows, denies,
/// a rate limit, Basic (cache miss, bcrypt, then hit), wrong keys up to the
/// failed-credential throttle, a SIGHUP reload, then a Redis outage.
fn exercise(gk: &Gatekeeper, proxy: &Proxy, key: &Key) {
    let api = || Req::get("/api/models");
    assert_eq!(gk.send(&Req::get("/open/x")).status, 200);
    assert_eq!(gk.send(&api()).reason(), "missing_credentials");
    assert_eq!(gk.send(&api().bearer(&key.key)).status, 200);
    assert_eq!(gk.send(&api().basic("team", BASIC_SECRET)).status, 200);
    // The grant's 2/1h is spent: the Basic credential is verified (cache
    // hit) and refused by the limit.
    let limited = gk.send(&api().basic("team", BASIC_SECRET));
    assert_eq!(limited.reason(), "rate_limited", "{limited:?}");
    // GATEKEEPER_FAILED_AUTH_LIMIT=2/1h: the third wrong key is throttled.
    let wrong = "gk_deploy_not_a_key";
    let reasons: Vec<String> = (0..3)
        .map(|_| gk.send(&api().bearer(wrong)).reason().to_owned())
        .collect();
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("rate_limited"),
        "{reasons:?}"
    );

    let reloads = || {
        metric(
            &gk.metrics(),
            "gatekeeper_config_reloads_total",
            &[("result", "ok")],
        )
    };
    gk.sighup();
    assert!(
        poll_until(Duration::from_secs(5), || reloads() >= 1.0),
        "no reload after SIGHUP"
    );

    proxy.cut();
    let during_outage = gk.send(&api().bearer(&key.key));
    assert!(
        during_outage.status == 200 || during_outage.status == 403,
        "{during_outage:?}"
    );
    let fallbacks = || metric(&gk.metrics(), "gatekeeper_redis_fallbacks_total", &[]);
    assert!(
        poll_until(Duration::from_secs(5), || fallbacks() > 0.0),
        "no Redis fallback counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/gatekeeper.json"))
            .expect("the dashboard is JSON");
    let mut used: BTreeMap<String, &str> = BTreeMap::new();
    for expr in dashboard_exprs(&dashboard) {
        used.extend(
            metric_names(&expr)
                .into_iter()
                .map(|n| (n, "deploy/grafana/gatekeeper.json")),
        );
    }
    for expr in alert_exprs(&yaml("deploy/prometheus/alerts.yml")) {
        used.extend(
            metric_names(&expr)
                .into_iter()
                .map(|n| (n, "deploy/prometheus/alerts.yml")),
        );
    }
    for expected in [
        "gatekeeper_decisions_total",
        "gatekeeper_decision_duration_seconds_bucket",
    ] {
        assert!(
            used.contains_key(expected),
            "{expected} not found in the queries: {used:?}"
        );
    }

    let key = generate_key();
    let redis = TestRedis::new();
    let proxy = Proxy::start(server_addr());
    let url = redis.url_via(proxy.addr);
    let policy = scrape_policy(&key, &bcrypt_hash(BASIC_SECRET));
    let gk = Gatekeeper::start_with_env(
        &policy,
        &[
            ("GATEKEEPER_REDIS_URL", url.as_str()),
            ("GATEKEEPER_REDIS_PREFIX", redis.prefix.as_str()),
            ("GATEKEEPER_REDIS_TIMEOUT", "100ms"),
            ("GATEKEEPER_FAILED_AUTH_LIMIT", "2/1h"),
        ],
    );
    exercise(&gk, &proxy, &key);
    // The PostgreSQL-mode metrics (the listener gauge) come from a replica
    // serving from the database.
    let db = pg::seeded_chat("deploy-scrape-key-0001").await;
    let replica = Gatekeeper::start_postgres(&[("GATEKEEPER_DATABASE_URL", db.url.as_str())]);

    // Gauges are set by background tasks: wait for them, then judge.
    let missing = || -> Vec<String> {
        let scrapes = [
            Scrape::parse(&gk.metrics()),
            Scrape::parse(&replica.metrics()),
        ];
        used.keys()
            .filter(|n| !scrapes.iter().any(|s| s.exports(n)))
            .cloned()
            .collect()
    };
    poll_until(Duration::from_secs(5), || missing().is_empty());
    let missing: Vec<String> = missing()
        .into_iter()
        .map(|name| format!("{name} (used in {})", used[&name]))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported after every kind of decision:\n  {}\nexported:\n{}",
        missing.join("\n  "),
        gk.metrics()
    );
}

/// The image's admin address (0.0.0.0) is one `gatekeeper healthcheck` can
/// reach: the container's HEALTHCHECK works as written.
#[test]
fn healthcheck_reaches_an_admin_listener_on_all_addresses() {
    let gk = Gatekeeper::start_with_env("", &[("GATEKEEPER_ALLOW_EMPTY_POLICY", "true")]);
    let admin = format!("0.0.0.0:{}", gk.admin_addr.port());
    let out = run(
        &["healthcheck"],
        &[("GATEKEEPER_ADMIN_LISTEN", admin.as_str())],
        None,
    );
    assert!(
        out.status.success(),
        "gatekeeper healthcheck on {admin}: {out:?}"
    );
}
