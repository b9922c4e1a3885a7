//! [`DeviceSet`]: the vault-site reader of sealed devices. Everything is checked against the
//! seals before any object is read.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_store::Store;

use super::seal::MAX_SEAL_LEN;
use super::{
    check_distinct, check_job, check_one_set, shown, verified_headers, walk, DeviceHeader, Kind, Seal, SealEntry, DEVICE_DIR, HEADER_FILE,
    REPO_DIR, SEAL_FILE,
};
use crate::fsio;
use crate::{DiskKey, SeedError};

/// The sealed devices of one device job, checked: headers verified with the job's key, the
/// seals identical on every device, every device of the set given, and every device's files
/// exactly what its seal lists. Objects are read with [`DeviceSet::read_object`].
#[derive(Debug)]
pub struct DeviceSet {
    /// By device number (index = number - 1).
    devices: Vec<SealedDevice>,
    seal: Seal,
}

#[derive(Debug)]
struct SealedDevice {
    path: PathBuf,
    header: DeviceHeader,
    /// The object folder; `None` on a device without objects whose folder is gone.
    store: Option<Arc<dyn Store>>,
}

impl DeviceSet {
    /// Checks that `paths` are exactly devices 1..=n of one sealed set of `job`, in any order,
    /// unchanged since the sealing. Nothing but headers, seals, folder listings and file sizes
    /// is read.
    ///
    /// In order: every path has a header (`NotADevice`, `DeviceHeaderDamaged`) that verifies
    /// with `key` (`DeviceKeyInvalid`), names `job` and the set most of them name
    /// (`ForeignDevice`); no folder and no device number twice (`DuplicateDisk`); every device
    /// is sealed (`NotSealed`); every seal opens for its device (`Tampered`, naming
    /// `FERRY-DEVICE/seal.bin`: damaged, or copied from another device or set) and all are the
    /// same seal; no device of the seal's count is missing (`MissingDisks`); and the files
    /// under each device's `FERRY-DEVICE` are exactly `device.json`, `seal.bin` and the
    /// objects the seal puts on that device, with their sealed sizes (`Tampered`: a file
    /// "added", "removed" or "changed since the device was sealed", naming it). Folders are
    /// not files: an empty one is no change.
    pub fn open(paths: &[PathBuf], job: &str, key: &DiskKey) -> Result<DeviceSet, SeedError> {
        let mut found = verified_headers(paths, key)?;
        check_job(&found, job, |_| String::new())?;
        let set_id = check_one_set(&found, job, "")?;
        check_distinct(&found)?;
        found.sort_by_key(|(_, h)| h.device_number);
        for (path, h) in &found {
            if !path.join(DEVICE_DIR).join(SEAL_FILE).exists() {
                return Err(SeedError::NotSealed { path: path.clone(), device: h.device_number, job: job.to_string() });
            }
        }
        let mut seal: Option<(u32, Seal)> = None;
        for (path, h) in &found {
            let number = h.device_number;
            let s = read_seal(path, number, job, key, &set_id)?;
            let tampered = |reason: String| SeedError::Tampered { path: path.clone(), device: number, file: shown(SEAL_FILE), reason };
            if s.job != job {
                return Err(tampered(format!("is the seal of job {}, not of job {job}", s.job)));
            }
            match &seal {
                None => seal = Some((number, s)),
                Some((first, f)) if *f != s => return Err(tampered(format!("differs from the seal of device {first}"))),
                Some(_) => {}
            }
        }
        let Some((_, seal)) = seal else {
            return Err(SeedError::InvalidInput { reason: "no devices given".into() });
        };
        let numbers: HashSet<u32> = found.iter().map(|(_, h)| h.device_number).collect();
        let missing: Vec<u32> = (1..=seal.device_count).filter(|n| !numbers.contains(n)).collect();
        if !missing.is_empty() {
            return Err(SeedError::MissingDisks { numbers: missing, count: seal.device_count });
        }
        // Seal::decode guarantees every header's number is within the count: the devices are
        // now exactly 1..=count, in order.
        let mut devices = Vec::with_capacity(found.len());
        for (path, header) in found {
            let store = check_files(&path, header.device_number, &seal)?;
            devices.push(SealedDevice { path, header, store });
        }
        Ok(DeviceSet { devices, seal })
    }

    /// The set's seal: every object, sorted by key.
    pub fn seal(&self) -> &Seal {
        &self.seal
    }

    /// The header of device `device_number`, if it is one of the set.
    pub fn header(&self, device_number: u32) -> Option<&DeviceHeader> {
        self.device(device_number).map(|d| &d.header)
    }

    /// The folder of device `device_number`, if it is one of the set.
    pub fn device_path(&self, device_number: u32) -> Option<&Path> {
        self.device(device_number).map(|d| d.path.as_path())
    }

    /// The number of devices in the set.
    pub fn device_count(&self) -> u32 {
        self.devices.len() as u32
    }

    fn device(&self, number: u32) -> Option<&SealedDevice> {
        number.checked_sub(1).and_then(|i| self.devices.get(i as usize))
    }

    /// Reads one object of the seal into `buf` (replacing its content) and checks its size and
    /// BLAKE3 against the seal (for packs, index files and recovery points, the seal's hash is
    /// their name). `Tampered`, naming the device and the object's file, when the file is gone,
    /// has another size, or "its bytes changed since the device was sealed"; `InvalidInput`
    /// for an entry that is not the seal's.
    pub fn read_object(&self, entry: &SealEntry, buf: &mut Vec<u8>) -> Result<(), SeedError> {
        buf.clear();
        let ours = self.seal.entries.binary_search_by(|e| e.key.as_str().cmp(&entry.key)).ok().map(|i| &self.seal.entries[i]);
        let (Some(device), true) = (self.device(entry.device), ours == Some(entry)) else {
            return Err(SeedError::InvalidInput { reason: format!("object {} is not an entry of this device set's seal", entry.key) });
        };
        let file = shown(&format!("{REPO_DIR}/{}", entry.key));
        let tampered = |reason: String| SeedError::Tampered { path: device.path.clone(), device: entry.device, file: file.clone(), reason };
        let Some(store) = &device.store else {
            return Err(tampered("removed since the device was sealed".into()));
        };
        let read_error = |e: ferry_store::StoreError| SeedError::io("read an object of", &device.path, std::io::Error::other(e));
        match store.head(&entry.key).map_err(read_error)? {
            None => return Err(tampered("removed since the device was sealed".into())),
            Some(n) if n != entry.size => {
                return Err(tampered(format!("changed since the device was sealed ({n} bytes, sealed with {})", entry.size)))
            }
            Some(_) => {}
        }
        match store.get_range_into(&entry.key, 0..entry.size, buf) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Err(tampered("removed since the device was sealed".into())),
            Err(e) => return Err(read_error(e)),
        }
        if buf.len() as u64 != entry.size || ferry_crypto::content_hash(buf) != entry.hash {
            buf.clear();
            return Err(tampered("its bytes changed since the device was sealed".into()));
        }
        Ok(())
    }
}

/// Reads and opens one device's seal.
fn read_seal(path: &Path, number: u32, job: &str, key: &DiskKey, set_id: &[u8; 16]) -> Result<Seal, SeedError> {
    let file = path.join(DEVICE_DIR).join(SEAL_FILE);
    let tampered = |reason: String| SeedError::Tampered { path: path.to_path_buf(), device: number, file: shown(SEAL_FILE), reason };
    let bytes = match fsio::read_limited(&file, MAX_SEAL_LEN) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(SeedError::NotSealed { path: path.to_path_buf(), device: number, job: job.to_string() }),
        Err(e) => return Err(tampered(format!("cannot be read ({e})"))),
    };
    Seal::decode(&bytes, key, set_id, number).map_err(|e| tampered(format!("does not open ({e})")))
}

/// Checks that the files under a device's `FERRY-DEVICE` are exactly its header, its seal and
/// its sealed objects with their sizes. Returns the device's object store (`None` if its
/// folder is gone and no object is sealed on the device).
fn check_files(path: &Path, number: u32, seal: &Seal) -> Result<Option<Arc<dyn Store>>, SeedError> {
    let dir = path.join(DEVICE_DIR);
    let tampered = |rel: &str, reason: String| SeedError::Tampered { path: path.to_path_buf(), device: number, file: shown(rel), reason };
    let added = |rel: &str| tampered(rel, "added since the device was sealed".into());
    let removed = |rel: &str| tampered(rel, "removed since the device was sealed".into());
    let expected: BTreeMap<String, u64> =
        seal.entries.iter().filter(|e| e.device == number).map(|e| (format!("{REPO_DIR}/{}", e.key), e.size)).collect();
    let repo = dir.join(REPO_DIR);
    // The object folder is opened as the agent wrote it: its store's listing names the objects.
    let store = if std::fs::symlink_metadata(&repo).is_ok_and(|m| m.is_dir()) {
        let canonical = std::fs::canonicalize(&repo).map_err(|e| SeedError::io("resolve", &repo, e))?;
        let location = canonical.to_str().ok_or_else(|| SeedError::InvalidInput {
            reason: format!("device path {} is not valid UTF-8: mount the device at a plain path", path.display()),
        })?;
        Some(ferry_store::open(location).map_err(|e| SeedError::io("open the object folder of", path, std::io::Error::other(e)))?)
    } else {
        None
    };
    let mut listed: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(store) = &store {
        for o in store.list("").map_err(|e| SeedError::io("list the objects of", path, std::io::Error::other(e)))? {
            listed.insert(format!("{REPO_DIR}/{}", o.key), o.size);
        }
    }
    let mut seen = HashSet::new();
    for f in walk(&dir)? {
        if f.rel == HEADER_FILE || f.rel == SEAL_FILE {
            if f.kind != Kind::File {
                return Err(tampered(&f.rel, "replaced by a link or special file since the device was sealed".into()));
            }
            continue;
        }
        let Some(&size) = expected.get(&f.rel) else {
            return Err(added(&f.rel));
        };
        if f.kind != Kind::File {
            return Err(tampered(&f.rel, "replaced by a link or special file since the device was sealed".into()));
        }
        if f.len != size {
            return Err(tampered(&f.rel, format!("changed since the device was sealed ({} bytes, sealed with {size})", f.len)));
        }
        seen.insert(f.rel);
    }
    if let Some((rel, _)) = listed.iter().find(|(rel, _)| !expected.contains_key(*rel)) {
        return Err(added(rel));
    }
    if let Some((rel, _)) = expected.iter().find(|(rel, _)| !seen.contains(*rel) || !listed.contains_key(*rel)) {
        return Err(removed(rel));
    }
    Ok(store)
}
