//! The conformance suite: one set of checks of the [`Store`] contract, run against every
//! backend (local folder, Azurite, moto, memory, and wrapped stores).
//!
//! Each run works under a fresh random prefix (`conformance-<random>/`), so runs against a
//! shared container do not collide, and deletes what it wrote. Checks panic with a message
//! naming the contract point that failed.
//!
//! ```no_run
//! # #[cfg(feature = "conformance")]
//! ferry_store::conformance::run_all(&ferry_store::MemoryStore::new());
//! ```

use std::collections::BTreeMap;
use std::sync::Barrier;

use bytes::Bytes;
use rand::Rng;

use crate::{ErrorKind, Result, Store};

/// Size of the large object.
pub const BIG_OBJECT: usize = 20 * 1024 * 1024;
/// Threads racing on one `put_if_absent`.
pub const RACERS: usize = 8;
/// How many keys they race on in [`run_all`].
pub const RACE_ROUNDS: usize = 3;
/// Each racer's object is about this large, so that the writes overlap on the server.
pub const RACE_OBJECT: usize = 256 * 1024;

/// Every contract check.
pub fn run_all(store: &dyn Store) {
    let p = unique_prefix();
    round_trips_in(store, &p);
    put_if_absent_in(store, &p);
    concurrent_put_if_absent_in(store, &p);
    invalid_keys(store);
    cleanup(store, &p);
}

/// The checks that make sense through a store that may lose answers (a
/// [`FaultStore`](crate::FaultStore) under a [`RetryStore`](crate::RetryStore)): everything but
/// the exact `Ok(true)`/`Ok(false)` of `put_if_absent`.
pub fn run_round_trips(store: &dyn Store) {
    let p = unique_prefix();
    round_trips_in(store, &p);
    cleanup(store, &p);
}

/// Only the concurrent `put_if_absent` race, `rounds` times.
pub fn run_race(store: &dyn Store, rounds: usize) {
    let p = unique_prefix();
    for round in 0..rounds {
        race(store, &format!("{p}race-extra/{round}"));
    }
    cleanup(store, &p);
}

/// A prefix no other run uses: `conformance-<16 hex digits>/`.
pub fn unique_prefix() -> String {
    format!("conformance-{:016x}/", rand::rng().random::<u64>())
}

fn ok<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e} ({:?})", e.kind),
    }
}

fn err_kind<T: std::fmt::Debug>(r: Result<T>, want: ErrorKind, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected a {want:?} error, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind, want, "{what}: wrong error kind: {e}"),
    }
}

/// Object contents: the shared test data, seeded by the length.
fn random_bytes(len: usize) -> Bytes {
    Bytes::from(ferry_testkit::bytes(len, len as u64))
}

fn round_trips_in(store: &dyn Store, p: &str) {
    assert!(!store.describe().is_empty(), "describe() is empty");

    // put / get, and put replaces.
    let k = format!("{p}rt/small");
    ok(store.put(&k, Bytes::from_static(b"hello")), "put");
    assert_eq!(ok(store.get(&k), "get"), &b"hello"[..], "get after put");
    ok(store.put(&k, Bytes::from_static(b"hello again")), "put over");
    assert_eq!(ok(store.get(&k), "get"), &b"hello again"[..], "put replaces");
    assert_eq!(ok(store.head(&k), "head"), Some(11), "head gives the size");

    // The empty object.
    let empty = format!("{p}rt/empty");
    ok(store.put(&empty, Bytes::new()), "put empty");
    assert!(ok(store.get(&empty), "get empty").is_empty(), "empty object");
    assert_eq!(ok(store.head(&empty), "head empty"), Some(0));
    assert!(ok(store.get_range(&empty, 0..0), "empty range of empty").is_empty());

    // Ranges.
    let digits = format!("{p}rt/digits");
    ok(store.put(&digits, Bytes::from_static(b"0123456789")), "put");
    assert_eq!(ok(store.get_range(&digits, 2..5), "range"), &b"234"[..]);
    assert_eq!(ok(store.get_range(&digits, 0..10), "range"), &b"0123456789"[..]);
    assert_eq!(ok(store.get_range(&digits, 9..10), "range"), &b"9"[..]);
    assert!(ok(store.get_range(&digits, 10..10), "empty range at end").is_empty());
    err_kind(store.get_range(&digits, 5..11), ErrorKind::Permanent, "range past end");
    err_kind(store.get_range(&digits, 10..11), ErrorKind::Permanent, "range after end");
    err_kind(store.get_range(&digits, 11..12), ErrorKind::Permanent, "range beyond end");
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 6..4;
    err_kind(store.get_range(&digits, reversed), ErrorKind::Permanent, "reversed range");
    // The same into a reused buffer.
    let mut buf = b"stale".to_vec();
    ok(store.get_range_into(&digits, 2..5, &mut buf), "range into a buffer");
    assert_eq!(buf, b"234", "range into a buffer");
    ok(store.get_range_into(&digits, 10..10, &mut buf), "empty range into a buffer");
    assert!(buf.is_empty(), "empty range into a buffer");
    err_kind(store.get_range_into(&digits, 5..11, &mut buf), ErrorKind::Permanent, "range into a buffer past end");

    // A large object, whole and in parts.
    let big = format!("{p}rt/big");
    let data = random_bytes(BIG_OBJECT);
    ok(store.put(&big, data.clone()), "put 20 MiB");
    assert_eq!(ok(store.head(&big), "head big"), Some(BIG_OBJECT as u64));
    assert!(ok(store.get(&big), "get big") == data, "20 MiB round trip differs");
    let mid = 7 * 1024 * 1024 + 3..9 * 1024 * 1024 + 7;
    let got = ok(store.get_range(&big, mid.start as u64..mid.end as u64), "range of big");
    assert!(got == data.slice(mid.clone()), "middle range of big differs");
    let mut buf = vec![1u8; 100];
    ok(store.get_range_into(&big, mid.start as u64..mid.end as u64, &mut buf), "range of big into a buffer");
    assert!(buf[..] == data[mid], "middle range of big into a buffer differs");
    let tail = BIG_OBJECT - 100..BIG_OBJECT;
    let got = ok(store.get_range(&big, tail.start as u64..tail.end as u64), "tail of big");
    assert!(got == data.slice(tail), "tail range of big differs");

    // A large object created once, as packs are (the local folder writes these directly).
    let big_new = format!("{p}rt/big-new");
    ok(store.put_if_absent(&big_new, data.clone()), "put_if_absent 20 MiB");
    assert!(ok(store.get(&big_new), "get big-new") == data, "20 MiB put_if_absent round trip differs");

    // Keys with every allowed punctuation character.
    let odd = format!("{p}rt/odd/a=b+c,d@e:f~g_h-i.j");
    ok(store.put(&odd, Bytes::from_static(b"odd")), "put odd key");
    assert_eq!(ok(store.get(&odd), "get odd key"), &b"odd"[..]);

    list_checks(store, p);
    not_found_checks(store, p);

    // Delete, twice.
    ok(store.delete(&k), "delete");
    err_kind(store.get(&k), ErrorKind::NotFound, "get after delete");
    assert_eq!(ok(store.head(&k), "head after delete"), None);
    ok(store.delete(&k), "delete again (idempotent)");
    let left: Vec<_> = ok(store.list(&format!("{p}rt/")), "list").into_iter().map(|o| o.key).collect();
    assert!(!left.contains(&k), "list shows a deleted key");
}

fn list_checks(store: &dyn Store, p: &str) {
    let objects: BTreeMap<String, usize> =
        [("ls/a/1", 1), ("ls/a/2", 2), ("ls/a/b/3", 3), ("ls/a/b/c/4", 4), ("ls/ab", 5), ("ls/abc/6", 6), ("lsx", 7)]
            .into_iter()
            .map(|(k, n)| (format!("{p}{k}"), n))
            .collect();
    for (key, len) in &objects {
        ok(store.put(key, random_bytes(*len)), "put for list");
    }
    let list = |prefix: &str| -> BTreeMap<String, usize> {
        ok(store.list(&format!("{p}{prefix}")), "list").into_iter().map(|o| (o.key, o.size as usize)).collect()
    };
    let want = |keys: &[&str]| -> BTreeMap<String, usize> {
        keys.iter()
            .map(|k| {
                let key = format!("{p}{k}");
                let len = objects[&key];
                (key, len)
            })
            .collect()
    };
    let folder_a = want(&["ls/a/1", "ls/a/2", "ls/a/b/3", "ls/a/b/c/4"]);
    assert_eq!(list("ls/a/"), folder_a, "list of a folder, recursive, excluding ls/ab");
    assert_eq!(list("ls/a/b/c/"), want(&["ls/a/b/c/4"]), "list of a nested folder");
    let all_ls = want(&["ls/a/1", "ls/a/2", "ls/a/b/3", "ls/a/b/c/4", "ls/ab", "ls/abc/6"]);
    assert_eq!(list("ls/"), all_ls, "list of ls/ excludes lsx");
    assert_eq!(list("ls/a"), all_ls, "a prefix ending mid-segment matches by string");
    assert_eq!(list("ls/ab"), want(&["ls/ab", "ls/abc/6"]), "string prefix");
    assert!(list("ls/nothing/").is_empty(), "list of a missing folder");
    assert!(list("nothing-").is_empty(), "list of a missing prefix");

    let everything: BTreeMap<String, u64> = ok(store.list(""), "list everything").into_iter().map(|o| (o.key, o.size)).collect();
    for (key, len) in &objects {
        assert_eq!(everything.get(key), Some(&(*len as u64)), "list(\"\") misses {key}");
    }
}

fn not_found_checks(store: &dyn Store, p: &str) {
    let missing = format!("{p}nf/missing");
    err_kind(store.get(&missing), ErrorKind::NotFound, "get of a missing key");
    err_kind(store.get_range(&missing, 0..1), ErrorKind::NotFound, "get_range of a missing key");
    err_kind(store.get_range_into(&missing, 0..1, &mut Vec::new()), ErrorKind::NotFound, "get_range_into of a missing key");
    assert_eq!(ok(store.head(&missing), "head of a missing key"), None);
    ok(store.delete(&missing), "delete of a missing key");
    let e = store.get(&missing).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains(&missing), "error names the key: {e}");
}

fn put_if_absent_in(store: &dyn Store, p: &str) {
    let k = format!("{p}pia/one");
    assert!(ok(store.put_if_absent(&k, Bytes::from_static(b"first")), "put_if_absent"), "first put_if_absent must create");
    assert!(
        !ok(store.put_if_absent(&k, Bytes::from_static(b"second")), "put_if_absent again"),
        "second put_if_absent must report existing"
    );
    assert_eq!(ok(store.get(&k), "get"), &b"first"[..], "put_if_absent must not overwrite");

    let put = format!("{p}pia/by-put");
    ok(store.put(&put, Bytes::from_static(b"put")), "put");
    assert!(!ok(store.put_if_absent(&put, Bytes::from_static(b"x")), "put_if_absent"));
    assert_eq!(ok(store.get(&put), "get"), &b"put"[..]);

    // After a delete the key is free again.
    ok(store.delete(&k), "delete");
    assert!(ok(store.put_if_absent(&k, Bytes::from_static(b"third")), "put_if_absent after delete"));
    assert_eq!(ok(store.get(&k), "get"), &b"third"[..]);
}

fn concurrent_put_if_absent_in(store: &dyn Store, p: &str) {
    for round in 0..RACE_ROUNDS {
        race(store, &format!("{p}race/{round}"));
    }
}

/// `RACERS` threads call `put_if_absent` on `key` at once, each with its own content: exactly
/// one must win, and the stored object must be the winner's.
fn race(store: &dyn Store, key: &str) {
    let barrier = Barrier::new(RACERS);
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..RACERS)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    let data = racer_data(i);
                    barrier.wait();
                    (i, ok(store.put_if_absent(key, data), "concurrent put_if_absent"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let winners: Vec<usize> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "{key}: exactly one of {RACERS} concurrent put_if_absent must create, got {winners:?}");
    let want = racer_data(winners[0]);
    assert!(ok(store.get(key), "get after race") == want, "{key}: stored object is not the winner's");
}

fn racer_data(racer: usize) -> Bytes {
    let unit = format!("racer {racer} ");
    Bytes::from(unit.repeat(RACE_OBJECT / unit.len()))
}

fn invalid_keys(store: &dyn Store) {
    for bad in ["", "/abs", "a//b", "../up", "a/./b", "sp ace", "a#1"] {
        err_kind(store.put(bad, Bytes::new()), ErrorKind::Permanent, &format!("put of invalid key {bad:?}"));
        err_kind(store.get(bad), ErrorKind::Permanent, &format!("get of invalid key {bad:?}"));
    }
}

fn cleanup(store: &dyn Store, p: &str) {
    for object in ok(store.list(p), "list for cleanup") {
        ok(store.delete(&object.key), "delete for cleanup");
    }
    assert!(ok(store.list(p), "list after cleanup").is_empty(), "cleanup left objects");
}
