//! Hot reload of the declarative file (DESIGN §2, §10 "Process"): SIGHUP
//! takes effect within 2 s, a changed file without a signal within 5 s, and
//! a file that does not validate is rejected while the last good policy keeps
//! serving.

mod common;

use std::time::Duration;

use common::{generate_key, metric, poll_until, Gatekeeper, Key, Req};

const SIGHUP_DEADLINE: Duration = Duration::from_secs(2);
const FILE_CHANGE_DEADLINE: Duration = Duration::from_secs(5);

/// One route, one client with `key` (in `key_status`), and a GET grant when
/// `granted`.
fn policy(key: &Key, key_status: &str, granted: bool) -> String {
    let mut t = format!(
        "[[route]]\nid = \"data\"\ndomain = \"api.test\"\npath = \"/data/*\"\nservice = \"test\"\n\
         [route.methods]\nGET = [\"api_key\"]\n\n\
         [[client]]\nid = \"team-a\"\nname = \"Team A\"\nstatus = \"active\"\n\n{}",
        key.toml(key_status, None)
    );
    if granted {
        t += "[[grant]]\nclient = \"team-a\"\nroute = \"data\"\nmethods = [\"GET\"]\n";
    }
    t
}

fn request(key: &Key) -> Req {
    Req::get("/data/x").host("api.test").bearer(&key.key)
}

#[test]
fn a_grant_added_to_the_file_is_live_within_two_seconds_of_sighup() {
    let key = generate_key();
    // A long interval, so only the signal can explain the change.
    let env = [("GATEKEEPER_RELOAD_INTERVAL", "1h")];
    let gk = Gatekeeper::start_with_env(&policy(&key, "active", false), &env);
    assert_eq!(gk.send(&request(&key)).reason(), "no_permission");
    gk.rewrite_config(&policy(&key, "active", true));
    gk.sighup();
    let allowed = || gk.send(&request(&key)).status == 200;
    assert!(poll_until(SIGHUP_DEADLINE, allowed), "{:#?}", gk.logs());
}

#[test]
fn a_key_revoked_in_the_file_is_refused_within_five_seconds_without_a_signal() {
    let key = generate_key();
    let gk = Gatekeeper::start(&policy(&key, "active", true));
    assert_eq!(gk.send(&request(&key)).status, 200);
    gk.rewrite_config(&policy(&key, "revoked", true));
    let revoked = || gk.send(&request(&key)).reason() == "key_revoked";
    assert!(
        poll_until(FILE_CHANGE_DEADLINE, revoked),
        "{:#?}",
        gk.logs()
    );
}

#[test]
fn an_invalid_file_is_rejected_and_the_old_policy_keeps_serving_until_it_is_fixed() {
    let key = generate_key();
    let gk = Gatekeeper::start(&policy(&key, "active", false));
    let broken = policy(&key, "active", true) + "unknown_field = 1\n";
    gk.rewrite_config(&broken);
    gk.sighup();
    let rejected = || gk.readyz()["reload"]["rejected"].as_u64() >= Some(1);
    assert!(poll_until(SIGHUP_DEADLINE, rejected), "{:#?}", gk.logs());
    let ready = gk.readyz();
    assert!(
        ready["reload"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{ready}"
    );
    let rejections = [("result", "rejected")];
    assert!(
        metric(
            &gk.metrics(),
            "gatekeeper_config_reloads_total",
            &rejections
        ) >= 1.0
    );
    assert_eq!(
        gk.send(&request(&key)).reason(),
        "no_permission",
        "the old policy serves"
    );

    gk.rewrite_config(&policy(&key, "active", true));
    let allowed = || gk.send(&request(&key)).status == 200;
    assert!(
        poll_until(FILE_CHANGE_DEADLINE, allowed),
        "{:#?}",
        gk.logs()
    );
    let oks = [("result", "ok")];
    assert!(metric(&gk.metrics(), "gatekeeper_config_reloads_total", &oks) >= 1.0);
}

#[test]
fn the_old_policy_keeps_serving_allows_while_a_broken_file_is_in_place() {
    let key = generate_key();
    let gk = Gatekeeper::start(&policy(&key, "active", true));
    gk.rewrite_config("[[route]]\nid = \"data\"\n");
    gk.sighup();
    let rejected = || gk.readyz()["reload"]["rejected"].as_u64() >= Some(1);
    assert!(poll_until(SIGHUP_DEADLINE, rejected), "{:#?}", gk.logs());
    let r = gk.send(&request(&key));
    assert_eq!((r.status, r.reason()), (200, "authenticated"), "{r:?}");
}
