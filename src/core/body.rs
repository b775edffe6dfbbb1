//! The LLM model(s) a request names, for grants limited to models (DESIGN
//! §5, §11 "Models"), read the way the upstreams read them.
//!
//! This module owns which JSON fields name a model on which endpoint, and
//! how an upstream matches a body's keys to those fields:
//! - Ollama decodes bodies with Go's `encoding/json`, which matches a key to
//!   a field case-insensitively — ASCII, and the four non-ASCII letters that
//!   fold to ASCII ones (`ſ` U+017F → s, `K` U+212A → k, `İ` U+0130 and `ı`
//!   U+0131 → i) — and keeps the last match;
//! - the Python servers (vLLM, LiteLLM) read exact keys, the last of two
//!   identical ones winning.
//!
//! So every top-level key that folds to a model-naming field is a model
//! the request names — duplicates and near-duplicates included — and all of
//! them must be strings on the grant's list. Which fields, by endpoint:
//!
//! | endpoint (path ending)                          | fields                                  |
//! | ----------------------------------------------- | --------------------------------------- |
//! | `/api/copy`                                     | `source` and `destination` (both)      |
//! | `/api/create`                                   | `model` / `name` (one at least), `from`; `files`, `adapters`, `draft_files`, `remote_host` need a `*` grant |
//! | `/api/pull`, `/api/push`, `/api/delete`, `/api/show`, `/api/blobs/…` | `model` / `name` (one at least) |
//! | anything else (chat, generate, embed, `/v1/…`)  | `model`                                 |
//!
//! Outside the body, a `model` query parameter and the `<name>` of
//! `…/v1/models/<name>` name a model too (`models_in_target`).
//!
//! It must not decide whether a model is allowed (that is the grant's glob
//! list), and must not log or keep the body: it may hold a prompt.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

#[derive(Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The body is not one JSON object.
    NotJson,
    /// A model-naming field is missing, not a string, or empty.
    NoModel,
}

/// What a body names: every model, and whether it brings models of its own
/// (`/api/create` from uploaded `files`, `adapters` or `draft_files`, or as
/// a proxy to a `remote_host`: any model at all).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub models: Vec<String>,
    pub weights: bool,
}

/// The model-naming fields of one kind of endpoint.
struct Endpoint {
    /// Every key folding to one of these names a model.
    fields: &'static [&'static str],
    /// Each of these must be present…
    all_of: &'static [&'static str],
    /// …and at least one of these (when not empty).
    one_of: &'static [&'static str],
    /// Keys that bring weights of the client's own or another server's
    /// models (not a model name): allowed only to a grant of every model.
    weights: &'static [&'static str],
}

const INFERENCE: Endpoint = Endpoint {
    fields: &["model"],
    all_of: &["model"],
    one_of: &[],
    weights: &[],
};
const MANAGEMENT: Endpoint = Endpoint {
    fields: &["model", "name"],
    all_of: &[],
    one_of: &["model", "name"],
    weights: &[],
};
const CREATE: Endpoint = Endpoint {
    fields: &["model", "name", "from"],
    all_of: &[],
    one_of: &["model", "name"],
    weights: &["files", "adapters", "draft_files", "remote_host"],
};
const COPY: Endpoint = Endpoint {
    fields: &["source", "destination"],
    all_of: &["source", "destination"],
    one_of: &[],
    weights: &[],
};

/// Ollama calls that name the model in `name` or `model`. Matching on the
/// path's ending lets a route mount Ollama under a prefix (`/ollama/api/pull`).
const MANAGEMENT_ENDINGS: [&str; 4] = ["/api/pull", "/api/push", "/api/delete", "/api/show"];
const BLOBS: &str = "/api/blobs/";

fn endpoint(path: &str) -> &'static Endpoint {
    // A trailing slash must not turn a management call into one checked by
    // `model` alone.
    let path = path.trim_end_matches('/');
    if path.ends_with("/api/copy") {
        &COPY
    } else if path.ends_with("/api/create") {
        &CREATE
    } else if MANAGEMENT_ENDINGS.iter().any(|end| path.ends_with(end)) || path.contains(BLOBS) {
        &MANAGEMENT
    } else {
        &INFERENCE
    }
}

/// The models `body` names for a request to the normalised `path`.
pub fn models_in_body(path: &str, body: &[u8]) -> Result<Named, ModelError> {
    let endpoint = endpoint(path);
    let found = read_fields(endpoint, body)?;
    let present = |field: &str| found.iter().any(|(f, _)| *f == field);
    let complete = endpoint.all_of.iter().all(|f| present(f))
        && (endpoint.one_of.is_empty() || endpoint.one_of.iter().any(|f| present(f)));
    if !complete {
        return Err(ModelError::NoModel);
    }
    let mut named = Named::default();
    for (field, value) in found {
        match value {
            _ if endpoint.weights.contains(&field) => named.weights |= value != Value::Null,
            Value::Str(s) if !s.is_empty() => named.models.push(s),
            _ => return Err(ModelError::NoModel),
        }
    }
    Ok(named)
}

/// The models named outside the body: every `model` query parameter
/// (decoded as form data, as the Python servers read it) and the `<name>`
/// of `…/v1/models/<name>` (OpenAI's and Ollama's model retrieval). A
/// parameter whose value cannot be decoded is `NoModel`.
pub fn models_in_target(path: &str, query: Option<&str>) -> Result<Vec<String>, ModelError> {
    let mut models = Vec::new();
    if let Some((_, name)) = path.split_once("/v1/models/") {
        let name = name.trim_end_matches('/');
        if !name.is_empty() {
            models.push(name.to_owned());
        }
    }
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if super::form::decode(name).as_deref() != Some("model") {
            continue;
        }
        match super::form::decode(value) {
            Some(value) if !value.is_empty() => models.push(value.into_owned()),
            _ => return Err(ModelError::NoModel),
        }
    }
    Ok(models)
}

/// Whether `key` names `field` (ASCII lower case) for some upstream: equal
/// under Go's `encoding/json` folding, which exact keys pass too.
pub fn names_field(key: &str, field: &str) -> bool {
    key.chars()
        .map(fold)
        .eq(field.chars().map(|c| c.to_ascii_uppercase()))
}

/// Go ≥ 1.21 `encoding/json` (`foldName`): ASCII letters to upper case, any
/// other rune to `ToUpper(ToLower(r))`. Only a rune that folds to ASCII can
/// equal a field's (ASCII) name; these four are all of them in Unicode's
/// simple case mappings (older Go, `bytes.EqualFold`, knows the first two).
fn fold(c: char) -> char {
    match c {
        '\u{017F}' => 'S',
        '\u{212A}' => 'K',
        '\u{0130}' | '\u{0131}' => 'I',
        c => c.to_ascii_uppercase(),
    }
}

/// A top-level value, as far as the model check cares.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Null,
    Other,
}

/// Every top-level key of `body` that names one of the endpoint's fields or
/// weights, with its value, in body order (duplicates kept). Other values
/// are skipped without being kept.
fn read_fields(
    endpoint: &'static Endpoint,
    body: &[u8],
) -> Result<Vec<(&'static str, Value)>, ModelError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = TopLevel(endpoint)
        .deserialize(&mut de)
        .map_err(|_| ModelError::NotJson)?;
    de.end().map_err(|_| ModelError::NotJson)?;
    Ok(found)
}

struct TopLevel(&'static Endpoint);

impl<'de> DeserializeSeed<'de> for TopLevel {
    type Value = Vec<(&'static str, Value)>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Vec<(&'static str, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Vec::new();
        let named = |key: &str| {
            let fields = self.0.fields.iter().chain(self.0.weights);
            fields.copied().find(|field| names_field(key, field))
        };
        while let Some(Key(key)) = map.next_key()? {
            match named(&key) {
                Some(field) => found.push((field, map.next_value::<AnyValue>()?.0)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// A key, borrowed from the body when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(KeyVisitor)
    }
}

/// A value of a model-naming key: its string, or what it is instead
/// (nested values are skipped, not kept).
struct AnyValue(Value);

impl<'de> serde::Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = AnyValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<AnyValue, E> {
                Ok(AnyValue(Value::Str(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<AnyValue, E> {
                Ok(AnyValue(Value::Null))
            }
            fn visit_bool<E>(self, _: bool) -> Result<AnyValue, E> {
                Ok(AnyValue(Value::Other))
            }
            fn visit_i64<E>(self, _: i64) -> Result<AnyValue, E> {
                Ok(AnyValue(Value::Other))
            }
            fn visit_u64<E>(self, _: u64) -> Result<AnyValue, E> {
                Ok(AnyValue(Value::Other))
            }
            fn visit_f64<E>(self, _: f64) -> Result<AnyValue, E> {
                Ok(AnyValue(Value::Other))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<AnyValue, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyValue(Value::Other))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<AnyValue, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyValue(Value::Other))
            }
        }
        de.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
