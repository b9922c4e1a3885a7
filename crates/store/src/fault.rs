//! [`FaultStore`]: a testing aid that makes a fraction of calls fail with `Transient` errors.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ErrorKind, Result, StoreError};
use crate::store::{ObjectInfo, Store};

/// The environment variable that makes [`open`](crate::open) insert a [`FaultStore`]:
/// `FERRY_FAULT_INJECT=RATE[:SEED]`, e.g. `0.05:42` fails 5% of calls, decided by seed 42.
pub const FAULT_INJECT_ENV: &str = "FERRY_FAULT_INJECT";

/// **A testing aid**: fails a configurable fraction of calls with `Transient` errors, to show
/// that the layers above (retries, the backup engine) survive an unreliable network.
///
/// Which calls fail is decided by a counter and a seed, so a single-threaded run is exactly
/// reproducible (with several threads, the interleaving decides which call gets which number).
/// A failing write fails either *before* reaching the inner store (the request was lost) or
/// *after* it (the write happened, the answer was lost), alternately, so callers also see the
/// "already exists on retry" case that a real network produces.
///
/// [`open`](crate::open) places it below [`RetryStore`](crate::RetryStore) when
/// `FERRY_FAULT_INJECT` is set, so that retries absorb the faults.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn Store>,
    /// Failure threshold on a 0..2^64 scale.
    threshold: u64,
    seed: u64,
    calls: AtomicU64,
}

/// When an injected fault strikes relative to the real call.
enum Fault {
    None,
    Before,
    After,
}

impl FaultStore {
    /// Fail a fraction `rate` (0.0..=1.0, clamped) of calls, decided by `seed`.
    pub fn new(inner: Arc<dyn Store>, rate: f64, seed: u64) -> Self {
        let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        let threshold = if rate >= 1.0 { u64::MAX } else { (rate * u64::MAX as f64) as u64 };
        FaultStore { inner, threshold, seed, calls: AtomicU64::new(0) }
    }

    /// Parse the `FERRY_FAULT_INJECT` value `RATE[:SEED]` (seed 0 when omitted).
    pub fn parse_spec(spec: &str) -> Option<(f64, u64)> {
        let (rate, seed) = match spec.split_once(':') {
            Some((rate, seed)) => (rate, seed.trim().parse().ok()?),
            None => (spec, 0),
        };
        let rate: f64 = rate.trim().parse().ok()?;
        (0.0..=1.0).contains(&rate).then_some((rate, seed))
    }

    fn next_fault(&self) -> Fault {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let roll = splitmix64(self.seed ^ splitmix64(n));
        if self.threshold == 0 || roll > self.threshold {
            Fault::None
        } else if roll & 1 == 0 {
            Fault::Before
        } else {
            Fault::After
        }
    }

    fn error(op: &'static str, key: &str) -> StoreError {
        StoreError::new(ErrorKind::Transient, op, key, "injected fault")
    }

    /// Reads fail before the call; writes fail before or after it.
    fn call<T>(&self, op: &'static str, key: &str, is_write: bool, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match self.next_fault() {
            Fault::None => f(),
            Fault::After if is_write => {
                f()?;
                Err(Self::error(op, key))
            }
            Fault::Before | Fault::After => Err(Self::error(op, key)),
        }
    }
}

/// SplitMix64: a tiny, good-enough mixer for deterministic fault decisions.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Store for FaultStore {
    fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.call("put", key, true, || self.inner.put(key, data))
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        self.call("put_if_absent", key, true, || self.inner.put_if_absent(key, data))
    }

    fn get(&self, key: &str) -> Result<Bytes> {
        self.call("get", key, false, || self.inner.get(key))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.call("get_range", key, false, || self.inner.get_range(key, range))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.call("head", key, false, || self.inner.head(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.call("list", prefix, false, || self.inner.list(prefix))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.call("delete", key, true, || self.inner.delete(key))
    }

    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn failures(rate: f64, seed: u64, calls: usize) -> Vec<bool> {
        let store = FaultStore::new(Arc::new(MemoryStore::new()), rate, seed);
        (0..calls).map(|_| store.head("k").is_err()).collect()
    }

    #[test]
    fn rate_is_roughly_respected_and_deterministic() {
        let a = failures(0.05, 42, 20_000);
        let failed = a.iter().filter(|f| **f).count();
        assert!((800..1200).contains(&failed), "{failed}");
        assert_eq!(a, failures(0.05, 42, 20_000));
        assert_ne!(a, failures(0.05, 43, 20_000));
        assert!(failures(0.0, 1, 1000).iter().all(|f| !f));
        assert!(failures(1.0, 1, 1000).iter().all(|f| *f));
    }

    #[test]
    fn failures_are_transient() {
        let store = FaultStore::new(Arc::new(MemoryStore::new()), 1.0, 0);
        let e = store.get("k").unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "get k: injected fault");
    }

    #[test]
    fn parses_spec() {
        assert_eq!(FaultStore::parse_spec("0.05:42"), Some((0.05, 42)));
        assert_eq!(FaultStore::parse_spec("0.3"), Some((0.3, 0)));
        assert_eq!(FaultStore::parse_spec("1.5"), None);
        assert_eq!(FaultStore::parse_spec("x"), None);
        assert_eq!(FaultStore::parse_spec("0.1:x"), None);
    }
}
