//! gatekeeper: the decision service nginx asks, through `auth_request`,
//! whether a request may pass.
#![forbid(unsafe_code)]

pub mod core;
