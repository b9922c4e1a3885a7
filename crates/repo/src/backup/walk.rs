//! The walker: lists the folders to back up, depth first, and hands their files to the readers
//! (the files cache decides which need reading) and their entries, post-order, to the assembler.
//! Also the scanner, which walks ahead only to count totals for progress.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{bounded, Sender};
use ferry_format::tree::{Node, NodeKind};
use ferry_format::BlobKind;
use rustix::fs::{Mode, OFlags};

use super::{fsmeta, Content, Entry, Excludes, FileJob, Item, Shared};
use crate::cache::FileEntry;
use crate::Progress;

pub(super) fn walk_all(sh: &Shared<'_>, paths: &[PathBuf], ex: &Excludes, one_fs: bool, files: Sender<FileJob>, items: Sender<Item>) {
    let mut seq = 0u64;
    for (index, path) in paths.iter().enumerate() {
        if sh.sink.has_failed() {
            return;
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                sh.error(path, format!("cannot back up: {e}"));
                continue;
            }
        };
        let name = path.file_name().map_or_else(|| OsString::from("/"), std::ffi::OsStr::to_os_string);
        let dev = if one_fs { Some(meta.dev()) } else { None };
        let cached = match path.parent() {
            Some(folder) if meta.is_file() && !sh.files_cache_empty => {
                cached_files(sh, folder.as_os_str().as_bytes()).into_iter().find(|(n, _)| n.as_slice() == name.as_bytes()).map(|(_, e)| e)
            }
            _ => None,
        };
        if let Some(entry) = make_entry(sh, path.clone(), None, &name, &meta, cached, ex, dev, &files, &items, &mut seq) {
            let _ = items.send(Item::Top { index, entry: Box::new(entry) });
        }
    }
}

/// Builds the entry for one path; for a directory, walks it first (post-order).
#[allow(clippy::too_many_arguments)]
fn make_entry(
    sh: &Shared<'_>,
    path: PathBuf,
    parent: Option<&DirFd>,
    name: &std::ffi::OsStr,
    meta: &Metadata,
    cached: Option<FileEntry>,
    ex: &Excludes,
    dev: Option<u64>,
    files: &Sender<FileJob>,
    items: &Sender<Item>,
    seq: &mut u64,
) -> Option<Entry> {
    // A regular file's extended attributes are read by the reader from the open file (saves a
    // path lookup per file), or by file_content when the file is not read.
    let mut node = match fsmeta::node_for(&path, name, meta, fsmeta::kind_of(meta) != NodeKind::File) {
        Ok(n) => n,
        Err(e) => {
            sh.error(&path, format!("cannot read metadata: {e}"));
            return None;
        }
    };
    let content = match node.kind {
        // --one-file-system: a folder on another file system (a mount point) is kept, empty, so
        // that a restore recreates the mount point; what is mounted there is not backed up.
        NodeKind::Dir if dev.is_some_and(|d| d != meta.dev()) => {
            *seq += 1;
            let _ = items.send(Item::Dir { seq: *seq, path: path.clone(), entries: Vec::new(), listed: false, cached: 0 });
            Content::Dir(*seq)
        }
        NodeKind::Dir => Content::Dir(walk_dir(sh, &path, ex, dev, files, items, seq)),
        NodeKind::File => file_content(sh, &path, parent.map(|d| (d, name)), meta, &mut node, cached, files),
        _ => Content::None,
    };
    Some(Entry { node, path, content })
}

/// A listed folder, opened (`O_PATH`) for the readers when the first of its files is handed to
/// one (see FileJob::at): a folder whose files are all unchanged is never opened. If it cannot
/// be opened, the readers open full paths.
struct DirFd<'a> {
    path: &'a Path,
    fd: std::cell::OnceCell<Option<Arc<OwnedFd>>>,
}

impl<'a> DirFd<'a> {
    fn new(path: &'a Path) -> Self {
        DirFd { path, fd: std::cell::OnceCell::new() }
    }

    fn get(&self) -> Option<Arc<OwnedFd>> {
        self.fd
            .get_or_init(|| {
                rustix::fs::open(self.path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok().map(Arc::new)
            })
            .clone()
    }
}

fn walk_dir(
    sh: &Shared<'_>,
    dir: &Path,
    ex: &Excludes,
    dev: Option<u64>,
    files: &Sender<FileJob>,
    items: &Sender<Item>,
    seq: &mut u64,
) -> u64 {
    // Each name is taken out once: DirEntry::file_name allocates, and sorting by it made two
    // allocations per comparison.
    let mut listed: Vec<(OsString, fs::DirEntry)> = Vec::new();
    let mut complete = true;
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => listed.push((e.file_name(), e)),
                    Err(e) => {
                        complete = false;
                        sh.error(dir, format!("cannot list folder: {e}"));
                    }
                }
            }
        }
        Err(e) => {
            complete = false;
            sh.error(dir, format!("cannot list folder: {e}"));
        }
    }
    listed.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let dir_fd = DirFd::new(dir);
    // Every entry is looked at while the listing is open (DirEntry::metadata does not follow
    // symlinks and looks the name up relative to the open folder, cheaper than a full path
    // walk); the listing is closed before descending, so a walk holds one descriptor per level
    // of the tree (dir_fd), however deep.
    let mut statted = Vec::with_capacity(listed.len());
    for (name, de) in listed {
        let path = dir.join(&name);
        if ex.matches(&path) {
            continue;
        }
        match de.metadata() {
            Ok(m) => statted.push((name, path, m)),
            Err(e) => {
                complete = false;
                sh.error(&path, format!("vanished or unreadable: {e}"));
            }
        }
    }
    // The folder's files cache record, read once for all its files (both sorted by name).
    let mut cached = if sh.files_cache_empty || statted.is_empty() { Vec::new() } else { cached_files(sh, dir.as_os_str().as_bytes()) };
    let n_cached = cached.len();
    let mut next_cached = 0;
    let mut entries = Vec::with_capacity(statted.len());
    for (name, path, meta) in statted {
        if sh.sink.has_failed() {
            complete = false;
            break;
        }
        let mut entry_cache = None;
        if meta.is_file() {
            while next_cached < cached.len() && cached[next_cached].0.as_slice() < name.as_bytes() {
                next_cached += 1;
            }
            if next_cached < cached.len() && cached[next_cached].0.as_slice() == name.as_bytes() {
                entry_cache = Some(std::mem::take(&mut cached[next_cached].1));
                next_cached += 1;
            }
        }
        if let Some(entry) = make_entry(sh, path, Some(&dir_fd), &name, &meta, entry_cache, ex, dev, files, items, seq) {
            entries.push(entry);
        }
    }
    drop(cached);
    *seq += 1;
    let my = *seq;
    let _ = items.send(Item::Dir { seq: my, path: dir.to_path_buf(), entries, listed: complete, cached: n_cached });
    my
}

/// The files cache record of a folder; a cache that cannot be read is a miss (files are read).
fn cached_files(sh: &Shared<'_>, folder: impl AsRef<[u8]>) -> Vec<(Vec<u8>, FileEntry)> {
    let folder = folder.as_ref();
    sh.repo.cache().folder_files(folder).unwrap_or_else(|e| {
        tracing::debug!("files cache of {}: {e:#}", String::from_utf8_lossy(folder));
        Vec::new()
    })
}

fn file_content(
    sh: &Shared<'_>,
    path: &Path,
    at: Option<(&DirFd, &std::ffi::OsStr)>,
    meta: &Metadata,
    node: &mut Node,
    cached: Option<FileEntry>,
    files: &Sender<FileJob>,
) -> Content {
    sh.counters.total_bytes.fetch_add(node.size, Ordering::Relaxed);
    let changed = cached.is_some();
    if let Some(c) = cached {
        if c.size == node.size && c.mtime_ns == node.mtime_ns && c.ctime_ns == node.ctime_ns && c.inode == node.inode {
            let all_there = c.content.iter().all(|id| sh.repo.cache().contains(BlobKind::Data, id).unwrap_or(false));
            if all_there {
                node.xattrs = fsmeta::path_xattrs(path);
                node.sparse = fsmeta::path_has_holes(path, meta);
                return Content::Cached(c.content);
            }
            tracing::debug!("{}: unchanged, but some of its chunks are no longer indexed", path.display());
        } else {
            tracing::debug!("{}: changed since the files cache entry", path.display());
        }
    }
    let (tx, rx) = bounded(1);
    let at = at.and_then(|(dir, name)| Some((dir.get()?, name.to_os_string())));
    let job = FileJob { path: path.to_path_buf(), at, size: node.size, check_holes: fsmeta::may_have_holes(meta), reply: tx };
    if files.send(job).is_err() {
        return Content::Cached(Vec::new()); // pipeline is shutting down after a failure
    }
    Content::Pending { rx, changed }
}

pub(super) fn scan(paths: &[PathBuf], ex: &Excludes, one_fs: bool, progress: &Progress) {
    fn visit(p: &Path, ex: &Excludes, dev: Option<u64>, progress: &Progress) {
        let Ok(meta) = fs::symlink_metadata(p) else {
            return;
        };
        if meta.is_dir() {
            if dev.is_some_and(|d| d != meta.dev()) {
                return;
            }
            let Ok(rd) = fs::read_dir(p) else { return };
            for e in rd.flatten() {
                let child = e.path();
                if !ex.matches(&child) {
                    visit(&child, ex, dev, progress);
                }
            }
        } else if meta.is_file() {
            progress.add_total(1, meta.len());
        }
    }
    for p in paths {
        let dev = if one_fs { fs::symlink_metadata(p).ok().map(|m| m.dev()) } else { None };
        visit(p, ex, dev, progress);
    }
    progress.scan_finished.store(true, Ordering::Relaxed);
}
