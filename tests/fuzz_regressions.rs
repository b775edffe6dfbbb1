//! The fuzz targets' properties under plain `cargo test`, no fuzzer needed:
//! every file of `fuzz/corpus/<target>/` (the seeds and what the fuzzer kept)
//! is replayed through the same checks the targets run (`fuzz/src/properties/`),
//! and every input a fuzzer once found failing stays here as a named case.

#[path = "../fuzz/src/properties/mod.rs"]
mod properties;

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_satisfies_its_targets_properties() {
    for &(target, check) in properties::TARGETS {
        let dir = corpus_dir(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path());
        let mut replayed = 0;
        for path in entries.filter(|p| p.is_file()) {
            let data = std::fs::read(&path).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            replayed += 1;
        }
        assert!(
            replayed > 0,
            "{target}: an empty corpus in {}",
            dir.display()
        );
    }
}

#[test]
fn the_seed_inputs_of_every_target_pass() {
    let seeds: [(&str, &[u8]); 7] = [
        ("path", b"/public/a/../b?api_key=fuzz-legacy-key-team-a"),
        ("host", b"API.Example.com.:8443"),
        ("credential", b"Bearer k1\nx-key\napi_key=q"),
        (
            "hmac_header",
            b"client_id=\"team-a\", timestamp=1700000000, nonce=n-1, \
              signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        (
            "api_key",
            b"gk_sh92javii9sd_I8WbNLUqvXdscDvSRQdWtDbJAQmir7Cu1ubU0I",
        ),
        (
            "file",
            b"[[route]]\nid = \"r\"\ndomain = \"*\"\npath = \"/*\"\nservice = \"s\"\n\
              [route.methods]\nGET = [\"public\"]\n",
        ),
        (
            "model_body",
            br#"{"model":"llama3:8b","Model":"mistral","\u017fource":"x","name":1}"#,
        ),
    ];
    for (target, data) in seeds {
        let (_, check) = properties::TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .expect("a target");
        check(data);
    }
}
