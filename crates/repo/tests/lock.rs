//! Regression: releasing a lock right after taking it must not wait for the refresher's
//! interval (a missed wake-up made some commands hang for five minutes at exit).

use std::time::{Duration, Instant};

mod common;

use ferry_repo::RepoLock;

#[test]
fn a_lock_released_at_once_does_not_wait_for_its_refresher() {
    let dir = tempfile::tempdir().unwrap();
    let repo = common::scratch_repo(dir.path(), b"lock test passphrase", Default::default());
    let start = Instant::now();
    for _ in 0..50 {
        let lock = RepoLock::acquire(&repo, false, "test").unwrap();
        drop(lock);
    }
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    assert!(repo.store().list("locks/").unwrap().is_empty());
}

#[test]
fn a_backup_lock_waits_for_an_exclusive_lock_to_go() {
    let dir = tempfile::tempdir().unwrap();
    let repo = common::scratch_repo(dir.path(), b"lock test passphrase", Default::default());
    // A vault's garbage collection holds an exclusive lock.
    let now = chrono::Utc::now().timestamp();
    let lock = serde_json::json!({"magic": "ferry-lock", "version": 1, "exclusive": true, "started": "2026-11-30T10:00:00Z",
        "refreshed": now, "host": "ferry-vault", "pid": 1, "purpose": "vault retention", "boot_id": ""});
    repo.store().put("locks/vault", bytes::Bytes::from(lock.to_string())).unwrap();
    let e = RepoLock::acquire(&repo, false, "backup").unwrap_err();
    assert!(matches!(e, ferry_repo::Error::Locked(_)), "{e:#}");
    assert!(e.find::<ferry_repo::Locked>().is_some(), "{e:#}");
    let e = RepoLock::acquire_patiently(&repo, false, "backup", Duration::from_millis(300)).unwrap_err();
    assert!(e.to_string().contains("vault retention"), "{e:#}");
    // Released meanwhile: the waiting backup gets its lock.
    let store = repo.store().clone();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        store.delete("locks/vault").unwrap();
    });
    let start = Instant::now();
    let held = RepoLock::acquire_patiently(&repo, false, "backup", Duration::from_mins(1)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1400));
    release.join().unwrap();
    drop(held);
    assert!(repo.store().list("locks/").unwrap().is_empty());
}
