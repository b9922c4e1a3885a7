//! The repository config: `config` at the repository root, plain JSON (it holds no secret, and
//! must be readable to report a newer format version before any key is tried).

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::FormatError;

pub const MAGIC: &str = "ferry-repository";
/// The repository format version this code writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub magic: String,
    pub version: u32,
    /// Random repository ID (hex), which also names the local cache.
    pub id: String,
    pub created: String,
    pub chunker: ChunkerParams,
    /// zstd level for blobs (0 = store uncompressed).
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

impl Config {
    pub fn new(created: String) -> Self {
        Config {
            magic: MAGIC.into(),
            version: VERSION,
            id: hex::encode(ferry_crypto::random_bytes::<16>()),
            created,
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: 8 * 1024 * 1024,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("config serializes")
    }

    /// Parses and validates a config read from a repository.
    pub fn from_json(data: &[u8]) -> Result<Self, FormatError> {
        const WHAT: &str = "repository config";
        let v: serde_json::Value = serde_json::from_slice(data).map_err(|e| FormatError::malformed(WHAT, e))?;
        if v.get("magic").and_then(|m| m.as_str()) != Some(MAGIC) {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = v.get("version").and_then(|m| m.as_u64()).unwrap_or(0);
        if version > VERSION as u64 {
            return Err(FormatError::NewerVersion { what: "repository", found: version.min(u32::MAX as u64) as u32, supported: VERSION });
        }
        let c: Config = serde_json::from_value(v).map_err(|e| FormatError::malformed(WHAT, e))?;
        c.chunker.validate().map_err(|e| FormatError::malformed(WHAT, e))?;
        if !(0..=22).contains(&c.compression_level) || c.pack_size < 1024 * 1024 || c.pack_size > 1024 * 1024 * 1024 {
            return Err(FormatError::malformed(WHAT, "compression level or pack size out of range"));
        }
        if c.id.len() != 32 || hex::decode(&c.id).is_err() {
            return Err(FormatError::malformed(WHAT, "id is not 32 hex digits"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_newer() {
        let c = Config::new("2026-11-22T00:00:00Z".into());
        assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        v["version"] = 2.into();
        let err = Config::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        assert!(Config::from_json(b"{}").is_err());
        assert!(Config::from_json(b"\x00").is_err());
    }

    #[test]
    fn fixed_json() {
        let c = Config { id: "00".repeat(16), ..Config::new("T".into()) };
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&c).unwrap()).unwrap(),
            r#"{"magic":"ferry-repository","version":1,"id":"00000000000000000000000000000000","created":"T","chunker":{"min_size":524288,"avg_size":1048576,"max_size":8388608},"compression_level":3,"pack_size":8388608}"#
        );
    }
}
