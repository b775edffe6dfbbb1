//! The in-process harness: `App::build` on port 0 with a declarative file
//! in a temporary directory, run on a runtime of its own, stopped by a
//! oneshot instead of a signal (the mini-redis `run(listener, shutdown)`
//! and zero2prod `spawn_app` pattern). No process, so a suite of /authz
//! contract tests costs one binary, not one spawn per test.
//!
//! Two things are per process, not per App, and so per test binary here:
//! - the metrics recorder (`gatekeeper::metrics::install`, once): every
//!   App of the binary renders the same counters, so a test asserts on
//!   `/metrics` only with labels unique to it (or stays process-based);
//! - the log subscriber: every App's log lines go to one buffer, and
//!   [`TestApp::logs`] returns all of them, other tests' included — enough
//!   for "this never appears in a log", not for counting one App's lines.
//!
//! The settings are the process harness's (`BASE_ENV`) plus the test's,
//! read with `Config::from_map`: nothing touches the process environment.
//! `{ env = … }` secrets in the file are looked up in the same map.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gatekeeper::app::{App, Deps, Source};
use gatekeeper::clock::{Clock, SystemClock};
use gatekeeper::config::Config;
use gatekeeper::core::policy::Policy;
use gatekeeper::signals::{HangupTrigger, Hangups};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::oneshot;

use super::{http, Req, Response, BASE_ENV};

/// Longest a stop may take before the harness gives up on it: the grace
/// (10 s by default) plus the audit flush bound, with room to spare.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// An App running in this process; stopped (and awaited) on drop.
pub struct TestApp {
    pub authz_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    dir: tempfile::TempDir,
    config: PathBuf,
    hangup: HangupTrigger,
    stop: Option<oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// An App serving `toml`, with the base settings.
pub fn spawn_app(toml: &str) -> TestApp {
    spawn_app_with_env(toml, &[])
}

/// An App serving `toml`, with `env` on top of the base settings (the
/// same names the process harness takes: `GATEKEEPER_*` settings and the
/// variables `{ env = … }` secrets name).
pub fn spawn_app_with_env(toml: &str, env: &[(&str, &str)]) -> TestApp {
    spawn_app_with(toml, env, Arc::new(SystemClock::default()))
}

/// As [`spawn_app_with_env`], deciding by `clock`.
pub fn spawn_app_with(toml: &str, env: &[(&str, &str)], clock: Arc<dyn Clock>) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("gatekeeper.toml");
    std::fs::write(&config_path, toml).expect("write config");
    let vars: HashMap<String, String> = BASE_ENV
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_map(&vars).unwrap_or_else(|e| panic!("settings: {e}"));
    let policy = first_policy(toml, &vars, dir.path());
    let metrics = process_wide().clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-app")
        .enable_all()
        .build()
        .expect("a runtime");
    let (hangup, hangups) = Hangups::trigger();
    let deps = Deps {
        source: Source::File(config_path.clone()),
        policy,
        clock,
        metrics,
        hangups,
    };
    let app = runtime
        .block_on(async { App::build(config, deps) })
        .unwrap_or_else(|e| panic!("App::build: {e:#}"));
    super::note_started();
    let authz_addr = app.authz_addr.parse().expect("a TCP /authz address");
    let admin_addr = app.admin_addr;
    let (stop, stopped) = oneshot::channel::<()>();
    let run = runtime.spawn(app.run(async {
        let _ = stopped.await;
    }));
    TestApp {
        authz_addr,
        admin_addr,
        dir,
        config: config_path,
        hangup,
        stop: Some(stop),
        run: Some(run),
        runtime: Some(runtime),
    }
}

/// The file's policy, its `{ env = … }` secrets read from `vars`.
fn first_policy(toml: &str, vars: &HashMap<String, String>, dir: &Path) -> Policy {
    let env = |name: &str| vars.get(name).cloned();
    let doc = gatekeeper::sources::file_format::parse_document(toml, &env, dir)
        .unwrap_or_else(|e| panic!("the policy file is invalid: {e}"));
    Policy::build(doc).unwrap_or_else(|e| panic!("the policy is invalid: {e}"))
}

/// The metrics recorder and the log capture, set up once per test binary.
fn process_wide() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        capture_logs();
        gatekeeper::metrics::install().expect("the metrics recorder")
    })
}

fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

/// JSON lines, as `serve` writes them, at `GATEKEEPER_LOG_LEVEL=debug`
/// (gatekeeper's own debug lines, the libraries' info): a "never logged"
/// assertion then covers more than the process harness's default level.
fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,gatekeeper=debug"))
        .with_writer(|| Capture)
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .try_init();
}

/// Appends what the subscriber writes (one event per write) to the lines.
struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut lines = log_lines().lock().unwrap_or_else(|e| e.into_inner());
        lines.extend(text.lines().map(str::to_owned));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TestApp {
    /// Sends one request to `/authz`: GET, or POST with `body`.
    pub fn authz<N: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        headers: &[(N, V)],
        body: Option<&[u8]>,
    ) -> Response {
        self.try_authz(headers, body)
            .unwrap_or_else(|e| panic!("/authz failed: {e}"))
    }

    pub fn try_authz<N: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        headers: &[(N, V)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        super::authz_at(self.authz_addr, headers, body)
    }

    /// Sends a request built with [`Req`].
    pub fn send(&self, req: &Req) -> Response {
        self.authz(&req.headers, req.body.as_deref())
    }

    pub fn admin_get(&self, path: &str) -> Response {
        http(self.admin_addr, "GET", path, &[], None).expect("admin request")
    }

    pub fn readyz(&self) -> serde_json::Value {
        let r = self.admin_get("/readyz");
        assert_eq!(r.status, 200, "/readyz: {}", r.text());
        serde_json::from_slice(&r.body).expect("/readyz is JSON")
    }

    /// Every line logged in this test binary so far (see the module doc).
    pub fn logs(&self) -> Vec<String> {
        log_lines()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `App::run` is still running.
    pub fn is_alive(&self) -> bool {
        self.run.as_ref().is_some_and(|run| !run.is_finished())
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the declarative file atomically (write, then rename).
    pub fn rewrite_config(&self, toml: &str) {
        let tmp = self.dir.path().join("gatekeeper.toml.new");
        std::fs::write(&tmp, toml).expect("write new config");
        std::fs::rename(&tmp, &self.config).expect("replace config");
    }

    /// What SIGHUP is to the process: asks the reloader to read the file.
    pub fn hangup(&self) {
        assert!(self.hangup.send(), "the App is not running");
    }

    /// Resolves the shutdown future and waits for `App::run` to return:
    /// its result, or an error when it took longer than [`STOP_DEADLINE`].
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> anyhow::Result<()> {
        let (Some(stop), Some(run), Some(runtime)) =
            (self.stop.take(), self.run.take(), self.runtime.take())
        else {
            return Ok(());
        };
        let _ = stop.send(());
        let result = runtime.block_on(async { tokio::time::timeout(STOP_DEADLINE, run).await });
        runtime.shutdown_timeout(Duration::from_secs(1));
        match result {
            Ok(Ok(ran)) => ran,
            Ok(Err(join)) => Err(anyhow::anyhow!("App::run panicked: {join}")),
            Err(_) => Err(anyhow::anyhow!(
                "App::run did not stop in {STOP_DEADLINE:?}"
            )),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let result = self.shut_down();
        if !std::thread::panicking() {
            result.expect("the App stops cleanly");
        }
    }
}
