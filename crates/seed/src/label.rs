//! `FERRY-SEED/label.json`: which job, set and disk number a disk is, readable without the key
//! and authenticated with it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::DiskFormatError;
use crate::fsio::{self, LABEL_FILE, SEED_DIR};
use crate::header::Header;
use crate::{DiskKey, SeedError, MAX_DISKS};

/// The label's `magic` field.
pub const LABEL_MAGIC: &str = "ferry-seed-label";
/// The label version this build writes and the newest it reads.
pub const LABEL_VERSION: u32 = 1;
const HEADER: Header = Header { magic: LABEL_MAGIC.as_bytes(), version: LABEL_VERSION, what: "a seed label", short: "label" };
/// Longest label file read (a label is a few hundred bytes).
pub const MAX_LABEL_LEN: u64 = 64 * 1024;
/// Longest import job name, in bytes.
pub const MAX_JOB_LEN: usize = 256;
const MAX_CREATED_LEN: usize = 64;

/// A disk's label. Read without the key ([`read_label`]); [`Label::verify`] checks its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The import job's name.
    pub job: String,
    /// The disk set's random 128-bit ID.
    pub set_id: [u8; 16],
    /// This disk's number, from 1.
    pub disk_number: u32,
    /// The number of disks in the set; 0 until diskprep has finished.
    pub disk_count: u32,
    /// When the disk was first labeled (RFC 3339).
    pub created: String,
    mac: [u8; 32],
}

/// The JSON form, field by field (serde keeps this order).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelJson {
    magic: String,
    version: u32,
    job: String,
    set_id: String,
    disk_number: u32,
    disk_count: u32,
    created: String,
    mac: String,
}

impl Label {
    /// A label with its MAC under `key`.
    pub fn new(key: &DiskKey, job: &str, set_id: [u8; 16], disk_number: u32, disk_count: u32, created: &str) -> Label {
        let mut label = Label { job: job.to_string(), set_id, disk_number, disk_count, created: created.to_string(), mac: [0; 32] };
        label.mac = label.compute_mac(key);
        label
    }

    /// The same label with another disk count (and its MAC recomputed).
    pub(crate) fn with_count(&self, key: &DiskKey, disk_count: u32) -> Label {
        Label::new(key, &self.job, self.set_id, self.disk_number, disk_count, &self.created)
    }

    /// Does the label's MAC verify under `key`? (Constant-time comparison.)
    pub fn verify(&self, key: &DiskKey) -> bool {
        blake3::Hash::from(self.mac) == blake3::Hash::from(self.compute_mac(key))
    }

    /// `BLAKE3-keyed(BLAKE3-derive("ferry seed label v1", disk key), canonical fields)`.
    fn compute_mac(&self, key: &DiskKey) -> [u8; 32] {
        *blake3::keyed_hash(&key.label_mac_key(), &self.mac_input()).as_bytes()
    }

    /// `"ferry-seed-label" || u32le(1) || u32le(len(job)) || job || set_id(16) ||
    /// u32le(disk_number) || u32le(disk_count) || u32le(len(created)) || created`.
    fn mac_input(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(64 + self.job.len() + self.created.len());
        m.extend_from_slice(LABEL_MAGIC.as_bytes());
        m.extend_from_slice(&LABEL_VERSION.to_le_bytes());
        m.extend_from_slice(&(self.job.len() as u32).to_le_bytes());
        m.extend_from_slice(self.job.as_bytes());
        m.extend_from_slice(&self.set_id);
        m.extend_from_slice(&self.disk_number.to_le_bytes());
        m.extend_from_slice(&self.disk_count.to_le_bytes());
        m.extend_from_slice(&(self.created.len() as u32).to_le_bytes());
        m.extend_from_slice(self.created.as_bytes());
        m
    }

    /// The label file's bytes: pretty-printed JSON and a newline.
    pub fn encode(&self) -> Vec<u8> {
        let json = LabelJson {
            magic: LABEL_MAGIC.into(),
            version: LABEL_VERSION,
            job: self.job.clone(),
            set_id: hex::encode(self.set_id),
            disk_number: self.disk_number,
            disk_count: self.disk_count,
            created: self.created.clone(),
            mac: hex::encode(self.mac),
        };
        let mut out = serde_json::to_vec_pretty(&json).expect("a label serializes");
        out.push(b'\n');
        out
    }

    /// Parses a label file (untrusted bytes). Checks every field's form, not the MAC.
    pub fn decode(bytes: &[u8]) -> Result<Label, DiskFormatError> {
        if bytes.len() as u64 > MAX_LABEL_LEN {
            return Err(DiskFormatError::malformed("label too large"));
        }
        let json: LabelJson = serde_json::from_slice(bytes).map_err(|e| DiskFormatError::malformed(format!("not a seed label: {e}")))?;
        HEADER.check_json(&json.magic, json.version)?;
        check_job(&json.job).map_err(DiskFormatError::Malformed)?;
        if json.created.is_empty() || json.created.len() > MAX_CREATED_LEN || chrono::DateTime::parse_from_rfc3339(&json.created).is_err() {
            return Err(DiskFormatError::malformed("created is not an RFC 3339 time"));
        }
        let set_id: [u8; 16] = parse_hex(&json.set_id).ok_or_else(|| DiskFormatError::malformed("set_id is not 32 hex digits"))?;
        let mac: [u8; 32] = parse_hex(&json.mac).ok_or_else(|| DiskFormatError::malformed("mac is not 64 hex digits"))?;
        if json.disk_number == 0 || json.disk_number > MAX_DISKS {
            return Err(DiskFormatError::malformed(format!("disk number {} is not in 1..={MAX_DISKS}", json.disk_number)));
        }
        if json.disk_count != 0 && (json.disk_count < json.disk_number || json.disk_count > MAX_DISKS) {
            return Err(DiskFormatError::malformed(format!("disk count {} is impossible for disk {}", json.disk_count, json.disk_number)));
        }
        Ok(Label { job: json.job, set_id, disk_number: json.disk_number, disk_count: json.disk_count, created: json.created, mac })
    }
}

/// Is `job` an acceptable job name: 1..=256 bytes, no control characters?
pub(crate) fn check_job(job: &str) -> Result<(), String> {
    if job.is_empty() || job.len() > MAX_JOB_LEN {
        return Err(format!("the job name must be 1 to {MAX_JOB_LEN} bytes"));
    }
    if job.chars().any(char::is_control) {
        return Err("the job name has control characters".into());
    }
    Ok(())
}

/// Lowercase hex of exactly `N` bytes.
pub(crate) fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Reads a disk's label without the key (the MAC is not checked: see [`Label::verify`]).
/// `NotASeedDisk` if the disk has no label, `LabelDamaged` if it cannot be parsed.
pub fn read_label(disk: &Path) -> Result<Label, SeedError> {
    let path = disk.join(SEED_DIR).join(LABEL_FILE);
    let damaged = |reason: String| SeedError::LabelDamaged { path: disk.to_path_buf(), reason };
    match fsio::read_limited(&path, MAX_LABEL_LEN) {
        Ok(Some(bytes)) => Label::decode(&bytes).map_err(|e| damaged(e.to_string())),
        Ok(None) => Err(SeedError::NotASeedDisk { path: disk.to_path_buf() }),
        Err(fsio::ReadLimitedError::Io(e)) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(SeedError::NotASeedDisk { path: disk.to_path_buf() })
        }
        Err(fsio::ReadLimitedError::Io(e)) => Err(SeedError::io("read", &path, e)),
        Err(e) => Err(damaged(e.to_string())),
    }
}

/// Writes a disk's label atomically.
pub(crate) fn write_label(disk: &Path, label: &Label) -> Result<(), SeedError> {
    fsio::atomic_write(&disk.join(SEED_DIR), LABEL_FILE, &label.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixed() -> Label {
        Label::new(&DiskKey::from_bytes([7; 32]), "job-1", [0xab; 16], 2, 3, "2026-12-01T10:00:00Z")
    }

    #[test]
    fn fixed_bytes() {
        let label = fixed();
        let text = String::from_utf8(label.encode()).unwrap();
        let expected = r#"{
  "magic": "ferry-seed-label",
  "version": 1,
  "job": "job-1",
  "set_id": "abababababababababababababababab",
  "disk_number": 2,
  "disk_count": 3,
  "created": "2026-12-01T10:00:00Z",
  "mac": "MAC"
}
"#;
        // The MAC pins the canonical encoding and the key derivation.
        let mac = "0ef703a82e5db9272f3012aff63116a30de0f3821be00ddde90ad803c2509cdc";
        assert_eq!(text, expected.replace("MAC", mac));
        let mut input = Vec::new();
        input.extend_from_slice(b"ferry-seed-label\x01\x00\x00\x00\x05\x00\x00\x00job-1");
        input.extend_from_slice(&[0xab; 16]);
        input.extend_from_slice(b"\x02\x00\x00\x00\x03\x00\x00\x00\x14\x00\x00\x002026-12-01T10:00:00Z");
        assert_eq!(label.mac_input(), input);
        let mac_key = blake3::derive_key("ferry seed label v1", &[7; 32]);
        assert_eq!(hex::encode(blake3::keyed_hash(&mac_key, &input).as_bytes()), mac);
    }

    #[test]
    fn verify_and_tamper() {
        let key = DiskKey::from_bytes([7; 32]);
        let label = fixed();
        assert!(label.verify(&key));
        assert!(!label.verify(&DiskKey::from_bytes([8; 32])));
        let text = String::from_utf8(label.encode()).unwrap();
        let forged = Label::decode(text.replace("\"disk_count\": 3", "\"disk_count\": 4").as_bytes()).unwrap();
        assert!(!forged.verify(&key));
    }

    #[test]
    fn rejects_bad_labels() {
        let good = String::from_utf8(fixed().encode()).unwrap();
        let cases = [
            good.replace("ferry-seed-label", "ferry-seed-lab"),
            good.replace("\"version\": 1", "\"version\": 0"),
            good.replace("\"job\": \"job-1\"", "\"job\": \"\""),
            good.replace("\"job\": \"job-1\"", "\"job\": \"a\\u001bb\""),
            good.replace("abababababababababababababababab", "ABABABABABABABABABABABABABABABAB"),
            good.replace("abababababababababababababababab", "abab"),
            good.replace("\"disk_number\": 2", "\"disk_number\": 0"),
            good.replace("\"disk_number\": 2", "\"disk_number\": 11"),
            good.replace("\"disk_count\": 3", "\"disk_count\": 1"),
            good.replace("\"disk_count\": 3", "\"disk_count\": 11"),
            good.replace("2026-12-01T10:00:00Z", "yesterday"),
            good.replace("\"mac\"", "\"extra\": 1, \"mac\""),
            good.replace("\"mac\": \"0e", "\"mac\": \""),
            "{}".into(),
            "[]".into(),
            String::new(),
        ];
        for bad in cases {
            assert!(matches!(Label::decode(bad.as_bytes()), Err(DiskFormatError::Malformed(_))), "{bad}");
        }
        let newer = good.replace("\"version\": 1", "\"version\": 2");
        assert_eq!(Label::decode(newer.as_bytes()), Err(DiskFormatError::NewerVersion(2)));
    }

    #[test]
    fn read_label_of_folders() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_label(dir.path()), Err(SeedError::NotASeedDisk { .. })));
        std::fs::create_dir(dir.path().join(SEED_DIR)).unwrap();
        std::fs::write(dir.path().join(SEED_DIR).join(LABEL_FILE), b"junk").unwrap();
        assert!(matches!(read_label(dir.path()), Err(SeedError::LabelDamaged { .. })));
        write_label(dir.path(), &fixed()).unwrap();
        assert_eq!(read_label(dir.path()).unwrap(), fixed());
    }

    proptest! {
        #[test]
        fn prop_round_trip(job in "[a-zA-Z0-9 ._-]{1,40}", set_id in any::<[u8; 16]>(), number in 1u32..=MAX_DISKS, extra in 0u32..10, key in any::<[u8; 32]>()) {
            let count = if extra == 0 { 0 } else { (number + extra - 1).min(MAX_DISKS) };
            let key = DiskKey::from_bytes(key);
            let label = Label::new(&key, &job, set_id, number, count, "2026-12-01T10:00:00+01:00");
            let back = Label::decode(&label.encode()).unwrap();
            prop_assert!(back.verify(&key));
            prop_assert_eq!(back, label);
        }

        #[test]
        fn prop_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Label::decode(&bytes);
        }
    }
}
