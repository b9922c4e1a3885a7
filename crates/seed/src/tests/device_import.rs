//! Seed devices end to end: the agent writes and seals two devices, the vault opens them as a
//! `DeviceSet` and reads every object back; every kind of tampering after the sealing is
//! detected and named; devices are erased.

use std::collections::BTreeMap;

use super::device::{devices, header, open, pack, DJOB, SET_ID};
use super::*;
use crate::device::{DEVICE_DIR, HEADER_FILE, REPO_DIR, SEAL_FILE};
use crate::{erase_device, DeviceSet, Erasure, Seal};

const SEALED: &str = "2026-12-03T18:30:00Z";

/// Two devices of about 1.9 MB of room written by an agent and sealed: packs (one over 1 MiB, written
/// directly), index files, a pack list, a recovery point and an object whose key has every
/// punctuation keys may have. Returns the key, the devices, what was written and the seal.
fn sealed_pair(root: &Path) -> (DiskKey, Vec<PathBuf>, BTreeMap<String, Vec<u8>>, Seal) {
    let key = DiskKey::random();
    let paths = devices(root, &key, 2, 3_000_000);
    let store = open(&paths, &key).unwrap();
    let mut content = BTreeMap::new();
    let mut objects: Vec<(String, Bytes)> =
        [MIB + 5, 700 * KIB, 600 * KIB, 300 * KIB, 1].iter().enumerate().map(|(i, n)| pack(*n, i as u64)).collect();
    for i in 0..2 {
        let data = bytes(2000 + i, 50 + i as u64);
        objects.push((format!("index/{}", blake3::hash(&data).to_hex()), Bytes::from(data)));
    }
    let rp = bytes(1234, 77);
    objects.push((format!("recovery-points/{}", blake3::hash(&rp).to_hex()), Bytes::from(rp)));
    objects.push((format!("packlists/{}", "cd".repeat(32)), Bytes::new()));
    objects.push(("odd/a=b+c,d@e~f:g".into(), Bytes::from_static(b"punctuation")));
    for (k, v) in objects {
        assert!(store.put_if_absent(&k, v.clone()).unwrap(), "{k}");
        content.insert(k, v.to_vec());
    }
    let seal = store.seal(SEALED).unwrap();
    assert!(store.put_if_absent("index/late", Bytes::from_static(b"x")).is_err(), "no writes after sealing");
    (key, paths, content, seal)
}

/// A copy of the sealed devices to damage.
fn copies(root: &Path, paths: &[PathBuf], name: &str) -> Vec<PathBuf> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let c = root.join(name).join(format!("dev{}", i + 1));
            copy_dir(p, &c);
            c
        })
        .collect()
}

fn repo(device: &Path) -> PathBuf {
    device.join(DEVICE_DIR).join(REPO_DIR)
}

/// The device an object of the seal is on, and its file.
fn file_of(seal: &Seal, paths: &[PathBuf], key: &str) -> (u32, PathBuf) {
    let e = seal.entries.iter().find(|e| e.key == key).unwrap();
    (e.device, repo(&paths[e.device as usize - 1]).join(key))
}

fn tampered(e: &SeedError) -> (&Path, u32, &str, &str) {
    match e {
        SeedError::Tampered { path, device, file, reason } => (path, *device, file, reason),
        other => panic!("not tampered: {other}"),
    }
}

#[test]
fn sealed_devices_import_every_object() {
    let root = tempfile::tempdir().unwrap();
    let (key, paths, content, seal) = sealed_pair(root.path());
    assert_eq!((seal.job.as_str(), seal.set_id, seal.device_count, seal.sealed.as_str()), (DJOB, SET_ID, 2, SEALED));
    assert_eq!(seal.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), content.keys().cloned().collect::<Vec<_>>());
    assert!(seal.entries.iter().any(|e| e.device == 1) && seal.entries.iter().any(|e| e.device == 2), "{:?}", seal.entries);
    let digest = ferry_api::seed_digest(
        content.iter().map(|(k, v)| (k.clone(), ferry_crypto::content_hash(v))).collect::<Vec<_>>().iter().map(|(k, h)| (k.as_str(), h)),
    );
    assert_eq!(seal.digest(), digest);
    for p in &paths {
        assert!(p.join(DEVICE_DIR).join(SEAL_FILE).is_file());
        assert!(!p.join(DEVICE_DIR).join("seal.bin.tmp").exists());
    }
    // Given in any order.
    let set = DeviceSet::open(&[paths[1].clone(), paths[0].clone()], DJOB, &key).unwrap();
    assert_eq!(set.seal(), &seal);
    assert_eq!(set.device_count(), 2);
    assert_eq!(set.header(2), Some(&header(&key, 2, 3_000_000)));
    assert_eq!(set.header(3), None);
    assert_eq!(set.device_path(1), Some(paths[0].as_path()));
    let mut buf = vec![1, 2, 3];
    for e in &set.seal().entries {
        set.read_object(e, &mut buf).unwrap();
        assert_eq!(&buf, &content[&e.key], "{}", e.key);
    }
    let mut forged = seal.entries[0].clone();
    forged.hash = [0; 32];
    assert!(matches!(set.read_object(&forged, &mut buf), Err(SeedError::InvalidInput { .. })));
    // A sealed device is not written again.
    let e = open(&paths, &key).unwrap_err();
    assert!(matches!(e, SeedError::AlreadySealed { device: 1, .. }), "{e}");
}

#[test]
fn changed_bytes_are_found_when_read() {
    let root = tempfile::tempdir().unwrap();
    let (key, paths, content, seal) = sealed_pair(&root.path().join("a"));
    for (name, k) in [
        ("pack", content.keys().find(|k| k.starts_with("data/") && content[*k].len() > MIB).unwrap().clone()),
        ("odd", "odd/a=b+c,d@e~f:g".to_string()),
    ] {
        let c = copies(root.path(), &paths, name);
        let (device, file) = file_of(&seal, &c, &k);
        let mut data = std::fs::read(&file).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0x20;
        std::fs::write(&file, &data).unwrap();
        // Same size: the set opens, the object does not read.
        let set = DeviceSet::open(&c, DJOB, &key).unwrap();
        let entry = set.seal().entries.iter().find(|e| e.key == k).unwrap().clone();
        let mut buf = Vec::new();
        let e = set.read_object(&entry, &mut buf).unwrap_err();
        let (path, d, f, reason) = tampered(&e);
        assert_eq!((path, d, f), (c[device as usize - 1].as_path(), device, format!("FERRY-DEVICE/repo/{k}").as_str()));
        assert_eq!(reason, "its bytes changed since the device was sealed");
        assert!(buf.is_empty());
        for other in set.seal().entries.iter().filter(|e| e.key != k) {
            set.read_object(other, &mut buf).unwrap();
        }
    }
}

#[test]
fn files_added_removed_or_resized_are_named() {
    let root = tempfile::tempdir().unwrap();
    let (key, paths, content, seal) = sealed_pair(&root.path().join("a"));
    let index = content.keys().find(|k| k.starts_with("index/")).unwrap().clone();
    type Damage<'a> = Box<dyn Fn(&[PathBuf]) -> (usize, &'a str, String) + 'a>;
    let index_ref = &index;
    let seal_ref = &seal;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "added object",
            Box::new(|c: &[PathBuf]| {
                let f = repo(&c[0]).join("data/zz/extra");
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(&f, b"more").unwrap();
                (0, "FERRY-DEVICE/repo/data/zz/extra", "added since the device was sealed".into())
            }),
        ),
        (
            "added file beside the objects",
            Box::new(|c: &[PathBuf]| {
                std::fs::write(c[1].join(DEVICE_DIR).join("notes.txt"), b"hi").unwrap();
                (1, "FERRY-DEVICE/notes.txt", "added since the device was sealed".into())
            }),
        ),
        (
            "removed object",
            Box::new(move |c: &[PathBuf]| {
                let (d, f) = file_of(seal_ref, c, index_ref);
                std::fs::remove_file(f).unwrap();
                (d as usize - 1, "", "removed since the device was sealed".into())
            }),
        ),
        (
            "truncated object",
            Box::new(move |c: &[PathBuf]| {
                let (d, f) = file_of(seal_ref, c, index_ref);
                let len = std::fs::metadata(&f).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len - 1).unwrap();
                (d as usize - 1, "", format!("changed since the device was sealed ({} bytes, sealed with {len})", len - 1))
            }),
        ),
        (
            "object replaced by a link",
            Box::new(move |c: &[PathBuf]| {
                let (d, f) = file_of(seal_ref, c, index_ref);
                let elsewhere = f.with_extension("elsewhere");
                std::fs::rename(&f, &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &f).unwrap();
                (d as usize - 1, "", "replaced by a link or special file since the device was sealed".into())
            }),
        ),
    ];
    for (i, (what, damage)) in cases.iter().enumerate() {
        let c = copies(root.path(), &paths, &format!("case{i}"));
        let (at, file, reason) = damage(&c);
        let e = DeviceSet::open(&c, DJOB, &key).unwrap_err();
        let (path, device, f, r) = tampered(&e);
        let want_file = if file.is_empty() { format!("FERRY-DEVICE/repo/{index}") } else { file.to_string() };
        let got = (path, device, f, r);
        assert!(
            got.0 == c[at] && got.1 == at as u32 + 1 && (got.2 == want_file || what.contains("link")) && got.3 == reason,
            "{what}: {e}"
        );
        assert!(e.to_string().contains("the device was altered or damaged after it was sealed"), "{e}");
        assert_eq!(e.disk(), Some(at as u32 + 1));
    }
}

#[test]
fn seals_headers_and_devices_are_checked() {
    let root = tempfile::tempdir().unwrap();
    let (key, paths, _, _) = sealed_pair(&root.path().join("a"));
    // Device 1's seal copied over device 2's.
    let c = copies(root.path(), &paths, "copied-seal");
    std::fs::copy(c[0].join(DEVICE_DIR).join(SEAL_FILE), c[1].join(DEVICE_DIR).join(SEAL_FILE)).unwrap();
    let e = DeviceSet::open(&c, DJOB, &key).unwrap_err();
    let (path, device, file, reason) = tampered(&e);
    assert_eq!((path, device, file), (c[1].as_path(), 2, "FERRY-DEVICE/seal.bin"));
    assert!(reason.contains("authentication failed"), "{e}");
    // A seal flipped; a seal removed.
    let c = copies(root.path(), &paths, "flipped-seal");
    let f = c[0].join(DEVICE_DIR).join(SEAL_FILE);
    let mut b = std::fs::read(&f).unwrap();
    b[40] ^= 1;
    std::fs::write(&f, b).unwrap();
    assert!(matches!(DeviceSet::open(&c, DJOB, &key), Err(SeedError::Tampered { device: 1, .. })));
    std::fs::remove_file(c[1].join(DEVICE_DIR).join(SEAL_FILE)).unwrap();
    let e = DeviceSet::open(&c, DJOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::NotSealed { device: 2, path, .. } if path == &c[1]), "{e}");
    assert_eq!(e.disk(), Some(2));
    // A header edited.
    let c = copies(root.path(), &paths, "edited-header");
    let h = c[1].join(DEVICE_DIR).join(HEADER_FILE);
    std::fs::write(&h, std::fs::read_to_string(&h).unwrap().replace("\"capacity\": 3000000", "\"capacity\": 9000000")).unwrap();
    let e = DeviceSet::open(&c, DJOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::DeviceKeyInvalid { device: 2, path, .. } if path == &c[1]), "{e}");
    // A device missing; the same device twice; another job; another key; no device.
    let e = DeviceSet::open(&paths[..1], DJOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::MissingDisks { numbers, count: 2 } if numbers == &[2]), "{e}");
    let e = DeviceSet::open(&[paths[0].clone(), paths[1].clone(), paths[1].join(".")], DJOB, &key).unwrap_err();
    assert!(matches!(e, SeedError::DuplicateDisk { number: 2, .. }), "{e}");
    let c = copies(root.path(), &paths, "copy");
    let e = DeviceSet::open(&[paths[0].clone(), paths[1].clone(), c[1].clone()], DJOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::DuplicateDisk { number: 2, second, .. } if second == &c[1]), "{e}");
    let e = DeviceSet::open(&paths, "job-2", &key).unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDevice { job, device: 1, .. } if job == DJOB), "{e}");
    let e = DeviceSet::open(&paths, DJOB, &DiskKey::random()).unwrap_err();
    assert!(matches!(e, SeedError::DeviceKeyInvalid { device: 1, .. }), "{e}");
    let e = DeviceSet::open(&[paths[0].clone(), root.path().to_path_buf()], DJOB, &key).unwrap_err();
    assert!(matches!(e, SeedError::NotADevice { .. }), "{e}");
    // An unsealed device of the set.
    let unsealed = root.path().join("unsealed");
    let d = devices(&unsealed, &key, 1, 0);
    let e = DeviceSet::open(&d, DJOB, &key).unwrap_err();
    assert!(matches!(e, SeedError::NotSealed { device: 1, .. }), "{e}");
    assert!(e.to_string().contains("the agent's backup did not finish"), "{e}");
}

#[test]
fn sealing_refuses_locks_strays_and_gaps_and_drops_leftovers() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    let paths = devices(root.path(), &key, 3, 0);
    let (k, v) = pack(5000, 1);
    // The same object written by a run with device 1 and by one with device 2 only.
    assert!(open(&paths[..1], &key).unwrap().put_if_absent(&k, v.clone()).unwrap());
    assert!(open(&paths[1..2], &key).unwrap().put_if_absent(&k, v.clone()).unwrap());
    let store = open(&paths, &key).unwrap();
    store.put("locks/l1", Bytes::from_static(b"{}")).unwrap();
    let e = store.seal(SEALED).unwrap_err();
    assert!(matches!(&e, SeedError::InvalidInput { reason } if reason.contains("lock locks/l1")), "{e}");
    store.delete("locks/l1").unwrap();
    // Devices 1 and 3 without 2.
    let gap = open(&[paths[0].clone(), paths[2].clone()], &key).unwrap();
    let e = gap.seal(SEALED).unwrap_err();
    assert!(e.to_string().contains("device(s) 2 of job device-job-1 not given"), "{e}");
    assert!(matches!(store.seal("tomorrow"), Err(SeedError::InvalidInput { .. })));
    // A stray file is refused; the store's and our own leftovers are deleted.
    let stray = paths[2].join(DEVICE_DIR).join("stray");
    std::fs::write(&stray, b"?").unwrap();
    let e = store.seal(SEALED).unwrap_err();
    assert!(e.to_string().contains("FERRY-DEVICE/stray is not an object of the backup"), "{e}");
    std::fs::remove_file(&stray).unwrap();
    let staging = repo(&paths[0]).join(format!("{k}#1"));
    std::fs::write(&staging, b"half").unwrap();
    let tmp = paths[1].join(DEVICE_DIR).join("seal.bin.tmp");
    std::fs::write(&tmp, b"half").unwrap();
    assert!(paths.iter().all(|p| !p.join(DEVICE_DIR).join(SEAL_FILE).exists()), "nothing sealed by a refused seal");
    let seal = store.seal(SEALED).unwrap();
    assert!(!staging.exists());
    assert_eq!(seal.device_count, 3);
    assert_eq!(seal.entries.len(), 1);
    assert_eq!(seal.entries[0].device, 1, "the first copy is kept");
    assert!(!repo(&paths[1]).join(&k).exists(), "the second copy is removed");
    let set = DeviceSet::open(&paths, DJOB, &key).unwrap();
    let mut buf = Vec::new();
    set.read_object(&set.seal().entries[0], &mut buf).unwrap();
    assert_eq!(buf, v);
}

#[test]
fn erase_overwrites_and_removes_everything() {
    let root = tempfile::tempdir().unwrap();
    let (key, paths, _, _) = sealed_pair(root.path());
    let files =
        |p: &Path| -> (u64, u64) { crate::device::walk(&p.join(DEVICE_DIR)).unwrap().iter().fold((0, 0), |(n, b), f| (n + 1, b + f.len)) };
    let (n, b) = files(&paths[0]);
    assert!(n >= 4, "{n}");
    // Another key, another job: refused, nothing touched.
    let e = erase_device(&paths[0], &DiskKey::random(), DJOB).unwrap_err();
    assert!(matches!(e, SeedError::DeviceKeyInvalid { device: 1, .. }), "{e}");
    let e = erase_device(&paths[0], &key, "job-2").unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDevice { job, .. } if job == DJOB), "{e}");
    assert_eq!(files(&paths[0]), (n, b));
    assert_eq!(erase_device(&paths[0], &key, DJOB).unwrap(), Erasure { files: n, bytes: b });
    assert!(!paths[0].join(DEVICE_DIR).exists());
    assert_eq!(std::fs::read_dir(&paths[0]).unwrap().count(), 0);
    assert_eq!(erase_device(&paths[0], &key, DJOB).unwrap(), Erasure::default(), "nothing left to erase");
    // A killed erase: everything but the header gone.
    for f in crate::device::walk(&paths[1].join(DEVICE_DIR)).unwrap() {
        if f.rel != HEADER_FILE {
            std::fs::remove_file(&f.path).unwrap();
        }
    }
    let len = std::fs::metadata(paths[1].join(DEVICE_DIR).join(HEADER_FILE)).unwrap().len();
    assert_eq!(erase_device(&paths[1], &key, DJOB).unwrap(), Erasure { files: 1, bytes: len });
    assert!(!paths[1].join(DEVICE_DIR).exists());
    // Killed after the header was overwritten: only an unreadable header is left.
    let d = root.path().join("overwritten");
    std::fs::create_dir_all(d.join(DEVICE_DIR).join(REPO_DIR).join("data")).unwrap();
    std::fs::write(d.join(DEVICE_DIR).join(HEADER_FILE), bytes(300, 5)).unwrap();
    assert_eq!(erase_device(&d, &key, DJOB).unwrap(), Erasure { files: 1, bytes: 300 });
    assert!(!d.join(DEVICE_DIR).exists());
    // Files without a header, or with a damaged header beside them: not erased.
    std::fs::create_dir_all(d.join(DEVICE_DIR)).unwrap();
    std::fs::write(d.join(DEVICE_DIR).join("x"), b"x").unwrap();
    assert!(matches!(erase_device(&d, &key, DJOB), Err(SeedError::NotADevice { .. })));
    std::fs::write(d.join(DEVICE_DIR).join(HEADER_FILE), b"{").unwrap();
    assert!(matches!(erase_device(&d, &key, DJOB), Err(SeedError::DeviceHeaderDamaged { .. })));
    assert!(d.join(DEVICE_DIR).join("x").exists());
}
