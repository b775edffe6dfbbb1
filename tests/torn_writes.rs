//! A declarative file rewritten in place (truncated, then written slowly)
//! is never installed half-written, however often a reload is asked for
//! (issue 19, item 1): half of a file can still validate, and a key whose
//! `status = "revoked"` line is not written yet would be active.
//!
//! In process (`spawn_app`): the hang-ups are the injected trigger, fired
//! every 20 ms while a writer rewrites the file line by line.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{generate_key, poll_until, spawn_app_with_env, Req};

/// The revoked key's `status` line comes last, so every prefix of the
/// file that ends just before it is a valid policy with the key active.
fn policy(key: &common::Key) -> String {
    format!(
        "[[route]]\nid = \"data\"\ndomain = \"*\"\npath = \"/data/*\"\nservice = \"test\"\n\
         [route.methods]\nGET = [\"api_key\"]\n\n\
         [[grant]]\nclient = \"team\"\nroute = \"data\"\nmethods = [\"GET\"]\n\n\
         [[client]]\nid = \"team\"\nname = \"Team\"\n\n\
         [[client.key]]\nid = \"{}\"\ndigest = \"{}\"\nstatus = \"revoked\"\n",
        key.id, key.digest
    )
}

/// Truncates `path` and writes `text` a line at a time, `gap` apart.
fn write_slowly(path: &std::path::Path, text: &str, gap: Duration) {
    let mut file = std::fs::File::create(path).expect("truncate the policy");
    for line in text.split_inclusive('\n') {
        file.write_all(line.as_bytes()).expect("write a line");
        file.flush().expect("flush");
        std::thread::sleep(gap);
    }
}

#[test]
fn a_file_rewritten_in_place_is_never_installed_half_written() {
    let key = generate_key();
    let text = policy(&key);
    // Every answer is a judgement of the key: the failed-credential
    // throttle (a revoked key counts) must not answer for it.
    let app = Arc::new(spawn_app_with_env(
        &text,
        &[("GATEKEEPER_FAILED_AUTH_LIMIT", "1000000/1s")],
    ));
    let req = Req::get("/data/x").bearer(&key.key);
    assert_eq!(app.send(&req).reason(), "key_revoked");
    let reloads_before = app.readyz()["reload"]["reloads"].as_u64().unwrap_or(0);

    let done = Arc::new(AtomicBool::new(false));
    let hangups = {
        let (app, done) = (app.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                app.hangup();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let allowed = Arc::new(AtomicUsize::new(0));
    let revoked = Arc::new(AtomicUsize::new(0));
    let client = {
        let (app, done) = (app.clone(), done.clone());
        let (allowed, revoked) = (allowed.clone(), revoked.clone());
        let req = req.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let r = app.send(&req);
                if r.status == 200 {
                    allowed.fetch_add(1, Ordering::SeqCst);
                } else if r.reason() == "key_revoked" {
                    revoked.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    // Rewrites with a pause between them, long enough for a whole file to
    // settle and be installed.
    let until = Instant::now() + Duration::from_secs(4);
    let mut rewrites = 0;
    while Instant::now() < until {
        write_slowly(app.config_path(), &text, Duration::from_millis(10));
        rewrites += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    done.store(true, Ordering::SeqCst);
    hangups.join().expect("the hang-up thread");
    client.join().expect("the client thread");

    assert_eq!(
        allowed.load(Ordering::SeqCst),
        0,
        "the revoked key was allowed while the file was half-written \
         ({rewrites} rewrites, {} answered key_revoked)",
        revoked.load(Ordering::SeqCst)
    );
    assert!(
        revoked.load(Ordering::SeqCst) > 100,
        "the key was judged throughout"
    );
    // Whole files were installed meanwhile: the reloads were not all refused.
    let installed = || app.readyz()["reload"]["reloads"].as_u64().unwrap_or(0) > reloads_before;
    assert!(
        poll_until(Duration::from_secs(5), installed),
        "{}",
        app.readyz()
    );
    assert_eq!(app.send(&req).reason(), "key_revoked");
}

#[test]
fn a_reload_to_a_file_with_no_route_is_refused_and_the_last_good_policy_serves() {
    let key = generate_key();
    let app = spawn_app_with_env(&policy(&key), &[]);
    let req = Req::get("/data/x").bearer(&key.key);
    assert_eq!(app.send(&req).reason(), "key_revoked");
    for emptied in ["", "# emptied by a failed deploy\n"] {
        app.rewrite_config(emptied);
        app.hangup();
        let refused = || {
            app.readyz()["reload"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("GATEKEEPER_ALLOW_EMPTY_POLICY"))
        };
        assert!(
            poll_until(Duration::from_secs(5), refused),
            "{}",
            app.readyz()
        );
        assert_eq!(
            app.send(&req).reason(),
            "key_revoked",
            "the last good policy"
        );
        app.rewrite_config(&policy(&key));
        app.hangup();
        let whole = || app.readyz()["reload"]["last_error"].is_null();
        assert!(
            poll_until(Duration::from_secs(5), whole),
            "{}",
            app.readyz()
        );
    }
}

#[test]
fn a_file_with_no_route_is_served_when_that_is_allowed() {
    let app = spawn_app_with_env(
        "[[route]]\nid = \"r\"\ndomain = \"*\"\npath = \"/r/*\"\nservice = \"s\"\n\
         [route.methods]\nGET = [\"public\"]\n",
        &[("GATEKEEPER_ALLOW_EMPTY_POLICY", "true")],
    );
    assert_eq!(app.send(&Req::get("/r/x")).status, 200);
    app.rewrite_config("");
    app.hangup();
    let emptied = || app.send(&Req::get("/r/x")).reason() == "no_route_match";
    assert!(
        poll_until(Duration::from_secs(5), emptied),
        "{}",
        app.readyz()
    );
}
