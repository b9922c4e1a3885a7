use super::*;
use crate::fsio::{LABEL_FILE, MANIFEST_FILE};
use crate::ManifestEntry;

/// The first manifest entry on disk `disk` whose object is larger than one frame, or any.
fn entry_on(set: &DiskSet, disk: u32) -> ManifestEntry {
    let on: Vec<&ManifestEntry> = set.manifest().entries.iter().filter(|e| e.disk == disk).collect();
    on.iter().find(|e| e.size > MIB as u64).or(on.first()).map(|e| (*e).clone()).unwrap()
}

fn object_path(set: &DiskSet, e: &ManifestEntry) -> PathBuf {
    set.disk_path(e.disk).join(SEED_DIR).join(OBJECTS_DIR).join(&e.file)
}

#[test]
fn missing_duplicate_and_foreign_disks_are_named() {
    let root = tempfile::tempdir().unwrap();
    let (_, key, paths) = prepared(&root.path().join("a"));
    // A missing disk.
    let e = DiskSet::open(&[paths[0].clone(), paths[2].clone()], JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::MissingDisks { numbers, count: 3 } if numbers == &[2]), "{e}");
    assert_eq!(e.to_string(), "disk 2 of 3 missing: give every disk of the set (--disk for each)");
    // The same folder twice, and a copy of a disk.
    let e = DiskSet::open(&[paths[0].clone(), paths[1].clone(), paths[2].clone(), paths[1].join(".")], JOB, &key).unwrap_err();
    assert!(matches!(e, SeedError::DuplicateDisk { number: 2, .. }), "{e}");
    let copy = root.path().join("copy-of-d3");
    copy_dir(&paths[2], &copy);
    let e = DiskSet::open(&[paths[0].clone(), paths[1].clone(), paths[2].clone(), copy.clone()], JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::DuplicateDisk { number: 3, second, .. } if second == &copy), "{e}");
    // A disk of another job (same key, to show it is the job that is checked).
    let other = root.path().join("b");
    let staging = Staging::new();
    let d = disks(&other, 3);
    let opts = PrepareOptions {
        job: "other-job".into(),
        key: &key,
        disks: targets(&d, DISK),
        confirm_wipe: &mut |_, _| false,
        progress: &mut |_, _| {},
    };
    prepare(&staging.store, &staging.objects, opts).unwrap();
    let e = DiskSet::open(&[paths[0].clone(), d[1].clone(), paths[2].clone()], JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDisk { path, job, .. } if path == &d[1] && job == "other-job"), "{e}");
    // A disk of another set of the same job.
    let third = root.path().join("c");
    let (_, (), p3) = {
        let staging = Staging::new();
        let d = disks(&third, 3);
        run(&staging, &key, targets(&d, DISK)).unwrap();
        (staging, (), d)
    };
    let e = DiskSet::open(&[paths[0].clone(), paths[1].clone(), p3[2].clone()], JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDisk { path, detail, .. } if path == &p3[2] && detail.contains("another disk set")), "{e}");
    // A folder that is no seed disk.
    let e = DiskSet::open(&[paths[0].clone(), root.path().to_path_buf()], JOB, &key).unwrap_err();
    assert!(matches!(e, SeedError::NotASeedDisk { .. }), "{e}");
    assert!(matches!(DiskSet::open(&[], JOB, &key), Err(SeedError::InvalidInput { .. })));
}

#[test]
fn wrong_key_and_forged_label_are_key_invalid() {
    let root = tempfile::tempdir().unwrap();
    let (_, key, paths) = prepared(root.path());
    let e = DiskSet::open(&paths, JOB, &DiskKey::random()).unwrap_err();
    assert!(matches!(e, SeedError::KeyInvalid { disk: 1, .. }), "{e}");
    assert!(e.to_string().contains("disk key is invalid"), "{e}");
    // A label edited to claim another number.
    let label_path = paths[1].join(SEED_DIR).join(LABEL_FILE);
    let text = std::fs::read_to_string(&label_path).unwrap();
    std::fs::write(&label_path, text.replace("\"disk_number\": 2", "\"disk_number\": 1")).unwrap();
    let e = DiskSet::open(&paths, JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::KeyInvalid { path, .. } if path == &paths[1]), "{e}");
    assert_eq!(e.disk(), Some(1));
    std::fs::write(&label_path, "{").unwrap();
    let e = DiskSet::open(&paths, JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::LabelDamaged { path, .. } if path == &paths[1]), "{e}");
}

#[test]
fn tampered_or_missing_manifest_is_a_manifest_error() {
    let root = tempfile::tempdir().unwrap();
    let (staging, key, paths) = prepared(root.path());
    let m2 = paths[1].join(SEED_DIR).join(MANIFEST_FILE);
    let good = std::fs::read(&m2).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&m2, &bad).unwrap();
    let e = DiskSet::open(&paths, JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::ManifestError { disk: 2, reason, .. } if reason.contains("authentication")), "{e}");
    assert_eq!(e.disk(), Some(2));
    // Another (valid) manifest of the set: differs from disk 1's.
    let set_id = crate::read_label(&paths[0]).unwrap().set_id;
    let mut manifest = crate::import::read_manifest(&paths[0], 1, &key, &set_id).unwrap();
    manifest.entries.pop();
    std::fs::write(&m2, manifest.seal(&key)).unwrap();
    let e = DiskSet::open(&paths, JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::ManifestError { disk: 2, reason, .. } if reason.contains("differs")), "{e}");
    std::fs::remove_file(&m2).unwrap();
    let e = DiskSet::open(&paths, JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::ManifestError { disk: 2, reason, .. } if reason.contains("missing")), "{e}");
    std::fs::write(&m2, &good).unwrap();
    check_all(&DiskSet::open(&paths, JOB, &key).unwrap(), &staging);
}

#[test]
fn damaged_objects_are_corrupted_with_disk_key_and_file() {
    let root = tempfile::tempdir().unwrap();
    let (_, key, paths) = prepared(root.path());
    let set = DiskSet::open(&paths, JOB, &key).unwrap();
    let mut buf = Vec::new();
    let e2 = entry_on(&set, 2);
    let path = object_path(&set, &e2);
    let good = std::fs::read(&path).unwrap();

    let expect = |set: &DiskSet, e: &ManifestEntry, what: &str| {
        let mut buf = Vec::new();
        let err = set.read_object(e, &mut buf).unwrap_err();
        match &err {
            SeedError::Corrupted { disk, key, file, reason, .. } => {
                assert_eq!((disk, key, file), (&e.disk, &e.key, &e.file));
                assert!(reason.contains(what), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&format!("(disk {} of 3 of import job {JOB}): object {}", e.disk, e.key)), "{text}");
        assert_eq!(err.disk(), Some(e.disk));
    };

    // One flipped byte, in the first frame and in the last.
    for at in [100, good.len() - 3] {
        let mut bad = good.clone();
        bad[at] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        expect(&set, &e2, "authentication failed: the disk was altered or damaged");
    }
    // Truncated, extended, missing.
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    expect(&set, &e2, "truncated");
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    expect(&set, &e2, "more than written");
    std::fs::remove_file(&path).unwrap();
    expect(&set, &e2, "missing");
    // Another object's file in its place (same size is not needed: both checks name it).
    std::fs::write(&path, &good).unwrap();
    set.read_object(&e2, &mut buf).unwrap();
    let same_size = set.manifest().entries.iter().find(|e| e.key != e2.key && e.disk == 2).unwrap().clone();
    let other_path = object_path(&set, &same_size);
    let other = std::fs::read(&other_path).unwrap();
    std::fs::write(&other_path, &good).unwrap();
    expect(&set, &same_size, "");
    std::fs::write(&other_path, &other).unwrap();
    // A manifest entry with the wrong hash (as if the manifest lied): wrong hash.
    let mut lying = e2.clone();
    lying.hash[0] ^= 1;
    expect(&set, &lying, "does not match the manifest's hash");
    // Entries that are not the set's are refused without touching the disk.
    let mut escape = e2.clone();
    escape.file = "../../label.json".into();
    assert!(matches!(set.read_object(&escape, &mut buf), Err(SeedError::InvalidInput { .. })));
    let mut far = e2.clone();
    far.disk = 9;
    assert!(matches!(set.read_object(&far, &mut buf), Err(SeedError::InvalidInput { .. })));
}
