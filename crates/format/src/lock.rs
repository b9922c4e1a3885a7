//! Locks: `locks/<random hex>`, plain JSON. A backup holds a shared lock, prune's sweep an
//! exclusive one. Locks are refreshed every few minutes; one not refreshed for
//! [`STALE_AFTER_S`] seconds is stale and ignored (its process died).

use serde::{Deserialize, Serialize};

pub const MAGIC: &str = "ferry-lock";
pub const VERSION: u32 = 1;
/// A lock older than this (since its last refresh) is stale.
pub const STALE_AFTER_S: i64 = 30 * 60;
/// How often a holder refreshes its lock.
pub const REFRESH_EVERY_S: u64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub magic: String,
    pub version: u32,
    pub exclusive: bool,
    /// When the holder started (RFC 3339).
    pub started: String,
    /// Last refresh (Unix seconds).
    pub refreshed: i64,
    pub host: String,
    pub pid: u32,
    /// What holds it: "backup", "prune", ...
    pub purpose: String,
}
