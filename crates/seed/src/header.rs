//! The frozen start of every seed structure, written and checked in one place.
//!
//! Binary structures (journal, manifest, object file, device seal) begin with
//! `magic (12 bytes) || version (u16 LE)`; JSON ones (label, device header) carry `magic` and
//! `version` fields. Every one follows the same version rule: version 0 is damage, a version
//! newer than this build's is refused with [`SeedFormatError::NewerVersion`] (upgrade ferry),
//! older ones stay readable.

use crate::error::SeedFormatError;

/// Bytes of a binary structure's header: magic and version.
pub const BINARY_HEADER_LEN: usize = 14;

/// A binary structure's header: its magic, the version this build writes and the newest it
/// reads, and how its errors name it.
pub(crate) struct BinaryHeader {
    pub magic: &'static [u8; 12],
    pub version: u16,
    /// As in "not a seed journal (bad magic)".
    pub name: &'static str,
    /// As in "journal version 0".
    pub short: &'static str,
}

impl BinaryHeader {
    /// The header bytes this build writes.
    pub fn encode(&self) -> [u8; BINARY_HEADER_LEN] {
        let mut h = [0u8; BINARY_HEADER_LEN];
        h[..12].copy_from_slice(self.magic);
        h[12..].copy_from_slice(&self.version.to_le_bytes());
        h
    }

    /// Checks the magic and the version at the start of `bytes` (untrusted); returns the version.
    /// The caller has checked the length with its own message; bytes too short are malformed.
    pub fn check(&self, bytes: &[u8]) -> Result<u16, SeedFormatError> {
        let h = bytes.get(..BINARY_HEADER_LEN).ok_or_else(|| SeedFormatError::malformed(format!("truncated {}", self.short)))?;
        if &h[..12] != self.magic {
            return Err(SeedFormatError::malformed(format!("not a {} (bad magic)", self.name)));
        }
        let version = u16::from_le_bytes([h[12], h[13]]);
        check_version(version.into(), self.version.into(), &format!("{} version 0", self.short))?;
        Ok(version)
    }
}

/// A JSON structure's `magic` and `version` fields against the ones this build writes.
pub(crate) fn check_json(magic: &str, version: u32, want_magic: &str, newest: u32) -> Result<(), SeedFormatError> {
    if magic != want_magic {
        return Err(SeedFormatError::malformed(format!("magic {magic:?} is not {want_magic:?}")));
    }
    check_version(version, newest, "version 0")
}

/// The version rule: 0 is damage (`zero` says which structure), newer than `newest` is refused.
fn check_version(version: u32, newest: u32, zero: &str) -> Result<(), SeedFormatError> {
    if version == 0 {
        return Err(SeedFormatError::malformed(zero));
    }
    if version > newest {
        return Err(SeedFormatError::NewerVersion(version));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: BinaryHeader = BinaryHeader { magic: b"FERRYTESTHDR", version: 2, name: "test thing", short: "thing" };

    #[test]
    fn binary_header_round_trips_and_refuses_what_it_cannot_read() {
        let h = TEST.encode();
        assert_eq!(&h, b"FERRYTESTHDR\x02\x00");
        assert_eq!(TEST.check(&h), Ok(2));
        assert_eq!(TEST.check(b"FERRYTESTHDR\x01\x00 and more"), Ok(1), "older versions stay readable");
        assert_eq!(TEST.check(b"FERRYTESTHDR\x03\x00"), Err(SeedFormatError::NewerVersion(3)));
        assert_eq!(TEST.check(b"FERRYTESTHDR\x00\x00"), Err(SeedFormatError::malformed("thing version 0")));
        assert_eq!(TEST.check(b"FERRYTESTHDX\x01\x00"), Err(SeedFormatError::malformed("not a test thing (bad magic)")));
        assert_eq!(TEST.check(b"FERRY"), Err(SeedFormatError::malformed("truncated thing")));
    }

    #[test]
    fn json_fields_follow_the_same_rule() {
        assert_eq!(check_json("ferry-x", 1, "ferry-x", 1), Ok(()));
        assert_eq!(check_json("ferry-y", 1, "ferry-x", 1), Err(SeedFormatError::malformed("magic \"ferry-y\" is not \"ferry-x\"")));
        assert_eq!(check_json("ferry-x", 0, "ferry-x", 1), Err(SeedFormatError::malformed("version 0")));
        assert_eq!(check_json("ferry-x", 2, "ferry-x", 1), Err(SeedFormatError::NewerVersion(2)));
    }
}
