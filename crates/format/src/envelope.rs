//! The envelope of sealed metadata objects (index files, recovery points):
//!
//! ```text
//! object := magic(6) || version(u16 le) || nonce(12) || AES-256-GCM(meta_key, nonce, aad = magic || version, body) || tag(16)
//! ```

use ferry_crypto::AeadKey;

use crate::FormatError;

/// The sealed object types, each with its magic and current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Index,
    RecoveryPoint,
}

impl ObjectType {
    fn magic(self) -> &'static [u8; 6] {
        match self {
            ObjectType::Index => b"FRYIDX",
            ObjectType::RecoveryPoint => b"FRYRPT",
        }
    }

    fn version(self) -> u16 {
        1
    }

    fn name(self) -> &'static str {
        match self {
            ObjectType::Index => "index file",
            ObjectType::RecoveryPoint => "recovery point",
        }
    }
}

const HEADER_LEN: usize = 8;

/// Seals `body` as an object of type `t`.
pub fn seal_object(key: &AeadKey, t: ObjectType, body: &[u8]) -> Vec<u8> {
    let mut header = [0u8; HEADER_LEN];
    header[..6].copy_from_slice(t.magic());
    header[6..].copy_from_slice(&t.version().to_le_bytes());
    let sealed = key.seal_random_nonce(&header, body);
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    out
}

/// Checks the header of an object of type `t` and opens it.
pub fn open_object(key: &AeadKey, t: ObjectType, data: &[u8]) -> Result<Vec<u8>, FormatError> {
    let what = t.name();
    if data.len() < HEADER_LEN {
        return Err(FormatError::malformed(what, "shorter than its header"));
    }
    let (header, sealed) = data.split_at(HEADER_LEN);
    if &header[..6] != t.magic() {
        return Err(FormatError::BadMagic { what });
    }
    let version = u16::from_le_bytes([header[6], header[7]]);
    if version > t.version() {
        return Err(FormatError::NewerVersion { what, found: version.into(), supported: t.version().into() });
    }
    key.open_random_nonce(header, sealed).map_err(|source| FormatError::Crypto { what, source })
}

/// Seals `body` and names the object by the BLAKE3 of its bytes.
pub(crate) fn seal_named(key: &AeadKey, t: ObjectType, body: &[u8]) -> ([u8; 32], Vec<u8>) {
    let bytes = seal_object(key, t, body);
    (ferry_crypto::content_hash(&bytes), bytes)
}

/// Checks that `bytes` are named `id`, then opens them.
pub(crate) fn open_named(key: &AeadKey, t: ObjectType, id: &[u8; 32], bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    let actual = ferry_crypto::content_hash(bytes);
    if actual != *id {
        return Err(FormatError::IdMismatch { what: t.name(), expected: hex::encode(id), actual: hex::encode(actual) });
    }
    open_object(key, t, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let k = AeadKey::new(&[1; 32]);
        let o = seal_object(&k, ObjectType::Index, b"body");
        assert_eq!(&o[..8], b"FRYIDX\x01\x00");
        assert_eq!(open_object(&k, ObjectType::Index, &o).unwrap(), b"body");
        assert!(matches!(open_object(&k, ObjectType::RecoveryPoint, &o), Err(FormatError::BadMagic { .. })));
        let mut newer = o.clone();
        newer[6] = 9;
        assert!(matches!(open_object(&k, ObjectType::Index, &newer), Err(FormatError::NewerVersion { .. })));
        let mut bad = o.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(open_object(&k, ObjectType::Index, &bad), Err(FormatError::Crypto { .. })));
        assert!(open_object(&k, ObjectType::Index, &o[..5]).is_err());
    }
}
