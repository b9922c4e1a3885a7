//! [`MemoryStore`]: the contract in a `HashMap`, for unit tests.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::store::{check_range, validate_key, validate_prefix, ObjectInfo, Store};

/// An in-memory [`Store`] for unit tests of other crates. It follows the whole contract
/// (including key validation and atomic `put_if_absent`); nothing is persisted.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, Bytes>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of objects stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn put(&self, key: &str, data: Bytes) -> Result<()> {
        validate_key("put", key)?;
        self.lock().insert(key.to_string(), data);
        Ok(())
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        validate_key("put_if_absent", key)?;
        let mut objects = self.lock();
        if objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_string(), data);
        Ok(true)
    }

    fn get(&self, key: &str) -> Result<Bytes> {
        validate_key("get", key)?;
        self.lock().get(key).cloned().ok_or_else(|| StoreError::not_found("get", key))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key("get_range", key)?;
        let data = self.lock().get(key).cloned().ok_or_else(|| StoreError::not_found("get_range", key))?;
        check_range(key, &range, data.len() as u64)?;
        // check_range bounds both ends by the length, which is a usize.
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        validate_key("head", key)?;
        Ok(self.lock().get(key).map(|d| d.len() as u64))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        validate_prefix(prefix)?;
        Ok(self
            .lock()
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, data)| ObjectInfo { key: key.clone(), size: data.len() as u64, modified: None })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        validate_key("delete", key)?;
        self.lock().remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "in-memory store".to_string()
    }
}
