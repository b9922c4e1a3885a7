//! `FERRY-SEED/manifest.bin`: every object of the set, where it is and what it hashes to. The
//! same manifest is on every disk, so any one disk tells the import what makes the set.
//!
//! ```text
//! manifest.bin := "FERRYSEEDMAN" || u16le(1) || nonce(12) ||
//!                 AES-256-GCM(manifest key, nonce, aad = "FERRYSEEDMAN" || u16le(1) || set_id, postcard(Manifest))
//! ```

use std::collections::HashSet;

use ferry_api::seed_digest;
use ferry_crypto::{AeadKey, NONCE_LEN, TAG_LEN};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::DiskFormatError;
use crate::header::{Header, BINARY_HEADER_LEN};
use crate::object::{file_name, parse_file_name};
use crate::{DiskKey, MAX_DISKS, MAX_DISK_BYTES};

/// The manifest's first bytes.
pub const MANIFEST_MAGIC: &[u8; 12] = b"FERRYSEEDMAN";
/// The manifest version this build writes and the newest it reads.
pub const MANIFEST_VERSION: u16 = 1;
const HEADER: Header = Header { magic: MANIFEST_MAGIC, version: MANIFEST_VERSION as u32, what: "a seed manifest", short: "manifest" };
/// Largest manifest file read (about 15 million objects).
pub const MAX_MANIFEST_LEN: u64 = 2 << 30;
const HEADER_LEN: usize = 14;

/// One object of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The staging object's key (its key in the repository).
    pub key: String,
    /// Plaintext size.
    pub size: u64,
    /// BLAKE3 of the plaintext.
    pub hash: [u8; 32],
    /// The disk it is on.
    pub disk: u32,
    /// Its file in `FERRY-SEED/objects/`: 16 lowercase hex digits (checked when decoding).
    pub file: String,
}

/// The set's manifest: entries sorted by key, each key once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub job: String,
    pub set_id: [u8; 16],
    pub disk_count: u32,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    job: String,
    set_id: [u8; 16],
    disk_count: u32,
    entries: Vec<WireEntry>,
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    key: String,
    size: u64,
    hash: [u8; 32],
    disk: u32,
    file: [u8; 8],
}

impl Manifest {
    /// BLAKE3 over the entries sorted by key, each (key, hash): what the vault's ingest receipt
    /// signs. See [`seed_digest`].
    pub fn digest(&self) -> [u8; 32] {
        seed_digest(self.entries.iter().map(|e| (e.key.as_str(), &e.hash)))
    }

    /// The manifest file's bytes, sealed under `key` (entries are written sorted by key).
    pub fn seal(&self, key: &DiskKey) -> Vec<u8> {
        let mut entries: Vec<&ManifestEntry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let wire = Wire {
            job: self.job.clone(),
            set_id: self.set_id,
            disk_count: self.disk_count,
            entries: entries
                .into_iter()
                .map(|e| WireEntry {
                    key: e.key.clone(),
                    size: e.size,
                    hash: e.hash,
                    disk: e.disk,
                    file: parse_file_name(&e.file).expect("manifest entries name files by 16 hex digits"),
                })
                .collect(),
        };
        let body = postcard::to_stdvec(&wire).expect("a manifest serializes");
        seal_body(key, &self.set_id, &body)
    }

    /// Opens a manifest file (untrusted bytes) of set `set_id`, checking every entry: valid
    /// object keys in ascending order without duplicates, disks within the count, files named
    /// by 16 hex digits and each used once.
    pub fn open(key: &DiskKey, set_id: &[u8; 16], bytes: &[u8]) -> Result<Manifest, DiskFormatError> {
        let wire: Wire = open_sealed(&HEADER, MAX_MANIFEST_LEN, &key.manifest_key(), &aad(set_id), bytes)?;
        let mut list = ObjectList::new("manifest", "disk", MAX_DISK_BYTES);
        list.check_head(&wire.set_id, set_id, &wire.job, wire.disk_count)?;
        let mut files = HashSet::with_capacity(wire.entries.len());
        for e in &wire.entries {
            list.check_entry(&e.key, e.disk, e.size)?;
            if !files.insert((e.disk, e.file)) {
                return Err(DiskFormatError::malformed(format!("manifest: file {} of disk {} used twice", file_name(&e.file), e.disk)));
            }
        }
        Ok(Manifest {
            job: wire.job,
            set_id: wire.set_id,
            disk_count: wire.disk_count,
            entries: wire
                .entries
                .into_iter()
                .map(|e| ManifestEntry { key: e.key, size: e.size, hash: e.hash, disk: e.disk, file: file_name(&e.file) })
                .collect(),
        })
    }
}

/// The checks the two sealed lists of a set's objects share, the disk manifest and the device
/// seal: the set, the job, the unit count, and each entry's key, order, unit and size.
pub(crate) struct ObjectList<'a> {
    /// `manifest` or `seal`, and `disk` or `device`: the words of the messages.
    what: &'static str,
    unit: &'static str,
    max_size: u64,
    count: u32,
    previous: Option<&'a str>,
}

impl<'a> ObjectList<'a> {
    pub(crate) fn new(what: &'static str, unit: &'static str, max_size: u64) -> ObjectList<'a> {
        ObjectList { what, unit, max_size, count: 0, previous: None }
    }

    /// The list is of set `set_id`, names a valid job and a plausible number of units.
    pub(crate) fn check_head(&mut self, found: &[u8; 16], set_id: &[u8; 16], job: &str, count: u32) -> Result<(), DiskFormatError> {
        let (what, unit) = (self.what, self.unit);
        if found != set_id {
            return Err(DiskFormatError::malformed(format!("{what} of another {unit} set")));
        }
        crate::label::check_job(job).map_err(DiskFormatError::Malformed)?;
        if count == 0 || count > MAX_DISKS {
            return Err(DiskFormatError::malformed(format!("{what} {unit} count {count}")));
        }
        self.count = count;
        Ok(())
    }

    /// One entry: a valid object key, after the previous one (ascending, no repeats), on a unit
    /// within the count, of a plausible size.
    pub(crate) fn check_entry(&mut self, key: &'a str, on: u32, size: u64) -> Result<(), DiskFormatError> {
        let (what, unit) = (self.what, self.unit);
        ferry_store::validate_key(what, key).map_err(|err| DiskFormatError::malformed(format!("{what}: {err}")))?;
        if self.previous.is_some_and(|p| p >= key) {
            return Err(DiskFormatError::malformed(format!("{what}: entry {key} out of order or repeated")));
        }
        self.previous = Some(key);
        if on == 0 || on > self.count {
            return Err(DiskFormatError::malformed(format!("{what}: object {key} on {unit} {on} of {}", self.count)));
        }
        if size > self.max_size {
            return Err(DiskFormatError::malformed(format!("{what}: object {key} of implausible size {size}")));
        }
        Ok(())
    }
}

/// A manifest file around any body (for [`Manifest::seal`], tests and fuzzing).
pub fn seal_body(key: &DiskKey, set_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
    seal_sealed(&HEADER, &key.manifest_key(), &aad(set_id), body)
}

/// A sealed seed file (the manifest, a device seal): `header`'s binary header, then `body`
/// sealed under `key` with `aad` and a random nonce.
pub(crate) fn seal_sealed(header: &Header, key: &AeadKey, aad: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = header.binary().to_vec();
    out.extend_from_slice(&key.seal_random_nonce(aad, body));
    out
}

/// Opens a sealed seed file (untrusted bytes) that [`seal_sealed`] made: at most `max_len`
/// bytes, `header`'s binary header, the body opened under `key` with `aad`, then decoded as
/// postcard with nothing after it. Messages name the file by `header.short`.
pub(crate) fn open_sealed<T: DeserializeOwned>(
    header: &Header,
    max_len: u64,
    key: &AeadKey,
    aad: &[u8],
    bytes: &[u8],
) -> Result<T, DiskFormatError> {
    let short = header.short;
    if bytes.len() as u64 > max_len {
        return Err(DiskFormatError::malformed(format!("{short} too large")));
    }
    if bytes.len() < BINARY_HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(DiskFormatError::malformed(format!("truncated {short}")));
    }
    header.check_binary(bytes)?;
    let body = key.open_random_nonce(aad, &bytes[BINARY_HEADER_LEN..]).map_err(|_| DiskFormatError::Authentication)?;
    let (wire, rest): (T, &[u8]) = postcard::take_from_bytes(&body).map_err(|e| DiskFormatError::malformed(format!("{short}: {e}")))?;
    if !rest.is_empty() {
        return Err(DiskFormatError::malformed(format!("{short}: bytes after the entries")));
    }
    Ok(wire)
}

fn header() -> [u8; HEADER_LEN] {
    HEADER.binary()
}

fn aad(set_id: &[u8; 16]) -> [u8; HEADER_LEN + 16] {
    let mut a = [0u8; HEADER_LEN + 16];
    a[..HEADER_LEN].copy_from_slice(&header());
    a[HEADER_LEN..].copy_from_slice(set_id);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SET: [u8; 16] = [6; 16];

    fn key() -> DiskKey {
        DiskKey::from_bytes([2; 32])
    }

    fn sample() -> Manifest {
        Manifest {
            job: "j".into(),
            set_id: SET,
            disk_count: 2,
            entries: vec![
                ManifestEntry { key: "config".into(), size: 5, hash: [1; 32], disk: 2, file: "0000000000000001".into() },
                ManifestEntry { key: "data/ab/ab".into(), size: 300, hash: [2; 32], disk: 1, file: "00000000000000ff".into() },
            ],
        }
    }

    #[test]
    fn fixed_bytes() {
        let sealed = sample().seal(&key());
        assert_eq!(&sealed[..14], b"FERRYSEEDMAN\x01\x00");
        let k = ferry_crypto::AeadKey::new(&blake3::derive_key("ferry seed manifest v1", &[2; 32]));
        let mut a = b"FERRYSEEDMAN\x01\x00".to_vec();
        a.extend_from_slice(&SET);
        let body = k.open_random_nonce(&a, &sealed[14..]).unwrap();
        let mut want = vec![1, b'j'];
        want.extend_from_slice(&SET);
        want.extend_from_slice(&[2, 2]); // disk count, 2 entries
        want.extend_from_slice(b"\x06config\x05");
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(b"\x0adata/ab/ab\xac\x02");
        want.extend_from_slice(&[2; 32]);
        want.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(body, want);
        assert_eq!(Manifest::open(&key(), &SET, &sealed).unwrap(), sample());
    }

    #[test]
    fn digest_is_order_independent_and_pinned() {
        let m = sample();
        let mut r = m.clone();
        r.entries.reverse();
        assert_eq!(m.digest(), r.digest());
        let mut h = blake3::Hasher::new_derive_key("ferry seed digest v1");
        h.update(b"\x06\x00\x00\x00config");
        h.update(&[1; 32]);
        h.update(b"\x0a\x00\x00\x00data/ab/ab");
        h.update(&[2; 32]);
        assert_eq!(m.digest(), *h.finalize().as_bytes());
        let mut other = m.clone();
        other.entries[0].hash[0] = 9;
        assert_ne!(other.digest(), m.digest());
    }

    #[test]
    fn rejects_bad_manifests() {
        let sealed = sample().seal(&key());
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert_eq!(Manifest::open(&key(), &SET, &bad), Err(DiskFormatError::Authentication));
        assert_eq!(Manifest::open(&key(), &[0; 16], &sealed), Err(DiskFormatError::Authentication));
        assert_eq!(Manifest::open(&DiskKey::from_bytes([1; 32]), &SET, &sealed), Err(DiskFormatError::Authentication));
        assert!(matches!(Manifest::open(&key(), &SET, &sealed[..20]), Err(DiskFormatError::Malformed(_))));
        let mut version = sealed.clone();
        version[12] = 2;
        assert_eq!(Manifest::open(&key(), &SET, &version), Err(DiskFormatError::NewerVersion(2)));
        let reseal = |m: &Manifest| Manifest::open(&key(), &SET, &m.seal(&key()));
        let mut m = sample();
        m.entries[0].disk = 3;
        assert!(matches!(reseal(&m), Err(DiskFormatError::Malformed(_))));
        let mut m = sample();
        m.entries[1].key = "config".into();
        assert!(matches!(reseal(&m), Err(DiskFormatError::Malformed(_))));
        let mut m = sample();
        m.entries[1].key = "../x".into();
        assert!(matches!(reseal(&m), Err(DiskFormatError::Malformed(_))));
        let mut m = sample();
        m.entries[1].disk = 2;
        m.entries[1].file = m.entries[0].file.clone();
        assert!(matches!(reseal(&m), Err(DiskFormatError::Malformed(_))));
        let mut m = sample();
        m.disk_count = 0;
        assert!(matches!(reseal(&m), Err(DiskFormatError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn prop_round_trip(items in proptest::collection::btree_map("[a-z0-9]{1,12}(/[a-z0-9]{1,12}){0,2}", (0u64..(1 << 40), any::<u8>(), 1u32..=3, any::<[u8; 8]>()), 0..30), job in "[a-z]{1,10}") {
            let mut files = HashSet::new();
            let entries: Vec<ManifestEntry> = items.into_iter().filter(|(_, (_, _, d, f))| files.insert((*d, *f))).map(|(key, (size, h, disk, file))| {
                ManifestEntry { key, size, hash: [h; 32], disk, file: file_name(&file) }
            }).collect();
            let m = Manifest { job, set_id: SET, disk_count: 3, entries };
            prop_assert_eq!(Manifest::open(&key(), &SET, &m.seal(&key())).unwrap(), m);
        }

        #[test]
        fn prop_open_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if bytes.len() >= 14 {
                bytes[..14].copy_from_slice(&header());
            }
            let _ = Manifest::open(&key(), &SET, &bytes);
        }
    }
}
