use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::AeadKey;

/// Length of the serialized master key.
pub const MASTER_KEY_LEN: usize = 64;

/// The repository master key: 32 bytes for encryption, 32 bytes for content IDs.
///
/// It is generated once at `init`, stored only wrapped in key files, and wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    enc: [u8; 32],
    id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

// Derivation contexts. Changing any of these changes the repository format.
const CTX_PACK: &str = "ferry 2026-11 pack data key v1";
const CTX_META: &str = "ferry 2026-11 metadata key v1";
const CTX_CHUNKER: &str = "ferry 2026-11 chunker seed v1";

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Self {
        MasterKey { enc: crate::random_bytes(), id: crate::random_bytes() }
    }

    /// Rebuilds a master key from its 64 serialized bytes.
    pub fn from_bytes(bytes: &[u8; MASTER_KEY_LEN]) -> Self {
        let mut enc = [0u8; 32];
        let mut id = [0u8; 32];
        enc.copy_from_slice(&bytes[..32]);
        id.copy_from_slice(&bytes[32..]);
        MasterKey { enc, id }
    }

    /// The 64 serialized bytes, wiped when the returned value drops.
    pub fn to_bytes(&self) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        out[..32].copy_from_slice(&self.enc);
        out[32..].copy_from_slice(&self.id);
        out
    }

    /// The key that names chunks and trees.
    pub fn id_key(&self) -> IdKey {
        IdKey { key: self.id }
    }

    /// The AES-256-GCM key for one pack, derived from the pack's random salt.
    pub fn pack_key(&self, salt: &[u8; 16]) -> AeadKey {
        let mut material = Zeroizing::new([0u8; 48]);
        material[..32].copy_from_slice(&self.enc);
        material[32..].copy_from_slice(salt);
        let derived = Zeroizing::new(blake3::derive_key(CTX_PACK, &material[..]));
        AeadKey::new(&derived)
    }

    /// The AES-256-GCM key for metadata objects (index files, recovery points), sealed with
    /// random nonces.
    pub fn meta_key(&self) -> AeadKey {
        let derived = Zeroizing::new(blake3::derive_key(CTX_META, &self.enc));
        AeadKey::new(&derived)
    }

    /// The secret seed of the content-defined chunker, so that chunk boundaries do not
    /// reveal file contents to someone who only sees chunk sizes.
    pub fn chunker_seed(&self) -> u64 {
        let d = blake3::derive_key(CTX_CHUNKER, &self.id);
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// The keyed BLAKE3 hash that names chunks and trees: `ID = BLAKE3-keyed(id_key, plaintext)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct IdKey {
    key: [u8; 32],
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(..)")
    }
}

impl IdKey {
    /// The ID of `data`.
    pub fn hash(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, data).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_round_trip() {
        let k = MasterKey::generate();
        let k2 = MasterKey::from_bytes(&k.to_bytes());
        assert_eq!(k.id_key().hash(b"x"), k2.id_key().hash(b"x"));
        assert_eq!(k.chunker_seed(), k2.chunker_seed());
    }

    #[test]
    fn fixed_derivations() {
        // Pins the derivation contexts: a change here breaks every existing repository.
        let mut b = [0u8; 64];
        for (i, v) in b.iter_mut().enumerate() {
            *v = i as u8;
        }
        let k = MasterKey::from_bytes(&b);
        let id = k.id_key().hash(b"ferry");
        assert_eq!(hex::encode(id), hex::encode(blake3::keyed_hash(&b[32..].try_into().unwrap(), b"ferry").as_bytes()));
        assert_eq!(k.chunker_seed(), {
            let d = blake3::derive_key(CTX_CHUNKER, &b[32..]);
            u64::from_le_bytes(d[..8].try_into().unwrap())
        });
        assert_eq!(CTX_PACK, "ferry 2026-11 pack data key v1");
        assert_eq!(CTX_META, "ferry 2026-11 metadata key v1");
    }

    #[test]
    fn pack_keys_differ_by_salt() {
        let k = MasterKey::generate();
        let a = k.pack_key(&[1; 16]).seal(&[0; 12], b"", b"x");
        let b = k.pack_key(&[2; 16]).seal(&[0; 12], b"", b"x");
        assert_ne!(a, b);
    }
}
