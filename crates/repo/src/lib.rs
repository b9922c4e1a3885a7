//! Ferry's repository engine: everything that reads and writes a repository.
//!
//! - [`Repository`]: open or create a repository on any [`ferry_store::Store`], unlock it with a
//!   passphrase, read blobs, trees and recovery points, manage key slots;
//! - [`backup`]: the archiver, a pipeline that keeps every core busy (walk, read, chunk, hash,
//!   compress, encrypt, upload) and writes packs, then index, then the recovery point;
//! - [`restore`], [`check`], [`forget`], [`prune`], [`diff`]: the rest of the lifecycle;
//! - [`cache`]: the on-disk local index and files cache, so memory stays flat however large
//!   the repository grows;
//! - [`Error`]: what every public function returns on failure, a variant to branch on (locked,
//!   wrong passphrase, store failure, ...) holding the message chain users see.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let store = ferry_store::open("/tmp/repo")?;
//! let cache = std::path::Path::new("/tmp/ferry-cache");
//! let repo = ferry_repo::Repository::init(store, b"a long passphrase!", &Default::default(), cache)?;
//! let opts = ferry_repo::backup::BackupOptions::new(vec!["/etc".into()]);
//! let outcome = ferry_repo::backup::run(&repo, &opts, &ferry_repo::Progress::default())?;
//! println!("recovery point {}", outcome.recovery_point);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod backup;
pub mod blobset;
mod buffers;
pub mod cache;
pub mod check;
pub mod diff;
mod error;
pub mod forget;
mod lock;
mod packer;
mod progress;
pub mod prune;
mod repository;
pub mod restore;
pub mod tree_walk;

pub(crate) use error::RepoError;
pub use error::{Detail, Error, Result};
pub use lock::{live_locks, Locked, RepoLock};
pub use progress::Progress;
pub use repository::{InitOptions, Repository, UnitDecoder};
