//! Model fields of a forwarded body (`core::body`). The input is a request
//! body; it is judged as the body of an inference call (`/api/chat`), of a
//! management call (`/api/pull`), of `/api/copy` and of `/api/create`. For
//! every input and each of those:
//! - the answer is deterministic and never a panic;
//! - no model a last-key-wins reader would take is missed: when the body is
//!   one JSON object, for every key that names a field of the endpoint
//!   (exactly or under Go's folding), the value a reader keeping the last
//!   such key sees is a string among the models named — or the body is
//!   refused;
//! - an accepted inference body names at least one model, and every model
//!   named is non-empty.
//!
//! And the input read as a query string (`models_in_target`) never panics,
//! and each `model=` parameter it holds verbatim is among the models named.

use gatekeeper::core::body::{models_in_body, models_in_target, names_field};

const ENDPOINTS: [(&str, &[&str]); 4] = [
    ("/api/chat", &["model"]),
    ("/api/pull", &["model", "name"]),
    ("/api/copy", &["source", "destination"]),
    ("/api/create", &["model", "name", "from"]),
];

pub fn check(data: &[u8]) {
    for (path, fields) in ENDPOINTS {
        let got = models_in_body(path, data);
        assert_eq!(models_in_body(path, data), got, "not deterministic");
        let Ok(named) = got else { continue };
        assert!(named.models.iter().all(|m| !m.is_empty()), "an empty model");
        if path == "/api/chat" {
            assert!(
                !named.models.is_empty(),
                "an accepted chat body named no model"
            );
        }
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(data) else {
            continue;
        };
        for (key, value) in &object {
            if fields.iter().any(|f| names_field(key, f)) {
                let seen = value.as_str().map(str::to_owned);
                assert!(
                    seen.is_some_and(|s| named.models.contains(&s)),
                    "{path}: key {key:?} names a model the check did not see"
                );
            }
        }
    }
    check_query(data);
}

fn check_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(models) = models_in_target("/v1/chat/completions", Some(query)) else {
        return;
    };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("model=") {
            if !value.contains(['%', '+']) {
                assert!(models.iter().any(|m| m == value), "model={value} missed");
            }
        }
    }
}
