//! Ingest: moving an imported seed from its storage container into the machine's repository
//! (docs/design/offline-seeding.md, step 5).
//!
//! `ferry import run` leaves in the container every object of the seed under its repository key
//! and, beside them, [`SEED_MANIFEST_KEY`](ferry_api::SEED_MANIFEST_KEY): the list of (key, size, BLAKE3) it decrypted from the
//! disks. The vault trusts that list only if its digest is the one `ferry diskprep` recorded on
//! the job from the staging location (the agent's side), and every object only if its bytes hash
//! to the list's entry and pass the checks of an online upload ([`crate::verify`]). Objects are
//! written create-if-absent in the repository's commit order (packs, then index files and the
//! rest, recovery points last), so a killed ingest is simply run again, a second ingest of the
//! same seed changes nothing, and an object that exists with other bytes stops the ingest: a
//! seed never replaces anything, so it cannot roll a repository back.

use std::sync::Arc;

use anyhow::Context;
use ferry_api::{commit_phase, Invalid, SeedManifest, SEED_MANIFEST_KEY};
use ferry_store::Store;
use serde::Serialize;

use crate::error::bail;
use crate::verify::{self, Write};
use crate::Result;

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub recovery_points: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Objects the repository had already (identical): a re-run, or shared config and keys.
    pub present: u64,
}

/// Copies the seed in `container` into `machine`'s repository in `vault` (keys
/// `machines/<machine>/...`). `digest` is the job's recorded manifest digest (hex) and
/// `digest_of` computes a manifest's digest the way the disks' manifest does.
pub fn ingest(
    container: &dyn Store,
    vault: &Arc<dyn Store>,
    machine: &str,
    job: &str,
    digest: &str,
    digest_of: impl Fn(&SeedManifest) -> std::result::Result<String, Invalid>,
) -> Result<Ingested> {
    let bytes = container.get(SEED_MANIFEST_KEY).with_context(|| format!("read the seed manifest of import job {job} in its container"))?;
    let manifest: SeedManifest =
        serde_json::from_slice(&bytes).with_context(|| format!("the seed manifest of import job {job} is damaged"))?;
    if manifest.job != job {
        bail!("the container holds the seed of import job {:?}, not of {job:?}", manifest.job);
    }
    let computed = digest_of(&manifest)?;
    if computed != digest || manifest.digest != digest {
        bail!(
            "the seed manifest in the container of import job {job} is not the one diskprep recorded \
             (digest {computed}, recorded {digest}): run `ferry import run` again from the disks"
        );
    }
    let mut objects = manifest.objects.clone();
    objects.sort_by(|a, b| (commit_phase(&a.key), &a.key).cmp(&(commit_phase(&b.key), &b.key)));
    let mut done = Ingested::default();
    for o in &objects {
        let data = container.get(&o.key).with_context(|| format!("import job {job}: read {} from the container", o.key))?;
        let hash = blake3::hash(&data).to_hex();
        if data.len() as u64 != o.size || hash.as_str() != o.hash {
            bail!(
                "import job {job}: object {} in the container is not the one on the disks ({} bytes, hash {hash}; \
                 expected {} bytes, hash {}): run `ferry import run` again to copy it from the disks",
                o.key,
                data.len(),
                o.size,
                o.hash
            );
        }
        match verify::check_upload(&o.key, &data) {
            Ok(Write::Once) => {}
            Ok(Write::Replace) => bail!("import job {job}: {} is not part of a seed (locks are not carried)", o.key),
            Err(e) => bail!("import job {job}: refused {}: {e}", o.key),
        }
        let target = format!("machines/{machine}/{}", o.key);
        let len = data.len() as u64;
        if vault.put_if_absent(&target, data)? {
            done.objects += 1;
            done.bytes += len;
        } else {
            let existing = vault.get(&target)?;
            if blake3::hash(&existing).to_hex().as_str() != o.hash {
                bail!(
                    "import job {job}: the machine's repository holds other bytes under {}: a seed never replaces an object; \
                     nothing of it was changed",
                    o.key
                );
            }
            done.present += 1;
        }
        if let Some(rp) = o.key.strip_prefix("recovery-points/") {
            done.recovery_points.push(rp.to_string());
        }
    }
    if done.recovery_points.is_empty() {
        bail!("import job {job}: the seed holds no recovery point (was the offline backup finished before diskprep?)");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_api::{manifest_digest, SeedObject};
    use ferry_store::MemoryStore;

    /// A container holding a small seed (config, a pack, an index file, a recovery point) and
    /// its manifest; returns it and the manifest's digest.
    fn container(job: &str) -> (Arc<dyn Store>, String) {
        let c: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let named = |prefix: &str, bytes: &[u8]| {
            let h = blake3::hash(bytes).to_hex().to_string();
            (if prefix == "data/" { format!("data/{}/{h}", &h[..2]) } else { format!("{prefix}{h}") }, bytes.to_vec())
        };
        let objects = [
            ("config".to_string(), b"{\"magic\":\"ferry-repository\"}".to_vec()),
            named("data/", b"FRYPAK\x01\x00pack bytes"),
            named("index/", b"index bytes"),
            named("recovery-points/", b"recovery point bytes"),
        ];
        let mut list = Vec::new();
        for (k, v) in &objects {
            c.put(k, v.clone().into()).unwrap();
            list.push(SeedObject { key: k.clone(), size: v.len() as u64, hash: blake3::hash(v).to_hex().to_string() });
        }
        let mut m = SeedManifest { job: job.into(), set_id: "0".repeat(32), digest: String::new(), objects: list };
        m.digest = manifest_digest(&m).unwrap();
        c.put(SEED_MANIFEST_KEY, serde_json::to_vec(&m).unwrap().into()).unwrap();
        (c, m.digest)
    }

    #[test]
    fn a_seed_is_ingested_once_in_commit_order() {
        let (c, digest) = container("j");
        let vault: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let done = ingest(c.as_ref(), &vault, "m", "j", &digest, manifest_digest).unwrap();
        assert_eq!((done.objects, done.present, done.recovery_points.len()), (4, 0, 1));
        assert_eq!(vault.list("machines/m/").unwrap().len(), 4);
        // Again: nothing new, everything found identical.
        let again = ingest(c.as_ref(), &vault, "m", "j", &digest, manifest_digest).unwrap();
        assert_eq!((again.objects, again.present), (0, 4));
    }

    #[test]
    fn what_does_not_match_is_refused_and_nothing_is_replaced() {
        let (c, digest) = container("j");
        let vault: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // Another job's manifest, or a digest other than the recorded one.
        assert!(ingest(c.as_ref(), &vault, "m", "other", &digest, manifest_digest).unwrap_err().to_string().contains("not of"));
        let e = ingest(c.as_ref(), &vault, "m", "j", &"0".repeat(64), manifest_digest).unwrap_err().to_string();
        assert!(e.contains("not the one diskprep recorded"), "{e}");
        // An object altered in the container after the import.
        let idx = c.list("index/").unwrap().remove(0).key;
        let original = c.get(&idx).unwrap();
        c.put(&idx, bytes::Bytes::from_static(b"altered")).unwrap();
        let e = ingest(c.as_ref(), &vault, "m", "j", &digest, manifest_digest).unwrap_err().to_string();
        assert!(e.contains(&idx) && e.contains("not the one on the disks"), "{e}");
        assert!(vault.list("machines/m/recovery-points/").unwrap().is_empty(), "no recovery point before its objects");
        c.put(&idx, original).unwrap();
        // The repository holds other bytes under a seed object's name: refused, left as it was.
        vault.put("machines/m/config", bytes::Bytes::from_static(b"{\"other\":1}")).unwrap();
        let e = ingest(c.as_ref(), &vault, "m", "j", &digest, manifest_digest).unwrap_err().to_string();
        assert!(e.contains("never replaces") && e.contains("config"), "{e}");
        assert_eq!(vault.get("machines/m/config").unwrap().as_ref(), b"{\"other\":1}");
    }
}
