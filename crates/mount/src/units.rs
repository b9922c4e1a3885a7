//! The cache of decoded units: a bounded LRU, in bytes, shared by every open file.
//!
//! A *unit* is what a pack stores and encrypts as one piece: one chunk, or a bundle of small
//! blobs (docs/format.md § Blobs). It is cached decoded (decrypted and decompressed), so the
//! small files of one bundle, read one after another as `cp -a` does, cost one ranged read and
//! one decryption, not one per file. A unit being loaded is loaded once: the other readers of
//! it wait for that load instead of fetching it again ([`OnceLock`] per slot).
//!
//! A unit every byte of which has been read out is dropped at once: what was read is in the
//! kernel's page cache (files are opened with `FOPEN_KEEP_CACHE`), which answers a second read
//! without asking us. So a `cp -a` of a whole tree leaves the cache nearly empty instead of
//! filling it with data nobody asks for again, and the cache's room goes to units read in
//! parts (random access, a bundle whose other files are still to come).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ferry_format::PackId;

/// A unit: its pack and where it starts in it.
pub(crate) type UnitKey = (PackId, u32);

/// A decoded unit and which of its members were checked against their IDs.
#[derive(Debug)]
pub(crate) struct Unit {
    pub plain: Vec<u8>,
    /// `unit_start` of each member already checked (a unit of one blob has one).
    checked: Mutex<Vec<u32>>,
    /// Bytes read out of it so far (a byte read twice counts twice: the unit then goes a
    /// little early, which costs a second fetch at worst).
    delivered: AtomicUsize,
}

impl Unit {
    pub fn new(plain: Vec<u8>) -> Unit {
        Unit { plain, checked: Mutex::new(Vec::new()), delivered: AtomicUsize::new(0) }
    }

    /// Records that `n` bytes were read out; true when that makes the whole unit read.
    pub fn deliver(&self, n: usize) -> bool {
        let before = self.delivered.fetch_add(n, Ordering::Relaxed);
        before < self.plain.len() && before + n >= self.plain.len()
    }

    /// Whether the member at `start` was checked.
    pub fn is_checked(&self, start: u32) -> bool {
        self.checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&start)
    }

    pub fn mark_checked(&self, start: u32) {
        let mut c = self.checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !c.contains(&start) {
            c.push(start);
        }
    }

    /// What the unit costs the cache.
    fn cost(&self) -> usize {
        self.plain.capacity() + 128
    }
}

type Loaded<E> = Result<Arc<Unit>, E>;
type Slot<E> = Arc<OnceLock<Loaded<E>>>;

/// The LRU of units, at most `limit` bytes of them (plus those being read right now).
#[derive(Debug)]
pub(crate) struct UnitCache<E> {
    limit: usize,
    inner: Mutex<Lru<E>>,
}

#[derive(Debug)]
struct Lru<E> {
    /// Each unit's slot, its last use, and what it counts in `bytes` (0 until its loader
    /// counted it: other readers may have it, and drop it, before that).
    slots: HashMap<UnitKey, (Slot<E>, u64, usize)>,
    /// Last use -> unit, oldest first.
    order: BTreeMap<u64, UnitKey>,
    tick: u64,
    bytes: usize,
}

impl<E: Clone> UnitCache<E> {
    pub fn new(limit: usize) -> Self {
        UnitCache { limit, inner: Mutex::new(Lru { slots: HashMap::new(), order: BTreeMap::new(), tick: 0, bytes: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<E>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `key` is cached (or being loaded).
    pub fn contains(&self, key: &UnitKey) -> bool {
        self.lock().slots.contains_key(key)
    }

    /// The unit `key`, from the cache or from `load` (called once however many threads ask at
    /// the same time). A failed load is not kept: the next read tries again.
    pub fn get_or_load(&self, key: UnitKey, load: impl FnOnce() -> Result<Unit, E>) -> Loaded<E> {
        let slot = {
            let mut lru = self.lock();
            lru.tick += 1;
            let tick = lru.tick;
            let slot = if let Some((slot, used, _)) = lru.slots.get_mut(&key) {
                let (slot, old) = (slot.clone(), std::mem::replace(used, tick));
                lru.order.remove(&old);
                slot
            } else {
                let slot: Slot<E> = Arc::new(OnceLock::new());
                lru.slots.insert(key, (slot.clone(), tick, 0));
                slot
            };
            lru.order.insert(tick, key);
            slot
        };
        let mut loaded_here = false;
        let result = slot
            .get_or_init(|| {
                loaded_here = true;
                load().map(Arc::new)
            })
            .clone();
        if loaded_here {
            let mut lru = self.lock();
            let ours = lru.slots.get(&key).is_some_and(|(s, _, _)| Arc::ptr_eq(s, &slot));
            match &result {
                Ok(unit) if ours => {
                    let cost = unit.cost();
                    if let Some(entry) = lru.slots.get_mut(&key) {
                        entry.2 = cost;
                    }
                    lru.bytes += cost;
                    self.evict(&mut lru, &key);
                }
                Err(_) if ours => {
                    if let Some((_, used, _)) = lru.slots.remove(&key) {
                        lru.order.remove(&used);
                    }
                }
                _ => {} // dropped meanwhile (read whole): not ours to count
            }
        }
        result
    }

    /// Drops `unit` (loaded as `key`) from the cache: it was read whole (see the module's
    /// documentation). Its readers keep their reference.
    pub fn remove(&self, key: &UnitKey, unit: &Arc<Unit>) {
        let mut lru = self.lock();
        let same = lru.slots.get(key).and_then(|(s, _, _)| s.get()).is_some_and(|r| r.as_ref().is_ok_and(|u| Arc::ptr_eq(u, unit)));
        if same {
            if let Some((_, used, counted)) = lru.slots.remove(key) {
                lru.order.remove(&used);
                lru.bytes -= counted;
            }
        }
    }

    /// Drops the least recently used loaded units until the cache is within its limit; `keep`
    /// (just loaded) stays even if it alone is larger.
    fn evict(&self, lru: &mut Lru<E>, keep: &UnitKey) {
        let mut skipped = Vec::new();
        while lru.bytes > self.limit {
            let Some((used, key)) = lru.order.pop_first() else { break };
            match lru.slots.get(&key).map(|e| e.2) {
                Some(counted) if counted > 0 && key != *keep => {
                    lru.slots.remove(&key);
                    lru.bytes -= counted;
                }
                // Being loaded or not counted yet (its loader counts it when done), or the unit
                // just loaded.
                _ => skipped.push((used, key)),
            }
        }
        lru.order.extend(skipped);
    }

    /// Bytes held by loaded units.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> UnitKey {
        (PackId::from_bytes([n; 32]), 0)
    }

    #[test]
    fn keeps_the_recently_used_within_its_limit() {
        let cache: UnitCache<String> = UnitCache::new(3 * (1000 + 128));
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let get = |n: u8| {
            cache
                .get_or_load(key(n), || {
                    loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(Unit::new(vec![n; 1000]))
                })
                .unwrap()
        };
        for n in [1, 2, 3, 1, 4] {
            assert_eq!(get(n).plain[0], n);
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::Relaxed), 4, "1 was cached when read again");
        assert!(cache.contains(&key(1)) && cache.contains(&key(3)) && cache.contains(&key(4)));
        assert!(!cache.contains(&key(2)), "the least recently used went");
        assert!(cache.bytes() <= 3 * (1000 + 128));
    }

    #[test]
    fn a_unit_read_whole_leaves_the_cache() {
        let cache: UnitCache<String> = UnitCache::new(1 << 20);
        let unit = cache.get_or_load(key(1), || Ok(Unit::new(vec![1; 1000]))).unwrap();
        assert!(!unit.deliver(600));
        assert!(unit.deliver(400), "every byte read");
        assert!(!unit.deliver(10), "said once");
        cache.remove(&key(1), &unit);
        assert!(!cache.contains(&key(1)));
        assert_eq!(cache.bytes(), 0);
        // A unit loaded again under the same key is not dropped for the old one.
        let again = cache.get_or_load(key(1), || Ok(Unit::new(vec![1; 1000]))).unwrap();
        cache.remove(&key(1), &unit);
        assert!(cache.contains(&key(1)));
        drop(again);
    }

    #[test]
    fn a_failed_load_is_not_kept() {
        let cache: UnitCache<String> = UnitCache::new(1 << 20);
        assert!(cache.get_or_load(key(1), || Err("damaged".to_string())).is_err());
        assert!(!cache.contains(&key(1)));
        assert!(cache.get_or_load(key(1), || Ok(Unit::new(vec![1]))).is_ok());
    }

    #[test]
    fn one_load_for_many_readers_at_once() {
        let cache: UnitCache<String> = UnitCache::new(1 << 20);
        let loads = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    cache.get_or_load(key(7), || {
                        loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(Unit::new(vec![7; 10]))
                    })
                });
            }
        });
        assert_eq!(loads.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
