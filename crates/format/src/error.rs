/// A structure could not be decoded or authenticated.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{what}: bad magic (not a Ferry {what})")]
    BadMagic { what: &'static str },
    #[error("{what}: format version {found} is newer than this ferry supports ({supported}); upgrade ferry")]
    NewerVersion { what: &'static str, found: u32, supported: u32 },
    #[error("{what}: truncated or malformed: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("{what}: {source}")]
    Crypto { what: &'static str, source: ferry_crypto::CryptoError },
    #[error("{what}: content does not match its ID (expected {expected}, got {actual})")]
    IdMismatch { what: &'static str, expected: String, actual: String },
}

impl FormatError {
    pub(crate) fn malformed(what: &'static str, detail: impl std::fmt::Display) -> Self {
        FormatError::Malformed { what, detail: detail.to_string() }
    }
}
