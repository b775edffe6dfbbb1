//! The pure policy core: parsing and normalising what nginx sent, matching
//! routes, judging credentials and permissions, and producing a `Decision`.
//! Nothing in here does I/O, awaits, or reads the clock by itself.

pub mod apikey;
pub mod body;
pub mod credential;
pub mod decision;
pub mod form;
pub mod glob;
pub mod host;
pub mod ids;
pub mod limiter;
pub mod lint;
pub mod model;
pub mod path;
pub mod policy;
pub mod request;
pub mod routes;
pub mod seal;
pub mod signature;
