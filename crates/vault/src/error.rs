//! ferry-vault's error type at its public boundary: [`Error`], whose variants say what went wrong
//! for a caller that must branch (the database location, the connection, the database, the
//! store, the secrets, a local file, ...), each carrying the whole message chain users see. Inside
//! the crate errors are built with `anyhow` context; they become an [`Error`] where they leave a
//! public function, sorted by the first error in their chain that says what kind they are (the
//! same pattern as ferry-repo's errors). Messages are the ones the vault always gave (the CLI
//! prints them).

/// The result of ferry-vault's public functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a vault operation failed. The variants without fields of their own hold the [`Detail`]:
/// the message and its causes, printed as they are (`{:#}` shows the chain).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--database` is neither `sqlite:PATH` nor a PostgreSQL URL. The value is not kept: a
    /// mistyped URL may still hold a password.
    #[error(
        "--database: expected sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE (the value is not shown: it may hold a password)"
    )]
    Location,
    /// PostgreSQL did not answer, or refused the connection. `shown` is the URL without its
    /// password, `reason` the driver's message with any password replaced.
    #[error("cannot connect to PostgreSQL at {shown}: {reason} — is it running, and are the host, port, user, password and database name right?")]
    Connect { shown: String, reason: String },
    /// The database was opened but its schema could not be brought up to date (`shown`: the
    /// database, as [`crate::Db::describe`] names it).
    #[error("create the vault's tables in {shown}")]
    Schema {
        shown: String,
        #[source]
        source: anyhow::Error,
    },
    /// A job (or other record) the operation works on is not there: deleted meanwhile.
    #[error(transparent)]
    NotFound(Detail),
    /// The record kept changing under the operation (other requests or servers changing it at
    /// the same time): trying again may succeed.
    #[error(transparent)]
    Conflict(Detail),
    /// A query of the control plane's database failed (`sqlx::Error` in the chain).
    #[error(transparent)]
    Database(Detail),
    /// The object store failed ([`ferry_store::StoreError`] says how: not found, transient, ...).
    #[error(transparent)]
    Store(Detail),
    /// Stored data did not decode or verify (a damaged or hostile upload or repository).
    #[error(transparent)]
    Format(Detail),
    /// Sealing, opening or key handling failed (the vault's secrets, a disk key).
    #[error(transparent)]
    Crypto(Detail),
    /// The certificate or key could not be made or loaded.
    #[error(transparent)]
    Tls(Detail),
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
    /// The first error of type `T` in this error's chain, e.g. the
    /// [`ferry_store::StoreError`] (is it transient?).
    pub fn find<T: std::error::Error + 'static>(&self) -> Option<&T> {
        Kinded::find(self)
    }
}

impl Kinded for Error {
    const OTHER: fn(Detail) -> Self = Error::Other;

    fn detail(&self) -> Option<&Detail> {
        match self {
            Error::NotFound(d)
            | Error::Conflict(d)
            | Error::Database(d)
            | Error::Store(d)
            | Error::Format(d)
            | Error::Crypto(d)
            | Error::Tls(d)
            | Error::Io(d)
            | Error::Other(d) => Some(d),
            Error::Location | Error::Connect { .. } | Error::Schema { .. } => None,
        }
    }

    fn kind(&self) -> Option<fn(Detail) -> Error> {
        Some(match self {
            Error::NotFound(_) => Error::NotFound,
            Error::Conflict(_) => Error::Conflict,
            Error::Database(_) => Error::Database,
            Error::Store(_) => Error::Store,
            Error::Format(_) => Error::Format,
            Error::Crypto(_) => Error::Crypto,
            Error::Tls(_) => Error::Tls,
            Error::Io(_) => Error::Io,
            Error::Other(_) => Error::Other,
            Error::Location | Error::Connect { .. } | Error::Schema { .. } => return None,
        })
    }

    fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<fn(Detail) -> Error> {
        if let Some(v) = cause.downcast_ref::<VaultError>() {
            return Some(match v {
                VaultError::Vanished { .. } => Error::NotFound,
                VaultError::Raced(_) => Error::Conflict,
            });
        }
        ferry_error::kind_by_type!(cause,
            sqlx::Error => Error::Database,
            ferry_store::StoreError => Error::Store,
            ferry_format::FormatError => Error::Format,
            ferry_crypto::CryptoError => Error::Crypto,
            rustls::Error => Error::Tls,
            rcgen::Error => Error::Tls,
            std::io::Error => Error::Io,
        )
    }
}

// From `anyhow` (sorted), and `?` on the errors ferry-vault's functions meet, straight into an
// [`Error`].
ferry_error::from_via_anyhow!(
    Error:
    VaultError,
    sqlx::Error,
    ferry_store::StoreError,
    ferry_format::FormatError,
    ferry_crypto::CryptoError,
    rustls::Error,
    rcgen::Error,
    std::io::Error,
    serde_json::Error,
    tokio::task::JoinError,
    ferry_api::Invalid,
    // The alerts' webhook and e-mail.
    reqwest::Error,
    lettre::error::Error,
);

/// The errors ferry-vault raises itself that a caller branches on (each becomes the [`Error`]
/// variant its doc names).
#[derive(Debug, thiserror::Error)]
pub(crate) enum VaultError {
    /// The job `name` (`what`: "import job", "device job", "job") was deleted while it was being
    /// changed ([`Error::NotFound`]).
    #[error("{what} {name} vanished")]
    Vanished { what: &'static str, name: String },
    /// A guarded change of device job `.0`'s disk records lost every race
    /// ([`Error::Conflict`]).
    #[error("device job {0} kept changing while it was being updated: try again")]
    Raced(String),
}

pub(crate) use ferry_error::bail;

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_comes_from_the_chain_and_the_message_stays_whole() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e: Error = Err::<(), _>(io).context("read /x").context("load secrets").unwrap_err().into();
        assert!(matches!(e, Error::Io(_)), "{e:?}");
        // Wrapped again (a public function calling another), the kind and the text carry over.
        let again: Error = Err::<(), _>(e).context("outer").unwrap_err().into();
        assert!(matches!(again, Error::Io(_)), "{again:?}");
        assert!(again.find::<std::io::Error>().is_some());
        // The error the chain starts with is found too.
        let e: Error = ferry_store::StoreError::not_found("get", "machines/a/keys/k").into();
        assert!(matches!(e, Error::Store(_)), "{e:?}");
        assert!(e.find::<ferry_store::StoreError>().is_some_and(ferry_store::StoreError::is_not_found));
        assert_eq!(format!("{:#}", anyhow::Error::from(again)), "outer: load secrets: read /x: gone");

        let e: Error = anyhow::anyhow!("something else").into();
        assert!(matches!(e, Error::Other(_)));
        assert_eq!(e.to_string(), "something else");

        let e: Error = Err::<(), _>(VaultError::Raced("d1".into())).context("erase").unwrap_err().into();
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        assert_eq!(format!("{e:#}"), "erase: device job d1 kept changing while it was being updated: try again");

        // The variants with fields of their own stay what they are, unwrapped.
        let e: Error = anyhow::Error::from(Error::Location).into();
        assert!(matches!(e, Error::Location));
    }
}
