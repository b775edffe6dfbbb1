//! gatekeeper: the decision service nginx asks, through `auth_request`,
//! whether a request may pass.
//!
//! # Layout
//!
//! Layers, bottom to top; every `use crate::…` points down (a test,
//! `tests/layers.rs`, fails the build on an upward import or a cycle):
//!
//! 1. `core` — the pure policy: parse a request, match a route, judge a
//!    credential, a grant, a model and a limit. No I/O, no `async`, no
//!    `crate::` import.
//! 2. `clock`, `config`, `error`, `metrics`, `logging`, `signals` — the
//!    time, the settings, the error taxonomy (a deny is a value, an outage
//!    an `Outage`), the metric names, the process's signals as futures.
//! 3. `db` — PostgreSQL: the pool, the migrations, every SQL statement.
//! 4. `state` — what a decision asks of the outside world, behind small
//!    traits: limits, nonces, key look-up, bcrypt; in process, in Redis
//!    (`state::redis`) or in PostgreSQL, with the Redis fallback written
//!    once.
//! 5. `decide` — the pipeline: one request → `Result<Decision, Outage>`,
//!    each credential type a verifier behind one interface.
//! 6. `sources`, `audit`, `import`, `apply` — where the policy comes from
//!    (the file, PostgreSQL), the audit log, the predecessor import and the
//!    declarative `apply` engine.
//! 7. `http` — the edge: `/authz`, and the admin listener.
//! 8. `app` — the composition root: `App::build(config, deps)`, then
//!    `run(shutdown)`; `serve` hands it `signals::terminate()`, tests a
//!    channel.
//!
//! The command line (`src/commands/`) lives in the binary, not here:
//! nothing in the library knows about exit codes or clap.
#![forbid(unsafe_code)]

pub mod app;
pub mod apply;
pub mod audit;
pub mod clock;
pub mod config;
pub mod core;
pub mod db;
pub mod decide;
pub mod error;
pub mod http;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod signals;
pub mod sources;
pub mod state;
