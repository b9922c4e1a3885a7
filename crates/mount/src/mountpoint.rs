//! The mount point: checked before anything is mounted (an empty folder), and cleared of a
//! mount that a killed `ferry mount` left behind.
//!
//! A FUSE file system whose process was killed (`kill -9`) stays mounted with nobody serving
//! it: every access fails with "Transport endpoint is not connected" (`ENOTCONN`). Such a mount
//! point is detached lazily (`umount -l`, or `fusermount -u -z` for a user who is not root) and
//! then used.

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Error;

/// What [`prepare`] did beyond checking, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    Ready,
    /// A dead mount was found there and detached.
    DetachedStale,
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Checks that `path` is an empty folder, detaching a dead FUSE mount found there first.
pub fn prepare(path: &Path) -> Result<Prepared, Error> {
    let (prepared, state) = match check(path) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTCONN.raw_os_error()) => {
            detach(path)?;
            (Prepared::DetachedStale, check(path).map_err(|e| io_error(path, e))?)
        }
        Err(e) => return Err(io_error(path, e)),
        Ok(state) => (Prepared::Ready, state),
    };
    match state {
        Check::Empty => Ok(prepared),
        Check::NotEmpty => Err(Error::NotEmpty(show(path))),
        Check::NotAFolder => Err(Error::NotAFolder(show(path))),
    }
}

enum Check {
    Empty,
    NotEmpty,
    NotAFolder,
}

fn check(path: &Path) -> std::io::Result<Check> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(Check::NotAFolder);
    }
    Ok(if std::fs::read_dir(path)?.next().is_some() { Check::NotEmpty } else { Check::Empty })
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::MissingMountPoint(show(path))
    } else {
        Error::MountPoint { path: show(path), error: e }
    }
}

/// Detaches the dead mount at `path`: `umount2(MNT_DETACH)` as root, else the fusermount
/// helper (`-u -z`).
fn detach(path: &Path) -> Result<(), Error> {
    let direct = match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => return Ok(()),
        Err(e) => std::io::Error::from(e),
    };
    for helper in ["fusermount3", "fusermount"] {
        let done = Command::new(helper).args(["-u", "-z", "--"]).arg(path).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if done.is_ok_and(|s| s.success()) {
            return Ok(());
        }
    }
    Err(Error::Stale { path: show(path), reason: direct.to_string() })
}

/// Detaches the live mount at `path` (its files may still be open: they keep working until
/// closed, and the file system ends then).
pub fn detach_live(path: &Path) -> Result<(), Error> {
    detach(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_folder_will_do() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mp = dir.path().join("mp");
        assert!(matches!(prepare(&mp), Err(Error::MissingMountPoint(_))));
        std::fs::write(&mp, b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(prepare(&mp), Err(Error::NotAFolder(_))));
        std::fs::remove_file(&mp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(&mp).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(prepare(&mp).ok(), Some(Prepared::Ready));
        std::fs::write(mp.join("f"), b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(prepare(&mp), Err(Error::NotEmpty(_))));
    }
}
