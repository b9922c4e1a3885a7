//! The frozen start of every seed structure: a magic and a version. The binary ones (object
//! file, journal, manifest, device seal) begin with 12 magic bytes and the version as u16 LE;
//! the JSON ones (label, device header) carry `magic` and `version` fields. One codec checks
//! them all the same way: the magic must match, version 0 is malformed, a newer version is
//! [`DiskFormatError::NewerVersion`] (upgrade ferry).

use crate::DiskFormatError;

/// Bytes of a binary header: the magic, then the version.
pub(crate) const BINARY_HEADER_LEN: usize = 14;

/// One structure's magic and the version this build writes (and the newest it reads).
pub(crate) struct Header {
    pub magic: &'static [u8],
    pub version: u32,
    /// What the structure is, for messages: "a seed journal".
    pub what: &'static str,
    /// Its short name, for messages: "journal".
    pub short: &'static str,
}

impl Header {
    /// The binary header: the 12 magic bytes, the version as u16 LE.
    pub(crate) const fn binary(&self) -> [u8; BINARY_HEADER_LEN] {
        let m = self.magic;
        assert!(m.len() == 12 && self.version <= u16::MAX as u32);
        let mut h = [0u8; BINARY_HEADER_LEN];
        let mut i = 0;
        while i < 12 {
            h[i] = m[i];
            i += 1;
        }
        let v = (self.version as u16).to_le_bytes();
        h[12] = v[0];
        h[13] = v[1];
        h
    }

    /// Checks the binary header at the start of `bytes` (the caller checked there are at least
    /// [`BINARY_HEADER_LEN`] of them); returns the version.
    pub(crate) fn check_binary(&self, bytes: &[u8]) -> Result<u32, DiskFormatError> {
        if bytes.get(..12) != Some(self.magic) {
            return Err(DiskFormatError::malformed(format!("not {} (bad magic)", self.what)));
        }
        let version = bytes.get(12..14).map_or(0, |v| u16::from_le_bytes([v[0], v[1]]));
        self.check_version(version.into(), &format!("{} version 0", self.short))
    }

    /// Checks the `magic` and `version` fields of a JSON structure; returns the version.
    pub(crate) fn check_json(&self, magic: &str, version: u32) -> Result<u32, DiskFormatError> {
        if magic.as_bytes() != self.magic {
            let expected = String::from_utf8_lossy(self.magic);
            return Err(DiskFormatError::malformed(format!("magic {magic:?} is not {expected:?}")));
        }
        self.check_version(version, "version 0")
    }

    fn check_version(&self, version: u32, zero: &str) -> Result<u32, DiskFormatError> {
        if version == 0 {
            return Err(DiskFormatError::malformed(zero));
        }
        if version > self.version {
            return Err(DiskFormatError::NewerVersion(version));
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Header = Header { magic: b"FERRYTESTHDR", version: 2, what: "a test file", short: "test file" };

    #[test]
    fn fixed_bytes_and_checks() {
        assert_eq!(&T.binary(), b"FERRYTESTHDR\x02\x00");
        assert_eq!(T.check_binary(b"FERRYTESTHDR\x01\x00rest"), Ok(1));
        assert_eq!(T.check_binary(b"FERRYTESTHDR\x03\x00"), Err(DiskFormatError::NewerVersion(3)));
        assert_eq!(T.check_binary(b"FERRYTESTHDR\x00\x00"), Err(DiskFormatError::malformed("test file version 0")));
        assert_eq!(T.check_binary(b"FERRYOTHERXX\x01\x00"), Err(DiskFormatError::malformed("not a test file (bad magic)")));
        assert_eq!(T.check_json("FERRYTESTHDR", 2), Ok(2));
        assert_eq!(T.check_json("x", 1), Err(DiskFormatError::malformed("magic \"x\" is not \"FERRYTESTHDR\"")));
        assert_eq!(T.check_json("FERRYTESTHDR", 0), Err(DiskFormatError::malformed("version 0")));
    }
}
