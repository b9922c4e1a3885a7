//! `FERRY-SEED/journal.bin`: append-only records of what diskprep wrote and verified on a disk.
//!
//! ```text
//! journal := "FERRYSEEDJNL" || u16le(1) || record*
//! record  := u32le(n) || nonce(12) || AES-256-GCM(journal key, nonce, aad = set_id || u32le(disk), postcard(Entry))
//!            (n = 12 + len(ciphertext and tag))
//! ```
//!
//! A crash while appending leaves a torn last record, which readers ignore (and the next writer
//! truncates away). Trusting the journal is safe in one direction only: a record ignored or cut
//! off just makes diskprep write that object again.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ferry_crypto::{AeadKey, NONCE_LEN, TAG_LEN};
use serde::{Deserialize, Serialize};

use crate::error::DiskFormatError;
use crate::header::Header;
use crate::object::stored_size;
use crate::{DiskKey, SeedError, MAX_DISKS};

/// The journal's first bytes.
pub const JOURNAL_MAGIC: &[u8; 12] = b"FERRYSEEDJNL";
/// The journal version this build writes and the newest it reads.
pub const JOURNAL_VERSION: u16 = 1;
const HEADER: Header = Header { magic: JOURNAL_MAGIC, version: JOURNAL_VERSION as u32, what: "a seed journal", short: "journal" };
/// Length of the journal header.
pub const JOURNAL_HEADER_LEN: usize = 14;
/// Largest sealed record (an object key is at most 1024 bytes).
pub const MAX_RECORD_LEN: usize = 4096;
const MIN_RECORD_LEN: usize = NONCE_LEN + TAG_LEN + 1;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// An object written, fsynced, read back and verified on this disk.
    Object(ObjectRecord),
    /// A next disk was started after this one (so a resumed diskprep knows it must be given).
    NextDisk(u32),
}

/// An object verified on this disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The staging object's key.
    pub key: String,
    /// Plaintext size.
    pub size: u64,
    /// BLAKE3 of the plaintext.
    pub hash: [u8; 32],
    /// The object file's id (its name in `objects/`).
    pub file: [u8; 8],
    /// The object file's size.
    pub stored_size: u64,
}

/// A journal's header bytes.
pub fn header() -> [u8; JOURNAL_HEADER_LEN] {
    HEADER.binary()
}

fn aad(set_id: &[u8; 16], disk: u32) -> [u8; 20] {
    let mut a = [0u8; 20];
    a[..16].copy_from_slice(set_id);
    a[16..].copy_from_slice(&disk.to_le_bytes());
    a
}

/// One record's bytes, length prefix included.
pub(crate) fn encode_record(key: &AeadKey, set_id: &[u8; 16], disk: u32, entry: &Entry) -> Vec<u8> {
    let body = postcard::to_stdvec(entry).expect("a journal entry serializes");
    frame_record(key, set_id, disk, &body)
}

/// A record around any body, length prefix included (for tests and fuzzing).
pub fn seal_record(key: &DiskKey, set_id: &[u8; 16], disk: u32, body: &[u8]) -> Vec<u8> {
    frame_record(&key.journal_key(), set_id, disk, body)
}

fn frame_record(key: &AeadKey, set_id: &[u8; 16], disk: u32, body: &[u8]) -> Vec<u8> {
    let sealed = key.seal_random_nonce(&aad(set_id, disk), body);
    let mut out = Vec::with_capacity(4 + sealed.len());
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    out.extend_from_slice(&sealed);
    out
}

/// A parsed journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub entries: Vec<Entry>,
    /// Bytes up to the end of the last whole record: where the next record goes.
    pub valid_len: u64,
    /// Was there a torn record after `valid_len`?
    pub torn: bool,
}

/// Parses a journal (untrusted bytes) of disk `disk` of set `set_id`. A torn last record is
/// ignored (`torn`); any other damage is an error.
pub fn parse(key: &DiskKey, set_id: &[u8; 16], disk: u32, bytes: &[u8]) -> Result<Journal, DiskFormatError> {
    let aead = key.journal_key();
    let aad = aad(set_id, disk);
    if bytes.len() < JOURNAL_HEADER_LEN {
        // A journal is created whole (atomically) with its header, so this is damage.
        return Err(DiskFormatError::malformed("shorter than a journal header"));
    }
    HEADER.check_binary(bytes)?;
    let mut entries = Vec::new();
    let mut at = JOURNAL_HEADER_LEN;
    let torn = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break false;
        }
        // A crash while appending leaves a prefix of the record, or (on some file systems) a
        // tail of zeros: either is a torn last record.
        if rest.len() < 4 || rest.iter().all(|&b| b == 0) {
            break true;
        }
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + n {
            break true;
        }
        let at_end = rest.len() == 4 + n;
        if !(MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&n) {
            return Err(DiskFormatError::malformed(format!("record at byte {at} has an impossible length {n}")));
        }
        let body = match aead.open_random_nonce(&aad, &rest[4..4 + n]) {
            Ok(body) => body,
            // A whole last record that does not authenticate was torn by a crash before its
            // fsync (or altered: ignoring it only means writing that object again).
            Err(_) if at_end => break true,
            Err(_) => return Err(DiskFormatError::Authentication),
        };
        let entry: Entry = match postcard::from_bytes(&body) {
            Ok(entry) => entry,
            Err(e) => return Err(DiskFormatError::malformed(format!("record at byte {at}: {e}"))),
        };
        check_entry(&entry, disk).map_err(|e| DiskFormatError::malformed(format!("record at byte {at}: {e}")))?;
        entries.push(entry);
        at += 4 + n;
    };
    Ok(Journal { entries, valid_len: at as u64, torn })
}

fn check_entry(entry: &Entry, disk: u32) -> Result<(), String> {
    match entry {
        Entry::Object(r) => {
            ferry_store::validate_key("journal", &r.key).map_err(|e| e.message)?;
            if r.size > crate::MAX_DISK_BYTES || r.stored_size != stored_size(r.size) {
                return Err(format!("object {} has inconsistent sizes", r.key));
            }
            Ok(())
        }
        Entry::NextDisk(next) if *next == disk + 1 && *next <= MAX_DISKS => Ok(()),
        Entry::NextDisk(next) => Err(format!("disk {disk} cannot be followed by disk {next}")),
    }
}

/// Appends records to a disk's journal, each made durable before `append` returns.
pub(crate) struct JournalWriter {
    file: File,
    path: PathBuf,
    key: AeadKey,
    set_id: [u8; 16],
    disk: u32,
}

impl JournalWriter {
    /// Opens the journal at `path` for appending after `valid_len` bytes, cutting off a torn
    /// record first.
    pub(crate) fn open(path: &Path, key: &DiskKey, set_id: [u8; 16], disk: u32, valid_len: u64) -> Result<Self, SeedError> {
        let mut file = crate::fsio::open_rw(path)?;
        let len = file.metadata().map_err(|e| SeedError::io("stat", path, e))?.len();
        if len != valid_len {
            file.set_len(valid_len).map_err(|e| SeedError::io("truncate", path, e))?;
            file.sync_all().map_err(|e| SeedError::io("fsync", path, e))?;
        }
        file.seek(SeekFrom::Start(valid_len)).map_err(|e| SeedError::io("seek", path, e))?;
        Ok(JournalWriter { file, path: path.to_path_buf(), key: key.journal_key(), set_id, disk })
    }

    /// Appends one record and fsyncs the journal.
    pub(crate) fn append(&mut self, entry: &Entry) -> Result<u64, SeedError> {
        let bytes = encode_record(&self.key, &self.set_id, self.disk, entry);
        self.file.write_all(&bytes).map_err(|e| SeedError::io("append to", &self.path, e))?;
        self.file.sync_data().map_err(|e| SeedError::io("fsync", &self.path, e))?;
        Ok(bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SET: [u8; 16] = [3; 16];

    fn key() -> DiskKey {
        DiskKey::from_bytes([4; 32])
    }

    fn record(i: u8) -> Entry {
        Entry::Object(ObjectRecord {
            key: format!("index/{i:064x}"),
            size: u64::from(i) * 1000,
            hash: [i; 32],
            file: [i; 8],
            stored_size: stored_size(u64::from(i) * 1000),
        })
    }

    fn journal(entries: &[Entry]) -> Vec<u8> {
        let aead = key().journal_key();
        let mut out = header().to_vec();
        for e in entries {
            out.extend(encode_record(&aead, &SET, 2, e));
        }
        out
    }

    #[test]
    fn fixed_bytes() {
        assert_eq!(&header(), b"FERRYSEEDJNL\x01\x00");
        let body = postcard::to_stdvec(&Entry::NextDisk(3)).unwrap();
        assert_eq!(body, [1, 3]);
        let r = ObjectRecord { key: "config".into(), size: 300, hash: [0xaa; 32], file: [0xbb; 8], stored_size: stored_size(300) };
        let body = postcard::to_stdvec(&Entry::Object(r)).unwrap();
        let mut want = vec![0, 6];
        want.extend_from_slice(b"config");
        want.extend_from_slice(&[0xac, 0x02]);
        want.extend_from_slice(&[0xaa; 32]);
        want.extend_from_slice(&[0xbb; 8]);
        want.extend_from_slice(&[0xda, 0x02]); // 30 + 300 + 16 = 346
        assert_eq!(body, want);
        // The record: u32le(n) || nonce || AES-GCM(..., aad = set_id || u32le(disk)).
        let rec = encode_record(&key().journal_key(), &SET, 2, &Entry::NextDisk(3));
        assert_eq!(rec.len(), 4 + 12 + 2 + 16);
        assert_eq!(&rec[..4], &30u32.to_le_bytes());
        let mut a = SET.to_vec();
        a.extend_from_slice(&2u32.to_le_bytes());
        let k = AeadKey::new(&blake3::derive_key("ferry seed journal v1", &[4; 32]));
        assert_eq!(k.open_random_nonce(&a, &rec[4..]).unwrap(), [1, 3]);
    }

    #[test]
    fn torn_tail_is_ignored() {
        let entries = [record(1), record(2), Entry::NextDisk(3)];
        let full = journal(&entries);
        let j = parse(&key(), &SET, 2, &full).unwrap();
        assert_eq!(j.entries, entries);
        assert_eq!((j.valid_len, j.torn), (full.len() as u64, false));
        let two = journal(&entries[..2]).len();
        for cut in [two + 1, two + 3, two + 4, two + 10, full.len() - 1] {
            let j = parse(&key(), &SET, 2, &full[..cut]).unwrap();
            assert_eq!(j.entries, &entries[..2], "{cut}");
            assert_eq!((j.valid_len, j.torn), (two as u64, true));
        }
        // A tail of zeros (a crash before the data reached the disk).
        let mut zeros = full[..two].to_vec();
        zeros.extend_from_slice(&[0; 40]);
        assert_eq!(parse(&key(), &SET, 2, &zeros).unwrap().entries, &entries[..2]);
        // A whole last record that fails authentication is torn too.
        let mut bad_last = full.clone();
        *bad_last.last_mut().unwrap() ^= 1;
        let j = parse(&key(), &SET, 2, &bad_last).unwrap();
        assert_eq!((j.entries.len(), j.torn), (2, true));
    }

    #[test]
    fn damage_before_the_end_fails() {
        let full = journal(&[record(1), record(2)]);
        let mut bad = full.clone();
        bad[JOURNAL_HEADER_LEN + 10] ^= 1;
        assert_eq!(parse(&key(), &SET, 2, &bad), Err(DiskFormatError::Authentication));
        // Other key, other set, other disk: the first record fails authentication.
        assert_eq!(parse(&DiskKey::from_bytes([5; 32]), &SET, 2, &full), Err(DiskFormatError::Authentication));
        assert_eq!(parse(&key(), &[0; 16], 2, &full), Err(DiskFormatError::Authentication));
        assert_eq!(parse(&key(), &SET, 1, &full), Err(DiskFormatError::Authentication));
        let mut long = full.clone();
        long[JOURNAL_HEADER_LEN..JOURNAL_HEADER_LEN + 4].copy_from_slice(&5u32.to_le_bytes());
        assert!(matches!(parse(&key(), &SET, 2, &long), Err(DiskFormatError::Malformed(_))));
        assert!(matches!(parse(&key(), &SET, 2, b"FERRYSEEDJN"), Err(DiskFormatError::Malformed(_))));
        assert!(matches!(parse(&key(), &SET, 2, b"FERRYSEEDJNX\x01\x00"), Err(DiskFormatError::Malformed(_))));
        assert_eq!(parse(&key(), &SET, 2, b"FERRYSEEDJNL\x02\x00"), Err(DiskFormatError::NewerVersion(2)));
        // A NextDisk that does not follow this disk.
        let odd = journal(&[Entry::NextDisk(5), record(1)]);
        assert!(matches!(parse(&key(), &SET, 2, &odd), Err(DiskFormatError::Malformed(_))));
    }

    #[test]
    fn writer_truncates_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.bin");
        let mut bytes = journal(&[record(1)]);
        let valid = bytes.len() as u64;
        bytes.extend_from_slice(&[9, 0, 0]);
        std::fs::write(&path, &bytes).unwrap();
        let j = parse(&key(), &SET, 2, &bytes).unwrap();
        assert!(j.torn);
        let mut w = JournalWriter::open(&path, &key(), SET, 2, j.valid_len).unwrap();
        assert_eq!(j.valid_len, valid);
        w.append(&record(2)).unwrap();
        let j = parse(&key(), &SET, 2, &std::fs::read(&path).unwrap()).unwrap();
        assert_eq!((j.entries, j.torn), (vec![record(1), record(2)], false));
    }

    proptest! {
        #[test]
        fn prop_round_trip(items in proptest::collection::vec((any::<u8>(), "[a-z0-9]{1,20}(/[a-z0-9]{1,20}){0,2}", 0u64..(1 << 40), any::<[u8; 8]>()), 0..20)) {
            let entries: Vec<Entry> = items.iter().map(|(h, k, size, file)| {
                if *h == 0 {
                    Entry::NextDisk(3)
                } else {
                    Entry::Object(ObjectRecord { key: k.clone(), size: *size, hash: [*h; 32], file: *file, stored_size: stored_size(*size) })
                }
            }).collect();
            let bytes = journal(&entries);
            let j = parse(&key(), &SET, 2, &bytes).unwrap();
            prop_assert_eq!(j.entries, entries);
            prop_assert_eq!(j.valid_len, bytes.len() as u64);
        }

        #[test]
        fn prop_parse_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), keep_header in any::<bool>()) {
            if keep_header && bytes.len() >= JOURNAL_HEADER_LEN {
                bytes[..JOURNAL_HEADER_LEN].copy_from_slice(&header());
            }
            let _ = parse(&key(), &SET, 2, &bytes);
        }
    }
}
