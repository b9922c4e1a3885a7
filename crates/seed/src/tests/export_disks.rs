//! `ExportDisks`: a prepared disk set read as a store, as `restore --from-disk` reads it.

use bytes::Bytes;
use ferry_store::{ErrorKind, Store};

use super::{object_files, prepared, JOB};
use crate::fsio::{OBJECTS_DIR, SEED_DIR};
use crate::{DiskKey, ExportDisks, SeedError};

#[test]
fn every_object_reads_back_whole_and_in_ranges_and_nothing_but_locks_is_written() {
    let root = tempfile::tempdir().unwrap();
    let (staging, key, paths) = prepared(root.path());
    let disks = ExportDisks::open(&paths, JOB, &key).unwrap();
    for (k, data) in &staging.content {
        assert_eq!(disks.get(k).unwrap(), Bytes::from(data.clone()), "{k}");
        assert_eq!(disks.head(k).unwrap(), Some(data.len() as u64));
        if data.len() > 10 {
            assert_eq!(disks.get_range(k, 3..10).unwrap(), Bytes::from(data[3..10].to_vec()), "{k}");
        }
    }
    assert_eq!(disks.list("").unwrap().len(), staging.content.len());
    assert_eq!(disks.list("data/").unwrap().len(), 8);
    assert_eq!(disks.head("data/00/nothing").unwrap(), None);
    assert_eq!(disks.get("data/00/nothing").unwrap_err().kind, ErrorKind::NotFound);
    let first = staging.content.keys().next().unwrap().clone();
    assert_eq!(disks.get_range(&first, 0..u64::MAX).unwrap_err().kind, ErrorKind::Permanent);
    // Read-only, but for the locks a restore takes (kept in memory).
    for e in [disks.put("data/ab/x", Bytes::new()).unwrap_err(), disks.delete(&first).unwrap_err()] {
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(e.to_string().contains("read-only"), "{e}");
    }
    assert!(disks.put_if_absent("locks/l1", Bytes::from_static(b"lock")).unwrap());
    assert_eq!(disks.list("locks/").unwrap().len(), 1);
    disks.delete("locks/l1").unwrap();
    assert!(disks.list("locks/").unwrap().is_empty());
    let before: Vec<Vec<String>> = paths.iter().map(|p| object_files(p)).collect();
    assert_eq!(before, paths.iter().map(|p| object_files(p)).collect::<Vec<_>>(), "nothing written to the disks");
}

#[test]
fn a_flipped_byte_fails_its_object_naming_the_disk_and_other_objects_read() {
    let root = tempfile::tempdir().unwrap();
    let (staging, key, paths) = prepared(root.path());
    let disks = ExportDisks::open(&paths, JOB, &key).unwrap();
    let entry = disks.set().manifest().entries.iter().find(|e| e.disk == 2 && e.size > 100).unwrap().clone();
    let file = paths[1].join(SEED_DIR).join(OBJECTS_DIR).join(&entry.file);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let e = disks.get(&entry.key).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    let text = e.to_string();
    assert!(text.contains("disk 2 of 3") && text.contains(&entry.key) && text.contains(&entry.file), "{text}");
    for (k, data) in staging.content.iter().filter(|(k, _)| **k != entry.key) {
        assert_eq!(disks.get(k).unwrap(), Bytes::from(data.clone()), "{k}");
    }
    // Another key, or a disk left out: the set is refused whole.
    assert!(matches!(ExportDisks::open(&paths, JOB, &DiskKey::random()).unwrap_err(), SeedError::KeyInvalid { .. }));
    let e = ExportDisks::open(&paths[..2], JOB, &key).unwrap_err();
    assert!(matches!(&e, SeedError::MissingDisks { numbers, count: 3 } if *numbers == [3]), "{e}");
}
