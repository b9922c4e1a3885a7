//! Ferry's cryptography, with no I/O.
//!
//! - [`MasterKey`]: the repository's random 512-bit master secret (an encryption half and an ID
//!   half). Every other key is derived from it with BLAKE3's key derivation mode and a context
//!   string, so one secret never serves two purposes.
//! - [`AeadKey`]: AES-256-GCM sealing and opening with explicit nonces and associated data.
//! - [`IdKey`]: the keyed BLAKE3 hash that names chunks and trees, so IDs reveal nothing about
//!   content to anyone without the key.
//! - [`keyfile`]: a master key wrapped by a passphrase through Argon2id; a repository holds
//!   several of these key slots.
//!
//! Secrets are wiped from memory when dropped and never implement `Display`/`Debug` with their
//! contents.

#![forbid(unsafe_code)]

mod aead;
mod error;
pub mod keyfile;
mod master;

pub use aead::{AeadKey, NONCE_LEN, TAG_LEN};
pub use error::CryptoError;
pub use master::{IdKey, MasterKey, MASTER_KEY_LEN};

/// Fills `buf` with bytes from the operating system's secure random generator.
pub fn random_fill(buf: &mut [u8]) {
    // Straight from getrandom(2), not through aws-lc's generator: its first use seeds itself
    // from CPU jitter as well, 15-30 ms of CPU in every command. The kernel's generator failing
    // means there is no randomness at all; nothing sane can continue from there (std's policy).
    getrandom::fill(buf).expect("the operating system's random generator failed");
}

/// `N` random bytes from the operating system's secure random generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    random_fill(&mut b);
    b
}

/// The unkeyed BLAKE3 hash that names stored objects by their bytes (packs, index files,
/// recovery points), so anyone can check an object's integrity without the key.
pub fn content_hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}
