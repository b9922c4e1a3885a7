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
//!
//! Each stage has its module (`walk`, `read`, `hash`, `assemble`); this one holds the
//! options, the messages the stages pass each other and the state they share, and wires them
//! together: threads, channels, and the errors drained at the end.

mod assemble;
mod excludes;
mod fsmeta;
mod hash;
mod read;
mod walk;

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use ferry_format::recovery_point::{RecoveryPoint, Summary};
use ferry_format::tree::Node;
use ferry_format::{BlobId, BlobKind, PackId, RecoveryPointId};

pub use excludes::Excludes;

use crate::buffers::BufferPool;
use crate::error::bail;
use crate::packer::PackSink;
use crate::{Progress, RepoLock, Repository};
use assemble::{assemble, build_root, seed_files_cache};
use hash::{hasher, InFlight};
use read::{reader, POOLED_CHUNK, SPARE_CHUNKS};
use walk::{scan, walk_all};

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
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        BackupOptions {
            paths,
            excludes: Vec::new(),
            one_file_system: false,
            tags: Vec::new(),
            host: None,
            checkpoint_every: Duration::from_mins(1),
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

/// A file read: its chunks, the number of bytes read, its extended attributes (read from
/// the open file, see [`fsmeta::fd_xattrs`]) and whether it had holes ([`fsmeta::has_hole`]).
struct ReadFile {
    chunks: Vec<ChunkRef>,
    read: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

struct FileJob {
    path: PathBuf,
    /// The folder it was listed in and its name there: the reader opens it relative to the
    /// folder instead of walking the whole path again (none for a path given on the command line).
    at: Option<(Arc<OwnedFd>, OsString)>,
    size: u64,
    /// It has fewer blocks than its size ([`fsmeta::may_have_holes`]): the reader asks it
    /// whether it has holes.
    check_holes: bool,
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
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(FileError { path: path.display().to_string(), error: e.to_string() });
    }
}

/// How long a backup waits for an exclusive lock (a vault's garbage collection) to go.
const LOCK_WAIT: Duration = Duration::from_mins(15);

/// Runs a backup and writes its recovery point.
pub fn run(repo: &Repository, opts: &BackupOptions, progress: &Progress) -> crate::Result<BackupOutcome> {
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
    let errors = sh.errors.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
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
            let mut packs = old.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            packs.extend(sh.sink.stored_packs());
            packs.extend(repo.cache().lookup(BlobKind::Tree, &rp.tree)?.map(|l| l.pack));
            repo.save_recovery_point_with_pack_list(&rp, packs.into_iter().collect())?
        }
        None => repo.save_recovery_point(&rp)?,
    };
    lock.release();
    Ok(BackupOutcome { recovery_point: id, summary: rp.summary, errors })
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
