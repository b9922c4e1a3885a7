//! A restore counts its files as well as its bytes (the progress bar shows both): files of one
//! chunk when their chunk is written, files of several chunks (and empty ones) when finished.

mod common;

use std::sync::atomic::Ordering;

use ferry_repo::backup::{self, BackupOptions};
use ferry_repo::restore::{self, Overwrite, RestoreOptions};
use ferry_repo::Progress;

#[test]
fn a_restore_counts_every_file_it_restores() {
    let dir = tempfile::tempdir().unwrap();
    let repo = common::scratch_repo(&dir.path().join("repo"), b"progress test passphrase", Default::default());
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..20u8 {
        std::fs::write(src.join(format!("small{i}")), [i; 100]).unwrap();
    }
    std::fs::write(src.join("sub/empty"), b"").unwrap();
    // Several chunks: pseudo-random bytes (a counter through BLAKE3's output stream).
    let mut big = vec![0u8; 6 << 20];
    blake3::Hasher::new().finalize_xof().fill(&mut big);
    std::fs::write(src.join("sub/big"), &big).unwrap();
    let out = backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &Progress::default()).unwrap();

    let progress = Progress::default();
    let opts = RestoreOptions {
        target: dir.path().join("target"),
        includes: vec![],
        overwrite: Overwrite::Always,
        sparse: Default::default(),
        threads: 3,
    };
    let (_, rp) = repo.resolve(&out.recovery_point.to_hex()).unwrap();
    let restored = restore::run(&repo, &rp, &opts, &progress).unwrap();
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    let (done, total) = (progress.files_done.load(Ordering::Relaxed), progress.files_total.load(Ordering::Relaxed));
    assert_eq!((done, total), (22, 22), "20 small files, an empty one and a big one");
    assert_eq!(progress.bytes_done.load(Ordering::Relaxed), 20 * 100 + (6 << 20));
}
