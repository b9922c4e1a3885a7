//! The plan, the restore's first pass: walks the recovery point's trees (only the included
//! paths), creates folders, symlinks and special files, lists the regular files, creates them
//! empty (several threads), notes where each chunk goes, and makes the hard links (between
//! files, symlinks or special files alike).

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use ferry_format::recovery_point::RecoveryPoint;
use ferry_format::tree::{Node, NodeKind};
use ferry_format::BlobKind;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::metadata::{finish_open_file, Known};
use super::{err, FileTarget, Overwrite, Plan, RestoreOutcome, Sparse};
use crate::backup::FileError;
use crate::{tree_walk, Progress, Repository};

pub(super) struct Includes {
    names: GlobSet,
    paths: GlobSet,
    any: bool,
}

impl Includes {
    pub(super) fn new(patterns: &[String]) -> Result<Self> {
        let (mut n, mut p) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for pat in patterns {
            let (set, g) = if pat.contains('/') {
                let t = pat.trim_end_matches('/');
                (&mut p, if t.starts_with('/') { t.to_string() } else { format!("**/{t}") })
            } else {
                (&mut n, pat.clone())
            };
            set.add(GlobBuilder::new(&g).literal_separator(true).build().with_context(|| format!("include pattern {pat:?}"))?);
        }
        Ok(Includes { names: n.build()?, paths: p.build()?, any: !patterns.is_empty() })
    }

    fn matches(&self, path: &Path) -> bool {
        !self.any || path.file_name().is_some_and(|f| self.names.is_match(f)) || self.paths.is_match(path)
    }
}

/// Target path of a repository path. Names were validated when the tree was decoded (no
/// `/`, `.` or `..`), so the result always lies under `target`.
fn target_of(target: &Path, repo_path: &Path) -> PathBuf {
    let rel = repo_path.strip_prefix("/").unwrap_or(repo_path);
    target.join(rel)
}

/// Removes whatever is at `path` that is not a folder (so nothing is ever written through a
/// symlink planted in the target).
fn clear_non_dir(path: &Path) -> std::io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => fs::remove_file(path).map(|()| false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Walks the recovery point: creates folders, symlinks and special files, and lists the
/// regular files and hard links to restore (created next, by [`create_files`]).
pub(super) fn make_plan(
    repo: &Repository,
    rp: &RecoveryPoint,
    target: &Path,
    includes: &Includes,
    sparse: Sparse,
    errors: &Mutex<Vec<FileError>>,
    out: &mut RestoreOutcome,
) -> Result<Plan> {
    let mut plan = Plan {
        files: Vec::new(),
        dirs: Vec::new(),
        others: Vec::new(),
        blobs: HashMap::new(),
        links: Vec::new(),
        direct: AtomicBool::new(true),
    };
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Folders this restore created (empty when created: see `FileTarget::fresh`).
    let mut created: HashSet<PathBuf> = HashSet::new();
    // Folders are created lazily, only when something inside them is restored.
    let mut skipped_dirs: Vec<PathBuf> = Vec::new();
    let mut matched_dirs: Vec<PathBuf> = Vec::new();
    // The folder the previous entry went into: entries of one folder come one after another,
    // so it is checked once for all of them.
    let mut last_parent: Option<PathBuf> = None;
    tree_walk::walk(repo, &rp.tree, &mut |path, node| {
        if skipped_dirs.iter().any(|d| path.starts_with(d)) {
            return Ok(false);
        }
        let inherited = matched_dirs.iter().any(|d| path.starts_with(d));
        let included = inherited || includes.matches(path);
        let dest = target_of(target, path);
        if node.kind == NodeKind::Dir {
            if included {
                matched_dirs.push(path.to_path_buf());
                if let Err(e) = ensure_dir(&dest, target, &mut created) {
                    err(errors, &dest, format!("cannot create folder: {e}"));
                    skipped_dirs.push(path.to_path_buf());
                    return Ok(false);
                }
                plan.dirs.push((dest, node.clone()));
                out.dirs += 1;
            }
            return Ok(true);
        }
        if !included {
            return Ok(false);
        }
        if let Some(parent) = dest.parent().filter(|p| last_parent.as_deref() != Some(*p)) {
            if let Err(e) = ensure_dir(parent, target, &mut created) {
                err(errors, &dest, format!("cannot create its folder: {e}"));
                return Ok(false);
            }
            last_parent = Some(parent.to_path_buf());
        }
        // Hard links: any entry but a folder (a file, a symlink, a FIFO, a device node) whose
        // inode was met before is linked to where that one was restored.
        if let Some(first) = (node.links > 1).then(|| links.get(&(node.device, node.inode))).flatten() {
            plan.links.push((dest, first.clone()));
            return Ok(false);
        }
        let linked = node.links > 1 && node.kind != NodeKind::Socket;
        match node.kind {
            NodeKind::File => {
                if linked {
                    links.insert((node.device, node.inode), dest.clone());
                }
                let mut chunks = Vec::with_capacity(node.content.len());
                let mut offset = 0u64;
                for id in &node.content {
                    chunks.push((*id, offset));
                    // Offsets need each chunk's length: looked up once here.
                    if let Some(loc) = repo.cache().lookup(BlobKind::Data, id)? {
                        offset += u64::from(loc.entry.raw_len);
                    } else {
                        err(errors, &dest, format!("chunk {} is missing from the repository", id.short()));
                        break;
                    }
                }
                let one_shot = FileTarget::one_shot(node, &chunks);
                let fresh = dest.parent().is_some_and(|p| created.contains(p));
                let holes = match sparse {
                    Sparse::Always => true,
                    Sparse::Never => false,
                    Sparse::Auto => node.sparse,
                };
                plan.files.push(FileTarget {
                    path: dest,
                    node: node.clone(),
                    chunks,
                    one_shot,
                    holes,
                    fresh,
                    done: AtomicBool::new(false),
                });
            }
            NodeKind::Symlink | NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => match create_other(&dest, node) {
                Ok(()) => {
                    if linked {
                        links.insert((node.device, node.inode), dest.clone());
                    }
                    plan.others.push((dest, node.clone()));
                }
                Err(e) => err(errors, &dest, e),
            },
            NodeKind::Socket | NodeKind::Dir => {}
        }
        Ok(false)
    })?;
    Ok(plan)
}

/// Creates a symlink or a special file (FIFO, device node) at `dest`, replacing whatever
/// non-folder is in the way; the error says what could not be created.
fn create_other(dest: &Path, node: &Node) -> Result<(), String> {
    let ft = match node.kind {
        NodeKind::Symlink => {
            let r = clear_non_dir(dest).and_then(|_| std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&node.target), dest));
            return r.map_err(|e| format!("cannot create symlink: {e}"));
        }
        NodeKind::Fifo => rustix::fs::FileType::Fifo,
        NodeKind::CharDevice => rustix::fs::FileType::CharacterDevice,
        _ => rustix::fs::FileType::BlockDevice,
    };
    clear_non_dir(dest)
        .and_then(|_| {
            rustix::fs::mknodat(rustix::fs::CWD, dest, ft, rustix::fs::Mode::from_raw_mode(0o600), node.rdev as rustix::fs::Dev)
                .map_err(std::io::Error::from)
        })
        .map_err(|e| format!("cannot create special file: {e}"))
}

/// What became of a listed file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Created {
    Yes,
    /// A one-shot file in a fresh folder: created when its data is written.
    Later,
    /// Left as it is (`--overwrite never`, or unchanged with `if-changed`).
    Skipped,
    Failed,
}

/// Creates the listed regular files, empty, several threads at a time (file creation is most of
/// a restore's system time); then drops the skipped and failed ones from the plan, notes where
/// each chunk goes, and makes the hard links.
pub(super) fn create_files(
    plan: &mut Plan,
    threads: usize,
    overwrite: Overwrite,
    errors: &Mutex<Vec<FileError>>,
    out: &mut RestoreOutcome,
    progress: &Progress,
) {
    let mut created = vec![Created::Failed; plan.files.len()];
    let per_thread = plan.files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (files, states) in plan.files.chunks(per_thread).zip(created.chunks_mut(per_thread)) {
            s.spawn(move || {
                for (f, state) in files.iter().zip(states) {
                    *state = match create_file(f, overwrite) {
                        Ok(c) => c,
                        Err(e) => {
                            err(errors, &f.path, format!("cannot create file: {e}"));
                            Created::Failed
                        }
                    };
                }
            });
        }
    });
    let files = std::mem::take(&mut plan.files);
    for (f, state) in files.into_iter().zip(created) {
        match state {
            Created::Yes | Created::Later => {
                let idx = plan.files.len();
                for (id, offset) in &f.chunks {
                    plan.blobs.entry(*id).or_default().push((idx, *offset));
                }
                progress.add_total(1, f.node.size);
                if f.done.load(Ordering::Relaxed) {
                    progress.add_done(1, 0); // an empty file, finished at its creation
                }
                out.files += 1;
                out.bytes += f.node.size;
                plan.files.push(f);
            }
            Created::Skipped => out.skipped += 1,
            Created::Failed => {}
        }
    }
    for (link, first) in std::mem::take(&mut plan.links) {
        // linkat without AT_SYMLINK_FOLLOW: a hard link to a symlink links the symlink itself.
        let made = clear_non_dir(&link).and_then(|_| {
            rustix::fs::linkat(rustix::fs::CWD, &first, rustix::fs::CWD, &link, rustix::fs::AtFlags::empty()).map_err(std::io::Error::from)
        });
        match made {
            Ok(()) => out.links += 1,
            Err(e) => err(errors, &link, format!("cannot create hard link to {}: {e}", first.display())),
        }
    }
}

/// Creates one file empty, unless the overwrite policy keeps what is there. Whatever else is in
/// the way (a file, a symlink) goes; a folder stays and fails the create.
fn create_file(f: &FileTarget, overwrite: Overwrite) -> std::io::Result<Created> {
    if f.fresh && f.one_shot && !f.chunks.is_empty() {
        return Ok(Created::Later);
    }
    if f.fresh {
        return create_empty(f);
    }
    let existing = fs::symlink_metadata(&f.path);
    if let Ok(m) = &existing {
        let same = m.is_file() && m.len() == f.node.size && m.mtime() * 1_000_000_000 + m.mtime_nsec() == f.node.mtime_ns;
        if overwrite == Overwrite::Never || (overwrite == Overwrite::IfChanged && same) {
            return Ok(Created::Skipped);
        }
        if !m.is_dir() {
            fs::remove_file(&f.path)?;
        }
    }
    create_empty(f)
}

/// Creates the file empty (it must not exist); an empty one-shot file is finished right away.
fn create_empty(f: &FileTarget) -> std::io::Result<Created> {
    if f.one_shot && f.chunks.is_empty() {
        let (file, known) = create_final(&f.path, &f.node)?;
        finish_open_file(&file, &f.node, Known { len: Some(0), ..known })?;
        f.done.store(true, Ordering::Relaxed);
        return Ok(Created::Yes);
    }
    create_new(&f.path, 0o600)?;
    Ok(Created::Yes)
}

/// Creates a new file with permission bits `mode` (less the umask).
fn create_new(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    OpenOptions::new().write(true).create_new(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).mode(mode).open(path)
}

/// Creates a file that is written and finished at once (a one-shot file) with its recorded
/// permission bits, so that when the umask lets them through no chmod is needed afterwards.
/// Files written later are created 0600 instead, so nobody else reads them half-restored.
pub(super) fn create_final(path: &Path, node: &Node) -> std::io::Result<(fs::File, Known)> {
    let bits = node.mode & 0o777;
    let file = create_new(path, bits)?;
    Ok((file, Known { len: None, mode: umask().map(|u| bits & !u), fresh: true }))
}

/// The process's umask, from `/proc/self/status` (reading it with umask(2) would change it
/// for a moment under the other threads' feet); `None` where that is not available.
fn umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Creates `dir` (and parents) under `target`, replacing a non-folder in the way; notes the
/// folders it creates in `created`.
fn ensure_dir(dir: &Path, target: &Path, created: &mut HashSet<PathBuf>) -> std::io::Result<()> {
    if dir == target {
        return Ok(());
    }
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(p) = dir.parent() {
                ensure_dir(p, target, created)?;
            }
        }
        Err(e) => return Err(e),
    }
    fs::create_dir(dir)?;
    created.insert(dir.to_path_buf());
    Ok(())
}
