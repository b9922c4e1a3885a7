//! The conformance suite against every backend.
//!
//! - local folder and memory: always;
//! - Azurite: with `FERRY_TEST_AZURITE=1` (and `AZURE_STORAGE_USE_EMULATOR=true`, ...);
//! - moto (S3): with `FERRY_TEST_S3=1` (and `AWS_ENDPOINT`, `AWS_ALLOW_HTTP=true`, ...).
//!
//! `eval "$(scripts/test-services.sh env)"` sets all of these after
//! `scripts/test-services.sh start`. When a variable is set, an unreachable service fails the
//! test; when it is not, the test says it skipped, on stderr.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_store::{conformance, FaultStore, MemoryStore, RetryPolicy, RetryStore, Store};

fn enabled(var: &str) -> bool {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() && v != "0" => true,
        _ => {
            eprintln!("skipped: {var} not set");
            false
        }
    }
}

/// Extra `put_if_absent` races against the emulators, to check that their conditional create is
/// really atomic (`FERRY_TEST_RACE_ROUNDS`, default 20).
fn race_rounds() -> usize {
    std::env::var("FERRY_TEST_RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// The whole suite, or only the round trips when `FERRY_FAULT_INJECT` puts a `FaultStore`
/// under `open`'s `RetryStore`: its lost-answer faults make `put_if_absent` report `Ok(false)`
/// for objects it did create, by design, so the exact `put_if_absent` checks cannot hold.
fn check_opened(store: &dyn Store) {
    if std::env::var(ferry_store::FAULT_INJECT_ENV).is_ok_and(|v| !v.trim().is_empty()) {
        eprintln!("FERRY_FAULT_INJECT is set: running the round trips only");
        conformance::run_round_trips(store);
        return;
    }
    conformance::run_all(store);
    conformance::run_race(store, race_rounds());
}

fn random_name(kind: &str) -> String {
    format!("ferry-conformance-{kind}-{:08x}", rand::random::<u32>())
}

#[test]
fn local_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ferry_store::open(dir.path().to_str().expect("utf-8 temp path")).expect("open");
    check_opened(&*store);
}

#[test]
fn local_folder_created_when_missing_and_file_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nested = dir.path().join("a/b/repo");
    let url = format!("file://{}", nested.display());
    let store = ferry_store::open(&url).expect("open file:// of a missing folder");
    assert!(nested.is_dir());
    assert!(store.describe().contains("local folder"), "{}", store.describe());
    store.put("data/3f/3fa2", Bytes::from_static(b"x")).expect("put");
    assert!(nested.join("data/3f/3fa2").is_file(), "objects are plain files at their key");
}

#[test]
fn local_folder_hides_staging_files() {
    // A crash between writing the staging file and publishing it leaves KEY#N behind.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ferry_store::open(dir.path().to_str().expect("utf-8")).expect("open");
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/abc#1"), b"half").expect("write");
    assert!(store.list("data/").expect("list").is_empty());
    assert_eq!(store.head("data/abc").expect("head"), None);
}

#[test]
fn memory() {
    conformance::run_all(&MemoryStore::new());
}

#[test]
fn retry_absorbs_30_percent_faults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = ferry_store::open(dir.path().to_str().expect("utf-8")).expect("open");
    let policy = RetryPolicy { max_tries: 12, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) };
    for inner in [local, Arc::new(MemoryStore::new()) as Arc<dyn Store>] {
        let faulty = Arc::new(FaultStore::new(inner, 0.3, 42));
        let store = RetryStore::with_policy(faulty, policy);
        conformance::run_round_trips(&store);
    }
}

#[test]
fn faults_without_retry_do_fail() {
    let faulty = FaultStore::new(Arc::new(MemoryStore::new()), 0.3, 7);
    let failures = (0..100).filter(|_| faulty.head("k").is_err()).count();
    assert!((15..45).contains(&failures), "{failures}");
}

#[test]
fn azurite() {
    if !enabled("FERRY_TEST_AZURITE") {
        return;
    }
    let store = ferry_store::open(&format!("az://{}", random_name("az")))
        .unwrap_or_else(|e| panic!("open Azurite (is it running? scripts/test-services.sh start): {e}"));
    eprintln!("testing {}", store.describe());
    check_opened(&*store);
}

#[test]
fn azurite_with_prefix_reopen() {
    if !enabled("FERRY_TEST_AZURITE") {
        return;
    }
    reopen_check(&format!("az://{}/some/prefix", random_name("az")));
}

#[test]
fn moto_s3() {
    if !enabled("FERRY_TEST_S3") {
        return;
    }
    let store = ferry_store::open(&format!("s3://{}/p", random_name("s3")))
        .unwrap_or_else(|e| panic!("open moto (is it running? scripts/test-services.sh start): {e}"));
    eprintln!("testing {}", store.describe());
    check_opened(&*store);
}

#[test]
fn moto_s3_reopen() {
    if !enabled("FERRY_TEST_S3") {
        return;
    }
    reopen_check(&format!("s3://{}", random_name("s3")));
}

/// Open creates the container once; a second open of the same location finds it and sees the
/// objects; prefixes isolate.
fn reopen_check(location: &str) {
    let first = ferry_store::open(location).unwrap_or_else(|e| panic!("open {location}: {e}"));
    first.put("config", Bytes::from_static(b"c")).expect("put");
    let again = ferry_store::open(location).unwrap_or_else(|e| panic!("reopen {location}: {e}"));
    assert_eq!(again.get("config").expect("get").as_ref(), b"c");
    let keys: Vec<_> = again.list("").expect("list").into_iter().map(|o| o.key).collect();
    assert_eq!(keys, ["config"], "the prefix is not part of listed keys");
    again.delete("config").expect("delete");
}

/// A `put_if_absent` done as "head, then put": not atomic.
#[derive(Debug)]
struct CheckThenPut(MemoryStore);

impl Store for CheckThenPut {
    fn put(&self, key: &str, data: Bytes) -> ferry_store::Result<()> {
        self.0.put(key, data)
    }
    fn put_if_absent(&self, key: &str, data: Bytes) -> ferry_store::Result<bool> {
        if self.0.head(key)?.is_some() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
        self.0.put(key, data).map(|()| true)
    }
    fn get(&self, key: &str) -> ferry_store::Result<Bytes> {
        self.0.get(key)
    }
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> ferry_store::Result<Bytes> {
        self.0.get_range(key, range)
    }
    fn head(&self, key: &str) -> ferry_store::Result<Option<u64>> {
        self.0.head(key)
    }
    fn list(&self, prefix: &str) -> ferry_store::Result<Vec<ferry_store::ObjectInfo>> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &str) -> ferry_store::Result<()> {
        self.0.delete(key)
    }
    fn describe(&self) -> String {
        "check-then-put".into()
    }
}

/// The race check has teeth: a non-atomic `put_if_absent` fails it. (Run by hand against
/// Azurite and moto, the same wrapper lets all 8 racers "create" the object.)
#[test]
fn race_check_catches_non_atomic_create() {
    let store = CheckThenPut(MemoryStore::new());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| conformance::run_race(&store, 1)));
    assert!(outcome.is_err(), "a check-then-put store passed the race");
}
