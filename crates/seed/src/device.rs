//! Seed devices, the Data Box workflow: disks or boxes the vault provisions for one machine,
//! which the machine's agent writes its first backup onto directly, seals, and which the vault
//! imports and then erases. The byte layouts are in `docs/format.md` ("Seed devices").
//!
//! # Layout
//! ```text
//! PATH/FERRY-DEVICE/device.json   the header: plaintext JSON, MAC'ed (job, machine, set id, number, ...)
//! PATH/FERRY-DEVICE/repo/         a local-folder store holding the repository's objects, as they are
//! PATH/FERRY-DEVICE/seal.bin      written when the agent seals the devices; absent before
//! ```
//!
//! The objects under `repo/` are the machine's repository objects byte for byte (packs, index
//! files, pack lists, recovery points), already encrypted under the repository's master key:
//! a device adds no second encryption. The repository's `config` and key files never go onto
//! a device (the agent reads them from the vault), so a stolen device holds no key file to
//! guess passphrases against. Every key comes from the job's [`DiskKey`](crate::DiskKey): the
//! header's MAC key and the seal's AES-256-GCM key.
//!
//! # Workflow
//! 1. The vault prepares each device: [`prepare_device`] writes its [`DeviceHeader`].
//! 2. The agent opens the devices as a [`Store`](ferry_store::Store) ([`DeviceStore::open`]),
//!    runs its first backup against it, and seals them ([`DeviceStore::seal`]): the list of
//!    every object with its size and BLAKE3 ([`Seal`]), sealed on every device.
//! 3. The vault opens the returned devices ([`DeviceSet::open`]): the seals must open, agree,
//!    and match the files exactly (a byte changed, a file added, removed or resized since the
//!    sealing is [`SeedError::Tampered`], naming the device and the file); each object is then
//!    read and checked against its sealed hash ([`DeviceSet::read_object`]).
//! 4. Once the objects are ingested, [`erase_device`] overwrites every file, reads the
//!    overwrite back, and removes the files.
//!
//! # Threat model
//! - **A lost or stolen device** reveals its header (job, machine ID and name, set id, device
//!   number, capacity, kind, time) and the repository's object names and sizes, as the vault's
//!   own container does. The objects are encrypted under the repository's master key, which
//!   the device does not hold in any form.
//! - **Tampering after sealing** (objects edited, added, removed, the seal swapped between
//!   devices or sets) is detected at import without the master key; before sealing, the
//!   repository's own authentication and the vault's name checks still apply.
//!
//! # Example (the vault's import)
//! ```no_run
//! use std::path::PathBuf;
//! use ferry_seed::{DeviceSet, DiskKey};
//!
//! # fn main() -> Result<(), ferry_seed::SeedError> {
//! let key = DiskKey::from_hex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")?;
//! // Headers, seals and every file's presence and size are checked here.
//! let set = DeviceSet::open(&[PathBuf::from("/mnt/box1"), PathBuf::from("/mnt/box2")], "job-1", &key)?;
//! let mut buf = Vec::new();
//! for entry in &set.seal().entries {
//!     set.read_object(entry, &mut buf)?; // size and BLAKE3 compared with the seal
//!     // ... put_if_absent(entry.key, buf) into the job's container
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::fsio::{self, TMP_SUFFIX};
use crate::{DiskKey, SeedError};

mod erase;
mod header;
mod seal;
mod set;
mod store;

pub use erase::{erase_device, Erasure};
pub use header::{DeviceHeader, DEVICE_HEADER_MAGIC, DEVICE_HEADER_VERSION, DEVICE_KINDS, MAX_DEVICE_HEADER_LEN};
pub use seal::{seal_body, Seal, SealEntry, MAX_SEAL_LEN, SEAL_MAGIC, SEAL_VERSION};
pub use set::DeviceSet;
pub use store::DeviceStore;

/// The folder at the top of a device that holds everything of the job.
pub const DEVICE_DIR: &str = "FERRY-DEVICE";
/// The header, in [`DEVICE_DIR`].
pub(crate) const HEADER_FILE: &str = "device.json";
/// The seal, in [`DEVICE_DIR`].
pub(crate) const SEAL_FILE: &str = "seal.bin";
/// The object store's folder, in [`DEVICE_DIR`].
pub(crate) const REPO_DIR: &str = "repo";

/// Reads a device's header without the key (the MAC is not checked: see
/// [`DeviceHeader::verify`]). `Ok(None)` when `path` has no `FERRY-DEVICE/device.json` (or does
/// not exist); `DeviceHeaderDamaged` when the header cannot be parsed.
pub fn read_device_header(path: &Path) -> Result<Option<DeviceHeader>, SeedError> {
    let file = path.join(DEVICE_DIR).join(HEADER_FILE);
    let damaged = |reason: String| SeedError::DeviceHeaderDamaged { path: path.to_path_buf(), reason };
    match fsio::read_limited(&file, MAX_DEVICE_HEADER_LEN) {
        Ok(Some(bytes)) => DeviceHeader::decode(&bytes).map(Some).map_err(|e| damaged(e.to_string())),
        Ok(None) => Ok(None),
        Err(fsio::ReadLimitedError::Io(e)) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
        Err(fsio::ReadLimitedError::Io(e)) => Err(SeedError::io("read", &file, e)),
        Err(e) => Err(damaged(e.to_string())),
    }
}

/// Reads a device's header, which must be there: `NotADevice` if it is not.
pub(crate) fn require_header(path: &Path) -> Result<DeviceHeader, SeedError> {
    read_device_header(path)?.ok_or_else(|| SeedError::NotADevice { path: path.to_path_buf() })
}

/// The headers of `paths` (at least one), each present and verifying with `key`
/// (`DeviceKeyInvalid` naming the device and the job its header names).
pub(crate) fn verified_headers(paths: &[PathBuf], key: &DiskKey) -> Result<Vec<(PathBuf, DeviceHeader)>, SeedError> {
    if paths.is_empty() {
        return Err(SeedError::InvalidInput { reason: "no devices given".into() });
    }
    let mut found = Vec::with_capacity(paths.len());
    for path in paths {
        found.push((path.clone(), require_header(path)?));
    }
    for (path, h) in &found {
        if !h.verify(key) {
            return Err(SeedError::DeviceKeyInvalid { path: path.clone(), device: h.device_number, job: h.job.clone() });
        }
    }
    Ok(found)
}

/// Initialises a device: writes `header` into `path` (an existing folder, e.g. the device's
/// mount point) and creates the object folder. Returns `true` if it wrote the header, `false`
/// if the device already had a header of the same job, set id and device number (a rerun:
/// nothing is rewritten).
///
/// Refused: a header of anything else (`ForeignDevice`, naming its job and device number: erase
/// it with `ferry device erase` of that job first), a damaged header (`DeviceHeaderDamaged`),
/// other files in `path` but `lost+found` (`DeviceNotEmpty`), a header whose fields are not
/// valid (`InvalidInput`).
///
/// Order: `FERRY-DEVICE/`, then `device.json` (temporary file, fsync, rename, fsync of the
/// folder), then `FERRY-DEVICE/repo/`. A crash before the header is in place leaves at most a
/// `FERRY-DEVICE/` with temporary files, which a rerun treats as empty; after it, a rerun
/// finds its own header and completes the folder.
pub fn prepare_device(path: &Path, header: &DeviceHeader) -> Result<bool, SeedError> {
    header.check().map_err(|e| SeedError::InvalidInput { reason: format!("device header: {e}") })?;
    let meta = std::fs::metadata(path).map_err(|e| SeedError::io("open device folder", path, e))?;
    if !meta.is_dir() {
        return Err(SeedError::io("open device folder", path, std::io::Error::other("not a folder")));
    }
    let dir = path.join(DEVICE_DIR);
    match read_device_header(path)? {
        Some(found) if found.job == header.job && found.set_id == header.set_id && found.device_number == header.device_number => {
            fsio::ensure_dir(&dir.join(REPO_DIR))?;
            return Ok(false);
        }
        Some(found) => {
            let what = if found.job == header.job {
                format!("device {} of another device set (set {}) of job {}", found.device_number, hex::encode(found.set_id), found.job)
            } else {
                format!("device {} of job {}", found.device_number, found.job)
            };
            return Err(SeedError::ForeignDevice {
                path: path.to_path_buf(),
                reason: format!("holds {what}: erase it first with `ferry device erase` of that job"),
                job: found.job,
                device: found.device_number,
            });
        }
        None => {}
    }
    if !is_empty_device(path)? {
        return Err(SeedError::DeviceNotEmpty { path: path.to_path_buf() });
    }
    fsio::ensure_dir(&dir)?;
    // The header MUST be durable before anything else is created in the folder: it is what
    // makes the device this job's on a rerun.
    fsio::atomic_write(&dir, HEADER_FILE, &header.encode())?;
    fsio::ensure_dir(&dir.join(REPO_DIR))?;
    Ok(true)
}

/// Is the folder empty but for `lost+found` and a `FERRY-DEVICE/` holding only empty folders
/// and temporary files of its own (a crash before the header was in place)?
fn is_empty_device(path: &Path) -> Result<bool, SeedError> {
    let entries = std::fs::read_dir(path).map_err(|e| SeedError::io("list", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SeedError::io("list", path, e))?;
        let name = entry.file_name();
        if name == "lost+found" {
            continue;
        }
        if name == DEVICE_DIR && entry.file_type().map_err(|e| SeedError::io("stat", &entry.path(), e))?.is_dir() {
            let files = walk(&entry.path())?;
            if files.iter().all(|f| f.kind == Kind::File && !f.rel.contains('/') && f.rel.ends_with(TMP_SUFFIX)) {
                continue;
            }
        }
        return Ok(false);
    }
    Ok(true)
}

/// What a walked entry is (symbolic links are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    /// A symbolic link, socket, device node, ...
    Other,
}

/// One file under a walked folder.
#[derive(Debug, Clone)]
pub(crate) struct Walked {
    /// The path relative to the walked folder, `/`-separated (lossy for non-UTF-8 names).
    pub rel: String,
    pub path: PathBuf,
    pub kind: Kind,
    pub len: u64,
}

/// Every entry under `dir` that is not a folder, recursively, sorted by relative path; folders
/// are descended into, symbolic links are listed, not followed. A missing `dir` has none.
pub(crate) fn walk(dir: &Path) -> Result<Vec<Walked>, SeedError> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && folder == dir => return Ok(out),
            Err(e) => return Err(SeedError::io("list", &folder, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| SeedError::io("list", &folder, e))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| SeedError::io("stat", &path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if meta.is_dir() {
                stack.push((path, rel));
            } else {
                let kind = if meta.is_file() { Kind::File } else { Kind::Other };
                out.push(Walked { rel, path, kind, len: meta.len() });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Every header names `job`: else `ForeignDevice` ("belongs to job X (device N), not to job
/// JOB: leave it out" and what `also` adds for that header).
pub(crate) fn check_job(found: &[(PathBuf, DeviceHeader)], job: &str, also: impl Fn(&DeviceHeader) -> String) -> Result<(), SeedError> {
    match found.iter().find(|(_, h)| h.job != job) {
        Some((path, h)) => Err(SeedError::ForeignDevice {
            path: path.clone(),
            job: h.job.clone(),
            device: h.device_number,
            reason: format!("belongs to job {} (device {}), not to job {job}: leave it out{}", h.job, h.device_number, also(h)),
        }),
        None => Ok(()),
    }
}

/// All headers carry the set most of them carry, which is returned: else `ForeignDevice` naming
/// the other set, with `also` after "leave it out".
pub(crate) fn check_one_set(found: &[(PathBuf, DeviceHeader)], job: &str, also: &str) -> Result<[u8; 16], SeedError> {
    let set_id = majority_set(found.iter().map(|(_, h)| h));
    match found.iter().find(|(_, h)| h.set_id != set_id) {
        Some((path, h)) => Err(SeedError::ForeignDevice {
            path: path.clone(),
            job: h.job.clone(),
            device: h.device_number,
            reason: format!(
                "is device {} of another device set (set {}) of job {job}, not of set {}: leave it out{also}",
                h.device_number,
                hex::encode(h.set_id),
                hex::encode(set_id)
            ),
        }),
        None => Ok(set_id),
    }
}

/// The set id most of the headers carry (the first one's on a tie).
fn majority_set<'a>(headers: impl Iterator<Item = &'a DeviceHeader>) -> [u8; 16] {
    let mut counts: Vec<([u8; 16], usize)> = Vec::new();
    for h in headers {
        match counts.iter_mut().find(|(id, _)| *id == h.set_id) {
            Some((_, n)) => *n += 1,
            None => counts.push((h.set_id, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    counts.into_iter().find(|(_, n)| *n == best).map(|(id, _)| id).unwrap_or_default()
}

/// Checks that no folder is given twice (under two paths) and no device number twice.
pub(crate) fn check_distinct(devices: &[(PathBuf, DeviceHeader)]) -> Result<(), SeedError> {
    let mut folders: HashMap<PathBuf, &PathBuf> = HashMap::new();
    let mut numbers: HashMap<u32, &PathBuf> = HashMap::new();
    for (path, header) in devices {
        let canonical = std::fs::canonicalize(path).map_err(|e| SeedError::io("resolve", path, e))?;
        if let Some(first) = folders.insert(canonical, path) {
            return Err(SeedError::DuplicateDisk { number: header.device_number, first: first.clone(), second: path.clone() });
        }
        if let Some(first) = numbers.insert(header.device_number, path) {
            return Err(SeedError::DuplicateDisk { number: header.device_number, first: first.clone(), second: path.clone() });
        }
    }
    Ok(())
}

/// `PATH` of a device's file, for messages: `FERRY-DEVICE/<rel>`.
pub(crate) fn shown(rel: &str) -> String {
    format!("{DEVICE_DIR}/{rel}")
}
