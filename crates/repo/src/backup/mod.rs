//! The archiver: backs up paths into a new recovery point.
//!
//! Pipeline (each arrow a bounded channel, so memory stays flat):
//!
//! ```text
//! walker ──file jobs──▶ readers (read + chunk) ──chunk jobs──▶ hashers (hash, dedup, compress, pack)
//!    │                                                              │
//!    └──── directories, post-order ──▶ assembler (trees) ◀── chunk IDs ┘      uploader (packs, index)
//! ```
//! Unchanged files (same size, mtime, ctime and inode as in the files cache, with every chunk
//! still indexed) are not read. The files cache is committed at checkpoints, after the index
//! files covering their chunks, so a killed backup resumes without re-reading stored files.

mod excludes;
mod fsmeta;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use ferry_format::recovery_point::{RecoveryPoint, Summary};
use ferry_format::tree::{Node, NodeKind, Tree};
use ferry_format::{BlobId, BlobKind, PackId, RecoveryPointId};
use rustix::fs::{Mode, OFlags};

pub use excludes::Excludes;

use crate::buffers::BufferPool;
use crate::cache::{FileEntry, FolderFiles};
use crate::packer::{PackSink, BUNDLE_MEMBER_MAX};
use crate::{Progress, RepoLock, Repository};

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    pub tags: Vec<String>,
    /// Override the host name recorded in the recovery point.
    pub host: Option<String>,
    /// How often to make the work so far durable (packs, index, files cache).
    pub checkpoint_every: Duration,
    /// Scan the paths in the background to know totals for progress.
    pub scan: bool,
    pub readers: usize,
    pub hashers: usize,
    /// Write the recovery point's pack list (`packlists/`) too, for a vault that enforces
    /// retention (see `ferry_format::packlist`).
    pub pack_list: bool,
}

impl BackupOptions {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        BackupOptions {
            paths,
            excludes: Vec::new(),
            one_file_system: false,
            tags: Vec::new(),
            host: None,
            checkpoint_every: Duration::from_secs(60),
            scan: false,
            readers: 2,
            hashers: cores.max(2),
            pack_list: false,
        }
    }
}

/// A file that could not be backed up.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileError {
    pub path: String,
    pub error: String,
}

/// The result of a backup.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub recovery_point: RecoveryPointId,
    pub summary: Summary,
    pub errors: Vec<FileError>,
}

impl BackupOutcome {
    /// Some files could not be read: the recovery point is partial.
    pub fn is_partial(&self) -> bool {
        !self.errors.is_empty()
    }
}

struct ChunkJob {
    data: Vec<u8>,
    reply: Sender<Result<BlobId, String>>,
}

/// A chunk's ID: known already (stored inline by the reader) or coming from a hasher.
enum ChunkRef {
    Done(BlobId),
    Pending(Receiver<Result<BlobId, String>>),
}

/// The file's chunks and the number of bytes actually read (the file may have changed size
/// since it was listed; the recorded size is what was read).
type FileReply = Result<ReadFile, String>;

/// A file read: its chunks, the number of bytes read and its extended attributes (read from
/// the open file, see [`fsmeta::fd_xattrs`]).
struct ReadFile {
    chunks: Vec<ChunkRef>,
    read: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct FileJob {
    path: PathBuf,
    /// The folder it was listed in and its name there: the reader opens it relative to the
    /// folder instead of walking the whole path again (none for a path given on the command line).
    at: Option<(Arc<OwnedFd>, OsString)>,
    size: u64,
    reply: Sender<FileReply>,
}

enum Content {
    None,
    Dir(u64),
    Cached(Vec<BlobId>),
    Pending { rx: Receiver<FileReply>, changed: bool },
}

struct Entry {
    node: Node,
    path: PathBuf,
    content: Content,
}

enum Item {
    /// A folder, its entries finished by the walker. `listed` says whether it was listed and
    /// its entries statted without error (its files cache record may then be replaced);
    /// `cached` is the number of files its files cache record had.
    Dir {
        seq: u64,
        path: PathBuf,
        entries: Vec<Entry>,
        listed: bool,
        cached: usize,
    },
    Top {
        index: usize,
        entry: Box<Entry>,
    },
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs: AtomicU64,
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
}

struct Shared<'r> {
    repo: &'r Repository,
    sink: PackSink<'r>,
    errors: Mutex<Vec<FileError>>,
    counters: Counters,
    progress: &'r Progress,
    /// No files cache record exists: skip the per-folder lookups (a first backup).
    files_cache_empty: bool,
    in_flight: InFlight,
    /// Chunk buffers handed back by the hashers, for the readers' next chunks.
    chunk_bufs: BufferPool,
    /// With `pack_list`: the packs, already indexed when the backup started, that hold blobs
    /// the new trees use (the packs this backup stores are added at the end).
    old_packs: Option<Mutex<HashSet<PackId>>>,
}

impl Shared<'_> {
    fn error(&self, path: &Path, e: impl std::fmt::Display) {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(FileError { path: path.display().to_string(), error: e.to_string() });
    }
}

/// How long a backup waits for an exclusive lock (a vault's garbage collection) to go.
const LOCK_WAIT: Duration = Duration::from_secs(15 * 60);

/// Runs a backup and writes its recovery point.
pub fn run(repo: &Repository, opts: &BackupOptions, progress: &Progress) -> Result<BackupOutcome> {
    let started = Instant::now();
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let paths = normalize_paths(&opts.paths)?;
    let excludes = Excludes::new(&opts.excludes)?;
    // The lock MUST be taken before the index is read, so prune can tell which backups might
    // still reference what it is about to remove.
    let lock = RepoLock::acquire_patiently(repo, false, "backup", LOCK_WAIT)?;
    repo.sync_index()?;
    seed_files_cache(repo, &paths)?;

    let (sink, upload_rx) = PackSink::new(repo, opts.readers.max(1));
    let files_cache_empty = repo.cache().files_is_empty()?;
    // Two maximal chunks in flight keep both hashers busy.
    let in_flight = InFlight::new(2 * repo.chunker().params().max_size as usize);
    let old_packs = opts.pack_list.then(|| Mutex::new(HashSet::new()));
    let sh = Shared {
        repo,
        sink,
        errors: Mutex::new(Vec::new()),
        counters: Counters::default(),
        progress,
        files_cache_empty,
        in_flight,
        chunk_bufs: BufferPool::new(SPARE_CHUNKS, POOLED_CHUNK),
        old_packs,
    };
    let root = std::thread::scope(|scope| -> Result<BlobId> {
        let sh = &sh;
        let uploader =
            std::thread::Builder::new().name("ferry-upload".into()).spawn_scoped(scope, move || sh.sink.run_uploader(upload_rx))?;
        let result = (|| -> Result<BlobId> {
            let (chunk_tx, chunk_rx) = bounded::<ChunkJob>(opts.hashers * 2);
            let (file_tx, file_rx) = bounded::<FileJob>(64);
            let (item_tx, item_rx) = unbounded::<Item>();
            for _ in 0..opts.hashers.max(1) {
                let rx = chunk_rx.clone();
                std::thread::Builder::new().name("ferry-hash".into()).spawn_scoped(scope, move || hasher(sh, rx))?;
            }
            drop(chunk_rx);
            for slot in 0..opts.readers.max(1) {
                let (rx, tx) = (file_rx.clone(), chunk_tx.clone());
                std::thread::Builder::new().name("ferry-read".into()).spawn_scoped(scope, move || reader(sh, slot, rx, tx))?;
            }
            drop((file_rx, chunk_tx));
            if opts.scan {
                let (paths, ex, ofs) = (&paths, &excludes, opts.one_file_system);
                std::thread::Builder::new().name("ferry-scan".into()).spawn_scoped(scope, move || scan(paths, ex, ofs, progress))?;
            }
            let (n_top, every) = (paths.len(), opts.checkpoint_every);
            let assembler = std::thread::Builder::new()
                .name("ferry-assemble".into())
                .spawn_scoped(scope, move || assemble(sh, item_rx, n_top, every))?;
            let walker = {
                let (paths, ex, ofs) = (&paths, &excludes, opts.one_file_system);
                std::thread::Builder::new()
                    .name("ferry-walk".into())
                    .stack_size(256 * 1024 * 1024)
                    .spawn_scoped(scope, move || walk_all(sh, paths, ex, ofs, file_tx, item_tx))?
            };
            walker.join().map_err(|_| anyhow::anyhow!("the walker thread panicked"))?;
            let (tops, files) = assembler.join().map_err(|_| anyhow::anyhow!("the assembler thread panicked"))??;
            let root = build_root(sh, &paths, tops)?;
            sh.sink.close(files)?;
            Ok(root)
        })();
        if result.is_err() {
            sh.sink.abort();
        }
        uploader.join().map_err(|_| anyhow::anyhow!("the uploader thread panicked"))?;
        let root = result?;
        match sh.sink.take_error() {
            Some(e) => Err(e),
            None => Ok(root),
        }
    })?;

    let stored = sh.sink.stats();
    let c = &sh.counters;
    let errors = sh.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    let path_strings = paths_as_strings(&paths);
    let parent = repo.recovery_points()?.into_iter().rev().find(|(_, rp)| rp.paths == path_strings).map(|(id, _)| id);
    let mut rp = RecoveryPoint {
        time,
        host: opts.host.clone().unwrap_or_else(crate::repository::host_name),
        user: crate::repository::user_name(),
        paths: path_strings,
        tags: opts.tags.clone(),
        parent,
        tree: root,
        partial: !errors.is_empty(),
        summary: Summary {
            files_new: c.files_new.load(Ordering::Relaxed),
            files_changed: c.files_changed.load(Ordering::Relaxed),
            files_unchanged: c.files_unchanged.load(Ordering::Relaxed),
            dirs: c.dirs.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_added: stored.bytes_added,
            total_bytes: c.total_bytes.load(Ordering::Relaxed),
            duration_s: started.elapsed().as_secs_f64(),
            errors: errors.len() as u64,
        },
        ferry_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // The recovery point's own size counts as added. Its JSON holds that number, so adding
    // it can lengthen the object by a digit: repeat until the count includes itself.
    let stored = rp.summary.bytes_added;
    loop {
        let total = stored + rp.seal(repo.master()).1.len() as u64;
        if total == rp.summary.bytes_added {
            break;
        }
        rp.summary.bytes_added = total;
    }
    // MUST come after the index files: the recovery point is the commit point.
    let id = match sh.old_packs {
        Some(old) => {
            // Every blob the trees name is in a pack indexed before (noted as each tree was
            // stored) or in one this backup stored; the root tree may be either.
            let mut packs = old.into_inner().unwrap_or_else(|p| p.into_inner());
            packs.extend(sh.sink.stored_packs());
            packs.extend(repo.cache().lookup(BlobKind::Tree, &rp.tree)?.map(|l| l.pack));
            repo.save_recovery_point_with_pack_list(&rp, packs.into_iter().collect())?
        }
        None => repo.save_recovery_point(&rp)?,
    };
    lock.release();
    Ok(BackupOutcome { recovery_point: id, summary: rp.summary, errors })
}

/// With a new (or lost) local cache, fills the files cache from the latest recovery point of the
/// same paths, so its unchanged files (same size, mtime, ctime and inode) are not read again.
fn seed_files_cache(repo: &Repository, paths: &[PathBuf]) -> Result<()> {
    if !repo.cache().files_is_empty()? {
        return Ok(());
    }
    let wanted = paths_as_strings(paths);
    let Some((id, parent)) = repo.recovery_points()?.into_iter().rev().find(|(_, rp)| rp.paths == wanted) else {
        return Ok(());
    };
    let mut batch = Done::default();
    seed_folder(repo, &parent.tree, Path::new("/"), &mut batch).with_context(|| format!("read parent recovery point {}", id.short()))?;
    repo.cache().put_folders(&batch.folders)
}

/// One folder's files cache record from its tree, then its subfolders'.
fn seed_folder(repo: &Repository, tree: &BlobId, here: &Path, batch: &mut Done) -> Result<()> {
    let t = repo.load_tree(tree)?;
    let files: Vec<_> = t.nodes.iter().filter(|n| n.kind == NodeKind::File).map(cache_entry).collect();
    if !files.is_empty() {
        batch.push(FolderFiles { folder: here.as_os_str().as_bytes().to_vec(), files, replace: true });
        if batch.files >= 20_000 {
            repo.cache().put_folders(&std::mem::take(batch).folders)?;
        }
    }
    for n in &t.nodes {
        if let (NodeKind::Dir, Some(sub)) = (n.kind, &n.subtree) {
            seed_folder(repo, sub, &here.join(std::ffi::OsStr::from_bytes(&n.name)), batch)?;
        }
    }
    Ok(())
}

fn paths_as_strings(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

/// Makes paths absolute and lexically clean, drops duplicates, refuses nested ones.
fn normalize_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        bail!("nothing to back up: name at least one path");
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).with_context(|| format!("resolve path {}", p.display()))?;
        let mut clean = PathBuf::from("/");
        for c in abs.components() {
            match c {
                std::path::Component::Normal(n) => clean.push(n),
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                _ => {}
            }
        }
        if !out.contains(&clean) {
            out.push(clean);
        }
    }
    out.sort();
    for w in out.windows(2) {
        if w[1].starts_with(&w[0]) {
            bail!("{} is inside {}: name only the outer path", w[1].display(), w[0].display());
        }
    }
    if out.len() > 1 && out.iter().any(|p| p == Path::new("/")) {
        bail!("/ is backed up with everything below it: name it alone");
    }
    Ok(out)
}

// ---------------------------------------------------------------- walker

fn walk_all(sh: &Shared<'_>, paths: &[PathBuf], ex: &Excludes, one_fs: bool, files: Sender<FileJob>, items: Sender<Item>) {
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
        let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| OsString::from("/"));
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
        NodeKind::File => file_content(sh, &path, parent.map(|d| (d, name)), &mut node, cached, files),
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
                return Content::Cached(c.content);
            }
            tracing::debug!("{}: unchanged, but some of its chunks are no longer indexed", path.display());
        } else {
            tracing::debug!("{}: changed since the files cache entry", path.display());
        }
    }
    let (tx, rx) = bounded(1);
    let at = at.and_then(|(dir, name)| Some((dir.get()?, name.to_os_string())));
    if files.send(FileJob { path: path.to_path_buf(), at, size: node.size, reply: tx }).is_err() {
        return Content::Cached(Vec::new()); // pipeline is shutting down after a failure
    }
    Content::Pending { rx, changed }
}

// ---------------------------------------------------------------- readers and hashers

/// Spare chunk buffers kept (each up to POOLED_CHUNK). Three of them saved most of the page
/// faults; six saved a few more but raised a kernel-tree backup's peak memory by 10 MB.
const SPARE_CHUNKS: usize = 3;
/// Chunk buffers are allocated this large (a chunk is 512 KiB to 8 MiB, mostly under 2 MiB) and
/// only buffers up to this size are reused: a buffer that held one rare 8 MiB chunk does not pin
/// its pages.
const POOLED_CHUNK: usize = 2 << 20;

/// Reader number `slot`: reads, chunks and (small files) stores the files it is handed.
fn reader(sh: &Shared<'_>, slot: usize, jobs: Receiver<FileJob>, chunks: Sender<ChunkJob>) {
    // The chunker's read buffer, kept from one file to the next.
    let mut read_buf = Vec::new();
    for job in jobs {
        if sh.sink.has_failed() {
            let _ = job.reply.send(Err("backup aborted".into()));
            continue;
        }
        let r = read_file(sh, slot, &job, &chunks, &mut read_buf);
        let _ = job.reply.send(r);
    }
}

fn read_file(sh: &Shared<'_>, slot: usize, job: &FileJob, chunks: &Sender<ChunkJob>, read_buf: &mut Vec<u8>) -> FileReply {
    let mut f = open_listed(job).map_err(|e| match e {
        rustix::io::Errno::LOOP => "cannot open: it was replaced by a symbolic link since it was listed".to_string(),
        e => format!("cannot open: {}", std::io::Error::from(e)),
    })?;
    let xattrs = fsmeta::fd_xattrs(&f);
    let mut out = Vec::new();
    let mut total = 0u64;
    let min = sh.repo.chunker().params().min_size as u64;
    let count = |n: usize| {
        sh.counters.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        sh.progress.add_done(0, n as u64);
    };
    if job.size > 0 && job.size < BUNDLE_MEMBER_MAX as u64 {
        // A small file is read straight into this reader's bundle, hashed and stored right
        // here: no buffer of its own, no copy, no hand-off to a hasher.
        match sh.sink.add_read(slot, |buf| read_into(&f, job.size as usize, buf)) {
            Ok(Ok(Some((id, len)))) => {
                total = len as u64;
                count(len);
                out.push(ChunkRef::Done(id));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Err(e) => {
                let msg = format!("{e:#}");
                sh.sink.fail(e);
                return Err(msg);
            }
        }
    } else if job.size < min {
        // Small file: one read, one chunk (the chunker would not cut below its minimum),
        // stored right here: no hand-off to a hasher for the common case of small files.
        let data = read_small(&mut f, job.size as usize).map_err(|e| format!("read failed: {e}"))?;
        if !data.is_empty() {
            total = data.len() as u64;
            count(data.len());
            out.push(ChunkRef::Done(store_chunk(sh, &data)?));
        }
    } else {
        // Chunk buffers come from the pool and go back to it once stored; only buffers of up to
        // POOLED_CHUNK are kept, so the in-flight limit (counted in chunk bytes) still bounds
        // memory. (Recycling every buffer let each keep the pages of the largest chunk it ever
        // held: kernel-tree backup peak 108 MB instead of 94.)
        let mut chunker = sh.repo.chunker().chunks_in(f, std::mem::take(read_buf));
        loop {
            let mut data = sh.chunk_bufs.take();
            if data.capacity() == 0 {
                data.reserve_exact(POOLED_CHUNK);
            }
            match chunker.next_into(&mut data) {
                Ok(true) => {}
                Ok(false) => {
                    sh.chunk_bufs.give(data);
                    break;
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
            total += data.len() as u64;
            count(data.len());
            let (tx, rx) = bounded(1);
            sh.in_flight.acquire(data.len());
            let len = data.len();
            if chunks.send(ChunkJob { data, reply: tx }).is_err() {
                sh.in_flight.release(len);
                return Err("backup aborted".to_string());
            }
            out.push(ChunkRef::Pending(rx));
        }
        *read_buf = chunker.into_buffer();
    }
    Ok(ReadFile { chunks: out, read: total, xattrs })
}

/// Opens a listed regular file for reading, relative to its folder when that is open. Symbolic
/// links are not followed: a file replaced by one since it was listed is not read through it.
fn open_listed(job: &FileJob) -> rustix::io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = match &job.at {
        Some((dir, name)) => rustix::fs::openat(&**dir, name.as_os_str(), flags, Mode::empty())?,
        None => rustix::fs::open(&job.path, flags, Mode::empty())?,
    };
    Ok(File::from(fd))
}

/// Appends the `size` bytes a file had when it was listed (fewer if it shrank) to `buf`: read
/// straight into its spare capacity, with no zero-filling first and, for a file read in one
/// go, one system call.
fn read_into(f: &File, size: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let start = buf.len();
    buf.reserve(size);
    while buf.len() - start < size {
        match rustix::io::read(f, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A file that grew since it was listed is recorded as it was listed.
    buf.truncate(start + size);
    Ok(())
}

/// Reads the `size` bytes a small file had when it was listed (fewer if it shrank) into a
/// buffer of its own (see [`read_into`]).
fn read_small(f: &mut File, size: usize) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    if size == 0 {
        // Empty by its metadata, but pseudo-files (procfs, sysfs) report 0 and have content
        // (or fail to read): read to the end.
        f.read_to_end(&mut data)?;
    } else {
        read_into(f, size, &mut data)?;
    }
    Ok(data)
}

fn store_chunk(sh: &Shared<'_>, data: &[u8]) -> Result<BlobId, String> {
    let id = sh.repo.blob_id(data);
    match sh.sink.add(BlobKind::Data, id, data) {
        Ok(_) => Ok(id),
        Err(e) => {
            let msg = format!("{e:#}");
            sh.sink.fail(e);
            Err(msg)
        }
    }
}

fn hasher(sh: &Shared<'_>, jobs: Receiver<ChunkJob>) {
    for job in jobs {
        let r = if sh.sink.has_failed() { Err("backup aborted".into()) } else { store_chunk(sh, &job.data) };
        sh.in_flight.release(job.data.len());
        sh.chunk_bufs.give(job.data);
        let _ = job.reply.send(r);
    }
}

/// Bytes of chunks handed from readers to hashers and not yet stored. Counting chunks is not
/// enough: a few 8 MiB chunks of one large file would make the peak memory of a backup depend
/// on which files two readers happen to meet at once.
struct InFlight {
    bytes: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        InFlight { bytes: Mutex::new(0), freed: Condvar::new(), limit }
    }

    /// Waits until `n` more bytes fit (a chunk larger than the limit waits for an empty pipeline).
    fn acquire(&self, n: usize) {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *b > 0 && *b + n > self.limit {
            b = self.freed.wait(b).unwrap_or_else(|e| e.into_inner());
        }
        *b += n;
    }

    fn release(&self, n: usize) {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *b = b.saturating_sub(n);
        self.freed.notify_all();
    }
}

// ---------------------------------------------------------------- assembler

type Assembled = (Vec<Option<Node>>, Vec<FolderFiles>);

/// Files cache records not yet committed (the next checkpoint commits them), and the number of
/// files they hold.
#[derive(Default)]
struct Done {
    folders: Vec<FolderFiles>,
    files: usize,
}

impl Done {
    fn push(&mut self, f: FolderFiles) {
        self.files += f.files.len();
        self.folders.push(f);
    }
}

/// What became of a finished entry, for the files cache.
enum Finished {
    /// Not a regular file.
    Other,
    /// A file reused from the files cache.
    Cached,
    /// A file read (new or changed).
    Read,
}

fn cache_entry(n: &Node) -> (Vec<u8>, FileEntry) {
    (n.name.clone(), FileEntry { size: n.size, mtime_ns: n.mtime_ns, ctime_ns: n.ctime_ns, inode: n.inode, content: n.content.clone() })
}

fn assemble(sh: &Shared<'_>, items: Receiver<Item>, n_top: usize, every: Duration) -> Result<Assembled> {
    let mut subtrees: HashMap<u64, BlobId> = HashMap::new();
    let mut tops: Vec<Option<Node>> = vec![None; n_top];
    let mut done = Done::default();
    let mut last_checkpoint = Instant::now();
    for item in items {
        match item {
            Item::Dir { seq, path, entries, listed, cached } => {
                let mut tree = Tree { nodes: Vec::with_capacity(entries.len()) };
                let mut files = Vec::new();
                let mut read_any = false;
                for e in entries {
                    if let Some((n, how)) = finish_entry(sh, e, &mut subtrees)? {
                        match how {
                            Finished::Other => {}
                            Finished::Cached => files.push(cache_entry(&n)),
                            Finished::Read => {
                                read_any = true;
                                files.push(cache_entry(&n));
                            }
                        }
                        tree.nodes.push(n);
                    }
                }
                let id = store_tree(sh, &mut tree).with_context(|| format!("store tree of {}", path.display()))?;
                sh.counters.dirs.fetch_add(1, Ordering::Relaxed);
                subtrees.insert(seq, id);
                // The record is rewritten when a file was read, or when files went away (no file
                // read and as many reused as recorded means the record is as it was). A folder
                // not listed in full only adds to its record.
                if read_any || files.len() != cached {
                    done.push(FolderFiles { folder: path.into_os_string().into_vec(), files, replace: listed });
                }
            }
            Item::Top { index, entry } => {
                let folder = entry.path.parent().map(|p| p.as_os_str().as_bytes().to_vec());
                let finished = finish_entry(sh, *entry, &mut subtrees)?;
                if let (Some((n, Finished::Read)), Some(folder)) = (&finished, folder) {
                    done.push(FolderFiles { folder, files: vec![cache_entry(n)], replace: false });
                }
                tops[index] = finished.map(|(n, _)| n);
            }
        }
        if last_checkpoint.elapsed() >= every || done.files >= 10_000 {
            sh.sink.checkpoint(std::mem::take(&mut done).folders)?;
            last_checkpoint = Instant::now();
        }
    }
    Ok((tops, done.folders))
}

fn finish_entry(sh: &Shared<'_>, e: Entry, subtrees: &mut HashMap<u64, BlobId>) -> Result<Option<(Node, Finished)>> {
    let mut node = e.node;
    let how = match e.content {
        Content::None => Finished::Other,
        Content::Dir(seq) => {
            node.subtree = subtrees.remove(&seq);
            Finished::Other
        }
        Content::Cached(ids) => {
            node.content = ids;
            sh.counters.files_unchanged.fetch_add(1, Ordering::Relaxed);
            sh.progress.add_done(1, 0);
            Finished::Cached
        }
        Content::Pending { rx, changed } => {
            let ReadFile { chunks: chunk_refs, read, xattrs } = match rx.recv() {
                Ok(Ok(c)) => c,
                Ok(Err(msg)) => {
                    sh.error(&e.path, msg);
                    return Ok(None);
                }
                Err(_) => return Err(sh.sink.take_error().unwrap_or_else(|| anyhow::anyhow!("a reader thread stopped"))),
            };
            let mut ids = Vec::with_capacity(chunk_refs.len());
            for r in chunk_refs {
                let r = match r {
                    ChunkRef::Done(id) => {
                        ids.push(id);
                        continue;
                    }
                    ChunkRef::Pending(rx) => rx,
                };
                match r.recv() {
                    Ok(Ok(id)) => ids.push(id),
                    Ok(Err(msg)) => return Err(sh.sink.take_error().unwrap_or_else(|| anyhow::anyhow!("{msg}"))),
                    Err(_) => return Err(sh.sink.take_error().unwrap_or_else(|| anyhow::anyhow!("a hasher thread stopped"))),
                }
            }
            let counter = if changed { &sh.counters.files_changed } else { &sh.counters.files_new };
            counter.fetch_add(1, Ordering::Relaxed);
            sh.progress.add_done(1, 0);
            node.content = ids;
            node.size = read;
            node.xattrs = xattrs;
            Finished::Read
        }
    };
    Ok(Some((node, how)))
}

fn store_tree(sh: &Shared<'_>, tree: &mut Tree) -> Result<BlobId> {
    if let Some(old) = &sh.old_packs {
        // A blob not indexed yet is in one of this backup's own packs (stored, or still being
        // filled): the sink stores only what the index lacks.
        let mut found = Vec::new();
        for n in &tree.nodes {
            for c in &n.content {
                found.extend(sh.repo.cache().lookup(BlobKind::Data, c)?.map(|l| l.pack));
            }
            if let Some(s) = &n.subtree {
                found.extend(sh.repo.cache().lookup(BlobKind::Tree, s)?.map(|l| l.pack));
            }
        }
        old.lock().unwrap_or_else(|p| p.into_inner()).extend(found);
    }
    let bytes = tree.encode();
    let id = sh.repo.blob_id(&bytes);
    sh.sink.add(BlobKind::Tree, id, &bytes)?;
    Ok(id)
}

/// Builds the chain of folders from `/` down to each backed-up path.
fn build_root(sh: &Shared<'_>, paths: &[PathBuf], tops: Vec<Option<Node>>) -> Result<BlobId> {
    if paths.len() == 1 && paths[0] == Path::new("/") {
        if let Some(Some(n)) = tops.into_iter().next() {
            if let Some(t) = n.subtree {
                return Ok(t);
            }
        }
        return store_tree(sh, &mut Tree::default());
    }
    #[derive(Default)]
    struct Dir {
        children: BTreeMap<OsString, Dir>,
        node: Option<Node>,
    }
    let mut root = Dir::default();
    for (path, node) in paths.iter().zip(tops) {
        let Some(node) = node else { continue };
        let mut d = &mut root;
        for c in path.components().filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        }) {
            d = d.children.entry(c).or_default();
        }
        d.node = Some(node);
    }
    fn build(sh: &Shared<'_>, here: &Path, d: Dir) -> Result<BlobId> {
        let mut tree = Tree::default();
        for (name, child) in d.children {
            let path = here.join(&name);
            let node = match child.node {
                Some(n) => n,
                None => {
                    let meta = fs::symlink_metadata(&path).with_context(|| format!("read metadata of {}", path.display()))?;
                    let mut n =
                        fsmeta::node_for(&path, &name, &meta, true).with_context(|| format!("read metadata of {}", path.display()))?;
                    n.kind = NodeKind::Dir;
                    n.subtree = Some(build(sh, &path, child)?);
                    n
                }
            };
            tree.nodes.push(node);
        }
        store_tree(sh, &mut tree)
    }
    build(sh, Path::new("/"), root)
}

// ---------------------------------------------------------------- scanner

fn scan(paths: &[PathBuf], ex: &Excludes, one_fs: bool, progress: &Progress) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(path: PathBuf, at: Option<(Arc<OwnedFd>, OsString)>) -> FileJob {
        FileJob { path, at, size: 0, reply: bounded(1).0 }
    }

    #[test]
    fn listed_files_open_relative_to_their_folder_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("real"), b"contents").unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("link")).unwrap();
        let dir = Arc::new(rustix::fs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap());

        let mut f = open_listed(&job(d.path().join("real"), Some((dir.clone(), "real".into())))).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "contents");
        assert!(open_listed(&job(d.path().join("real"), None)).is_ok());

        // Listed as a regular file, replaced by a symbolic link before it is read.
        assert_eq!(open_listed(&job(d.path().join("link"), Some((dir, "link".into())))).unwrap_err(), rustix::io::Errno::LOOP);
        assert_eq!(open_listed(&job(d.path().join("link"), None)).unwrap_err(), rustix::io::Errno::LOOP);
    }
}
