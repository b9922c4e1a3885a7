//! ferry-vault's errors at its public boundary (opening the database, serving): the cases a
//! caller may branch on have their own variant; everything else is `Other`, with its context
//! chain as it was written. Messages are the ones the vault always gave (the CLI prints them).

/// Why the vault could not open its database or serve.
#[derive(Debug, thiserror::Error)]
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
    /// Anything else (the file system, the store, the certificate, the network), as reported.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A result with ferry-vault's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
