//! What the Ferry client and the Ferry vault exchange, in one place both sides build on: the
//! JSON bodies of the vault's API (docs/protocol.md), the seed manifest an import leaves in its
//! container and the seed digest, the vault's signed receipts and unlock credentials.
//!
//! It holds types and the rules that belong to them (a policy's validation, a job state's
//! name, a receipt's signed text and its verification, a size as both ends show it), no I/O,
//! and depends on no other Ferry crate: the vault (`ferry-vault`), the vault client
//! (`ferry_store::VaultClient`), the seeding tools (`ferry-seed`) and the command line all use
//! these definitions, so the two ends of the wire cannot drift apart. Field names are the
//! protocol: each type is pinned by a test against fixed JSON.
//!
//! # Example
//! ```
//! let policy: ferry_api::BackupPolicy = serde_json::from_str(r#"{"paths":["/srv"],"times":["02:30"]}"#)?;
//! assert!(policy.validate().is_ok());
//! assert_eq!(policy.bandwidth.limit_at("mon", 9 * 60), 0);
//! # Ok::<(), serde_json::Error>(())
//! ```

#![forbid(unsafe_code)]

mod control;
mod devices;
mod export_jobs;
mod import_jobs;
mod job_state;
mod objects;
mod policy;
mod seed;
mod signed;
mod size;

pub use control::{
    reported_errors, Credentials, ErrorReply, Health, JobOpened, JobUpdate, JobView, MachineView, NewJob, NewPassword, NewUser,
    RegisterRequest, Registered, RetentionReport, SoftDeletedPoint, Undeleted, UserAdded, UserUnlocked, UserView, REPORTED_ERROR_CHARS,
};
pub use devices::{AuditEntry, DeviceErased, DeviceJob, DeviceKeyReply, DeviceOrderRequest, DeviceStatus, OrderedDevice, PreparedDevice};
pub use export_jobs::{export_label_job, ExportFailure, ExportJob, ExportUnlock, NewExportJob, EXPORT_UNLOCK_MAGIC};
pub use import_jobs::{
    Cleanup, DeviceOrder, DiskKeyReply, DiskRecord, DiskSetReport, ImportJob, NewImportJob, ReceivedDisks, Shipment, SiteImportJob,
    TransferReport,
};
pub use job_state::{JobState, DISK_STATES};
pub use objects::{ObjectEntry, ObjectSize, ObjectWritten};
pub use policy::{parse_time, BackupPolicy, Bandwidth, Keep, DAYS};
pub use seed::{commit_phase, manifest_digest, seed_digest, SeedManifest, SeedObject, SEED_MANIFEST_KEY};
pub use signed::{Receipt, Unlock, UNLOCK_MAGIC};
pub use size::human_size;

/// Why an exchanged value was refused: malformed, or signed by another key, or altered. The
/// message names the value and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
