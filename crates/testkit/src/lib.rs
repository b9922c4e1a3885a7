//! Test data shared by every Ferry test suite: deterministic pseudo-random bytes, so a test
//! needs no random seed and a failure reproduces.
//!
//! One generator for the whole workspace: rand's `SmallRng` seeded from a `u64`. Its output is
//! fixed for the `rand` version in `Cargo.lock`; tests that pin exact bytes of a format (such as
//! the chunker's cut points) must not take their input from here, since a `rand` upgrade may
//! change it: those derive their input from BLAKE3's output stream instead.

#![forbid(unsafe_code)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `len` deterministic pseudo-random bytes for `seed`: incompressible, and different for every
/// seed (`0` included).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng(seed).fill(&mut data[..]);
    data
}

/// The generator behind [`bytes`], for tests that draw sizes, offsets or choices.
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_deterministic_and_differ_by_seed() {
        assert_eq!(bytes(4096, 7), bytes(4096, 7));
        assert_ne!(bytes(4096, 7), bytes(4096, 8));
        assert_ne!(bytes(64, 0), vec![0u8; 64]);
        // Incompressible: no byte value is much more frequent than another.
        let mut counts = [0usize; 256];
        for b in bytes(1 << 20, 1) {
            counts[b as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (3_500..4_700).contains(&n)), "{counts:?}");
    }
}
