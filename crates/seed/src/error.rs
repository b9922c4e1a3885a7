//! What can go wrong preparing or importing seed disks, each error naming the disk, the disk
//! number and the object it concerns, and saying what to do next.

use std::path::{Path, PathBuf};

use crate::MAX_DISKS;

/// A failed `prepare` or import step. Variants carry the disk path and number and the object key
/// where they apply, so the vault can set per-disk states ([`SeedError::disk`]) and the CLI can
/// print one precise line.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The folder has no seed label.
    #[error("{}: not a Ferry seed disk (no FERRY-SEED/label.json): check the path, or mount the right disk", .path.display())]
    NotASeedDisk { path: PathBuf },

    /// The label exists but cannot be read.
    #[error("disk {}: its label FERRY-SEED/label.json is damaged ({reason}): the disk was altered or damaged; leave it out and report it", .path.display())]
    LabelDamaged { path: PathBuf, reason: String },

    /// The disk belongs to another import job, or to another disk set of this job.
    #[error("disk {} belongs to {detail}, not to import job {expected_job}: leave it out, or (diskprep) let it be wiped with --yes", .path.display())]
    ForeignDisk { path: PathBuf, job: String, expected_job: String, detail: String },

    /// diskprep was given a folder with files in it that is not a seed disk.
    #[error("disk {} is not empty and is not a seed disk of import job {job}: use an empty disk, or let diskprep wipe it (--yes)", .path.display())]
    NotEmpty { path: PathBuf, job: String },

    /// Two paths are the same disk (the same folder, or two disks labeled with one number).
    #[error("{}", duplicate_message(*.number, .first, .second))]
    DuplicateDisk { number: u32, first: PathBuf, second: PathBuf },

    /// Disks of the set were not given.
    #[error("{}", missing_message(.numbers, *.count))]
    MissingDisks { numbers: Vec<u32>, count: u32 },

    /// The set's labels carry no disk count: diskprep did not finish.
    #[error("disk {} (disk {disk} of import job {job}): the disk set is incomplete (diskprep did not finish): run diskprep again with all its disks", .path.display())]
    Incomplete { path: PathBuf, disk: u32, job: String },

    /// The label's MAC does not verify with the job's disk key.
    #[error("disk {} (disk {disk} of import job {job}): the disk key is invalid: its label does not verify with the job's disk key (the label was altered, or the disk belongs to an earlier job of the same name)", .path.display())]
    KeyInvalid { path: PathBuf, disk: u32, job: String },

    /// The manifest is missing, fails authentication, is malformed or differs between disks.
    #[error("disk {} (disk {disk}): manifest error: {reason}", .path.display())]
    ManifestError { path: PathBuf, disk: u32, reason: String },

    /// A resumed diskprep found a disk's journal damaged before its end.
    #[error("disk {} (disk {disk}): its journal FERRY-SEED/journal.bin is damaged ({reason}): the disk was altered; remove its FERRY-SEED folder and prepare the set again", .path.display())]
    JournalDamaged { path: PathBuf, disk: u32, reason: String },

    /// An object on a disk does not read back as recorded.
    #[error("{}: object {key} (file {file}): {reason}", disk_ref(.path, *.disk, *.count, .job))]
    Corrupted { path: PathBuf, disk: u32, count: u32, job: String, key: String, file: String, reason: String },

    /// An object is larger than the largest disk can take (objects are never split).
    #[error("object {key} ({size} bytes) does not fit on disk {} ({capacity} bytes usable, the largest disk given): objects are never split across disks; use a larger disk", .path.display())]
    ObjectTooLarge { key: String, size: u64, path: PathBuf, capacity: u64 },

    /// More disks than one job may have.
    #[error("{count} disks: an import job has at most {MAX_DISKS} disks; use larger disks")]
    TooManyDisks { count: u32 },

    /// More data than one machine may seed.
    #[error("{bytes} bytes to seed: more than the {} bytes one machine may seed by disk; send part of it online", crate::MAX_SEED_BYTES)]
    SeedTooLarge { bytes: u64 },

    /// The set was completed before, without objects the staging location now holds.
    #[error("the disk set of import job {job} is complete, but {objects} objects ({bytes} bytes) of the staging location are not on it: the staging location changed after diskprep finished; ship the set as it is, or start over on wiped disks")]
    AlreadyComplete { job: String, objects: u64, bytes: u64 },

    /// A staging object is not what its name or the disks say it is.
    #[error("staging object {key}: {reason}")]
    SourceMismatch { key: String, reason: String },

    /// The caller passed something unusable (empty job name, duplicate object keys, ...).
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },

    /// A disk key that is not 64 hex digits.
    #[error("invalid disk key: {reason}")]
    BadDiskKey { reason: String },

    /// The folder holds no seed device (the Data Box workflow: `FERRY-DEVICE/`).
    #[error("{} is not a Ferry seed device (no FERRY-DEVICE/device.json): check the path", .path.display())]
    NotADevice { path: PathBuf },

    /// A device's header exists but cannot be read.
    #[error("device {}: its header FERRY-DEVICE/device.json is damaged ({reason}): the device was altered or damaged; leave it out and report it", .path.display())]
    DeviceHeaderDamaged { path: PathBuf, reason: String },

    /// A device to prepare holds other files.
    #[error("{} is not empty and is not a Ferry seed device: use an empty disk or folder (only lost+found may be there), or move its files away first", .path.display())]
    DeviceNotEmpty { path: PathBuf },

    /// A device's header does not verify with the job's device key (the unlock credential).
    #[error("the unlock credential does not open device {} (device {device} of job {job}): use the unlock file of that device's job", .path.display())]
    DeviceKeyInvalid { path: PathBuf, device: u32, job: String },

    /// A device belongs to another job, another device set, or another machine. `job` and
    /// `device` are what its header says; `reason` says what it is and what to do.
    #[error("device {} {reason}", .path.display())]
    ForeignDevice { path: PathBuf, job: String, device: u32, reason: String },

    /// The agent was given a device it sealed already.
    #[error("device {} (device {device} of job {job}) was sealed already: ship it back to the vault (ferry device status)", .path.display())]
    AlreadySealed { path: PathBuf, device: u32, job: String },

    /// The import was given a device without a seal.
    #[error("device {} (device {device} of job {job}) was not sealed: the agent's backup did not finish; run the backup on the machine again with every device of the job until it seals them, then ship them back", .path.display())]
    NotSealed { path: PathBuf, device: u32, job: String },

    /// A sealed device's files differ from its seal, or the seal itself is damaged.
    #[error("device {} (device {device}): {file}: {reason}; the device was altered or damaged after it was sealed: report it, and seed the machine again", .path.display())]
    Tampered { path: PathBuf, device: u32, file: String, reason: String },

    /// A device did not take the overwrite of a secure erase.
    #[error("erase device {}: {file} {reason}: the device did not take the overwrite, so its data may still be on it; physically destroy the device", .path.display())]
    EraseFailed { path: PathBuf, file: String, reason: String },

    /// A file operation failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// Reading the staging location failed.
    #[error("read the staging location: {0}")]
    Store(#[from] ferry_store::StoreError),
}

impl SeedError {
    /// The disk (or device) number the error concerns, when it concerns one numbered disk or
    /// device of the set (for the vault's per-disk states: manifest error, key invalid,
    /// corrupted, not sealed, tampered).
    pub fn disk(&self) -> Option<u32> {
        match self {
            SeedError::Incomplete { disk, .. }
            | SeedError::KeyInvalid { disk, .. }
            | SeedError::ManifestError { disk, .. }
            | SeedError::JournalDamaged { disk, .. }
            | SeedError::Corrupted { disk, .. } => Some(*disk),
            SeedError::DeviceKeyInvalid { device, .. }
            | SeedError::AlreadySealed { device, .. }
            | SeedError::NotSealed { device, .. }
            | SeedError::Tampered { device, .. } => Some(*device),
            SeedError::DuplicateDisk { number, .. } if *number > 0 => Some(*number),
            _ => None,
        }
    }

    /// The disk folder the error concerns, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SeedError::NotASeedDisk { path }
            | SeedError::LabelDamaged { path, .. }
            | SeedError::ForeignDisk { path, .. }
            | SeedError::NotEmpty { path, .. }
            | SeedError::Incomplete { path, .. }
            | SeedError::KeyInvalid { path, .. }
            | SeedError::ManifestError { path, .. }
            | SeedError::JournalDamaged { path, .. }
            | SeedError::Corrupted { path, .. }
            | SeedError::ObjectTooLarge { path, .. }
            | SeedError::NotADevice { path }
            | SeedError::DeviceHeaderDamaged { path, .. }
            | SeedError::DeviceNotEmpty { path }
            | SeedError::DeviceKeyInvalid { path, .. }
            | SeedError::ForeignDevice { path, .. }
            | SeedError::AlreadySealed { path, .. }
            | SeedError::NotSealed { path, .. }
            | SeedError::Tampered { path, .. }
            | SeedError::EraseFailed { path, .. }
            | SeedError::Io { path, .. } => Some(path),
            SeedError::DuplicateDisk { second, .. } => Some(second),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        SeedError::Io { path: path.to_path_buf(), op, source }
    }
}

/// Why a seed-disk structure (label, manifest, journal, object file) could not be decoded: the
/// decoders of outside data return this, and the disk-level code wraps it with the disk and the
/// object into a [`SeedError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskFormatError {
    /// AES-GCM or the MAC did not verify: altered, damaged, or another key.
    #[error("authentication failed: the disk was altered or damaged")]
    Authentication,
    /// A version this build does not know.
    #[error("format version {0} is newer than this ferry supports; upgrade ferry")]
    NewerVersion(u32),
    /// Structurally wrong: bad magic, lengths, values.
    #[error("{0}")]
    Malformed(String),
    /// The bytes could not be read (the disk reported an error).
    #[error("read error: {0}")]
    Read(String),
}

impl DiskFormatError {
    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        DiskFormatError::Malformed(what.into())
    }
}

fn disk_ref(path: &Path, disk: u32, count: u32, job: &str) -> String {
    // An export job's disks are labeled `export:NAME` (ferry_api::export_label_job).
    let job = match job.strip_prefix("export:") {
        Some(name) => format!("export job {name}"),
        None => format!("import job {job}"),
    };
    if count > 0 {
        format!("disk {} (disk {disk} of {count} of {job})", path.display())
    } else {
        format!("disk {} (disk {disk} of {job})", path.display())
    }
}

fn duplicate_message(number: u32, first: &Path, second: &Path) -> String {
    if number > 0 {
        format!(
            "{} and {} are both disk {number} of the set: give each disk once (one is a copy, or the same disk under two paths)",
            first.display(),
            second.display()
        )
    } else {
        format!("{} and {} are the same disk: give each disk once", first.display(), second.display())
    }
}

fn missing_message(numbers: &[u32], count: u32) -> String {
    let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
    let (noun, list) = if numbers.len() == 1 { ("disk", list.join("")) } else { ("disks", list.join(", ")) };
    if count > 0 {
        format!("{noun} {list} of {count} missing: give every disk of the set (--disk for each)")
    } else {
        format!("{noun} {list} of the set prepared so far missing: give every disk of the set (--disk for each)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let e = SeedError::Corrupted {
            path: "/mnt/d2".into(),
            disk: 2,
            count: 3,
            job: "J".into(),
            key: "data/ab/ab12".into(),
            file: "0011223344556677".into(),
            reason: "authentication failed: the disk was altered or damaged".into(),
        };
        assert_eq!(
            e.to_string(),
            "disk /mnt/d2 (disk 2 of 3 of import job J): object data/ab/ab12 (file 0011223344556677): authentication failed: the disk was altered or damaged"
        );
        assert_eq!(e.disk(), Some(2));
        let e = SeedError::Corrupted {
            path: "/mnt/d1".into(),
            disk: 1,
            count: 3,
            job: "export:E".into(),
            key: "k".into(),
            file: "f".into(),
            reason: "r".into(),
        };
        assert_eq!(e.to_string(), "disk /mnt/d1 (disk 1 of 3 of export job E): object k (file f): r");
        let e = SeedError::MissingDisks { numbers: vec![2, 4], count: 5 };
        assert_eq!(e.to_string(), "disks 2, 4 of 5 missing: give every disk of the set (--disk for each)");
        let e = SeedError::MissingDisks { numbers: vec![3], count: 0 };
        assert!(e.to_string().starts_with("disk 3 of the set prepared so far missing"), "{e}");
        let e = SeedError::DuplicateDisk { number: 0, first: "/a".into(), second: "/b".into() };
        assert_eq!(e.disk(), None);
        assert!(e.to_string().contains("the same disk"));
    }

    #[test]
    fn device_messages() {
        let e = SeedError::Tampered {
            path: "/mnt/box".into(),
            device: 2,
            file: "FERRY-DEVICE/repo/index/ab".into(),
            reason: "added since the device was sealed".into(),
        };
        assert_eq!(
            e.to_string(),
            "device /mnt/box (device 2): FERRY-DEVICE/repo/index/ab: added since the device was sealed; the device was altered or damaged after it was sealed: report it, and seed the machine again"
        );
        assert_eq!((e.disk(), e.path()), (Some(2), Some(Path::new("/mnt/box"))));
        let e = SeedError::NotSealed { path: "/mnt/box".into(), device: 3, job: "J".into() };
        assert_eq!(e.disk(), Some(3));
        assert!(e.to_string().starts_with("device /mnt/box (device 3 of job J) was not sealed: the agent's backup did not finish"), "{e}");
        let e = SeedError::DeviceKeyInvalid { path: "/mnt/box".into(), device: 1, job: "J".into() };
        assert_eq!(
            e.to_string(),
            "the unlock credential does not open device /mnt/box (device 1 of job J): use the unlock file of that device's job"
        );
        let e = SeedError::NotADevice { path: "/mnt/x".into() };
        assert_eq!(e.to_string(), "/mnt/x is not a Ferry seed device (no FERRY-DEVICE/device.json): check the path");
        assert_eq!(e.disk(), None);
    }
}
