//! Helpers shared by this crate's unit tests.

/// Deterministic pseudo-random bytes (xorshift64), so tests need no random seed.
pub(crate) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
