//! Export disks as a read-only [`Store`]: what `ferry restore --from-disk` and `ferry mount
//! --from-disk` open (docs/design/export-jobs.md). An export job's disks are written by
//! [`prepare`](crate::prepare) in the seed disks' format, under the job's label name
//! (`ferry_api::export_label_job`) and disk key; here the set is checked whole
//! ([`DiskSet::open`]) and every object read is decrypted frame by frame, authenticated, and
//! hashed against the manifest and its name before a byte of it is returned.
//!
//! Nothing is written to the disks: `locks/` (which a restore takes) lives in memory, every
//! other write is refused.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;
use ferry_store::{MemoryStore, ObjectInfo, Store, StoreError};

use crate::{DiskKey, DiskSet, ManifestEntry, SeedError};

/// Decoded objects kept for ranged reads (a restore reads a pack in many ranges).
const CACHED_OBJECTS: usize = 4;

/// A complete, checked export disk set, read as the repository it carries.
#[derive(Debug)]
pub struct ExportDisks {
    set: DiskSet,
    locks: MemoryStore,
    cache: Mutex<VecDeque<(String, Bytes)>>,
}

impl ExportDisks {
    /// Opens `disks`, every disk of the set labeled `label_job`, with `key`: see
    /// [`DiskSet::open`] for the checks and their errors.
    pub fn open(disks: &[PathBuf], label_job: &str, key: &DiskKey) -> Result<ExportDisks, SeedError> {
        Ok(ExportDisks { set: DiskSet::open(disks, label_job, key)?, locks: MemoryStore::new(), cache: Mutex::new(VecDeque::new()) })
    }

    /// The checked set.
    pub fn set(&self) -> &DiskSet {
        &self.set
    }

    fn entry(&self, op: &'static str, key: &str) -> ferry_store::Result<&ManifestEntry> {
        let entries = &self.set.manifest().entries;
        match entries.binary_search_by(|e| e.key.as_str().cmp(key)) {
            Ok(i) => Ok(&entries[i]),
            Err(_) => Err(StoreError::not_found(op, key)),
        }
    }

    /// The whole object, verified (from the cache if read lately).
    fn read(&self, op: &'static str, key: &str) -> ferry_store::Result<Bytes> {
        let cache = |c: &Mutex<VecDeque<(String, Bytes)>>| {
            c.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().find(|(k, _)| k == key).map(|(_, b)| b.clone())
        };
        if let Some(b) = cache(&self.cache) {
            return Ok(b);
        }
        let entry = self.entry(op, key)?;
        let mut buf = Vec::new();
        // A corrupted object is permanent: no retry reads other bytes.
        self.set.read_object(entry, &mut buf).map_err(|e| StoreError::permanent(op, key, e.to_string()))?;
        let b = Bytes::from(buf);
        let mut c = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.len() == CACHED_OBJECTS {
            c.pop_front();
        }
        c.push_back((key.to_string(), b.clone()));
        Ok(b)
    }
}

fn read_only(op: &'static str, key: &str) -> StoreError {
    StoreError::permanent(op, key, "export disks are read-only")
}

impl Store for ExportDisks {
    fn put(&self, key: &str, data: Bytes) -> ferry_store::Result<()> {
        if key.starts_with("locks/") {
            return self.locks.put(key, data);
        }
        Err(read_only("put", key))
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> ferry_store::Result<bool> {
        if key.starts_with("locks/") {
            return self.locks.put_if_absent(key, data);
        }
        Err(read_only("put_if_absent", key))
    }

    fn get(&self, key: &str) -> ferry_store::Result<Bytes> {
        if key.starts_with("locks/") {
            return self.locks.get(key);
        }
        self.read("get", key)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> ferry_store::Result<Bytes> {
        let b = self.read("get_range", key)?;
        let len = b.len() as u64;
        if range.start > range.end || range.end > len {
            return Err(StoreError::permanent(
                "get_range",
                key,
                format!("range {}..{} outside the object's {len} bytes", range.start, range.end),
            ));
        }
        Ok(b.slice(range.start as usize..range.end as usize))
    }

    fn head(&self, key: &str) -> ferry_store::Result<Option<u64>> {
        if key.starts_with("locks/") {
            return self.locks.head(key);
        }
        match self.entry("head", key) {
            Ok(e) => Ok(Some(e.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> ferry_store::Result<Vec<ObjectInfo>> {
        let mut out = self.locks.list(prefix)?;
        let entries = self.set.manifest().entries.iter().filter(|e| e.key.starts_with(prefix));
        out.extend(entries.map(|e| ObjectInfo { key: e.key.clone(), size: e.size, modified: None }));
        Ok(out)
    }

    fn delete(&self, key: &str) -> ferry_store::Result<()> {
        if key.starts_with("locks/") {
            return self.locks.delete(key);
        }
        Err(read_only("delete", key))
    }

    fn describe(&self) -> String {
        format!("export disks ({} disks)", self.set.disk_count())
    }
}
