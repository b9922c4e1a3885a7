//! The same round trip against Azure Blob (Azurite) and S3 (moto) when the test services run
//! (`scripts/test-services.sh`); skipped with a message otherwise.

use crate::common::*;

fn round_trip(location: String) {
    let env = Env::with_repo(location);
    env.init();
    let src = env.path("src");
    make_tree(&src);
    env.backup(&src);
    let second = env.backup(&src);
    assert_eq!(second["bytes_read"], 0);
    env.ok(&["check", "--read-data"]);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    env.ok(&["forget", "--keep-last", "1"]);
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
}

fn unique() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[test]
fn azure_blob_round_trip() {
    if std::env::var("FERRY_TEST_AZURITE").is_err() {
        eprintln!("skipped: FERRY_TEST_AZURITE not set (run scripts/test.sh)");
        return;
    }
    round_trip(format!("az://ferry-cli-{}/repo", unique()));
}

#[test]
fn s3_round_trip() {
    if std::env::var("FERRY_TEST_S3").is_err() {
        eprintln!("skipped: FERRY_TEST_S3 not set (run scripts/test.sh)");
        return;
    }
    round_trip(format!("s3://ferry-cli-{}/repo", unique()));
}

#[test]
fn transient_store_errors_are_retried() {
    let (env, src) = Env::with_tree();
    let o = env.cmd(&["backup", src.to_str().unwrap()]).env("FERRY_FAULT_INJECT", "0.05:7").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let target = env.path("r");
    let o = env.cmd(&["restore", "latest", "--target", target.to_str().unwrap()]).env("FERRY_FAULT_INJECT", "0.05:8").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    env.ok(&["check", "--read-data"]);
    assert_same_tree(&src, &restored(&target, &src));
}
