//! gatekeeper: the decision service nginx asks, through `auth_request`,
//! whether a request may pass.
//!
//! `core` is the pure policy: parse, match, judge, decide. Everything else
//! is an edge: configuration, the declarative file, caches, HTTP, metrics.
#![forbid(unsafe_code)]

pub mod app;
pub mod apply;
pub mod audit;
pub mod authorizer;
pub mod basic;
pub mod cache;
pub mod cli;
pub mod config;
pub mod core;
pub mod db;
pub mod file;
pub mod http;
pub mod import_cli;
pub mod logging;
pub mod manage;
pub mod metrics;
pub mod nonce;
pub mod reload;
pub mod shared;
