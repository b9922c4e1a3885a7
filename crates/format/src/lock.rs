//! Locks: `locks/<random hex>`, plain JSON. Backups and prune hold shared locks (prune also
//! refuses to run beside another prune); `exclusive` is reserved for operations that must run
//! alone. Holders refresh their lock every [`REFRESH_EVERY_S`] seconds from a timer thread; a
//! lock not refreshed for [`STALE_AFTER_S`] seconds is stale and ignored (its process died).

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
    /// The holder's boot ID (Linux `/proc/sys/kernel/random/boot_id`): a lock whose host and
    /// boot ID are ours and whose process is gone is stale at once. Absent in older locks.
    #[serde(default)]
    pub boot_id: String,
}
