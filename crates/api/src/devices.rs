//! Seed device jobs as the API shows them (`/v1/devices/...` and `/v1/audit`, docs/protocol.md
//! "Seed devices"), and what the device commands send: the order, logistics, erasure.

use serde::{Deserialize, Serialize};

use crate::{ImportJob, JobState, Unlock};

/// One line of the vault's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339.
    pub time: String,
    /// Who: `user NAME` or `machine NAME`.
    pub actor: String,
    /// What, e.g. `device-erased`, `device-prepared`, `device-status`.
    pub action: String,
    /// The job (or other object) it concerns.
    pub target: String,
    /// Details (JSON text).
    pub detail: String,
}

/// `GET /v1/devices/{name}`: a device job and its audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceJob {
    #[serde(flatten)]
    pub job: ImportJob,
    pub audit: Vec<AuditEntry>,
}

/// `POST /v1/devices`: a device ordered for a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOrderRequest {
    /// The machine's name.
    pub machine: String,
    /// `disk` or `box`.
    #[serde(rename = "type")]
    pub device_type: String,
    /// Bytes; default: the type's.
    pub capacity: Option<u64>,
    pub container: Option<String>,
}

/// The answer to an order: the new job, and its name once more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderedDevice {
    #[serde(flatten)]
    pub job: ImportJob,
    pub device_job: String,
}

/// `POST /v1/devices/{name}/prepare`: the next device of the job, with what its header needs
/// (its number, the set, the device key that MACs it) and the unlock credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedDevice {
    pub job: ImportJob,
    pub device_number: u32,
    pub set_id: String,
    pub device_key: String,
    pub capacity: u64,
    #[serde(rename = "type")]
    pub device_type: String,
    pub unlock: Unlock,
}

/// `POST /v1/devices/{name}/status`: a logistics move, by the vault's staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub state: JobState,
    pub carrier: Option<String>,
    pub tracking: Option<String>,
}

/// `POST /v1/devices/{name}/erased`: a device was erased, verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceErased {
    pub device: u32,
    pub files: u64,
    pub bytes: u64,
}

/// `GET /v1/devices/{name}/key`: the device key, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeyReply {
    pub device_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import_jobs::tests::{job, JOB_JSON};

    #[test]
    fn fixed_json() {
        let audit = AuditEntry {
            id: 1,
            time: "2026-11-30T00:00:00Z".into(),
            actor: "user op".into(),
            action: "device-erased".into(),
            target: "device-1".into(),
            detail: "{}".into(),
        };
        let d = DeviceJob { job: job(), audit: vec![audit] };
        let text = format!(
            r#"{JOB_JSON},"audit":[{{"id":1,"time":"2026-11-30T00:00:00Z","actor":"user op","action":"device-erased","target":"device-1","detail":"{{}}"}}]}}"#
        );
        assert_eq!(serde_json::to_string(&d).unwrap(), text);
        assert_eq!(serde_json::from_str::<DeviceJob>(&text).unwrap(), d);
        let o = OrderedDevice { job: job(), device_job: "device-1".into() };
        assert_eq!(serde_json::from_str::<OrderedDevice>(&format!(r#"{JOB_JSON},"device_job":"device-1"}}"#)).unwrap(), o);
        let order = DeviceOrderRequest { machine: "web".into(), device_type: "disk".into(), capacity: None, container: None };
        assert_eq!(serde_json::to_string(&order).unwrap(), r#"{"machine":"web","type":"disk","capacity":null,"container":null}"#);
        let s = DeviceStatus { state: JobState::ShippedToCustomer, carrier: None, tracking: Some("T".into()) };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"state":"shipped-to-customer","carrier":null,"tracking":"T"}"#);
        let e = DeviceErased { device: 2, files: 3, bytes: 4 };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"device":2,"files":3,"bytes":4}"#);
    }
}
