//! The error plumbing ferry-repo and ferry-vault share at their public boundary.
//!
//! Inside a library crate errors are built with `anyhow` context (`open pack 3fa2…: <what the
//! store said>`). Where they leave a public function they become the crate's own error enum,
//! whose variants say what went wrong for a caller that must branch (locked, wrong passphrase,
//! store failure, ...). Each variant holds a [`Detail`]: the whole message chain, printed as it
//! was built. The variant is chosen by the first error in the chain that says what kind it is
//! ([`Kinded::kind_of`]); the context around it stays in the message.
//!
//! A crate implements [`Kinded`] for its enum, then `impl From<anyhow::Error>` with
//! [`sort`], and lists the error types its code meets with [`from_via_anyhow!`] so `?` turns
//! them straight into the enum.
#![forbid(unsafe_code)]

use std::error::Error as StdError;
use std::fmt;

/// An error's message and causes (its `source` chain), as built inside a library crate.
pub struct Detail(anyhow::Error);

impl Detail {
    /// This error and its causes, outermost first.
    pub fn chain(&self) -> anyhow::Chain<'_> {
        self.0.chain()
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Detail {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// A crate's public error enum whose variants each wrap a [`Detail`] (and may have others with
/// fields of their own).
pub trait Kinded: StdError + Send + Sync + Sized + 'static {
    /// The variant for an error no cause in the chain gives a kind to.
    const OTHER: fn(Detail) -> Self;

    /// The variant of `self`, to make another error of the same kind; `None` for a variant
    /// that holds no [`Detail`] (wrapped in context, the errors under it say the kind).
    fn kind(&self) -> Option<fn(Detail) -> Self>;

    /// The message and causes, for the variants that hold a [`Detail`].
    fn detail(&self) -> Option<&Detail>;

    /// The kind of error `cause` (one error of a chain, not `Self`) says the whole chain is,
    /// if it says one.
    fn kind_of(cause: &(dyn StdError + 'static)) -> Option<fn(Detail) -> Self>;

    /// The first error of type `T` in this error's chain (a lock holder, a store error: is it
    /// transient?).
    fn find<T: StdError + 'static>(&self) -> Option<&T> {
        match self.detail() {
            Some(d) => d.chain().find_map(<dyn StdError>::downcast_ref::<T>),
            None => {
                std::iter::successors(Some(self as &(dyn StdError + 'static)), |e| source_of(e)).find_map(<dyn StdError>::downcast_ref::<T>)
            }
        }
    }
}

/// The error `e` says it was caused by (a free function: the closure's lifetimes need saying).
fn source_of<'a>(e: &&'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    (*e).source()
}

/// Sorts an error built inside a crate into its public enum `E`, by the first error in its
/// chain that says what kind it is. An `E` with no context around it is returned as it is.
pub fn sort<E: Kinded>(e: anyhow::Error) -> E {
    // `downcast` would also find an `E` under context, and drop the context: only take it
    // when it is the outermost error.
    let e = if (*e).is::<E>() {
        match e.downcast::<E>() {
            Ok(done) => return done,
            Err(e) => e,
        }
    } else {
        e
    };
    let kind = e.chain().find_map(|cause| match cause.downcast_ref::<E>() {
        Some(inner) => inner.kind(),
        None => E::kind_of(cause),
    });
    kind.unwrap_or(E::OTHER)(Detail(e))
}

/// A crate's error boundary: `impl From<anyhow::Error> for $error` (by [`sort`]), and
/// `impl From<T> for $error` through `anyhow` for each error type `T` the crate's functions
/// meet, so `?` turns them straight into the crate's enum.
#[macro_export]
macro_rules! from_via_anyhow {
    ($error:ty: $($t:ty),* $(,)?) => {
        /// Sorts an error built inside the crate by the first error in its chain that says
        /// what kind it is (the context around it stays in the message).
        impl From<anyhow::Error> for $error {
            fn from(e: anyhow::Error) -> Self {
                $crate::sort(e)
            }
        }
        $(
            impl From<$t> for $error {
                fn from(e: $t) -> Self {
                    anyhow::Error::from(e).into()
                }
            }
        )*
    };
}

/// For [`Kinded::kind_of`]: the variant of the first listed type `cause` is, if any
/// (`kind_by_type!(cause, std::io::Error => Error::Io, ...)`).
#[macro_export]
macro_rules! kind_by_type {
    ($cause:expr, $($t:ty => $variant:expr),+ $(,)?) => {{
        let cause: &(dyn std::error::Error + 'static) = $cause;
        $(
            if cause.is::<$t>() {
                return Some($variant);
            }
        )+
        None
    }};
}

/// `bail!` that works in functions returning either `anyhow::Result` or a crate's own result
/// (whose error implements `From<anyhow::Error>`).
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(anyhow::anyhow!($($arg)*).into())
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[derive(Debug)]
    enum Error {
        Io(Detail),
        Other(Detail),
        Plain,
    }

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Error::Io(d) | Error::Other(d) => fmt::Display::fmt(d, f),
                Error::Plain => f.write_str("plain"),
            }
        }
    }

    impl StdError for Error {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.detail().and_then(StdError::source)
        }
    }

    impl Kinded for Error {
        const OTHER: fn(Detail) -> Self = Error::Other;
        fn kind(&self) -> Option<fn(Detail) -> Self> {
            match self {
                Error::Io(_) => Some(Error::Io),
                Error::Other(_) => Some(Error::Other),
                Error::Plain => None,
            }
        }
        fn detail(&self) -> Option<&Detail> {
            match self {
                Error::Io(d) | Error::Other(d) => Some(d),
                Error::Plain => None,
            }
        }
        fn kind_of(cause: &(dyn StdError + 'static)) -> Option<fn(Detail) -> Self> {
            kind_by_type!(cause, std::io::Error => Error::Io)
        }
    }

    from_via_anyhow!(Error: std::io::Error);

    #[test]
    fn the_kind_comes_from_the_chain_and_the_message_stays_whole() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e: Error = Err::<(), _>(io).context("read /x").context("back up").unwrap_err().into();
        assert!(matches!(e, Error::Io(_)), "{e:?}");
        assert!(e.find::<std::io::Error>().is_some());
        // Wrapped again (a public function calling another), the kind and the text carry over.
        let again: Error = Err::<(), _>(e).context("outer").unwrap_err().into();
        assert!(matches!(again, Error::Io(_)), "{again:?}");
        assert_eq!(format!("{:#}", anyhow::Error::from(again)), "outer: back up: read /x: gone");

        // `?` on a listed type, and the root of the chain is found too.
        let e: Error = std::io::Error::other("disk").into();
        assert!(matches!(e, Error::Io(_)) && e.find::<std::io::Error>().is_some());

        let e: Error = anyhow::anyhow!("something else").into();
        assert!(matches!(e, Error::Other(_)));
        assert_eq!(e.to_string(), "something else");

        // A variant with no Detail stays what it is, unwrapped.
        let e: Error = anyhow::Error::from(Error::Plain).into();
        assert!(matches!(e, Error::Plain));
    }

    #[test]
    fn bail_returns_the_crate_error() {
        fn fails() -> Result<(), Error> {
            bail!("no {} here", "thing")
        }
        assert_eq!(fails().unwrap_err().to_string(), "no thing here");
    }
}
