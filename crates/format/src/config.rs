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
    /// zstd level for units of one blob: chunks of large files, and trees (0 = store uncompressed).
    pub compression_level: i32,
    /// zstd level for bundles of small blobs (see `blob`). Bundling already makes small files
    /// compress well, and most of a typical tree's bytes are in them, so a low level here buys
    /// much of the speed for little of the size (Linux 6.1 tree, 2 cores: level 1 instead of 3
    /// made the first backup 12 % faster and the repository 9 % larger).
    #[serde(default = "default_bundle_level")]
    pub bundle_compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

fn default_bundle_level() -> i32 {
    1
}

/// The default zstd level of units of one blob (chunks of large files, trees). See
/// docs/format.md "Compression" for the measurements behind it.
pub const DEFAULT_LEVEL: i32 = 3;

impl Config {
    pub fn new(created: String) -> Self {
        Config {
            magic: MAGIC.into(),
            version: VERSION,
            id: hex::encode(ferry_crypto::random_bytes::<16>()),
            created,
            chunker: ChunkerParams::default(),
            compression_level: DEFAULT_LEVEL,
            bundle_compression_level: default_bundle_level(),
            pack_size: 8 * 1024 * 1024,
        }
    }

    /// Sets the level of units of one blob, and that of bundles to the same level or 1,
    /// whichever is lower (so that level 0 turns compression off for everything).
    pub fn set_compression(&mut self, level: i32) {
        self.compression_level = level;
        self.bundle_compression_level = level.min(default_bundle_level());
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
        let version = v.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if version > u64::from(VERSION) {
            return Err(FormatError::NewerVersion {
                what: "repository",
                found: version.min(u64::from(u32::MAX)) as u32,
                supported: VERSION,
            });
        }
        let c: Config = serde_json::from_value(v).map_err(|e| FormatError::malformed(WHAT, e))?;
        c.chunker.validate().map_err(|e| FormatError::malformed(WHAT, e))?;
        let levels_ok = [c.compression_level, c.bundle_compression_level].iter().all(|l| (0..=22).contains(l));
        if !levels_ok || c.pack_size < 1024 * 1024 || c.pack_size > 1024 * 1024 * 1024 {
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
            r#"{"magic":"ferry-repository","version":1,"id":"00000000000000000000000000000000","created":"T","chunker":{"min_size":524288,"avg_size":1048576,"max_size":8388608},"compression_level":3,"bundle_compression_level":1,"pack_size":8388608}"#
        );
    }

    #[test]
    fn a_config_without_a_bundle_level_reads_as_level_1_and_levels_are_checked() {
        let mut v: serde_json::Value = serde_json::from_slice(&Config::new("T".into()).to_json()).unwrap();
        v.as_object_mut().unwrap().remove("bundle_compression_level");
        assert_eq!(Config::from_json(&serde_json::to_vec(&v).unwrap()).unwrap().bundle_compression_level, 1);
        v["bundle_compression_level"] = 23.into();
        assert!(Config::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
        let mut c = Config::new("T".into());
        c.set_compression(0);
        assert_eq!((c.compression_level, c.bundle_compression_level), (0, 0));
        c.set_compression(9);
        assert_eq!((c.compression_level, c.bundle_compression_level), (9, 1));
    }
}
