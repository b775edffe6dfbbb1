//! Warnings about a valid policy that may not mean what it says: things
//! `gatekeeper check` points out without refusing the file.
//!
//! A grant with a model list on a route that serves inference (`/api/chat`,
//! `/api/generate`, …) and also covers Ollama's model management
//! (`/api/pull`, `/api/push`, `/api/create`, `/api/copy`, `/api/delete`,
//! `/api/blobs/…`, e.g. a route `/api/*`) lets its client pull, push, copy,
//! create and delete every model its list names — usually meant for chat
//! only. Model management belongs on routes of its own, granted on purpose;
//! a grant on such a dedicated route (`/api/pull`) is not warned about.

use std::collections::HashMap;

use super::model::{Document, Method, MethodRule, Route};

/// Ollama's model-management calls, as a route sees them.
const MANAGEMENT: [(&str, &str); 7] = [
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
    ("POST", "/api/create"),
    ("POST", "/api/copy"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/blobs/sha256:0"),
    ("HEAD", "/api/blobs/sha256:0"),
];

/// Inference calls: a route covering one of these is not dedicated to
/// model management.
const INFERENCE: [&str; 4] = [
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
];

/// One sentence per grant with a model list that opens model management
/// on a route that also serves inference.
pub fn warnings(doc: &Document) -> Vec<String> {
    // By id, once: a file may hold 100,000 routes.
    let routes: HashMap<&str, &Route> = doc.routes.iter().map(|r| (&*r.id, r)).collect();
    let mut out = Vec::new();
    for grant in doc.grants.iter().filter(|g| g.models.is_some()) {
        let Some(route) = routes.get(&*grant.route_id) else {
            continue;
        };
        if !INFERENCE.iter().any(|path| route.path.covers(path)) {
            continue;
        }
        let opened: Vec<String> = MANAGEMENT
            .iter()
            .filter(|(method, path)| {
                Method::parse(method).is_some_and(|method| {
                    opens(route, &method, path) && grant.methods.allows(&method)
                })
            })
            .map(|(method, path)| format!("{method} {}", path.replace("sha256:0", "…")))
            .collect();
        if !opened.is_empty() {
            out.push(format!(
                "grant of client `{}` on route `{}` has a model list and covers Ollama's \
                 model management ({}) besides inference: its client may pull, push, copy, create or delete \
                 every model the list names; give model management routes of its own",
                grant.client_id,
                route.id,
                opened.join(", ")
            ));
        }
    }
    out
}

fn opens(route: &Route, method: &Method, path: &str) -> bool {
    route.path.covers(path) && matches!(route.rule_for(method), Some(MethodRule::Credentials(_)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn lint(toml: &str) -> Vec<String> {
        let doc = crate::sources::file_format::parse_document(toml, &|_| None, Path::new("."))
            .expect("valid");
        warnings(&doc)
    }

    const ROUTES: &str = r#"
[[route]]
id = "api"
domain = "*"
path = "/api/*"
service = "ollama"
[route.methods]
POST = ["api_key"]
DELETE = ["api_key"]
[[route]]
id = "chat"
domain = "*"
path = "/api/chat"
service = "ollama"
[route.methods]
POST = ["api_key"]
[[route]]
id = "pull"
domain = "*"
path = "/api/pull"
service = "ollama"
[route.methods]
POST = ["api_key"]
[[client]]
id = "c"
name = "C"
"#;

    #[test]
    fn a_model_listed_grant_on_a_route_covering_model_management_is_named() {
        let found = lint(&format!(
            "{ROUTES}\n[[grant]]\nclient = \"c\"\nroute = \"api\"\nmethods = [\"POST\", \"DELETE\"]\nmodels = [\"llama3*\"]\n"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        for call in [
            "POST /api/pull",
            "POST /api/create",
            "DELETE /api/delete",
            "POST /api/blobs/…",
        ] {
            assert!(found[0].contains(call), "{call}: {}", found[0]);
        }
        assert!(found[0].contains("`c`") && found[0].contains("`api`"));
    }

    #[test]
    fn chat_routes_methods_the_grant_lacks_and_grants_without_models_are_fine() {
        for grant in [
            "route = \"chat\"\nmethods = [\"POST\"]\nmodels = [\"llama3*\"]",
            "route = \"pull\"\nmethods = [\"POST\"]\nmodels = [\"llama3*\"]",
            "route = \"api\"\nmethods = [\"POST\"]",
            "route = \"api\"\nmethods = [\"GET\"]\nmodels = [\"llama3*\"]",
        ] {
            let found = lint(&format!("{ROUTES}\n[[grant]]\nclient = \"c\"\n{grant}\n"));
            assert!(found.is_empty(), "{grant}: {found:?}");
        }
    }
}
