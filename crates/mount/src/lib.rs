//! `ferry mount`: a repository's recovery points as a read-only file system (FUSE).
//!
//! ```text
//! MOUNTPOINT/recovery-points/<UTC time>_<ID prefix>/<the backed-up absolute paths>
//! MOUNTPOINT/latest -> recovery-points/<the newest>
//! MOUNTPOINT/hosts/<host>/<UTC time>_<ID prefix> -> ../../recovery-points/<same>
//! MOUNTPOINT/tags/<tag>/<UTC time>_<ID prefix>   -> ../../recovery-points/<same>
//! ```
//!
//! Files show their recorded size, mode, owner, times and extended attributes; symlinks, hard
//! links (one inode number), FIFOs and device nodes are as recorded. Nothing is read before it
//! is needed: a folder's tree when it is first looked into, a file's chunk offsets when it is
//! first read, and of its content only the chunks a read covers, each with one ranged read of
//! its pack, decoded once into a bounded cache shared by every open file.
//!
//! The modules: [`mountpoint`] (checks, dead mounts), `points` (the recovery-point list and
//! its names), `layout` (the made-up folders and links), `inodes` (the inode table, trees read
//! lazily), `attr` (what `stat` shows), `content` (random-access reads), `units` (the cache of
//! decoded units), `fs` (the FUSE requests). FUSE is `fuser`, pure Rust: as root it mounts with
//! mount(2), otherwise through the `fusermount3` (or `fusermount`) helper; no libfuse.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let repo: std::sync::Arc<ferry_repo::Repository> = todo!();
//! let path = std::path::Path::new("/mnt/backup");
//! ferry_mount::mountpoint::prepare(path)?;
//! let mut mounted = ferry_mount::mount(repo, path, &ferry_mount::MountOptions::default())?;
//! let mut unmounter = mounted.unmounter(); // call .unmount() from a signal handler thread
//! mounted.run()?; // serves until unmounted
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod attr;
mod content;
mod fs;
mod inodes;
mod layout;
pub mod mountpoint;
mod points;
mod units;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_format::RecoveryPointId;
use ferry_repo::Repository;
use fuser::{Config, MountOption, Session};

pub use content::{OpenFile, ReadError, Reader};
pub use points::{folder_name, REFRESH};

/// What can go wrong, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the mount point {0} does not exist: create it first (mkdir {0})")]
    MissingMountPoint(String),
    #[error("the mount point {0} is not a folder: give an empty folder")]
    NotAFolder(String),
    #[error("the mount point {0} is not empty: give an empty folder (if ferry is mounted there, `fusermount -u {0}` unmounts it)")]
    NotEmpty(String),
    #[error(
        "{path} is a mount left behind by a ferry mount that was killed, and it could not be detached ({reason}): run \
         `fusermount -u -z {path}` (or `umount -l {path}` as root), then mount again"
    )]
    Stale { path: String, reason: String },
    // (The I/O errors are in the message, not error sources: the message is the whole line.)
    #[error("check the mount point {path}: {error}")]
    MountPoint { path: String, error: std::io::Error },
    #[error("mount at {path}: {error}{hint}")]
    Mount { path: String, error: std::io::Error, hint: &'static str },
    #[error("serve the file system at {path}: {error}")]
    Serve { path: String, error: std::io::Error },
    #[error(transparent)]
    Repo(#[from] ferry_repo::Error),
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Bytes of decoded chunks kept for all open files together.
    pub cache_bytes: usize,
    /// Show only these recovery points (`None`: all of them, and new ones as they come).
    pub only: Option<HashSet<RecoveryPointId>>,
    /// Threads serving the kernel's requests.
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions { cache_bytes: 256 << 20, only: None, threads: 4 }
    }
}

/// A mounted file system, not yet serving: [`Mounted::run`] serves it until it is unmounted.
#[derive(Debug)]
pub struct Mounted {
    session: Session<fs::FerryFs>,
    path: PathBuf,
    points: usize,
}

/// Unmounts from another thread (a signal handler's).
#[derive(Debug)]
pub struct Unmounter {
    inner: fuser::SessionUnmounter,
    path: PathBuf,
}

impl Unmounter {
    /// Unmounts; when files in the mount are still open, detaches it instead (it disappears
    /// now, and the file system ends when the last of them is closed).
    pub fn unmount(&mut self) -> Result<(), Error> {
        match self.inner.unmount() {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::info!("unmount {}: {e}; detaching it", self.path.display());
                mountpoint::detach_live(&self.path)
            }
        }
    }
}

/// Mounts `repo`'s recovery points at `path` (check it first with [`mountpoint::prepare`]).
pub fn mount(repo: Arc<Repository>, path: &Path, opts: &MountOptions) -> Result<Mounted, Error> {
    let mut points = points::Points::new(opts.only.clone());
    points.refresh(&repo)?;
    let count = points.list.len();
    let owner = attr::Owner {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        since: std::time::SystemTime::now(),
    };
    let fs = fs::FerryFs::new(repo, points, opts.cache_bytes, owner);
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("ferry".into()),
        MountOption::Subtype("ferry".into()),
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let session = Session::new(fs, path, &config).map_err(|error| {
        let hint = match error.kind() {
            std::io::ErrorKind::NotFound => " (is FUSE there? /dev/fuse, and fusermount3 or fusermount when not root)",
            std::io::ErrorKind::PermissionDenied => {
                " (mount as root; or, as another user, /dev/fuse must be open to you, mode 0666 as usual, and fusermount3 \
                 or fusermount installed: Debian's fuse3 or fuse package)"
            }
            _ => "",
        };
        Error::Mount { path: path.display().to_string(), error, hint }
    })?;
    Ok(Mounted { session, path: path.to_path_buf(), points: count })
}

impl Mounted {
    /// How many recovery points the mount showed when it was made.
    pub fn points(&self) -> usize {
        self.points
    }

    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter { inner: self.session.unmount_callable(), path: self.path.clone() }
    }

    /// Serves the kernel's requests until the file system is unmounted (by [`Unmounter`],
    /// `fusermount -u` or `umount`).
    pub fn run(self) -> Result<(), Error> {
        let path = self.path.display().to_string();
        match self.session.run() {
            // The kernel ends the connection of a mount detached while files in it were open
            // (and of one aborted through /sys/fs/fuse/connections) with this, not ENODEV.
            Err(error) if error.raw_os_error() == Some(rustix::io::Errno::CONNABORTED.raw_os_error()) => Ok(()),
            r => r.map_err(|error| Error::Serve { path, error }),
        }
    }
}
