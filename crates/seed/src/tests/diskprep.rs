use std::path::Path;

use ferry_store::Store;

use super::*;
use crate::fsio::{JOURNAL_FILE, LABEL_FILE, MANIFEST_FILE};
use crate::prepare::test_hooks;
use crate::read_label;

#[test]
fn round_trip_spanning_three_disks() {
    let root = tempfile::tempdir().unwrap();
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root.path(), 3);
    test_hooks::arm(None, None);
    let summary = match run(&staging, &key, targets(&paths, DISK)).unwrap() {
        PrepareOutcome::Complete(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(test_hooks::written(), staging.objects.len() as u64);
    assert_eq!(summary.disks.iter().map(|d| d.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(summary.disks.iter().map(|d| d.objects).sum::<u64>(), staging.objects.len() as u64);
    for d in &summary.disks {
        assert!(d.objects > 0, "{d:?}");
        assert!(d.bytes <= DISK, "{d:?}");
        let label = read_label(&d.path).unwrap();
        assert_eq!((label.disk_number, label.disk_count, label.set_id), (d.number, 3, summary.set_id));
        assert!(label.verify(&key));
        assert_eq!(object_files(&d.path).len() as u64, d.objects);
    }
    // Any order of the disks opens the set.
    let shuffled = vec![paths[2].clone(), paths[0].clone(), paths[1].clone()];
    let set = DiskSet::open(&shuffled, JOB, &key).unwrap();
    assert_eq!(set.disk_count(), 3);
    assert_eq!(set.disk_path(2), paths[1]);
    assert_eq!(set.disk_path(4), Path::new(""));
    check_all(&set, &staging);

    // A rerun of the complete set writes nothing and reports the same set.
    test_hooks::arm(None, None);
    let again = run(&staging, &key, targets(&paths, DISK)).unwrap();
    assert_eq!(again, PrepareOutcome::Complete(summary));
    assert_eq!(test_hooks::written(), 0);
}

#[test]
fn resume_after_crashes() {
    let root = tempfile::tempdir().unwrap();
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root.path(), 3);
    let n = staging.objects.len() as u64;

    // Crash after the 3rd object file is written, before its journal record: a leftover.
    test_hooks::arm(Some(3), None);
    let e = run(&staging, &key, targets(&paths, DISK)).unwrap_err();
    assert!(e.to_string().contains("simulated crash"), "{e}");
    let files_after_first: usize = paths.iter().filter(|p| p.join(SEED_DIR).exists()).map(|p| object_files(p).len()).sum();
    assert_eq!(files_after_first, 3);

    // Crash after two more objects are journaled; then tear the journal's tail.
    test_hooks::arm(None, Some(2));
    run(&staging, &key, targets(&paths, DISK)).unwrap_err();
    assert_eq!(test_hooks::written(), 2);
    let journal = paths[0].join(SEED_DIR).join(JOURNAL_FILE);
    let mut bytes = std::fs::read(&journal).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[77, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&journal, &bytes).unwrap();
    // A temporary label from a crash mid-rename.
    std::fs::write(paths[0].join(SEED_DIR).join("label.json.tmp"), b"x").unwrap();

    // The rerun writes exactly the objects not yet journaled: no object twice.
    test_hooks::arm(None, None);
    assert!(matches!(run(&staging, &key, targets(&paths, DISK)).unwrap(), PrepareOutcome::Complete(_)));
    assert_eq!(test_hooks::written(), n - 4);
    assert!(!paths[0].join(SEED_DIR).join("label.json.tmp").exists());
    assert!(std::fs::read(&journal).unwrap().len() >= whole);
    let set = DiskSet::open(&paths, JOB, &key).unwrap();
    // Every file on the disks is an object of the manifest: the leftover is gone.
    for (i, p) in paths.iter().enumerate() {
        let mut listed: Vec<String> = set.manifest().entries.iter().filter(|e| e.disk == i as u32 + 1).map(|e| e.file.clone()).collect();
        listed.sort();
        assert_eq!(object_files(p), listed);
    }
    check_all(&set, &staging);
}

#[test]
fn crash_while_committing_is_finished_by_a_rerun() {
    let root = tempfile::tempdir().unwrap();
    let (staging, key, paths) = prepared(root.path());
    // As if the run died after writing the manifests and one label's count.
    for p in &paths[1..] {
        let label = read_label(p).unwrap();
        crate::label::write_label(p, &label.with_count(&key, 0)).unwrap();
    }
    std::fs::remove_file(paths[2].join(SEED_DIR).join(MANIFEST_FILE)).unwrap();
    assert!(matches!(DiskSet::open(&paths, JOB, &key), Err(SeedError::Incomplete { .. })));
    test_hooks::arm(None, None);
    assert!(matches!(run(&staging, &key, targets(&paths, DISK)).unwrap(), PrepareOutcome::Complete(_)));
    assert_eq!(test_hooks::written(), 0);
    check_all(&DiskSet::open(&paths, JOB, &key).unwrap(), &staging);
}

#[test]
fn need_more_disks_then_another_disk() {
    let root = tempfile::tempdir().unwrap();
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root.path(), 3);
    let (objects, bytes) = match run(&staging, &key, targets(&paths[..2], DISK)).unwrap() {
        PrepareOutcome::NeedMoreDisks { objects, bytes, summary } => {
            assert_eq!(summary.disks.len(), 2);
            (objects, bytes)
        }
        other => panic!("{other:?}"),
    };
    assert!(objects > 0 && bytes > 0);
    for p in &paths[..2] {
        assert_eq!(read_label(p).unwrap().disk_count, 0);
        assert!(!p.join(SEED_DIR).join(MANIFEST_FILE).exists());
    }
    // Not importable yet.
    assert!(matches!(DiskSet::open(&paths[..2], JOB, &key), Err(SeedError::Incomplete { disk: 1, .. })));
    // Disk 1 alone (disk 2 left out) with a new disk is refused: disk 2 exists.
    let e = run(&staging, &key, targets(&[paths[0].clone(), paths[2].clone()], DISK)).unwrap_err();
    assert!(matches!(&e, SeedError::MissingDisks { numbers, count: 0 } if numbers == &[2]), "{e}");
    assert!(!paths[2].join(SEED_DIR).exists());
    // Disk 2 alone: disk 1 is missing.
    let e = run(&staging, &key, targets(&paths[1..], DISK)).unwrap_err();
    assert!(matches!(&e, SeedError::MissingDisks { numbers, .. } if numbers == &[1]), "{e}");
    test_hooks::arm(None, None);
    match run(&staging, &key, targets(&paths, DISK)).unwrap() {
        PrepareOutcome::Complete(s) => assert_eq!(s.disks.len(), 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(test_hooks::written(), objects);
    check_all(&DiskSet::open(&paths, JOB, &key).unwrap(), &staging);
}

#[test]
fn object_too_large_for_any_disk() {
    let root = tempfile::tempdir().unwrap();
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root.path(), 2);
    let small = vec![
        DiskTarget { path: paths[0].clone(), capacity: Some(MIB as u64) },
        DiskTarget { path: paths[1].clone(), capacity: Some(600 * KIB as u64) },
    ];
    let e = run(&staging, &key, small).unwrap_err();
    match &e {
        SeedError::ObjectTooLarge { key, size, path, capacity } => {
            assert!(key.starts_with("data/"));
            assert_eq!(*size, (MIB + MIB / 2) as u64);
            assert_eq!((path, *capacity), (&paths[0], MIB as u64));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("never split"), "{e}");
    for p in &paths {
        assert!(!p.join(SEED_DIR).exists(), "nothing written");
    }
}

#[test]
fn foreign_folders_are_wiped_only_when_confirmed() {
    let root = tempfile::tempdir().unwrap();
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root.path(), 3);
    std::fs::write(paths[1].join("holiday.jpg"), b"photo").unwrap();
    std::fs::create_dir(paths[2].join("lost+found")).unwrap();
    // A crash before the first label was in place is no reason to ask either.
    std::fs::create_dir(paths[0].join(SEED_DIR)).unwrap();
    std::fs::write(paths[0].join(SEED_DIR).join("label.json.tmp"), b"{").unwrap();
    let mut asked = Vec::new();
    let e = run_with(&staging, &key, targets(&paths, DISK), &mut |p, why| {
        asked.push((p.to_path_buf(), why.to_string()));
        false
    })
    .unwrap_err();
    assert!(matches!(&e, SeedError::NotEmpty { path, .. } if path == &paths[1]), "{e}");
    assert_eq!(asked.len(), 1);
    assert!(asked[0].1.contains("not empty"), "{}", asked[0].1);
    assert!(paths[1].join("holiday.jpg").exists());
    assert!(!paths[0].join(SEED_DIR).join(LABEL_FILE).exists(), "nothing written before the question");

    let mut yes = |_: &Path, _: &str| true;
    assert!(matches!(run_with(&staging, &key, targets(&paths, DISK), &mut yes).unwrap(), PrepareOutcome::Complete(_)));
    assert!(!paths[1].join("holiday.jpg").exists());
    assert!(paths[2].join("lost+found").is_dir(), "lost+found is not a reason to ask, and is kept");
    assert!(!paths[0].join(SEED_DIR).join("label.json.tmp").exists());
    check_all(&DiskSet::open(&paths, JOB, &key).unwrap(), &staging);

    // The disks of this job are another job's foreign disks; and with another key, this
    // job's disks are foreign too (an earlier job of the same name).
    let other = PrepareOptions {
        job: "job-2".into(),
        key: &key,
        disks: targets(&paths, DISK),
        confirm_wipe: &mut |_, _| false,
        progress: &mut |_, _| {},
    };
    let e = prepare(&staging.store, &staging.objects, other).unwrap_err();
    assert!(matches!(&e, SeedError::ForeignDisk { job, expected_job, .. } if job == JOB && expected_job == "job-2"), "{e}");
    let mut reasons = Vec::new();
    let e = run_with(&staging, &DiskKey::random(), targets(&paths, DISK), &mut |_, why| {
        reasons.push(why.to_string());
        false
    })
    .unwrap_err();
    assert!(matches!(e, SeedError::ForeignDisk { .. }), "{e}");
    assert!(reasons[0].contains("disk key"), "{reasons:?}");
    assert!(read_label(&paths[0]).is_ok());
}

#[test]
fn staging_objects_are_checked() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    let paths = disks(root.path(), 1);
    // A pack whose bytes do not hash to its name.
    let mut staging = Staging::new();
    let name = format!("data/00/00{}", "1".repeat(62));
    staging.add(&name, b"not this".to_vec(), 0);
    let e = run(&staging, &key, targets(&paths, 4 * DISK)).unwrap_err();
    assert!(matches!(&e, SeedError::SourceMismatch { key, .. } if key == &name), "{e}");
    assert!(e.to_string().contains("hash"), "{e}");
    // An object whose size differs from the listed one.
    let mut staging = Staging::new();
    staging.objects[0].size -= 1;
    let e = run(&staging, &key, targets(&paths, 4 * DISK)).unwrap_err();
    assert!(matches!(e, SeedError::SourceMismatch { .. }), "{e}");
    // A listed object that is not there.
    let staging = Staging::new();
    staging.store.delete("config").unwrap();
    let e = run(&staging, &key, targets(&paths, 4 * DISK)).unwrap_err();
    assert!(matches!(&e, SeedError::SourceMismatch { key, .. } if key == "config"), "{e}");
    // The staging location grew after the set was completed.
    let root = tempfile::tempdir().unwrap();
    let (mut staging, key, paths) = prepared(root.path());
    staging.add("keys/extra", b"k".to_vec(), 1);
    let e = run(&staging, &key, targets(&paths, DISK)).unwrap_err();
    assert!(matches!(e, SeedError::AlreadyComplete { objects: 1, bytes: 1, .. }), "{e}");
}

#[test]
fn bad_input_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    let paths = disks(root.path(), 1);
    let mut staging = Staging::new();
    staging.objects.push(staging.objects[0].clone());
    assert!(matches!(run(&staging, &key, targets(&paths, DISK)), Err(SeedError::InvalidInput { .. })));
    let mut staging = Staging::new();
    staging.objects.push(SourceObject { key: "big".into(), size: crate::MAX_SEED_BYTES, phase: 0 });
    assert!(matches!(run(&staging, &key, targets(&paths, DISK)), Err(SeedError::ObjectTooLarge { .. })));
    let mut staging = Staging::new();
    for i in 0..9 {
        staging.objects.push(SourceObject { key: format!("big{i}"), size: crate::MAX_DISK_BYTES, phase: 0 });
    }
    assert!(matches!(run(&staging, &key, targets(&paths, DISK)), Err(SeedError::SeedTooLarge { .. })));
    let many: Vec<PathBuf> = (0..11).map(|_| paths[0].clone()).collect();
    assert!(matches!(run(&Staging::new(), &key, targets(&many, DISK)), Err(SeedError::TooManyDisks { count: 11 })));
    let e = run(&Staging::new(), &key, targets(&[paths[0].clone(), paths[0].join(".")], DISK)).unwrap_err();
    assert!(matches!(e, SeedError::DuplicateDisk { number: 0, .. }), "{e}");
    let e = run(&Staging::new(), &key, targets(&[root.path().join("nope")], DISK)).unwrap_err();
    assert!(matches!(e, SeedError::Io { .. }), "{e}");
}

#[test]
fn empty_staging_makes_a_one_disk_set() {
    let root = tempfile::tempdir().unwrap();
    let key = DiskKey::random();
    let paths = disks(root.path(), 2);
    let staging = Staging { store: ferry_store::MemoryStore::new(), objects: Vec::new(), content: Default::default() };
    match run(&staging, &key, targets(&paths, DISK)).unwrap() {
        PrepareOutcome::Complete(s) => assert_eq!(s.disks.len(), 1),
        other => panic!("{other:?}"),
    }
    let set = DiskSet::open(&paths[..1], JOB, &key).unwrap();
    assert!(set.manifest().entries.is_empty());
    assert!(!paths[1].join(SEED_DIR).exists(), "an unneeded disk is not touched");
}

#[test]
fn free_space_is_the_default_capacity() {
    let root = tempfile::tempdir().unwrap();
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root.path(), 1);
    let t = vec![DiskTarget { path: paths[0].clone(), capacity: None }];
    // A tempdir has far more than the few MiB of the staging location free.
    match run(&staging, &key, t).unwrap() {
        PrepareOutcome::Complete(s) => assert_eq!(s.disks.len(), 1),
        other => panic!("{other:?}"),
    }
    let label = std::fs::read_to_string(paths[0].join(SEED_DIR).join(LABEL_FILE)).unwrap();
    assert!(label.contains("\"disk_count\": 1"), "{label}");
}

#[test]
fn damaged_disks_of_the_set_are_refused_on_resume() {
    let root = tempfile::tempdir().unwrap();
    let staging = Staging::new();
    let key = DiskKey::random();
    let paths = disks(root.path(), 3);
    assert!(matches!(run(&staging, &key, targets(&paths[..2], DISK)).unwrap(), PrepareOutcome::NeedMoreDisks { .. }));
    // A recorded object file deleted: named, with the disk and the object.
    let files = object_files(&paths[1]);
    let victim = paths[1].join(SEED_DIR).join(OBJECTS_DIR).join(&files[0]);
    let saved = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    let e = run(&staging, &key, targets(&paths, DISK)).unwrap_err();
    assert!(matches!(&e, SeedError::Corrupted { disk: 2, file, reason, .. } if file == &files[0] && reason.contains("missing")), "{e}");
    std::fs::write(&victim, saved).unwrap();
    // A journal record altered before the end.
    let journal = paths[0].join(SEED_DIR).join(JOURNAL_FILE);
    let good = std::fs::read(&journal).unwrap();
    let mut bad = good.clone();
    bad[crate::journal::JOURNAL_HEADER_LEN + 20] ^= 1;
    std::fs::write(&journal, &bad).unwrap();
    let e = run(&staging, &key, targets(&paths, DISK)).unwrap_err();
    assert!(matches!(e, SeedError::JournalDamaged { disk: 1, .. }), "{e}");
    assert_eq!(e.disk(), Some(1));
    std::fs::write(&journal, &good).unwrap();
    assert!(matches!(run(&staging, &key, targets(&paths, DISK)).unwrap(), PrepareOutcome::Complete(_)));
    check_all(&DiskSet::open(&paths, JOB, &key).unwrap(), &staging);
}
