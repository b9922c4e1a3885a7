//! Seed devices on real folders: `prepare_device`, and `DeviceStore` as the agent's store
//! (the store contract's conformance suite, spilling onto a second device, full devices,
//! refused devices). Sealing, import and erasure are in `device_import.rs`.

use std::sync::Arc;

use ferry_store::{ErrorKind, StoreError};

use super::*;
use crate::device::{DEVICE_DIR, HEADER_FILE, REPO_DIR, SEAL_FILE};
use crate::{prepare_device, read_device_header, DeviceHeader, DeviceStore};

pub(super) const DJOB: &str = "device-job-1";
pub(super) const MACHINE: &str = "m-7f3a";
pub(super) const SET_ID: [u8; 16] = [0x5d; 16];

/// Device `number` of the test job's set, bound to the test machine.
pub(super) fn header(key: &DiskKey, number: u32, capacity: u64) -> DeviceHeader {
    DeviceHeader::new(key, DJOB, MACHINE, "web-1", SET_ID, number, "disk", capacity, "2026-12-01T10:00:00Z")
}

/// `n` prepared devices (folders `dev1`, ...) with the given capacity.
pub(super) fn devices(root: &Path, key: &DiskKey, n: u32, capacity: u64) -> Vec<PathBuf> {
    (1..=n)
        .map(|i| {
            let p = root.join(format!("dev{i}"));
            std::fs::create_dir_all(&p).unwrap();
            assert!(prepare_device(&p, &header(key, i, capacity)).unwrap());
            p
        })
        .collect()
}

/// The machine's vault repository: its config and key, and an object that must never show
/// through the device store.
pub(super) fn vault() -> Arc<MemoryStore> {
    let v = MemoryStore::new();
    v.put("config", Bytes::from_static(b"{\"magic\":\"ferry-config\"}")).unwrap();
    v.put(&format!("keys/{}", "ab".repeat(32)), Bytes::from_static(b"{\"magic\":\"ferry-key\"}")).unwrap();
    v.put("index/0000", Bytes::from_static(b"not for the device")).unwrap();
    Arc::new(v)
}

pub(super) fn open(paths: &[PathBuf], key: &DiskKey) -> Result<DeviceStore, SeedError> {
    DeviceStore::open(paths, key, DJOB, MACHINE, vault())
}

/// A pack named by the BLAKE3 of its bytes.
pub(super) fn pack(len: usize, seed: u64) -> (String, Bytes) {
    let data = bytes(len, seed);
    let h = blake3::hash(&data).to_hex();
    (format!("data/{}/{h}", &h[..2]), Bytes::from(data))
}

fn keys(store: &dyn Store, prefix: &str) -> Vec<String> {
    let mut k: Vec<String> = store.list(prefix).unwrap().into_iter().map(|o| o.key).collect();
    k.sort();
    k
}

#[test]
fn prepare_device_cases() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    let d = root.path().join("d");
    std::fs::create_dir_all(d.join("lost+found")).unwrap();
    assert_eq!(read_device_header(&d).unwrap(), None);
    let h = header(&key, 1, 0);
    assert!(prepare_device(&d, &h).unwrap());
    assert!(d.join(DEVICE_DIR).join(REPO_DIR).is_dir());
    assert_eq!(read_device_header(&d).unwrap().as_ref(), Some(&h));
    let written = std::fs::read(d.join(DEVICE_DIR).join(HEADER_FILE)).unwrap();
    assert_eq!(written, h.encode());
    // A rerun (even with another preparation time) rewrites nothing, and completes the folder.
    std::fs::remove_dir(d.join(DEVICE_DIR).join(REPO_DIR)).unwrap();
    let later = DeviceHeader::new(&key, DJOB, MACHINE, "web-1", SET_ID, 1, "disk", 0, "2026-12-02T10:00:00Z");
    assert!(!prepare_device(&d, &later).unwrap());
    assert_eq!(std::fs::read(d.join(DEVICE_DIR).join(HEADER_FILE)).unwrap(), written);
    assert!(d.join(DEVICE_DIR).join(REPO_DIR).is_dir());
    // Another device number, another set, another job: foreign.
    for (other, want) in [
        (header(&key, 2, 0), "holds device 1 of another device set"),
        (DeviceHeader::new(&key, DJOB, MACHINE, "web-1", [1; 16], 1, "disk", 0, "2026-12-01T10:00:00Z"), "of another device set"),
        (
            DeviceHeader::new(&key, "job-2", MACHINE, "web-1", SET_ID, 1, "disk", 0, "2026-12-01T10:00:00Z"),
            "holds device 1 of job device-job-1",
        ),
    ] {
        let e = prepare_device(&d, &other).unwrap_err();
        assert!(matches!(&e, SeedError::ForeignDevice { job, device: 1, .. } if job == DJOB), "{e}");
        assert!(e.to_string().contains(want) && e.to_string().contains("erase it first with `ferry device erase`"), "{e}");
    }
    // A folder with other files.
    let full = root.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("photo.jpg"), b"x").unwrap();
    let e = prepare_device(&full, &h).unwrap_err();
    assert!(matches!(&e, SeedError::DeviceNotEmpty { path } if path == &full), "{e}");
    // A crash before the header was in place left a temporary file: treated as empty.
    let crashed = root.path().join("crashed");
    std::fs::create_dir_all(crashed.join(DEVICE_DIR)).unwrap();
    std::fs::write(crashed.join(DEVICE_DIR).join("device.json.tmp"), b"{").unwrap();
    assert!(prepare_device(&crashed, &h).unwrap());
    assert!(!crashed.join(DEVICE_DIR).join("device.json.tmp").exists());
    // Not a folder; an invalid header; a damaged header.
    assert!(matches!(prepare_device(&full.join("photo.jpg"), &h), Err(SeedError::Io { .. })));
    assert!(matches!(prepare_device(&root.path().join("missing"), &h), Err(SeedError::Io { .. })));
    let bad = DeviceHeader::new(&key, DJOB, MACHINE, "web-1", SET_ID, 0, "disk", 0, "2026-12-01T10:00:00Z");
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(prepare_device(&empty, &bad), Err(SeedError::InvalidInput { .. })));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    std::fs::write(d.join(DEVICE_DIR).join(HEADER_FILE), b"{").unwrap();
    assert!(matches!(read_device_header(&d), Err(SeedError::DeviceHeaderDamaged { .. })));
    assert!(matches!(prepare_device(&d, &h), Err(SeedError::DeviceHeaderDamaged { .. })));
}

#[test]
fn store_contract_on_two_devices() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    // Device 1 takes about 4 MiB, so the suite's big object and races land on device 2.
    let paths = devices(root.path(), &key, 2, 0);
    let small = DeviceHeader::new(&key, DJOB, MACHINE, "web-1", SET_ID, 1, "disk", 5 << 20, "2026-12-01T10:00:00Z");
    std::fs::write(paths[0].join(DEVICE_DIR).join(HEADER_FILE), small.encode()).unwrap();
    let store = open(&paths, &key).unwrap();
    ferry_store::conformance::run_all(&store);
    assert_eq!(keys(&store, ""), vec!["config".to_string(), format!("keys/{}", "ab".repeat(32))]);
}

#[test]
fn reads_writes_and_key_material() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    let paths = devices(root.path(), &key, 2, 0);
    let store = open(&paths, &key).unwrap();
    assert_eq!(store.describe(), format!("seed device(s) {}, {} of device job {DJOB}", paths[0].display(), paths[1].display()));
    let (k1, v1) = pack(3000, 1);
    assert!(store.put_if_absent(&k1, v1.clone()).unwrap());
    assert!(!store.put_if_absent(&k1, v1.clone()).unwrap());
    assert_eq!(store.get(&k1).unwrap(), v1);
    assert_eq!(store.get_range(&k1, 10..20).unwrap(), v1.slice(10..20));
    let mut buf = vec![9; 3];
    store.get_range_into(&k1, 5..8, &mut buf).unwrap();
    assert_eq!(buf, &v1[5..8]);
    assert_eq!(store.head(&k1).unwrap(), Some(3000));
    // An object on device 2 only (as a run with device 2 alone leaves it) is found.
    let only2 = open(&paths[1..], &key).unwrap();
    let (k2, v2) = pack(100, 2);
    assert!(only2.put_if_absent(&k2, v2.clone()).unwrap());
    assert_eq!(store.get(&k2).unwrap(), v2);
    assert_eq!(store.get_range(&k2, 0..1).unwrap(), v2.slice(0..1));
    assert_eq!(store.head(&k2).unwrap(), Some(100));
    assert!(!store.put_if_absent(&k2, v2.clone()).unwrap(), "not written again onto device 1");
    assert_eq!(keys(&open(&paths[..1], &key).unwrap(), "data/"), vec![k1.clone()]);
    // put replaces where the object is.
    store.put("locks/a", Bytes::from_static(b"1")).unwrap();
    store.put("locks/a", Bytes::from_static(b"22")).unwrap();
    assert_eq!(store.get("locks/a").unwrap(), "22");
    let mut both = vec![k1.clone(), k2.clone()];
    both.sort();
    assert_eq!(keys(&store, "data/"), both);
    assert_eq!(keys(&store, "locks/"), vec!["locks/a"]);
    store.delete("locks/a").unwrap();
    store.delete(&k2).unwrap();
    store.delete("locks/never").unwrap();
    assert_eq!(store.head(&k2).unwrap(), None);
    assert!(store.get(&k2).unwrap_err().is_not_found());
    assert!(store.get_range(&k2, 0..1).unwrap_err().is_not_found());
    assert!(store.get_range_into(&k2, 0..1, &mut buf).unwrap_err().is_not_found());
    // config and keys come from the vault and are never written.
    let key_file = format!("keys/{}", "ab".repeat(32));
    assert_eq!(store.get("config").unwrap(), "{\"magic\":\"ferry-config\"}");
    assert_eq!(store.get_range(&key_file, 0..2).unwrap(), "{\"");
    store.get_range_into("config", 2..7, &mut buf).unwrap();
    assert_eq!(buf, b"magic");
    assert_eq!(store.head("config").unwrap(), Some(24));
    assert_eq!(store.head("index/0000").unwrap(), None, "the vault serves config and keys only");
    for k in ["config", key_file.as_str()] {
        let refused: [StoreError; 3] = [
            store.put(k, Bytes::from_static(b"x")).unwrap_err(),
            store.put_if_absent(k, Bytes::from_static(b"x")).unwrap_err(),
            store.delete(k).unwrap_err(),
        ];
        for e in refused {
            assert_eq!(e.kind, ErrorKind::Permanent);
            assert!(e.to_string().contains("a seed device does not hold the repository's config or keys"), "{e}");
        }
    }
    assert_eq!(keys(&store, ""), vec!["config".to_string(), k1.clone(), key_file.clone()]);
    assert_eq!(keys(&store, "k"), vec![key_file.clone()]);
    assert_eq!(keys(&store, "keys/ab"), vec![key_file.clone()]);
    assert_eq!(keys(&store, "co"), vec!["config".to_string()]);
    assert_eq!(keys(&store, "data/"), vec![k1.clone()]);
    assert!(keys(&store, "index/").is_empty());
    for d in &paths {
        assert!(!d.join(DEVICE_DIR).join(REPO_DIR).join("config").exists());
        assert!(!d.join(DEVICE_DIR).join(REPO_DIR).join("keys").exists());
    }
}

#[test]
fn fills_device_1_then_2_then_says_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    // About 1.3 MB of room per device: two 600 KiB packs each.
    let paths = devices(root.path(), &key, 2, 2_500_000);
    let store = open(&paths, &key).unwrap();
    let (used0, capacity) = store.space();
    assert_eq!(capacity, 5_000_000);
    let packs: Vec<(String, Bytes)> = (0..5).map(|i| pack(600 * KIB, 10 + i)).collect();
    for (k, v) in &packs[..4] {
        assert!(store.put_if_absent(k, v.clone()).unwrap());
    }
    let on = |d: &Path| keys(&*ferry_store::open(d.join(DEVICE_DIR).join(REPO_DIR).to_str().unwrap()).unwrap(), "");
    let mut first: Vec<String> = packs[..2].iter().map(|(k, _)| k.clone()).collect();
    first.sort();
    let mut second: Vec<String> = packs[2..4].iter().map(|(k, _)| k.clone()).collect();
    second.sort();
    assert_eq!(on(&paths[0]), first);
    assert_eq!(on(&paths[1]), second);
    let (used, _) = store.space();
    assert!(used > used0 + 4 * 600 * KIB as u64 && used <= capacity, "{used} of {capacity}");
    let e = store.put_if_absent(&packs[4].0, packs[4].1.clone()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    let text = e.to_string();
    for want in [
        "the seed device(s) are full",
        &format!("object {} (614400 bytes) does not fit", packs[4].0),
        &format!("bytes used on device(s) 1 ({}), 2 ({})", paths[0].display(), paths[1].display()),
        &format!("prepare another device of job {DJOB} (`ferry device prepare`)"),
        "--device",
        "ferry backup --offline",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert_eq!(store.space().0, used, "a refused object reserves nothing");
    assert_eq!(store.head(&packs[4].0).unwrap(), None);
    // Deleting frees room; a small object still fits.
    store.delete(&packs[0].0).unwrap();
    assert!(store.put_if_absent(&packs[4].0, packs[4].1.clone()).unwrap());
    assert!(on(&paths[0]).contains(&packs[4].0));
    // Reopened, the devices count what they hold.
    drop(store);
    let again = open(&paths, &key).unwrap();
    assert_eq!(again.space(), (used, capacity));
}

#[test]
fn wrong_devices_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    let paths = devices(root.path(), &key, 2, 0);
    let e = open(&paths, &DiskKey::random()).unwrap_err();
    assert!(matches!(&e, SeedError::DeviceKeyInvalid { path, device: 1, job } if path == &paths[0] && job == DJOB), "{e}");
    assert_eq!(e.disk(), Some(1));
    let e = DeviceStore::open(&paths, &key, DJOB, "m-other", vault()).unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDevice { device: 1, .. }), "{e}");
    assert!(e.to_string().contains("is bound to machine web-1 (ID m-7f3a), not to this machine"), "{e}");
    let e = DeviceStore::open(&paths, &key, "job-2", MACHINE, vault()).unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDevice { job, .. } if job == DJOB), "{e}");
    assert!(e.to_string().contains(&format!("belongs to job {DJOB} (device 1), not to job job-2")), "{e}");
    // A device of another set of the job.
    let other = root.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    prepare_device(&other, &DeviceHeader::new(&key, DJOB, MACHINE, "web-1", [3; 16], 3, "box", 0, "2026-12-01T10:00:00Z")).unwrap();
    let e = open(&[paths[0].clone(), paths[1].clone(), other.clone()], &key).unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDevice { path, device: 3, .. } if path == &other), "{e}");
    assert!(e.to_string().contains("of another device set"), "{e}");
    // The same folder twice; a copy of a device.
    let e = open(&[paths[0].clone(), paths[0].join(".")], &key).unwrap_err();
    assert!(matches!(e, SeedError::DuplicateDisk { number: 1, .. }), "{e}");
    let copy = root.path().join("copy");
    copy_dir(&paths[1], &copy);
    let e = open(&[paths[1].clone(), copy.clone()], &key).unwrap_err();
    assert!(matches!(&e, SeedError::DuplicateDisk { number: 2, second, .. } if second == &copy), "{e}");
    // No device; nothing given.
    let e = open(&[root.path().to_path_buf()], &key).unwrap_err();
    assert!(matches!(e, SeedError::NotADevice { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("{} is not a Ferry seed device (no FERRY-DEVICE/device.json): check the path", root.path().display())
    );
    assert!(matches!(open(&[], &key), Err(SeedError::InvalidInput { .. })));
    // A sealed device.
    std::fs::write(paths[1].join(DEVICE_DIR).join(SEAL_FILE), b"sealed").unwrap();
    let e = open(&paths, &key).unwrap_err();
    assert!(matches!(&e, SeedError::AlreadySealed { path, device: 2, .. } if path == &paths[1]), "{e}");
    assert!(e.to_string().ends_with("was sealed already: ship it back to the vault (ferry device status)"), "{e}");
}
