//! The per-job disk key and the working keys derived from it.

use ferry_crypto::AeadKey;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::SeedError;

// Derivation contexts. Changing any of these changes the seed-disk format.
const CTX_LABEL: &str = "ferry seed label v1";
const CTX_MANIFEST: &str = "ferry seed manifest v1";
const CTX_JOURNAL: &str = "ferry seed journal v1";
const CTX_OBJECT: &str = "ferry seed object v1";
// Seed devices (the Data Box workflow): the same per-job key, other contexts.
const CTX_DEVICE_HEADER: &str = "ferry device header v1";
const CTX_DEVICE_SEAL: &str = "ferry device seal v1";

/// The per-job AES-256 disk key: 32 random bytes the vault creates with the import job and
/// escrows. Every file of a seed disk but the label is sealed under a key derived from it, and
/// the label carries a MAC under another. Wiped on drop; `Debug` prints no bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DiskKey([u8; 32]);

impl std::fmt::Debug for DiskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskKey(..)")
    }
}

impl DiskKey {
    /// A new key from the operating system's secure random generator.
    pub fn random() -> Self {
        DiskKey(ferry_crypto::random_bytes())
    }

    /// A key from its 32 bytes (the caller wipes its copy).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DiskKey(bytes)
    }

    /// The key as 64 lowercase hex digits: a secret, for the vault's escrow only.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self, SeedError> {
        let text = text.trim();
        let mut bytes = Zeroizing::new([0u8; 32]);
        if text.len() != 64 || hex::decode_to_slice(text, &mut bytes[..]).is_err() {
            return Err(SeedError::BadDiskKey { reason: "expected 64 hex digits".into() });
        }
        Ok(DiskKey(*bytes))
    }

    /// The BLAKE3 key of label MACs.
    pub(crate) fn label_mac_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(CTX_LABEL, &self.0))
    }

    /// The AES-256-GCM key of manifests (random nonces).
    pub(crate) fn manifest_key(&self) -> AeadKey {
        let derived = Zeroizing::new(blake3::derive_key(CTX_MANIFEST, &self.0));
        AeadKey::new(&derived)
    }

    /// The AES-256-GCM key of journal records (random nonces).
    pub(crate) fn journal_key(&self) -> AeadKey {
        let derived = Zeroizing::new(blake3::derive_key(CTX_JOURNAL, &self.0));
        AeadKey::new(&derived)
    }

    /// The AES-256-GCM key of one set's object files (nonces: file id || frame index). The set
    /// id is part of the key material, so two sets of one job never share a (key, nonce) pair.
    pub(crate) fn object_key(&self, set_id: &[u8; 16]) -> AeadKey {
        let mut material = Zeroizing::new([0u8; 48]);
        material[..32].copy_from_slice(&self.0);
        material[32..].copy_from_slice(set_id);
        let derived = Zeroizing::new(blake3::derive_key(CTX_OBJECT, &material[..]));
        AeadKey::new(&derived)
    }

    /// The BLAKE3 key of device header MACs (`FERRY-DEVICE/device.json`).
    pub(crate) fn device_header_mac_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(CTX_DEVICE_HEADER, &self.0))
    }

    /// The AES-256-GCM key of device seals (`FERRY-DEVICE/seal.bin`, random nonces).
    pub(crate) fn device_seal_key(&self) -> AeadKey {
        let derived = Zeroizing::new(blake3::derive_key(CTX_DEVICE_SEAL, &self.0));
        AeadKey::new(&derived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_debug() {
        let k = DiskKey::random();
        let text = k.to_hex();
        assert_eq!(text.len(), 64);
        assert_eq!(DiskKey::from_hex(&format!(" {text}\n")).unwrap().to_hex(), text);
        assert_eq!(format!("{k:?}"), "DiskKey(..)");
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(66)] {
            assert!(matches!(DiskKey::from_hex(bad), Err(SeedError::BadDiskKey { .. })), "{bad}");
        }
    }

    #[test]
    fn derived_keys_differ() {
        let k = DiskKey::from_bytes([1; 32]);
        assert_ne!(*k.label_mac_key(), [0; 32]);
        assert_ne!(*k.device_header_mac_key(), [0; 32]);
        assert_ne!(*k.device_header_mac_key(), *k.label_mac_key());
        assert_eq!(*k.device_header_mac_key(), blake3::derive_key("ferry device header v1", &[1; 32]));
        let plain = b"x";
        let nonce = [0u8; 12];
        let sealed = [
            k.manifest_key().seal(&nonce, b"", plain),
            k.journal_key().seal(&nonce, b"", plain),
            k.object_key(&[0; 16]).seal(&nonce, b"", plain),
            k.object_key(&[1; 16]).seal(&nonce, b"", plain),
            k.device_seal_key().seal(&nonce, b"", plain),
        ];
        for (i, a) in sealed.iter().enumerate() {
            for b in &sealed[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let seal_key = AeadKey::new(&blake3::derive_key("ferry device seal v1", &[1; 32]));
        assert_eq!(seal_key.seal(&nonce, b"", plain), sealed[4]);
    }
}
