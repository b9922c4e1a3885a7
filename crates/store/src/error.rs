//! The store's one error type, and the mapping from `object_store` errors onto it.

use std::error::Error as StdError;

/// Result of every [`Store`](crate::Store) operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A failed store operation: what was attempted (`op`), on which key, what kind of failure, and a
/// message that never contains secrets (no keys, SAS tokens, signatures or signed URLs).
///
/// Displayed as `"{op} {key}: {message}"`, e.g. `get data/3f/3fa2…: not found`; as the message
/// alone when `op` is empty (a call of the vault's control plane, whose path means nothing to a
/// user: the message says what was refused and what to do).
#[derive(Debug)]
pub struct StoreError {
    pub kind: ErrorKind,
    pub op: &'static str,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.op.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} {}: {}", self.op, self.key, self.message)
        }
    }
}

impl StdError for StoreError {}

/// What a caller can do about a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No object at the key (or no container/bucket).
    NotFound,
    /// A conditional create found an object already there.
    AlreadyExists,
    /// Network trouble, timeouts, throttling, 5xx: the same call may succeed if retried.
    Transient,
    /// Anything a retry will not fix: bad credentials, permission denied, invalid key or range,
    /// unsupported operation, local I/O errors such as a full disk.
    Permanent,
}

impl StoreError {
    pub fn new(kind: ErrorKind, op: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError { kind, op, key: key.into(), message: message.into() }
    }

    pub fn not_found(op: &'static str, key: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, op, key, "not found")
    }

    pub fn permanent(op: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, op, key, message)
    }

    pub fn transient(op: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, op, key, message)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// Map an `object_store` error from operation `op` on `key`.
    ///
    /// NotFound -> NotFound; AlreadyExists and Precondition -> AlreadyExists; transport errors,
    /// timeouts, HTTP 5xx/429/408 -> Transient; everything else (authentication, permission,
    /// invalid path, not implemented, local I/O) -> Permanent.
    pub(crate) fn from_object_store(op: &'static str, key: &str, err: object_store::Error) -> Self {
        use object_store::Error as E;
        let kind = match &err {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::AlreadyExists,
            E::Generic { source, .. } => classify_source(source.as_ref()),
            E::JoinError { .. }
            | E::NotSupported { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::UnknownConfigurationKey { .. } => ErrorKind::Permanent,
            _ => ErrorKind::Permanent,
        };
        let message = match kind {
            ErrorKind::NotFound => "not found".to_string(),
            ErrorKind::AlreadyExists => "already exists".to_string(),
            _ => redact(&with_root_cause(&err)),
        };
        StoreError::new(kind, op, key, message)
    }
}

/// The error's text, plus its innermost cause when the text does not already say it
/// (object_store's "HTTP error: error sending request" hides "Connection refused").
fn with_root_cause(err: &(dyn StdError + 'static)) -> String {
    let text = err.to_string();
    let mut root = err;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = root.to_string();
    if cause.is_empty() || text.contains(&cause) {
        text
    } else {
        format!("{text}: {cause}")
    }
}

/// Walk an error's source chain looking for something that says "try again".
fn classify_source(err: &(dyn StdError + 'static)) -> ErrorKind {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        // Transport-level failure of an HTTP request: connect, send, timeout, dropped or
        // truncated response. All of these may succeed on another attempt.
        if e.downcast_ref::<object_store::client::HttpError>().is_some() {
            return ErrorKind::Transient;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::TimedOut
                | K::Interrupted
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::ConnectionRefused
                | K::NotConnected
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::WouldBlock => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            };
        }
        // object_store's terminal HTTP error type is not nameable outside the crate; its text
        // carries the status ("Server returned non-2xx status code: 503 Service Unavailable").
        if let Some(status) = http_status_in(&e.to_string()) {
            return kind_for_status(status);
        }
        current = e.source();
    }
    ErrorKind::Permanent
}

/// The kind for a failed HTTP response status.
pub(crate) fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        408 | 429 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// Find the status code in object_store's "status code: NNN" error text.
fn http_status_in(text: &str) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let at = text.find(MARKER)? + MARKER.len();
    let digits = text.get(at..at + 3)?;
    digits.parse().ok()
}

/// Strip anything secret from a message that may echo URLs or server error bodies: query strings
/// of URLs (SAS tokens, presigned signatures), `Signature=`/`sig=`/`Credential=` values, the
/// string-to-sign Azure returns on auth failures, and the values of the secret environment
/// variables. Long messages are shortened.
pub(crate) fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&redact_word(word));
    }
    // Azure echoes the canonical string-to-sign in authentication failures.
    if let Some(at) = out.find("Server used following string to sign") {
        out.truncate(at);
        out.push_str("[string-to-sign redacted]");
    }
    for name in SECRET_ENV_VARS {
        if let Ok(value) = std::env::var(name) {
            if value.len() >= 4 {
                out = out.replace(&value, "[redacted]");
            }
        }
    }
    const MAX: usize = 600;
    if out.len() > MAX {
        let mut end = MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

const SECRET_ENV_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
];

fn redact_word(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    if lower.contains("http://") || lower.contains("https://") {
        if let Some(q) = word.find('?') {
            return format!("{}?[redacted]", &word[..q]);
        }
    }
    for marker in ["signature=", "sig=", "credential=", "x-amz-security-token="] {
        if let Some(at) = lower.find(marker) {
            let end = at + marker.len();
            return format!("{}[redacted]", &word[..end]);
        }
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::client::{HttpError, HttpErrorKind};

    fn generic(source: Box<dyn StdError + Send + Sync>) -> object_store::Error {
        object_store::Error::Generic { store: "test", source }
    }

    #[test]
    fn display_is_op_key_message() {
        let e = StoreError::not_found("get", "data/3f/3fa2");
        assert_eq!(e.to_string(), "get data/3f/3fa2: not found");
        assert!(e.is_not_found());
        assert!(!e.is_transient());
    }

    #[test]
    fn maps_object_store_kinds() {
        let src = || -> Box<dyn StdError + Send + Sync> { "x".into() };
        let cases = [
            (object_store::Error::NotFound { path: "k".into(), source: src() }, ErrorKind::NotFound),
            (object_store::Error::AlreadyExists { path: "k".into(), source: src() }, ErrorKind::AlreadyExists),
            (object_store::Error::Precondition { path: "k".into(), source: src() }, ErrorKind::AlreadyExists),
            (object_store::Error::PermissionDenied { path: "k".into(), source: src() }, ErrorKind::Permanent),
            (object_store::Error::Unauthenticated { path: "k".into(), source: src() }, ErrorKind::Permanent),
            (object_store::Error::NotImplemented { operation: "x".into(), implementer: "y".into() }, ErrorKind::Permanent),
            (generic(Box::new(HttpError::new(HttpErrorKind::Connect, io_err()))), ErrorKind::Transient),
            (generic(Box::new(HttpError::new(HttpErrorKind::Timeout, io_err()))), ErrorKind::Transient),
            (
                generic(
                    "Error performing PUT http://h/b/k in 1s - Server returned non-2xx status code: 503 Service Unavailable: busy".into(),
                ),
                ErrorKind::Transient,
            ),
            (generic("Server returned non-2xx status code: 429 Too Many Requests".into()), ErrorKind::Transient),
            (generic("Server returned non-2xx status code: 400 Bad Request: nope".into()), ErrorKind::Permanent),
            (generic(Box::new(std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full"))), ErrorKind::Permanent),
            (generic("something odd".into()), ErrorKind::Permanent),
        ];
        for (err, want) in cases {
            let text = err.to_string();
            let got = StoreError::from_object_store("put", "k", err);
            assert_eq!(got.kind, want, "{text}");
            assert_eq!(got.op, "put");
            assert_eq!(got.key, "k");
        }
    }

    fn io_err() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused")
    }

    #[test]
    fn status_kinds() {
        assert_eq!(kind_for_status(503), ErrorKind::Transient);
        assert_eq!(kind_for_status(500), ErrorKind::Transient);
        assert_eq!(kind_for_status(429), ErrorKind::Transient);
        assert_eq!(kind_for_status(408), ErrorKind::Transient);
        assert_eq!(kind_for_status(403), ErrorKind::Permanent);
        assert_eq!(kind_for_status(404), ErrorKind::NotFound);
        assert_eq!(http_status_in("status code: 5"), None);
    }

    #[test]
    fn redacts_urls_and_signatures() {
        let m = redact("Error performing GET https://acct.blob.core.windows.net/c/k?sv=2021&sig=abcd%2B in 1s");
        assert!(!m.contains("sig=abcd"), "{m}");
        assert!(m.contains("https://acct.blob.core.windows.net/c/k?[redacted]"), "{m}");

        let m = redact("AWS4-HMAC-SHA256 Credential=AKIA/2024, SignedHeaders=host, Signature=deadbeef");
        assert!(!m.contains("AKIA"), "{m}");
        assert!(!m.contains("deadbeef"), "{m}");

        let m = redact("403 AuthenticationFailed Server used following string to sign: 'PUT\n\n'");
        assert!(m.ends_with("[string-to-sign redacted]"), "{m}");

        let long = "x".repeat(5000);
        assert!(redact(&long).chars().count() <= 601);
    }

    #[test]
    fn transient_message_is_redacted() {
        let err = generic(
            "Error performing PUT http://h/c/k?se=2030&sig=SECRET in 1s - Server returned non-2xx status code: 500 Internal Server Error"
                .into(),
        );
        let e = StoreError::from_object_store("put", "k", err);
        assert!(e.is_transient());
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
