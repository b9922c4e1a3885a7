//! Restore: writes a recovery point's files back, exactly (contents, mode, owner when root,
//! times, symlinks, hard links, empty folders, extended attributes, sparse files).
//!
//! Plan, then data, then metadata:
//! 1. walk the tree; create folders, symlinks and special files; list the regular files; then
//!    create them empty (several threads), note where each of their chunks goes, and make the
//!    hard links;
//! 2. read each needed pack once (coalesced ranges), decrypt each stored unit once, write each
//!    blob to every place it belongs (all-zero chunks are skipped, leaving holes);
//! 3. set each file's length, owner, mode, extended attributes and times through one
//!    descriptor (several threads), then the symlinks' and the folders', deepest first, so
//!    their times stick.
//!
//! A restore is restartable: with the default `--overwrite if-changed`, a file that already
//! has the recorded size and modification time is left alone (times are set last, so a file
//! cut short by a crash never qualifies).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context, Result};
use ferry_format::recovery_point::RecoveryPoint;
use ferry_format::tree::{Node, NodeKind};
use ferry_format::{BlobId, BlobKind, PackId};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::backup::FileError;
use crate::cache::BlobLocation;
use crate::UnitDecoder;
use crate::{walk, Progress, Repository};

/// What to do with files that already exist at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Leave existing files alone.
    Never,
    /// Rewrite unless size and modification time already match (the default; makes a restore restartable).
    IfChanged,
    /// Always rewrite.
    Always,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub includes: Vec<String>,
    pub overwrite: Overwrite,
    pub threads: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub errors: Vec<FileError>,
}

struct Includes {
    names: GlobSet,
    paths: GlobSet,
    any: bool,
}

impl Includes {
    fn new(patterns: &[String]) -> Result<Self> {
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

/// One regular file being restored.
struct FileTarget {
    path: PathBuf,
    node: Node,
    /// Each chunk and its offset in the file (the chunks up to the first one missing from the
    /// index, which is reported).
    chunks: Vec<(BlobId, u64)>,
    /// Restored in one go (see [`FileTarget::one_shot`]).
    one_shot: bool,
    /// Its folder was created by this restore, so nothing is in the way: it needs no look
    /// before it is created, and a one-shot file is created only when its data is written.
    fresh: bool,
    /// Done, metadata included (a one-shot file), or failed and reported: the last phase
    /// leaves it alone.
    done: AtomicBool,
}

impl FileTarget {
    /// A file of at most one chunk (most files of a source tree), that no hard link points
    /// to, is created, written and given its metadata through one descriptor, when its chunk
    /// is written (or at once when it is empty): a third of the system calls of the general
    /// path (create; open and write per chunk; open, set length and metadata).
    fn one_shot(node: &Node, chunks: &[(BlobId, u64)]) -> bool {
        node.links <= 1 && node.content.len() <= 1 && chunks.len() == node.content.len()
    }
}

/// Where one blob goes: (file index, byte offset).
type Places = Vec<(usize, u64)>;

struct Plan {
    files: Vec<FileTarget>,
    /// Folders in walk order (parents first), for their metadata at the end.
    dirs: Vec<(PathBuf, Node)>,
    /// Symlinks and special files, for their metadata.
    others: Vec<(PathBuf, Node)>,
    blobs: HashMap<BlobId, Places>,
    /// Hard links to make once the files exist: (link, file it links to).
    links: Vec<(PathBuf, PathBuf)>,
    /// Whole blocks of large files are written with `O_DIRECT` until the file system refuses it.
    direct: AtomicBool,
}

fn err(out: &Mutex<Vec<FileError>>, path: &Path, e: impl std::fmt::Display) {
    out.lock().unwrap_or_else(|p| p.into_inner()).push(FileError { path: path.display().to_string(), error: e.to_string() });
}

/// Restores recovery point `rp` under `opts.target`.
pub fn run(repo: &Repository, rp: &RecoveryPoint, opts: &RestoreOptions, progress: &Progress) -> Result<RestoreOutcome> {
    let includes = Includes::new(&opts.includes)?;
    fs::create_dir_all(&opts.target).with_context(|| format!("create target folder {}", opts.target.display()))?;
    let target = fs::canonicalize(&opts.target).with_context(|| format!("resolve target folder {}", opts.target.display()))?;
    let errors = Mutex::new(Vec::new());
    let mut out = RestoreOutcome::default();
    let threads = opts.threads.max(1);
    let mut plan = make_plan(repo, rp, &target, &includes, &errors, &mut out)?;
    create_files(&mut plan, threads, opts.overwrite, &errors, &mut out, progress);
    write_data(repo, &plan, threads, &errors, progress)?;
    finish_metadata(&plan, threads, &errors);
    out.errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(out)
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
        Ok(_) => fs::remove_file(path).map(|_| false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Walks the recovery point: creates folders, symlinks and special files, and lists the
/// regular files and hard links to restore (created next, by [`create_files`]).
fn make_plan(
    repo: &Repository,
    rp: &RecoveryPoint,
    target: &Path,
    includes: &Includes,
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
    walk::walk(repo, &rp.tree, &mut |path, node| {
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
        match node.kind {
            NodeKind::File => {
                if let Some(first) = (node.links > 1).then(|| links.get(&(node.device, node.inode))).flatten() {
                    plan.links.push((dest, first.clone()));
                    return Ok(false);
                }
                if node.links > 1 {
                    links.insert((node.device, node.inode), dest.clone());
                }
                let mut chunks = Vec::with_capacity(node.content.len());
                let mut offset = 0u64;
                for id in &node.content {
                    chunks.push((*id, offset));
                    // Offsets need each chunk's length: looked up once here.
                    match repo.cache().lookup(BlobKind::Data, id)? {
                        Some(loc) => offset += loc.raw_len as u64,
                        None => {
                            err(errors, &dest, format!("chunk {} is missing from the repository", id.short()));
                            break;
                        }
                    }
                }
                let one_shot = FileTarget::one_shot(node, &chunks);
                let fresh = dest.parent().is_some_and(|p| created.contains(p));
                plan.files.push(FileTarget { path: dest, node: node.clone(), chunks, one_shot, fresh, done: AtomicBool::new(false) });
            }
            NodeKind::Symlink => {
                let r = clear_non_dir(&dest).and_then(|_| std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&node.target), &dest));
                match r {
                    Ok(()) => plan.others.push((dest, node.clone())),
                    Err(e) => err(errors, &dest, format!("cannot create symlink: {e}")),
                }
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                let ft = match node.kind {
                    NodeKind::Fifo => rustix::fs::FileType::Fifo,
                    NodeKind::CharDevice => rustix::fs::FileType::CharacterDevice,
                    _ => rustix::fs::FileType::BlockDevice,
                };
                let r = clear_non_dir(&dest).and_then(|_| {
                    rustix::fs::mknodat(rustix::fs::CWD, &dest, ft, rustix::fs::Mode::from_raw_mode(0o600), node.rdev as rustix::fs::Dev)
                        .map_err(std::io::Error::from)
                });
                match r {
                    Ok(()) => plan.others.push((dest, node.clone())),
                    Err(e) => err(errors, &dest, format!("cannot create special file: {e}")),
                }
            }
            NodeKind::Socket | NodeKind::Dir => {}
        }
        Ok(false)
    })?;
    Ok(plan)
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
fn create_files(
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
                out.files += 1;
                out.bytes += f.node.size;
                plan.files.push(f);
            }
            Created::Skipped => out.skipped += 1,
            Created::Failed => {}
        }
    }
    for (link, first) in std::mem::take(&mut plan.links) {
        match clear_non_dir(&link).and_then(|_| fs::hard_link(&first, &link)) {
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
fn create_final(path: &Path, node: &Node) -> std::io::Result<(fs::File, Known)> {
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

fn write_data(repo: &Repository, plan: &Plan, threads: usize, errors: &Mutex<Vec<FileError>>, progress: &Progress) -> Result<()> {
    // Group the needed blobs by pack.
    let mut packs: BTreeMap<PackId, Vec<(BlobLocation, &Places)>> = BTreeMap::new();
    for (id, places) in &plan.blobs {
        if let Some(loc) = repo.cache().lookup(BlobKind::Data, id)? {
            packs.entry(loc.pack).or_default().push((loc, places));
        }
    }
    type PackWork<'a> = Vec<(PackId, Vec<(BlobLocation, &'a Places)>)>;
    let work: Mutex<PackWork<'_>> = Mutex::new(packs.into_iter().rev().collect());
    let fatal: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Each thread reads its packs' ranges into one buffer, reused.
                let mut range_buf = Vec::new();
                loop {
                    let next = work.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((pack, mut blobs)) = next else { break };
                    blobs.sort_by_key(|(l, _)| l.offset);
                    if let Err(e) = restore_pack(repo, plan, &pack, &blobs, &mut range_buf, errors, progress) {
                        let mut f = fatal.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert(e);
                        work.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    }
                }
            });
        }
    });
    match fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Gaps up to this size between needed blobs are read rather than split into two requests.
const COALESCE_GAP: u64 = 1 << 20;
/// Largest single read from a pack (bounds memory per restore thread).
const MAX_RANGE: u64 = 8 << 20;

fn restore_pack(
    repo: &Repository,
    plan: &Plan,
    pack: &PackId,
    blobs: &[(BlobLocation, &Places)],
    range_buf: &mut Vec<u8>,
    errors: &Mutex<Vec<FileError>>,
    progress: &Progress,
) -> Result<()> {
    let Some((salt, _)) = repo.cache().pack_info(pack)? else { bail!("pack {} is not in the index", pack.short()) };
    let mut decoder = UnitDecoder::new(repo);
    let mut i = 0;
    while i < blobs.len() {
        let start = blobs[i].0.offset as u64;
        let mut end = start + blobs[i].0.length as u64;
        let mut j = i + 1;
        while j < blobs.len() && (blobs[j].0.offset as u64) <= end + COALESCE_GAP && end - start < MAX_RANGE {
            end = end.max(blobs[j].0.offset as u64 + blobs[j].0.length as u64);
            j += 1;
        }
        let range = repo.store().get_range_into(&pack.object_key(), start..end, range_buf).map(|()| &range_buf[..]);
        for (loc, places) in &blobs[i..j] {
            let plain = match &range {
                Ok(bytes) => {
                    let a = (loc.offset as u64 - start) as usize;
                    decoder.blob(loc, &salt, &bytes[a..a + loc.length as usize])
                }
                Err(e) => Err(anyhow::anyhow!("read pack {}: {e}", pack.short())),
            };
            match plain {
                Ok(data) => {
                    let zero = all_zero(data);
                    for (fi, off) in places.iter() {
                        let f = &plan.files[*fi];
                        progress.add_done(0, data.len() as u64);
                        if zero && !f.one_shot {
                            continue; // leave a hole; the length is set at the end
                        }
                        let r = if f.one_shot {
                            restore_one_shot(f, data).map(|refused| refused.into_iter().for_each(|m| err(errors, &f.path, m)))
                        } else {
                            let direct = f.node.size >= DIRECT_FILE_MIN && plan.direct.load(Ordering::Relaxed);
                            write_chunk(&f.path, data, *off, direct.then_some(&plan.direct))
                        };
                        if let Err(e) = r {
                            // A full disk fails every write after it: one clear error, not one
                            // per chunk, and the restore stops.
                            if e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded {
                                bail!(
                                    "writing {}: {e}: free space on the target (or restore to another one) and run the \
                                     restore again; files restored completely are kept",
                                    f.path.display()
                                );
                            }
                            err(errors, &f.path, format!("write failed: {e}"));
                        }
                    }
                }
                Err(e) => {
                    for (fi, _) in places.iter() {
                        let f = &plan.files[*fi];
                        if f.one_shot && f.fresh {
                            // Never created: nothing for the last phase to finish (it would
                            // only add a second error for the same file).
                            f.done.store(true, Ordering::Relaxed);
                        }
                        err(errors, &f.path, format!("{e:#}"));
                    }
                }
            }
        }
        i = j;
    }
    Ok(())
}

/// Creates (in a fresh folder) or opens a one-shot file, writes its one chunk and sets its
/// metadata. Whatever happens, the last phase leaves it alone (an error is reported once).
fn restore_one_shot(f: &FileTarget, data: &[u8]) -> std::io::Result<Vec<String>> {
    f.done.store(true, Ordering::Relaxed);
    let (file, known) = if f.fresh {
        create_final(&f.path, &f.node)?
    } else {
        (OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(&f.path)?, Known::default())
    };
    let end = write_sparse_to(&file, data, 0)?;
    // A file just created was empty: its length is where the last write ended.
    finish_open_file(&file, &f.node, Known { len: known.fresh.then_some(end), ..known })
}

/// Whether this process runs as root (asked once).
fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| rustix::process::geteuid().is_root())
}

/// Sparse-file granularity: aligned blocks of zeros inside a chunk are skipped.
const HOLE_BLOCK: u64 = 4096;

/// Whether `b` holds only zeros (a branch-free OR over the block, which vectorizes, rather
/// than a byte-by-byte search that stops early).
fn all_zero(b: &[u8]) -> bool {
    b.chunks(HOLE_BLOCK as usize).all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// Files at least this large have their chunks written with `O_DIRECT` (see [`write_chunk`]).
const DIRECT_FILE_MIN: u64 = 32 << 20;
/// Chunks at least this large are written with `O_DIRECT` (their whole blocks).
const DIRECT_MIN: usize = 64 << 10;

/// Writes one chunk of a file of several chunks at `off`. With `direct` (large files): its whole
/// 4 KiB blocks directly, not through the page cache (`ferry_store::direct`: on the machines
/// measured a buffered write cost 0.3 to 3.3 s of system time per GiB, depending on how much the
/// kernel had to reclaim first, a direct one 0.2 s; restored data is not read back soon), and
/// the partial blocks at its two ends through the cache, since they share a block with the
/// neighbouring chunks. A direct write returns only once the device has the data, so files
/// below [`DIRECT_FILE_MIN`] keep the cache's write-behind. Zero blocks are skipped either way
/// (holes stay holes). `direct` is cleared for the rest of the restore when the file system
/// refuses `O_DIRECT`.
fn write_chunk(path: &Path, data: &[u8], off: u64, direct: Option<&AtomicBool>) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)?;
    let align = ferry_store::direct::ALIGN;
    let Some(direct) = direct.filter(|d| data.len() >= DIRECT_MIN && d.load(Ordering::Relaxed)) else {
        return write_sparse(&file, data, off);
    };
    let head = ((align as u64 - off % align as u64) % align as u64) as usize;
    let body_end = head + (data.len() - head) / align * align;
    let d = match ferry_store::direct::open(OpenOptions::new().write(true), path) {
        Ok(d) => d,
        Err(ferry_store::direct::DirectError::Unsupported) => {
            direct.store(false, Ordering::Relaxed);
            return write_sparse(&file, data, off);
        }
        Err(ferry_store::direct::DirectError::Failed(e)) => return Err(e),
    };
    write_sparse(&file, &data[..head], off)?;
    // Runs of non-zero blocks of the aligned body, each written in one go.
    let body = &data[head..body_end];
    let mut run: Option<usize> = None;
    let mut pos = 0;
    while pos <= body.len() {
        let zero = pos == body.len() || all_zero(&body[pos..pos + align]);
        match (zero, run) {
            (false, None) => run = Some(pos),
            (true, Some(s)) => {
                if let Err(e) = ferry_store::direct::write_blocks_at(&d, &body[s..pos], off + (head + s) as u64) {
                    match e {
                        ferry_store::direct::DirectError::Unsupported => {
                            direct.store(false, Ordering::Relaxed);
                            write_sparse(&file, &body[s..], off + (head + s) as u64)?;
                            return write_sparse(&file, &data[body_end..], off + body_end as u64);
                        }
                        ferry_store::direct::DirectError::Failed(e) => return Err(e),
                    }
                }
                run = None;
            }
            _ => {}
        }
        pos += align;
    }
    write_sparse(&file, &data[body_end..], off + body_end as u64)
}

/// Writes `data` at `off`, skipping aligned all-zero blocks so they stay holes (the file was
/// created empty, so skipped ranges read as zeros).
fn write_sparse(file: &fs::File, data: &[u8], off: u64) -> std::io::Result<()> {
    write_sparse_to(file, data, off).map(|_| ())
}

/// [`write_sparse`], returning where the last write ended (`off` if nothing was written).
fn write_sparse_to(file: &fs::File, data: &[u8], off: u64) -> std::io::Result<u64> {
    let mut written_end = off;
    let mut pos = 0usize;
    let mut run_start: Option<usize> = None;
    while pos < data.len() {
        // Block boundaries are aligned to the file offset, as the file system's are.
        let block_end = (((off + pos as u64) / HOLE_BLOCK + 1) * HOLE_BLOCK - off) as usize;
        let end = block_end.min(data.len());
        let zero = all_zero(&data[pos..end]);
        match (zero, run_start) {
            (false, None) => run_start = Some(pos),
            (true, Some(s)) => {
                file.write_all_at(&data[s..pos], off + s as u64)?;
                written_end = off + pos as u64;
                run_start = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = run_start {
        file.write_all_at(&data[s..], off + s as u64)?;
        written_end = off + data.len() as u64;
    }
    Ok(written_end)
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
struct Known {
    /// The file's length.
    len: Option<u64>,
    /// Its permission bits (`& 0o7777`).
    mode: Option<u32>,
    /// This restore created it (its owner is this process's, asked with one fstat).
    fresh: bool,
}

fn finish_open_file(file: &fs::File, node: &Node, known: Known) -> std::io::Result<Vec<String>> {
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

fn finish_metadata(plan: &Plan, threads: usize, errors: &Mutex<Vec<FileError>>) {
    let report = |p: &Path, r: std::io::Result<Vec<String>>| match r {
        Ok(refused) => refused.into_iter().for_each(|m| err(errors, p, m)),
        Err(e) => err(errors, p, format!("cannot set metadata: {e}")),
    };
    // Files are independent of each other: several threads share them.
    let per_thread = plan.files.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for files in plan.files.chunks(per_thread) {
            s.spawn(move || files.iter().filter(|f| !f.done.load(Ordering::Relaxed)).for_each(|f| report(&f.path, finish_file(f))));
        }
    });
    let set = |p: &Path, n: &Node, is_symlink: bool| {
        report(p, set_owner_mode_xattrs(p, n, is_symlink).and_then(|refused| set_times(p, n).map(|_| refused)))
    };
    for (p, n) in &plan.others {
        set(p, n, n.kind == NodeKind::Symlink);
    }
    for (p, n) in plan.dirs.iter().rev() {
        set(p, n, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Chunks of one file written out of order, at unaligned boundaries, with zero runs: the
    /// file reads back exactly, and whole zero blocks stay holes, with and without direct
    /// writes (tmpfs may refuse them; then the buffered path does it all).
    #[test]
    fn chunks_written_directly_and_buffered_make_the_file() {
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if Path::new("/dev/shm").is_dir() {
            dirs.push(tempfile::tempdir_in("/dev/shm").unwrap());
        }
        for dir in &dirs {
            let mut data: Vec<u8> = (0..(5u32 << 20) + 12345).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
            // A zero run of 1 MiB at an unaligned offset, and one at the very end.
            data[(1 << 20) + 777..(2 << 20) + 777].fill(0);
            let n = data.len();
            data[n - 70_000..].fill(0);
            let cuts = [0, 1000, 70_000, (1 << 20) + 3, (3 << 20) + 4096, (4 << 20) + 1, n];
            let path = dir.path().join("f");
            std::fs::File::create(&path).unwrap();
            let direct = AtomicBool::new(true);
            // Last chunk first, as packs come in any order.
            for w in cuts.windows(2).rev() {
                write_chunk(&path, &data[w[0]..w[1]], w[0] as u64, Some(&direct)).unwrap();
            }
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(n as u64).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "{}", dir.path().display());
            let supported = ferry_store::direct::open(OpenOptions::new().write(true), &path).is_ok();
            assert_eq!(direct.load(Ordering::Relaxed), supported, "the direct path was taken where the file system has it");
            let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
            assert!(allocated < n as u64 - (1 << 20), "zero blocks stay holes: {allocated} bytes allocated of {n}");
        }
    }
}
