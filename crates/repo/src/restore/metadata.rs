//! The metadata, the restore's last pass: each file's length, owner, extended attributes,
//! mode and times through one descriptor (several threads), then the symlinks' and special
//! files', then the folders', deepest first, so their times stick.

use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

use ferry_format::tree::{Node, NodeKind};

use super::{err, FileTarget, Plan};
use crate::backup::FileError;
use crate::Progress;

/// Whether this process runs as root (asked once).
fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| rustix::process::geteuid().is_root())
}

/// Sets owner (as root), extended attributes and mode. An attribute the target file system
/// refuses is reported (the returned list) but does not stop the rest, times included.
fn set_owner_mode_xattrs(path: &Path, node: &Node, is_symlink: bool) -> std::io::Result<Vec<String>> {
    if is_root() {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?;
    }
    let mut refused = Vec::new();
    for (k, v) in &node.xattrs {
        if let Err(e) = xattr::set(path, std::ffi::OsStr::from_bytes(k), v) {
            refused.push(format!("extended attribute {} not restored: {e}", String::from_utf8_lossy(k)));
        }
    }
    if !is_symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(node.mode))?;
    }
    Ok(refused)
}

fn set_times(path: &Path, node: &Node) -> std::io::Result<()> {
    let t = filetime::FileTime::from_unix_time(node.mtime_ns.div_euclid(1_000_000_000), node.mtime_ns.rem_euclid(1_000_000_000) as u32);
    filetime::set_symlink_file_times(path, t, t)
}

/// Length, owner, extended attributes, mode and times of a restored regular file, all through
/// one file descriptor (no path lookups).
fn finish_file(f: &FileTarget) -> std::io::Result<Vec<String>> {
    let file = OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(&f.path)?;
    finish_open_file(&file, &f.node, Known::default())
}

/// What is known to be right already about a file this restore has open, so that
/// [`finish_open_file`] does not set it again: each of those calls (a truncate to the same
/// length, a chmod to the same mode, a chown to the same owner) is a journalled inode update,
/// three of them per file in a kernel-tree restore.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Known {
    /// The file's length.
    pub(super) len: Option<u64>,
    /// Its permission bits (`& 0o7777`).
    pub(super) mode: Option<u32>,
    /// This restore created it (its owner is this process's, asked with one fstat).
    pub(super) fresh: bool,
}

pub(super) fn finish_open_file(file: &fs::File, node: &Node, known: Known) -> std::io::Result<Vec<String>> {
    if known.len != Some(node.size) {
        file.set_len(node.size)?;
    }
    let mut mode = known.mode;
    if is_root() {
        let owned = known.fresh && file.metadata().is_ok_and(|m| (m.uid(), m.gid()) == (node.uid, node.gid));
        if !owned {
            std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))?;
            mode = None; // a chown may clear the set-user-ID and set-group-ID bits
        }
    }
    let mut refused = Vec::new();
    for (k, v) in &node.xattrs {
        if let Err(e) = xattr::FileExt::set_xattr(file, std::ffi::OsStr::from_bytes(k), v) {
            refused.push(format!("extended attribute {} not restored: {e}", String::from_utf8_lossy(k)));
        }
    }
    if mode != Some(node.mode & 0o7777) {
        file.set_permissions(fs::Permissions::from_mode(node.mode))?;
    }
    let t = filetime::FileTime::from_unix_time(node.mtime_ns.div_euclid(1_000_000_000), node.mtime_ns.rem_euclid(1_000_000_000) as u32);
    filetime::set_file_handle_times(file, Some(t), Some(t))?;
    Ok(refused)
}

/// The last pass: the files of several chunks (and empty ones) get their length and metadata,
/// counted done in `progress` as they are; then the other entries and the folders.
pub(super) fn finish_metadata(plan: &Plan, threads: usize, errors: &Mutex<Vec<FileError>>, progress: &Progress) {
    let report = |p: &Path, r: std::io::Result<Vec<String>>| match r {
        Ok(refused) => refused.into_iter().for_each(|m| err(errors, p, m)),
        Err(e) => err(errors, p, format!("cannot set metadata: {e}")),
    };
    // Files are independent of each other: several threads share them.
    let per_thread = plan.files.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for files in plan.files.chunks(per_thread) {
            s.spawn(move || {
                files.iter().filter(|f| !f.done.load(Ordering::Relaxed)).for_each(|f| {
                    report(&f.path, finish_file(f));
                    progress.add_done(1, 0);
                });
            });
        }
    });
    let set = |p: &Path, n: &Node, is_symlink: bool| {
        report(p, set_owner_mode_xattrs(p, n, is_symlink).and_then(|refused| set_times(p, n).map(|()| refused)));
    };
    for (p, n) in &plan.others {
        set(p, n, n.kind == NodeKind::Symlink);
    }
    for (p, n) in plan.dirs.iter().rev() {
        set(p, n, false);
    }
}
