//! End-to-end tests of `prepare` and `DiskSet` on real folders (tempdirs), with a staging
//! location in memory; and of seed devices (`device.rs`, `device_import.rs`).

mod device;
mod device_import;
mod diskprep;
mod export_disks;
mod import_run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferry_store::{MemoryStore, Store};
use ferry_testkit::bytes;

use crate::fsio::{OBJECTS_DIR, SEED_DIR};
use crate::{prepare, DiskKey, DiskSet, DiskTarget, PrepareOptions, PrepareOutcome, SeedError, SourceObject};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Room for three disks of this size is needed by `staging()`'s objects (see `spanning`).
const DISK: u64 = 2 * MIB as u64;
const JOB: &str = "job-1";

/// A staging location: packs named by their hash (one over 1 MiB, several frames), index
/// files, a pack list, config, a key, an empty object and a recovery point.
struct Staging {
    store: MemoryStore,
    objects: Vec<SourceObject>,
    content: BTreeMap<String, Vec<u8>>,
}

impl Staging {
    fn new() -> Staging {
        let mut s = Staging { store: MemoryStore::new(), objects: Vec::new(), content: BTreeMap::new() };
        for (i, size) in [MIB + MIB / 2, MIB, 700 * KIB, 500 * KIB, 300 * KIB, 200 * KIB, 100 * KIB, MIB - 1].into_iter().enumerate() {
            let data = bytes(size, i as u64 + 1);
            let h = blake3::hash(&data).to_hex();
            s.add(&format!("data/{}/{h}", &h[..2]), data, 0);
        }
        for i in 0..3 {
            let data = bytes(3000 + i, 100 + i as u64);
            s.add(&format!("index/{}", blake3::hash(&data).to_hex()), data, 1);
        }
        s.add("config", b"{\"magic\":\"ferry-config\"}".to_vec(), 1);
        s.add(&format!("keys/{}", "ab".repeat(32)), bytes(500, 7), 1);
        s.add(&format!("packlists/{}", "cd".repeat(32)), Vec::new(), 1);
        let rp = bytes(1234, 9);
        s.add(&format!("recovery-points/{}", blake3::hash(&rp).to_hex()), rp, 2);
        s
    }

    fn add(&mut self, key: &str, data: Vec<u8>, phase: u8) {
        self.store.put(key, Bytes::from(data.clone())).unwrap();
        self.objects.push(SourceObject { key: key.into(), size: data.len() as u64, phase });
        self.content.insert(key.into(), data);
    }

    fn total(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// `n` empty disk folders.
fn disks(root: &Path, n: usize) -> Vec<PathBuf> {
    (1..=n)
        .map(|i| {
            let p = root.join(format!("d{i}"));
            std::fs::create_dir_all(&p).unwrap();
            p
        })
        .collect()
}

fn targets(paths: &[PathBuf], capacity: u64) -> Vec<DiskTarget> {
    paths.iter().map(|p| DiskTarget { path: p.clone(), capacity: Some(capacity) }).collect()
}

/// Runs prepare, refusing every wipe, and checking progress never goes backwards.
fn run(staging: &Staging, key: &DiskKey, targets: Vec<DiskTarget>) -> Result<PrepareOutcome, SeedError> {
    run_with(staging, key, targets, &mut |_, _| false)
}

fn run_with(
    staging: &Staging,
    key: &DiskKey,
    targets: Vec<DiskTarget>,
    confirm: &mut dyn FnMut(&Path, &str) -> bool,
) -> Result<PrepareOutcome, SeedError> {
    let total = staging.total();
    let mut last = 0;
    let mut progress = |done: u64, all: u64| {
        assert_eq!(all, total);
        assert!(done >= last && done <= total, "{done} after {last} of {total}");
        last = done;
    };
    let opts = PrepareOptions { job: JOB.into(), key, disks: targets, confirm_wipe: confirm, progress: &mut progress };
    prepare(&staging.store, &staging.objects, opts)
}

/// Reads every object of the set and compares it with the staging location.
fn check_all(set: &DiskSet, staging: &Staging) {
    let m = set.manifest();
    assert_eq!(m.entries.len(), staging.objects.len());
    let mut buf = Vec::new();
    for e in &m.entries {
        set.read_object(e, &mut buf).unwrap();
        assert_eq!(&buf, &staging.content[&e.key], "{}", e.key);
    }
    let digest = ferry_api::seed_digest(
        staging
            .content
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .map(|(k, v)| (k, ferry_crypto::content_hash(v)))
            .collect::<Vec<_>>()
            .iter()
            .map(|(k, h)| (*k, h)),
    );
    assert_eq!(m.digest(), digest);
}

/// The files in a disk's `objects/` folder.
fn object_files(disk: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(disk.join(SEED_DIR).join(OBJECTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A prepared set of three disks.
fn prepared(root: &Path) -> (Staging, DiskKey, Vec<PathBuf>) {
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root, 3);
    match run(&staging, &key, targets(&paths, DISK)).unwrap() {
        PrepareOutcome::Complete(s) => assert_eq!(s.disks.len(), 3),
        other => panic!("{other:?}"),
    }
    (staging, key, paths)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
