//! The staging location of an offline seed (docs/design/offline-seeding.md): an ordinary
//! repository in a local folder that `ferry backup --offline` writes, `ferry diskprep` copies
//! onto disks and cleanup empties once the vault's receipt is verified. Here: its record of the
//! import job (`seed.json`), which of its objects a seed carries, their seed digest (what the
//! receipt is checked against) and the emptying.

use std::io;
use std::path::Path;

use ferry_store::Store;
use serde::{Deserialize, Serialize};

/// The prefixes of a repository that a seed carries (not locks, not mark records).
pub const SEED_PREFIXES: [&str; 5] = ["keys/", "data/", "index/", "packlists/", "recovery-points/"];

/// The staging location's record of its import job (`DIR/seed.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedFile {
    pub job: String,
    /// The machine's ID and name, and its vault.
    pub machine: String,
    pub machine_name: String,
    pub vault: String,
    pub created: String,
    /// Set once cleanup verified the ingest receipt against the staging location (so a cleanup
    /// killed while emptying it is finished by a rerun), and once it emptied it.
    #[serde(default)]
    pub receipt_verified: bool,
    #[serde(default)]
    pub cleaned: bool,
}

impl SeedFile {
    pub const NAME: &'static str = "seed.json";

    /// The record in `staging`, or `None` if there is none (not a staging location yet).
    pub fn load(staging: &Path) -> io::Result<Option<SeedFile>> {
        let path = staging.join(Self::NAME);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                io::Error::other(format!(
                    "{} is damaged; it names the staging location's import job: restore it from the job (`ferry import-job show`): {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::other(format!("read {}: {e}", path.display()))),
        }
    }

    /// Writes the record (a temporary file renamed over it).
    pub fn save(&self, staging: &Path) -> io::Result<()> {
        let path = staging.join(Self::NAME);
        let tmp = staging.join(".seed.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text).map_err(|e| io::Error::other(format!("write {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| io::Error::other(format!("write {}: {e}", path.display())))
    }
}

/// Every object a seed carries from a staging location: (key, size), sorted by key.
pub fn staging_objects(store: &dyn Store) -> ferry_store::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    if let Some(size) = store.head("config")? {
        out.push(("config".to_string(), size));
    }
    for p in SEED_PREFIXES {
        out.extend(store.list(p)?.into_iter().map(|o| (o.key, o.size)));
    }
    out.sort();
    Ok(out)
}

/// The [`seed_digest`](ferry_api::seed_digest) of what a staging location holds (every object
/// read and hashed).
pub fn staging_digest(store: &dyn Store) -> ferry_store::Result<[u8; 32]> {
    let mut entries = Vec::new();
    for (key, _) in staging_objects(store)? {
        let bytes = store.get(&key)?;
        entries.push((key, *blake3::hash(&bytes).as_bytes()));
    }
    Ok(ferry_api::seed_digest(entries.iter().map(|(k, h)| (k.as_str(), h))))
}

/// Removes the repository's objects from a staging location (not `seed.json`); returns how many
/// files went.
pub fn empty_staging(dir: &Path) -> io::Result<u64> {
    let failed = |op: &str, p: &Path, e: io::Error| io::Error::other(format!("{op} {}: {e}", p.display()));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| failed("read", dir, e))? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_name() == SeedFile::NAME {
            continue;
        }
        if entry.file_type()?.is_dir() {
            n += count_files(&p);
            std::fs::remove_dir_all(&p).map_err(|e| failed("remove", &p, e))?;
        } else {
            std::fs::remove_file(&p).map_err(|e| failed("remove", &p, e))?;
            n += 1;
        }
    }
    Ok(n)
}

fn count_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.file_type().is_ok_and(|t| t.is_dir()) { count_files(&e.path()) } else { 1 })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_location_is_recorded_digested_and_emptied() {
        let d = tempfile::tempdir().unwrap();
        assert!(SeedFile::load(d.path()).unwrap().is_none());
        let seed = SeedFile {
            job: "j".into(),
            machine: "m".into(),
            machine_name: "web".into(),
            vault: "https://v".into(),
            created: "2026-11-30T00:00:00Z".into(),
            receipt_verified: false,
            cleaned: false,
        };
        seed.save(d.path()).unwrap();
        assert_eq!(SeedFile::load(d.path()).unwrap().unwrap().job, "j");
        let store = ferry_store::open(&d.path().to_string_lossy()).unwrap();
        store.put("config", bytes::Bytes::from_static(b"c")).unwrap();
        store.put("data/ab/abcd", bytes::Bytes::from_static(b"pack")).unwrap();
        store.put("locks/x", bytes::Bytes::from_static(b"lock")).unwrap();
        let objects = staging_objects(store.as_ref()).unwrap();
        assert_eq!(objects, [("config".to_string(), 1), ("data/ab/abcd".to_string(), 4)], "no locks");
        let want = ferry_api::seed_digest([("config", blake3::hash(b"c").as_bytes()), ("data/ab/abcd", blake3::hash(b"pack").as_bytes())]);
        assert_eq!(staging_digest(store.as_ref()).unwrap(), want);
        assert_eq!(empty_staging(d.path()).unwrap(), 3);
        assert!(SeedFile::load(d.path()).unwrap().is_some(), "seed.json stays");
        std::fs::write(d.path().join(SeedFile::NAME), "{").unwrap();
        assert!(SeedFile::load(d.path()).unwrap_err().to_string().contains("is damaged"));
    }
}
