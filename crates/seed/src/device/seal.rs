//! `FERRY-DEVICE/seal.bin`: every object of a device set, where it is and what it hashes to,
//! sealed by the agent when its backup onto the devices is done. The same list is on every
//! device, each copy bound to its device number.
//!
//! ```text
//! seal.bin := "FERRYDEVSEAL" || u16le(1) || nonce(12) ||
//!             AES-256-GCM(seal key, nonce, aad = "FERRYDEVSEAL" || u16le(1) || set_id || u32le(device_number), postcard(Seal))
//! ```

use serde::{Deserialize, Serialize};

use crate::error::DiskFormatError;
use crate::header::Header;
use crate::manifest::{open_sealed, seal_sealed, ObjectList};
use crate::{DiskKey, MAX_SEED_BYTES};

/// The seal's first bytes.
pub const SEAL_MAGIC: &[u8; 12] = b"FERRYDEVSEAL";
/// The seal version this build writes and the newest it reads.
pub const SEAL_VERSION: u16 = 1;
const HEADER: Header = Header { magic: SEAL_MAGIC, version: SEAL_VERSION as u32, what: "a device seal", short: "seal" };
/// Largest seal file read (about 15 million objects).
pub const MAX_SEAL_LEN: u64 = 2 << 30;
const HEADER_LEN: usize = 14;
const MAX_TIME_LEN: usize = 64;

/// One object on the devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealEntry {
    /// The object's key in the repository (and in the device's object folder).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its bytes.
    pub hash: [u8; 32],
    /// The device it is on.
    pub device: u32,
}

/// A device set's seal: entries sorted by key, each key once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub job: String,
    pub set_id: [u8; 16],
    /// The number of devices the objects are on (devices 1..=device_count).
    pub device_count: u32,
    /// When the agent sealed the devices (RFC 3339).
    pub sealed: String,
    pub entries: Vec<SealEntry>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    job: String,
    set_id: [u8; 16],
    device_count: u32,
    sealed: String,
    entries: Vec<WireEntry>,
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    key: String,
    size: u64,
    hash: [u8; 32],
    device: u32,
}

impl Seal {
    /// The seed digest of the entries ([`seed_digest`](ferry_api::seed_digest), the function disk
    /// manifests use): what the vault's ingest receipt signs.
    pub fn digest(&self) -> [u8; 32] {
        ferry_api::seed_digest(self.entries.iter().map(|e| (e.key.as_str(), &e.hash)))
    }

    /// The seal file's bytes for device `device_number`, sealed under `key` (entries are
    /// written sorted by key).
    pub fn encode(&self, key: &DiskKey, device_number: u32) -> Vec<u8> {
        let mut entries: Vec<&SealEntry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let wire = Wire {
            job: self.job.clone(),
            set_id: self.set_id,
            device_count: self.device_count,
            sealed: self.sealed.clone(),
            entries: entries.into_iter().map(|e| WireEntry { key: e.key.clone(), size: e.size, hash: e.hash, device: e.device }).collect(),
        };
        let body = postcard::to_stdvec(&wire).expect("a seal serializes");
        seal_body(key, &self.set_id, device_number, &body)
    }

    /// Opens the seal file (untrusted bytes) of device `device_number` of set `set_id`,
    /// checking every entry: valid object keys in ascending order without duplicates, never
    /// `config` or `keys/…` (a device does not hold them), devices within the count, sizes
    /// plausible; and `device_number` within the count.
    pub fn decode(bytes: &[u8], key: &DiskKey, set_id: &[u8; 16], device_number: u32) -> Result<Seal, DiskFormatError> {
        let wire: Wire = open_sealed(&HEADER, MAX_SEAL_LEN, &key.device_seal_key(), &aad(set_id, device_number), bytes)?;
        let mut list = ObjectList::new("seal", "device", MAX_SEED_BYTES);
        list.check_head(&wire.set_id, set_id, &wire.job, wire.device_count)?;
        if device_number == 0 || device_number > wire.device_count {
            return Err(DiskFormatError::malformed(format!("seal of a set of {} devices on device {device_number}", wire.device_count)));
        }
        if wire.sealed.is_empty() || wire.sealed.len() > MAX_TIME_LEN || chrono::DateTime::parse_from_rfc3339(&wire.sealed).is_err() {
            return Err(DiskFormatError::malformed("seal: sealed is not an RFC 3339 time"));
        }
        for e in &wire.entries {
            list.check_entry(&e.key, e.device, e.size)?;
            if e.key == "config" || e.key.starts_with("keys/") {
                return Err(DiskFormatError::malformed(format!("seal: object {} is never on a device", e.key)));
            }
        }
        Ok(Seal {
            job: wire.job,
            set_id: wire.set_id,
            device_count: wire.device_count,
            sealed: wire.sealed,
            entries: wire.entries.into_iter().map(|e| SealEntry { key: e.key, size: e.size, hash: e.hash, device: e.device }).collect(),
        })
    }
}

/// A seal file around any body (for [`Seal::encode`], tests and fuzzing).
pub fn seal_body(key: &DiskKey, set_id: &[u8; 16], device_number: u32, body: &[u8]) -> Vec<u8> {
    seal_sealed(&HEADER, &key.device_seal_key(), &aad(set_id, device_number), body)
}

fn header() -> [u8; HEADER_LEN] {
    HEADER.binary()
}

fn aad(set_id: &[u8; 16], device_number: u32) -> [u8; HEADER_LEN + 20] {
    let mut a = [0u8; HEADER_LEN + 20];
    a[..HEADER_LEN].copy_from_slice(&header());
    a[HEADER_LEN..HEADER_LEN + 16].copy_from_slice(set_id);
    a[HEADER_LEN + 16..].copy_from_slice(&device_number.to_le_bytes());
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

    fn sample() -> Seal {
        Seal {
            job: "j".into(),
            set_id: SET,
            device_count: 2,
            sealed: "2026-12-02T08:00:00Z".into(),
            entries: vec![
                SealEntry { key: "data/ab/ab".into(), size: 300, hash: [2; 32], device: 1 },
                SealEntry { key: "index/cd".into(), size: 5, hash: [1; 32], device: 2 },
            ],
        }
    }

    #[test]
    fn fixed_bytes() {
        let sealed = sample().encode(&key(), 2);
        assert_eq!(&sealed[..14], b"FERRYDEVSEAL\x01\x00");
        assert_eq!(sealed.len(), 14 + 12 + 130 + 16);
        let k = ferry_crypto::AeadKey::new(&blake3::derive_key("ferry device seal v1", &[2; 32]));
        let mut a = b"FERRYDEVSEAL\x01\x00".to_vec();
        a.extend_from_slice(&SET);
        a.extend_from_slice(&[2, 0, 0, 0]);
        let body = k.open_random_nonce(&a, &sealed[14..]).unwrap();
        let mut want = vec![1, b'j'];
        want.extend_from_slice(&SET);
        want.extend_from_slice(&[2]); // device count
        want.extend_from_slice(b"\x142026-12-02T08:00:00Z");
        want.extend_from_slice(&[2]); // 2 entries
        want.extend_from_slice(b"\x0adata/ab/ab\xac\x02");
        want.extend_from_slice(&[2; 32]);
        want.extend_from_slice(&[1]);
        want.extend_from_slice(b"\x08index/cd\x05");
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[2]);
        assert_eq!(body, want);
        assert_eq!(Seal::decode(&sealed, &key(), &SET, 2).unwrap(), sample());
    }

    #[test]
    fn digest_is_the_seed_digest() {
        let s = sample();
        let mut h = blake3::Hasher::new_derive_key("ferry seed digest v1");
        h.update(b"\x0a\x00\x00\x00data/ab/ab");
        h.update(&[2; 32]);
        h.update(b"\x08\x00\x00\x00index/cd");
        h.update(&[1; 32]);
        assert_eq!(s.digest(), *h.finalize().as_bytes());
        let mut r = s.clone();
        r.entries.reverse();
        assert_eq!(r.digest(), s.digest());
    }

    #[test]
    fn rejects_bad_seals() {
        let sealed = sample().encode(&key(), 1);
        assert_eq!(Seal::decode(&sealed, &key(), &SET, 1).unwrap(), sample());
        for at in [14, 30, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert_eq!(Seal::decode(&bad, &key(), &SET, 1), Err(DiskFormatError::Authentication), "byte {at}");
        }
        // Another device's copy, another set, another key.
        assert_eq!(Seal::decode(&sealed, &key(), &SET, 2), Err(DiskFormatError::Authentication));
        assert_eq!(Seal::decode(&sealed, &key(), &[0; 16], 1), Err(DiskFormatError::Authentication));
        assert_eq!(Seal::decode(&sealed, &DiskKey::from_bytes([1; 32]), &SET, 1), Err(DiskFormatError::Authentication));
        assert!(matches!(Seal::decode(&sealed[..20], &key(), &SET, 1), Err(DiskFormatError::Malformed(_))));
        let mut magic = sealed.clone();
        magic[0] = b'X';
        assert!(matches!(Seal::decode(&magic, &key(), &SET, 1), Err(DiskFormatError::Malformed(_))));
        let mut version = sealed.clone();
        version[12] = 2;
        assert_eq!(Seal::decode(&version, &key(), &SET, 1), Err(DiskFormatError::NewerVersion(2)));
        // Well sealed, but wrong inside.
        let reseal = |s: &Seal, n: u32| Seal::decode(&s.encode(&key(), n), &key(), &SET, n);
        assert!(matches!(reseal(&sample(), 3), Err(DiskFormatError::Malformed(_))), "device beyond the count");
        let broken: [fn(&mut Seal); 8] = [
            |s| s.entries[0].device = 3,
            |s| s.entries[1].device = 0,
            |s| s.entries[1].key = "data/ab/ab".into(),
            |s| s.entries[1].key = "../x".into(),
            |s| s.entries[1].key = "keys/ab".into(),
            |s| s.device_count = 0,
            |s| s.sealed = "soon".into(),
            |s| s.entries[0].size = MAX_SEED_BYTES + 1,
        ];
        for (i, f) in broken.iter().enumerate() {
            let mut s = sample();
            f(&mut s);
            assert!(matches!(reseal(&s, 1), Err(DiskFormatError::Malformed(_))), "case {i}");
        }
        let mut other_set = sample();
        other_set.set_id = [9; 16];
        let bytes = seal_body(&key(), &SET, 1, &postcard_of(&other_set));
        assert!(matches!(Seal::decode(&bytes, &key(), &SET, 1), Err(DiskFormatError::Malformed(_))));
        let mut trailing = postcard_of(&sample());
        trailing.push(0);
        assert!(matches!(Seal::decode(&seal_body(&key(), &SET, 1, &trailing), &key(), &SET, 1), Err(DiskFormatError::Malformed(_))));
    }

    /// The body [`Seal::encode`] seals.
    fn postcard_of(s: &Seal) -> Vec<u8> {
        let sealed = s.encode(&key(), 1);
        let k = key().device_seal_key();
        k.open_random_nonce(&aad(&s.set_id, 1), &sealed[HEADER_LEN..]).unwrap()
    }

    proptest! {
        #[test]
        fn prop_round_trip(
            items in proptest::collection::btree_map("(data|index|packlists|x)(/[a-z0-9]{1,12}){1,2}", (0u64..(1 << 40), any::<u8>(), 1u32..=3), 0..30),
            job in "[a-z]{1,10}",
            number in 1u32..=3,
        ) {
            let entries = items.into_iter().map(|(key, (size, h, device))| SealEntry { key, size, hash: [h; 32], device }).collect();
            let s = Seal { job, set_id: SET, device_count: 3, sealed: "2026-12-02T08:00:00+01:00".into(), entries };
            prop_assert_eq!(Seal::decode(&s.encode(&key(), number), &key(), &SET, number).unwrap(), s);
        }

        #[test]
        fn prop_decode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), number in 0u32..12) {
            if bytes.len() >= 14 {
                bytes[..14].copy_from_slice(&header());
            }
            let _ = Seal::decode(&bytes, &key(), &SET, number);
        }

        #[test]
        fn prop_sealed_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300), number in 0u32..12) {
            let _ = Seal::decode(&seal_body(&key(), &SET, number, &body), &key(), &SET, number);
        }
    }
}
