//! Recovery points: the commit point of a backup.
//!
//! ```text
//! recovery_point := envelope(RecoveryPoint, JSON(RecoveryPoint))
//! ```
//! JSON inside the envelope keeps the object extensible: readers ignore unknown fields.

use ferry_crypto::MasterKey;
use serde::{Deserialize, Serialize};

use crate::envelope::{open_named, seal_named};
use crate::{BlobId, FormatError, ObjectType, RecoveryPointId};

/// What a backup did, as stored in its recovery point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub total_bytes: u64,
    pub duration_s: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// RFC 3339 time the backup started.
    pub time: String,
    pub host: String,
    pub user: String,
    /// The absolute paths that were backed up.
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub parent: Option<RecoveryPointId>,
    /// The root tree: one entry per backed-up path component chain (see docs/format.md).
    pub tree: BlobId,
    /// True when some files could not be read.
    #[serde(default)]
    pub partial: bool,
    pub summary: Summary,
    pub ferry_version: String,
}

impl RecoveryPoint {
    pub fn seal(&self, master: &MasterKey) -> (RecoveryPointId, Vec<u8>) {
        let body = serde_json::to_vec(self).expect("recovery point serializes");
        let (id, bytes) = seal_named(&master.meta_key(), ObjectType::RecoveryPoint, &body);
        (RecoveryPointId::from_bytes(id), bytes)
    }

    pub fn open(master: &MasterKey, id: &RecoveryPointId, bytes: &[u8]) -> Result<Self, FormatError> {
        let body = open_named(&master.meta_key(), ObjectType::RecoveryPoint, id.as_bytes(), bytes)?;
        serde_json::from_slice(&body).map_err(|e| FormatError::malformed("recovery point", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = MasterKey::generate();
        let rp = RecoveryPoint {
            time: "2026-11-22T00:00:00Z".into(),
            host: "h".into(),
            user: "u".into(),
            paths: vec!["/data".into()],
            tags: vec!["t".into()],
            parent: None,
            tree: BlobId::from_bytes([1; 32]),
            partial: false,
            summary: Summary::default(),
            ferry_version: "0.1.0".into(),
        };
        let (id, bytes) = rp.seal(&m);
        assert_eq!(RecoveryPoint::open(&m, &id, &bytes).unwrap(), rp);
        assert_eq!(&bytes[..8], b"FRYRPT\x01\x00");
        assert!(RecoveryPoint::open(&MasterKey::generate(), &id, &bytes).is_err());
    }
}
