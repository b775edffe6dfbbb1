//! Unit tests of `file`.
use super::*;
use crate::core::model::CredentialType;
use std::path::PathBuf;

const HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
const HMAC_VALUE: &str = "hmac-value-never-printed";

fn env(name: &str) -> Option<String> {
    (name == "TEAM_A_HMAC_SECRET").then(|| HMAC_VALUE.to_owned())
}

fn parse(text: &str) -> Result<Document, FileErrors> {
    parse_document(text, &env, Path::new("."))
}

fn errors(text: &str) -> Vec<FileError> {
    parse(text).expect_err("the file should be rejected").0
}

fn assert_error(text: &str, place: &str, fragment: &str) {
    let errors = errors(text);
    let found = errors
        .iter()
        .any(|e| e.place == place && e.message.contains(fragment));
    assert!(found, "no `{place}: …{fragment}…` in {errors:#?}");
}

fn digest(key: &str) -> String {
    Digest::of(key.as_bytes()).to_string()
}

/// A scratch directory unique to this test process and test.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatekeeper-file-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

const ROUTE: &str = r#"
[[route]]
id = "r1"
domain = "api.example.com"
path = "/v1/*"
service = "api"
methods = { GET = ["api_key"] }
"#;

const CLIENT: &str = r#"
[[client]]
id = "c1"
name = "Client One"
"#;

fn complete_file() -> String {
    r#"
[[route]]
id = "ollama-api"
domain = "llm.example.com"
path = "/api/*"
service = "ollama"
[route.methods]
GET = ["public"]
POST = ["api_key", "basic"]

[[route]]
id = "openai"
domain = "*.example.com"
path = "/v1/chat/completions"
service = "openai-compat"
priority = 5
[route.methods]
"*" = ["hmac", "api_key"]

[[client]]
id = "team-a"
name = "Team A"
limit = "600/1m"
burst = 50
secret_hash = "@HASH"
hmac_secret = { env = "TEAM_A_HMAC_SECRET" }

[[client.key]]
id = "k1"
digest = "@D1"
expires_at = "2027-01-01T00:00:00Z"
label = "laptop"

[[client.key]]
id = "k2"
digest = "@D2"
status = "revoked"
expires_at = 2027-01-01T01:00:00+01:00

[[client]]
id = "team-b"
name = "Team B"
status = "suspended"

[[client.key]]
id = "k3"
digest = "@D3"

[[grant]]
client = "team-a"
route = "ollama-api"
methods = ["GET", "POST"]
models = ["llama3*", "qwen2.5:7b"]
limit = "60/1m"

[[grant]]
client = "team-b"
route = "openai"
methods = ["*"]
limit = "10/1s"
burst = 20
"#
    .replace("@HASH", HASH)
    .replace("@D1", &digest("key-one"))
    .replace("@D2", &digest("key-two"))
    .replace("@D3", &digest("key-three"))
}

fn expected_routes() -> Vec<Route> {
    let creds = |ts: &[CredentialType]| MethodRule::Credentials(ts.iter().copied().collect());
    let method = |m: &str| Method::parse(m).expect("method");
    vec![
        Route {
            id: "ollama-api".parse().unwrap(),
            domain: DomainPattern::Exact("llm.example.com".into()),
            path: PathPattern::Prefix("/api".into()),
            service: "ollama".into(),
            priority: 0,
            methods: BTreeMap::from([
                (method("GET"), MethodRule::Public),
                (
                    method("POST"),
                    creds(&[CredentialType::ApiKey, CredentialType::Basic]),
                ),
            ]),
            any_method: None,
        },
        Route {
            id: "openai".parse().unwrap(),
            domain: DomainPattern::Suffix("example.com".into()),
            path: PathPattern::Exact("/v1/chat/completions".into()),
            service: "openai-compat".into(),
            priority: 5,
            methods: BTreeMap::new(),
            any_method: Some(creds(&[CredentialType::ApiKey, CredentialType::Hmac])),
        },
    ]
}

fn expected_clients() -> Vec<Client> {
    let limit = Limit::parse("600/1m").and_then(|l| l.with_burst(50));
    vec![
        Client {
            id: "team-a".parse().unwrap(),
            name: "Team A".into(),
            status: ClientStatus::Active,
            limit,
            secret_hash: Some(HASH.into()),
            hmac_secret: Some(Secret::new(HMAC_VALUE.as_bytes().to_vec())),
        },
        Client {
            id: "team-b".parse().unwrap(),
            name: "Team B".into(),
            status: ClientStatus::Suspended,
            limit: None,
            secret_hash: None,
            hmac_secret: None,
        },
    ]
}

fn expected_keys() -> Vec<KeyRecord> {
    let key = |id: &str, client: &str, secret: &str, status, expires_at| KeyRecord {
        id: id.parse().unwrap(),
        client_id: client.parse().unwrap(),
        digest: Digest::of(secret.as_bytes()),
        status,
        expires_at,
    };
    let new_year_2027 = Some(1_798_761_600);
    vec![
        key("k1", "team-a", "key-one", KeyStatus::Active, new_year_2027),
        key("k2", "team-a", "key-two", KeyStatus::Revoked, new_year_2027),
        key("k3", "team-b", "key-three", KeyStatus::Active, None),
    ]
}

fn expected_grants() -> Vec<Grant> {
    let methods = ["GET", "POST"].map(|m| Method::parse(m).expect("method"));
    let globs = ["llama3*", "qwen2.5:7b"].map(|g| Glob::parse(g).expect("glob"));
    vec![
        Grant {
            client_id: "team-a".parse().unwrap(),
            route_id: "ollama-api".parse().unwrap(),
            methods: GrantMethods::Only(methods.to_vec()),
            models: Some(globs.to_vec()),
            limit: Limit::parse("60/1m"),
        },
        Grant {
            client_id: "team-b".parse().unwrap(),
            route_id: "openai".parse().unwrap(),
            methods: GrantMethods::Any,
            models: None,
            limit: Limit::parse("10/1s").and_then(|l| l.with_burst(20)),
        },
    ]
}

#[test]
fn a_complete_file_parses_to_the_expected_document() {
    let doc = parse(&complete_file()).expect("valid file");
    assert_eq!(doc.routes, expected_routes());
    assert_eq!(doc.clients, expected_clients());
    assert_eq!(doc.keys, expected_keys());
    assert_eq!(doc.grants, expected_grants());
    assert_eq!(
        crate::core::policy::Policy::build(doc)
            .expect("a valid policy")
            .counts()
            .to_string(),
        "2 routes, 2 clients, 3 keys, 2 grants"
    );
}

#[test]
fn an_empty_file_is_an_empty_document() {
    assert_eq!(parse("").expect("empty is valid"), Document::default());
    assert_eq!(
        parse("# nothing yet\n").expect("valid"),
        Document::default()
    );
}

#[test]
fn an_unknown_top_level_field_names_its_line_and_column() {
    let text = format!("{ROUTE}\n[[routes]]\nid = \"x\"\n");
    assert_error(&text, "line 9, column 3", "unknown field `routes`");
}

#[test]
fn an_unknown_route_field_names_its_line_and_column() {
    let text = ROUTE.replace("path = ", "pth = ");
    assert_error(&text, "line 5, column 1", "unknown field `pth`");
}

#[test]
fn an_unknown_credential_type_in_a_methods_list_is_rejected() {
    let text = ROUTE.replace(r#"["api_key"]"#, r#"["api_key", "apikey"]"#);
    assert_error(
        &text,
        r#"route "r1" (route #1)"#,
        "methods.GET: unknown credential type `apikey`",
    );
}

#[test]
fn an_unknown_key_field_is_rejected() {
    let text = format!("{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"x\"\nlable = \"l\"\n");
    assert_error(&text, "line 8, column 1", "unknown field `lable`");
}

#[test]
fn duplicate_route_client_and_key_ids_are_rejected() {
    let d1 = digest("one");
    let d2 = digest("two");
    let keys = format!(
        "[[client.key]]\nid = \"k\"\ndigest = \"{d1}\"\n[[client.key]]\nid = \"k\"\ndigest = \"{d2}\"\n"
    );
    let text = format!(
        "{ROUTE}{}{CLIENT}{keys}{CLIENT}",
        ROUTE.replace("/v1/*", "/v2/*")
    );
    assert_error(
        &text,
        r#"route "r1" (route #2)"#,
        r#"id: already used by route "r1" (route #1)"#,
    );
    assert_error(&text, r#"client "c1" (client #2)"#, "id: already used by");
    assert_error(
        &text,
        r#"client "c1" (client #1) key "k" (key #2)"#,
        r#"id: already used by client "c1" (client #1) key "k" (key #1)"#,
    );
}

#[test]
fn a_digest_used_twice_is_rejected_even_across_clients() {
    let d = digest("shared");
    let key = |id: &str| format!("[[client.key]]\nid = \"{id}\"\ndigest = \"{d}\"\n");
    let other = CLIENT.replace("\"c1\"", "\"c2\"");
    let text = format!("{CLIENT}{}{other}{}", key("a"), key("b"));
    assert_error(
        &text,
        r#"client "c2" (client #2) key "b" (key #1)"#,
        "digest: already used by",
    );
}

#[test]
fn two_routes_with_the_same_domain_in_any_case_and_path_are_rejected_naming_both() {
    let second = ROUTE
        .replace("\"r1\"", "\"r2\"")
        .replace("api.example.com", "API.Example.com");
    let errors = errors(&format!("{ROUTE}{second}"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].place, r#"route "r2" (route #2)"#);
    assert!(errors[0].message.contains(r#"route "r1""#), "{errors:#?}");
}

#[test]
fn a_grant_naming_an_unknown_client_or_route_is_rejected() {
    let text = format!(
        "{ROUTE}{CLIENT}[[grant]]\nclient = \"ghost\"\nroute = \"nowhere\"\nmethods = [\"GET\"]\n"
    );
    let place = r#"grant "ghost" -> "nowhere" (grant #1)"#;
    assert_error(&text, place, r#"client: no client has the id "ghost""#);
    assert_error(&text, place, r#"route: no route has the id "nowhere""#);
}

#[test]
fn a_second_grant_for_the_same_client_and_route_is_rejected() {
    let grant = "[[grant]]\nclient = \"c1\"\nroute = \"r1\"\nmethods = [\"GET\"]\n";
    let text = format!("{ROUTE}{CLIENT}{grant}{grant}");
    assert_error(&text, r#"grant "c1" -> "r1" (grant #2)"#, "already used by");
}

fn grant_with(extra: &str) -> String {
    format!("{ROUTE}{CLIENT}[[grant]]\nclient = \"c1\"\nroute = \"r1\"\n{extra}\n")
}

const GRANT_PLACE: &str = r#"grant "c1" -> "r1" (grant #1)"#;

#[test]
fn a_bad_model_glob_is_rejected() {
    let text = grant_with("methods = [\"POST\"]\nmodels = [\"llama3*\", \"bad model\"]");
    assert_error(
        &text,
        GRANT_PLACE,
        "models: `bad model`: a model pattern may not contain",
    );
    let empty = grant_with("methods = [\"POST\"]\nmodels = []");
    assert_error(&empty, GRANT_PLACE, "models: an empty list allows no model");
}

#[test]
fn a_bad_limit_is_rejected() {
    let text = grant_with("methods = [\"GET\"]\nlimit = \"10/1x\"");
    assert_error(&text, GRANT_PLACE, "limit: `10/1x` is not N/window");
    let client = CLIENT.replace("name =", "limit = \"0/1m\"\nname =");
    assert_error(&client, r#"client "c1" (client #1)"#, "limit: `0/1m`");
}

#[test]
fn burst_without_limit_is_rejected() {
    let text = CLIENT.replace("name =", "burst = 5\nname =");
    assert_error(
        &text,
        r#"client "c1" (client #1)"#,
        "burst: needs a `limit`",
    );
    let zero = grant_with("methods = [\"GET\"]\nlimit = \"1/1s\"\nburst = 0");
    assert_error(&zero, GRANT_PLACE, "burst: must be a positive whole number");
}

#[test]
fn a_bad_status_is_rejected() {
    let text = CLIENT.replace("name =", "status = \"paused\"\nname =");
    assert_error(
        &text,
        r#"client "c1" (client #1)"#,
        "status: `paused` is not one of",
    );
    let key = format!(
        "{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"{}\"\nstatus = \"suspended\"\n",
        digest("k")
    );
    assert_error(
        &key,
        r#"client "c1" (client #1) key "k" (key #1)"#,
        "status: `suspended`",
    );
}

#[test]
fn a_lower_case_method_is_rejected_in_routes_and_grants() {
    let text = ROUTE.replace("GET =", "get =");
    assert_error(
        &text,
        r#"route "r1" (route #1)"#,
        "methods.get: `get` is not a method",
    );
    let grant = grant_with("methods = [\"get\"]");
    assert_error(&grant, GRANT_PLACE, "methods: `get` is not a method");
}

#[test]
fn public_mixed_with_credentials_or_an_empty_list_is_rejected() {
    let mixed = ROUTE.replace(r#"["api_key"]"#, r#"["public", "api_key"]"#);
    assert_error(
        &mixed,
        r#"route "r1" (route #1)"#,
        "methods.GET: `public` must be the only entry",
    );
    let empty = ROUTE.replace(r#"["api_key"]"#, "[]");
    assert_error(
        &empty,
        r#"route "r1" (route #1)"#,
        "methods.GET: an empty list accepts nothing",
    );
}

#[test]
fn a_route_without_methods_is_rejected() {
    let text = ROUTE.replace("methods = { GET = [\"api_key\"] }", "");
    assert_error(
        &text,
        r#"route "r1" (route #1)"#,
        "methods: a route needs at least one",
    );
}

#[test]
fn an_upper_case_digest_is_rejected() {
    let text = format!(
        "{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"{}\"\n",
        digest("k").to_uppercase().replace("SHA256:", "sha256:")
    );
    assert_error(
        &text,
        r#"client "c1" (client #1) key "k" (key #1)"#,
        "digest: must be `sha256:` followed by 64 lower-case hex",
    );
}

#[test]
fn a_bad_expires_at_is_rejected() {
    let key = |expiry: &str| {
        format!(
            "{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"{}\"\nexpires_at = {expiry}\n",
            digest("k")
        )
    };
    let place = r#"client "c1" (client #1) key "k" (key #1)"#;
    assert_error(
        &key("\"2027-13-01\""),
        place,
        "expires_at: `2027-13-01` is not an RFC 3339 date-time",
    );
    assert_error(
        &key("2027-01-01T00:00:00"),
        place,
        "expires_at: must be an RFC 3339 date-time with an offset",
    );
}

#[test]
fn a_missing_hmac_env_var_is_named_without_any_value() {
    let text = CLIENT.replace("name =", "hmac_secret = { env = \"NOT_SET\" }\nname =");
    assert_error(
        &text,
        r#"client "c1" (client #1)"#,
        "hmac_secret: environment variable `NOT_SET` is not set",
    );
}

#[test]
fn an_inline_hmac_secret_is_refused_without_being_echoed() {
    for value in ["\"inline-hunter2\"", "{ value = \"inline-hunter2\" }"] {
        let text = CLIENT.replace("name =", &format!("hmac_secret = {value}\nname ="));
        let all = FileErrors(errors(&text)).to_string();
        assert!(all.contains("hmac_secret: "), "{all}");
        assert!(!all.contains("hunter2"), "{all}");
    }
}

#[test]
fn a_file_secret_loses_one_trailing_newline_and_is_read_relative_to_the_file() {
    let dir = scratch_dir("secret");
    std::fs::write(dir.join("lf"), "s3cret\n\n").expect("write");
    std::fs::write(dir.join("crlf"), "s3cret\r\n").expect("write");
    let client = |id: &str, file: &str| {
        format!("[[client]]\nid = \"{id}\"\nname = \"n\"\nhmac_secret = {{ file = \"{file}\" }}\n")
    };
    let config = dir.join("gatekeeper.toml");
    std::fs::write(&config, client("a", "lf") + &client("b", "crlf")).expect("write");
    let doc = load(&config);
    std::fs::remove_dir_all(&dir).expect("clean up");
    let secrets: Vec<_> = doc
        .expect("valid")
        .clients
        .into_iter()
        .map(|c| c.hmac_secret)
        .collect();
    let expected = |s: &str| Some(Secret::new(s.as_bytes().to_vec()));
    assert_eq!(secrets, vec![expected("s3cret\n"), expected("s3cret")]);
}

#[test]
fn an_unreadable_or_empty_secret_file_is_rejected() {
    let dir = scratch_dir("empty-secret");
    std::fs::write(dir.join("empty"), "\n").expect("write");
    let text = |file: &str| {
        CLIENT.replace(
            "name =",
            &format!("hmac_secret = {{ file = \"{file}\" }}\nname ="),
        )
    };
    let empty = parse_document(&text("empty"), &env, &dir);
    let missing = parse_document(&text("missing"), &env, &dir);
    std::fs::remove_dir_all(&dir).expect("clean up");
    let message = |r: Result<Document, FileErrors>| r.expect_err("rejected").to_string();
    assert!(message(empty).contains("is empty"));
    assert!(message(missing).contains("hmac_secret: cannot read"));
}

#[test]
fn a_secret_file_larger_than_a_secret_is_refused_without_reading_it_all() {
    let dir = scratch_dir("huge-secret");
    std::fs::write(dir.join("big"), vec![b'x'; 64 * 1024 + 1]).expect("write");
    std::fs::write(dir.join("edge"), vec![b'x'; 64 * 1024]).expect("write");
    let text = |file: &str| {
        CLIENT.replace(
            "name =",
            &format!("hmac_secret = {{ file = \"{file}\" }}\nname ="),
        )
    };
    let big = parse_document(&text("big"), &env, &dir);
    let edge = parse_document(&text("edge"), &env, &dir);
    // An endless file is refused as quickly as a large one.
    let endless = parse_document(&text("/dev/zero"), &env, &dir);
    std::fs::remove_dir_all(&dir).expect("clean up");
    let message = |r: Result<Document, FileErrors>| r.expect_err("rejected").to_string();
    assert!(message(big).contains("is larger than 65536 bytes"));
    assert!(message(endless).contains("is larger than 65536 bytes"));
    assert!(edge.is_ok(), "64 KiB is still a secret file");
}

#[test]
fn a_secret_hash_that_is_not_bcrypt_is_rejected() {
    for bad in ["$2b$03$", "$2x$12$", "$2b$1a$"] {
        let hash = format!("{bad}{}", &HASH[7..]);
        let text = CLIENT.replace("name =", &format!("secret_hash = \"{hash}\"\nname ="));
        assert_error(
            &text,
            r#"client "c1" (client #1)"#,
            "secret_hash: is not a bcrypt hash",
        );
    }
}

#[test]
fn several_errors_are_reported_at_once() {
    let route = ROUTE.replace("/v1/*", "v1").replace("\"api\"", "\"\"");
    let client = CLIENT.replace("name = \"Client One\"", "name = \" \"\nstatus = \"gone\"");
    let grant = "[[grant]]\nclient = \"c1\"\nroute = \"r9\"\nmethods = []\n";
    let errors = errors(&format!("{route}{client}{grant}"));
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(lines[0].starts_with(r#"route "r1" (route #1): path: "#));
    assert!(lines[1].starts_with(r#"route "r1" (route #1): service: "#));
    assert!(lines[2].starts_with(r#"client "c1" (client #1): name: "#));
    assert!(lines[3].starts_with(r#"client "c1" (client #1): status: "#));
    assert!(lines[4].contains("route: no route has the id \"r9\""));
    assert!(lines[5].contains("methods: list at least one method"));
}

#[test]
fn load_names_a_path_it_cannot_read() {
    let path = std::env::temp_dir().join(format!("gatekeeper-missing-{}.toml", std::process::id()));
    let errors = load(&path).expect_err("missing").0;
    assert_eq!(errors[0].place, path.display().to_string());
    assert!(errors[0].message.starts_with("cannot read"));
}
