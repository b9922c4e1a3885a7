//! Index files: which blobs each pack holds, so a blob can be read without scanning packs.
//!
//! ```text
//! index_file := envelope(Index, postcard(IndexFile))
//! ```
//! An index file lists whole packs. `supersedes` names the index files this one replaced
//! (written by prune, which deletes them right after); readers take the union of all index
//! files present, so a leftover superseded file after a crash is harmless.

use ferry_crypto::MasterKey;
use serde::{Deserialize, Serialize};

use crate::envelope::{open_named, seal_named};
use crate::pack::PackEntry;
use crate::{FormatError, IndexId, ObjectType, PackId};

/// One pack and its blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: PackId,
    pub salt: [u8; 16],
    /// Total size of the pack object in bytes.
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexPack>,
    pub supersedes: Vec<IndexId>,
}

impl IndexFile {
    /// Encrypts and names the index file.
    pub fn seal(&self, master: &MasterKey) -> (IndexId, Vec<u8>) {
        let body = postcard::to_allocvec(self).expect("index serializes");
        let (id, bytes) = seal_named(&master.meta_key(), ObjectType::Index, &body);
        (IndexId::from_bytes(id), bytes)
    }

    /// Verifies the name, decrypts and decodes an index file.
    pub fn open(master: &MasterKey, id: &IndexId, bytes: &[u8]) -> Result<Self, FormatError> {
        let body = open_named(&master.meta_key(), ObjectType::Index, id.as_bytes(), bytes)?;
        postcard::from_bytes(&body).map_err(|e| FormatError::malformed("index file", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobId, BlobKind};

    #[test]
    fn round_trip_and_damage() {
        let m = MasterKey::generate();
        let f = IndexFile {
            packs: vec![IndexPack {
                id: PackId::from_bytes([1; 32]),
                salt: [2; 16],
                size: 100,
                blobs: vec![PackEntry {
                    kind: BlobKind::Data,
                    id: BlobId::from_bytes([3; 32]),
                    offset: 24,
                    length: 40,
                    raw_len: 12,
                    compressed: false,
                    unit_start: 0,
                    unit_len: 12,
                }],
            }],
            supersedes: vec![IndexId::from_bytes([4; 32])],
        };
        let (id, bytes) = f.seal(&m);
        assert_eq!(IndexFile::open(&m, &id, &bytes).unwrap(), f);
        assert!(IndexFile::open(&m, &id, &bytes[..bytes.len() - 1]).is_err());
        assert_eq!(&bytes[..8], b"FRYIDX\x01\x00");
    }

    #[test]
    fn fixed_body_bytes() {
        let f = IndexFile {
            packs: vec![IndexPack { id: PackId::from_bytes([1; 32]), salt: [2; 16], size: 300, blobs: vec![] }],
            supersedes: vec![],
        };
        let body = postcard::to_allocvec(&f).unwrap();
        let mut expected = vec![1u8];
        expected.extend([1u8; 32]);
        expected.extend([2u8; 16]);
        expected.extend([0xac, 0x02]); // 300 as varint
        expected.extend([0, 0]); // no blobs, no supersedes
        assert_eq!(body, expected);
    }
}
