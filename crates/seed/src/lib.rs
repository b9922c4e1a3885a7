//! Offline-seed disks: the on-disk format, `ferry diskprep`'s writer ([`prepare`]) and
//! `ferry import run`'s reader ([`DiskSet`]).
//!
//! A machine's first backup can be carried to the vault on the customer's own disks instead of
//! over the network. The backup writes an ordinary repository into a staging folder (same
//! config and key as the machine's vault repository, so every object is byte for byte what the
//! vault would have received); [`prepare`] copies those objects onto one or more disks, and at
//! the vault's site [`DiskSet::open`] and [`DiskSet::read_object`] take them off again,
//! verified, for the vault to put into the machine's repository. Nothing is re-encoded: every
//! object keeps its key and bytes, and packs, index files and recovery points keep being named
//! by the BLAKE3 of their bytes. The workflow is in `docs/design/offline-seeding.md`, the byte
//! layouts in `docs/format.md` ("Seed disks").
//!
//! **Seed devices** ([`device`], the Data Box workflow) carry a first backup without a staging
//! location: the vault prepares a device ([`prepare_device`]), the machine's agent writes its
//! backup straight onto it through a [`DeviceStore`] and seals it, and the vault checks the
//! seal and reads the objects ([`DeviceSet`]), then erases the device ([`erase_device`]). They
//! use the same per-job [`DiskKey`]; their layout is in `docs/format.md` ("Seed devices").
//!
//! At the vault's site, [`copy_and_ingest`] copies a checked disk or device set into the job's
//! container and has the vault ingest it; [`report_set_error`] records on the job why a set was
//! refused.
//!
//! # Layout and keys
//! Each disk holds a folder `FERRY-SEED/` with a plaintext `label.json` (job, random 128-bit
//! set id, disk number, disk count; MAC'ed), a sealed `manifest.bin` (every object of the set:
//! key, size, BLAKE3, disk, file), an append-only sealed `journal.bin` (what diskprep wrote and
//! verified on this disk, for resuming), and `objects/<16 hex>`, one object per file, sealed in
//! 1 MiB AES-256-GCM frames. Every key is derived from one random 256-bit [`DiskKey`] per import
//! job, which the vault creates with the job and escrows; the import operator gets it from the
//! vault, never from the disks.
//!
//! # Threat model
//! - **A lost or stolen disk** reveals the job name, set id, disk numbers and creation time
//!   (the label is plaintext, so an operator can sort disks without the key), and the number and
//!   sizes of object files. Nothing else: object keys, hashes and contents are sealed under the
//!   disk key, and the objects inside are themselves encrypted under the repository's master
//!   key, which never leaves the machine.
//! - **Tampering** is detected: the label's MAC, the manifest's and every journal record's
//!   AES-GCM tag, and every object frame's tag (nonce = file id and frame index with the last
//!   frame flagged, associated data = set id and the file header) make a flipped byte, a
//!   truncated or extended file, reordered frames, swapped or renamed files and disks of another
//!   set fail; every object's plaintext is then checked against the manifest's BLAKE3, and the
//!   vault checks packs, index files and recovery points against their names. A forger without
//!   the disk key can delete (the import then names what is missing), not substitute.
//! - **Crashes**: object files are written to a temporary name, fsynced, renamed and read back
//!   from the disk (page cache dropped) before their journal record is appended; the labels'
//!   disk count and the manifests are written last. A killed diskprep rerun with the same disks
//!   skips what the journals record and deletes unrecorded leftovers.
//!
//! # Example
//! ```no_run
//! use std::path::PathBuf;
//! use ferry_seed::{DiskKey, DiskSet};
//!
//! # fn main() -> Result<(), ferry_seed::SeedError> {
//! let key = DiskKey::from_hex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")?;
//! let set = DiskSet::open(&[PathBuf::from("/mnt/d1"), PathBuf::from("/mnt/d2")], "job-1", &key)?;
//! let mut buf = Vec::new();
//! for entry in &set.manifest().entries {
//!     set.read_object(entry, &mut buf)?; // decrypted, hashed, compared with the manifest
//!     // ... put_if_absent(entry.key, buf) into the job's container
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
// Errors carry the disk, the object and the reason for one precise message; they are rare, so
// their size does not matter.
#![allow(clippy::result_large_err)]

pub mod device;
mod disk;
mod error;
mod estimate;
mod export;
mod fsio;
mod header;
mod import;
mod ingest;
pub mod journal;
mod key;
pub mod label;
pub mod manifest;
pub mod object;
mod plan;
mod prepare;
mod staging;
#[cfg(test)]
mod tests;

pub use device::{
    erase_device, prepare_device, read_device_header, DeviceHeader, DeviceSet, DeviceStore, Erasure, Seal, SealEntry, DEVICE_DIR,
};
pub use error::{DiskFormatError, SeedError};
pub use estimate::{fit, sample, total_size, Fit, Sample};
pub use export::ExportDisks;
pub use import::DiskSet;
pub use ingest::{
    check_not_ingested, copy_and_ingest, redact_location, report_set_error, CopyPlan, IngestError, IngestEvent, ReadObject, SeedItem,
};
pub use key::DiskKey;
pub use label::{read_label, Label};
pub use manifest::{Manifest, ManifestEntry};
pub use plan::disks_needed;
pub use prepare::{prepare, DiskSummary, DiskTarget, PrepareOptions, PrepareOutcome, SetSummary, SourceObject};
pub use staging::{empty_staging, staging_digest, staging_objects, SeedFile, SEED_PREFIXES};

/// Most disks in one import job (the seed documents' limit).
pub const MAX_DISKS: u32 = 10;
/// Most bytes written to one disk: a bigger disk is used up to this.
pub const MAX_DISK_BYTES: u64 = 10_000_000_000_000;
/// Most plaintext bytes one machine may seed.
pub const MAX_SEED_BYTES: u64 = 80_000_000_000_000;
