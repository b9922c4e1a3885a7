//! The cache of decoded units: a bounded LRU, in bytes, shared by every open file.
//!
//! A *unit* is what a pack stores and encrypts as one piece: one chunk, or a bundle of small
//! blobs (docs/format.md § Blobs). It is cached decoded (decrypted and decompressed), so the
//! small files of one bundle, read one after another as `cp -a` does, cost one ranged read and
//! one decryption, not one per file. A unit being loaded is loaded once: the other readers of
//! it wait for that load instead of fetching it again ([`OnceLock`] per slot).

use std::collections::{BTreeMap, HashMap};
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
}

impl Unit {
    pub fn new(plain: Vec<u8>) -> Unit {
        Unit { plain, checked: Mutex::new(Vec::new()) }
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
    /// Each unit's slot and its last use.
    slots: HashMap<UnitKey, (Slot<E>, u64)>,
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
            let slot = if let Some((slot, used)) = lru.slots.get_mut(&key) {
                let (slot, old) = (slot.clone(), std::mem::replace(used, tick));
                lru.order.remove(&old);
                slot
            } else {
                let slot: Slot<E> = Arc::new(OnceLock::new());
                lru.slots.insert(key, (slot.clone(), tick));
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
            match &result {
                Ok(unit) if lru.slots.get(&key).is_some_and(|(s, _)| Arc::ptr_eq(s, &slot)) => {
                    lru.bytes += unit.cost();
                    self.evict(&mut lru, &key);
                }
                Ok(_) => {}
                Err(_) => {
                    if let Some((s, used)) = lru.slots.remove(&key) {
                        if Arc::ptr_eq(&s, &slot) {
                            lru.order.remove(&used);
                        } else {
                            lru.slots.insert(key, (s, used));
                        }
                    }
                }
            }
        }
        result
    }

    /// Drops the least recently used loaded units until the cache is within its limit; `keep`
    /// (just loaded) stays even if it alone is larger.
    fn evict(&self, lru: &mut Lru<E>, keep: &UnitKey) {
        let mut skipped = Vec::new();
        while lru.bytes > self.limit {
            let Some((used, key)) = lru.order.pop_first() else { break };
            let loaded = lru.slots.get(&key).and_then(|(s, _)| s.get()).map(|r| r.as_ref().map(|u| u.cost()));
            match loaded {
                Some(Ok(cost)) if key != *keep => {
                    lru.slots.remove(&key);
                    lru.bytes -= cost;
                }
                // Being loaded (its reader adds it when done), or the unit just loaded.
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
