//! Key-less metadata that lets a vault enforce retention without the passphrase.
//!
//! - **Pack list** `packlists/<recovery point hex>`: written by a backup to a vault, before the
//!   recovery point itself. It says when the recovery point was made, which retention group it
//!   belongs to (a keyed hash of host and paths, so the vault can group without learning them)
//!   and every pack holding a blob the recovery point uses. The vault keeps a pack while any
//!   recovery point it keeps (or holds soft-deleted) lists it.
//! - **Deleted packs** `deleted-packs/<random hex>`: written by the vault *before* it deletes
//!   packs no kept recovery point lists. Agents read these records and drop the packs' blobs
//!   from their local index, so no new backup deduplicates against a deleted blob.
//!
//! Both are plain JSON: the vault must read them without a key. What they reveal (recovery
//! point times, pack membership) the vault sees anyway from when objects arrive. See
//! docs/format.md and docs/design/vault.md.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{FormatError, PackId, RecoveryPointId};

pub const PACK_LIST_MAGIC: &str = "ferry-packlist";
pub const DELETED_PACKS_MAGIC: &str = "ferry-deleted-packs";
pub const VERSION: u32 = 1;
const WHAT: &str = "pack list";
const WHAT_DELETED: &str = "deleted-packs record";

/// Largest pack list or deleted-packs record read (a pack list of 4 million packs, 64 TiB of
/// 16 MiB packs, is about 270 MiB; larger inputs are refused rather than exhausting memory).
pub const MAX_LEN: usize = 512 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackList {
    pub magic: String,
    pub version: u32,
    pub recovery_point: RecoveryPointId,
    /// The recovery point's time (RFC 3339).
    pub time: String,
    /// Recovery points of one group (same host and paths) are retained together.
    pub group: String,
    /// Sorted, without duplicates.
    pub packs: Vec<PackId>,
}

impl PackList {
    pub fn new(recovery_point: RecoveryPointId, time: String, group: String, mut packs: Vec<PackId>) -> PackList {
        packs.sort_unstable();
        packs.dedup();
        PackList { magic: PACK_LIST_MAGIC.into(), version: VERSION, recovery_point, time, group, packs }
    }

    pub fn object_key(id: &RecoveryPointId) -> String {
        format!("packlists/{}", id.to_hex())
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a pack list serializes")
    }

    /// Parses a pack list read from object `packlists/<expected>`.
    pub fn decode(bytes: &[u8], expected: &RecoveryPointId) -> Result<PackList, FormatError> {
        let p: PackList = decode_record(bytes, WHAT, PACK_LIST_MAGIC, |p: &PackList| (&p.magic, p.version))?;
        if p.recovery_point != *expected {
            return Err(FormatError::IdMismatch { what: WHAT, expected: expected.to_hex(), actual: p.recovery_point.to_hex() });
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedPacks {
    pub magic: String,
    pub version: u32,
    /// When the vault deleted them (RFC 3339).
    pub deleted_at: String,
    pub packs: Vec<PackId>,
}

impl DeletedPacks {
    pub const PREFIX: &'static str = "deleted-packs/";

    pub fn new(deleted_at: String, mut packs: Vec<PackId>) -> DeletedPacks {
        packs.sort_unstable();
        packs.dedup();
        DeletedPacks { magic: DELETED_PACKS_MAGIC.into(), version: VERSION, deleted_at, packs }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a deleted-packs record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<DeletedPacks, FormatError> {
        decode_record(bytes, WHAT_DELETED, DELETED_PACKS_MAGIC, |d: &DeletedPacks| (&d.magic, d.version))
    }
}

/// Parses a record of `what` (JSON of at most [`MAX_LEN`] bytes) and checks the magic and
/// version `head` reads from it.
fn decode_record<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    magic: &str,
    head: impl Fn(&T) -> (&String, u32),
) -> Result<T, FormatError> {
    if bytes.len() > MAX_LEN {
        return Err(FormatError::malformed(what, format!("{} bytes exceed the limit of {MAX_LEN}", bytes.len())));
    }
    let record: T = serde_json::from_slice(bytes).map_err(|e| FormatError::malformed(what, e))?;
    let (found_magic, version) = head(&record);
    if found_magic != magic {
        return Err(FormatError::BadMagic { what });
    }
    if version != VERSION {
        return Err(FormatError::NewerVersion { what, found: version, supported: VERSION });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_list_fixed_bytes_and_round_trip() {
        let rp = RecoveryPointId::from_bytes([1; 32]);
        let p = PackList::new(
            rp,
            "2026-11-30T10:00:00Z".into(),
            "g".into(),
            vec![PackId::from_bytes([3; 32]), PackId::from_bytes([2; 32]), PackId::from_bytes([3; 32])],
        );
        let bytes = p.encode();
        let want = format!(
            "{{\"magic\":\"ferry-packlist\",\"version\":1,\"recovery_point\":\"{}\",\"time\":\"2026-11-30T10:00:00Z\",\"group\":\"g\",\"packs\":[\"{}\",\"{}\"]}}",
            "01".repeat(32),
            "02".repeat(32),
            "03".repeat(32)
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        assert_eq!(PackList::decode(&bytes, &rp).unwrap(), p);
        assert!(PackList::decode(&bytes, &RecoveryPointId::from_bytes([9; 32])).is_err(), "named for another recovery point");
        assert!(PackList::decode(b"{}", &rp).is_err());
        assert!(PackList::decode(&bytes[..bytes.len() - 1], &rp).is_err());
    }

    #[test]
    fn deleted_packs_fixed_bytes_and_round_trip() {
        let d = DeletedPacks::new("2026-11-30T10:00:00Z".into(), vec![PackId::from_bytes([5; 32])]);
        let bytes = d.encode();
        let want = format!(
            "{{\"magic\":\"ferry-deleted-packs\",\"version\":1,\"deleted_at\":\"2026-11-30T10:00:00Z\",\"packs\":[\"{}\"]}}",
            "05".repeat(32)
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        assert_eq!(DeletedPacks::decode(&bytes).unwrap(), d);
        assert!(DeletedPacks::decode(br#"{"magic":"x","version":1,"deleted_at":"","packs":[]}"#).is_err());
    }
}
