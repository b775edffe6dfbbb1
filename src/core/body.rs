//! The LLM model(s) a forwarded request body names, for grants limited to
//! models (DESIGN §5, §11 "Models").
//!
//! This module owns which JSON fields name a model on which path: `model` for
//! OpenAI-compatible calls and Ollama's inference calls; `name` and/or `model`
//! for Ollama's model-management calls; `source` and `destination` for
//! `/api/copy`. It returns every model named so that the caller can require
//! all of them to be allowed.
//!
//! It must not decide whether a model is allowed (that is the grant's glob
//! list), and must not log or keep the body: it may hold a prompt.

use serde_json::{Map, Value};

#[derive(Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The body is not JSON, or not a JSON object.
    NotJson,
    /// A field that should name a model is missing, not a string, or empty.
    NoModel,
}

/// Ollama calls that name the model in `name` or `model`.
const MANAGEMENT_ENDINGS: [&str; 5] = [
    "/api/pull",
    "/api/push",
    "/api/delete",
    "/api/create",
    "/api/show",
];
const BLOBS: &str = "/api/blobs/";
const COPY: &str = "/api/copy";

/// The models `body` names for a request to the normalised `path`. Matching
/// on the path's ending lets a route mount Ollama under a prefix
/// (`/ollama/api/pull`).
pub fn models_in_body(path: &str, body: &[u8]) -> Result<Vec<String>, ModelError> {
    let object = parse_object(body)?;
    // A trailing slash must not turn a management call into one checked by
    // `model` alone.
    let path = path.trim_end_matches('/');
    if path.ends_with(COPY) {
        required(&object, &["source", "destination"])
    } else if is_management(path) {
        any_present(&object, &["name", "model"])
    } else {
        required(&object, &["model"])
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ModelError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(ModelError::NotJson),
    }
}

fn is_management(path: &str) -> bool {
    MANAGEMENT_ENDINGS.iter().any(|end| path.ends_with(end)) || path.contains(BLOBS)
}

/// Every field must name a model.
fn required(object: &Map<String, Value>, fields: &[&str]) -> Result<Vec<String>, ModelError> {
    fields.iter().map(|f| model_field(object.get(*f))).collect()
}

/// At least one field is present; every present one must name a model, so a
/// request cannot smuggle a second, unchecked model next to an allowed one.
fn any_present(object: &Map<String, Value>, fields: &[&str]) -> Result<Vec<String>, ModelError> {
    let present: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| object.contains_key(*f))
        .collect();
    if present.is_empty() {
        return Err(ModelError::NoModel);
    }
    required(object, &present)
}

fn model_field(value: Option<&Value>) -> Result<String, ModelError> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ModelError::NoModel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(path: &str, body: &str) -> Result<Vec<String>, ModelError> {
        models_in_body(path, body.as_bytes())
    }

    fn ok(names: &[&str]) -> Result<Vec<String>, ModelError> {
        Ok(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn openai_and_ollama_inference_calls_name_the_model_field() {
        let body = r#"{"model":"llama3:8b","messages":[],"name":"ignored"}"#;
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/api/chat",
            "/api/generate",
            "/api/embed",
        ] {
            assert_eq!(models(path, body), ok(&["llama3:8b"]), "{path}");
        }
    }

    #[test]
    fn inference_calls_without_a_model_string_have_no_model() {
        for body in [
            r#"{}"#,
            r#"{"name":"llama3"}"#,
            r#"{"model":""}"#,
            r#"{"model":null}"#,
            r#"{"model":7}"#,
            r#"{"model":["llama3"]}"#,
        ] {
            assert_eq!(
                models("/v1/chat/completions", body),
                Err(ModelError::NoModel),
                "{body}"
            );
        }
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_not_json() {
        for body in [
            "",
            "not json",
            "[\"llama3\"]",
            "\"llama3\"",
            "null",
            "{\"model\":",
            "{} {}",
        ] {
            assert_eq!(
                models("/api/chat", body),
                Err(ModelError::NotJson),
                "{body:?}"
            );
        }
        assert_eq!(
            models_in_body("/api/chat", b"\xff{"),
            Err(ModelError::NotJson)
        );
    }

    #[test]
    fn deeply_nested_json_is_refused_without_panicking() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(models("/api/chat", &deep), Err(ModelError::NotJson));
    }

    #[test]
    fn management_calls_name_the_model_in_name_or_model() {
        for path in [
            "/api/pull",
            "/api/push",
            "/api/delete",
            "/api/create",
            "/api/show",
            "/api/blobs/sha256:abc",
            "/ollama/api/pull",
            "/api/pull/",
        ] {
            assert_eq!(
                models(path, r#"{"name":"qwen2.5:7b"}"#),
                ok(&["qwen2.5:7b"]),
                "{path}"
            );
            assert_eq!(
                models(path, r#"{"model":"qwen2.5:7b"}"#),
                ok(&["qwen2.5:7b"]),
                "{path}"
            );
        }
    }

    #[test]
    fn management_calls_naming_both_fields_return_both() {
        let body = r#"{"name":"llama3","model":"forbidden"}"#;
        assert_eq!(models("/api/pull", body), ok(&["llama3", "forbidden"]));
    }

    #[test]
    fn management_calls_with_a_bad_name_or_model_have_no_model() {
        for body in [
            r#"{}"#,
            r#"{"source":"llama3"}"#,
            r#"{"name":""}"#,
            r#"{"name":1}"#,
            r#"{"model":"llama3","name":null}"#,
            r#"{"name":"llama3","model":false}"#,
        ] {
            assert_eq!(
                models("/api/delete", body),
                Err(ModelError::NoModel),
                "{body}"
            );
        }
    }

    #[test]
    fn copy_names_source_and_destination_both_required() {
        let both = r#"{"source":"llama3","destination":"mine","model":"x"}"#;
        assert_eq!(models("/api/copy", both), ok(&["llama3", "mine"]));
        assert_eq!(models("/ollama/api/copy", both), ok(&["llama3", "mine"]));
        for body in [
            r#"{"source":"llama3"}"#,
            r#"{"destination":"mine"}"#,
            r#"{"name":"llama3"}"#,
            r#"{"source":"llama3","destination":""}"#,
            r#"{"source":1,"destination":"mine"}"#,
        ] {
            assert_eq!(
                models("/api/copy", body),
                Err(ModelError::NoModel),
                "{body}"
            );
        }
    }

    #[test]
    fn similar_paths_are_not_management_calls() {
        // Paths are case-sensitive, and `/api/pullx` is not `/api/pull`.
        let body = r#"{"name":"llama3"}"#;
        for path in ["/api/pullx", "/API/pull", "/api/blobs", "/v1/api/copyx"] {
            assert_eq!(models(path, body), Err(ModelError::NoModel), "{path}");
        }
    }
}
