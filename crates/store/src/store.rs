//! The storage contract: the [`Store`] trait, and the rules for keys.

use std::ops::Range;

use bytes::Bytes;

use crate::error::{Result, StoreError};

/// An object found by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full key, as given to `put` (never with the location's prefix).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written (Unix seconds), where the store says.
    pub modified: Option<i64>,
}

/// A place that keeps byte objects under string keys: a local folder, an Azure Blob container,
/// an S3 bucket, memory, or a wrapper around one of these.
///
/// # The contract
///
/// - **Keys** are `/`-separated relative paths such as `data/3f/3fa2…`, `index/…`, `config`:
///   non-empty segments of ASCII letters, digits and `- _ . = + , @ : ~`, no `.` or `..`
///   segment, at most 1024 bytes (see [`validate_key`]). Anything else is a `Permanent` error.
/// - **Immutability**: an object created by [`put_if_absent`](Store::put_if_absent) is never
///   overwritten by it; content-addressed objects are only ever written that way.
///   [`put`](Store::put) replaces, and is for the few mutable objects (locks).
/// - **Durability and visibility**: when `put`/`put_if_absent` returns `Ok`, the object is
///   durable and is seen, whole, by every later `get`, `head` and `list`. A failed or interrupted
///   write never leaves a partial object visible at the key.
/// - **Order**: [`list`](Store::list) returns objects in no particular order.
/// - **Errors** carry an [`ErrorKind`](crate::ErrorKind): `NotFound`, `AlreadyExists`,
///   `Transient` (the same call may succeed if retried: network, timeouts, throttling, 5xx) or
///   `Permanent` (retrying will not help). Messages never contain secrets.
/// - **Threads**: every method may be called concurrently from many OS threads. Methods block;
///   implementations backed by the network run their own tokio runtime, so **never call them
///   from inside a tokio runtime** (an async task or `block_on`): tokio panics with "Cannot start
///   a runtime from within a runtime". From async code, use `tokio::task::spawn_blocking`.
/// - **Cancellation**: there is none; a call runs to completion or error. A write abandoned by a
///   crash either happened whole or not at all.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Write or replace the object at `key` (used for mutable objects like locks).
    ///
    /// Durable and visible to `get`/`list` once it returns `Ok`. Readers see the old or the new
    /// object, never a mix.
    fn put(&self, key: &str, data: Bytes) -> Result<()>;

    /// Create the object only if no object exists at `key`.
    ///
    /// `Ok(true)`: created (durable and visible). `Ok(false)`: an object already existed; nothing
    /// was written and the existing object is unchanged. Atomic where the backend supports
    /// conditional writes (local folder, Azure Blob and S3 all do): of many concurrent callers,
    /// exactly one gets `Ok(true)`.
    ///
    /// Behind [`RetryStore`](crate::RetryStore), a first attempt that succeeded on the server
    /// but whose answer was lost is retried and reports `Ok(false)`. That is harmless for
    /// content-addressed objects (the object is there, with the content its name promises); do
    /// not rely on `Ok(true)` to elect a single winner through a retrying store.
    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool>;

    /// The whole object. `NotFound` if there is none.
    fn get(&self, key: &str) -> Result<Bytes>;

    /// Bytes `[start, end)` of the object. `NotFound` if there is no object; `Permanent` if
    /// `start > end` or the range reaches past the end of the object. An empty range within the
    /// object gives empty bytes.
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// Like [`get_range`](Store::get_range), into `buf` (replacing its content), for callers
    /// that reuse one buffer for many reads (a restore reads gigabytes of ranges: a new buffer
    /// for each is a fresh mapping whose every page faults in). Wrappers must forward it.
    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<()> {
        let data = self.get_range(key, range)?;
        buf.clear();
        buf.extend_from_slice(&data);
        Ok(())
    }

    /// Size of the object, or `None` if there is none.
    fn head(&self, key: &str) -> Result<Option<u64>>;

    /// Every object whose key starts with `prefix`, recursively, in no particular order.
    ///
    /// `prefix` is usually a folder such as `"data/"`, or `""` for everything; a prefix that
    /// ends mid-segment (`"data/3"`) matches by string (`data/3f/…`, `data/3a/…`).
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// Delete the object. Deleting a missing object is `Ok` (idempotent).
    fn delete(&self, key: &str) -> Result<()>;

    /// A human description of the location, with no secrets, for messages
    /// (`"local folder /srv/repo"`, `"Azure container backups at prefix m1"`).
    fn describe(&self) -> String;
}

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Check that `key` follows the key rules of the [`Store`] contract.
pub fn validate_key(op: &'static str, key: &str) -> Result<()> {
    let bad = |why: &str| Err(StoreError::permanent(op, key, format!("invalid key: {why}")));
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("too long");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("empty path segment (leading, trailing or double '/')");
        }
        if segment == "." || segment == ".." {
            return bad("'.' or '..' segment");
        }
        if !segment.bytes().all(key_byte_ok) {
            return bad("only ASCII letters, digits, '/' and - _ . = + , @ : ~ are allowed");
        }
    }
    Ok(())
}

/// Check a [`Store::list`] prefix: `""`, or a key, optionally ending with `/`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    match prefix.strip_suffix('/') {
        _ if prefix.is_empty() => Ok(()),
        Some(folder) => validate_key("list", folder),
        None => validate_key("list", prefix),
    }
}

fn key_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.=+,@:~".contains(&b)
}

/// Check `range` against an object of `size` bytes.
pub(crate) fn check_range(key: &str, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end {
        return Err(StoreError::permanent("get_range", key, format!("invalid range {}..{}", range.start, range.end)));
    }
    if range.end > size {
        return Err(StoreError::permanent(
            "get_range",
            key,
            format!("range {}..{} reaches past the end of the object ({size} bytes)", range.start, range.end),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["config", "data/3f/3fa2", "locks/2024-01-01T00:00:00Z-host.a", "a=b+c,d@e~f"] {
            assert!(validate_key("put", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "a//b", "a/", "../x", "a/./b", "a b", "a#1", "a%20", "ü", "a?b", "a\\b"] {
            let e = validate_key("put", bad).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::Permanent, "{bad}");
        }
        assert!(validate_key("put", &"a".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn prefixes() {
        for ok in ["", "data/", "data", "data/3", "data/3f/"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["/", "//", "/data", "data//", "../"] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert!(check_range("k", &(0..0), 0).is_ok());
        assert!(check_range("k", &(2..5), 5).is_ok());
        assert!(check_range("k", &(2..6), 5).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 3..2;
        assert!(check_range("k", &reversed, 5).is_err());
    }
}
