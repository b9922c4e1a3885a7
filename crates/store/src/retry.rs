//! [`RetryStore`]: retries `Transient` errors with exponential backoff and jitter.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use crate::error::{ErrorKind, Result};
use crate::store::{ObjectInfo, Store};

/// How [`RetryStore`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_tries: u32,
    /// Delay before the first retry; it doubles with each retry...
    pub min_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 tries, waiting about 100ms, 200ms, 400ms, 800ms (each with jitter), 3s at most.
    fn default() -> Self {
        RetryPolicy { max_tries: 5, min_delay: Duration::from_millis(100), max_delay: Duration::from_secs(3) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): exponential, capped, with "equal jitter"
    /// (half fixed, half random) so that threads that failed together do not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.min_delay.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }

    /// Run `f` until it succeeds, fails with a non-`Transient` error, or the tries run out.
    pub fn run<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.kind == ErrorKind::Transient && attempt < self.max_tries => {
                    let wait = self.delay(attempt);
                    tracing::debug!(error = %e, attempt, ?wait, "transient store error, retrying");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Retries `Transient` errors of the store it wraps, with exponential backoff and jitter (see
/// [`RetryPolicy`]). `NotFound`, `AlreadyExists` and `Permanent` errors are returned at once;
/// the last `Transient` error is returned when the tries run out.
///
/// Every operation of the contract is safe to repeat, with one visible effect: when a
/// `put_if_absent` succeeded on the server but its answer was lost, the retry finds the object
/// and reports `Ok(false)`. For content-addressed objects that is the right answer anyway (the
/// object is stored); callers must not use `Ok(true)` to elect a single winner through it.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Retry with the default policy (5 tries, 100ms..3s).
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self::with_policy(inner, RetryPolicy::default())
    }

    pub fn with_policy(inner: Arc<dyn Store>, policy: RetryPolicy) -> Self {
        let policy = RetryPolicy { max_tries: policy.max_tries.max(1), ..policy };
        RetryStore { inner, policy }
    }
}

impl Store for RetryStore {
    fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.policy.run(|| self.inner.put(key, data.clone()))
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        self.policy.run(|| self.inner.put_if_absent(key, data.clone()))
    }

    fn get(&self, key: &str) -> Result<Bytes> {
        self.policy.run(|| self.inner.get(key))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.policy.run(|| self.inner.get_range(key, range.clone()))
    }

    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<()> {
        self.policy.run(|| self.inner.get_range_into(key, range.clone(), buf))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.policy.run(|| self.inner.head(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.policy.run(|| self.inner.list(prefix))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.policy.run(|| self.inner.delete(key))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;
    use std::cell::Cell;

    fn fast(max_tries: u32) -> RetryPolicy {
        RetryPolicy { max_tries, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
    }

    #[test]
    fn retries_transient_until_success() {
        let calls = Cell::new(0);
        let r = fast(5).run(|| {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(StoreError::transient("get", "k", "flaky"))
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn gives_up_after_max_tries() {
        let calls = Cell::new(0);
        let r: Result<()> = fast(4).run(|| {
            calls.set(calls.get() + 1);
            Err(StoreError::transient("get", "k", "down"))
        });
        assert!(r.unwrap_err().is_transient());
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn never_retries_other_kinds() {
        for kind in [ErrorKind::NotFound, ErrorKind::AlreadyExists, ErrorKind::Permanent] {
            let calls = Cell::new(0);
            let r: Result<()> = fast(5).run(|| {
                calls.set(calls.get() + 1);
                Err(StoreError::new(kind, "get", "k", "no"))
            });
            assert_eq!(r.unwrap_err().kind, kind);
            assert_eq!(calls.get(), 1, "{kind:?}");
        }
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::default();
        for retry in 1..10 {
            let d = p.delay(retry);
            let full = (p.min_delay * (1 << (retry - 1))).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?} vs {full:?}");
        }
        assert!(p.delay(1000) <= p.max_delay);
    }
}
