//! The pure policy core: parsing and normalising what nginx sent, matching
//! routes, judging credentials and permissions, and producing a `Decision`.
//! Nothing in here does I/O, awaits, or reads the clock by itself.

pub mod decision;
pub mod glob;
pub mod model;
