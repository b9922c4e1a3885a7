//! Export jobs as the API shows them (`/v1/export-jobs/...`, docs/protocol.md "Export jobs"):
//! a recovery point that travels from the vault to its machine on disks, the mirror of an
//! import job (docs/design/export-jobs.md). Disks and shipments are the import jobs' types.

use serde::{Deserialize, Serialize};

use crate::{DiskRecord, JobState};

/// An export job (never with its disk key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportJob {
    pub name: String,
    /// The machine's ID and name.
    pub machine: String,
    pub machine_name: String,
    /// The recovery point that travels (full ID, hex).
    pub recovery_point: String,
    /// The paths asked for (restored from the disks); the disks carry the whole recovery
    /// point's packs, since the vault cannot see paths.
    pub paths: Vec<String>,
    pub state: JobState,
    pub created: String,
    /// Ship by then (RFC 3339); `null` once shipped.
    pub deadline: Option<String>,
    pub carrier: Option<String>,
    pub tracking: Option<String>,
    pub return_address: Option<String>,
    /// The disk set's ID (hex) and the BLAKE3 digest of its manifest, from `ferry export run`.
    pub set_id: Option<String>,
    pub manifest_digest: Option<String>,
    pub disks: Vec<DiskRecord>,
    pub errors: Vec<String>,
    pub updated: String,
}

/// `POST /v1/export-jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewExportJob {
    pub name: String,
    /// The machine's name.
    pub machine: String,
    /// A recovery point ID or a unique prefix of one (at least 8 hex digits), or `latest`.
    pub recovery_point: String,
    #[serde(default)]
    pub paths: Vec<String>,
    pub return_address: Option<String>,
}

/// `POST /v1/export-jobs/{name}/fail`: why `ferry export run` stopped (the job is `failed`
/// until it is run again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFailure {
    pub error: String,
}

/// `GET /v1/export-jobs/{name}/unlock`: what the machine's owner needs to open the disks (the
/// disk-unlock file of `ferry export-job unlock`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportUnlock {
    /// [`EXPORT_UNLOCK_MAGIC`].
    pub magic: String,
    pub version: u32,
    pub job: String,
    pub machine: String,
    pub machine_name: String,
    pub recovery_point: String,
    /// The disk set's ID (hex), once the disks are written.
    pub set_id: Option<String>,
    /// The disk key (64 hex digits): the secret of this file.
    pub disk_key: String,
}

/// The `magic` of an export job's disk-unlock file.
pub const EXPORT_UNLOCK_MAGIC: &str = "ferry-export-unlock";

impl std::fmt::Debug for ExportUnlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportUnlock").field("job", &self.job).field("machine", &self.machine).finish()
    }
}

/// The job name written in an export disk's label: export and import jobs have separate
/// names, and a disk of one is never taken for a disk of the other.
pub fn export_label_job(name: &str) -> String {
    format!("export:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_json() {
        let j = ExportJob {
            name: "e1".into(),
            machine: "m".into(),
            machine_name: "web".into(),
            recovery_point: "ab".into(),
            paths: vec!["/srv".into()],
            state: JobState::Preparing,
            created: "2026-12-01T00:00:00Z".into(),
            deadline: Some("2026-12-15T00:00:00Z".into()),
            carrier: None,
            tracking: None,
            return_address: Some("Dock 4".into()),
            set_id: None,
            manifest_digest: None,
            disks: vec![],
            errors: vec![],
            updated: "2026-12-01T00:00:01Z".into(),
        };
        let text = r#"{"name":"e1","machine":"m","machine_name":"web","recovery_point":"ab","paths":["/srv"],"state":"preparing","created":"2026-12-01T00:00:00Z","deadline":"2026-12-15T00:00:00Z","carrier":null,"tracking":null,"return_address":"Dock 4","set_id":null,"manifest_digest":null,"disks":[],"errors":[],"updated":"2026-12-01T00:00:01Z"}"#;
        assert_eq!(serde_json::to_string(&j).unwrap(), text);
        assert_eq!(serde_json::from_str::<ExportJob>(text).unwrap(), j);
        let n: NewExportJob =
            serde_json::from_str(r#"{"name":"e","machine":"web","recovery_point":"latest","return_address":null}"#).unwrap();
        assert!(n.paths.is_empty());
        let u = ExportUnlock {
            magic: EXPORT_UNLOCK_MAGIC.into(),
            version: 1,
            job: "e".into(),
            machine: "m".into(),
            machine_name: "web".into(),
            recovery_point: "ab".into(),
            set_id: None,
            disk_key: "cd".repeat(32),
        };
        assert!(!format!("{u:?}").contains("cdcd"), "Debug shows no key");
        assert_eq!(export_label_job("e"), "export:e");
        let f = ExportFailure { error: "disk full".into() };
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"error":"disk full"}"#);
    }
}
