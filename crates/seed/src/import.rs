//! The import side: checking that the given disks are one complete set, and reading objects off
//! them, verified.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use ferry_crypto::AeadKey;

use crate::fsio::{self, MANIFEST_FILE, OBJECTS_DIR, SEED_DIR};
use crate::label::{read_label, Label};
use crate::manifest::{Manifest, ManifestEntry, MAX_MANIFEST_LEN};
use crate::object::{self, ObjectHeader};
use crate::{DiskKey, SeedError};

/// A complete, verified disk set of one import job: labels checked with the disk key, the
/// manifest identical on every disk. Objects are read with [`DiskSet::read_object`].
#[derive(Debug)]
pub struct DiskSet {
    job: String,
    set_id: [u8; 16],
    /// Disk folders by number (index = number - 1).
    disks: Vec<PathBuf>,
    manifest: Manifest,
    object_key: AeadKey,
}

impl DiskSet {
    /// Checks that `disks` are exactly disks 1..=n of one complete set of `job`, in any order,
    /// and opens the manifest. Nothing is read beyond labels and manifests.
    ///
    /// In order: every folder has a readable label (`NotASeedDisk`, `LabelDamaged`); no folder
    /// is given twice (`DuplicateDisk`); every label is of `job` (`ForeignDisk`) and verifies
    /// with `key` (`KeyInvalid`: checked before the labels' numbers are trusted); all are of one
    /// set (`ForeignDisk` for the disks outside the set most of them belong to); the set is
    /// complete (`Incomplete`: disk count 0, diskprep did not finish) and its labels agree on
    /// the count; each number once (`DuplicateDisk`) and none missing (`MissingDisks`); then
    /// every disk's manifest opens and is identical to disk 1's (`ManifestError`).
    pub fn open(disks: &[PathBuf], job: &str, key: &DiskKey) -> Result<DiskSet, SeedError> {
        if disks.is_empty() {
            return Err(SeedError::InvalidInput { reason: "no disks given".into() });
        }
        let mut labels: Vec<(PathBuf, Label)> = Vec::with_capacity(disks.len());
        for path in disks {
            labels.push((path.clone(), read_label(path)?));
        }
        check_distinct_folders(&labels)?;
        for (path, label) in &labels {
            if label.job != job {
                return Err(SeedError::ForeignDisk {
                    path: path.clone(),
                    job: label.job.clone(),
                    expected_job: job.to_string(),
                    detail: format!("import job {}", label.job),
                });
            }
            if !label.verify(key) {
                return Err(SeedError::KeyInvalid { path: path.clone(), disk: label.disk_number, job: job.to_string() });
            }
        }
        let set_id = majority_set(&labels);
        for (path, label) in &labels {
            if label.set_id != set_id {
                return Err(SeedError::ForeignDisk {
                    path: path.clone(),
                    job: label.job.clone(),
                    expected_job: job.to_string(),
                    detail: format!("another disk set (set {}) of import job {job}", hex::encode(label.set_id)),
                });
            }
        }
        for (path, label) in &labels {
            if label.disk_count == 0 {
                return Err(SeedError::Incomplete { path: path.clone(), disk: label.disk_number, job: job.to_string() });
            }
        }
        let count = labels[0].1.disk_count;
        if let Some((path, label)) = labels.iter().find(|(_, l)| l.disk_count != count) {
            return Err(SeedError::LabelDamaged {
                path: path.clone(),
                reason: format!("it says the set has {} disks, disk {} says {count}", label.disk_count, labels[0].1.disk_number),
            });
        }
        let mut by_number: Vec<Option<PathBuf>> = vec![None; count as usize];
        for (path, label) in &labels {
            // Label::decode guarantees 1 <= disk_number <= disk_count.
            let slot = &mut by_number[label.disk_number as usize - 1];
            if let Some(first) = slot {
                return Err(SeedError::DuplicateDisk { number: label.disk_number, first: first.clone(), second: path.clone() });
            }
            *slot = Some(path.clone());
        }
        let missing: Vec<u32> = (1..=count).filter(|n| by_number[*n as usize - 1].is_none()).collect();
        if !missing.is_empty() {
            return Err(SeedError::MissingDisks { numbers: missing, count });
        }
        let disks: Vec<PathBuf> = by_number.into_iter().flatten().collect();
        let mut manifest: Option<Manifest> = None;
        for (i, path) in disks.iter().enumerate() {
            let number = i as u32 + 1;
            let m = read_manifest(path, number, key, &set_id)?;
            let bad = |reason: String| SeedError::ManifestError { path: path.clone(), disk: number, reason };
            if m.job != job || m.disk_count != count {
                return Err(bad(format!("it is the manifest of job {} with {} disks, not of this set", m.job, m.disk_count)));
            }
            match &manifest {
                None => manifest = Some(m),
                Some(first) if *first != m => return Err(bad("it differs from disk 1's manifest".into())),
                Some(_) => {}
            }
        }
        let manifest = manifest.ok_or_else(|| SeedError::InvalidInput { reason: "no disks given".into() })?;
        Ok(DiskSet { job: job.to_string(), set_id, disks, manifest, object_key: key.object_key(&set_id) })
    }

    /// The set's manifest: every object, sorted by key.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The folder of disk `number` (1..=count; an empty path for any other number).
    pub fn disk_path(&self, number: u32) -> &Path {
        number.checked_sub(1).and_then(|i| self.disks.get(i as usize)).map_or(Path::new(""), PathBuf::as_path)
    }

    /// The number of disks in the set.
    pub fn disk_count(&self) -> u32 {
        self.disks.len() as u32
    }

    /// The set's ID.
    pub fn set_id(&self) -> [u8; 16] {
        self.set_id
    }

    /// Reads one object into `buf` (replacing its content): decrypted frame by frame,
    /// authenticated, hashed and compared with the manifest (and, for packs, index files and
    /// recovery points, with its name). `Corrupted`, naming the disk, the object and its file,
    /// on a missing, truncated, extended or altered file, a wrong size or a wrong hash.
    pub fn read_object(&self, entry: &ManifestEntry, buf: &mut Vec<u8>) -> Result<(), SeedError> {
        buf.clear();
        let disk = self.disk_path(entry.disk);
        let corrupted = |reason: String| SeedError::Corrupted {
            path: disk.to_path_buf(),
            disk: entry.disk,
            count: self.disk_count(),
            job: self.job.clone(),
            key: entry.key.clone(),
            file: entry.file.clone(),
            reason,
        };
        let Some(file_id) = object::parse_file_name(&entry.file).filter(|_| !disk.as_os_str().is_empty()) else {
            return Err(SeedError::InvalidInput { reason: format!("object {} is not an entry of this set's manifest", entry.key) });
        };
        let path = disk.join(SEED_DIR).join(OBJECTS_DIR).join(&entry.file);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupted("its file is missing: the disk was altered or damaged".into()))
            }
            Err(e) => return Err(corrupted(format!("cannot open its file: {e}"))),
        };
        let len = file.metadata().map_err(|e| corrupted(format!("cannot stat its file: {e}")))?.len();
        let want = object::stored_size(entry.size);
        if len < want {
            return Err(corrupted(format!("truncated: the file has {len} of {want} bytes; the disk was altered or damaged")));
        }
        if len > want {
            return Err(corrupted(format!("the file has {} bytes more than written; the disk was altered", len - want)));
        }
        // The size is bounded by the file's (checked) length; objects are tens of MiB.
        buf.reserve(entry.size.min(256 << 20) as usize);
        let expected = ObjectHeader { file_id, size: entry.size };
        let (_, hash) = object::open_stream(&self.object_key, &self.set_id, Some(expected), &mut file, Some(buf))
            .map_err(|e| corrupted(e.to_string()))?;
        if hash != entry.hash {
            return Err(corrupted("its content does not match the manifest's hash".into()));
        }
        if crate::prepare::named_hash(&entry.key).is_some_and(|named| named != hash) {
            return Err(corrupted("its content does not hash to its name".into()));
        }
        Ok(())
    }
}

/// The same folder given twice (under two paths) is refused before anything else.
fn check_distinct_folders(labels: &[(PathBuf, Label)]) -> Result<(), SeedError> {
    let mut seen: HashMap<PathBuf, &PathBuf> = HashMap::new();
    for (path, label) in labels {
        let canonical = std::fs::canonicalize(path).map_err(|e| SeedError::io("resolve", path, e))?;
        if let Some(first) = seen.insert(canonical, path) {
            return Err(SeedError::DuplicateDisk { number: label.disk_number, first: first.clone(), second: path.clone() });
        }
    }
    Ok(())
}

/// The set id most of the disks carry (the first disk's on a tie).
fn majority_set(labels: &[(PathBuf, Label)]) -> [u8; 16] {
    let mut counts: Vec<([u8; 16], usize)> = Vec::new();
    for (_, l) in labels {
        match counts.iter_mut().find(|(id, _)| *id == l.set_id) {
            Some((_, n)) => *n += 1,
            None => counts.push((l.set_id, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    counts.into_iter().find(|(_, n)| *n == best).map(|(id, _)| id).unwrap_or_default()
}

/// Reads and opens one disk's manifest.
pub(crate) fn read_manifest(disk: &Path, number: u32, key: &DiskKey, set_id: &[u8; 16]) -> Result<Manifest, SeedError> {
    let path = disk.join(SEED_DIR).join(MANIFEST_FILE);
    let bad = |reason: String| SeedError::ManifestError { path: disk.to_path_buf(), disk: number, reason };
    let bytes = match fsio::read_limited(&path, MAX_MANIFEST_LEN) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(bad("FERRY-SEED/manifest.bin is missing: diskprep did not finish; run it again with all the disks".into())),
        Err(e) => return Err(bad(format!("cannot read FERRY-SEED/manifest.bin: {e}"))),
    };
    Manifest::open(key, set_id, &bytes).map_err(|e| bad(e.to_string()))
}
