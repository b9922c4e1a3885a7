//! Key files: the master key wrapped by a passphrase.
//!
//! ```text
//! wrapping_key = Argon2id(passphrase, salt, memory_kib, iterations, parallelism) (32 bytes)
//! wrapped_key  = nonce(12) || AES-256-GCM(wrapping_key, nonce, aad = "ferry key v1", master_key(64)) || tag(16)
//! ```
//! The file itself is JSON (see `docs/format.md`) so it can be inspected without the passphrase.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{AeadKey, CryptoError, MasterKey, MASTER_KEY_LEN};

/// Magic string of a key file.
pub const MAGIC: &str = "ferry-key";
/// The key file version this code writes.
pub const VERSION: u32 = 1;
const AAD: &[u8] = b"ferry key v1";

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 4 lanes: RFC 9106's second recommended option. The lanes are filled
    /// in parallel, so unlocking takes about 0.15 s of CPU spread over the cores (0.07 s on two)
    /// while a guesser still pays the whole 64 MiB and 3 passes per guess. Key files of
    /// 1-lane keys (made before 2026-12) keep their parameters and unlock as before.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 4 }
    }
}

/// The JSON body of a key file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyFile {
    pub magic: String,
    pub version: u32,
    /// When the key slot was made (RFC 3339).
    pub created: String,
    /// Host and user that made it, for `key list`.
    pub host: String,
    pub user: String,
    pub kdf: String,
    #[serde(flatten)]
    pub params: KdfParams,
    /// Base64 of the Argon2 salt (16 bytes).
    pub salt: String,
    /// Base64 of `nonce || ciphertext || tag`.
    pub wrapped_key: String,
}

fn wrapping_key(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Result<AeadKey, CryptoError> {
    // Refuse absurd costs from a hostile key file before allocating (max 1 GiB, 100 passes).
    // 1 GiB bounds what a hostile key file can make each unlock attempt allocate.
    if p.memory_kib > 1024 * 1024 || p.iterations > 100 || p.parallelism > 64 {
        return Err(CryptoError::Unsupported(format!(
            "key derivation parameters out of range ({} KiB, {} passes, {} lanes)",
            p.memory_kib, p.iterations, p.parallelism
        )));
    }
    Ok(AeadKey::new(&*argon2id(passphrase, salt, p)?))
}

/// Argon2id, version 0x13, 32 bytes out.
fn argon2id(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    use rayon::iter::ParallelExtend;
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| CryptoError::Unsupported(format!("argon2 parameters: {e}")))?;
    let n_blocks = params.block_count();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    // The working memory is zeroed by as many threads as fill it (the crate's own allocation
    // zeroes 64 MiB on one thread first, faulting in every page: 40 ms before the parallel
    // passes start, on every command that opens a repository).
    let mut blocks: Vec<argon2::Block> = Vec::new();
    blocks.try_reserve_exact(n_blocks).map_err(|_| CryptoError::Unsupported("argon2: out of memory".into()))?;
    blocks.par_extend(rayon::iter::repeat_n(argon2::Block::new(), n_blocks));
    argon
        .hash_password_into_with_memory(passphrase, salt, &mut out[..], &mut blocks[..])
        .map_err(|e| CryptoError::Unsupported(format!("argon2: {e}")))?;
    Ok(out)
}

impl KeyFile {
    /// Wraps `master` under `passphrase`.
    pub fn wrap(
        master: &MasterKey,
        passphrase: &[u8],
        params: KdfParams,
        created: String,
        host: String,
        user: String,
    ) -> Result<Self, CryptoError> {
        let salt: [u8; 16] = crate::random_bytes();
        let key = wrapping_key(passphrase, &salt, params)?;
        let wrapped = key.seal_random_nonce(AAD, &master.to_bytes()[..]);
        Ok(KeyFile {
            magic: MAGIC.to_string(),
            version: VERSION,
            created,
            host,
            user,
            kdf: "argon2id".to_string(),
            params,
            salt: B64.encode(salt),
            wrapped_key: B64.encode(wrapped),
        })
    }

    /// Unwraps the master key; [`CryptoError::WrongPassphrase`] when the passphrase does not fit.
    pub fn unwrap(&self, passphrase: &[u8]) -> Result<MasterKey, CryptoError> {
        self.check_version()?;
        let salt = B64.decode(&self.salt).map_err(|_| CryptoError::Malformed("key file salt is not base64"))?;
        let wrapped = B64.decode(&self.wrapped_key).map_err(|_| CryptoError::Malformed("key file wrapped_key is not base64"))?;
        let key = wrapping_key(passphrase, &salt, self.params)?;
        let plain = Zeroizing::new(key.open_random_nonce(AAD, &wrapped).map_err(|e| match e {
            CryptoError::Authentication => CryptoError::WrongPassphrase,
            other => other,
        })?);
        let bytes: &[u8; MASTER_KEY_LEN] = plain[..].try_into().map_err(|_| CryptoError::Malformed("wrapped key has the wrong length"))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// Parses a key file's JSON.
    pub fn from_json(data: &[u8]) -> Result<Self, CryptoError> {
        let kf: KeyFile = serde_json::from_slice(data).map_err(|e| CryptoError::Unsupported(format!("not a Ferry key file: {e}")))?;
        kf.check_version()?;
        Ok(kf)
    }

    /// The JSON bytes of this key file.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key file serializes")
    }

    fn check_version(&self) -> Result<(), CryptoError> {
        if self.magic != MAGIC {
            return Err(CryptoError::Unsupported(format!("magic {:?} is not {MAGIC:?}", self.magic)));
        }
        if self.version > VERSION {
            return Err(CryptoError::Unsupported(format!(
                "key file version {} is newer than this ferry understands ({VERSION}); upgrade ferry",
                self.version
            )));
        }
        if self.kdf != "argon2id" {
            return Err(CryptoError::Unsupported(format!("key derivation {:?}", self.kdf)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn wrap_unwrap_and_wrong_passphrase() {
        let m = MasterKey::generate();
        let kf = KeyFile::wrap(&m, b"correct horse battery", FAST, "t".into(), "h".into(), "u".into()).unwrap();
        let parsed = KeyFile::from_json(&kf.to_json()).unwrap();
        let m2 = parsed.unwrap(b"correct horse battery").unwrap();
        assert_eq!(m.to_bytes()[..], m2.to_bytes()[..]);
        assert_eq!(parsed.unwrap(b"wrong horse battery").unwrap_err(), CryptoError::WrongPassphrase);
    }

    /// Known answers from the reference implementation (Debian's `argon2` 0~20171227:
    /// `echo -n "correct horse battery staple" | argon2 ferry-kat-salt-16 -id -t 2 -k 256 -p P -l 32 -r`),
    /// so an upgrade of the Argon2 crate cannot silently change what existing key files unlock to,
    /// for one lane and for the several lanes filled in parallel.
    #[test]
    fn argon2id_matches_the_reference_implementation() {
        for (lanes, want) in [
            (1, "db812c476c431c1eb211bd61373c6abfdb4d68e86be90bb1b9efffb68dbda3c2"),
            (4, "a392814b6fe6428ee4ff46b12c6b8c255de0ad44101a4c0d5c74665396f7d686"),
        ] {
            let p = KdfParams { memory_kib: 256, iterations: 2, parallelism: lanes };
            let got = argon2id(b"correct horse battery staple", b"ferry-kat-salt-16", p).unwrap();
            let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, want, "{lanes} lane(s)");
        }
    }

    #[test]
    fn newer_version_is_refused() {
        let m = MasterKey::generate();
        let mut kf = KeyFile::wrap(&m, b"pw", FAST, "t".into(), "h".into(), "u".into()).unwrap();
        kf.version = 99;
        let err = KeyFile::from_json(&kf.to_json()).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn hostile_costs_are_refused() {
        let m = MasterKey::generate();
        let mut kf = KeyFile::wrap(&m, b"pw", FAST, "t".into(), "h".into(), "u".into()).unwrap();
        kf.params.memory_kib = u32::MAX;
        assert!(matches!(kf.unwrap(b"pw"), Err(CryptoError::Unsupported(_))));
    }

    #[test]
    fn fixed_json_field_names() {
        let m = MasterKey::generate();
        let kf = KeyFile::wrap(&m, b"pw", FAST, "t".into(), "h".into(), "u".into()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&kf.to_json()).unwrap();
        for field in
            ["magic", "version", "created", "host", "user", "kdf", "memory_kib", "iterations", "parallelism", "salt", "wrapped_key"]
        {
            assert!(v.get(field).is_some(), "missing {field}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(KeyFile::from_json(b"\xff\x00garbage").is_err());
        let m = MasterKey::generate();
        let mut kf = KeyFile::wrap(&m, b"pw", FAST, "t".into(), "h".into(), "u".into()).unwrap();
        kf.wrapped_key = B64.encode([1u8; 5]);
        assert!(kf.unwrap(b"pw").is_err());
    }
}
