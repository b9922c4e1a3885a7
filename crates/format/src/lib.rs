//! Ferry's repository format: every structure that is persisted or shipped, with no I/O.
//!
//! The byte layouts are specified in `docs/format.md`; each structure starts with a magic
//! number and a version and is pinned by a test against fixed bytes. In short:
//!
//! - chunks and trees are **blobs**, named by a keyed BLAKE3 of their plaintext ([`BlobId`]);
//! - blobs are compressed (zstd, when it helps), encrypted (AES-256-GCM under a per-pack key)
//!   and grouped into **packs** with an encrypted header at the end ([`pack`]); a pack is named
//!   by the unkeyed BLAKE3 of its bytes ([`PackId`]) so integrity is checkable without a key;
//! - **index** files map blob IDs to pack, offset and length ([`index`]);
//! - **trees** describe one directory each, deterministically encoded ([`tree`]);
//! - a **recovery point** names a root tree and is written last ([`recovery_point`]).

#![forbid(unsafe_code)]

pub mod blob;
pub mod chunker;
pub mod config;
mod envelope;
mod error;
mod id;
pub mod index;
pub mod lock;
pub mod pack;
pub mod packlist;
pub mod recovery_point;
pub mod retention;
pub mod tree;

pub use envelope::{open_object, seal_object, ObjectType};
pub use error::FormatError;
pub use id::{BlobId, Id, IndexId, KeyId, PackId, RecoveryPointId};

/// The kind of a blob: file content or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum BlobKind {
    Data,
    Tree,
}

impl BlobKind {
    /// The byte that stands for this kind in associated data and encodings.
    pub fn as_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }
}
