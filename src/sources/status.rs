//! What the policy source last did, for `/readyz`: written by both
//! sources, read by the admin listener.

use serde::Serialize;

/// What the reloader last did, for `/readyz`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadStatus {
    pub source: String,
    pub loaded_at: Option<String>,
    pub last_error: Option<String>,
    pub reloads: u64,
    pub rejected: u64,
    /// PostgreSQL mode: whether the LISTEN connection is up.
    pub listener_connected: Option<bool>,
}
