//! Spare buffers, handed back after use and handed out again.
//!
//! A new buffer of a megabyte or more is a fresh mapping (glibc's mmap threshold is fixed at
//! 1 MiB, see the CLI's `alloc_tuning`) whose every page faults in, zeroed, on first touch. On
//! the virtual machines we measure on, a page fault costs one to two microseconds: a kernel-tree
//! backup took 258,000 of them, 6 % of its CPU time, nearly all from filling new chunk, read,
//! compression and pack buffers. A pooled buffer keeps its pages mapped.
//!
//! Memory stays bounded: a pool keeps at most `keep` buffers, none larger than `max_capacity`
//! (a buffer that once held a rare large chunk is shrunk back, or it would pin its pages).

use std::sync::Mutex;

pub(crate) struct BufferPool {
    spare: Mutex<Vec<Vec<u8>>>,
    keep: usize,
    max_capacity: usize,
}

impl BufferPool {
    /// A pool that keeps at most `keep` spare buffers of at most `max_capacity` bytes each.
    pub(crate) fn new(keep: usize, max_capacity: usize) -> Self {
        BufferPool { spare: Mutex::new(Vec::new()), keep, max_capacity }
    }

    /// An empty buffer: a spare one if there is one.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default()
    }

    /// Hands a buffer back (it is dropped if the pool is full; one larger than `max_capacity`
    /// is shrunk to it, which for a mapping of its own gives back only the pages past it).
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        buf.shrink_to(self.max_capacity);
        let mut spare = self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if spare.len() < self.keep {
            spare.push(buf);
        }
    }

    /// Frees the spare buffers (when no more are needed soon).
    pub(crate) fn clear(&self) {
        self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_keep_buffers_of_at_most_max_capacity() {
        let pool = BufferPool::new(2, 1024);
        pool.give(Vec::with_capacity(2048)); // too large: shrunk
        assert_eq!(pool.take().capacity(), 1024);
        pool.give(Vec::new()); // nothing to keep
        assert_eq!(pool.take().capacity(), 0);
        for _ in 0..3 {
            let mut b = Vec::with_capacity(512);
            b.extend_from_slice(b"abc");
            pool.give(b);
        }
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        assert!(a.capacity() >= 512 && a.is_empty());
        assert!(b.capacity() >= 512 && b.is_empty());
        assert_eq!(c.capacity(), 0, "a third buffer was kept");
        pool.give(a);
        pool.clear();
        assert_eq!(pool.take().capacity(), 0);
    }
}
