//! The HTTP edge: `/authz` for nginx and the admin endpoints. Handlers turn
//! headers into a request, ask the `Authorizer`, and write the answer; they
//! hold no policy logic.

pub mod admin;
pub mod authz;
pub mod connections;
