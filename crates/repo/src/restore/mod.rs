//! Restore: writes a recovery point's files back, exactly (contents, mode, owner when root,
//! times, symlinks, hard links, empty folders, extended attributes, sparse files).
//!
//! Plan, then data, then metadata:
//! 1. walk the tree; create folders, symlinks and special files; list the regular files; then
//!    create them empty (several threads), note where each of their chunks goes, and make the
//!    hard links;
//! 2. read each needed pack once (coalesced ranges), decrypt each stored unit once, write each
//!    blob to every place it belongs (all-zero blocks are skipped, leaving holes, unless
//!    [`Sparse`] says otherwise for the file);
//! 3. set each file's length, owner, mode, extended attributes and times through one
//!    descriptor (several threads), then the symlinks' and the folders', deepest first, so
//!    their times stick.
//!
//! A restore is restartable: with the default `--overwrite if-changed`, a file that already
//! has the recorded size and modification time is left alone (times are set last, so a file
//! cut short by a crash never qualifies).
//!
//! Each pass has its module (`plan`, `data`, `metadata`); this one holds the options, the
//! plan the passes share, and runs them in order.

mod data;
mod metadata;
mod plan;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use anyhow::Context;
use ferry_format::recovery_point::RecoveryPoint;
use ferry_format::tree::Node;
use ferry_format::BlobId;

use crate::backup::FileError;
use crate::{Progress, Repository};
use data::write_data;
use metadata::finish_metadata;
use plan::{create_files, make_plan, Includes};

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

/// Which files get holes where their content has all-zero 4 KiB blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sparse {
    /// Every file (the default): zeros the source had written come back as holes too.
    #[default]
    Always,
    /// None: every byte is written, every file fully allocated (preallocated databases, swap
    /// files).
    Never,
    /// Only the files that had holes when they were backed up (`Node::sparse`); recovery
    /// points made before that was recorded restore like `Never`.
    Auto,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub includes: Vec<String>,
    pub overwrite: Overwrite,
    pub sparse: Sparse,
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

/// One regular file being restored.
struct FileTarget {
    path: PathBuf,
    node: Node,
    /// Each chunk and its offset in the file (the chunks up to the first one missing from the
    /// index, which is reported).
    chunks: Vec<(BlobId, u64)>,
    /// Restored in one go (see [`FileTarget::one_shot`]).
    one_shot: bool,
    /// All-zero blocks are left as holes rather than written ([`Sparse`]).
    holes: bool,
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
    out.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(FileError { path: path.display().to_string(), error: e.to_string() });
}

/// Restores recovery point `rp` under `opts.target`.
pub fn run(repo: &Repository, rp: &RecoveryPoint, opts: &RestoreOptions, progress: &Progress) -> crate::Result<RestoreOutcome> {
    let includes = Includes::new(&opts.includes)?;
    fs::create_dir_all(&opts.target).with_context(|| format!("create target folder {}", opts.target.display()))?;
    let target = fs::canonicalize(&opts.target).with_context(|| format!("resolve target folder {}", opts.target.display()))?;
    let errors = Mutex::new(Vec::new());
    let mut out = RestoreOutcome::default();
    let threads = opts.threads.max(1);
    let mut plan = make_plan(repo, rp, &target, &includes, opts.sparse, &errors, &mut out)?;
    create_files(&mut plan, threads, opts.overwrite, &errors, &mut out, progress);
    write_data(repo, &plan, threads, &errors, progress)?;
    finish_metadata(&plan, threads, &errors, progress);
    out.errors = errors.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(out)
}
