use super::*;

fn models(path: &str, body: &str) -> Result<Vec<String>, ModelError> {
    models_in_body(path, body.as_bytes()).map(|n| n.models)
}

fn ok(names: &[&str]) -> Result<Vec<String>, ModelError> {
    Ok(names.iter().map(|s| s.to_string()).collect())
}

const INFERENCE_PATHS: [&str; 9] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/ollama/v1/chat/completions",
    "/v1/responses",
];

#[test]
fn openai_and_ollama_inference_calls_name_the_model_field() {
    let body = r#"{"model":"llama3:8b","messages":[],"name":"ignored"}"#;
    for path in INFERENCE_PATHS {
        assert_eq!(models(path, body), ok(&["llama3:8b"]), "{path}");
    }
}

#[test]
fn every_key_that_folds_to_model_is_a_model_the_request_names() {
    // Go's encoding/json takes the last key that folds to `model`; the
    // Python servers the last exact one: each of these is a model one of
    // them would run.
    let cases = [
        (
            r#"{"model":"llama3:8b","Model":"mistral"}"#,
            &["llama3:8b", "mistral"][..],
        ),
        (
            r#"{"Model":"mistral","model":"llama3:8b"}"#,
            &["mistral", "llama3:8b"],
        ),
        (r#"{"model":"a","MODEL":"b","mOdEl":"c"}"#, &["a", "b", "c"]),
        (r#"{"model":"a","model":"b"}"#, &["a", "b"]),
        (r#"{"mod\u0065l":"a"}"#, &["a"]),
        (r#"{"MOD\u0045L":"a","model":"b"}"#, &["a", "b"]),
    ];
    for path in INFERENCE_PATHS {
        for (body, expected) in cases {
            assert_eq!(models(path, body), ok(expected), "{path} {body}");
        }
    }
}

#[test]
fn the_non_ascii_letters_go_folds_to_ascii_name_fields() {
    // U+017F ſ folds to s, U+212A K to k (every Go), U+0130 İ and U+0131 ı
    // to i (Go ≥ 1.21): `ſource`, `Kelvin` variants and `destınatıon` name
    // the fields an ASCII reader would not see.
    let copy = r#"{"ſource":"mistral","destınatİon":"mine","source":"llama3","destination":"x"}"#;
    assert_eq!(
        models("/api/copy", copy),
        ok(&["mistral", "mine", "llama3", "x"])
    );
    for key in ["\u{212A}", "K"] {
        let body = format!(r#"{{"model":"llama3","{key}ey":"x"}}"#);
        // `Key` is not a model field: nothing more is named.
        assert_eq!(models("/api/chat", &body), ok(&["llama3"]));
    }
    assert!(names_field("ſource", "source"));
    assert!(names_field("SOURCE", "source"));
    assert!(names_field("fıles", "files"));
    assert!(names_field("fİles", "files"));
    assert!(names_field("\u{212A}", "k"));
    assert!(!names_field("modél", "model"));
    assert!(!names_field("model ", "model"));
    assert!(!names_field("mode", "model"));
    assert!(!names_field("models", "model"));
    assert!(!names_field("ßource", "source"));
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
        r#"{"model":{"name":"llama3"}}"#,
        r#"{"model":"llama3","MODEL":null}"#,
        r#"{"model":"llama3","Model":1}"#,
        r#"{"model":"llama3","mOdel":["mistral"]}"#,
    ] {
        assert_eq!(
            models("/v1/chat/completions", body),
            Err(ModelError::NoModel),
            "{body}"
        );
    }
}

#[test]
fn bodies_that_are_not_one_json_object_are_not_json() {
    for body in [
        "",
        "not json",
        "[\"llama3\"]",
        "\"llama3\"",
        "null",
        "{\"model\":",
        "{} {}",
        r#"{"model":"llama3"} {"model":"mistral"}"#,
        r#"{"model":"llama3"}garbage"#,
        r#"{"model":"llama3",}"#,
        r#"{"mod\ud800el":"x"}"#,
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
    assert_eq!(
        models_in_body("/api/chat", b"{\"model\":\"ll\xffama\"}"),
        Err(ModelError::NotJson)
    );
}

#[test]
fn whitespace_around_the_object_is_fine() {
    assert_eq!(models("/api/chat", " \n{\"model\":\"a\"}\r\n "), ok(&["a"]));
}

#[test]
fn deeply_nested_json_is_refused_without_panicking() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(models("/api/chat", &deep), Err(ModelError::NotJson));
    let inside = format!(
        r#"{{"model":"a","options":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // Skipped values are skipped without recursion: no stack to exhaust.
    assert_eq!(models("/api/chat", &inside), ok(&["a"]));
}

#[test]
fn management_calls_name_the_model_in_name_or_model() {
    for path in [
        "/api/pull",
        "/api/push",
        "/api/delete",
        "/api/show",
        "/api/blobs/sha256:abc",
        "/ollama/api/pull",
        "/api/pull/",
    ] {
        for body in [
            r#"{"name":"qwen2.5:7b"}"#,
            r#"{"model":"qwen2.5:7b"}"#,
            r#"{"NAME":"qwen2.5:7b"}"#,
            r#"{"Model":"qwen2.5:7b"}"#,
        ] {
            assert_eq!(models(path, body), ok(&["qwen2.5:7b"]), "{path} {body}");
        }
    }
}

#[test]
fn management_calls_naming_both_fields_return_both() {
    let body = r#"{"name":"llama3","model":"forbidden"}"#;
    assert_eq!(models("/api/pull", body), ok(&["llama3", "forbidden"]));
    let folded = r#"{"name":"llama3","NaMe":"forbidden"}"#;
    assert_eq!(models("/api/push", folded), ok(&["llama3", "forbidden"]));
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
fn create_names_its_model_its_base_and_says_when_it_brings_weights() {
    let named = |body: &str| models_in_body("/api/create", body.as_bytes());
    assert_eq!(
        named(r#"{"model":"mine","from":"mistral"}"#),
        Ok(Named {
            models: vec!["mine".into(), "mistral".into()],
            weights: false
        })
    );
    assert_eq!(
        named(r#"{"model":"mine","From":"mistral"}"#).map(|n| n.models),
        ok(&["mine", "mistral"])
    );
    for body in [
        r#"{"model":"mine","files":{"m.gguf":"sha256:abc"}}"#,
        r#"{"model":"mine","adapters":{"a.gguf":"sha256:abc"}}"#,
        r#"{"model":"mine","FILES":{}}"#,
        r#"{"model":"mine","fıles":[]}"#,
        r#"{"model":"mine","from":"llama3","draft_files":{"d.gguf":"sha256:abc"}}"#,
        r#"{"model":"mine","Draft_Files":{}}"#,
        r#"{"model":"mine","from":"llama3","remote_host":"https://elsewhere.example"}"#,
    ] {
        assert_eq!(named(body).map(|n| n.weights), Ok(true), "{body}");
    }
    assert_eq!(
        named(r#"{"model":"mine","files":null}"#).map(|n| n.weights),
        Ok(false)
    );
    assert_eq!(named(r#"{"from":"llama3"}"#), Err(ModelError::NoModel));
    assert_eq!(
        named(r#"{"model":"mine","from":""}"#),
        Err(ModelError::NoModel)
    );
}

#[test]
fn copy_names_source_and_destination_both_required() {
    let both = r#"{"source":"llama3","destination":"mine","model":"x"}"#;
    assert_eq!(models("/api/copy", both), ok(&["llama3", "mine"]));
    assert_eq!(models("/ollama/api/copy", both), ok(&["llama3", "mine"]));
    let folded = r#"{"Source":"llama3","DESTINATION":"mine","ſource":"mistral"}"#;
    assert_eq!(
        models("/api/copy", folded),
        ok(&["llama3", "mine", "mistral"])
    );
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

#[test]
fn the_request_target_names_models_in_the_query_and_the_retrieval_path() {
    let target = |path: &str, query: Option<&str>| models_in_target(path, query);
    assert_eq!(target("/v1/chat/completions", None), ok(&[]));
    assert_eq!(target("/v1/models", None), ok(&[]));
    assert_eq!(target("/v1/models/", None), ok(&[]));
    assert_eq!(target("/v1/models/llama3:8b", None), ok(&["llama3:8b"]));
    assert_eq!(
        target("/v1/models/meta-llama/Llama-3", None),
        ok(&["meta-llama/Llama-3"])
    );
    assert_eq!(
        target("/v1/chat/completions", Some("model=mistral")),
        ok(&["mistral"])
    );
    assert_eq!(
        target("/x", Some("a=1&mod%65l=mistral&model=llama3+x")),
        ok(&["mistral", "llama3 x"])
    );
    assert_eq!(target("/x", Some("models=a&Model=b&amodel=c")), ok(&[]));
    for bad in ["model=", "model", "model=%zz", "model=%ff"] {
        assert_eq!(target("/x", Some(bad)), Err(ModelError::NoModel), "{bad}");
    }
}
