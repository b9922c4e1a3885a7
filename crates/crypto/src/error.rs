/// What can go wrong in cryptographic operations. Callers branch on these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication failed: the data was damaged, tampered with, or sealed with another key.
    #[error("authentication failed: the data is damaged or was encrypted with another key")]
    Authentication,
    /// The passphrase does not open this key slot.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// Input too short or otherwise malformed before any cryptography could run.
    #[error("malformed encrypted data: {0}")]
    Malformed(&'static str),
    /// A key file that this version cannot read.
    #[error("unsupported key file: {0}")]
    Unsupported(String),
}
