//! Regression: releasing a lock right after taking it must not wait for the refresher's
//! interval (a missed wake-up made some commands hang for five minutes at exit).

use std::time::{Duration, Instant};

use ferry_repo::{RepoLock, Repository};

#[test]
fn a_lock_released_at_once_does_not_wait_for_its_refresher() {
    let dir = tempfile::tempdir().unwrap();
    let store = ferry_store::open(dir.path().join("repo").to_str().unwrap()).unwrap();
    let opts = ferry_repo::InitOptions {
        kdf: ferry_crypto::keyfile::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
        ..Default::default()
    };
    let repo = Repository::init(store, b"lock test passphrase", &opts, &dir.path().join("cache")).unwrap();
    let start = Instant::now();
    for _ in 0..50 {
        let lock = RepoLock::acquire(&repo, false, "test").unwrap();
        drop(lock);
    }
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    assert!(repo.store().list("locks/").unwrap().is_empty());
}
