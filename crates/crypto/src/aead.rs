use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::CryptoError;

/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM authentication tag.
pub const TAG_LEN: usize = 16;

/// An AES-256-GCM key. The caller chooses nonces: each (key, nonce) pair MUST be used at most
/// once. Ferry uses a fresh key per pack with counter nonces, and random nonces for the few
/// metadata objects sealed under one long-lived key.
pub struct AeadKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

impl AeadKey {
    /// A key from 32 secret bytes (the caller wipes its copy).
    pub fn new(bytes: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key is valid");
        AeadKey { key: LessSafeKey::new(unbound) }
    }

    /// Encrypts `plaintext`, returning `ciphertext || tag`.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        self.seal_in_place(nonce, aad, &mut out);
        out
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .expect("AES-GCM sealing cannot fail for in-memory buffers below 64 GiB");
    }

    /// Encrypts `buf` in place and returns the tag (for callers that place it themselves).
    pub fn seal_in_place_separate_tag(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .expect("AES-GCM sealing cannot fail for in-memory buffers below 64 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `ciphertext || tag`, checking authenticity and the associated data.
    pub fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = sealed.to_vec();
        self.open_in_place(nonce, aad, &mut buf)?;
        Ok(buf)
    }

    /// Decrypts in place; on success `buf` holds the plaintext (the tag is cut off).
    pub fn open_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Malformed("shorter than an authentication tag"));
        }
        let len = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Authentication)?
            .len();
        buf.truncate(len);
        Ok(())
    }

    /// Seals a self-contained object with a random nonce: `nonce || ciphertext || tag`.
    pub fn seal_random_nonce(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = crate::random_bytes();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&self.seal(&nonce, aad, plaintext));
        out
    }

    /// Opens what [`AeadKey::seal_random_nonce`] produced.
    pub fn open_random_nonce(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("shorter than nonce and tag"));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed("nonce"))?;
        self.open(&nonce, aad, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = AeadKey::new(&[7u8; 32]);
        let n = [1u8; NONCE_LEN];
        let ct = k.seal(&n, b"aad", b"hello");
        assert_eq!(k.open(&n, b"aad", &ct).unwrap(), b"hello");
        assert_eq!(k.open(&n, b"other", &ct), Err(CryptoError::Authentication));
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(k.open(&n, b"aad", &bad), Err(CryptoError::Authentication));
        assert!(matches!(k.open(&n, b"aad", &ct[..3]), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn fixed_bytes() {
        // Pins the AES-256-GCM construction: key 0x07.., nonce 0x01.., aad "aad", plaintext "hello".
        let ct = AeadKey::new(&[7u8; 32]).seal(&[1u8; NONCE_LEN], b"aad", b"hello");
        assert_eq!(hex::encode(ct), "1e84e5dbff3b7226b44b61e015d56750b84634996e");
    }

    proptest::proptest! {
        #[test]
        fn prop_random_nonce_round_trip(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2000), aad in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let k = AeadKey::new(&[3u8; 32]);
            let sealed = k.seal_random_nonce(&aad, &data);
            proptest::prop_assert_eq!(k.open_random_nonce(&aad, &sealed).unwrap(), data);
        }
    }
}
