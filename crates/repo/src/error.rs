//! ferry-repo's error type: [`Error`], whose variants say what went wrong for a caller that
//! must branch (locked, wrong passphrase, store failure, ...), each carrying the whole message
//! chain users see (`open pack 3fa2…: <what the store said>`). Inside the crate errors are built
//! with `anyhow` context; they become an [`Error`] where they leave a public function, sorted by
//! the first error in their chain that says what kind they are.

use ferry_format::BlobId;

use crate::Locked;

/// The result of ferry-repo's public functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a repository operation failed. Every variant holds the [`Detail`]: the message and its
/// causes, printed as they are (`{:#}` shows the chain: `read pack 3fa2…: not found`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no repository at the place given (`ferry init` creates one).
    #[error(transparent)]
    NotARepository(Detail),
    /// `init` found a repository already there.
    #[error(transparent)]
    AlreadyExists(Detail),
    /// No key of the repository opens with the passphrase given.
    #[error(transparent)]
    WrongPassphrase(Detail),
    /// Another process holds a lock that excludes the one asked for ([`Locked`] says who).
    #[error(transparent)]
    Locked(Detail),
    /// The repository has no recovery point, or none matches what was asked for.
    #[error(transparent)]
    NoRecoveryPoint(Detail),
    /// A blob is not in the index: the repository is damaged or the index incomplete.
    #[error(transparent)]
    MissingBlob(Detail),
    /// The object store failed ([`ferry_store::StoreError`] says how: not found, transient, ...).
    #[error(transparent)]
    Store(Detail),
    /// Stored data did not decode or verify (a damaged or hostile repository).
    #[error(transparent)]
    Format(Detail),
    /// Decryption or key handling failed.
    #[error(transparent)]
    Crypto(Detail),
    /// A local file or folder could not be read or written (the message names it).
    #[error(transparent)]
    Io(Detail),
    /// Anything else (the message says what).
    #[error(transparent)]
    Other(Detail),
}

pub use ferry_error::Detail;
use ferry_error::Kinded;

impl Error {
    /// The first error of type `T` in this error's chain, e.g. the [`Locked`] holder or the
    /// [`ferry_store::StoreError`] (is it transient?).
    pub fn find<T: std::error::Error + 'static>(&self) -> Option<&T> {
        Kinded::find(self)
    }

    /// This error and its causes, outermost first.
    pub(crate) fn chain(&self) -> anyhow::Chain<'_> {
        self.detail_ref().chain()
    }

    fn detail_ref(&self) -> &Detail {
        match self {
            Error::NotARepository(d)
            | Error::AlreadyExists(d)
            | Error::WrongPassphrase(d)
            | Error::Locked(d)
            | Error::NoRecoveryPoint(d)
            | Error::MissingBlob(d)
            | Error::Store(d)
            | Error::Format(d)
            | Error::Crypto(d)
            | Error::Io(d)
            | Error::Other(d) => d,
        }
    }
}

impl Kinded for Error {
    const OTHER: fn(Detail) -> Self = Error::Other;

    fn kind(&self) -> Option<fn(Detail) -> Error> {
        Some(match self {
            Error::NotARepository(_) => Error::NotARepository,
            Error::AlreadyExists(_) => Error::AlreadyExists,
            Error::WrongPassphrase(_) => Error::WrongPassphrase,
            Error::Locked(_) => Error::Locked,
            Error::NoRecoveryPoint(_) => Error::NoRecoveryPoint,
            Error::MissingBlob(_) => Error::MissingBlob,
            Error::Store(_) => Error::Store,
            Error::Format(_) => Error::Format,
            Error::Crypto(_) => Error::Crypto,
            Error::Io(_) => Error::Io,
            Error::Other(_) => Error::Other,
        })
    }

    fn detail(&self) -> Option<&Detail> {
        Some(self.detail_ref())
    }

    fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<fn(Detail) -> Error> {
        if let Some(r) = cause.downcast_ref::<RepoError>() {
            return Some(match r {
                RepoError::NotARepository(_) => Error::NotARepository,
                RepoError::AlreadyExists(_) => Error::AlreadyExists,
                RepoError::WrongPassphrase(_) => Error::WrongPassphrase,
                RepoError::MissingBlob(_) => Error::MissingBlob,
                RepoError::NoRecoveryPoints | RepoError::NoRecoveryPointMatches(_) => Error::NoRecoveryPoint,
            });
        }
        ferry_error::kind_by_type!(cause,
            Locked => Error::Locked,
            ferry_store::StoreError => Error::Store,
            ferry_format::FormatError => Error::Format,
            ferry_crypto::CryptoError => Error::Crypto,
            std::io::Error => Error::Io,
        )
    }
}

// From `anyhow` (sorted), and `?` on the errors ferry-repo's functions meet, straight into an
// [`Error`].
ferry_error::from_via_anyhow!(
    Error:
    RepoError,
    Locked,
    ferry_store::StoreError,
    ferry_format::FormatError,
    ferry_crypto::CryptoError,
    std::io::Error,
    serde_json::Error,
    // The local cache's database.
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);

/// The errors ferry-repo raises itself that a caller branches on (each becomes the [`Error`]
/// variant of the same name).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RepoError {
    #[error("there is no Ferry repository at {0}: create one with `ferry init`")]
    NotARepository(String),
    #[error("a repository already exists at {0}")]
    AlreadyExists(String),
    #[error("wrong passphrase: no key of the repository at {0} opens with it")]
    WrongPassphrase(String),
    #[error("blob {0:?} is not in the index: the repository is damaged or the index is incomplete (run `ferry check`)")]
    MissingBlob(BlobId),
    #[error("the repository has no recovery points yet")]
    NoRecoveryPoints,
    #[error("no recovery point matches {0:?} (see `ferry recovery-points`)")]
    NoRecoveryPointMatches(String),
}

pub(crate) use ferry_error::bail;

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_comes_from_the_chain_and_the_message_stays_whole() {
        let e: Error = Err::<(), _>(RepoError::WrongPassphrase("/r".into())).context("open repository").unwrap_err().into();
        assert!(matches!(e, Error::WrongPassphrase(_)), "{e:?}");
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "open repository: wrong passphrase: no key of the repository at /r opens with it"
        );

        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e: Error = Err::<(), _>(io).context("read /x").context("back up").unwrap_err().into();
        assert!(matches!(e, Error::Io(_)), "{e:?}");
        // Wrapped again (a public function calling another), the kind and the text carry over.
        let again: Error = Err::<(), _>(e).context("outer").unwrap_err().into();
        assert!(matches!(again, Error::Io(_)), "{again:?}");
        assert_eq!(format!("{:#}", anyhow::Error::from(again)), "outer: back up: read /x: gone");

        let e: Error = anyhow::anyhow!("something else").into();
        assert!(matches!(e, Error::Other(_)));
        assert_eq!(e.to_string(), "something else");
    }
}
