//! The seed manifest an import leaves in its container, and the seed digest both sides compute.
//!
//! `ferry import run` copies a seed's objects into the import job's container and writes, beside
//! them, [`SEED_MANIFEST_KEY`]: the list of (key, size, BLAKE3) it decrypted from the disks. The
//! vault's ingest trusts that list only if its [`manifest_digest`] is the one diskprep recorded
//! on the job, and the agent checks the ingest receipt against the [`seed_digest`] of its staging
//! location. [`commit_phase`] is the order in which a repository's objects become visible, which
//! diskprep places by and the ingest writes in.

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// The key of the seed manifest inside an import job's container.
pub const SEED_MANIFEST_KEY: &str = "seed-manifest.json";

/// One object of a seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedObject {
    pub key: String,
    pub size: u64,
    /// BLAKE3 of the object's bytes (hex).
    pub hash: String,
}

/// What `ferry import run` writes beside the objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedManifest {
    pub job: String,
    pub set_id: String,
    /// Hex of the manifest's digest as the disks' manifest computes it (must equal the job's).
    pub digest: String,
    pub objects: Vec<SeedObject>,
}

/// The order in which a repository's objects become visible: packs (0), then index files, pack
/// lists, config and keys (1), recovery points last (2). What refers to something is written
/// after it.
pub fn commit_phase(key: &str) -> u8 {
    if key.starts_with("data/") {
        0
    } else if key.starts_with("recovery-points/") {
        2
    } else {
        1
    }
}

/// The digest of a seed's objects, in any order:
/// `BLAKE3-derive-mode("ferry seed digest v1", for each (key, hash) sorted by key: u32le(len(key)) || key || hash)`.
/// The agent computes it over its staging location to check the vault's ingest receipt.
pub fn seed_digest<'a>(items: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>) -> [u8; 32] {
    let mut items: Vec<(&str, &[u8; 32])> = items.into_iter().collect();
    items.sort_unstable();
    let mut h = blake3::Hasher::new_derive_key("ferry seed digest v1");
    for (key, hash) in items {
        h.update(&(key.len() as u32).to_le_bytes());
        h.update(key.as_bytes());
        h.update(hash);
    }
    *h.finalize().as_bytes()
}

/// The [`seed_digest`] of a seed manifest's object list (hex): computed by diskprep from the
/// disks' manifest and recorded on the job, recomputed by the vault from what the import
/// decrypted.
pub fn manifest_digest(m: &SeedManifest) -> Result<String, Invalid> {
    let mut entries: Vec<(&str, [u8; 32])> = Vec::with_capacity(m.objects.len());
    for o in &m.objects {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&o.hash, &mut h)
            .map_err(|e| Invalid(format!("seed manifest: the hash of {} is not 64 hex digits: {e}", o.key)))?;
        entries.push((&o.key, h));
    }
    Ok(hex::encode(seed_digest(entries.iter().map(|(k, h)| (*k, h)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_pinned_and_order_free() {
        let mut h = blake3::Hasher::new_derive_key("ferry seed digest v1");
        h.update(b"\x0a\x00\x00\x00data/ab/ab");
        h.update(&[2; 32]);
        h.update(b"\x08\x00\x00\x00index/cd");
        h.update(&[1; 32]);
        let want = *h.finalize().as_bytes();
        assert_eq!(seed_digest([("index/cd", &[1; 32]), ("data/ab/ab", &[2; 32])]), want);
        assert_eq!(seed_digest([("data/ab/ab", &[2; 32]), ("index/cd", &[1; 32])]), want);
    }

    #[test]
    fn phases_put_packs_first_and_recovery_points_last() {
        assert_eq!([commit_phase("data/ab/ab"), commit_phase("config"), commit_phase("recovery-points/x")], [0, 1, 2]);
    }

    #[test]
    fn fixed_json() {
        let m = SeedManifest {
            job: "j".into(),
            set_id: "0".repeat(32),
            digest: "d".into(),
            objects: vec![SeedObject { key: "config".into(), size: 5, hash: "01".repeat(32) }],
        };
        let text = format!(
            r#"{{"job":"j","set_id":"{}","digest":"d","objects":[{{"key":"config","size":5,"hash":"{}"}}]}}"#,
            "0".repeat(32),
            "01".repeat(32)
        );
        assert_eq!(serde_json::to_string(&m).unwrap(), text);
        assert_eq!(serde_json::from_str::<SeedManifest>(&text).unwrap(), m);
        assert_eq!(manifest_digest(&m).unwrap(), hex::encode(seed_digest([("config", &[1; 32])])));
        let bad = SeedManifest { objects: vec![SeedObject { hash: "xy".into(), ..m.objects[0].clone() }], ..m };
        assert!(manifest_digest(&bad).unwrap_err().to_string().contains("not 64 hex digits"));
    }
}
