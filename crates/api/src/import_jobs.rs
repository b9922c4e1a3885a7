//! Import jobs as the API shows them (`/v1/import-jobs/...`, docs/protocol.md "Import jobs"),
//! and what the seeding commands send to move them: a job's state, its disks, the disk set
//! diskprep recorded, the shipment, the import's progress.

use serde::{Deserialize, Serialize};

use crate::JobState;

/// One disk of a job's set, as the vault knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    /// The disk's number in its set, 1..=count.
    pub id: u32,
    /// `prepared`, `never-received`, `received`, `manifest-error`, `key-invalid`, `corrupted`,
    /// `transferring`, `completed`, `completed-with-errors`.
    pub state: String,
    /// Bytes on the disk and objects it holds (from diskprep).
    pub bytes: u64,
    pub objects: u64,
    /// Objects copied into the container by the import, and found there already.
    #[serde(default)]
    pub copied: u64,
    #[serde(default)]
    pub skipped: u64,
    /// The disk's error log (each line names the object).
    #[serde(default)]
    pub errors: Vec<String>,
}

/// An import job as the API shows it (never with its disk key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportJob {
    pub name: String,
    /// The machine's ID and name.
    pub machine: String,
    pub machine_name: String,
    /// Where the import puts the objects (a store location: folder, az://, s3://).
    pub container: String,
    pub state: JobState,
    pub created: String,
    /// Ship by then or the job expires (RFC 3339); `null` once shipped.
    pub deadline: Option<String>,
    pub carrier: Option<String>,
    pub tracking: Option<String>,
    pub return_address: Option<String>,
    /// The disk set's ID (hex) and the BLAKE3 digest of its manifest, from diskprep.
    pub set_id: Option<String>,
    pub manifest_digest: Option<String>,
    pub disks: Vec<DiskRecord>,
    /// The seeded recovery point, once ingested.
    pub recovery_point: Option<String>,
    pub errors: Vec<String>,
    pub updated: String,
    /// `disks` (the customer's disks, `ferry diskprep`) or `device` (a vault-provisioned seed
    /// device; its disks are the devices).
    pub kind: String,
    /// A device job's order.
    pub device: Option<DeviceOrder>,
}

/// What was ordered for a device job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOrder {
    /// `disk` or `box`.
    #[serde(rename = "type")]
    pub device_type: String,
    /// Bytes one device holds.
    pub capacity: u64,
    /// When the current unlock credential stops opening the device (RFC 3339); `null` before
    /// the first device is prepared.
    pub unlock_expires: Option<String>,
}

/// An import job with the address of the vault's site, to which its disks are shipped: what
/// the calls on one import job answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteImportJob {
    #[serde(flatten)]
    pub job: ImportJob,
    pub shipping_address: Option<String>,
}

/// What diskprep (or a device's seal) tells the vault about a disk set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSetReport {
    pub set_id: String,
    pub manifest_digest: Option<String>,
    pub disks: Vec<DiskRecord>,
    /// All objects are on the disks and verified: the job awaits shipment.
    pub complete: bool,
}

/// `POST /v1/import-jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewImportJob {
    pub name: String,
    /// Where the import puts the objects; default: the vault's import container + `/NAME`.
    pub container: Option<String>,
    /// For users: the machine's name (a machine creates jobs for itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

/// `POST /v1/import-jobs/{name}/ship`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub carrier: String,
    pub tracking: String,
    pub return_address: Option<String>,
}

/// `POST /v1/import-jobs/{name}/receive`: the disks as the import operator found them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedDisks {
    pub disks: Vec<DiskRecord>,
}

/// `POST /v1/import-jobs/{name}/transfer`: the copy's progress or end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReport {
    pub state: JobState,
    pub disks: Vec<DiskRecord>,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// `GET /v1/import-jobs/{name}/disk-key`: the disk key, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskKeyReply {
    pub disk_key: String,
}

/// `POST /v1/import-jobs/{name}/cleanup`: what was removed from the job's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    pub job: String,
    pub container_objects_removed: u64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn job() -> ImportJob {
        ImportJob {
            name: "j1".into(),
            machine: "m".into(),
            machine_name: "web".into(),
            container: "/c".into(),
            state: JobState::AwaitingShipment,
            created: "2026-11-30T00:00:00Z".into(),
            deadline: Some("2026-12-14T00:00:00Z".into()),
            carrier: None,
            tracking: None,
            return_address: None,
            set_id: Some("aa".into()),
            manifest_digest: None,
            disks: vec![DiskRecord { id: 1, state: "prepared".into(), bytes: 10, objects: 2, copied: 0, skipped: 0, errors: vec![] }],
            recovery_point: None,
            errors: vec![],
            updated: "2026-11-30T00:00:01Z".into(),
            kind: "disks".into(),
            device: None,
        }
    }

    pub(crate) const JOB_JSON: &str = r#"{"name":"j1","machine":"m","machine_name":"web","container":"/c","state":"awaiting-shipment","created":"2026-11-30T00:00:00Z","deadline":"2026-12-14T00:00:00Z","carrier":null,"tracking":null,"return_address":null,"set_id":"aa","manifest_digest":null,"disks":[{"id":1,"state":"prepared","bytes":10,"objects":2,"copied":0,"skipped":0,"errors":[]}],"recovery_point":null,"errors":[],"updated":"2026-11-30T00:00:01Z","kind":"disks","device":null"#;

    #[test]
    fn fixed_json() {
        let text = format!("{JOB_JSON}}}");
        assert_eq!(serde_json::to_string(&job()).unwrap(), text);
        assert_eq!(serde_json::from_str::<ImportJob>(&text).unwrap(), job());
        let site = SiteImportJob { job: job(), shipping_address: Some("Dock 4".into()) };
        let text = format!(r#"{JOB_JSON},"shipping_address":"Dock 4"}}"#);
        assert_eq!(serde_json::to_string(&site).unwrap(), text);
        assert_eq!(serde_json::from_str::<SiteImportJob>(&text).unwrap(), site);
        // A disk record from before copied, skipped and errors existed.
        let d: DiskRecord = serde_json::from_str(r#"{"id":2,"state":"received","bytes":1,"objects":1}"#).unwrap();
        assert_eq!((d.copied, d.skipped, d.errors.len()), (0, 0, 0));
    }

    #[test]
    fn requests_fixed_json() {
        let set = DiskSetReport { set_id: "aa".into(), manifest_digest: None, disks: vec![], complete: false };
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"{"set_id":"aa","manifest_digest":null,"disks":[],"complete":false}"#);
        let new = NewImportJob { name: "j".into(), container: None, machine: None };
        assert_eq!(serde_json::to_string(&new).unwrap(), r#"{"name":"j","container":null}"#);
        let t = TransferReport { state: JobState::Transferring, disks: vec![], errors: vec!["e".into()] };
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"state":"transferring","disks":[],"errors":["e"]}"#);
        let s = Shipment { carrier: "DHL".into(), tracking: "T1".into(), return_address: None };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"carrier":"DHL","tracking":"T1","return_address":null}"#);
        let c: Cleanup = serde_json::from_str(r#"{"job":"j","container_objects_removed":4}"#).unwrap();
        assert_eq!(c.container_objects_removed, 4);
    }
}
